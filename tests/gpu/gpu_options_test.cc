// GpuCommunicator's option checks, which come before any CUDA call, so they run in CI without a
// GPU (label unit): an algorithm the GPU path does not run and a host grouping it cannot use are
// refused by name. The transport here only answers rank and size; reaching any transfer fails the
// test. (The pipelines themselves: gpu_pipeline_test.cc, gpu_allreduce_test.cc, label gpu.)
#include <gtest/gtest.h>

#include "qcomm/gpu_communicator.h"

namespace qcomm {
namespace {

class SizeOnlyTransport final : public transport::DeviceTransport {
 public:
  SizeOnlyTransport(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view name() const override { return "size-only"; }
  bool asynchronous() const override { return false; }
  Status allGather(const void*, void*, size_t, cudaStream_t) override { return reached(); }
  Status allToAll(const void*, std::span<const size_t>, void*, std::span<const size_t>,
                  cudaStream_t) override {
    return reached();
  }
  Status allReduceSum(float*, size_t, cudaStream_t) override { return reached(); }
  Status reduceScatterSum(const float*, float*, std::span<const size_t>, cudaStream_t) override {
    return reached();
  }
  Status allGatherV(const void*, void*, std::span<const size_t>, cudaStream_t) override {
    return reached();
  }
  Result<std::unique_ptr<DeviceTransport>> split(int, int) override { return reached(); }
  Status synchronize(cudaStream_t) override { return reached(); }

 private:
  Status reached() {
    ADD_FAILURE() << "an option check let a transfer through";
    return internalError("reached a transfer");
  }
  int rank_, size_;
};

Status createWith(int rank, int size, const GpuCommunicatorOptions& options) {
  SizeOnlyTransport transport(rank, size);
  return GpuCommunicator::create(transport, options).status();
}

TEST(GpuOptions, AlgorithmsTheGpuPathDoesNotRunAreRefusedByName) {
  for (Algorithm a : {Algorithm::kSra, Algorithm::kUncompressed, Algorithm::kAuto}) {
    GpuCommunicatorOptions options;
    options.algorithm = a;
    const Status s = createWith(1, 4, options);
    ASSERT_FALSE(s.isOk());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.toString();
    EXPECT_NE(s.message().find(strCat("rank 1: the GPU path runs algorithm allgather or "
                                      "hierarchical, not ", algorithmName(a))),
              std::string::npos)
        << s.message();
  }
}

TEST(GpuOptions, RanksPerHostMustMakeEqualHosts) {
  for (int perHost : {-1, 3, 5}) {
    GpuCommunicatorOptions options;
    options.algorithm = Algorithm::kHierarchical;
    options.ranksPerHost = perHost;
    const Status s = createWith(2, 4, options);
    ASSERT_FALSE(s.isOk());
    EXPECT_NE(s.message().find(strCat("rank 2: ranksPerHost ", perHost,
                                      " does not divide 4 ranks into equal hosts")),
              std::string::npos)
        << s.message();
  }
}

TEST(GpuOptions, BlockQuantizersAndBadChunksAreRefused) {
  GpuCommunicatorOptions options;
  options.codec = "linear:bits=8";
  Status s = createWith(0, 2, options);
  EXPECT_NE(s.message().find("is a block quantizer"), std::string::npos) << s.message();
  options = {};
  options.chunkNumel = 0;
  s = createWith(0, 2, options);
  EXPECT_NE(s.message().find("chunkNumel must be >= 1"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace qcomm
