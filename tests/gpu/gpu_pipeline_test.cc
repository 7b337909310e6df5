// The whole GPU allreduce pipeline on one GPU (labels gpu and nccl; no MPI needed, so
// tests/gpu/run.sh runs it too): NCCL alone, the codec forced on, against what the CPU allgather
// schedule computes for one rank, bit for bit, with and without error feedback, over several
// chunks and calls. Also: bad options are refused by name. Exits 77 without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "qcomm/communicator.h"
#include "qcomm/cuda_buffer.h"
#include "qcomm/cuda_codec.h"
#include "qcomm/gpu_communicator.h"
#include "qcomm/nccl_transport.h"

namespace qcomm {
namespace {

// The allgather schedule for one rank: per chunk, (0 + decode(encode(x + residual))) / 1, the
// residual becoming x + residual - decoded; the key's tensor id is the CPU path's hash of it.
void aloneReference(std::vector<float>& x, const QsgdOptions& codec, int64_t chunk, uint64_t seed,
                    bool errorFeedback, std::vector<float>& residual, uint64_t step) {
  uint64_t hash = 0xCBF29CE484222325ull;
  for (unsigned char ch : std::string("w")) hash = (hash ^ ch) * 0x100000001B3ull;
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> work(x);
  if (errorFeedback) {
    for (int64_t i = 0; i < n; ++i) work[i] = x[i] + residual[i];
  }
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t m = std::min(chunk, n - begin);
    const EncodedTensor e =
        qsgdEncode(std::span<const float>(work.data() + begin, m), codec,
                   {seed, 0, static_cast<uint32_t>(hash), step})
            .value();
    std::vector<float> d(m);
    ASSERT_TRUE(qsgdDecode(e, d).isOk());
    for (int64_t i = 0; i < m; ++i) {
      if (errorFeedback) residual[begin + i] = work[begin + i] - d[i];
      x[begin + i] = (0.0f + d[i]) / 1.0f;
    }
  }
}

TEST(GpuPipeline, NcclAloneEqualsTheAllgatherScheduleBitForBit) {
  auto nccl = transport::NcclTransport::createSingleRank(0);
  ASSERT_TRUE(nccl.isOk()) << nccl.status().toString();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (const bool errorFeedback : {false, true}) {
    for (const int bits : {2, 4, 8}) {
      GpuCommunicatorOptions o;
      o.codec = strCat("qsgd:bits=", bits, ",bucket=512,norm=max,layout=compact");
      o.errorFeedback = errorFeedback;
      o.seed = 9;
      o.minCompressNumel = 0;
      o.chunkNumel = 70000;
      o.compressSingleRank = true;
      auto comm = GpuCommunicator::create(**nccl, o);
      ASSERT_TRUE(comm.isOk()) << comm.status().toString();
      const int64_t n = 250001;  // four chunks, the last one partial
      auto buffer = cuda::DeviceBuffer<float>::allocate(n);
      ASSERT_TRUE(buffer.isOk());
      std::vector<float> residual(n, 0.0f);
      std::mt19937 gen(bits);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      for (uint64_t call = 0; call < 3; ++call) {
        SCOPED_TRACE(strCat(o.codec, " ef=", errorFeedback, " call ", call));
        std::vector<float> x(n);
        for (float& v : x) v = normal(gen);
        ASSERT_EQ(cudaMemcpy(buffer->data(), x.data(), 4 * n, cudaMemcpyHostToDevice), cudaSuccess);
        ASSERT_TRUE((*comm)->allreduceMean(buffer->data(), n, "w", stream).isOk());
        ASSERT_TRUE((*comm)->synchronize(stream).isOk());
        aloneReference(x, parseCodecSpec(o.codec).value(), o.chunkNumel, o.seed, errorFeedback,
                       residual, call);
        std::vector<float> got(n);
        ASSERT_EQ(cudaMemcpy(got.data(), buffer->data(), 4 * n, cudaMemcpyDeviceToHost), cudaSuccess);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(x[i]))
              << "value " << i << ": GPU " << got[i] << ", CPU " << x[i];
        }
      }
    }
  }
  cudaStreamDestroy(stream);
}

// The sub-group calls of the hierarchical path on NCCL alone: ncclCommSplit into a member and a
// non-member, the reduce-scatter and the all-gather with counts (one rank: a copy).
TEST(GpuPipeline, NcclSplitsAndMovesSlices) {
  auto nccl = transport::NcclTransport::createSingleRank(0);
  ASSERT_TRUE(nccl.isOk()) << nccl.status().toString();
  auto none = (*nccl)->split(-1, 0);
  ASSERT_TRUE(none.isOk()) << none.status().toString();
  EXPECT_EQ(*none, nullptr);
  auto part = (*nccl)->split(3, 0);
  ASSERT_TRUE(part.isOk()) << part.status().toString();
  ASSERT_NE(*part, nullptr);
  EXPECT_EQ((*part)->size(), 1);
  EXPECT_EQ((*part)->rank(), 0);
  const int64_t n = 1000;
  auto a = cuda::DeviceBuffer<float>::allocate(n);
  auto b = cuda::DeviceBuffer<float>::allocate(n);
  ASSERT_TRUE(a.isOk() && b.isOk());
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = 0.5f * static_cast<float>(i) - 7.0f;
  ASSERT_EQ(cudaMemcpy(a->data(), values.data(), 4 * n, cudaMemcpyHostToDevice), cudaSuccess);
  const size_t counts[1] = {static_cast<size_t>(n)};
  ASSERT_TRUE((*part)->reduceScatterSum(a->data(), b->data(), counts, nullptr).isOk());
  const size_t bytes[1] = {4 * static_cast<size_t>(n)};
  ASSERT_TRUE((*part)->allGatherV(b->data(), a->data(), bytes, nullptr).isOk());
  ASSERT_TRUE((*part)->synchronize(nullptr).isOk());
  std::vector<float> got(n);
  ASSERT_EQ(cudaMemcpy(got.data(), a->data(), 4 * n, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(got, values);
  const size_t two[2] = {1, 2};
  EXPECT_NE((*part)->reduceScatterSum(a->data(), b->data(), two, nullptr).message().find(
                "2 counts for 1 ranks"),
            std::string::npos);
}

// Hierarchical on one rank: one host of one rank, so creation succeeds without splitting, the
// layout says one host, and the call takes the uncompressed path (the tensor unchanged).
TEST(GpuPipeline, HierarchicalAloneLeavesTheTensor) {
  auto nccl = transport::NcclTransport::createSingleRank(0);
  ASSERT_TRUE(nccl.isOk()) << nccl.status().toString();
  GpuCommunicatorOptions o;
  o.algorithm = Algorithm::kHierarchical;
  o.minCompressNumel = 0;
  auto gpu = GpuCommunicator::create(**nccl, o);
  ASSERT_TRUE(gpu.isOk()) << gpu.status().toString();
  EXPECT_EQ((*gpu)->layout().hosts, 1);
  const int64_t n = 5000;
  auto a = cuda::DeviceBuffer<float>::allocate(n);
  ASSERT_TRUE(a.isOk());
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = std::sin(static_cast<float>(i));
  ASSERT_EQ(cudaMemcpy(a->data(), values.data(), 4 * n, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_TRUE((*gpu)->allreduceMean(a->data(), n, "w", nullptr).isOk());
  ASSERT_TRUE((*gpu)->synchronize(nullptr).isOk());
  std::vector<float> got(n);
  ASSERT_EQ(cudaMemcpy(got.data(), a->data(), 4 * n, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(got, values);
}

TEST(GpuPipeline, BadOptionsAreRefusedByName) {
  auto nccl = transport::NcclTransport::createSingleRank(0);
  ASSERT_TRUE(nccl.isOk()) << nccl.status().toString();
  GpuCommunicatorOptions o;
  o.codec = "linear:bits=8";
  EXPECT_NE(GpuCommunicator::create(**nccl, o).status().message().find("runs QSGD codes"),
            std::string::npos);
  o.codec = "qsgd:bits=40";
  EXPECT_FALSE(GpuCommunicator::create(**nccl, o).isOk());
  o.codec = "qsgd:bits=4";
  o.chunkNumel = 0;
  EXPECT_NE(GpuCommunicator::create(**nccl, o).status().message().find("chunkNumel"),
            std::string::npos);
}

}  // namespace
}  // namespace qcomm

int main(int argc, char** argv) {
  const qcomm::Status device = qcomm::cuda::deviceAvailable();
  if (!device.isOk()) {
    std::printf("SKIP: the GPU pipeline tests need a CUDA device: %s\n", device.message().c_str());
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
