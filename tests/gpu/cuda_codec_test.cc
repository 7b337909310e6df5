// The CUDA codec against the CPU codec (label gpu): the same words and scales for the same input
// and key, decode and decode-and-accumulate bit-identical to the CPU's, every output element
// written, and unbiased rounding on the device (launcher errors: cuda_errors_test.cc). Without a CUDA device the binary
// prints why and exits 77, which ctest reports as skipped.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "qcomm/codec.h"
#include "qcomm/cuda_buffer.h"
#include "qcomm/cuda_codec.h"

namespace qcomm::cuda {
namespace {

template <typename T>
T ok(Result<T> r) {
  EXPECT_TRUE(r.isOk()) << r.status().message();
  return std::move(r).value();
}

#define ASSERT_OK(expr)                         \
  do {                                          \
    const ::qcomm::Status s_ = (expr);          \
    ASSERT_TRUE(s_.isOk()) << s_.message();     \
  } while (0)

// Gradient-like values with the awkward cases mixed in: zeros, negative zeros, denormals, values
// near FLT_MAX (a bucket of those exercises the scale clamp).
std::vector<float> testValues(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) {
    switch (gen() % 64) {
      case 0: v[i] = 0.0f; break;
      case 1: v[i] = -0.0f; break;
      case 2: v[i] = std::numeric_limits<float>::denorm_min() * static_cast<float>(gen() % 100); break;
      default: v[i] = normal(gen) * (i % 5 == 0 ? 1e-3f : 1.0f);
    }
  }
  return v;
}

template <typename T>
DeviceBuffer<T> upload(const std::vector<T>& host) {
  DeviceBuffer<T> d = ok(DeviceBuffer<T>::allocate(host.size()));
  if (!host.empty()) {
    EXPECT_EQ(cudaMemcpy(d.data(), host.data(), d.bytes(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  return d;
}

// A buffer filled with 0xFF bytes (NaN floats, all-ones words): an element never written shows.
template <typename T>
DeviceBuffer<T> poisoned(size_t n) {
  DeviceBuffer<T> d = ok(DeviceBuffer<T>::allocate(n));
  if (n > 0) EXPECT_EQ(cudaMemset(d.data(), 0xFF, d.bytes()), cudaSuccess);
  return d;
}

template <typename T>
std::vector<T> download(const DeviceBuffer<T>& d) {
  std::vector<T> host(d.size());
  if (!host.empty()) {
    EXPECT_EQ(cudaMemcpy(host.data(), d.data(), d.bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return host;
}

// Compares float arrays bit for bit (so -0.0 against 0.0 and NaN payloads count).
void expectSameBits(const std::vector<float>& expected, const std::vector<float>& actual,
                    const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    const bool bothNan = std::isnan(expected[i]) && std::isnan(actual[i]);
    if (!bothNan && std::bit_cast<uint32_t>(expected[i]) != std::bit_cast<uint32_t>(actual[i])) {
      FAIL() << what << ": element " << i << " is " << actual[i] << " on the GPU, " << expected[i]
             << " on the CPU";
    }
  }
}

struct GpuCode {
  DeviceBuffer<float> scales;
  DeviceBuffer<uint64_t> words;
  DeviceCode view() const { return {scales.data(), words.data()}; }
};

GpuCode encodeOnGpu(const DeviceBuffer<float>& values, int64_t n, const QsgdOptions& options,
                    const RandomKey& key) {
  const QsgdGeometry g = ok(qsgdGeometry(n, options));
  GpuCode code{poisoned<float>(g.numBuckets), poisoned<uint64_t>(g.wordCount)};
  const size_t wsBytes = ok(qsgdEncodeWorkspaceBytes(n, options));
  DeviceBuffer<uint8_t> workspace = poisoned<uint8_t>(wsBytes);
  const Status s = qsgdEncode(values.data(), n, options, key, code.scales.data(),
                              code.words.data(), workspace.data(), wsBytes, nullptr);
  EXPECT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return code;
}

// Encodes on both, compares words and scales; then decodes on both and compares values.
void checkAgainstCpu(const std::vector<float>& host, const QsgdOptions& options,
                     const RandomKey& key) {
  const int64_t n = static_cast<int64_t>(host.size());
  const std::string what = "n=" + std::to_string(n) + " bits=" + std::to_string(options.bits) +
                           " layout=" + std::string(layoutName(options.layout)) + " norm=" +
                           std::string(normKindName(options.norm)) + " bucket=" +
                           std::to_string(options.bucketSize);
  SCOPED_TRACE(what);
  const EncodedTensor cpu = ok(qsgdEncode(host, options, key));
  const DeviceBuffer<float> values = upload(host);
  const GpuCode gpu = encodeOnGpu(values, n, options, key);
  const EncodedTensor fromGpu = ok(downloadCode(gpu.view(), n, options, nullptr));
  ASSERT_EQ(cpu.scales.size(), fromGpu.scales.size());
  for (size_t b = 0; b < cpu.scales.size(); ++b) {
    const bool bothNan = std::isnan(cpu.scales[b]) && std::isnan(fromGpu.scales[b]);
    ASSERT_TRUE(bothNan || cpu.scales[b] == fromGpu.scales[b])
        << "scale of bucket " << b << ": GPU " << fromGpu.scales[b] << ", CPU " << cpu.scales[b];
  }
  ASSERT_EQ(cpu.words.size(), fromGpu.words.size());
  for (size_t w = 0; w < cpu.words.size(); ++w) {
    ASSERT_EQ(cpu.words[w], fromGpu.words[w]) << "word " << w;
  }
  EXPECT_EQ(cpu.flags, fromGpu.flags);

  std::vector<float> cpuDecoded(n);
  ASSERT_OK(qsgdDecode(cpu, cpuDecoded));
  DeviceBuffer<float> out = poisoned<float>(n);
  ASSERT_OK(qsgdDecode(gpu.view(), n, options, out.data(), nullptr));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expectSameBits(cpuDecoded, download(out), "decode");
}

class CudaCodecTest : public ::testing::Test {};

TEST_F(CudaCodecTest, WordsMatchTheCpuForEveryBitsLayoutNormAndBucket) {
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{100003}}) {
    const std::vector<float> host = testValues(n, static_cast<uint32_t>(n));
    for (int bits = 1; bits <= 16; ++bits) {
      for (const Layout layout : {Layout::kSeed, Layout::kCompact}) {
        for (const NormKind norm : {NormKind::kL2, NormKind::kMax}) {
          for (const int64_t bucket : {int64_t{1}, int64_t{7}, int64_t{128}, int64_t{512},
                                       int64_t{4096}, int64_t{0}}) {
            if (bucket == 1 && n > 1000) continue;  // covered at 1000; slow on one value a block
            checkAgainstCpu(host, {bits, bucket, norm, layout}, {42, 3, 7, 11});
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

TEST_F(CudaCodecTest, LargeTensorsMatchTheCpuOnBothPaths) {
  // Over 2^26 values: the fused path (bucket 512) and the tiled one (one bucket of everything,
  // and buckets of 5000 that do not divide n).
  const int64_t n = (int64_t{1} << 26) + 12345;
  const std::vector<float> host = testValues(n, 99);
  checkAgainstCpu(host, {4, 512, NormKind::kMax, Layout::kCompact}, {1, 0, 0, 5});
  checkAgainstCpu(host, {4, 0, NormKind::kL2, Layout::kSeed}, {2, 1, 0, 6});
  checkAgainstCpu(host, {3, 5000, NormKind::kL2, Layout::kCompact}, {3, 2, 1, 7});
}

TEST_F(CudaCodecTest, NonFiniteAndZeroBucketsBehaveAsOnTheCpu) {
  std::vector<float> host = testValues(4096, 5);
  std::fill(host.begin() + 512, host.begin() + 1024, 0.0f);  // bucket 1: all zero
  host[1500] = std::numeric_limits<float>::quiet_NaN();       // bucket 2
  host[2100] = -std::numeric_limits<float>::infinity();       // bucket 4
  host[3000] = 3e38f;                                          // bucket 5: the scale clamp (L2)
  for (const NormKind norm : {NormKind::kL2, NormKind::kMax}) {
    for (const int64_t bucket : {int64_t{512}, int64_t{1024}, int64_t{0}}) {
      checkAgainstCpu(host, {4, bucket, norm, Layout::kSeed}, {8, 0, 0, 0});
      checkAgainstCpu(host, {2, bucket, norm, Layout::kCompact}, {8, 0, 0, 0});
    }
  }
  // Tiled path (buckets over 4096 values) with a NaN.
  std::vector<float> big = testValues(20000, 6);
  big[12345] = std::numeric_limits<float>::quiet_NaN();
  checkAgainstCpu(big, {4, 9000, NormKind::kL2, Layout::kCompact}, {9, 0, 0, 0});
  checkAgainstCpu(big, {4, 9000, NormKind::kMax, Layout::kCompact}, {9, 0, 0, 0});
}

TEST_F(CudaCodecTest, DecodeMeanEqualsTheCpuDecodeAndAverage) {
  const int64_t n = 300007;
  const QsgdOptions options{4, 512, NormKind::kMax, Layout::kCompact};
  for (const int p : {1, 2, 4, 8}) {
    SCOPED_TRACE("P=" + std::to_string(p));
    std::vector<GpuCode> codes;
    std::vector<DeviceCode> views;
    std::vector<float> sum(n, 0.0f), ownResidual(n);
    std::vector<float> inputs[8];
    for (int r = 0; r < p; ++r) {
      inputs[r] = testValues(n, 1000 + r);
      if (r == 1) inputs[r][777] = std::numeric_limits<float>::infinity();
      const RandomKey key{5, static_cast<uint32_t>(r), 3, 9};
      const EncodedTensor cpu = ok(qsgdEncode(inputs[r], options, key));
      std::vector<float> decoded(n);
      ASSERT_OK(qsgdDecode(cpu, decoded));
      for (int64_t i = 0; i < n; ++i) sum[i] += decoded[i];
      if (r == p - 1) {
        for (int64_t i = 0; i < n; ++i) ownResidual[i] = inputs[r][i] - decoded[i];
      }
      codes.push_back(encodeOnGpu(upload(inputs[r]), n, options, key));
      views.push_back(codes.back().view());
    }
    for (int64_t i = 0; i < n; ++i) sum[i] /= static_cast<float>(p);
    const DeviceBuffer<float> input = upload(inputs[p - 1]);
    DeviceBuffer<float> out = poisoned<float>(n);
    DeviceBuffer<float> residual = poisoned<float>(n);
    ASSERT_OK(qsgdDecodeMean(views, n, options, out.data(), nullptr, p - 1, input.data(),
                             residual.data()));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expectSameBits(sum, download(out), "mean");
    expectSameBits(ownResidual, download(residual), "residual");
  }
}

TEST_F(CudaCodecTest, RoundingIsUnbiasedOnTheDevice) {
  // E[decode] = x: the mean over many steps converges like 1/sqrt(steps) of the per-value error.
  const int64_t n = 4096;
  const std::vector<float> host = testValues(n, 17);
  const QsgdOptions options{2, 512, NormKind::kMax, Layout::kCompact};
  const DeviceBuffer<float> values = upload(host);
  std::vector<double> mean(n, 0.0);
  const int steps = 2000;
  DeviceBuffer<float> out = poisoned<float>(n);
  for (int step = 0; step < steps; ++step) {
    const GpuCode code = encodeOnGpu(values, n, options, {77, 0, 0, static_cast<uint64_t>(step)});
    ASSERT_OK(qsgdDecode(code.view(), n, options, out.data(), nullptr));
    const std::vector<float> decoded = download(out);
    for (int64_t i = 0; i < n; ++i) mean[i] += decoded[i] / steps;
  }
  const EncodedTensor probe = ok(qsgdEncode(host, options, {}));
  for (int64_t i = 0; i < n; ++i) {
    const double unit = probe.scales[i / 512] / 3.0;  // one quantization step
    // Per-step error is at most one step (variance <= unit^2 / 4): 6 sigma over `steps`.
    ASSERT_NEAR(mean[i], host[i], 6.0 * unit / 2.0 / std::sqrt(steps) + 1e-7) << "value " << i;
  }
}

TEST_F(CudaCodecTest, QuantizerCodesMatchTheCpu) {
  const int64_t n = 1 << 20;
  const std::vector<float> host = testValues(n, 31);
  const DeviceBuffer<float> values = upload(host);
  for (const char* text : {"linear:bits=8,block=4096", "linear:bits=3,mode=asym,block=1000",
                           "percentile:bits=8,block=4096,p=99.9", "dynamic:block=2048",
                           "rowwise:bits=6,block=1024", "fp16", "bf16"}) {
    SCOPED_TRACE(text);
    const QuantOptions options = parseQuantSpec(text).value();
    const RandomKey key{3, 1, 4, 1};
    const QuantizedTensor cpu = qcomm::quantize(host, options, key).value();
    DeviceBuffer<float> scales = poisoned<float>(cpu.scales.size());
    DeviceBuffer<float> zeros = poisoned<float>(cpu.zeroPoints.size());
    DeviceBuffer<uint64_t> words = poisoned<uint64_t>(cpu.words.size());
    ASSERT_OK(quantize(values.data(), n, options, cpu.blockSize, key, scales.data(), zeros.data(),
                       words.data(), nullptr));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    ASSERT_EQ(download(words), cpu.words);
    const std::vector<float> gotScales = download(scales);
    for (size_t b = 0; b < gotScales.size(); ++b) ASSERT_EQ(double(gotScales[b]), cpu.scales[b]);
    std::vector<float> expected(n);
    ASSERT_OK(qcomm::dequantize(cpu, expected));
    DeviceBuffer<float> out = poisoned<float>(n);
    const DeviceQuantCode code{scales.data(), zeros.data(), words.data()};
    ASSERT_OK(dequantize(std::span<const DeviceQuantCode>(&code, 1), n, options, cpu.blockSize,
                         false, out.data(), nullptr));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expectSameBits(expected, download(out), "dequantize");
  }
}

}  // namespace
}  // namespace qcomm::cuda

int main(int argc, char** argv) {
  const qcomm::Status device = qcomm::cuda::deviceAvailable();
  if (!device.isOk()) {
    std::printf("SKIP: the gpu tests need a CUDA device: %s\n", device.message().c_str());
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
