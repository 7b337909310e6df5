// Moving device memory between ranks: the interface of the GPU path (qcomm/gpu_communicator.h),
// with two backends: NCCL (qcomm/nccl_transport.h) and MPI (qcomm/mpi_device_transport.h: device
// pointers straight to a CUDA-aware MPI, otherwise staged through pinned host memory).
//
// Calls enqueue on `stream` where the backend can (NCCL) and return; a backend that cannot (staged
// MPI) completes before returning. synchronize() waits for a stream with the transport's timeout
// and surfaces asynchronous errors.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "qcomm/status.h"

namespace qcomm::transport {

class DeviceTransport {
 public:
  virtual ~DeviceTransport() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string_view name() const = 0;
  // True when calls only enqueue (the pipeline can overlap them with compute).
  virtual bool asynchronous() const = 0;

  // recv (size() * bytes) receives every rank's `bytes` from send, in rank order.
  virtual Status allGather(const void* send, void* recv, size_t bytes, cudaStream_t stream) = 0;
  // Block r of send (sendBytes[r], back to back) goes to rank r; recv receives recvBytes[r] from
  // rank r, back to back in rank order.
  virtual Status allToAll(const void* send, std::span<const size_t> sendBytes, void* recv,
                          std::span<const size_t> recvBytes, cudaStream_t stream) = 0;
  // In-place elementwise float sum over ranks.
  virtual Status allReduceSum(float* data, size_t count, cudaStream_t stream) = 0;
  // send holds size() blocks of counts[r] floats, back to back; recv receives counts[rank()]
  // floats: the sum over ranks of their block rank(). Counts may differ between blocks.
  virtual Status reduceScatterSum(const float* send, float* recv, std::span<const size_t> counts,
                                  cudaStream_t stream) = 0;
  // recv receives every rank's bytes[r] bytes from its send, back to back in rank order.
  virtual Status allGatherV(const void* send, void* recv, std::span<const size_t> bytes,
                            cudaStream_t stream) = 0;
  // A transport over the ranks that pass the same color (>= 0), ranked by (key, rank); a rank
  // passing a negative color takes part and gets nullptr. Collective over all ranks; the result
  // owns its resources (it may outlive this transport).
  virtual Result<std::unique_ptr<DeviceTransport>> split(int color, int key) = 0;
  // Waits for all work on `stream`; a timeout or an asynchronous error is an error here.
  virtual Status synchronize(cudaStream_t stream) = 0;
};

}  // namespace qcomm::transport
