// The allreduce with device buffers: qcomm's GPU pipeline (QSGD encode, all-gather of the codes,
// decode-and-accumulate, chunked over two streams) beside the uncompressed allreduce on the same
// transport, measured in the same run. Per size it prints the pipelined time and, from a second,
// serialized run, the time split into encode, exchange and decode. At the end, the model:
// encode + decode against the uncompressed exchange on a 10 Gbit/s link, computed from the bytes.
#include "allreduce_bench_cuda.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "qcomm/cuda_buffer.h"
#include "qcomm/cuda_codec.h"
#include "qcomm/gpu_communicator.h"
#include "qcomm/mpi_device_transport.h"
#if defined(QCOMM_HAVE_NCCL)
#include "qcomm/nccl_mpi.h"
#endif

namespace {

int fail(int rank, const qcomm::Status& s) {
  std::fprintf(stderr, "rank %d: %s\n", rank, s.toString().c_str());
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

}  // namespace

int runDeviceAllreduceBench(int64_t minBytes, int64_t maxBytes, double factor, int iters,
                            int warmup, const std::string& codec, int64_t chunk,
                            const std::string& transportName) {
  int rank = 0, p = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  if (const qcomm::Status s = qcomm::cuda::deviceAvailable(); !s.isOk()) {
    if (rank == 0) std::fprintf(stderr, "--device cuda: %s\n", s.message().c_str());
    return 77;
  }
  int devices = 0;
  cudaGetDeviceCount(&devices);
  cudaSetDevice(rank % devices);
  std::unique_ptr<qcomm::transport::DeviceTransport> transport;
  const bool nccl = transportName == "nccl" || (transportName == "auto" && devices >= p);
#if defined(QCOMM_HAVE_NCCL)
  if (nccl) {
    auto t = qcomm::transport::createNcclOverMpi(MPI_COMM_WORLD, rank % devices);
    if (!t.isOk()) return fail(rank, t.status());
    transport = std::move(t).value();
  }
#else
  if (nccl && transportName == "nccl") return fail(rank, qcomm::failedPrecondition("built without NCCL"));
#endif
  if (!transport) {
    auto t = qcomm::transport::MpiDeviceTransport::create(MPI_COMM_WORLD);
    if (!t.isOk()) return fail(rank, t.status());
    transport = std::move(t).value();
  }
  qcomm::GpuCommunicatorOptions options;
  options.codec = codec;
  options.minCompressNumel = 0;
  options.chunkNumel = chunk;
  auto comm = qcomm::GpuCommunicator::create(*transport, options);
  if (!comm.isOk()) return fail(rank, comm.status());
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  if (rank == 0) {
    std::printf("# qcomm GPU allreduce: %d ranks, transport %s, codec %s, chunk %lld, %d iters\n",
                p, std::string(transport->name()).c_str(), codec.c_str(),
                static_cast<long long>(chunk), iters);
    std::printf("| bytes | values | uncompressed ms | qcomm ms | encode ms | exchange ms | "
                "decode ms | code bytes/rank |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  }
  using Clock = std::chrono::steady_clock;
  double lastEncodeDecode = 0, lastBytes = 0;
  for (double b = double(minBytes); b <= double(maxBytes) * 1.0001; b *= factor) {
    const int64_t n = static_cast<int64_t>(b) / 4;
    auto data = qcomm::cuda::DeviceBuffer<float>::allocate(n);
    if (!data.isOk()) return fail(rank, data.status());
    std::vector<float> host(n);
    for (int64_t i = 0; i < n; ++i) host[i] = static_cast<float>((i * 2654435761u + rank) % 1000) / 500.0f - 1.0f + 1e-3f;
    const auto reset = [&] {
      cudaMemcpyAsync(data->data(), host.data(), n * 4, cudaMemcpyHostToDevice, stream);
    };
    const auto timeIt = [&](auto&& run) -> double {
      double total = 0;
      for (int it = 0; it < warmup + iters; ++it) {
        reset();
        cudaStreamSynchronize(stream);
        MPI_Barrier(MPI_COMM_WORLD);
        const Clock::time_point t0 = Clock::now();
        const qcomm::Status s = run();
        if (!s.isOk()) fail(rank, s);
        const qcomm::Status w = transport->synchronize(stream);
        if (!w.isOk()) fail(rank, w);
        double dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (it >= warmup) total += dt;
      }
      return total / iters;
    };
    const double plain = timeIt([&] { return transport->allReduceSum(data->data(), n, stream); });
    (*comm)->setTimePhases(false);
    const uint64_t before = (*comm)->bytesSent();
    const double pipelined = timeIt([&] { return (*comm)->allreduceMean(data->data(), n, "g", stream); });
    const double codeBytes = double((*comm)->bytesSent() - before) / (warmup + iters) / std::max(1, p - 1);
    (*comm)->setTimePhases(true);
    reset();
    if (const qcomm::Status s = (*comm)->allreduceMean(data->data(), n, "g", stream); !s.isOk()) {
      return fail(rank, s);
    }
    const qcomm::GpuPhaseTimes t = (*comm)->lastPhaseTimes();
    if (rank == 0) {
      std::printf("| %lld | %lld | %.3f | %.3f | %.3f | %.3f | %.3f | %.0f |\n",
                  static_cast<long long>(n * 4), static_cast<long long>(n), plain, pipelined,
                  t.encodeMs, t.exchangeMs, t.decodeMs, codeBytes);
    }
    lastEncodeDecode = t.encodeMs + t.decodeMs;
    lastBytes = double(n) * 4;
  }
  if (rank == 0) {
    // Ring allreduce moves 2 (P - 1) / P of the data per rank; at 10 Gbit/s:
    const double model = 2.0 * (p - 1) / std::max(p, 1) * lastBytes * 8 / 10e9 * 1e3;
    std::printf("\n# model at the largest size: uncompressed exchange on 10 Gbit/s = 2(P-1)/P * "
                "bytes * 8 / 1e10 s = %.1f ms; encode + decode = %.2f ms = %.1f%% of it "
                "(target < 10%%)\n",
                model, lastEncodeDecode, model > 0 ? 100.0 * lastEncodeDecode / model : 0.0);
  }
  cudaStreamDestroy(stream);
  return 0;
}
