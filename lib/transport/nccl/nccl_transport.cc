// The NCCL transport: collectives on device buffers, with a timeout that aborts instead of hanging.
#include "qcomm/nccl_transport.h"

#include <thread>
#include <vector>

namespace qcomm::transport {
namespace {

using Clock = std::chrono::steady_clock;

Status ncclFailure(const char* what, ncclResult_t result, ncclComm_t comm) {
  const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  return internalError(what, " failed: ", ncclGetErrorString(result),
                       last != nullptr && *last != '\0' ? strCat(" (", last, ")") : std::string());
}

Status cudaFailureOf(const char* what, cudaError_t e) {
  return internalError(what, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

}  // namespace

NcclTransport::NcclTransport(ncclComm_t comm, bool owned, NcclOptions options)
    : comm_(comm), owned_(owned), options_(options) {}

NcclTransport::~NcclTransport() {
  if (!owned_ || comm_ == nullptr) return;
  if (aborted_) return;  // ncclCommAbort already freed it
  // A non-blocking communicator may need polling to finish finalizing; bounded by the timeout.
  ncclResult_t r = ncclCommFinalize(comm_);
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  ncclResult_t state = r;
  while (state == ncclInProgress && Clock::now() < deadline) {
    std::this_thread::yield();
    if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
  }
  if (state == ncclSuccess) {
    ncclCommDestroy(comm_);
  } else {
    ncclCommAbort(comm_);
  }
}

Result<std::unique_ptr<NcclTransport>> NcclTransport::fromComm(ncclComm_t comm,
                                                               NcclOptions options) {
  if (comm == nullptr) return invalidArgument("NcclTransport::fromComm: comm is null");
  auto t = std::unique_ptr<NcclTransport>(new NcclTransport(comm, false, options));
  if (const ncclResult_t r = ncclCommUserRank(comm, &t->rank_); r != ncclSuccess) {
    return ncclFailure("ncclCommUserRank", r, comm);
  }
  if (const ncclResult_t r = ncclCommCount(comm, &t->size_); r != ncclSuccess) {
    return ncclFailure("ncclCommCount", r, comm);
  }
  return t;
}

Result<std::unique_ptr<NcclTransport>> NcclTransport::createWithUniqueId(const ncclUniqueId& id,
                                                                         int rank, int size,
                                                                         int device,
                                                                         NcclOptions options) {
  if (size < 1 || rank < 0 || rank >= size) {
    return invalidArgument("NCCL rank ", rank, " of ", size, " is impossible");
  }
  if (const cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    return cudaFailureOf(strCat("rank ", rank, ": cudaSetDevice(", device, ")").c_str(), e);
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  auto t = std::unique_ptr<NcclTransport>(new NcclTransport(nullptr, true, options));
  t->rank_ = rank;
  t->size_ = size;
  const ncclResult_t r = ncclCommInitRankConfig(&comm, size, id, rank, &config);
  t->comm_ = comm;
  QCOMM_RETURN_IF_ERROR(t->settle(r, "ncclCommInitRankConfig"));
  return t;
}

Result<std::unique_ptr<NcclTransport>> NcclTransport::createSingleRank(int device,
                                                                      NcclOptions options) {
  ncclUniqueId id{};
  if (const ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
    return ncclFailure("ncclGetUniqueId", r, nullptr);
  }
  return createWithUniqueId(id, 0, 1, device, options);
}

Status NcclTransport::abortWith(Status status) {
  if (owned_ && comm_ != nullptr && !aborted_) {
    ncclCommAbort(comm_);
    aborted_ = true;
  }
  return status;
}

Status NcclTransport::settle(ncclResult_t result, const char* what) {
  if (aborted_) return failedPrecondition("rank ", rank_, ": the NCCL communicator was aborted");
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  ncclResult_t state = result;
  while (state == ncclInProgress) {
    if (Clock::now() > deadline) {
      return abortWith(deadlineExceeded(what, " on rank ", rank_, " did not finish within ",
                                        options_.timeout.count(),
                                        " ms; the communicator was aborted"));
    }
    std::this_thread::yield();
    if (const ncclResult_t r = ncclCommGetAsyncError(comm_, &state); r != ncclSuccess) {
      return abortWith(ncclFailure("ncclCommGetAsyncError", r, comm_));
    }
  }
  if (state != ncclSuccess) return abortWith(ncclFailure(what, state, comm_));
  return Status::ok();
}

Status NcclTransport::allGather(const void* send, void* recv, size_t bytes, cudaStream_t stream) {
  return settle(ncclAllGather(send, recv, bytes, ncclUint8, comm_, stream), "ncclAllGather");
}

Status NcclTransport::allToAll(const void* send, std::span<const size_t> sendBytes, void* recv,
                               std::span<const size_t> recvBytes, cudaStream_t stream) {
  if (static_cast<int>(sendBytes.size()) != size_ || static_cast<int>(recvBytes.size()) != size_) {
    return invalidArgument("allToAll on rank ", rank_, ": ", sendBytes.size(), " send and ",
                           recvBytes.size(), " receive counts for ", size_, " ranks");
  }
  QCOMM_RETURN_IF_ERROR(settle(ncclGroupStart(), "ncclGroupStart"));
  const auto* s = static_cast<const uint8_t*>(send);
  auto* d = static_cast<uint8_t*>(recv);
  for (int r = 0; r < size_; ++r) {
    if (sendBytes[r] > 0) {
      const ncclResult_t e = ncclSend(s, sendBytes[r], ncclUint8, r, comm_, stream);
      if (e != ncclSuccess && e != ncclInProgress) {
        ncclGroupEnd();
        return abortWith(ncclFailure("ncclSend", e, comm_));
      }
    }
    if (recvBytes[r] > 0) {
      const ncclResult_t e = ncclRecv(d, recvBytes[r], ncclUint8, r, comm_, stream);
      if (e != ncclSuccess && e != ncclInProgress) {
        ncclGroupEnd();
        return abortWith(ncclFailure("ncclRecv", e, comm_));
      }
    }
    s += sendBytes[r];
    d += recvBytes[r];
  }
  return settle(ncclGroupEnd(), "ncclGroupEnd (all-to-all)");
}

template <typename Calls>
Status NcclTransport::grouped(const char* what, Calls&& calls) {
  QCOMM_RETURN_IF_ERROR(settle(ncclGroupStart(), "ncclGroupStart"));
  for (int r = 0; r < size_; ++r) {
    const ncclResult_t e = calls(r);
    if (e != ncclSuccess && e != ncclInProgress) {
      ncclGroupEnd();
      return abortWith(ncclFailure(what, e, comm_));
    }
  }
  return settle(ncclGroupEnd(), what);
}

namespace {

bool allEqual(std::span<const size_t> counts) {
  for (size_t c : counts) {
    if (c != counts[0]) return false;
  }
  return true;
}

}  // namespace

Status NcclTransport::reduceScatterSum(const float* send, float* recv,
                                       std::span<const size_t> counts, cudaStream_t stream) {
  if (static_cast<int>(counts.size()) != size_) {
    return invalidArgument("reduceScatterSum on rank ", rank_, ": ", counts.size(),
                           " counts for ", size_, " ranks");
  }
  if (allEqual(counts)) {
    return settle(ncclReduceScatter(send, recv, counts[0], ncclFloat32, ncclSum, comm_, stream),
                  "ncclReduceScatter");
  }
  std::vector<size_t> offsets(size_, 0);
  for (int r = 1; r < size_; ++r) offsets[r] = offsets[r - 1] + counts[r - 1];
  return grouped("ncclReduce (reduce-scatter)", [&](int r) {
    return counts[r] == 0 ? ncclSuccess
                          : ncclReduce(send + offsets[r], recv, counts[r], ncclFloat32, ncclSum,
                                       r, comm_, stream);
  });
}

Status NcclTransport::allGatherV(const void* send, void* recv, std::span<const size_t> bytes,
                                 cudaStream_t stream) {
  if (static_cast<int>(bytes.size()) != size_) {
    return invalidArgument("allGatherV on rank ", rank_, ": ", bytes.size(), " counts for ",
                           size_, " ranks");
  }
  if (allEqual(bytes)) return allGather(send, recv, bytes[0], stream);
  auto* d = static_cast<uint8_t*>(recv);
  std::vector<size_t> offsets(size_, 0);
  for (int r = 1; r < size_; ++r) offsets[r] = offsets[r - 1] + bytes[r - 1];
  return grouped("ncclBroadcast (all-gather)", [&](int r) {
    return bytes[r] == 0 ? ncclSuccess
                         : ncclBroadcast(send, d + offsets[r], bytes[r], ncclUint8, r, comm_,
                                         stream);
  });
}

Result<std::unique_ptr<DeviceTransport>> NcclTransport::split(int color, int key) {
  if (aborted_) return failedPrecondition("rank ", rank_, ": the NCCL communicator was aborted");
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t child = nullptr;
  const ncclResult_t r =
      ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    return abortWith(ncclFailure("ncclCommSplit", r, comm_));
  }
  if (child == nullptr) {  // not a member: wait for the parent to be done with the split
    QCOMM_RETURN_IF_ERROR(settle(r, "ncclCommSplit"));
    return std::unique_ptr<DeviceTransport>();
  }
  // A non-blocking split is finished when the new communicator says so.
  auto t = std::unique_ptr<NcclTransport>(new NcclTransport(child, true, options_));
  t->rank_ = rank_;  // for messages until NCCL says
  QCOMM_RETURN_IF_ERROR(t->settle(r, "ncclCommSplit"));
  if (const ncclResult_t e = ncclCommUserRank(child, &t->rank_); e != ncclSuccess) {
    return t->abortWith(ncclFailure("ncclCommUserRank", e, child));
  }
  if (const ncclResult_t e = ncclCommCount(child, &t->size_); e != ncclSuccess) {
    return t->abortWith(ncclFailure("ncclCommCount", e, child));
  }
  return std::unique_ptr<DeviceTransport>(std::move(t));
}

Status NcclTransport::allReduceSum(float* data, size_t count, cudaStream_t stream) {
  return settle(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm_, stream),
                "ncclAllReduce");
}

Status NcclTransport::synchronize(cudaStream_t stream) {
  if (aborted_) return failedPrecondition("rank ", rank_, ": the NCCL communicator was aborted");
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  for (;;) {
    const cudaError_t e = cudaStreamQuery(stream);
    if (e == cudaSuccess) break;
    if (e != cudaErrorNotReady) return cudaFailureOf("cudaStreamQuery", e);
    ncclResult_t state = ncclSuccess;
    if (const ncclResult_t r = ncclCommGetAsyncError(comm_, &state); r != ncclSuccess) {
      return abortWith(ncclFailure("ncclCommGetAsyncError", r, comm_));
    }
    if (state != ncclSuccess && state != ncclInProgress) {
      return abortWith(ncclFailure("an asynchronous NCCL operation", state, comm_));
    }
    if (Clock::now() > deadline) {
      return abortWith(deadlineExceeded("rank ", rank_, ": the stream did not finish within ",
                                        options_.timeout.count(),
                                        " ms (a peer may have died); the NCCL communicator was "
                                        "aborted"));
    }
    std::this_thread::yield();
  }
  return Status::ok();
}

}  // namespace qcomm::transport
