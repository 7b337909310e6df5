// The GPU allreduce under mpirun (labels gpu and nccl): the staged MPI path with ranks sharing one
// GPU, and NCCL with one GPU per rank, each against the CPU Communicator (algorithm allgather) for
// the same seed, bit for bit. (NCCL alone on one GPU: gpu_pipeline_test.cc.)
// Without a CUDA device the binary says why and exits 77 (skipped).
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <span>
#include <string>
#include <cmath>
#include <random>
#include <sstream>
#include <vector>

#include "qcomm/communicator.h"
#include "qcomm/cuda_buffer.h"
#include "qcomm/gpu_communicator.h"
#include "qcomm/mpi_device_transport.h"
#include "qcomm/mpi_transport.h"
#include "qcomm/nccl_mpi.h"

namespace qcomm {
namespace {

int worldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int deviceCount() {
  int n = 0;
  cudaGetDeviceCount(&n);
  return n;
}

std::vector<float> inputOf(int rank, int64_t n, int call) {
  std::mt19937 gen(1000 * rank + 17 * call + 1);
  std::normal_distribution<float> d(0.1f * rank, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

struct Case {
  int bits;
  int64_t n;
  bool errorFeedback;
};

// How a GPU run is compared with a CPU one.
struct Pairing {
  Algorithm cpu = Algorithm::kAllgather, gpu = Algorithm::kAllgather;
  int ranksPerHost = 0;
  // False: the GPU's reduce-scatter may add in another order than the CPU's local-rank order
  // (three or more ranks per host), so results must agree to rounding and be the same on every
  // rank instead of bit for bit.
  bool bitForBit = true;
};

int worldSize() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Every rank's copy of `values` must equal rank 0's, bit for bit.
void expectSameOnEveryRank(const std::vector<float>& values) {
  std::vector<float> first(values);
  MPI_Bcast(first.data(), static_cast<int>(first.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(values[i]), std::bit_cast<uint32_t>(first[i]))
        << "value " << i << " differs from rank 0's";
  }
}

// Runs three calls of each case on the CPU Communicator and the GPU one; every result must match.
void expectGpuEqualsCpu(transport::DeviceTransport& device, const Pairing& pairing = {}) {
  auto host = transport::MpiTransport::create(MPI_COMM_WORLD);
  ASSERT_TRUE(host.isOk()) << host.status().toString();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (const Case c : {Case{4, 1000, false}, Case{2, 100003, true}, Case{8, 300001, true}}) {
    const std::string spec = strCat("qsgd:bits=", c.bits, ",bucket=512,norm=max,layout=compact");
    CommunicatorOptions cpuOptions;
    cpuOptions.codec = spec;
    cpuOptions.algorithm = pairing.cpu;
    cpuOptions.ranksPerHost = pairing.ranksPerHost;
    cpuOptions.minCompressNumel = 0;
    cpuOptions.chunkNumel = 70000;
    cpuOptions.errorFeedback = c.errorFeedback;
    cpuOptions.seed = 5;
    auto cpu = Communicator::create(**host, cpuOptions);
    ASSERT_TRUE(cpu.isOk()) << cpu.status().toString();
    GpuCommunicatorOptions gpuOptions;
    gpuOptions.codec = spec;
    gpuOptions.minCompressNumel = 0;
    gpuOptions.chunkNumel = 70000;
    gpuOptions.errorFeedback = c.errorFeedback;
    gpuOptions.seed = 5;
    gpuOptions.algorithm = pairing.gpu;
    gpuOptions.ranksPerHost = pairing.ranksPerHost;
    auto gpu = GpuCommunicator::create(device, gpuOptions);
    ASSERT_TRUE(gpu.isOk()) << gpu.status().toString();
    auto buffer = cuda::DeviceBuffer<float>::allocate(c.n);
    ASSERT_TRUE(buffer.isOk());
    for (int call = 0; call < 3; ++call) {
      SCOPED_TRACE(strCat(spec, " n=", c.n, " ef=", c.errorFeedback, " call ", call));
      if (call == 2) {
        // The last call runs on a fresh GpuCommunicator resumed from a checkpoint of this one:
        // its residuals and step must carry the words on exactly.
        std::stringstream checkpoint;
        ASSERT_TRUE((*gpu)->saveState(checkpoint, stream).isOk());
        auto resumed = GpuCommunicator::create(device, gpuOptions);
        ASSERT_TRUE(resumed.isOk()) << resumed.status().toString();
        const Status loaded = (*resumed)->loadState(checkpoint, stream);
        ASSERT_TRUE(loaded.isOk()) << loaded.toString();
        *gpu = std::move(*resumed);
      }
      std::vector<float> expected = inputOf(worldRank(), c.n, call);
      ASSERT_EQ(cudaMemcpy(buffer->data(), expected.data(), 4 * c.n, cudaMemcpyHostToDevice),
                cudaSuccess);
      ASSERT_TRUE((*cpu)->allreduceMean(expected, "w").isOk());
      ASSERT_TRUE((*gpu)->allreduceMean(buffer->data(), c.n, "w", stream).isOk());
      ASSERT_TRUE((*gpu)->synchronize(stream).isOk());
      std::vector<float> got(c.n);
      ASSERT_EQ(cudaMemcpy(got.data(), buffer->data(), 4 * c.n, cudaMemcpyDeviceToHost),
                cudaSuccess);
      if (!pairing.bitForBit) {
        expectSameOnEveryRank(got);
        for (int64_t i = 0; i < c.n; ++i) {
          ASSERT_NEAR(got[i], expected[i], 1e-5f * (1.0f + std::fabs(expected[i])))
              << "value " << i;
        }
        continue;
      }
      for (int64_t i = 0; i < c.n; ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(expected[i]))
            << "value " << i << ": GPU " << got[i] << ", CPU " << expected[i];
      }
    }
  }
  cudaStreamDestroy(stream);
}

TEST(GpuAllreduce, StagedMpiEqualsTheCpuPath) {
  cudaSetDevice(worldRank() % deviceCount());
  auto device = transport::MpiDeviceTransport::create(MPI_COMM_WORLD, /*forceStaging=*/true);
  ASSERT_TRUE(device.isOk()) << device.status().toString();
  expectGpuEqualsCpu(**device);
}

// Hosts of two ranks (np 4: 2 hosts x 2): the CPU hierarchical algorithm's result bit for bit.
// One host of all ranks: the reduce-scatter and allgather only. One rank per host: flat.
TEST(GpuAllreduce, StagedMpiHierarchicalEqualsTheCpuPath) {
  cudaSetDevice(worldRank() % deviceCount());
  auto device = transport::MpiDeviceTransport::create(MPI_COMM_WORLD, /*forceStaging=*/true);
  ASSERT_TRUE(device.isOk()) << device.status().toString();
  const int p = worldSize();
  if (p % 2 == 0) {
    SCOPED_TRACE("2 ranks per host");
    expectGpuEqualsCpu(**device, {Algorithm::kHierarchical, Algorithm::kHierarchical, 2, true});
  }
  {
    SCOPED_TRACE("one host");
    expectGpuEqualsCpu(**device, {Algorithm::kHierarchical, Algorithm::kHierarchical, p, p <= 2});
  }
  {
    SCOPED_TRACE("one rank per host");
    expectGpuEqualsCpu(**device, {Algorithm::kAllgather, Algorithm::kHierarchical, 1, true});
  }
}

// The staged path polls MPI's nonblocking collectives against the timeout: a rank that never
// joins is named by every other rank through the roll call, for a movement and a reduction.
TEST(GpuAllreduce, StagedMpiNamesASilentRankAfterTheTimeout) {
  const int p = worldSize(), me = worldRank(), silent = 1 % p;
  if (p < 2) GTEST_SKIP() << "needs two ranks";
  cudaSetDevice(me % deviceCount());
  auto buffer = cuda::DeviceBuffer<float>::allocate(1024 * (p + 1));  // 1024 out, 1024 * p in
  ASSERT_TRUE(buffer.isOk());
  ASSERT_EQ(cudaMemset(buffer->data(), 0, 4 * 1024 * (p + 1)), cudaSuccess);
  for (const std::string op : {"MPI_Allgather", "MPI_Allreduce"}) {
    auto device = transport::MpiDeviceTransport::create(MPI_COMM_WORLD, /*forceStaging=*/true,
                                                        std::chrono::milliseconds(400));
    ASSERT_TRUE(device.isOk()) << device.status().toString();
    if (me != silent) {
      const Status s = op == "MPI_Allgather"
                           ? (*device)->allGather(buffer->data(), buffer->data() + 1024, 4096, 0)
                           : (*device)->allReduceSum(buffer->data(), 1024, 0);
      EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << op << ": " << s.toString();
      EXPECT_NE(s.message().find(strCat(op, " on rank ", me, " of the staged MPI device transport, "
                                        "timeout 400 ms: rank ", silent, " not heard from")),
                std::string::npos)
          << s.message();
      EXPECT_EQ((*device)->allReduceSum(buffer->data(), 1, 0).code(),
                StatusCode::kDeadlineExceeded);  // broken: refuses further work
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

TEST(GpuAllreduce, HierarchicalCountsWhatCrossesHosts) {
  const int p = worldSize();
  if (p % 2 != 0) GTEST_SKIP() << "needs an even number of ranks";
  cudaSetDevice(worldRank() % deviceCount());
  auto device = transport::MpiDeviceTransport::create(MPI_COMM_WORLD, /*forceStaging=*/true);
  ASSERT_TRUE(device.isOk()) << device.status().toString();
  const int64_t n = 1 << 20;
  auto buffer = cuda::DeviceBuffer<float>::allocate(n);
  ASSERT_TRUE(buffer.isOk());
  ASSERT_EQ(cudaMemset(buffer->data(), 0, 4 * n), cudaSuccess);
  uint64_t across[2] = {};
  for (Algorithm a : {Algorithm::kAllgather, Algorithm::kHierarchical}) {
    GpuCommunicatorOptions options;
    options.algorithm = a;
    options.ranksPerHost = 2;
    auto gpu = GpuCommunicator::create(**device, options);
    ASSERT_TRUE(gpu.isOk()) << gpu.status().toString();
    EXPECT_EQ((*gpu)->layout().hosts, p / 2);
    ASSERT_TRUE((*gpu)->allreduceMean(buffer->data(), n, "w", nullptr).isOk());
    ASSERT_TRUE((*gpu)->synchronize(nullptr).isOk());
    across[a == Algorithm::kHierarchical] = (*gpu)->bytesSentAcrossHosts();
  }
  if (p == 2) {  // one host: nothing crosses
    EXPECT_EQ(across[1], 0u);
  } else {  // each rank sends half the tensor's codes to each other host, flat sends all of it
    EXPECT_GT(across[1], 0u);
    EXPECT_LT(across[1], across[0] * 6 / 10) << "flat " << across[0];
  }
}

TEST(GpuAllreduce, NcclWithAGpuPerRankEqualsTheCpuPath) {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size == 1) GTEST_SKIP() << "one rank: gpu_pipeline_test covers NCCL alone";
  if (deviceCount() < size) {
    GTEST_SKIP() << "NCCL with " << size << " ranks needs a GPU per rank; this machine has "
                 << deviceCount();
  }
  auto nccl = transport::createNcclOverMpi(MPI_COMM_WORLD, worldRank() % deviceCount());
  ASSERT_TRUE(nccl.isOk()) << nccl.status().toString();
  expectGpuEqualsCpu(**nccl);
  if (size % 2 == 0) {  // ncclCommSplit into hosts of two GPUs
    SCOPED_TRACE("hierarchical, 2 GPUs per host");
    expectGpuEqualsCpu(**nccl, {Algorithm::kHierarchical, Algorithm::kHierarchical, 2, true});
  }
}

}  // namespace
}  // namespace qcomm
