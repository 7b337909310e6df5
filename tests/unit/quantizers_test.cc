// The block quantizers (linear, percentile, dynamic, row-wise, fp16/bf16): packing, the casts'
// bit patterns, the dynamic map, round-trip error bounds, unbiased stochastic rounding, blocks that
// do not divide n, constant/zero/non-finite input, specs and wire messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "codec/quant_format.h"
#include "qcomm/quantizers.h"

namespace qcomm {
namespace {

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

QuantOptions spec(const char* text) {
  Result<QuantOptions> o = parseQuantSpec(text);
  EXPECT_TRUE(o.isOk()) << o.status().message();
  return o.value();
}

std::vector<float> roundTrip(const std::vector<float>& x, const QuantOptions& o,
                             const RandomKey& key = {}, std::vector<int64_t> shape = {}) {
  Result<QuantizedTensor> q = quantize(x, o, key, shape);
  EXPECT_TRUE(q.isOk()) << q.status().message();
  std::vector<float> y(x.size());
  EXPECT_TRUE(dequantize(q.value(), y).isOk());
  return y;
}

TEST(QuantPacking, CodesOfEveryWidthRoundTripThroughStraddlingWords) {
  std::mt19937 gen(3);
  for (const int bits : {2, 3, 5, 7, 8, 16}) {
    const int64_t n = 1000;
    std::vector<uint32_t> codes(n);
    for (uint32_t& c : codes) c = gen() & ((1u << bits) - 1);
    std::vector<uint64_t> words(quant::wordsFor(n, bits), 0);
    for (int64_t w = 0; w < static_cast<int64_t>(words.size()); ++w) {
      for (int64_t i = quant::firstCode(w, bits); i <= std::min(quant::lastCode(w, bits), n - 1);
           ++i) {
        words[w] |= quant::codeBitsInWord(codes[i], i, bits, w);
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(quant::readCode(words.data(), i, bits), codes[i]) << "bits " << bits << " code " << i;
    }
    EXPECT_EQ(words.size(), static_cast<size_t>((n * bits + 63) / 64));  // dense: no gaps
  }
}

TEST(QuantCasts, HalfAndBfloat16BitPatterns) {
  EXPECT_EQ(quant::toFp16(1.0f), 0x3C00u);
  EXPECT_EQ(quant::toFp16(-2.0f), 0xC000u);
  EXPECT_EQ(quant::toFp16(65504.0f), 0x7BFFu);
  EXPECT_EQ(quant::toFp16(65519.0f), 0x7BFFu);  // below the midpoint to infinity
  EXPECT_EQ(quant::toFp16(65520.0f), 0x7C00u);  // the midpoint rounds (to even) to infinity
  EXPECT_EQ(quant::toFp16(0x1p-24f), 0x0001u);  // the smallest subnormal half
  EXPECT_EQ(quant::toFp16(0x1p-25f), 0x0000u);  // a tie, to even: zero
  EXPECT_EQ(quant::toFp16(0x1.8p-24f), 0x0002u);  // 1.5 subnormal steps: a tie, to even
  EXPECT_EQ(quant::toFp16(0x1.002p0f), 0x3C00u);  // halfway between 1 and 1 + 2^-10: to even
  EXPECT_EQ(quant::toFp16(0x1.00ep0f), 0x3C04u);  // halfway between 3 and 4 ulps: to even
  EXPECT_EQ(quant::toFp16(0x1.ffcp-15f), 0x0400u);  // 1023.5 subnormal steps: to even, 2^-14
  EXPECT_EQ(quant::toFp16(std::numeric_limits<float>::infinity()), 0x7C00u);
  EXPECT_TRUE(std::isnan(quant::fromFp16(quant::toFp16(std::nanf("")))));
  for (const float x : {0.0f, -0.0f, 1.0f, 0.333251953125f, 0x1p-24f, 0x1.ff8p-15f, 65504.0f}) {
    EXPECT_EQ(quant::fromFp16(quant::toFp16(x)), x) << x;  // representable: exact
    EXPECT_EQ(std::signbit(quant::fromFp16(quant::toFp16(x))), std::signbit(x));
  }
  EXPECT_EQ(quant::toBf16(1.0f), 0x3F80u);
  EXPECT_EQ(quant::toBf16(quant::bitsFloat(0x3F808000u)), 0x3F80u);  // tie, to even
  EXPECT_EQ(quant::toBf16(quant::bitsFloat(0x3F818000u)), 0x3F82u);  // tie, to even
  EXPECT_EQ(quant::toBf16(quant::bitsFloat(0x3F808001u)), 0x3F81u);
  EXPECT_TRUE(std::isnan(quant::fromBf16(quant::toBf16(std::nanf("")))));
}

TEST(QuantDynamic, TheMapHas256SortedValuesFromMinusOneToOne) {
  const std::span<const float, 256> map = dynamicMap();
  EXPECT_TRUE(std::is_sorted(map.begin(), map.end()));
  EXPECT_EQ(std::adjacent_find(map.begin(), map.end()), map.end());  // strictly increasing
  EXPECT_EQ(map.back(), 1.0f);
  EXPECT_GE(map.front(), -1.0f);
  EXPECT_NE(std::find(map.begin(), map.end(), 0.0f), map.end());
  // The smallest magnitudes are 1e-6 * (0.1 + 1) / 2 (note 002's first exponent).
  EXPECT_FLOAT_EQ(*std::upper_bound(map.begin(), map.end(), 0.0f), 0.55e-6f);
}

TEST(QuantRoundTrip, NearestRoundingStaysWithinHalfAStep) {
  const std::vector<float> x = gaussian(10000, 1);
  for (const char* text : {"linear:bits=8,rounding=nearest", "linear:bits=3,rounding=nearest",
                           "linear:bits=5,mode=asym,block=1000,rounding=nearest",
                           "rowwise:bits=4,block=777,rounding=nearest"}) {
    const QuantOptions o = spec(text);
    const QuantizedTensor q = quantize(x, o).value();
    std::vector<float> y(x.size());
    ASSERT_TRUE(dequantize(q, y).isOk());
    for (size_t i = 0; i < x.size(); ++i) {
      const double step = q.scales[i / q.blockSize];
      ASSERT_LE(std::fabs(double(x[i]) - y[i]), step / 2 * (1 + 1e-5) + 1e-6) << text << " " << i;
    }
  }
  // Dynamic: the nearest map value to x / absmax, times absmax (the map's most negative value is
  // -0.99297, so -absmax itself is not exact).
  const QuantizedTensor q = quantize(x, spec("dynamic:block=512,rounding=nearest")).value();
  std::vector<float> y(x.size());
  ASSERT_TRUE(dequantize(q, y).isOk());
  const std::span<const float, 256> map = dynamicMap();
  for (size_t i = 0; i < x.size(); ++i) {
    const double absmax = q.scales[i / 512];
    const float v = static_cast<float>(x[i] / absmax);
    double nearest = 2.0;
    for (const float m : map) nearest = std::min(nearest, std::fabs(double(m) - v));
    ASSERT_LE(std::fabs(double(x[i]) - y[i]), nearest * absmax * (1 + 1e-5) + 1e-6) << i;
  }
  // Casts: relative error of half an ulp.
  const std::vector<float> h = roundTrip(x, spec("fp16"));
  const std::vector<float> b = roundTrip(x, spec("bf16"));
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::fabs(x[i]) > 1e-4f) ASSERT_LE(std::fabs(x[i] - h[i]), std::fabs(x[i]) * 0x1p-11f);
    ASSERT_LE(std::fabs(x[i] - b[i]), std::fabs(x[i]) * 0x1p-8f);
  }
}

TEST(QuantRoundTrip, StochasticRoundingIsUnbiased) {
  // Every quantizer that rounds stochastically, averaged over many seeds: unbiased everywhere,
  // the extremes of every block included (issue 15: asymmetric linear came back up to half a
  // step high at a block's minimum, the dynamic map clipped values below its -0.99297).
  const std::vector<float> x = gaussian(512, 2);
  for (const char* text :
       {"linear:bits=2,mode=asym", "linear:bits=4,mode=asym,block=100", "linear:bits=3",
        "dynamic:block=64", "dynamic", "rowwise:bits=2,block=128", "percentile:bits=3,p=99",
        "percentile:bits=3,p=100,mode=asym,block=128", "linear:bits=2,mode=asym,random_bits=32",
        "dynamic:block=64,random_bits=32", "rowwise:bits=2,block=128,random_bits=16"}) {
    const QuantOptions o = spec(text);
    ASSERT_EQ(o.rounding, Rounding::kStochastic) << text;
    const QuantizedTensor probe = quantize(x, o).value();
    std::vector<double> mean(x.size(), 0.0);
    const int steps = 4000;
    for (int s = 0; s < steps; ++s) {
      const std::vector<float> y = roundTrip(x, o, {9, 0, 0, static_cast<uint64_t>(s)});
      for (size_t i = 0; i < x.size(); ++i) mean[i] += y[i] / steps;
    }
    // One draw errs by at most one step (sd <= step/2): 6 sd of the mean over `steps` draws.
    const double tolerance = 6.0 * 0.5 / std::sqrt(double(steps));
    const int64_t block = probe.blockSize;
    auto stepOf = [&](size_t i) {
      // The dynamic map's widest gap is 0.0141 of the scale.
      return o.kind == QuantKind::kDynamic ? probe.scales[i / block] * 0.0142
                                           : double(probe.scales[i / block]);
    };
    double worst = 0.0;
    for (size_t i = 0; i < x.size(); ++i) {
      // Percentile clips the values beyond its percentiles by design (p < 100).
      if (o.kind == QuantKind::kPercentile && o.percentile < 100.0 &&
          std::fabs(x[i]) > probe.scales[0] * 3) {
        continue;
      }
      worst = std::max(worst, std::fabs(mean[i] - x[i]) / stepOf(i));
    }
    EXPECT_LT(worst, tolerance) << text;
    if (o.kind == QuantKind::kPercentile && o.percentile < 100.0) continue;
    // The extremes by name: each block's minimum and maximum.
    for (int64_t b0 = 0; b0 < static_cast<int64_t>(x.size()); b0 += block) {
      const auto first = x.begin() + b0, last = x.begin() + std::min<int64_t>(b0 + block, 512);
      for (auto it : {std::min_element(first, last), std::max_element(first, last)}) {
        const size_t i = static_cast<size_t>(it - x.begin());
        EXPECT_LT(std::fabs(mean[i] - x[i]) / stepOf(i), tolerance)
            << text << ": the block at " << b0 << " has its " << (it == std::min_element(first, last) ? "minimum" : "maximum")
            << " " << x[i] << " at " << i << "; the mean of " << steps << " round trips is "
            << mean[i];
      }
    }
  }
}

TEST(QuantBlocks, BlocksThatDoNotDivideNAndTheirParameters) {
  std::vector<float> x = gaussian(1000, 4);
  const QuantizedTensor q =
      quantize(x, spec("linear:bits=8,mode=asym,block=64,rounding=nearest")).value();
  ASSERT_EQ(q.numBlocks(), 16);
  ASSERT_EQ(q.scales.size(), 16u);
  ASSERT_EQ(q.zeroPoints.size(), 16u);
  // The last block (values 960..999) has its own range.
  const auto [lo, hi] = std::minmax_element(x.begin() + 960, x.end());
  const double alpha = std::max(0.0f, *hi), beta = std::min(0.0f, *lo);
  EXPECT_FLOAT_EQ(q.scales[15], static_cast<float>((alpha - beta) / 255.0));
  EXPECT_EQ(q.zeroPoints[15], std::nearbyint(-beta / q.scales[15]));
  // Stochastic rounding: 254 steps and the zero point rounded up, so that the grid covers the
  // block's range (unbiased at its ends).
  const QuantizedTensor s =
      quantize(x, spec("linear:bits=8,mode=asym,block=64,rounding=stochastic")).value();
  EXPECT_FLOAT_EQ(s.scales[15], static_cast<float>((alpha - beta) / 254.0));
  EXPECT_EQ(s.zeroPoints[15], std::ceil(-beta / s.scales[15]));
  EXPECT_LE(-s.zeroPoints[15] * s.scales[15], beta);
  EXPECT_GE((255 - s.zeroPoints[15]) * s.scales[15], alpha);
  // Row-wise takes the last dimension of the shape as the row.
  const QuantizedTensor r = quantize(x, spec("rowwise:bits=4"), {}, std::vector<int64_t>{40, 25}).value();
  EXPECT_EQ(r.blockSize, 25);
  EXPECT_EQ(r.numBlocks(), 40);
  EXPECT_EQ(r.zeroPoints[3], *std::min_element(x.begin() + 75, x.begin() + 100));
}

TEST(QuantEdges, ConstantZeroAndNonFiniteInput) {
  const std::vector<float> zeros(300, 0.0f);
  for (const char* text : {"linear:bits=4", "linear:bits=4,mode=asym", "percentile:bits=4",
                           "dynamic", "rowwise:bits=4", "fp16", "bf16"}) {
    for (const float y : roundTrip(zeros, spec(text))) ASSERT_EQ(y, 0.0f) << text;
  }
  const std::vector<float> constant(300, 2.5f);
  for (const float y : roundTrip(constant, spec("rowwise:bits=4"))) ASSERT_EQ(y, 2.5f);
  for (const char* text : {"linear:bits=4", "linear:bits=4,mode=asym", "dynamic"}) {
    for (const float y : roundTrip(constant, spec(text))) ASSERT_NEAR(y, 2.5f, 1e-6f) << text;
  }
  std::vector<float> x = gaussian(300, 5);
  x[150] = std::numeric_limits<float>::infinity();
  for (const char* text : {"linear:bits=4,block=100", "percentile:bits=4,block=100",
                           "dynamic:block=100", "rowwise:bits=4,block=100"}) {
    const QuantizedTensor q = quantize(x, spec(text)).value();
    EXPECT_EQ(q.flags & kFlagNonFinite, kFlagNonFinite) << text;
    std::vector<float> y(x.size());
    ASSERT_TRUE(dequantize(q, y).isOk());
    for (int i = 0; i < 300; ++i) {
      ASSERT_EQ(std::isnan(y[i]), i >= 100 && i < 200) << text << " value " << i;
    }
  }
  const QuantizedTensor h = quantize(x, spec("fp16")).value();
  EXPECT_EQ(h.flags & kFlagNonFinite, kFlagNonFinite);
}

TEST(QuantSpecs, ParseAndNameWhatIsWrong) {
  const QuantOptions o = spec("linear:bits=4,mode=asym,rounding=nearest,block=128");
  EXPECT_EQ(o.kind, QuantKind::kLinear);
  EXPECT_EQ(o.bits, 4);
  EXPECT_FALSE(o.symmetric);
  EXPECT_EQ(o.rounding, Rounding::kNearest);
  EXPECT_EQ(o.blockSize, 128);
  EXPECT_EQ(quantSpec(o), "linear:bits=4,block=128,rounding=nearest,mode=asym");
  EXPECT_EQ(quantSpec(spec(quantSpec(o).c_str())), quantSpec(o));
  EXPECT_EQ(spec("percentile:p=99.99").percentile, 99.99);
  EXPECT_EQ(spec("fp16").bits, 16);
  const auto error = [](const char* text) { return parseQuantSpec(text).status().message(); };
  EXPECT_NE(error("linear:bits=9").find("bits in [2, 8], got 9"), std::string::npos);
  EXPECT_NE(error("linear:mode=both").find("mode='both' (sym or asym)"), std::string::npos);
  EXPECT_NE(error("linear:p=99").find("unknown key 'p'"), std::string::npos);
  EXPECT_NE(error("dynamic:bits=4").find("8 bits"), std::string::npos);
  EXPECT_NE(error("dynamic:block=32").find("at least 64"), std::string::npos);
  EXPECT_NE(error("percentile:p=40").find("(50, 100]"), std::string::npos);
  EXPECT_NE(error("fp16:rounding=stochastic").find("nearest only"), std::string::npos);
  EXPECT_NE(error("gzip").find("unknown codec 'gzip'"), std::string::npos);
  // Random bits per value: 16 by default, 32 on request, for stochastic rounding only; named in
  // the spec only when not the default.
  EXPECT_EQ(spec("linear").randomBits, 16);
  EXPECT_EQ(spec("linear:rounding=nearest").randomBits, 16);
  EXPECT_EQ(spec("linear:bits=4,random_bits=32").randomBits, 32);
  EXPECT_EQ(quantSpec(spec("rowwise:bits=4,block=8,random_bits=32")),
            "rowwise:bits=4,block=8,rounding=stochastic,random_bits=32");
  EXPECT_EQ(quantSpec(spec("linear:random_bits=16")).find("random_bits"), std::string::npos);
  EXPECT_EQ(quantSpec(spec("linear:rounding=nearest")).find("random_bits"), std::string::npos);
  EXPECT_NE(error("linear:random_bits=24").find("random_bits must be 32 or 16, got 24"),
            std::string::npos);
  EXPECT_NE(error("linear:random_bits=x").find("random_bits='x' is not an integer"),
            std::string::npos);
  for (const char* text : {"linear:rounding=nearest,random_bits=16",
                           "linear:random_bits=32,rounding=nearest", "fp16:random_bits=16"}) {
    EXPECT_NE(error(text).find("random_bits applies to stochastic rounding"), std::string::npos)
        << text;
  }
  QuantOptions nearest32 = spec("linear:rounding=nearest");
  nearest32.randomBits = 32;
  EXPECT_NE(nearest32.validate().message().find("random_bits=32 applies to stochastic rounding"),
            std::string::npos);
}

TEST(QuantRandomBits, SixteenBitDrawsAreTheHalvesOfHalfAsManyPhiloxWords) {
  // The words of 16-bit draws differ from 32-bit ones (the scales do not), are the same on one
  // and three threads, and the option travels in the message (quant_kernels_test checks the
  // words against the value-by-value definition, qsgd::randomBits(i, step, key, 16)).
  const std::vector<float> x = gaussian(70001, 8);
  const QuantOptions o32 = spec("linear:bits=4,mode=asym,block=512,random_bits=32");
  const QuantOptions o16 = spec("linear:bits=4,mode=asym,block=512");
  const RandomKey key{3, 1, 4, 15};
  const QuantizedTensor a = quantize(x, o16, key).value();
  EXPECT_NE(a.words, quantize(x, o32, key).value().words);
  EXPECT_EQ(a.scales, quantize(x, o32, key).value().scales);
  Executor pool(3);
  EXPECT_EQ(quantize(x, o16, key, {}, &pool).value().words, a.words);
  std::vector<double> doubles(x.begin(), x.end());
  const QuantizedTensor fromDoubles = quantize(doubles, o16, key).value();
  const QuantizedTensor fromDoubles32 = quantize(doubles, o32, key).value();
  EXPECT_NE(fromDoubles.words, fromDoubles32.words);  // the float64 path draws 16 bits too
  std::vector<uint8_t> message(quantWireSize(a).value());
  ASSERT_TRUE(writeQuantWire(a, false, message).isOk());
  uint32_t flags = 0;
  std::memcpy(&flags, message.data() + 16, 4);
  EXPECT_NE(flags & kFlagRandom16, 0u);
  const QuantizedTensor back = quantFromWire(message).value();
  EXPECT_EQ(back.options.randomBits, 16);
  EXPECT_EQ(back.flags, a.flags);
  EXPECT_EQ(back.words, a.words);
  // The flag on a nearest-rounded message is a contradiction, named as such.
  const QuantizedTensor nearest = quantize(x, spec("linear:bits=4,rounding=nearest"), key).value();
  std::vector<uint8_t> bad(quantWireSize(nearest).value());
  ASSERT_TRUE(writeQuantWire(nearest, false, bad).isOk());
  bad[16] |= static_cast<uint8_t>(kFlagRandom16);
  EXPECT_NE(quantFromWire(bad).status().message().find("16-bit draws for a message rounded to "
                                                      "nearest"),
            std::string::npos);
  // Without it, a nearest-rounded message reads back with the default, as its options were.
  std::vector<uint8_t> plain(quantWireSize(nearest).value());
  ASSERT_TRUE(writeQuantWire(nearest, false, plain).isOk());
  std::memcpy(&flags, plain.data() + 16, 4);
  EXPECT_EQ(flags & kFlagRandom16, 0u);
  const QuantOptions readBack = quantFromWire(plain).value().options;
  EXPECT_EQ(readBack.randomBits, nearest.options.randomBits);
  EXPECT_EQ(readBack.rounding, Rounding::kNearest);
  EXPECT_TRUE(readBack.validate().isOk());
  // 32-bit draws: the flag clear, read back as 32.
  const QuantizedTensor wide = quantize(x, o32, key).value();
  std::vector<uint8_t> wideMessage(quantWireSize(wide).value());
  ASSERT_TRUE(writeQuantWire(wide, false, wideMessage).isOk());
  std::memcpy(&flags, wideMessage.data() + 16, 4);
  EXPECT_EQ(flags & kFlagRandom16, 0u);
  EXPECT_EQ(quantFromWire(wideMessage).value().options.randomBits, 32);
}

// The size of a message without quantizing: what quantize + quantWireSize give, for every codec,
// default and explicit blocks, and counts around the word and block boundaries.
TEST(QuantWire, SizeForACountEqualsTheSizeOfTheMessage) {
  for (const char* text : {"linear:bits=8", "linear:bits=3,mode=asym,block=100",
                           "linear:bits=4,mode=asym,block=512,random_bits=32",
                           "percentile:bits=7,p=99.5,block=64", "dynamic", "dynamic:block=256",
                           "rowwise:bits=5,block=50", "rowwise:bits=2", "fp16", "bf16"}) {
    const QuantOptions o = spec(text);
    for (const int64_t n : {0, 1, 7, 63, 64, 65, 100, 4095, 4096, 4097, 10000}) {
      const std::vector<float> zeros(n, 0.0f);
      const size_t want = quantWireSize(quantize(zeros, o).value()).value();
      EXPECT_EQ(quantWireSizeFor(o, n).value(), want) << text << " " << n;
    }
    const std::vector<double> zeros64(1000, 0.0);
    EXPECT_EQ(quantWireSizeFor(o, 1000, DType::kFloat64).value(),
              quantWireSize(quantize(zeros64, o).value()).value())
        << text;
  }
  EXPECT_EQ(quantWireSizeFor(spec("linear:bits=8"), -1).status().message(),
            "value count -1 is invalid (0 to 2^56)");
  QuantOptions bad = spec("linear:bits=8");
  bad.bits = 0;
  EXPECT_FALSE(quantWireSizeFor(bad, 10).isOk());
}

// quantFromWireInto a tensor that held other messages (with and without zero points, longer
// and shorter) leaves every field as quantFromWire makes it.
TEST(QuantWire, IntoATensorThatHeldAnotherEqualsAFreshOne) {
  QuantizedTensor into;
  EXPECT_EQ(quantFromWireInto({}, nullptr).message(),
            "quantFromWireInto needs an output tensor, got null");
  int64_t n = 1200;
  for (const char* text : {"linear:bits=3,mode=asym,block=100", "percentile:bits=7,p=99.5",
                           "bf16", "rowwise:bits=5,block=50", "dynamic:block=256",
                           "linear:bits=8,mode=asym,block=7", "fp16"}) {
    SCOPED_TRACE(text);
    n -= 150;
    const std::vector<float> x = gaussian(n, 7);
    const QuantizedTensor q = quantize(x, spec(text), {1, 2, 3, 4}).value();
    std::vector<uint8_t> message(quantWireSize(q).value());
    ASSERT_TRUE(writeQuantWire(q, true, message).isOk());
    std::vector<uint8_t> bad = message;
    bad.pop_back();
    EXPECT_FALSE(quantFromWireInto(bad, &into).isOk());
    const QuantizedTensor fresh = quantFromWire(message).value();
    ASSERT_TRUE(quantFromWireInto(message, &into).isOk());
    EXPECT_EQ(quantSpec(into.options), quantSpec(fresh.options));
    EXPECT_EQ(into.options.percentile, fresh.options.percentile);
    EXPECT_EQ(into.dtype, fresh.dtype);
    EXPECT_EQ(into.blockSize, fresh.blockSize);
    EXPECT_EQ(into.count, fresh.count);
    EXPECT_EQ(into.shape, fresh.shape);
    EXPECT_EQ(into.flags, fresh.flags);
    EXPECT_EQ(into.scales, fresh.scales);
    EXPECT_EQ(into.zeroPoints, fresh.zeroPoints);
    EXPECT_EQ(into.words, fresh.words);
  }
}

TEST(QuantWire, MessagesRoundTripAndCorruptionIsNamed) {
  const std::vector<float> x = gaussian(1000, 6);
  for (const char* text : {"linear:bits=3,mode=asym,block=100", "percentile:bits=7,p=99.5",
                           "dynamic:block=256", "rowwise:bits=5,block=50", "bf16"}) {
    const QuantizedTensor q = quantize(x, spec(text), {1, 2, 3, 4}, std::vector<int64_t>{20, 50}).value();
    std::vector<uint8_t> message(quantWireSize(q).value());
    ASSERT_TRUE(writeQuantWire(q, true, message).isOk());
    const QuantizedTensor back = quantFromWire(message).value();
    EXPECT_EQ(back.words, q.words) << text;
    EXPECT_EQ(back.scales, q.scales) << text;
    EXPECT_EQ(back.zeroPoints, q.zeroPoints) << text;
    EXPECT_EQ(back.shape, q.shape);
    EXPECT_EQ(back.blockSize, q.blockSize);
    EXPECT_EQ(back.options.kind, q.options.kind);
    EXPECT_EQ(back.options.bits, q.options.bits);
    EXPECT_EQ(back.options.symmetric, q.options.symmetric);
    EXPECT_EQ(back.options.percentile, q.options.percentile);
    std::vector<uint8_t> bad = message;
    bad[message.size() - 3] ^= 1;
    EXPECT_NE(quantFromWire(bad).status().message().find("CRC32C mismatch"), std::string::npos);
    bad = message;
    bad[9] = 12;  // bits
    EXPECT_NE(quantFromWire(bad).status().message().find("codec fields"), std::string::npos);
    bad = message;
    bad.pop_back();
    EXPECT_NE(quantFromWire(bad).status().message().find("truncated"), std::string::npos);
    bad = message;
    bad[16] &= static_cast<uint8_t>(~kFlagCrc);  // CRC flag cleared, CRC field still set
    EXPECT_NE(quantFromWire(bad).status().message().find("CRC field is set but the CRC flag is "
                                                         "clear"),
              std::string::npos);
    bad = message;
    bad[8] = 9;
    EXPECT_NE(quantFromWire(bad).status().message().find("codec id 9"), std::string::npos);
  }
}

TEST(QuantKeys, TheSameKeyGivesTheSameWords) {
  const std::vector<float> x = gaussian(5000, 7);
  const QuantOptions o = spec("linear:bits=4,block=300");
  const QuantizedTensor a = quantize(x, o, {1, 2, 3, 4}).value();
  Executor pool(3);
  EXPECT_EQ(quantize(x, o, {1, 2, 3, 4}, {}, &pool).value().words, a.words);
  EXPECT_NE(quantize(x, o, {1, 2, 3, 5}).value().words, a.words);
  EXPECT_NE(quantize(x, o, {1, 3, 3, 4}).value().words, a.words);
}

}  // namespace
}  // namespace qcomm
