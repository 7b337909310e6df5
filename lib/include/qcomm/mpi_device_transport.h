// MPI with device buffers (target qcomm::mpi_cuda). When the MPI library is CUDA-aware (asked at run
// time with MPIX_Query_cuda_support, where Open MPI has it), device pointers go straight to MPI.
// Otherwise the bytes are staged through pinned host memory: copy to the host on the stream, wait
// for it (the one host synchronization per call the staged path needs), exchange, copy back. The
// GPU path only ever sends encoded words this way, so what crosses PCIe is the codes, not the
// float gradients.
//
// Timeouts: the staged path runs MPI's nonblocking collectives on the host copies, polled against
// the transport's timeout; past it the ranks that give up hold a roll call (as MpiTransport does)
// and the error, DeadlineExceeded, names the ranks not heard from; the transport is broken from
// then on (end the job). The CUDA-aware path calls MPI's blocking collectives (Open MPI 4.x takes
// device pointers in blocking collectives only) and has no timeout: force staging to get one.
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>

#include "qcomm/device_transport.h"

namespace qcomm::transport {

class MpiDeviceTransport final : public DeviceTransport {
 public:
  // Uses a duplicate of `comm` (with MPI_ERRORS_RETURN). forceStaging: stage even when MPI is
  // CUDA-aware (for tests, comparisons and timeouts). timeout: of every staged operation; zero:
  // QCOMM_TIMEOUT seconds (default 300); negative: none.
  static Result<std::unique_ptr<MpiDeviceTransport>> create(
      MPI_Comm comm, bool forceStaging = false,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  ~MpiDeviceTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view name() const override { return cudaAware_ ? "mpi-cuda" : "mpi-staged"; }
  bool asynchronous() const override { return false; }
  bool cudaAware() const { return cudaAware_; }
  // Of every staged operation from now on (<= 0: none); transports split from this one inherit it.
  void setTimeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  Status allGather(const void* send, void* recv, size_t bytes, cudaStream_t stream) override;
  Status allToAll(const void* send, std::span<const size_t> sendBytes, void* recv,
                  std::span<const size_t> recvBytes, cudaStream_t stream) override;
  Status allReduceSum(float* data, size_t count, cudaStream_t stream) override;
  Status reduceScatterSum(const float* send, float* recv, std::span<const size_t> counts,
                          cudaStream_t stream) override;
  Status allGatherV(const void* send, void* recv, std::span<const size_t> bytes,
                    cudaStream_t stream) override;
  // MPI_Comm_split; the new transport stages exactly when this one does.
  Result<std::unique_ptr<DeviceTransport>> split(int color, int key) override;
  Status synchronize(cudaStream_t stream) override;

 private:
  MpiDeviceTransport() = default;
  // Pinned host staging buffers, grown as needed and reused.
  Result<uint8_t*> staging(int which, size_t bytes);
  // Runs mpi(send, recv, request) (an MPI collective; its return code) on device memory: the
  // blocking call (request == nullptr) straight on the device pointers when MPI is CUDA-aware,
  // else the nonblocking one (starting *request) on the staging buffers (sendBytes out,
  // recvBytes back), waited for against the timeout. send == recv: in place.
  template <typename Mpi>
  Status throughHost(const char* what, const void* send, size_t sendBytes, void* recv,
                     size_t recvBytes, cudaStream_t stream, Mpi&& mpi);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  bool cudaAware_ = false;
  std::chrono::milliseconds timeout_{0};
  Status broken_;  // set by a timeout: MPI may still write into the staging buffers
  struct Pinned {
    void* data = nullptr;
    size_t bytes = 0;
  };
  Pinned pinned_[2];
};

}  // namespace qcomm::transport
