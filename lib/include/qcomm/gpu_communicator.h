// The GPU path of the compressed allreduce (target qcomm::gpu): device buffers in, device buffers
// out. Each chunk is QSGD-encoded on the device, its code all-gathered over a DeviceTransport (NCCL,
// or MPI with device buffers), and decoded-and-averaged on the device; chunks are pipelined on two
// CUDA streams with events, so chunk c+1 is encoded while chunk c travels. Workspaces are allocated
// once and reused; error-feedback residuals stay on the device. No host synchronization inside the
// pipeline, except what the staged MPI transport does per chunk.
//
// For the same seed, key, chunking and call count, the result equals the CPU Communicator's with
// algorithm=allgather, bit for bit: same codes, same rank-order fp32 mean.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "qcomm/codec.h"
#include "qcomm/cuda_buffer.h"
#include "qcomm/device_transport.h"
#include "qcomm/status.h"

namespace qcomm {

struct GpuCommunicatorOptions {
  // A QSGD spec; the same default as CommunicatorOptions::codec.
  std::string codec = "qsgd:bits=4,bucket=512,norm=max,layout=compact,random_bits=16";
  bool errorFeedback = false;
  uint64_t seed = 0;
  int64_t minCompressNumel = 16384;  // smaller tensors: uncompressed allreduce
  int64_t chunkNumel = int64_t{1} << 22;
  // Alone, a rank's mean is its own tensor: like the CPU path, the GPU path then skips the codec.
  // True runs the whole compressed pipeline anyway (tests of a single-GPU setup).
  bool compressSingleRank = false;

  std::string describe() const;
};

// Where the time of the last call went (CUDA events; with `timePhases`, phases are serialized to
// measure them, so the total is then not the pipelined time).
struct GpuPhaseTimes {
  double encodeMs = 0, exchangeMs = 0, decodeMs = 0;
};

class GpuCommunicator {
 public:
  // Checks the options and that every rank has the same ones.
  static Result<std::unique_ptr<GpuCommunicator>> create(transport::DeviceTransport& transport,
                                                         const GpuCommunicatorOptions& options);
  ~GpuCommunicator();
  GpuCommunicator(const GpuCommunicator&) = delete;
  GpuCommunicator& operator=(const GpuCommunicator&) = delete;

  // data[0, n) (device memory) becomes the mean over ranks, ordered on `stream`.
  Status allreduceMean(float* data, int64_t n, const std::string& key, cudaStream_t stream);
  // Waits for `stream` through the transport (timeouts and asynchronous errors surface here).
  Status synchronize(cudaStream_t stream);

  // Serializes the phases and times them with events (for the benchmark).
  void setTimePhases(bool on) { timePhases_ = on; }
  const GpuPhaseTimes& lastPhaseTimes() const { return times_; }
  uint64_t bytesSent() const { return bytesSent_; }

 private:
  struct Slot;
  GpuCommunicator(transport::DeviceTransport& transport, GpuCommunicatorOptions options,
                  QsgdOptions codec);
  Status ensureSlots(int64_t chunk);
  Status compressed(float* data, int64_t n, uint32_t tensorId, uint64_t step, float* residual,
                    cudaStream_t stream);

  transport::DeviceTransport& transport_;
  GpuCommunicatorOptions options_;
  QsgdOptions codec_;
  uint64_t step_ = 0;
  uint64_t bytesSent_ = 0;
  bool timePhases_ = false;
  GpuPhaseTimes times_;
  cudaStream_t commStream_ = nullptr;
  std::unique_ptr<Slot[]> slots_;  // two, for the pipeline
  int64_t slotChunk_ = 0;
  cuda::DeviceBuffer<float> work_;
  cuda::DeviceBuffer<uint8_t> workspace_;
  std::map<std::string, cuda::DeviceBuffer<float>> residuals_;
};

}  // namespace qcomm
