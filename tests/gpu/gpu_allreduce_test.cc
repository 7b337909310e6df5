// The GPU allreduce under mpirun (labels gpu and nccl): the staged MPI path with 1-4 ranks sharing
// one GPU, NCCL alone (the whole compressed pipeline on one GPU) and NCCL with one GPU per rank,
// each against the CPU Communicator (algorithm allgather) for the same seed, bit for bit.
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
#include "qcomm/nccl_transport.h"

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

// What the allgather schedule computes for one rank (the CPU Communicator never runs it alone).
void aloneReference(std::vector<float>& x, const CommunicatorOptions& o,
                    std::vector<float>& residual, int call) {
  const QsgdOptions codec = parseCodecSpec(o.codec).value();
  uint64_t hash = 0xCBF29CE484222325ull;
  for (unsigned char ch : std::string("w")) hash = (hash ^ ch) * 0x100000001B3ull;
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> work(x);
  if (o.errorFeedback) {
    for (int64_t i = 0; i < n; ++i) work[i] = x[i] + residual[i];
  }
  for (int64_t begin = 0; begin < n; begin += o.chunkNumel) {
    const int64_t m = std::min(o.chunkNumel, n - begin);
    const std::span<const float> chunk(work.data() + begin, m);
    const EncodedTensor e =
        qsgdEncode(chunk, codec, {o.seed, 0, static_cast<uint32_t>(hash), uint64_t(call)}).value();
    std::vector<float> d(m);
    ASSERT_TRUE(qsgdDecode(e, d).isOk());
    for (int64_t i = 0; i < m; ++i) {
      if (o.errorFeedback) residual[begin + i] = work[begin + i] - d[i];
      x[begin + i] = (0.0f + d[i]) / 1.0f;
    }
  }
}

struct Case {
  int bits;
  int64_t n;
  bool errorFeedback;
};

// Runs three calls of each case on the CPU Communicator and the GPU one; every result must match.
void expectGpuEqualsCpu(transport::DeviceTransport& device, bool compressAlone) {
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
    gpuOptions.compressSingleRank = compressAlone;
    auto gpu = GpuCommunicator::create(device, gpuOptions);
    ASSERT_TRUE(gpu.isOk()) << gpu.status().toString();
    std::vector<float> residual(c.n, 0.0f);
    auto buffer = cuda::DeviceBuffer<float>::allocate(c.n);
    ASSERT_TRUE(buffer.isOk());
    for (int call = 0; call < 3; ++call) {
      SCOPED_TRACE(strCat(spec, " n=", c.n, " ef=", c.errorFeedback, " call ", call));
      std::vector<float> expected = inputOf(worldRank(), c.n, call);
      ASSERT_EQ(cudaMemcpy(buffer->data(), expected.data(), 4 * c.n, cudaMemcpyHostToDevice),
                cudaSuccess);
      if (compressAlone) {
        // Alone, the CPU Communicator skips the codec; the expected values are the allgather
        // schedule's for one rank: per chunk (0 + decode(encode(x + residual))) / 1.
        aloneReference(expected, cpuOptions, residual, call);
      } else {
        ASSERT_TRUE((*cpu)->allreduceMean(expected, "w").isOk());
      }
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
  expectGpuEqualsCpu(**device, false);
}

TEST(GpuAllreduce, NcclEqualsTheCpuPath) {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1 && deviceCount() < size) {
    GTEST_SKIP() << "NCCL with " << size << " ranks needs a GPU per rank; this machine has "
                 << deviceCount();
  }
  auto nccl = transport::NcclTransport::createWithMpi(MPI_COMM_WORLD, worldRank() % deviceCount());
  ASSERT_TRUE(nccl.isOk()) << nccl.status().toString();
  // Alone, the pipeline is forced through the codec and compared with the CPU allgather schedule
  // of one rank.
  expectGpuEqualsCpu(**nccl, size == 1);
}

}  // namespace
}  // namespace qcomm
