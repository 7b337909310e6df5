// The block quantizers' vector kernels against the value-by-value reference (quant_reference.h):
// words, scales and zero points bit for bit, and decoded values, for every codec, bit width,
// rounding, block layout, ISA and thread count, with the edge values each path must get right
// (signed zeros at a block's min, NaN/Inf blocks, fp16 overflow and subnormals, NaN payloads).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "codec/qsgd_cpu_kernels.h"
#include "qcomm/executor.h"
#include "qcomm/quantizers.h"
#include "support/scoped_isa.h"
#include "unit/quant_reference.h"

namespace qcomm {
namespace {

QuantOptions spec(const char* text) {
  Result<QuantOptions> o = parseQuantSpec(text);
  EXPECT_TRUE(o.isOk()) << text << ": " << o.status().message();
  return o.isOk() ? o.value() : QuantOptions{};
}

using testing::ScopedIsa;

std::vector<uint64_t> bitsOf(const std::vector<double>& v) {
  std::vector<uint64_t> out(v.size());
  if (!v.empty()) std::memcpy(out.data(), v.data(), v.size() * 8);
  return out;
}

std::vector<uint32_t> bitsOf(const std::vector<float>& v) {
  std::vector<uint32_t> out(v.size());
  if (!v.empty()) std::memcpy(out.data(), v.data(), v.size() * 4);
  return out;
}

// Gaussian values with the edge cases sprinkled in at fixed places.
std::vector<float> edgyValues(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  const float specials[] = {-0.0f, 0.0f, 1e-40f, -1e-42f, 65504.0f, 65520.0f, -7e4f,
                            6e-8f, 2.9802322e-8f, 3e-5f, -1e30f, 1.0f / 3};
  for (int64_t i = 0; i < n; i += 37) v[i] = specials[(i / 37) % std::size(specials)];
  return v;
}

struct Case {
  const char* spec;
  int64_t n;
  std::vector<int64_t> shape;  // row-wise: rows of shape.back()
};

void expectMatchesReference(const std::vector<float>& v, const QuantOptions& o,
                            const std::vector<int64_t>& shape, const std::string& what) {
  const RandomKey key{7, 3, 11, 5};
  const qsgd::PhiloxKey philox = qsgd::philoxKey(key.seed, key.rank, key.tensorId);
  Executor three(3);
  for (const char* isa : {"generic", "avx2", "avx512"}) {
    if (!qsgd::selectKernels(isa).isOk()) continue;  // not on this CPU
    ScopedIsa scoped(isa);
    for (Executor* executor : {static_cast<Executor*>(nullptr), &three}) {
      const std::string where = what + " isa=" + isa + (executor ? " threads=3" : " threads=1");
      Result<QuantizedTensor> q = quantize(v, o, key, shape, executor);
      ASSERT_TRUE(q.isOk()) << where << ": " << q.status().message();
      const testing::ReferenceQuantized r =
          testing::referenceQuantize(v, o, q.value().blockSize, philox, key.step);
      ASSERT_EQ(bitsOf(q.value().scales), bitsOf(r.scales)) << where;
      ASSERT_EQ(bitsOf(q.value().zeroPoints), bitsOf(r.zeroPoints)) << where;
      ASSERT_EQ(q.value().words, r.words) << where;
      ASSERT_EQ((q.value().flags & kFlagNonFinite) != 0, r.nonFinite) << where;
      std::vector<float> decoded(v.size());
      ASSERT_TRUE(dequantize(q.value(), decoded, executor).isOk()) << where;
      ASSERT_EQ(bitsOf(decoded), bitsOf(testing::referenceDequantize(q.value()))) << where;
    }
  }
}

TEST(QuantKernels, EveryCodecBitWidthAndBlockLayoutMatchesTheReference) {
  const Case cases[] = {
      {"linear:bits=8,mode=sym,block=4096", 10007, {}},
      {"linear:bits=4,mode=asym,block=512", 10007, {}},
      {"linear:bits=3,mode=asym", 4097, {}},
      {"linear:bits=5,mode=sym,block=3", 1000, {}},
      {"linear:bits=7,mode=asym,block=100,rounding=nearest", 9001, {}},
      {"linear:bits=2,mode=sym,rounding=nearest", 65, {}},
      {"linear:bits=6,mode=sym,block=1", 77, {}},
      {"percentile:bits=8,mode=sym,p=99.9,block=4096", 10007, {}},
      {"percentile:bits=4,mode=asym,p=99,block=1000", 9001, {}},
      {"percentile:bits=8,mode=asym,p=60", 20011, {}},  // order statistics by nth_element
      {"percentile:bits=6,mode=sym,p=75,rounding=nearest", 20011, {}},
      {"percentile:bits=8,mode=sym,p=100,block=7", 64, {}},
      {"dynamic:block=4096", 10007, {}},
      {"dynamic:block=1000,rounding=nearest", 5000, {}},
      {"rowwise:bits=8", 6 * 1000, {6, 1000}},
      {"rowwise:bits=4,rounding=nearest", 3 * 4099, {3, 4099}},
      {"rowwise:bits=3", 5 * 17, {5, 17}},
      {"fp16", 10007, {}},
      {"bf16", 4099, {}},
      {"fp16", 1, {}},
      // Several tasks of 16 tiles (65536 values): blocks across task boundaries, scaled by both
      // tasks (fused) or in a pass of their own (blocks over 16384 values).
      {"linear:bits=4,mode=asym,block=3000", 200003, {}},
      {"percentile:bits=8,mode=asym,p=99,block=7000", 140001, {}},
      {"linear:bits=6,mode=sym,block=20000", 150001, {}},
      {"dynamic:block=5000", 140001, {}},
      {"bf16", 140001, {}},
      // 32 random bits per value, the option (the cases above draw 16, the default: half the
      // Philox blocks, each value's draw a 16-bit half).
      {"linear:bits=8,mode=sym,block=4096,random_bits=32", 10007, {}},
      {"linear:bits=4,mode=asym,block=512,random_bits=32", 10007, {}},
      {"linear:bits=5,mode=sym,block=3,random_bits=32", 1001, {}},
      {"percentile:bits=4,mode=asym,p=99,block=1000,random_bits=32", 9001, {}},
      {"dynamic:block=4096,random_bits=32", 10007, {}},
      {"dynamic:block=1000,random_bits=32", 4999, {}},
      {"rowwise:bits=3,random_bits=32", 5 * 17, {5, 17}},
      {"rowwise:bits=8,random_bits=32", 3 * 1003, {3, 1003}},
      {"linear:bits=4,mode=asym,block=3000,random_bits=32", 200003, {}},
  };
  for (const Case& c : cases) {
    std::vector<float> v = edgyValues(c.n, static_cast<uint32_t>(c.n));
    expectMatchesReference(v, spec(c.spec), c.shape, c.spec);
  }
}

TEST(QuantKernels, NonFiniteBlocksZerosAndExtremesMatchTheReference) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> v = edgyValues(3000, 5);
  v[10] = nan;             // block 0 of 512
  v[600] = -inf;           // block 1
  uint32_t payload = 0x7FC01234u;  // a NaN with a payload (the casts keep none of it)
  std::memcpy(&v[2000], &payload, 4);
  payload = 0xFF812345u;   // a signalling NaN, negative
  std::memcpy(&v[2001], &payload, 4);
  // Block 5 (2560..3071): non-negative with its minimum a zero, -0 first, so that the vector
  // min's sign of zero must follow the sequential loop's.
  for (int64_t i = 2560; i < 3000; ++i) v[i] = std::fabs(v[i]);
  v[2600] = -0.0f;
  v[2700] = 0.0f;
  for (const char* s : {"linear:bits=4,mode=asym,block=512", "linear:bits=8,block=512",
                        "rowwise:bits=4,block=512", "dynamic:block=512", "fp16", "bf16",
                        "percentile:bits=8,mode=asym,p=99,block=512"}) {
    expectMatchesReference(v, spec(s), {}, s);
  }
  const std::vector<float> zeros(1000, 0.0f);
  for (const char* s : {"linear:bits=4,mode=asym", "linear:bits=8", "rowwise:bits=4",
                        "dynamic", "percentile:bits=8"}) {
    expectMatchesReference(zeros, spec(s), {}, std::string(s) + " all zero");
  }
}

// Percentile blocks whose thresholds from the block before (quant::PercentileHint) keep too many
// candidates (a scale 100x up), too few (100x down) or exactly as many as needed (constant
// blocks: every value a tie; more ties than the stack holds), next to a non-finite block and
// blocks of one value at the top: every percentile as the reference's full sort finds it.
// Blocks of ties where the order statistics are the tied value itself: a few values above and
// below a block of +-1 ties (1, 5 or 41 at each end: keep - 1 for p = 99.99, 99.9 and 99 of x;
// 5 in all: keep - 1 for p = 99.9 of |x|), and one value in seven +-1, the rest zeros. Blocks a
// little smaller than the one before, where the previous thresholds keep fewer than needed, also
// after blocks of ties.
TEST(QuantKernels, PercentileBlocksOfChangingScaleAndTiesMatchTheReference) {
  const int64_t block = 4096;
  std::vector<float> v = edgyValues(28 * block, 17);
  auto scaleBlock = [&](int64_t b, float factor) {
    for (int64_t i = b * block; i < (b + 1) * block; ++i) v[i] *= factor;
  };
  scaleBlock(2, 100.0f);
  scaleBlock(3, 0.01f);
  scaleBlock(4, 0.01f);
  std::fill(v.begin() + 5 * block, v.begin() + 6 * block, 2.5f);     // all ties
  for (int64_t i = 6 * block; i < 7 * block; ++i) v[i] = (i % 3 == 0) ? -0.0f : 1.0f;
  v[7 * block + 100] = std::numeric_limits<float>::quiet_NaN();
  std::fill(v.begin() + 9 * block, v.begin() + 9 * block + 3000, 40.0f);   // 3000 at the top
  std::fill(v.begin() + 10 * block, v.begin() + 10 * block + 3000, -40.0f);  // and the bottom
  scaleBlock(11, 1e-30f);
  scaleBlock(12, 1e30f);
  for (const int64_t b : {13, 14, 15, 17}) {  // +-1, some larger in magnitude
    const int64_t outside = b == 13 ? 2 : b == 14 ? 10 : b == 15 ? 82 : 5;
    for (int64_t j = 0; j < block; ++j) {
      const float sign = j % 2 == 0 ? 1.0f : -1.0f;
      v[b * block + j] = sign * (j < outside ? 50.0f + static_cast<float>(j) : 1.0f);
    }
  }
  for (int64_t j = 0; j < block; ++j) {
    v[16 * block + j] = j % 7 != 0 ? 0.0f : (j % 14 == 0 ? 1.0f : -1.0f);
  }
  scaleBlock(19, 0.85f);  // a little smaller: the previous thresholds keep some, but too few
  scaleBlock(21, 0.75f);
  scaleBlock(23, 0.9f);
  // After a block of ties (ties counted), blocks with no value at the threshold (1) and fewer
  // values above it than needed, but at least half as many: 30 or 2 at each end.
  for (const int64_t b : {24, 25, 26, 27}) {
    const int64_t outside = b == 24 || b == 26 ? 2 : b == 25 ? 60 : 4;
    for (int64_t j = 0; j < block; ++j) {
      const float sign = j % 2 == 0 ? 1.0f : -1.0f;
      const float inside = b == 24 || b == 26 ? 1.0f : static_cast<float>(j % 4093) / 8192.0f;
      v[b * block + j] = sign * (j < outside ? 50.0f + static_cast<float>(j) : inside);
    }
  }
  for (const char* s : {"percentile:bits=8,mode=sym,p=99.9,block=4096",
                        "percentile:bits=4,mode=asym,p=99,block=4096",
                        "percentile:bits=4,mode=asym,p=99,block=4096,random_bits=32",
                        "percentile:bits=8,mode=asym,p=99.99,block=4096",
                        "percentile:bits=2,mode=sym,p=95,block=4096",
                        "percentile:bits=8,mode=asym,p=99,block=1024"}) {
    expectMatchesReference(v, spec(s), {}, s);
  }
}

// Random blocks of few distinct values (ties at every percentile or none, changing from block to
// block: some blocks all ties, some with a share of Gaussian values, some scaled), and block
// sizes with a tail of fewer than 16 values: every percentile as the reference's full sort finds
// it.
TEST(QuantKernels, PercentileOnRandomBlocksOfTiesMatchesTheReference) {
  std::mt19937 gen(29);
  std::normal_distribution<float> normal;
  const float alphabet[] = {-2.0f, -1.0f, -0.0f, 0.0f, 0.5f, 1.0f, 3.0f};
  const uint32_t kGaussianPercent[] = {0, 1, 10, 60};
  for (const int64_t block : {int64_t{4096}, int64_t{1000}}) {
    std::vector<float> v(static_cast<size_t>(24 * block));
    for (int64_t b = 0; b < 24; ++b) {
      const uint32_t shape = gen();
      const uint32_t gaussianPercent = kGaussianPercent[shape % 4];
      const int distinct = 1 + static_cast<int>((shape >> 4) % std::size(alphabet));
      const float scale = (shape >> 8) % 3 == 0 ? 4.0f : 1.0f;
      for (int64_t j = 0; j < block; ++j) {
        const uint32_t r = gen();
        v[b * block + j] =
            scale * (r % 100 < gaussianPercent ? normal(gen) : alphabet[(r >> 8) % distinct]);
      }
    }
    for (const std::string s :
         {"percentile:bits=8,mode=sym,p=99.9", "percentile:bits=4,mode=asym,p=99",
          "percentile:bits=4,mode=asym,p=95", "percentile:bits=8,mode=asym,p=99.99"}) {
      const std::string withBlock = s + ",block=" + std::to_string(block);
      expectMatchesReference(v, spec(withBlock.c_str()), {}, withBlock);
    }
  }
}

// Blocks whose values beyond the percentiles come in runs, not one here and there: sorted
// ascending and descending (every kept value in a few whole vectors), runs of 3 to 16 outliers
// at places that straddle vectors, and one end's run with the other's scattered. Where few
// values per vector are expected (p = 99, 99.9) the selection stores four lanes and the rest
// only on a branch these blocks take; at p = 95 it stores whole vectors; the ends' shared list
// splits into two either way; blocks with a percentile just past zero put a threshold of the
// view below zero.
// Every percentile as the reference's full sort finds it.
TEST(QuantKernels, PercentileOnBlocksWithOutliersInRunsMatchesTheReference) {
  const int64_t block = 4096;
  std::mt19937 gen(31);
  std::normal_distribution<float> normal;
  std::vector<float> v(static_cast<size_t>(12 * block));
  for (float& x : v) x = normal(gen);
  std::sort(v.begin() + 2 * block, v.begin() + 3 * block);
  std::sort(v.begin() + 3 * block, v.begin() + 4 * block, std::greater<float>());
  std::sort(v.begin() + 6 * block, v.begin() + 7 * block);
  for (const int64_t b : {4, 5, 8, 9}) {
    for (int64_t start = 5; start + 16 < block; start += 97 + (start % 13)) {
      const int64_t run = 3 + start % 14;
      const float sign = b == 5 && start % 2 == 1 ? -1.0f : 1.0f;  // block 5: both ends in runs
      for (int64_t j = start; j < start + run; ++j) {
        v[b * block + j] = sign * (6.0f + static_cast<float>(j % 5));
      }
    }
  }
  // Blocks whose percentile at one end lies just past zero (about 1% of N(2.3, 1) is below 0):
  // thresholds of the view (-x at the low end) below zero.
  for (int64_t j = 10 * block; j < 11 * block; ++j) v[j] += 2.3f;
  for (int64_t j = 11 * block; j < 12 * block; ++j) v[j] -= 2.3f;
  for (const char* s : {"percentile:bits=4,mode=asym,p=99,block=4096",
                        "percentile:bits=8,mode=sym,p=99.9,block=4096",
                        "percentile:bits=8,mode=asym,p=99.9,block=4096",
                        "percentile:bits=4,mode=asym,p=95,block=4096",
                        "percentile:bits=4,mode=asym,p=99,block=1000"}) {
    expectMatchesReference(v, spec(s), {}, s);
  }
}

// The block statistics (min, max; max |x|) read aligned vectors from the first 64-byte boundary
// on and the values before and after in masked loads: tensors starting at each of the 16 float
// offsets from a boundary, of lengths around whole vectors, with the minimum, the maximum, the
// largest magnitude, a signed zero as the minimum, no zero at all, or a NaN or Inf in the first
// or last few values (where the masked loads read), scaled and zero-pointed as the reference
// does.
TEST(QuantKernels, BlockStatisticsMatchTheReferenceAtEveryAlignment) {
  std::mt19937 gen(37);
  std::normal_distribution<float> normal;
  for (const int64_t n : {int64_t{16}, int64_t{17}, int64_t{31}, int64_t{47}, int64_t{100}}) {
    for (int64_t offset = 0; offset < 16; ++offset) {
      for (int where = 0; where < 7; ++where) {
        // 64-byte aligned storage, the tensor `offset` floats in.
        std::vector<float> storage(static_cast<size_t>(n + 32));
        float* base = storage.data();
        while ((reinterpret_cast<uintptr_t>(base) & 63) != 0) ++base;
        std::vector<float> v(static_cast<size_t>(n));
        for (float& x : v) x = normal(gen);
        const int64_t head = std::min<int64_t>(n - 1, (16 - offset) % 16);  // first aligned value
        switch (where) {
          case 0: v[0] = 9.0f; v[static_cast<size_t>(n - 1)] = -9.0f; break;  // ends at the edges
          case 1: v[static_cast<size_t>(head > 0 ? head - 1 : 0)] = -11.0f; break;  // last masked
          case 2: v[static_cast<size_t>(n - 1)] = 12.0f; break;
          case 3:  // all positive but zeros, the first zero -0: the minimum is -0
            for (float& x : v) x = std::fabs(x) + 0.5f;
            v[static_cast<size_t>(n / 2)] = -0.0f;
            v[static_cast<size_t>(n - 1)] = 0.0f;
            break;
          case 4: v[static_cast<size_t>(n - 1)] = std::numeric_limits<float>::quiet_NaN(); break;
          case 5: v[0] = std::numeric_limits<float>::infinity(); break;
          case 6:  // all positive: lanes a masked load leaves out must not count as zeros
            for (float& x : v) x = std::fabs(x) + 0.5f;
            break;
        }
        std::copy(v.begin(), v.end(), base + offset);
        const std::span<const float> at(base + offset, static_cast<size_t>(n));
        // Linear asym and row-wise take min and max (statsF32), linear sym max |x| (maxAbsF32).
        for (const char* text : {"linear:bits=4,mode=asym,rounding=nearest",
                                 "rowwise:bits=4,rounding=nearest",
                                 "linear:bits=8,mode=sym,rounding=nearest"}) {
          const QuantOptions o = spec(text);
          const std::string what = std::string(text) + " n=" + std::to_string(n) +
                                   " offset=" + std::to_string(offset) +
                                   " case=" + std::to_string(where);
          for (const char* isa : {"generic", "avx2", "avx512"}) {
            if (!qsgd::selectKernels(isa).isOk()) continue;
            ScopedIsa scoped(isa);
            Result<QuantizedTensor> q = quantize(at, o, RandomKey{}, {}, nullptr);
            ASSERT_TRUE(q.isOk()) << what << ": " << q.status().message();
            const testing::ReferenceQuantized r =
                testing::referenceQuantize(v, o, q.value().blockSize, {}, 0);
            ASSERT_EQ(bitsOf(q.value().scales), bitsOf(r.scales)) << what << " " << isa;
            ASSERT_EQ(bitsOf(q.value().zeroPoints), bitsOf(r.zeroPoints)) << what << " " << isa;
            ASSERT_EQ(q.value().words, r.words) << what << " " << isa;
            ASSERT_EQ((q.value().flags & kFlagNonFinite) != 0, r.nonFinite) << what << " " << isa;
          }
        }
      }
    }
  }
}

// Every fp16 code decodes as fromFp16 (the vector path must keep signalling NaNs' bits).
TEST(QuantKernels, EveryHalfAndBfloat16CodeDecodesAsTheReference) {
  for (const char* s : {"fp16", "bf16"}) {
    QuantizedTensor q;
    q.options = spec(s);
    q.count = 65536;
    q.shape = {q.count};
    q.blockSize = 1;
    q.words.resize(65536 / 4);
    for (uint32_t h = 0; h < 65536; ++h) {
      q.words[h / 4] |= static_cast<uint64_t>(h) << (16 * (h % 4));
    }
    for (const char* isa : {"generic", "avx2", "avx512"}) {
      if (!qsgd::selectKernels(isa).isOk()) continue;
      ScopedIsa scoped(isa);
      std::vector<float> decoded(q.count);
      ASSERT_TRUE(dequantize(q, decoded).isOk());
      EXPECT_EQ(bitsOf(decoded), bitsOf(testing::referenceDequantize(q))) << s << " " << isa;
    }
  }
}

// The dynamic code by lookup against the binary search, for a comb of floats over [-1, 1], every
// map value and its neighbours: in one block whose absmax is 1, so y = x exactly.
TEST(QuantKernels, DynamicLookupAgreesWithTheBinarySearchOverMinusOneToOne) {
  std::vector<float> v = {1.0f, -1.0f};
  for (uint32_t u = 0; u < 0x3F800000u; u += 997) {
    float x;
    std::memcpy(&x, &u, 4);
    v.push_back(x);
    v.push_back(-x);
  }
  for (const float m : dynamicMap()) {
    for (const float x : {m, std::nextafter(m, -2.0f), std::nextafter(m, 2.0f)}) {
      if (std::fabs(x) <= 1.0f) v.push_back(x);
    }
  }
  const auto map = dynamicMap();
  for (size_t i = 0; i + 1 < map.size(); ++i) v.push_back((map[i] + map[i + 1]) / 2);
  for (const char* s : {"dynamic:rounding=nearest", "dynamic"}) {
    QuantOptions o = spec(s);
    o.blockSize = static_cast<int64_t>(v.size());
    expectMatchesReference(v, o, {}, s);
  }
}

}  // namespace
}  // namespace qcomm
