// The shared format math (codec/qsgd_format.h): geometry, Philox against Random123 and its
// known-answer vectors, the quantization step and the scale edge cases.
#include <Random123/philox.h>
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>

#include "codec/qsgd_format.h"

namespace qcomm::qsgd {
namespace {

TEST(QsgdFormat, GeometryMatchesTheSeed) {
  // k = 64 / (2 + q) as in the seed notebook; compact uses a 1-bit sign.
  EXPECT_EQ(valuesPerWord(1, Layout::kSeed), 21);
  EXPECT_EQ(valuesPerWord(2, Layout::kSeed), 16);
  EXPECT_EQ(valuesPerWord(4, Layout::kSeed), 10);
  EXPECT_EQ(valuesPerWord(16, Layout::kSeed), 3);
  EXPECT_EQ(valuesPerWord(1, Layout::kCompact), 32);
  EXPECT_EQ(valuesPerWord(3, Layout::kCompact), 16);
  EXPECT_EQ(valuesPerWord(4, Layout::kCompact), 12);
  EXPECT_EQ(valuesPerWord(16, Layout::kCompact), 3);
  EXPECT_EQ(sectionLength(0, 10), 0);
  EXPECT_EQ(sectionLength(1, 10), 1);
  EXPECT_EQ(sectionLength(10, 10), 1);
  EXPECT_EQ(sectionLength(11, 10), 2);
  EXPECT_EQ(slotShift(0, 10, 6), 54);  // section 0 is the most significant
  EXPECT_EQ(slotShift(9, 10, 6), 0);
  EXPECT_EQ(padCode(4, Layout::kSeed), 16u);  // (sign 0 + 1) << q
  EXPECT_EQ(padCode(4, Layout::kCompact), 0u);
}

TEST(QsgdFormat, PhiloxEqualsRandom123) {
  for (uint32_t i = 0; i < 1000; ++i) {
    const uint32_t seedWords[6] = {i * 2654435761u, ~i,      i << 7,
                                   0xFFFFFFFFu - i, i * 97u, i ^ 0x5555u};
    r123::Philox4x32 reference;
    const r123::Philox4x32::ctr_type ctr = {
        {seedWords[0], seedWords[1], seedWords[2], seedWords[3]}};
    const r123::Philox4x32::key_type key = {{seedWords[4], seedWords[5]}};
    const auto expected = reference(ctr, key);
    uint32_t c[4] = {seedWords[0], seedWords[1], seedWords[2], seedWords[3]};
    philox4x32_10(c, PhiloxKey{seedWords[4], seedWords[5]});
    for (int j = 0; j < 4; ++j) ASSERT_EQ(c[j], expected.v[j]) << "i=" << i << " word " << j;
  }
}

TEST(QsgdFormat, PhiloxKnownAnswers) {
  // Random123's kat_vectors for philox4x32 with 10 rounds.
  uint32_t zero[4] = {0, 0, 0, 0};
  philox4x32_10(zero, PhiloxKey{0, 0});
  EXPECT_EQ(zero[0], 0x6627e8d5u);
  EXPECT_EQ(zero[1], 0xe169c58du);
  EXPECT_EQ(zero[2], 0xbc57ac4cu);
  EXPECT_EQ(zero[3], 0x9b00dbd8u);
  uint32_t pi[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u};
  philox4x32_10(pi, PhiloxKey{0xa4093822u, 0x299f31d0u});
  EXPECT_EQ(pi[0], 0xd16cfe09u);
  EXPECT_EQ(pi[1], 0x94fdccebu);
  EXPECT_EQ(pi[2], 0x5001e420u);
  EXPECT_EQ(pi[3], 0x24126ea1u);
}

TEST(QsgdFormat, RandomBitsUseCounterIndexOver4AndWordIndexMod4) {
  const PhiloxKey key = philoxKey(7, 1, 2);
  for (int64_t i : std::initializer_list<int64_t>{0, 1, 2, 3, 4, 5, 1023, int64_t{1} << 33}) {
    const uint64_t block = static_cast<uint64_t>(i) / 4;
    uint32_t c[4] = {uint32_t(block), uint32_t(block >> 32), 9, 0};
    philox4x32_10(c, key);
    EXPECT_EQ(randomBits(i, 9, key), c[i % 4]) << i;
  }
  // Every part of the key matters.
  EXPECT_NE(philoxKey(1, 0, 0).k0, philoxKey(2, 0, 0).k0);
  EXPECT_NE(philoxKey(1, 0, 0).k0, philoxKey(1, 1, 0).k0);
  EXPECT_NE(philoxKey(1, 0, 0).k0, philoxKey(1, 0, 1).k0);
}

TEST(QsgdFormat, SixteenBitDrawsUseHalvesOfWordsOfBlockIndexOver8) {
  const PhiloxKey key = philoxKey(7, 1, 2);
  for (int64_t i : std::initializer_list<int64_t>{0, 1, 2, 7, 8, 9, 1023, int64_t{1} << 35}) {
    const uint64_t block = static_cast<uint64_t>(i) / 8;
    uint32_t c[4] = {uint32_t(block), uint32_t(block >> 32), 9, 0};
    philox4x32_10(c, key);
    const uint32_t word = c[(i / 2) % 4];
    const uint32_t half = i % 2 == 0 ? (word & 0xFFFFu) : (word >> 16);
    EXPECT_EQ(randomBits(i, 9, key, 16), half << 16) << i;
  }
  EXPECT_EQ(valuesPerPhiloxBlock(16), 8);
  EXPECT_EQ(valuesPerPhiloxBlock(32), 4);
}

// Over every possible draw, the share that rounds up is p to within 2^-24 (32-bit draws, of which
// the top 24 bits count) or 2^-16 (16-bit draws): the bias bound docs/format.md states. Exhaustive,
// so exact rather than statistical.
TEST(QsgdFormat, RoundingBiasIsBelowTheDrawResolution) {
  const uint32_t s = 15;
  const auto es = encodeScaleF32(1.0f, s);
  for (const float v : {0.0f, 1e-7f, 0.01f, 0.3333333f, 0.5f, 0.7071f, 0.99999f, 1.0f}) {
    const float y = v * es.mult;
    const double p = double(y) - std::floor(double(y));
    const uint32_t low = static_cast<uint32_t>(std::floor(double(y)));
    uint64_t up16 = 0;
    for (uint32_t r = 0; r < (1u << 16); ++r) up16 += quantizeF32(v, es, r << 16, s) > low;
    EXPECT_LE(std::fabs(double(up16) / 65536.0 - p), 0x1p-16) << v;
    uint64_t up24 = 0;
    for (uint32_t r = 0; r < (1u << 24); ++r) up24 += quantizeF32(v, es, r << 8, s) > low;
    EXPECT_LE(std::fabs(double(up24) / 16777216.0 - p), 0x1p-24) << v;
  }
}

TEST(QsgdFormat, QuantizeRoundsUpWithProbabilityP) {
  // y = 2.25 at s = 15, scale = 15 / 2.25...: use scale 1, s = 3 and |v| = 0.75 -> y = 2.25.
  const auto es = encodeScaleF32(1.0f, 3);
  // u = (r >> 8) / 2^24 < 0.25 rounds up.
  EXPECT_EQ(quantizeF32(0.75f, es, 0u, 3), 3u);
  EXPECT_EQ(quantizeF32(0.75f, es, (uint32_t{1} << 30) - 256u, 3), 3u);  // u just below 0.25
  EXPECT_EQ(quantizeF32(0.75f, es, uint32_t{1} << 30, 3), 2u);           // u == 0.25
  EXPECT_EQ(quantizeF32(0.75f, es, 0xFFFFFFFFu, 3), 2u);
  // Exact levels never move, whatever the dice.
  EXPECT_EQ(quantizeF32(1.0f, es, 0u, 3), 3u);
  EXPECT_EQ(quantizeF32(0.0f, es, 0u, 3), 0u);
  // The largest level is a ceiling.
  EXPECT_EQ(quantizeF32(1.5f, es, 0u, 3), 3u);
}

TEST(QsgdFormat, ScaleEdgeCasesNeverOverflow) {
  for (int q = 1; q <= 16; ++q) {
    const uint32_t s = levels(q);
    // Decoding the top level at the largest stored scale stays finite.
    const auto big = decodeScaleF32(kMaxScaleF32, s);
    EXPECT_TRUE(std::isfinite(decodeF32((2u << q) | s, q, Layout::kSeed, big))) << q;
    // A denormal scale: encode and decode round-trip the top level without Inf/NaN.
    const float tiny = 3e-42f;
    const auto es = encodeScaleF32(tiny, s);
    EXPECT_TRUE(std::isfinite(es.mult)) << q;
    EXPECT_EQ(quantizeF32(tiny, es, 0xFFFFFFFFu, s), s) << q;
    const float back = decodeF32((2u << q) | s, q, Layout::kSeed, decodeScaleF32(tiny, s));
    EXPECT_NEAR(back, tiny, tiny * 1e-3f) << q;
  }
  EXPECT_LT(clampScaleF32(FLT_MAX), FLT_MAX);
  // All-zero bucket: multiplier 0, not Inf.
  EXPECT_EQ(encodeScaleF32(0.0f, 15).mult, 0.0f);
}

TEST(QsgdFormat, DecodeSignFields) {
  const auto ds = decodeScaleF32(3.0f, 3);  // unit 1
  EXPECT_EQ(decodeF32((2u << 2) | 3u, 2, Layout::kSeed, ds), 3.0f);
  EXPECT_EQ(decodeF32((0u << 2) | 2u, 2, Layout::kSeed, ds), -2.0f);
  EXPECT_EQ(decodeF32((1u << 2) | 3u, 2, Layout::kSeed, ds), 0.0f);  // sign 0 wins
  EXPECT_EQ(decodeF32((3u << 2) | 1u, 2, Layout::kSeed, ds), 2.0f);  // seed's field 3 reads as 2
  EXPECT_EQ(decodeF32((1u << 2) | 2u, 2, Layout::kCompact, ds), -2.0f);
  EXPECT_EQ(decodeF32(2u, 2, Layout::kCompact, ds), 2.0f);
}

TEST(QsgdFormat, FoldsInTheDocumentedOrder) {
  double lanes[kNormLanes];
  for (int l = 0; l < kNormLanes; ++l) lanes[l] = l + 1;
  EXPECT_EQ(foldLanes(lanes), 528.0);
  // Pairwise: ((1e16 + 1) + (-1e16 + 1)) differs from a left-to-right sum.
  double sums[3] = {1e16, 1.0, -1e16};
  EXPECT_EQ(foldPairwise(sums, 3), (1e16 + 1.0) + -1e16);
  double none[1] = {42};
  EXPECT_EQ(foldPairwise(none, 0), 0.0);
}

}  // namespace
}  // namespace qcomm::qsgd
