// The NCCL transport (target qcomm::nccl): device buffers between GPUs. Created from an existing
// ncclComm_t (borrowed), from a unique id every rank got somehow (owned; qcomm/nccl_mpi.h
// broadcasts it over MPI), or alone on one GPU (owned). Owned communicators are non-blocking (config.blocking = 0) with a timeout: an operation that does not
// finish in time aborts the communicator (ncclCommAbort) and returns an error naming what hung,
// instead of hanging; asynchronous NCCL errors are polled and surfaced.
#pragma once

#include <nccl.h>

#include <chrono>
#include <memory>

#include "qcomm/device_transport.h"

namespace qcomm::transport {

struct NcclOptions {
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

class NcclTransport final : public DeviceTransport {
 public:
  // Borrows `comm` (the caller destroys it); its rank and size come from NCCL.
  static Result<std::unique_ptr<NcclTransport>> fromComm(ncclComm_t comm,
                                                         NcclOptions options = {});
  // Rank `rank` of `size`, on CUDA device `device`, joining the communicator of `id`.
  static Result<std::unique_ptr<NcclTransport>> createWithUniqueId(const ncclUniqueId& id,
                                                                   int rank, int size, int device,
                                                                   NcclOptions options = {});
  // A communicator of one rank on `device` (single-GPU runs and tests of the whole pipeline).
  static Result<std::unique_ptr<NcclTransport>> createSingleRank(int device,
                                                                 NcclOptions options = {});
  ~NcclTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view name() const override { return "nccl"; }
  bool asynchronous() const override { return true; }

  Status allGather(const void* send, void* recv, size_t bytes, cudaStream_t stream) override;
  Status allToAll(const void* send, std::span<const size_t> sendBytes, void* recv,
                  std::span<const size_t> recvBytes, cudaStream_t stream) override;
  Status allReduceSum(float* data, size_t count, cudaStream_t stream) override;
  // Equal counts: ncclReduceScatter / ncclAllGather; otherwise one grouped ncclReduce /
  // ncclBroadcast per rank.
  Status reduceScatterSum(const float* send, float* recv, std::span<const size_t> counts,
                          cudaStream_t stream) override;
  Status allGatherV(const void* send, void* recv, std::span<const size_t> bytes,
                    cudaStream_t stream) override;
  // ncclCommSplit; the new communicator is owned, non-blocking, with this one's timeout.
  Result<std::unique_ptr<DeviceTransport>> split(int color, int key) override;
  Status synchronize(cudaStream_t stream) override;

  ncclComm_t comm() const { return comm_; }

 private:
  NcclTransport(ncclComm_t comm, bool owned, NcclOptions options);
  // After a call on a non-blocking communicator: waits (to the timeout) while NCCL reports
  // ncclInProgress; aborts on timeout or error.
  Status settle(ncclResult_t result, const char* what);
  Status abortWith(Status status);
  // Runs `calls` (NCCL calls, one per rank) between ncclGroupStart and ncclGroupEnd.
  template <typename Calls>
  Status grouped(const char* what, Calls&& calls);

  ncclComm_t comm_ = nullptr;
  bool owned_ = false;
  bool aborted_ = false;
  int rank_ = 0;
  int size_ = 1;
  NcclOptions options_;
};

}  // namespace qcomm::transport
