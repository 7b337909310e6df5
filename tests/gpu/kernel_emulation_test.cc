// The CUDA codec's kernels, run on CPU threads by the SIMT emulator (label unit: CI runs it, GPU or
// not), against the CPU codec: scales and words identical for every q, both layouts, both norms,
// buckets {1, 7, 128, 512, 4096, n} on both kernel paths, zero and non-finite buckets; decode and
// decode-and-accumulate identical to the CPU's. The same kernels and launch sequence as on the
// GPU (qsgd_kernels.cuh); launches run at most a few blocks, which exercises the grid-stride loops.
// The real device run is tests/gpu/cuda_codec_test.cc.
#include "simt_emulator.h"  // before the kernels

#include <gtest/gtest.h>

#include <bit>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "codec/cuda/qsgd_kernels.cuh"
#include "codec/cuda/qsgd_plan.h"
#include "qcomm/codec.h"
#include "qcomm/quantizers.h"

namespace qcomm::cuda::detail {
namespace {

struct EmulatedLaunch {
  int64_t maxBlocks;
  template <typename... Params, typename... Args>
  cudaError_t operator()(void (*kernel)(Params...), int64_t blocks, int threads,
                         Args&&... args) const {
    simt::launch(blocks, maxBlocks, threads, kernel, std::forward<Args>(args)...);
    return cudaSuccess;
  }
};

std::vector<float> testValues(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) {
    switch (gen() % 32) {
      case 0: v[i] = 0.0f; break;
      case 1: v[i] = -0.0f; break;
      case 2: v[i] = std::numeric_limits<float>::denorm_min() * 7.0f; break;
      default: v[i] = normal(gen) * (i % 3 == 0 ? 1e-3f : 1.0f);
    }
  }
  return v;
}

struct EmulatedCode {
  std::vector<float> scales;
  std::vector<uint64_t> words;
};

EmulatedCode emulatedEncode(const std::vector<float>& values, const QsgdOptions& options,
                            const RandomKey& key, int64_t maxBlocks) {
  const Geometry g = planGeometry(static_cast<int64_t>(values.size()), options).value();
  // Poisoned outputs: an element never written shows as a mismatch.
  EmulatedCode code{std::vector<float>(g.numBuckets, std::bit_cast<float>(0xFFFFFFFFu)),
                    std::vector<uint64_t>(g.wordCount, ~uint64_t{0})};
  std::vector<double> workspace(2 * g.numTiles, std::bit_cast<double>(~uint64_t{0}));
  const RandomArgs r{qsgd::philoxKey(key.seed, key.rank, key.tensorId), key.step};
  EXPECT_EQ(kernels::runEncode(EmulatedLaunch{maxBlocks}, values.data(), g, r, code.scales.data(),
                               code.words.data(), workspace.data(),
                               workspace.data() + g.numTiles,
                               reinterpret_cast<float*>(workspace.data())),
            cudaSuccess);
  return code;
}

void expectSameBits(const std::vector<float>& expected, const std::vector<float>& actual,
                    const char* what) {
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const bool bothNan = std::isnan(expected[i]) && std::isnan(actual[i]);
    ASSERT_TRUE(bothNan ||
                std::bit_cast<uint32_t>(expected[i]) == std::bit_cast<uint32_t>(actual[i]))
        << what << " element " << i << ": kernels " << actual[i] << ", CPU " << expected[i];
  }
}

void checkAgainstCpu(const std::vector<float>& values, const QsgdOptions& options,
                     const RandomKey& key, int64_t maxBlocks = 3) {
  const int64_t n = static_cast<int64_t>(values.size());
  SCOPED_TRACE("n=" + std::to_string(n) + " bits=" + std::to_string(options.bits) + " layout=" +
               std::string(layoutName(options.layout)) + " norm=" +
               std::string(normKindName(options.norm)) + " bucket=" +
               std::to_string(options.bucketSize));
  const EncodedTensor cpu = qsgdEncode(values, options, key).value();
  const EmulatedCode gpu = emulatedEncode(values, options, key, maxBlocks);
  ASSERT_EQ(cpu.scales.size(), gpu.scales.size());
  for (size_t b = 0; b < cpu.scales.size(); ++b) {
    const bool bothNan = std::isnan(cpu.scales[b]) && std::isnan(gpu.scales[b]);
    ASSERT_TRUE(bothNan || cpu.scales[b] == static_cast<double>(gpu.scales[b]))
        << "scale " << b << ": kernels " << gpu.scales[b] << ", CPU " << cpu.scales[b];
  }
  ASSERT_EQ(cpu.words, gpu.words);

  std::vector<float> expected(n);
  ASSERT_TRUE(qsgdDecode(cpu, expected).isOk());
  const Geometry g = planGeometry(n, options).value();
  DecodeArgs args{};
  args.code[0] = {gpu.scales.data(), gpu.words.data()};
  args.count = 1;
  args.mean = false;
  args.residualOf = -1;
  std::vector<float> decoded(n, std::bit_cast<float>(0xFFFFFFFFu));
  ASSERT_EQ(kernels::runDecode(EmulatedLaunch{maxBlocks}, g, args, decoded.data(), nullptr,
                               nullptr),
            cudaSuccess);
  expectSameBits(expected, decoded, "decode");
}

TEST(KernelEmulation, WordsMatchTheCpuAcrossBitsLayoutsNormsAndBuckets) {
  for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{5003}}) {
    const std::vector<float> values = testValues(n, static_cast<uint32_t>(n));
    for (const int bits : {1, 2, 3, 4, 7, 16}) {
      for (const Layout layout : {Layout::kSeed, Layout::kCompact}) {
        for (const NormKind norm : {NormKind::kL2, NormKind::kMax}) {
          // bucket 0 is one bucket of n: 5003 values take the tiled path.
          for (const int64_t bucket : {int64_t{1}, int64_t{7}, int64_t{128}, int64_t{512},
                                       int64_t{4096}, int64_t{0}}) {
            if (bucket == 1 && n > 7) continue;  // one block per value: slow here, same code
            checkAgainstCpu(values, {bits, bucket, norm, layout}, {42, 3, 7, 11});
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

// The other tests here draw 16 random bits per value, the default; 32 is the option.
TEST(KernelEmulation, ThirtyTwoBitDrawsMatchTheCpuOnBothKernelPaths) {
  const std::vector<float> values = testValues(5003, 31);
  for (const Layout layout : {Layout::kSeed, Layout::kCompact}) {
    for (const int64_t bucket : {int64_t{7}, int64_t{512}, int64_t{0}}) {  // 0: the tiled path
      QsgdOptions options{4, bucket, NormKind::kMax, layout};
      options.randomBits = 32;
      checkAgainstCpu(values, options, {42, 3, 7, 11});
      if (HasFatalFailure()) return;
    }
  }
}

TEST(KernelEmulation, TiledPathWithManyTilesAndPartialBuckets) {
  // Buckets over 4096 values: tiles folded pairwise across several levels, odd tile counts, a
  // last bucket shorter than the others.
  const std::vector<float> values = testValues(70001, 3);
  for (const NormKind norm : {NormKind::kL2, NormKind::kMax}) {
    checkAgainstCpu(values, {4, 9000, norm, Layout::kCompact}, {1, 0, 0, 2});
    checkAgainstCpu(values, {2, 0, norm, Layout::kSeed}, {1, 0, 0, 3});
    checkAgainstCpu(values, {7, 33333, norm, Layout::kSeed}, {4, 1, 2, 3}, /*maxBlocks=*/1);
  }
}

TEST(KernelEmulation, ZeroNonFiniteAndHugeBucketsMatchTheCpu) {
  std::vector<float> values = testValues(12000, 5);
  std::fill(values.begin() + 512, values.begin() + 1024, 0.0f);  // an all-zero bucket
  values[1500] = std::numeric_limits<float>::quiet_NaN();
  values[2100] = -std::numeric_limits<float>::infinity();
  values[3000] = 3e38f;  // L2 overflows fp32: the scale clamp
  values[3001] = -3e38f;
  values[9500] = std::numeric_limits<float>::infinity();  // in the tiled path's second bucket
  for (const NormKind norm : {NormKind::kL2, NormKind::kMax}) {
    for (const int64_t bucket : {int64_t{512}, int64_t{1024}, int64_t{5000}, int64_t{0}}) {
      checkAgainstCpu(values, {4, bucket, norm, Layout::kSeed}, {8, 0, 0, 0});
      checkAgainstCpu(values, {3, bucket, norm, Layout::kCompact}, {8, 0, 0, 1});
    }
  }
}

TEST(KernelEmulation, DecodeMeanAndResidualMatchTheCpuAllreduceArithmetic) {
  const int64_t n = 3001;
  const QsgdOptions options{4, 512, NormKind::kMax, Layout::kCompact};
  const Geometry g = planGeometry(n, options).value();
  for (const int p : {1, 2, 3, 8}) {
    SCOPED_TRACE("P=" + std::to_string(p));
    std::vector<EmulatedCode> codes;
    std::vector<std::vector<float>> inputs;
    std::vector<float> sum(n, 0.0f), residual(n);
    for (int r = 0; r < p; ++r) {
      inputs.push_back(testValues(n, 100 + r));
      if (r == 1) inputs.back()[42] = std::numeric_limits<float>::quiet_NaN();
      const RandomKey key{5, static_cast<uint32_t>(r), 1, 2};
      const EncodedTensor cpu = qsgdEncode(inputs.back(), options, key).value();
      std::vector<float> decoded(n);
      ASSERT_TRUE(qsgdDecode(cpu, decoded).isOk());
      for (int64_t i = 0; i < n; ++i) sum[i] += decoded[i];
      if (r == 0) {
        for (int64_t i = 0; i < n; ++i) residual[i] = inputs.back()[i] - decoded[i];
      }
      codes.push_back(emulatedEncode(inputs.back(), options, key, 2));
    }
    for (float& s : sum) s /= static_cast<float>(p);
    DecodeArgs args{};
    for (int r = 0; r < p; ++r) args.code[r] = {codes[r].scales.data(), codes[r].words.data()};
    args.count = p;
    args.mean = true;
    args.residualOf = 0;
    std::vector<float> mean(n, std::bit_cast<float>(0xFFFFFFFFu));
    std::vector<float> res(n, std::bit_cast<float>(0xFFFFFFFFu));
    ASSERT_EQ(kernels::runDecode(EmulatedLaunch{2}, g, args, mean.data(), inputs[0].data(),
                                 res.data()),
              cudaSuccess);
    expectSameBits(sum, mean, "mean");
    expectSameBits(residual, res, "residual");
  }
}

}  // namespace
}  // namespace qcomm::cuda::detail

// ---- the block quantizers' kernels ---------------------------------------------------------------

#include "codec/cuda/quant_kernels.cuh"

namespace qcomm::cuda::detail {
namespace {

void checkQuantAgainstCpu(const std::vector<float>& values, const char* spec, uint64_t step,
                          int64_t maxBlocks = 3) {
  SCOPED_TRACE(std::string(spec) + " n=" + std::to_string(values.size()));
  const QuantOptions options = parseQuantSpec(spec).value();
  const RandomKey key{11, 2, 5, step};
  const QuantizedTensor cpu = quantize(values, options, key).value();
  const int64_t n = static_cast<int64_t>(values.size());
  const QuantPlan plan = planQuant(n, options, cpu.blockSize, key).value();
  const float poison = std::bit_cast<float>(0xFFFFFFFFu);
  std::vector<float> scales(cpu.scales.size(), poison), zeros(cpu.zeroPoints.size(), poison);
  std::vector<uint64_t> words(cpu.words.size(), ~uint64_t{0});
  ASSERT_EQ(quant_kernels::runQuantize(EmulatedLaunch{maxBlocks}, values.data(), plan,
                                       scales.data(), zeros.empty() ? nullptr : zeros.data(),
                                       words.data()),
            cudaSuccess);
  for (size_t b = 0; b < scales.size(); ++b) {
    const bool bothNan = std::isnan(cpu.scales[b]) && std::isnan(scales[b]);
    ASSERT_TRUE(bothNan || cpu.scales[b] == static_cast<double>(scales[b]))
        << "scale " << b << ": kernels " << scales[b] << ", CPU " << cpu.scales[b];
  }
  for (size_t b = 0; b < zeros.size(); ++b) {
    ASSERT_EQ(cpu.zeroPoints[b], static_cast<double>(zeros[b])) << "zero point " << b;
  }
  ASSERT_EQ(cpu.words, words);
  std::vector<float> expected(n), decoded(n, poison);
  ASSERT_TRUE(dequantize(cpu, expected).isOk());
  QuantCodes codes{};
  codes.scales[0] = scales.data();
  codes.zeros[0] = zeros.empty() ? nullptr : zeros.data();
  codes.words[0] = words.data();
  codes.count = 1;
  codes.mean = false;
  ASSERT_EQ(quant_kernels::runDequantize(EmulatedLaunch{maxBlocks}, plan, codes, decoded.data()),
            cudaSuccess);
  expectSameBits(expected, decoded, "dequantize");
  // A mean of three copies: (0 + d + d + d) / 3 in fp32, as the CPU allreduce sums.
  for (int c = 1; c < 3; ++c) {
    codes.scales[c] = codes.scales[0];
    codes.zeros[c] = codes.zeros[0];
    codes.words[c] = codes.words[0];
  }
  codes.count = 3;
  codes.mean = true;
  std::vector<float> mean(n, poison), cpuMean(n);
  for (int64_t i = 0; i < n; ++i) cpuMean[i] = (((0.0f + expected[i]) + expected[i]) + expected[i]) / 3.0f;
  ASSERT_EQ(quant_kernels::runDequantize(EmulatedLaunch{maxBlocks}, plan, codes, mean.data()),
            cudaSuccess);
  expectSameBits(cpuMean, mean, "mean");
}

TEST(KernelEmulation, QuantizerWordsMatchTheCpuForEveryCodec) {
  std::vector<float> values = testValues(5003, 21);
  values[4000] = 7.5f;  // an outlier for the percentile
  for (const char* spec :
       {"linear:bits=8", "linear:bits=3,block=1000", "linear:bits=5,mode=asym,block=300",
        "linear:bits=2,mode=asym,rounding=nearest", "percentile:bits=8,block=2048,p=99.9",
        "percentile:bits=4,mode=asym,block=1000,p=99", "percentile:bits=6,block=4096,p=100",
        "dynamic:block=64", "dynamic:block=4096,rounding=nearest", "rowwise:bits=4,block=777",
        "rowwise:bits=8,block=5003,rounding=nearest", "fp16", "bf16",
        "linear:bits=5,mode=asym,block=300,random_bits=32", "dynamic:block=64,random_bits=16",
        "percentile:bits=4,mode=asym,block=1000,p=99,random_bits=32",
        "rowwise:bits=4,block=777,random_bits=32"}) {
    checkQuantAgainstCpu(values, spec, 3);
    if (HasFatalFailure()) return;
  }
  checkQuantAgainstCpu(std::vector<float>(1, -2.5f), "linear:bits=4,mode=asym", 0);
  checkQuantAgainstCpu(std::vector<float>(7, 0.0f), "dynamic", 0);
}

TEST(KernelEmulation, QuantizerNonFiniteBlocksMatchTheCpu) {
  std::vector<float> values = testValues(3000, 22);
  values[1500] = std::numeric_limits<float>::quiet_NaN();
  values[2900] = std::numeric_limits<float>::infinity();
  for (const char* spec : {"linear:bits=8,block=1000", "percentile:bits=8,block=1000",
                           "dynamic:block=1000", "rowwise:bits=4,block=1000", "fp16", "bf16"}) {
    checkQuantAgainstCpu(values, spec, 4);
    if (HasFatalFailure()) return;
  }
}

// Percentile on blocks of ties (the CPU counts ties at its thresholds instead of keeping them):
// all zeros, +-1 with one or five larger values at each end, one value in seven +-1.
TEST(KernelEmulation, QuantizerPercentileOnTiesMatchesTheCpu) {
  const int64_t block = 1024;
  std::vector<float> values(4 * block, 0.0f);
  for (int64_t j = 0; j < block; ++j) {
    const float sign = j % 2 == 0 ? 1.0f : -1.0f;
    values[block + j] = sign * (j < 2 ? 50.0f + static_cast<float>(j) : 1.0f);
    values[2 * block + j] = sign * (j < 10 ? 50.0f + static_cast<float>(j) : 1.0f);
    values[3 * block + j] = j % 7 != 0 ? 0.0f : sign;
  }
  for (const char* spec : {"percentile:bits=8,block=1024,p=99.9",
                           "percentile:bits=4,mode=asym,block=1024,p=99",
                           "percentile:bits=4,mode=asym,block=1024,p=99.5,random_bits=32"}) {
    checkQuantAgainstCpu(values, spec, 3);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace qcomm::cuda::detail
