// The CPU QSGD coder: hand-computed words, equality with the plain reference encoder for every
// bits/layout/norm/bucket, determinism across threads and ISAs, and the edge cases.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>

#include "support/scoped_isa.h"
#include "codec/qsgd_cpu_kernels.h"
#include "qcomm/codec.h"
#include "reference_encoder.h"

namespace qcomm {
namespace {

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

EncodedTensor encodeOrDie(const std::vector<float>& v, const QsgdOptions& o, const RandomKey& key,
                          Executor* executor = nullptr) {
  Result<EncodedTensor> e = qsgdEncode(std::span<const float>(v), o, key, executor);
  EXPECT_TRUE(e.isOk()) << e.status().toString();
  return e.isOk() ? *e : EncodedTensor{};
}

std::vector<float> decodeOrDie(const EncodedTensor& e, Executor* executor = nullptr) {
  std::vector<float> out(e.count, -12345.0f);
  const Status s = qsgdDecode(e, std::span<float>(out), executor);
  EXPECT_TRUE(s.isOk()) << s.toString();
  return out;
}

QsgdOptions opts(int bits, Layout layout, NormKind norm = NormKind::kL2, int64_t bucket = 0) {
  QsgdOptions o;
  o.bits = bits;
  o.layout = layout;
  o.norm = norm;
  o.bucketSize = bucket;
  return o;
}

using testing::ScopedIsa;

// ---- hand-computed words (max norm with |v| on exact levels: no randomness involved) ----------

TEST(QsgdCodec, HandComputedSeedWord) {
  // q = 2 (s = 3), max = 3 so y = |v|. Codes (sign+1)<<2 | xi: 3 -> 0xB, -2 -> 0x2, 0 -> 0x4,
  // 1 -> 0x9; k = 16 slots of 4 bits, L = 1, the 12 unused slots hold the code of 0 (0x4).
  const EncodedTensor e = encodeOrDie({3, -2, 0, 1}, opts(2, Layout::kSeed, NormKind::kMax), {});
  ASSERT_EQ(e.words.size(), 1u);
  EXPECT_EQ(e.words[0], 0xB249444444444444ull);
  EXPECT_EQ(e.scales, std::vector<double>{3.0});
  EXPECT_EQ(decodeOrDie(e), (std::vector<float>{3, -2, 0, 1}));
}

TEST(QsgdCodec, HandComputedCompactWord) {
  // Compact, q = 2: 3-bit codes neg<<2 | xi: 3 -> 3, -2 -> 6, 0 -> 0, 1 -> 1; 21 slots, top bit 0.
  const EncodedTensor e = encodeOrDie({3, -2, 0, 1}, opts(2, Layout::kCompact, NormKind::kMax), {});
  ASSERT_EQ(e.words.size(), 1u);
  EXPECT_EQ(e.words[0], (3ull << 60) | (6ull << 57) | (0ull << 54) | (1ull << 51));
  EXPECT_EQ(e.words[0], 0x3C08000000000000ull);
}

TEST(QsgdCodec, HandComputedTwoSectionsOfTwoWords) {
  // n = 17, k = 16 -> L = 2: value i = 2j + t sits in word t, slot j. v_i = i % 4, max 3.
  std::vector<float> v;
  for (int i = 0; i < 17; ++i) v.push_back(static_cast<float>(i % 4));
  const EncodedTensor e = encodeOrDie(v, opts(2, Layout::kSeed, NormKind::kMax), {});
  ASSERT_EQ(e.words.size(), 2u);
  // word 0: values 0,2,4,...,16 = 0,2,0,2,0,2,0,2,0 -> 4,A,4,A,4,A,4,A,4 then 7 pads.
  EXPECT_EQ(e.words[0], 0x4A4A4A4A44444444ull);
  // word 1: values 1,3,...,15 = 1,3,1,3,1,3,1,3 -> 9,B,... then 8 pads.
  EXPECT_EQ(e.words[1], 0x9B9B9B9B44444444ull);
  EXPECT_EQ(decodeOrDie(e), v);
}

TEST(QsgdCodec, HandComputedExtremeBits) {
  // q = 16 seed: 3 codes of 18 bits.
  const EncodedTensor e16 =
      encodeOrDie({65535, -1, 0}, opts(16, Layout::kSeed, NormKind::kMax), {});
  ASSERT_EQ(e16.words.size(), 1u);
  EXPECT_EQ(e16.words[0], (0x2FFFFull << 36) | (0x00001ull << 18) | 0x10000ull);
  // q = 1 compact: 32 codes of 2 bits.
  const EncodedTensor e1 =
      encodeOrDie({1, -1, 0, 1}, opts(1, Layout::kCompact, NormKind::kMax), {});
  ASSERT_EQ(e1.words.size(), 1u);
  EXPECT_EQ(e1.words[0], 0x7100000000000000ull);
}

// ---- equality with the reference encoder --------------------------------------------------------

TEST(QsgdCodec, MatchesReferenceEncoderEverywhere) {
  const std::vector<float> v = gaussian(5000, 3);
  for (int bits = 1; bits <= 16; ++bits) {
    for (Layout layout : {Layout::kSeed, Layout::kCompact}) {
      for (NormKind norm : {NormKind::kL2, NormKind::kMax}) {
        for (int64_t bucket : {0, 1, 7, 128, 512, 4096}) {
          const QsgdOptions o = opts(bits, layout, norm, bucket);
          const RandomKey key{99, 3, 5, 11};
          const EncodedTensor got = encodeOrDie(v, o, key);
          const EncodedTensor want = testing::referenceEncodeF32(v, o, key);
          ASSERT_EQ(got, want) << "bits " << bits << " " << layoutName(layout) << " "
                               << normKindName(norm) << " bucket " << bucket;
        }
      }
    }
  }
}

TEST(QsgdCodec, BothDrawWidthsMatchTheReferenceOnEveryPath) {
  // 16 random bits per value (the default) and 32 (the option): aligned runs (the SIMD path),
  // misaligned rows (tiles of large buckets), short buckets.
  const std::vector<float> v = gaussian(200003, 8);
  Executor executor(3);
  for (int bits : {1, 2, 4, 8, 16}) {
    for (Layout layout : {Layout::kSeed, Layout::kCompact}) {
      for (int64_t bucket : {0, 7, 128, 512, 70001}) {
        QsgdOptions o = opts(bits, layout, bits % 2 ? NormKind::kL2 : NormKind::kMax, bucket);
        const RandomKey key{5, 1, 2, 3};
        std::vector<uint64_t> words16;
        for (int randomBits : {16, 32}) {
          o.randomBits = randomBits;
          const EncodedTensor want = testing::referenceEncodeF32(v, o, key);
          ASSERT_EQ(encodeOrDie(v, o, key), want) << bits << " " << bucket << " " << randomBits;
          ASSERT_EQ(encodeOrDie(v, o, key, &executor), want)
              << bits << " " << bucket << " " << randomBits;
          EXPECT_EQ(want.flags & kFlagRandom16, randomBits == 16 ? kFlagRandom16 : 0u);
          if (randomBits == 16) words16 = want.words;
          if (randomBits == 32) EXPECT_NE(want.words, words16) << "the draws change the words";
        }
      }
    }
  }
  QsgdOptions bad;
  bad.randomBits = 8;
  EXPECT_EQ(bad.validate().message(), "random bits per value must be 32 or 16, got 8");
}

TEST(QsgdCodec, SixteenBitDrawsAreTheDefaultAndThirtyTwoStayAnOption) {
  // The codec benchmark chose 16 (docs/performance.md, "16-bit draws by default"); 32 keeps the
  // draws of the seed's Philox order and of qcomm before, message flag clear.
  const std::vector<float> v = gaussian(5000, 3);
  const RandomKey key{7, 0, 1, 2};
  QsgdOptions o = opts(4, Layout::kCompact, NormKind::kMax, 512);
  EXPECT_EQ(QsgdOptions{}.randomBits, 16);
  const EncodedTensor byDefault = encodeOrDie(v, o, key);
  EXPECT_EQ(byDefault.flags, kFlagRandom16);
  o.randomBits = 16;
  EXPECT_EQ(encodeOrDie(v, o, key), byDefault);
  o.randomBits = 32;
  const EncodedTensor wide = encodeOrDie(v, o, key);
  EXPECT_EQ(wide.flags, 0u);
  EXPECT_EQ(wide, testing::referenceEncodeF32(v, o, key));
  EXPECT_NE(wide.words, byDefault.words);
  EXPECT_EQ(wide.scales, byDefault.scales);
}

// The L2 norm's tile sums in fp64 (docs/format.md: 32 lanes, each summing every 32nd square in
// order, folded in halves) bit for bit on every ISA, on squares of magnitudes 2^-60..2^60, where
// any other grouping of the lanes or of a lane's terms rounds differently. The codec tests
// cannot see this: the float scale almost always rounds such differences away.
TEST(QsgdCodec, SumOfSquaresTilesAreTheFixedOrderOnEveryIsa) {
  std::mt19937 rng(17);
  std::uniform_int_distribution<int> exponent(-30, 30);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  for (int64_t count : {int64_t{1}, int64_t{31}, int64_t{256}, int64_t{300}, int64_t{5000}}) {
    std::vector<float> v(count);
    for (float& x : v) x = std::ldexp(mantissa(rng), exponent(rng)) * (rng() % 2 ? 1.0f : -1.0f);
    const int64_t tiles = (count + qsgd::kNormTile - 1) / qsgd::kNormTile;
    std::vector<double> want(tiles);
    qsgd::genericKernels().sumSquaresTilesF32(v.data(), count, want.data());
    for (const char* isa : {"avx2", "avx512"}) {
      const Result<const qsgd::CpuKernels*> k = qsgd::selectKernels(isa);
      if (!k.isOk()) continue;  // not on this CPU
      std::vector<double> got(tiles);
      (*k)->sumSquaresTilesF32(v.data(), count, got.data());
      for (int64_t t = 0; t < tiles; ++t) {
        ASSERT_EQ(std::bit_cast<uint64_t>(got[t]), std::bit_cast<uint64_t>(want[t]))
            << isa << " count " << count << " tile " << t << ": " << got[t] << " against "
            << want[t];
      }
    }
  }
}

// Values whose scaled magnitude y lies on, or one ulp beside, l + u for their own uniform u (the
// draw h as h * 2^-D): where u < y - l flips. The AVX-512 coder decides it without a float uniform
// (from ceil(y * 2^D) and the draw), which must agree with the reference at exactly these points.
TEST(QsgdCodec, ValuesOnTheirOwnDrawsMatchTheReference) {
  const RandomKey key{77, 2, 9, 5};
  const qsgd::PhiloxKey pk = qsgd::philoxKey(key.seed, key.rank, key.tensorId);
  constexpr int64_t kBucket = 512;
  constexpr int64_t kCount = 8 * kBucket + 100;  // a short last bucket: the scalar path too
  for (int randomBits : {16, 32}) {
    const int drawBits = randomBits == 16 ? 16 : 24;
    for (int bits : {1, 2, 4, 7, 8, 15, 16}) {
      const float s = static_cast<float>(qsgd::levels(bits));
      // l + h * 2^-D must be a float: l below 2^(24 - D).
      const int64_t lCount = std::min<int64_t>(int64_t{1} << (24 - drawBits), qsgd::levels(bits));
      std::vector<float> v(kCount);
      for (int64_t i = 0; i < kCount; ++i) {
        if (i % kBucket == 0) {
          v[i] = s;  // max norm: scale = s, so y = |x| exactly
          continue;
        }
        const uint32_t h = qsgd::randomBits(i, key.step, pk, randomBits) >> (32 - drawBits);
        const float y =
            static_cast<float>(i % lCount) + std::ldexp(static_cast<float>(h), -drawBits);
        const float x = i % 3 == 0 ? y : std::nextafter(y, i % 3 == 1 ? 0.0f : 1e9f);
        v[i] = i % 4 < 2 ? x : -x;
      }
      for (Layout layout : {Layout::kSeed, Layout::kCompact}) {
        QsgdOptions o = opts(bits, layout, NormKind::kMax, kBucket);
        o.randomBits = randomBits;
        const EncodedTensor want = testing::referenceEncodeF32(v, o, key);
        for (const char* isa : {"generic", "avx2", "avx512"}) {
          if (!qsgd::selectKernels(isa).isOk()) continue;  // not on this CPU
          ScopedIsa scoped(isa);
          ASSERT_EQ(encodeOrDie(v, o, key), want) << isa << " " << randomBits << "-bit draws, bits "
                                                  << bits << " " << layoutName(layout);
        }
      }
    }
  }
}

TEST(QsgdCodec, LargeBucketTiledPathMatchesReference) {
  // Buckets above 2^16 values are scaled and encoded tile by tile on all threads.
  const std::vector<float> v = gaussian(200003, 4);
  Executor executor(3);
  for (int bits : {2, 4, 16}) {
    for (int64_t bucket : {0, 70001}) {
      const QsgdOptions o = opts(bits, Layout::kCompact, NormKind::kL2, bucket);
      const RandomKey key{1, 0, 0, 0};
      EXPECT_EQ(encodeOrDie(v, o, key, &executor), testing::referenceEncodeF32(v, o, key))
          << bits << " " << bucket;
    }
  }
}

TEST(QsgdCodec, SameWordsOnEveryThreadCountAndIsa) {
  const std::vector<float> v = gaussian(300001, 5);
  for (int64_t bucket : {0, 512, -512}) {
    QsgdOptions o = opts(4, Layout::kSeed, NormKind::kL2, std::abs(bucket));
    if (bucket < 0) o.randomBits = 32;  // -512: buckets of 512 with 32-bit draws (16: default)
    const RandomKey key{2024, 1, 2, 3};
    const EncodedTensor single = encodeOrDie(v, o, key);
    const std::vector<float> decoded = decodeOrDie(single);
    for (int threads : {1, 2, 3, 7}) {
      Executor executor(threads);
      EXPECT_EQ(encodeOrDie(v, o, key, &executor), single) << threads << " threads";
      EXPECT_EQ(decodeOrDie(single, &executor), decoded) << threads << " threads";
    }
    for (const char* isa : {"generic", "avx2", "avx512"}) {
      if (!qsgd::selectKernels(isa).isOk()) continue;  // not on this CPU
      ScopedIsa scoped(isa);
      EXPECT_EQ(encodeOrDie(v, o, key), single) << isa;
      EXPECT_EQ(decodeOrDie(single), decoded) << isa;
    }
  }
}

TEST(QsgdCodec, SeedAndKeyPartsChangeTheWords) {
  const std::vector<float> v = gaussian(4096, 6);
  const QsgdOptions o = opts(4, Layout::kSeed);
  const EncodedTensor base = encodeOrDie(v, o, {1, 0, 0, 0});
  EXPECT_EQ(encodeOrDie(v, o, {1, 0, 0, 0}), base);
  EXPECT_NE(encodeOrDie(v, o, {2, 0, 0, 0}).words, base.words);
  EXPECT_NE(encodeOrDie(v, o, {1, 1, 0, 0}).words, base.words);
  EXPECT_NE(encodeOrDie(v, o, {1, 0, 1, 0}).words, base.words);
  EXPECT_NE(encodeOrDie(v, o, {1, 0, 0, 1}).words, base.words);
}

// ---- error bounds and sizes
// ----------------------------------------------------------------------

// |decoded - v| is below one quantization step (scale / s) for every value.
void expectWithinOneStep(const std::vector<float>& v, const EncodedTensor& e,
                         const std::vector<float>& out) {
  const uint32_t s = (1u << e.bits) - 1u;
  for (int64_t i = 0; i < e.count; ++i) {
    const double step = e.scales[i / e.bucketSize] / s;
    ASSERT_LE(std::fabs(double(out[i]) - double(v[i])), step * (1 + 1e-5) + 1e-44)
        << "value " << i << " of " << e.count;
    if (v[i] != 0.0f && out[i] != 0.0f) ASSERT_EQ(std::signbit(out[i]), std::signbit(v[i])) << i;
  }
}

TEST(QsgdCodec, EverySizeAroundTheWordBoundaries) {
  for (Layout layout : {Layout::kSeed, Layout::kCompact}) {
    for (int bits : {1, 4, 16}) {
      const int k = qsgd::valuesPerWord(bits, layout);
      for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{k - 1}, int64_t{k}, int64_t{k + 1},
                        int64_t{3 * k + 2}, int64_t{100000}}) {
        const std::vector<float> v = gaussian(n, 7 + static_cast<uint32_t>(n));
        for (int64_t bucket : {0, 512}) {
          const QsgdOptions o = opts(bits, layout, NormKind::kMax, bucket);
          const EncodedTensor e = encodeOrDie(v, o, {5, 0, 0, 0});
          Result<QsgdGeometry> g = qsgdGeometry(n, o);
          ASSERT_TRUE(g.isOk());
          EXPECT_EQ(static_cast<int64_t>(e.words.size()), g->wordCount);
          EXPECT_EQ(e.numBuckets(), g->numBuckets);
          if (bucket == 0 && n > 0) EXPECT_EQ(g->wordCount, (n + k - 1) / k);
          expectWithinOneStep(v, e, decodeOrDie(e));
        }
      }
    }
  }
}

TEST(QsgdCodec, ZeroSizeTensor) {
  const EncodedTensor e = encodeOrDie({}, opts(4, Layout::kSeed), {});
  EXPECT_EQ(e.count, 0);
  EXPECT_TRUE(e.words.empty());
  EXPECT_TRUE(e.scales.empty());
  EXPECT_TRUE(decodeOrDie(e).empty());
}

TEST(QsgdCodec, AllZerosDecodeToZerosNotNan) {
  for (NormKind norm : {NormKind::kL2, NormKind::kMax}) {
    const std::vector<float> v(1000, 0.0f);
    const EncodedTensor e = encodeOrDie(v, opts(4, Layout::kSeed, norm, 100), {});
    EXPECT_EQ(e.flags & kFlagNonFinite, 0u);
    for (double s : e.scales) EXPECT_EQ(s, 0.0);
    for (float x : decodeOrDie(e)) ASSERT_EQ(x, 0.0f);
  }
}

TEST(QsgdCodec, NonFiniteBucketsAreFlaggedAndOnlyThoseDecodeAsNan) {
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    for (NormKind norm : {NormKind::kL2, NormKind::kMax}) {
      std::vector<float> v = gaussian(1000, 8);
      v[250] = bad;  // bucket 2 of 10
      const EncodedTensor e = encodeOrDie(v, opts(4, Layout::kCompact, norm, 100), {});
      EXPECT_EQ(e.flags & kFlagNonFinite, kFlagNonFinite);
      EXPECT_TRUE(std::isnan(e.scales[2]));
      const std::vector<float> out = decodeOrDie(e);
      for (int64_t i = 0; i < 1000; ++i) {
        if (i / 100 == 2) {
          ASSERT_TRUE(std::isnan(out[i])) << i;
        } else {
          ASSERT_TRUE(std::isfinite(out[i])) << i;
        }
      }
    }
  }
}

TEST(QsgdCodec, DenormalsStayWithinOneStep) {
  std::vector<float> v = gaussian(3000, 9);
  for (float& x : v) x *= 1e-40f;  // all denormal
  for (int bits : {2, 8, 16}) {
    for (NormKind norm : {NormKind::kL2, NormKind::kMax}) {
      const EncodedTensor e = encodeOrDie(v, opts(bits, Layout::kSeed, norm, 512), {3, 0, 0, 0});
      EXPECT_EQ(e.flags & kFlagNonFinite, 0u);
      expectWithinOneStep(v, e, decodeOrDie(e));
    }
  }
}

TEST(QsgdCodec, ValuesNearFloatMaxStayFinite) {
  std::vector<float> v = {FLT_MAX, -FLT_MAX, 3e38f, -1e38f, 0.0f, 1.0f};
  for (int bits : {1, 5, 9, 16}) {
    for (NormKind norm : {NormKind::kL2, NormKind::kMax}) {
      const EncodedTensor e = encodeOrDie(v, opts(bits, Layout::kSeed, norm), {4, 0, 0, 0});
      EXPECT_EQ(e.flags & kFlagNonFinite, 0u) << "finite input must not be flagged";
      const std::vector<float> out = decodeOrDie(e);
      const uint32_t s = (1u << bits) - 1u;
      for (size_t i = 0; i < v.size(); ++i) {
        ASSERT_TRUE(std::isfinite(out[i])) << bits << " " << i;
        // The scale is clamped 2 ulps below FLT_MAX: the error is one step plus those ulps.
        EXPECT_LE(std::fabs(double(out[i]) - double(v[i])), e.scales[0] / s + 1e33) << i;
      }
    }
  }
}

TEST(QsgdCodec, Float64InputRoundTripsWithinOneStep) {
  std::mt19937 rng(10);
  std::normal_distribution<double> dist(0.0, 1e200);
  std::vector<double> v(2000);
  for (double& x : v) x = dist(rng);  // squares would overflow without the exponent scaling
  for (NormKind norm : {NormKind::kL2, NormKind::kMax}) {
    Result<EncodedTensor> e =
        qsgdEncode(std::span<const double>(v), opts(8, Layout::kSeed, norm, 300), {1, 0, 0, 0});
    ASSERT_TRUE(e.isOk()) << e.status().toString();
    EXPECT_EQ(e->dtype, DType::kFloat64);
    EXPECT_EQ(e->flags & kFlagNonFinite, 0u);
    std::vector<double> out(v.size());
    ASSERT_TRUE(qsgdDecode(*e, std::span<double>(out)).isOk());
    for (size_t i = 0; i < v.size(); ++i) {
      ASSERT_LE(std::fabs(out[i] - v[i]), e->scales[i / 300] / 255 * (1 + 1e-12)) << i;
    }
    // A float32 view of the same decode is the rounded float64 one.
    std::vector<float> narrow(v.size());
    ASSERT_TRUE(qsgdDecode(*e, std::span<float>(narrow)).isOk());
    EXPECT_EQ(narrow[0], static_cast<float>(out[0]));
  }
}

// ---- bad input
// -----------------------------------------------------------------------------------

TEST(QsgdCodec, BadOptionsAreRejectedWithTheirNames) {
  const std::vector<float> v(10, 1.0f);
  auto message = [&](const QsgdOptions& o) {
    Result<EncodedTensor> e = qsgdEncode(std::span<const float>(v), o, {});
    EXPECT_FALSE(e.isOk());
    return e.status().message();
  };
  EXPECT_EQ(message(opts(0, Layout::kSeed)), "bits must be in [1, 16], got 0");
  EXPECT_EQ(message(opts(17, Layout::kSeed)), "bits must be in [1, 16], got 17");
  EXPECT_EQ(message(opts(4, Layout::kSeed, NormKind::kL2, -1)),
            "bucket size must be >= 1 (or 0 for the whole tensor), got -1");
  EXPECT_EQ(message(opts(4, static_cast<Layout>(7))), "layout must be seed or compact, got 7");
  EXPECT_EQ(message(opts(4, Layout::kSeed, static_cast<NormKind>(9))),
            "norm must be l2 or max, got 9");
  const int64_t badShape[] = {3, 4};
  Result<EncodedTensor> e =
      qsgdEncode(std::span<const float>(v), opts(4, Layout::kSeed), {}, nullptr, badShape);
  EXPECT_EQ(e.status().message(), "shape holds 12 values but the tensor has 10");
}

TEST(QsgdCodec, DecodeChecksTheOutputAndTheMessage) {
  EncodedTensor e = encodeOrDie(gaussian(100, 1), opts(4, Layout::kSeed), {});
  std::vector<float> small(99);
  Status s = qsgdDecode(e, std::span<float>(small));
  EXPECT_EQ(s.message(), "decode output holds 99 values but the message has 100");
  e.words.pop_back();
  std::vector<float> out(100);
  s = qsgdDecode(e, std::span<float>(out));
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("expected 10 words"), std::string::npos) << s.message();
}

// A tensor's scales (fp64 in memory) are checked bucket by bucket: each bad one is named, and a
// healthy tensor with a NaN bucket passes.
TEST(QsgdCodec, DecodeNamesTheBadScale) {
  const EncodedTensor good =
      encodeOrDie(gaussian(100, 1), opts(4, Layout::kSeed, NormKind::kMax, 10), {});
  std::vector<float> out(100);
  const auto decodeWith = [&](int bucket, double scale, uint32_t flags = 0) {
    EncodedTensor e = good;
    e.scales[bucket] = scale;
    e.flags |= flags;
    return qsgdDecode(e, std::span<float>(out));
  };
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(decodeWith(3, -1.0).message(), "scale of bucket 3 is invalid: -1");
  EXPECT_EQ(decodeWith(4, inf).message(), "scale of bucket 4 is invalid: inf");
  EXPECT_EQ(decodeWith(5, 0.1).message(), "scale of bucket 5 (0.1) is not a float32 value");
  EXPECT_EQ(decodeWith(6, 1e300).message(), "scale of bucket 6 (1e+300) is not a float32 value");
  EXPECT_EQ(decodeWith(7, std::nan("")).message(),
            "a bucket scale is NaN but the non-finite flag is clear");
  EXPECT_EQ(decodeWith(8, 1.0, kFlagNonFinite).message(),
            "the non-finite flag is set but no bucket scale is NaN");
  EXPECT_TRUE(decodeWith(9, std::nan(""), kFlagNonFinite).isOk());
  EXPECT_TRUE(decodeWith(9, -0.0).isOk());
  EXPECT_TRUE(decodeWith(9, 0x1p-149).isOk());  // the smallest float32 subnormal
  EXPECT_EQ(decodeWith(9, 0x1p-150).message(),
            "scale of bucket 9 (7.00649e-46) is not a float32 value");
  // A float64 tensor's scales may be any finite double.
  const std::vector<double> v64(100, 1.0);
  Result<EncodedTensor> wide = qsgdEncode(std::span<const double>(v64),
                                          opts(4, Layout::kSeed, NormKind::kMax, 10), {});
  ASSERT_TRUE(wide.isOk());
  wide->scales[2] = 1e300;
  std::vector<double> out64(100);
  EXPECT_TRUE(qsgdDecode(*wide, std::span<double>(out64)).isOk());
  wide->scales[2] = inf;
  EXPECT_EQ(qsgdDecode(*wide, std::span<double>(out64)).message(),
            "scale of bucket 2 is invalid: inf");
}

TEST(QsgdCodec, ParsersNameTheBadValue) {
  EXPECT_EQ(parseLayout("dense").status().message(),
            "layout must be 'seed' or 'compact', got 'dense'");
  EXPECT_EQ(parseNormKind("l1").status().message(), "norm must be 'l2' or 'max', got 'l1'");
  EXPECT_EQ(*parseLayout("compact"), Layout::kCompact);
  EXPECT_EQ(*parseNormKind("max"), NormKind::kMax);
}

}  // namespace
}  // namespace qcomm

namespace qcomm {
namespace {

TEST(QsgdCodec, Float64DenormalAndHugeBucketsKeepTheirNorm) {
  // The fp64 L2 norm scales by 2^-e; for denormal maxima 2^-e is not representable and the
  // encoder takes the ldexp path. Both must give the true norm.
  for (double magnitude : {4.9e-324 * 7, 1e-310, 1e300, 1.0}) {
    const std::vector<double> v = {3 * magnitude, -4 * magnitude};
    Result<EncodedTensor> e = qsgdEncode(std::span<const double>(v), QsgdOptions{}, {});
    ASSERT_TRUE(e.isOk());
    const double expected = magnitude == 4.9e-324 * 7 ? std::hypot(v[0], v[1]) : 5 * magnitude;
    EXPECT_NEAR(e->scales[0], expected, expected * 1e-12 + 5e-324) << magnitude;
  }
}

// ---- decode-and-mean ------------------------------------------------------------------------------

// What the allreduce did before qsgdDecodeMean: decode each code, add in order, divide.
std::vector<float> meanByHand(const std::vector<EncodedTensor>& codes) {
  std::vector<float> sum(codes[0].count, 0.0f);
  for (const EncodedTensor& e : codes) {
    const std::vector<float> d = decodeOrDie(e);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += d[i];
  }
  for (float& x : sum) x /= static_cast<float>(codes.size());
  return sum;
}

void expectSameBits(const std::vector<float>& got, const std::vector<float>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i]))
        << what << ": value " << i << " is " << got[i] << ", expected " << want[i];
  }
}

// qsgdDecodeMean of `codes` on the AVX2 and AVX-512 kernels (where this CPU has them) against
// meanByHand on the generic ones, bit for bit.
void expectMeanAsGenericOnEveryIsa(const std::vector<EncodedTensor>& codes,
                                   const std::string& what) {
  std::vector<const EncodedTensor*> views;
  for (const EncodedTensor& e : codes) views.push_back(&e);
  std::vector<float> want;
  {
    ScopedIsa scoped("generic");
    want = meanByHand(codes);
  }
  for (const char* isa : {"avx2", "avx512"}) {
    if (!qsgd::selectKernels(isa).isOk()) continue;  // not on this CPU
    ScopedIsa scoped(isa);
    std::vector<float> got(want.size(), -1.0f);
    ASSERT_TRUE(qsgdDecodeMean(views, got).isOk()) << what;
    expectSameBits(got, want, std::string(isa) + " " + what);
  }
}

TEST(QsgdDecodeMean, BitIdenticalToDecodingAndAddingInOrder) {
  Executor executor(3);
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{200003}}) {
    for (int bits : {1, 2, 4, 8, 16}) {
      for (Layout layout : {Layout::kSeed, Layout::kCompact}) {
        for (int64_t bucket : {7, 512, 70001, 0}) {
          if (n == 200003 && bits != 4 && bits != 2) continue;  // bounded
          const QsgdOptions o = opts(bits, layout, bits == 2 ? NormKind::kL2 : NormKind::kMax,
                                     bucket);
          for (int p : {1, 3, 8}) {
            std::vector<EncodedTensor> codes;
            std::vector<const EncodedTensor*> views;
            for (int r = 0; r < p; ++r) {
              codes.push_back(encodeOrDie(gaussian(n, 100 + r), o, {9, uint32_t(r), 0, 1}));
            }
            for (const EncodedTensor& e : codes) views.push_back(&e);
            const std::string what = "n " + std::to_string(n) + " bits " + std::to_string(bits) +
                                     " " + std::string(layoutName(layout)) + " bucket " +
                                     std::to_string(bucket) + " P " + std::to_string(p);
            const std::vector<float> want = meanByHand(codes);
            std::vector<float> got(n, -1.0f);
            ASSERT_TRUE(qsgdDecodeMean(views, got).isOk()) << what;
            expectSameBits(got, want, what);
            std::vector<float> threaded(n, -1.0f);
            ASSERT_TRUE(qsgdDecodeMean(views, threaded, &executor).isOk()) << what;
            expectSameBits(threaded, want, what + " (3 threads)");
          }
        }
      }
    }
  }
}

// The fused kernel (CpuKernels::decodeMeanBucketF32: whole buckets straight from the words) on
// every ISA against decoding and adding with the generic kernels: every width, both layouts,
// section tails (buckets that leave the last sections empty), scales small enough to need the
// post factor, the seed's sign field 3 (factor 2), both mean paths (x * 1/P for powers of two,
// x / P otherwise) and the error-feedback residual of one code, written in place.
TEST(QsgdDecodeMean, FusedKernelOnEveryIsaMatchesDecodingAndAdding) {
  for (int bits = kMinBits; bits <= kMaxBits; ++bits) {
    for (Layout layout : {Layout::kSeed, Layout::kCompact}) {
      for (int64_t bucket : {5, 7, 100, 512, 3000}) {
        const QsgdOptions o = opts(bits, layout, NormKind::kMax, bucket);
        const int64_t n = 2 * bucket + 3;
        std::vector<EncodedTensor> codes;
        for (int r = 0; r < 8; ++r) {
          std::vector<float> v = gaussian(n, 300 + r, r == 2 ? 1e-31f : 1.0f);
          for (int64_t i = r; i < n; i += 11) v[i] = 0.0f;  // the seed's sign field 1
          codes.push_back(encodeOrDie(v, o, {5, uint32_t(r), 0, 2}));
        }
        // The seed's sign field 3 in every third word of code 1's first half, in every section
        // in turn: the buckets of the second half have none (the AVX-512 kernel reads q = 4's
        // codes by a table that f = 3 sends back to the arithmetic decoder, bucket by bucket).
        if (layout == Layout::kSeed) {
          const int k = qsgd::valuesPerWord(bits, layout), width = qsgd::codeWidth(bits, layout);
          for (size_t w = 0; w < codes[1].words.size() / 2; w += 3) {
            const int section = static_cast<int>(w / 3) % k;
            codes[1].words[w] |= uint64_t{3} << (qsgd::slotShift(section, k, width) + bits);
          }
        }
        // residualInput - decode(code c) for every c, by the generic kernels.
        const std::vector<float> residualInput = gaussian(n, 77);
        std::vector<std::vector<float>> wantResidual;
        {
          ScopedIsa scoped("generic");
          for (const EncodedTensor& e : codes) {
            const std::vector<float> d = decodeOrDie(e);
            std::vector<float> r(n);
            for (int64_t i = 0; i < n; ++i) r[i] = residualInput[i] - d[i];
            wantResidual.push_back(std::move(r));
          }
        }
        for (int p : {1, 2, 3, 5, 8}) {
          const std::vector<EncodedTensor> some(codes.begin(), codes.begin() + p);
          std::vector<const EncodedTensor*> views;
          for (const EncodedTensor& e : some) views.push_back(&e);
          std::vector<float> want;
          {
            ScopedIsa scoped("generic");
            want = meanByHand(some);
          }
          for (const char* isa : {"generic", "avx2", "avx512"}) {
            if (!qsgd::selectKernels(isa).isOk()) continue;  // not on this CPU
            ScopedIsa scoped(isa);
            const std::string what = std::string(isa) + " bits " + std::to_string(bits) + " " +
                                     std::string(layoutName(layout)) + " bucket " +
                                     std::to_string(bucket) + " P " + std::to_string(p);
            std::vector<float> got(n, -1.0f);
            ASSERT_TRUE(qsgdDecodeMean(views, got).isOk());
            expectSameBits(got, want, what);
            // With the residual of the last code, written over its input (in place).
            std::vector<float> inPlace = residualInput;
            std::fill(got.begin(), got.end(), -1.0f);
            ASSERT_TRUE(qsgdDecodeMean(views, got, nullptr, {p - 1, inPlace, inPlace}).isOk());
            expectSameBits(got, want, what + " (with residual)");
            expectSameBits(inPlace, wantResidual[p - 1], what + " residual");
          }
        }
      }
    }
  }
}

// The AVX-512 kernel decodes the wider codes (q >= 5) with each code's unit scaled down (compact:
// by 2^-(31 - q), the sign at bit 31 of its lane and the magnitude below it; seed: by
// 2^-(32 - q), xi in the top bits and the sign field at the bottom), which is exact only while
// that unit stays in the normal range. Scales just above the post factor's threshold (2^-96)
// give units whose scaled value loses bits: a bucket with such a code must still decode as the
// generic kernels do (the kernel falls back to the unscaled decoder).
TEST(QsgdDecodeMean, UnitsTooSmallToScaleExactlyStillDecodeExactly) {
  for (int bits = 5; bits <= kMaxBits; ++bits) {
    for (Layout layout : {Layout::kCompact, Layout::kSeed}) {
      const int64_t bucket = 512, n = 3 * bucket;
      const QsgdOptions o = opts(bits, layout, NormKind::kMax, bucket);
      const int down = layout == Layout::kCompact ? 31 - bits : 32 - bits;
      // A scale in [2^-96, 2^-95) whose unit, scaled down, is inexact (the test says so first).
      const uint32_t s = qsgd::levels(bits);
      float tiny = 0.0f;
      for (uint32_t r = 1; r < 4096 && tiny == 0.0f; ++r) {
        const float scale =
            std::ldexp(1.0f + static_cast<float>(r * 2654435761u >> 9) * 0x1p-23f, -96);
        const float unit = qsgd::decodeScaleF32(scale, s).unit;
        const float below = unit * std::ldexp(1.0f, -down);
        if (qsgd::decodeScaleF32(scale, s).post == 1.0f && below * std::ldexp(1.0f, down) != unit) {
          tiny = scale;
        }
      }
      const std::string what = std::string(layoutName(layout)) + " bits " + std::to_string(bits);
      ASSERT_NE(tiny, 0.0f) << what << ": no scale with an inexact scaled unit";
      std::vector<EncodedTensor> codes;
      for (int r = 0; r < 3; ++r) {
        std::vector<float> v = gaussian(n, 500 + r, r == 1 ? std::ldexp(1.0f, -100) : 1.0f);
        if (r == 1) {  // every bucket's largest value is `tiny`: its scale under max norm
          for (int64_t b = 0; b < n; b += bucket) v[b + 7] = b % 2 == 0 ? tiny : -tiny;
        }
        codes.push_back(encodeOrDie(v, o, {3, uint32_t(r), 0, 4}));
        if (r == 1) ASSERT_EQ(static_cast<float>(codes.back().scales[0]), tiny);
      }
      expectMeanAsGenericOnEveryIsa(codes, what);
    }
  }
}

// The AVX-512 kernel reads the seed layout's 6-bit codes (q = 4) by a table that has no entry
// for the sign field f = 3 (factor 2, which qcomm's encoder never writes but the seed notebook
// can): it watches every section of every word for f = 3 and decodes a bucket that has one again
// by the arithmetic decoder. One f = 3 per bucket, in section b % k of a word that moves with
// the bucket, must read as 2 * magnitude wherever it sits; the last buckets hold none.
TEST(QsgdDecodeMean, SeedSignFieldThreeInAnySectionReadsAsTwo) {
  const int bits = 4;
  const int64_t bucket = 512, buckets = 40, n = buckets * bucket;
  const QsgdOptions o = opts(bits, Layout::kSeed, NormKind::kMax, bucket);
  const int k = qsgd::valuesPerWord(bits, Layout::kSeed);
  const int width = qsgd::codeWidth(bits, Layout::kSeed);
  const int64_t sectionLength = (bucket + k - 1) / k;
  std::vector<EncodedTensor> codes;
  for (int r = 0; r < 4; ++r) {
    codes.push_back(encodeOrDie(gaussian(n, 900 + r), o, {8, uint32_t(r), 0, 5}));
  }
  ASSERT_EQ(static_cast<int64_t>(codes[2].words.size()), buckets * sectionLength);
  for (int64_t b = 0; b + 4 < buckets; ++b) {  // buckets 36-39 keep theirs clean
    const int section = static_cast<int>(b % k);
    uint64_t& word = codes[2].words[b * sectionLength + (b * 7) % sectionLength];
    word |= uint64_t{3} << (qsgd::slotShift(section, k, width) + bits);
  }
  expectMeanAsGenericOnEveryIsa(codes, "seed q = 4");
}

// The seed layout's wider codes (q >= 5) multiply xi by a signed unit that is 2 * unit for f = 3:
// near the largest scales 2 * (xi * unit) overflows, and the kernel's single rounding of
// xi * (2 * unit) must overflow exactly where it does (and give the same finite values below).
TEST(QsgdDecodeMean, SeedSignFieldThreeNearTheLargestScalesOverflowsAlike) {
  for (int bits = 5; bits <= kMaxBits; ++bits) {
    const int64_t bucket = 512, n = 4 * bucket;
    const QsgdOptions o = opts(bits, Layout::kSeed, NormKind::kMax, bucket);
    const int k = qsgd::valuesPerWord(bits, Layout::kSeed);
    const int width = qsgd::codeWidth(bits, Layout::kSeed);
    std::vector<EncodedTensor> codes;
    for (int r = 0; r < 2; ++r) {
      // Buckets of growing scale: 2^125, 2^126, 1.5 * 2^126, the largest float.
      // Every value between half the bucket's top and the top, signs mixed: most xi near s.
      std::vector<float> v = gaussian(n, 700 + r);
      const float tops[] = {0x1p125f, 0x1p126f, 0x1.8p126f, std::numeric_limits<float>::max()};
      for (int64_t i = 0; i < n; ++i) {
        const float g = std::fabs(v[i]), top = tops[i / bucket];
        v[i] = std::copysign(top * 0.5f + top * 0.5f * (g / (1.0f + g)), v[i]);
      }
      codes.push_back(encodeOrDie(v, o, {6, uint32_t(r), 0, 7}));
    }
    for (size_t w = 0; w < codes[1].words.size(); ++w) {  // f = 3 in one section of every word
      codes[1].words[w] |= uint64_t{3}
                           << (qsgd::slotShift(static_cast<int>(w % k), k, width) + bits);
    }
    {
      ScopedIsa scoped("generic");
      const std::vector<float> want = meanByHand(codes);
      ASSERT_TRUE(std::any_of(want.begin(), want.end(), [](float x) { return std::isinf(x); }))
          << "bits " << bits << ": nothing overflowed, the test tests nothing";
    }
    expectMeanAsGenericOnEveryIsa(codes, "bits " + std::to_string(bits));
  }
}

TEST(QsgdDecodeMean, ResidualAndNonFiniteBuckets) {
  std::vector<float> input = gaussian(5000, 1);
  input[1234] = std::numeric_limits<float>::infinity();  // bucket 2 of 512 is non-finite
  const QsgdOptions o = opts(4, Layout::kCompact, NormKind::kMax, 512);
  std::vector<EncodedTensor> codes = {encodeOrDie(gaussian(5000, 2), o, {1, 0, 0, 0}),
                                      encodeOrDie(input, o, {1, 1, 0, 0})};
  const std::vector<const EncodedTensor*> views = {&codes[0], &codes[1]};
  std::vector<float> out(5000), residual(5000, 7.0f);
  ASSERT_TRUE(qsgdDecodeMean(views, out, nullptr, {1, input, residual}).isOk());
  expectSameBits(out, meanByHand(codes), "mean");
  const std::vector<float> mine = decodeOrDie(codes[1]);
  for (size_t i = 0; i < input.size(); ++i) {
    const float want = input[i] - mine[i];
    ASSERT_TRUE(std::bit_cast<uint32_t>(residual[i]) == std::bit_cast<uint32_t>(want) ||
                (std::isnan(residual[i]) && std::isnan(want)))
        << i;
  }
  for (int64_t i = 1024; i < 1536; ++i) ASSERT_TRUE(std::isnan(out[i])) << i;
  EXPECT_FALSE(std::isnan(out[1023]));
}

// Outputs of 2^21 values and more are decoded into a buffer and streamed out with non-temporal
// stores (qsgd_cpu.cc, kStreamValues): the same bits on every ISA and thread count, at output
// addresses off a cache line by 0, 1 and 5 floats, with buckets that do not fill whole lines, a
// non-finite bucket amid streamed ones, and the residual beside.
TEST(QsgdDecodeMean, StreamedOutputMatchesDecodingAndAdding) {
  const int64_t n = (int64_t{1} << 21) + 1003;
  Executor executor(3);
  for (const QsgdOptions& o : {opts(4, Layout::kCompact, NormKind::kMax, 512),
                               opts(8, Layout::kSeed, NormKind::kL2, 100)}) {
    std::vector<EncodedTensor> codes;
    for (int r = 0; r < 3; ++r) {
      std::vector<float> v = gaussian(n, 500 + r);
      if (r == 1) v[n / 2] = std::numeric_limits<float>::quiet_NaN();
      codes.push_back(encodeOrDie(v, o, {3, uint32_t(r), 0, 4}));
    }
    std::vector<const EncodedTensor*> views;
    for (const EncodedTensor& e : codes) views.push_back(&e);
    std::vector<float> want;
    {
      ScopedIsa scoped("generic");
      want = meanByHand(codes);
    }
    ASSERT_TRUE(std::isnan(want[n / 2]));
    const std::vector<float> residualInput = gaussian(n, 78);
    const std::vector<float> mine = decodeOrDie(codes[2]);
    for (const char* isa : {"generic", "avx2", "avx512"}) {
      if (!qsgd::selectKernels(isa).isOk()) continue;  // not on this CPU
      ScopedIsa scoped(isa);
      for (int64_t offset : {0, 1, 5}) {
        for (Executor* e : {static_cast<Executor*>(nullptr), &executor}) {
          const std::string what = std::string(isa) + " q " + std::to_string(o.bits) +
                                   " offset " + std::to_string(offset) +
                                   (e != nullptr ? " 3 threads" : " 1 thread");
          std::vector<float> buffer(n + 16, -1.0f);
          const std::span<float> got(buffer.data() + offset, n);
          ASSERT_TRUE(qsgdDecodeMean(views, got, e).isOk()) << what;
          expectSameBits(std::vector<float>(got.begin(), got.end()), want, what);
          ASSERT_EQ(buffer[offset + n], -1.0f) << what << ": wrote past the output";
          if (offset > 0) ASSERT_EQ(buffer[offset - 1], -1.0f) << what << ": wrote before it";
        }
      }
      std::vector<float> out(n), residual(n);
      ASSERT_TRUE(qsgdDecodeMean(views, out, &executor, {2, residualInput, residual}).isOk());
      expectSameBits(out, want, std::string(isa) + " with residual");
      for (int64_t i = 0; i < n; i += 997) {
        ASSERT_EQ(std::bit_cast<uint32_t>(residual[i]),
                  std::bit_cast<uint32_t>(residualInput[i] - mine[i]))
            << isa << " residual " << i;
      }
    }
  }
}

TEST(QsgdDecodeMean, ClearErrors) {
  const QsgdOptions o = opts(4, Layout::kCompact, NormKind::kMax, 512);
  const EncodedTensor a = encodeOrDie(gaussian(1000, 1), o, {});
  const EncodedTensor b = encodeOrDie(gaussian(999, 1), o, {});
  const EncodedTensor c = encodeOrDie(gaussian(1000, 1), opts(2, Layout::kCompact), {});
  std::vector<float> out(1000);
  EXPECT_EQ(qsgdDecodeMean(std::span<const EncodedTensor* const>(), out).message(),
            "decode-and-mean of no codes");
  EXPECT_EQ(qsgdDecodeMean(std::span<const EncodedView>(), out).message(),
            "decode-and-mean of no codes");
  const std::vector<const EncodedTensor*> ab = {&a, &b}, ac = {&a, &c}, aa = {&a, &a};
  EXPECT_EQ(qsgdDecodeMean(ab, out).message(),
            "decode-and-mean: code 1 (999 values, 4 bits, compact, buckets of 512) differs from "
            "code 0 (1000 values, 4 bits, compact, buckets of 512)");
  EXPECT_THAT(qsgdDecodeMean(ac, out).message(), ::testing::HasSubstr("code 1 (1000 values, 2 bits"));
  std::vector<float> small(10);
  EXPECT_EQ(qsgdDecodeMean(aa, small).message(),
            "decode-and-mean output holds 10 values but the codes have 1000");
  EXPECT_EQ(qsgdDecodeMean(aa, out, nullptr, {2, {}, {}}).message(),
            "residual of code 2 but there are 2");
  const Result<EncodedTensor> f64 = qsgdEncode(std::span<const double>(std::vector<double>(1000, 1.0)), o, {});
  ASSERT_TRUE(f64.isOk());
  const std::vector<const EncodedTensor*> ff = {&*f64};
  EXPECT_EQ(qsgdDecodeMean(ff, out).message(),
            "decode-and-mean: code 0 holds float64 values; it averages float32 codes");
}

// ---- error feedback's residual, from the encoder -------------------------------------------------

// residual == input - decode(encode(input)) bit for bit (NaN where the bucket is non-finite), and
// the words are those of the plain encoder.
void expectResidualFromEncoder(const std::vector<float>& v, const QsgdOptions& o,
                               const RandomKey& key, Executor* executor, const std::string& what) {
  EncodedTensor withResidual;
  std::vector<float> residual(v.size(), 12345.0f);
  const Status s = qsgdEncodeWithResidual(v, o, key, executor, &withResidual, residual);
  ASSERT_TRUE(s.isOk()) << what << ": " << s.toString();
  const EncodedTensor plain = encodeOrDie(v, o, key, executor);
  ASSERT_EQ(withResidual.words, plain.words) << what;
  ASSERT_EQ(withResidual.flags, plain.flags) << what;
  ASSERT_EQ(withResidual.scales.size(), plain.scales.size()) << what;
  for (size_t b = 0; b < plain.scales.size(); ++b) {  // NaN marks a non-finite bucket
    ASSERT_EQ(std::bit_cast<uint64_t>(withResidual.scales[b]), std::bit_cast<uint64_t>(plain.scales[b]))
        << what << ": scale " << b;
  }
  const std::vector<float> decoded = decodeOrDie(plain);
  for (size_t i = 0; i < v.size(); ++i) {
    const float want = v[i] - decoded[i];
    ASSERT_TRUE(std::bit_cast<uint32_t>(residual[i]) == std::bit_cast<uint32_t>(want) ||
                (std::isnan(residual[i]) && std::isnan(want)))
        << what << ": value " << i << " residual " << residual[i] << ", expected " << want;
  }
}

TEST(QsgdEncodeResidual, EqualsInputMinusDecodeOnEveryPath) {
  std::vector<float> v = gaussian(20011, 8);
  v[777] = std::numeric_limits<float>::quiet_NaN();  // bucket 1 of 512 is non-finite
  Executor executor(3);
  for (int bits : {1, 2, 4, 8, 16}) {
    for (Layout layout : {Layout::kSeed, Layout::kCompact}) {
      for (NormKind norm : {NormKind::kL2, NormKind::kMax}) {
        for (int64_t bucket : {int64_t{512}, int64_t{100}, int64_t{0}}) {
          for (int randomBits : {32, 16}) {
            QsgdOptions o = opts(bits, layout, norm, bucket);
            o.randomBits = randomBits;
            const std::string what = "bits " + std::to_string(bits) + " " +
                                     std::string(layoutName(layout)) + " " +
                                     std::string(normKindName(norm)) + " bucket " +
                                     std::to_string(bucket) + " draws " +
                                     std::to_string(randomBits);
            expectResidualFromEncoder(v, o, {7, 1, 2, 3}, nullptr, what);
            expectResidualFromEncoder(v, o, {7, 1, 2, 3}, &executor, what + " 3 threads");
          }
        }
      }
    }
  }
}

TEST(QsgdEncodeResidual, TiledBucketsAndEveryIsa) {
  // Buckets above 2^16 values are encoded tile by tile, k rows at a time, on all threads.
  const std::vector<float> large = gaussian(200003, 9);
  Executor executor(3);
  for (int bits : {2, 4}) {
    const QsgdOptions o = opts(bits, Layout::kCompact, NormKind::kL2, 70001);
    expectResidualFromEncoder(large, o, {1, 0, 0, 0}, &executor, "tiled " + std::to_string(bits));
  }
  const std::vector<float> v = gaussian(5003, 10);
  for (const char* isa : {"generic", "avx2", "avx512"}) {
    if (!qsgd::selectKernels(isa).isOk()) continue;  // not on this CPU
    ScopedIsa scoped(isa);
    expectResidualFromEncoder(v, opts(4, Layout::kSeed, NormKind::kMax, 512), {3, 0, 1, 0},
                              nullptr, isa);
  }
}

TEST(QsgdEncodeResidual, ClearErrors) {
  const std::vector<float> v = gaussian(100, 1);
  std::vector<float> residual(99);
  EncodedTensor e;
  EXPECT_EQ(qsgdEncodeWithResidual(v, opts(4, Layout::kSeed), {}, nullptr, &e, residual).message(),
            "error-feedback residual holds 99 values, the input 100");
  std::vector<float> enough(100);
  EXPECT_EQ(qsgdEncodeWithResidual(v, opts(4, Layout::kSeed), {}, nullptr, nullptr, enough)
                .message(),
            "qsgdEncodeWithResidual: out is null");
  EXPECT_EQ(qsgdEncodeWithResidual({}, opts(4, Layout::kSeed), {}, nullptr, &e, {}).code(),
            StatusCode::kOk);
  EXPECT_EQ(e.count, 0);
}

}  // namespace
}  // namespace qcomm
