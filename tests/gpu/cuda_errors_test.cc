// The CUDA codec's error paths, which need the CUDA runtime library but no device, so they run in
// CI (label unit): argument checks name what is wrong before any CUDA call, and a failing CUDA call
// becomes a Status naming the call, file and line.
#include <gtest/gtest.h>

#include "codec/cuda/cuda_status.h"
#include "qcomm/cuda_buffer.h"
#include "qcomm/cuda_codec.h"

namespace qcomm::cuda {
namespace {

Status failingCall() {
  QCOMM_CUDA_RETURN_IF_ERROR(cudaSetDevice(-1));
  return Status::ok();
}

TEST(CudaErrors, AFailingCallIsNamedWithFileAndLine) {
  const Status s = failingCall();
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("cudaSetDevice(-1) failed at "), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("cuda_errors_test.cc:"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("cudaError"), std::string::npos) << s.message();
}

TEST(CudaErrors, WorkspaceSizeFollowsThePath) {
  // Buckets up to 4096 values are encoded in one pass without workspace; larger ones need two
  // doubles per 256-value tile.
  QsgdOptions small{4, 512, NormKind::kL2, Layout::kCompact};
  EXPECT_EQ(qsgdEncodeWorkspaceBytes(1 << 20, small).value(), 0u);
  QsgdOptions large{4, 10000, NormKind::kL2, Layout::kCompact};
  // 3 buckets of 10000 (40 tiles each) and one of 3000 (12 tiles): 132 tiles.
  EXPECT_EQ(qsgdEncodeWorkspaceBytes(33000, large).value(), 132u * 16u);
  EXPECT_FALSE(qsgdEncodeWorkspaceBytes(-1, small).isOk());
}

TEST(CudaErrors, LaunchersCheckArgumentsBeforeTouchingTheDevice) {
  const QsgdOptions options{4, 0, NormKind::kL2, Layout::kSeed};
  auto* fake = reinterpret_cast<float*>(0x1000);  // never dereferenced: the checks come first
  auto* fakeWords = reinterpret_cast<uint64_t*>(0x2000);
  Status s = qsgdEncode(fake, 10000, options, {}, fake, fakeWords, nullptr, 0, nullptr);
  EXPECT_NE(s.message().find("needs 640 bytes of workspace for 10000 values in buckets of 10000, "
                             "got 0 (null)"),
            std::string::npos)
      << s.message();
  s = qsgdEncode(nullptr, 10, {4, 512, NormKind::kL2, Layout::kSeed}, {}, fake, fakeWords, nullptr,
                 0, nullptr);
  EXPECT_NE(s.message().find("values is a null device pointer"), std::string::npos) << s.message();
  s = qsgdEncode(fake, 10, {17, 512, NormKind::kL2, Layout::kSeed}, {}, fake, fakeWords, nullptr, 0,
                 nullptr);
  EXPECT_NE(s.message().find("17"), std::string::npos) << s.message();
  s = qsgdEncode(fake, -5, options, {}, fake, fakeWords, nullptr, 0, nullptr);
  EXPECT_NE(s.message().find("count is negative: -5"), std::string::npos) << s.message();
  s = qsgdDecodeMean({}, 10, options, fake, nullptr);
  EXPECT_NE(s.message().find("1 to 64 codes, got 0"), std::string::npos) << s.message();
  const DeviceCode codes[2] = {{fake, fakeWords}, {nullptr, fakeWords}};
  s = qsgdDecodeMean(codes, 10, options, fake, nullptr);
  EXPECT_NE(s.message().find("code 1 has a null scales or words pointer"), std::string::npos)
      << s.message();
  s = qsgdDecodeMean(codes, 10, options, fake, nullptr, 2, fake, fake);
  EXPECT_NE(s.message().find("residualOf is 2 but only 2 codes"), std::string::npos)
      << s.message();
  s = qsgdDecode({fake, fakeWords}, 10, options, nullptr, nullptr);
  EXPECT_NE(s.message().find("out is a null device pointer"), std::string::npos) << s.message();
  // Zero values: nothing to launch, and nothing is dereferenced.
  EXPECT_TRUE(qsgdEncode(nullptr, 0, options, {}, nullptr, nullptr, nullptr, 0, nullptr).isOk());
}

TEST(CudaErrors, QuantizerLaunchersCheckArgumentsFirst) {
  auto* fake = reinterpret_cast<float*>(0x1000);
  auto* fakeWords = reinterpret_cast<uint64_t*>(0x2000);
  const QuantOptions asym = parseQuantSpec("linear:bits=4,mode=asym").value();
  Status s = quantize(fake, 100, asym, 50, {}, fake, nullptr, fakeWords, nullptr);
  EXPECT_NE(s.message().find("zeroPoints is a null device pointer"), std::string::npos)
      << s.message();
  const QuantOptions pct = parseQuantSpec("percentile:bits=8").value();
  s = quantize(fake, 10000, pct, 10000, {}, fake, nullptr, fakeWords, nullptr);
  EXPECT_NE(s.message().find("blocks of at most 4096 values, got 10000"), std::string::npos)
      << s.message();
  s = dequantize({}, 10, asym, 5, true, fake, nullptr);
  EXPECT_NE(s.message().find("1 to 64 codes, got 0"), std::string::npos) << s.message();
  const DeviceQuantCode code{fake, nullptr, fakeWords};
  s = dequantize(std::span<const DeviceQuantCode>(&code, 1), 10, asym, 5, false, fake, nullptr);
  EXPECT_NE(s.message().find("code 0 lacks a device pointer"), std::string::npos) << s.message();
}

TEST(CudaErrors, DeviceAvailabilityExplainsItself) {
  const Status s = deviceAvailable();
  if (!s.isOk()) {
    EXPECT_NE(s.message().find("CUDA device"), std::string::npos) << s.message();
    const Result<DeviceBuffer<float>> b = DeviceBuffer<float>::allocate(1000);
    ASSERT_FALSE(b.isOk());
    EXPECT_NE(b.status().message().find("cudaMalloc of 4000 bytes failed"), std::string::npos)
        << b.status().message();
  } else {
    const Result<DeviceBuffer<float>> b = DeviceBuffer<float>::allocate(1000);
    ASSERT_TRUE(b.isOk()) << b.status().message();
    EXPECT_EQ(b.value().bytes(), 4000u);
  }
}

}  // namespace
}  // namespace qcomm::cuda
