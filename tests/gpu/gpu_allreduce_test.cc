// The GPU allreduce under mpirun (labels gpu and nccl): the staged MPI path with ranks sharing one
// GPU, and NCCL with one GPU per rank, each against the CPU Communicator (algorithm allgather) for
// the same seed, bit for bit. (NCCL alone on one GPU: gpu_pipeline_test.cc.)
// Without a CUDA device the binary says why and exits 77 (skipped).
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <bit>
#include <span>
#include <string>
#include <cmath>
#include <random>
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

// Runs three calls of each case on the CPU Communicator and the GPU one; every result must match.
void expectGpuEqualsCpu(transport::DeviceTransport& device) {
  auto host = transport::MpiTransport::create(MPI_COMM_WORLD);
  ASSERT_TRUE(host.isOk()) << host.status().toString();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (const Case c : {Case{4, 1000, false}, Case{2, 100003, true}, Case{8, 300001, true}}) {
    const std::string spec = strCat("qsgd:bits=", c.bits, ",bucket=512,norm=max,layout=compact");
    CommunicatorOptions cpuOptions;
    cpuOptions.codec = spec;
    cpuOptions.algorithm = Algorithm::kAllgather;
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
    auto gpu = GpuCommunicator::create(device, gpuOptions);
    ASSERT_TRUE(gpu.isOk()) << gpu.status().toString();
    auto buffer = cuda::DeviceBuffer<float>::allocate(c.n);
    ASSERT_TRUE(buffer.isOk());
    for (int call = 0; call < 3; ++call) {
      SCOPED_TRACE(strCat(spec, " n=", c.n, " ef=", c.errorFeedback, " call ", call));
      std::vector<float> expected = inputOf(worldRank(), c.n, call);
      ASSERT_EQ(cudaMemcpy(buffer->data(), expected.data(), 4 * c.n, cudaMemcpyHostToDevice),
                cudaSuccess);
      ASSERT_TRUE((*cpu)->allreduceMean(expected, "w").isOk());
      ASSERT_TRUE((*gpu)->allreduceMean(buffer->data(), c.n, "w", stream).isOk());
      ASSERT_TRUE((*gpu)->synchronize(stream).isOk());
      std::vector<float> got(c.n);
      ASSERT_EQ(cudaMemcpy(got.data(), buffer->data(), 4 * c.n, cudaMemcpyDeviceToHost),
                cudaSuccess);
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
}

}  // namespace
}  // namespace qcomm
