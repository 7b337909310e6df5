// What the GPU allreduce's pipelines share (gpu_communicator.cc: flat; gpu_hierarchical.cc): a
// slot's device buffers and events, and where a code's parts lie in a message.
#pragma once

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "qcomm/codec.h"
#include "qcomm/cuda_buffer.h"
#include "qcomm/gpu_communicator.h"

namespace qcomm {

// A device message: the bucket scales (float32, padded to 8 bytes), then the words.
inline size_t gpuCodeScaleBytes(const QsgdGeometry& g) {
  return (4 * static_cast<size_t>(g.numBuckets) + 7) / 8 * 8;
}
inline size_t gpuCodeBytes(const QsgdGeometry& g) {
  return gpuCodeScaleBytes(g) + 8 * static_cast<size_t>(g.wordCount);
}

// One pipeline slot (two alternate): this rank's code, every peer's codes, (hierarchical) this
// rank's slice sum and result, and the events that order the two streams around them.
struct GpuCommunicator::Slot {
  cuda::DeviceBuffer<uint8_t> send, recv;
  cuda::DeviceBuffer<float> sum, result;
  cudaEvent_t encoded = nullptr, exchanged = nullptr, decoded = nullptr, reduced = nullptr,
              gathered = nullptr;
  Slot() = default;
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot();
};

// Runs `run` (which enqueues work on `stream`); when `timed`, waits for it through `transport` and
// adds its milliseconds to *total (the phases are then serialized).
template <typename Run>
Status runPhase(bool timed, transport::DeviceTransport& transport, double* total,
                cudaStream_t stream, Run&& run) {
  const auto t0 = std::chrono::steady_clock::now();
  QCOMM_RETURN_IF_ERROR(run());
  if (timed) {
    QCOMM_RETURN_IF_ERROR(transport.synchronize(stream));
    *total += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
  }
  return Status::ok();
}

}  // namespace qcomm
