// The wire message: round trips, and every malformed case gives a DataLoss naming the field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "qcomm/any_codec.h"
#include "qcomm/communicator.h"
#include "qcomm/quantizers.h"
#include "qcomm/wire.h"

namespace qcomm {
namespace {

EncodedTensor sample(DType dtype = DType::kFloat32, bool nonFinite = false) {
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(float(i));
  if (nonFinite) v[3] = INFINITY;
  QsgdOptions o;
  o.bits = 3;
  o.bucketSize = 128;
  o.layout = Layout::kCompact;
  const int64_t shape[] = {10, 100};
  if (dtype == DType::kFloat64) {
    std::vector<double> d(v.begin(), v.end());
    return *qsgdEncode(std::span<const double>(d), o, {1, 0, 0, 0}, nullptr, shape);
  }
  return *qsgdEncode(std::span<const float>(v), o, {1, 0, 0, 0}, nullptr, shape);
}

std::vector<uint8_t> wire(const EncodedTensor& e, bool crc = true) {
  WireOptions options;
  options.crc = crc;
  Result<std::vector<uint8_t>> w = toWire(e, options);
  EXPECT_TRUE(w.isOk()) << w.status().toString();
  return *w;
}

// Parses `bytes` and returns the error message ("" if it parsed). Reading it in place (viewWire)
// must refuse it with the same message.
std::string parseError(const std::vector<uint8_t>& bytes) {
  Result<EncodedTensor> e = fromWire(bytes);
  Result<EncodedView> view = viewWire(bytes);
  EXPECT_EQ(view.status().toString(), e.status().toString());
  if (e.isOk()) return "";
  EXPECT_EQ(e.status().code(), StatusCode::kDataLoss) << e.status().toString();
  return e.status().message();
}

template <typename T>
void poke(std::vector<uint8_t>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

using ::testing::HasSubstr;

TEST(Wire, RoundTripsEveryField) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    for (bool nonFinite : {false, true}) {
      for (bool crc : {false, true}) {
        const EncodedTensor e = sample(dtype, nonFinite);
        Result<EncodedTensor> back = fromWire(wire(e, crc));
        ASSERT_TRUE(back.isOk()) << back.status().toString();
        EXPECT_EQ(back->shape, (std::vector<int64_t>{10, 100}));
        EXPECT_EQ(back->words, e.words);
        EXPECT_EQ(back->flags, e.flags);
        ASSERT_EQ(back->scales.size(), e.scales.size());
        for (size_t b = 0; b < e.scales.size(); ++b) {
          EXPECT_TRUE(back->scales[b] == e.scales[b] ||
                      (std::isnan(back->scales[b]) && std::isnan(e.scales[b])));
        }
      }
    }
  }
}

TEST(Wire, SixteenBitDrawFlagTravelsAndIsCoveredByTheConfigHash) {
  EncodedTensor e = sample();
  e.flags |= kFlagRandom16;
  Result<EncodedTensor> back = fromWire(wire(e, false));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(back->flags & kFlagRandom16, kFlagRandom16);
  // Clearing the flag in transit is caught: the config hash covers it.
  std::vector<uint8_t> bytes = wire(e, false);
  poke<uint32_t>(bytes, 16, 0u);
  EXPECT_THAT(parseError(bytes), HasSubstr("config hash"));
}

TEST(Wire, SizesAreExact) {
  const EncodedTensor e = sample();
  // 64-byte header, 2 dims, 8 fp32 scales (32 bytes), 1000 / 21 per word in buckets of 128.
  EXPECT_EQ(*wireSize(e), 64 + 16 + 32 + 8 * e.words.size());
  EXPECT_EQ(wire(e).size(), *wireSize(e));
}

TEST(Wire, EmptyTensorRoundTrips) {
  const EncodedTensor e = *qsgdEncode(std::span<const float>(), QsgdOptions{}, {});
  Result<EncodedTensor> back = fromWire(wire(e));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(back->count, 0);
}

TEST(Wire, TruncatedMessages) {
  const std::vector<uint8_t> good = wire(sample());
  EXPECT_EQ(parseError({}), "message is 0 bytes, shorter than the 64-byte header");
  EXPECT_EQ(parseError(std::vector<uint8_t>(good.begin(), good.begin() + 70)),
            "message is 70 bytes, shorter than its 80-byte header and shape");
  for (size_t cut : {size_t{80}, size_t{81}, good.size() / 2, good.size() - 1}) {
    const std::string error = parseError(std::vector<uint8_t>(good.begin(), good.begin() + cut));
    EXPECT_THAT(error, HasSubstr(": truncated")) << cut;
  }
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_THAT(parseError(longer), HasSubstr(": trailing bytes"));
}

TEST(Wire, EveryHeaderFieldIsChecked) {
  const std::vector<uint8_t> good = wire(sample());
  ASSERT_EQ(parseError(good), "");
  struct Mutation {
    const char* what;
    std::function<void(std::vector<uint8_t>&)> apply;
    const char* expected;
  };
  const std::vector<Mutation> mutations = {
      {"magic", [](auto& b) { b[0] = 'X'; }, "bad magic"},
      {"version", [](auto& b) { poke<uint16_t>(b, 4, 2); }, "unknown format version 2"},
      {"header bytes", [](auto& b) { poke<uint16_t>(b, 6, 72); }, "header bytes field is 72"},
      {"codec", [](auto& b) { b[8] = 9; }, "codec id 9 is unknown"},
      {"bits 0", [](auto& b) { b[9] = 0; }, "bits field is 0"},
      {"bits 17", [](auto& b) { b[9] = 17; }, "bits field is 17"},
      {"layout", [](auto& b) { b[10] = 2; }, "layout field is 2"},
      {"norm", [](auto& b) { b[11] = 5; }, "norm field is 5"},
      {"dtype", [](auto& b) { b[12] = 3; }, "dtype field is 3"},
      {"scale bytes", [](auto& b) { b[13] = 8; }, "scale bytes field is 8"},
      {"ndim", [](auto& b) { poke<uint16_t>(b, 14, 40); }, "ndim 40 exceeds 32"},
      {"flags", [](auto& b) { poke<uint32_t>(b, 16, 0x80u | kFlagCrc); }, "hold unknown bits"},
      {"reserved", [](auto& b) { b[60] = 1; }, "reserved header field is not zero"},
      {"bucket 0", [](auto& b) { poke<int64_t>(b, 24, 0); }, "bucket size field is 0"},
      {"count < 0", [](auto& b) { poke<int64_t>(b, 32, -5); }, "element count is negative: -5"},
      {"count huge", [](auto& b) { poke<int64_t>(b, 32, int64_t{1} << 62); }, "exceeds 2^56"},
      {"word count", [](auto& b) { poke<int64_t>(b, 40, 7); }, "word count field is 7"},
      {"count vs words", [](auto& b) { poke<int64_t>(b, 32, 2000); }, "word count field is"},
      {"hash", [](auto& b) { b[50] ^= 1; }, "config hash does not match"},
      {"shape", [](auto& b) { poke<int64_t>(b, 64, 11); },
       "shape holds 1100 values but the count is 1000"},
      {"negative dim", [](auto& b) { poke<int64_t>(b, 72, -100); },
       "shape dimension 1 is negative"},
      {"payload", [](auto& b) { b[b.size() - 3] ^= 0x10; }, "payload CRC32C mismatch"},
      {"scale", [](auto& b) { b[80] ^= 0x01; }, "payload CRC32C mismatch"},
  };
  for (const Mutation& m : mutations) {
    std::vector<uint8_t> bad = good;
    m.apply(bad);
    EXPECT_THAT(parseError(bad), HasSubstr(m.expected)) << m.what;
  }
}

// Forged sizes that agree with each other (so that no single field check refuses them): the
// message's own length still has to match what its header describes, and it is compared before
// anything is allocated (a 2^56-value header in a 200-byte message is an error, not a 2^59-byte
// allocation). Found by fuzzing (tests/fuzz): an overflowing block count in the quantizers' reader.
TEST(Wire, ForgedSizesFailBeforeAllocating) {
  std::vector<uint8_t> qsgd = wire(sample(), false);
  QsgdOptions o;
  o.bits = 3;
  o.bucketSize = 128;
  o.layout = Layout::kCompact;
  for (int64_t count : {int64_t{1} << 56, (int64_t{1} << 56) - 1}) {
    const QsgdGeometry g = qsgdGeometry(count, o).value();
    poke<int64_t>(qsgd, 32, count);
    poke<int64_t>(qsgd, 40, g.wordCount);
    poke<int64_t>(qsgd, 64, count);  // shape {count, 1}
    poke<int64_t>(qsgd, 72, 1);
    EXPECT_THAT(parseError(qsgd), HasSubstr(": truncated")) << count;
  }
  poke<int64_t>(qsgd, 32, (int64_t{1} << 56) + 1);
  EXPECT_THAT(parseError(qsgd), HasSubstr("exceeds 2^56"));

  std::vector<float> v(500, 0.25f);
  const QuantizedTensor q = quantize(v, parseQuantSpec("linear:bits=4,block=100").value()).value();
  std::vector<uint8_t> quant(quantWireSize(q).value());
  ASSERT_TRUE(writeQuantWire(q, false, quant).isOk());
  const size_t shapeAt = 64;  // one dimension
  for (const int64_t count : {int64_t{1} << 56, int64_t{1} << 40}) {
    poke<int64_t>(quant, 32, count);
    poke<int64_t>(quant, 40, (count * 4 + 63) / 64);
    poke<int64_t>(quant, shapeAt, count);
    const Result<QuantizedTensor> r = quantFromWire(quant);
    ASSERT_FALSE(r.isOk()) << count;
    EXPECT_THAT(r.status().message(), HasSubstr(": truncated")) << count;
  }
  for (const int64_t count : {(int64_t{1} << 56) + 1, int64_t{1} << 62,
                              std::numeric_limits<int64_t>::max(), int64_t{-1}}) {
    poke<int64_t>(quant, 32, count);
    const Result<QuantizedTensor> r = quantFromWire(quant);
    ASSERT_FALSE(r.isOk()) << count;
    EXPECT_THAT(r.status().message(), HasSubstr("is invalid")) << count;
  }
  // A block size near INT64_MAX makes no overflow in the block count.
  QuantizedTensor huge = q;
  huge.blockSize = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(huge.numBlocks(), 1);
}

TEST(Wire, ScalesAreValidatedWithoutCrc) {
  const std::vector<uint8_t> good = wire(sample(), /*crc=*/false);
  std::vector<uint8_t> negative = good;
  poke<float>(negative, 80, -1.0f);
  EXPECT_THAT(parseError(negative), HasSubstr("scale of bucket 0 is invalid: -1"));
  std::vector<uint8_t> infinite = good;
  poke<float>(infinite, 84, std::numeric_limits<float>::infinity());
  EXPECT_THAT(parseError(infinite), HasSubstr("scale of bucket 1 is invalid: inf"));
  std::vector<uint8_t> negativeZero = good;  // -0 compares equal to 0: a valid scale
  poke<float>(negativeZero, 84, -0.0f);
  EXPECT_EQ(parseError(negativeZero), "");
  std::vector<uint8_t> nan = good;
  poke<float>(nan, 84, std::nanf(""));
  EXPECT_EQ(parseError(nan), "a bucket scale is NaN but the non-finite flag is clear");
  std::vector<uint8_t> flagged = good;
  uint32_t flags = 0;
  std::memcpy(&flags, good.data() + 16, 4);
  poke<uint32_t>(flagged, 16, flags | kFlagNonFinite);
  EXPECT_EQ(parseError(flagged), "the non-finite flag is set but no bucket scale is NaN");
  std::vector<uint8_t> crcWithoutFlag = good;
  poke<uint32_t>(crcWithoutFlag, 20, 1234);
  EXPECT_EQ(parseError(crcWithoutFlag), "CRC field is set but the CRC flag is clear");
}

TEST(Wire, RandomCorruptionNeverCrashes) {
  const std::vector<uint8_t> good = wire(sample(), /*crc=*/false);
  std::mt19937 rng(1);
  int rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> bad = good;
    const int flips = 1 + trial % 4;
    for (int f = 0; f < flips; ++f) bad[rng() % 80] ^= static_cast<uint8_t>(1u << (rng() % 8));
    if (trial % 3 == 0) bad.resize(rng() % bad.size());
    Result<EncodedTensor> e = fromWire(bad);
    if (!e.isOk()) {
      ++rejected;
      continue;
    }
    // Whatever parses must decode without touching memory it does not own.
    std::vector<float> out(e->count);
    EXPECT_TRUE(qsgdDecode(*e, std::span<float>(out)).isOk());
  }
  EXPECT_GT(rejected, 2500);
}

TEST(Wire, ViewReadsTheMessageInPlace) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    for (bool nonFinite : {false, true}) {
      const EncodedTensor e = sample(dtype, nonFinite);
      const std::vector<uint8_t> bytes = wire(e);
      Result<EncodedView> view = viewWire(bytes);
      ASSERT_TRUE(view.isOk()) << view.status().toString();
      // No copy: the words and scales are the message's own bytes.
      const uint8_t* begin = bytes.data();
      const uint8_t* end = begin + bytes.size();
      const auto* words = reinterpret_cast<const uint8_t*>(view->words.data());
      EXPECT_TRUE(words >= begin && words + 8 * view->words.size() == end);
      const auto* scales = dtype == DType::kFloat32
                               ? reinterpret_cast<const uint8_t*>(view->scalesF32.data())
                               : reinterpret_cast<const uint8_t*>(view->scalesF64.data());
      EXPECT_TRUE(scales > begin && scales < words);
      EXPECT_EQ(view->count, e.count);
      EXPECT_EQ(view->flags, e.flags);
      ASSERT_EQ(static_cast<int64_t>(view->scaleCount()), e.numBuckets());
      for (int64_t b = 0; b < e.numBuckets(); ++b) {
        EXPECT_TRUE(view->scale(b) == e.scales[b] ||
                    (std::isnan(view->scale(b)) && std::isnan(e.scales[b])));
      }
      EXPECT_TRUE(std::equal(e.words.begin(), e.words.end(), view->words.begin()));
      std::vector<float> fromView(e.count), fromCopy(e.count);
      ASSERT_TRUE(qsgdDecode(*view, std::span<float>(fromView)).isOk());
      ASSERT_TRUE(qsgdDecode(e, std::span<float>(fromCopy)).isOk());
      EXPECT_EQ(std::memcmp(fromView.data(), fromCopy.data(), 4 * fromView.size()), 0);
    }
  }
}

TEST(Wire, ViewNeedsAnAlignedMessage) {
  const std::vector<uint8_t> bytes = wire(sample());
  std::vector<uint8_t> shifted(bytes.size() + 1);
  std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
  const Result<EncodedView> view = viewWire(std::span<const uint8_t>(shifted).subspan(1));
  EXPECT_EQ(view.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(view.status().message(),
            "a message viewed in place must start at an 8-byte aligned address (this one is at "
            "offset 1); copy it with fromWire instead");
  // The copying parser takes it, and decodeWireMessage picks the path by itself: the same floats
  // as from the aligned message.
  const std::span<const uint8_t> misaligned = std::span<const uint8_t>(shifted).subspan(1);
  EXPECT_TRUE(fromWire(misaligned).isOk());
  std::vector<float> fromMisaligned(1000), fromAligned(1000);
  ASSERT_TRUE(decodeWireMessage(misaligned, fromMisaligned).isOk());
  ASSERT_TRUE(decodeWireMessage(bytes, fromAligned).isOk());
  EXPECT_EQ(std::memcmp(fromMisaligned.data(), fromAligned.data(), 4 * 1000), 0);
}

// One CodecScratch carried from message to message, across codecs, sizes and an unaligned QSGD
// message (and past a corrupted one), gives what fresh buffers give: the same bytes encoded, the
// same floats decoded.
TEST(Wire, ScratchReusedAcrossCodecsGivesWhatFreshBuffersGive) {
  CodecScratch scratch;
  int round = 0;
  for (const char* text : {"qsgd:bits=4,bucket=512,norm=max", "linear:bits=3,mode=asym,block=100",
                           "bf16", "qsgd:bits=2,bucket=64,layout=seed", "rowwise:bits=5,block=50",
                           "percentile:bits=7,p=99.5", "linear:bits=8,block=7"}) {
    SCOPED_TRACE(text);
    const CodecConfig codec = parseAnyCodecSpec(text).value();
    const int64_t n = 3000 - 400 * round;  // a smaller tensor each time: stale tails must not show
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = std::sin(float(i) * 0.37f + round);
    const RandomKey key{9, 1, 2, uint64_t(round++)};
    std::vector<uint8_t> fresh, reused;
    ASSERT_TRUE(encodeWireMessage(v, codec, key, true, &fresh).isOk());
    ASSERT_TRUE(encodeWireMessage(v, codec, key, true, &reused, nullptr, 0, &scratch).isOk());
    EXPECT_EQ(reused, fresh);
    std::vector<uint8_t> corrupted = fresh;
    corrupted.back() ^= 1;
    std::vector<float> want(n), got(n, -1.0f);
    EXPECT_FALSE(decodeWireMessage(corrupted, got, nullptr, &scratch).isOk());
    ASSERT_TRUE(decodeWireMessage(fresh, want).isOk());
    ASSERT_TRUE(decodeWireMessage(fresh, got, nullptr, &scratch).isOk());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), 4 * n), 0);
    std::vector<uint8_t> shifted(fresh.size() + 1);  // unaligned: QSGD decodes from a copy
    std::memcpy(shifted.data() + 1, fresh.data(), fresh.size());
    std::fill(got.begin(), got.end(), -1.0f);
    ASSERT_TRUE(
        decodeWireMessage(std::span<const uint8_t>(shifted).subspan(1), got, nullptr, &scratch)
            .isOk());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), 4 * n), 0);
  }
}

TEST(Wire, DecodeMeanOfViewsEqualsDecodeMeanOfCopies) {
  std::vector<EncodedTensor> codes;
  std::vector<std::vector<uint8_t>> messages;
  for (uint32_t r = 0; r < 3; ++r) {
    std::vector<float> v(5000);
    for (size_t i = 0; i < v.size(); ++i) v[i] = std::cos(float(i * (r + 1)));
    QsgdOptions o;
    o.bucketSize = 512;
    o.norm = NormKind::kMax;
    codes.push_back(*qsgdEncode(std::span<const float>(v), o, {5, r, 0, 0}));
    messages.push_back(wire(codes.back()));
  }
  std::vector<EncodedView> views;
  for (const auto& m : messages) views.push_back(*viewWire(m));
  const std::vector<const EncodedTensor*> pointers = {&codes[0], &codes[1], &codes[2]};
  std::vector<float> fromViews(5000), fromCopies(5000);
  ASSERT_TRUE(qsgdDecodeMean(std::span<const EncodedView>(views), fromViews).isOk());
  ASSERT_TRUE(qsgdDecodeMean(pointers, fromCopies).isOk());
  EXPECT_EQ(std::memcmp(fromViews.data(), fromCopies.data(), 4 * fromViews.size()), 0);
}

TEST(Wire, Crc32cKnownAnswer) {
  // RFC 3720 B.4: 32 bytes of zeros -> 0x8A9136AA; "123456789" -> 0xE3069283.
  const std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  const std::string digits = "123456789";
  EXPECT_EQ(crc32c(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(digits.data()), 9)),
            0xE3069283u);
}

TEST(Wire, WriterRejectsInconsistentTensorsAndWrongBuffers) {
  EncodedTensor e = sample();
  std::vector<uint8_t> small(10);
  EXPECT_EQ(writeWire(e, {}, small).message(),
            "wire buffer holds 10 bytes, the message needs " + std::to_string(*wireSize(e)));
  e.scales.pop_back();
  EXPECT_THAT(toWire(e).status().message(), HasSubstr("expected 8 bucket scales"));
}

}  // namespace
}  // namespace qcomm
