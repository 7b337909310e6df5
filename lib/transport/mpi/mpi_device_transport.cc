// MPI with device buffers: straight through a CUDA-aware MPI, else staged through pinned memory.
#include "qcomm/mpi_device_transport.h"

#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // MPIX_Query_cuda_support, where Open MPI provides it
#endif

#include <algorithm>
#include <climits>
#include <vector>

#include "mpi_wait.h"
#include "qcomm/env.h"

namespace qcomm::transport {
namespace {

Status mpiFailure(const char* call, int code, int rank) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return internalError(call, " failed on rank ", rank, ": ", std::string(text, length));
}

Status cudaFailureOf(const char* call, cudaError_t e, int rank) {
  return internalError(call, " failed on rank ", rank, ": ", cudaGetErrorName(e), " (",
                       cudaGetErrorString(e), ")");
}

#define QCOMM_MPI_CALL(call)                                             \
  do {                                                                   \
    if (const int qcomm_mpi_rc_ = (call); qcomm_mpi_rc_ != MPI_SUCCESS)  \
      return mpiFailure(#call, qcomm_mpi_rc_, rank_);                    \
  } while (0)

#define QCOMM_CUDA_CALL(call)                                                  \
  do {                                                                         \
    if (const cudaError_t qcomm_cuda_rc_ = (call); qcomm_cuda_rc_ != cudaSuccess) \
      return cudaFailureOf(#call, qcomm_cuda_rc_, rank_);                      \
  } while (0)

bool runtimeCudaAware() {
#if defined(MPIX_CUDA_AWARE_SUPPORT)
  return MPIX_Query_cuda_support() == 1;
#else
  return false;
#endif
}

Status fitsInt(size_t bytes, int rank) {
  if (bytes > static_cast<size_t>(INT_MAX)) {
    return outOfRange("rank ", rank, ": ", bytes, " bytes exceed MPI's int count");
  }
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<MpiDeviceTransport>> MpiDeviceTransport::create(
    MPI_Comm comm, bool forceStaging, std::chrono::milliseconds timeout) {
  if (timeout.count() == 0) {
    QCOMM_ASSIGN_OR_RETURN(const int64_t seconds, knobInt(Knob::kTimeout, 0, int64_t{1} << 31));
    timeout = std::chrono::seconds(seconds);
  }
  auto t = std::unique_ptr<MpiDeviceTransport>(new MpiDeviceTransport());
  t->timeout_ = timeout;
  if (MPI_Comm_dup(comm, &t->comm_) != MPI_SUCCESS) {
    return internalError("MpiDeviceTransport: MPI_Comm_dup failed");
  }
  MPI_Comm_set_errhandler(t->comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(t->comm_, &t->rank_);
  MPI_Comm_size(t->comm_, &t->size_);
  t->cudaAware_ = !forceStaging && runtimeCudaAware();
  return t;
}

MpiDeviceTransport::~MpiDeviceTransport() {
  // After a timeout an abandoned collective may still write into the staging buffers and has the
  // communicator in use: both are left to the job's end.
  if (!broken_.isOk()) return;
  for (Pinned& p : pinned_) {
    if (p.data != nullptr) cudaFreeHost(p.data);
  }
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

Result<uint8_t*> MpiDeviceTransport::staging(int which, size_t bytes) {
  Pinned& p = pinned_[which];
  if (p.bytes < bytes) {
    if (p.data != nullptr) cudaFreeHost(p.data);
    p.data = nullptr;
    p.bytes = 0;
    QCOMM_CUDA_CALL(cudaMallocHost(&p.data, bytes));
    p.bytes = bytes;
  }
  return static_cast<uint8_t*>(p.data);
}

namespace {

// MPI's int counts and displacements of `counts` (in elements); an error past INT_MAX.
Status intCounts(std::span<const size_t> counts, int size, int rank, const char* what,
                 std::vector<int>* c, std::vector<int>* d, size_t* sum) {
  if (static_cast<int>(counts.size()) != size) {
    return invalidArgument(what, " on rank ", rank, ": ", counts.size(), " counts for ", size,
                           " ranks");
  }
  c->assign(size, 0);
  d->assign(size, 0);
  *sum = 0;
  for (int r = 0; r < size; ++r) {
    QCOMM_RETURN_IF_ERROR(fitsInt(*sum + counts[r], rank));
    (*c)[r] = static_cast<int>(counts[r]);
    (*d)[r] = static_cast<int>(*sum);
    *sum += counts[r];
  }
  return Status::ok();
}

}  // namespace

template <typename Mpi>
Status MpiDeviceTransport::throughHost(const char* what, const void* send, size_t sendBytes,
                                       void* recv, size_t recvBytes, cudaStream_t stream,
                                       Mpi&& mpi) {
  QCOMM_RETURN_IF_ERROR(broken_);
  if (cudaAware_) {
    QCOMM_CUDA_CALL(cudaStreamSynchronize(stream));  // the device data must be ready for MPI
    if (const int rc = mpi(send, recv, nullptr); rc != MPI_SUCCESS) {
      return mpiFailure(what, rc, rank_);
    }
    return Status::ok();
  }
  QCOMM_ASSIGN_OR_RETURN(uint8_t* hostSend, staging(0, std::max<size_t>(sendBytes, 1)));
  QCOMM_ASSIGN_OR_RETURN(uint8_t* hostRecv, staging(1, std::max<size_t>(recvBytes, 1)));
  QCOMM_CUDA_CALL(cudaMemcpyAsync(hostSend, send, sendBytes, cudaMemcpyDeviceToHost, stream));
  QCOMM_CUDA_CALL(cudaStreamSynchronize(stream));
  MPI_Request request = MPI_REQUEST_NULL;
  if (const int rc = mpi(hostSend, hostRecv, &request); rc != MPI_SUCCESS) {
    return mpiFailure(what, rc, rank_);
  }
  const Status waited = mpi_wait::waitCollective(
      &request, comm_, rank_, size_, timeout_,
      strCat(what, " on rank ", rank_, " of the staged MPI device transport"), what);
  if (waited.code() == StatusCode::kDeadlineExceeded) broken_ = waited;
  QCOMM_RETURN_IF_ERROR(waited);
  QCOMM_CUDA_CALL(cudaMemcpyAsync(recv, hostRecv, recvBytes, cudaMemcpyHostToDevice, stream));
  // The staging buffers are reused by the next call: the copy must be done first.
  QCOMM_CUDA_CALL(cudaStreamSynchronize(stream));
  return Status::ok();
}

Status MpiDeviceTransport::allGather(const void* send, void* recv, size_t bytes,
                                     cudaStream_t stream) {
  QCOMM_RETURN_IF_ERROR(fitsInt(bytes, rank_));
  const int count = static_cast<int>(bytes);
  return throughHost("MPI_Allgather", send, bytes, recv, bytes * size_, stream,
                     [&](const void* s, void* r, MPI_Request* q) {
                       return q ? MPI_Iallgather(s, count, MPI_BYTE, r, count, MPI_BYTE, comm_, q)
                                : MPI_Allgather(s, count, MPI_BYTE, r, count, MPI_BYTE, comm_);
                     });
}

Status MpiDeviceTransport::allToAll(const void* send, std::span<const size_t> sendBytes,
                                    void* recv, std::span<const size_t> recvBytes,
                                    cudaStream_t stream) {
  std::vector<int> sc, sd, rc, rd;
  size_t sendTotal = 0, recvTotal = 0;
  QCOMM_RETURN_IF_ERROR(
      intCounts(sendBytes, size_, rank_, "allToAll (send counts)", &sc, &sd, &sendTotal));
  QCOMM_RETURN_IF_ERROR(
      intCounts(recvBytes, size_, rank_, "allToAll (receive counts)", &rc, &rd, &recvTotal));
  return throughHost("MPI_Alltoallv", send, sendTotal, recv, recvTotal, stream,
                     [&](const void* s, void* r, MPI_Request* q) {
                       return q ? MPI_Ialltoallv(s, sc.data(), sd.data(), MPI_BYTE, r, rc.data(),
                                                 rd.data(), MPI_BYTE, comm_, q)
                                : MPI_Alltoallv(s, sc.data(), sd.data(), MPI_BYTE, r, rc.data(),
                                                rd.data(), MPI_BYTE, comm_);
                     });
}

Status MpiDeviceTransport::allReduceSum(float* data, size_t count, cudaStream_t stream) {
  QCOMM_RETURN_IF_ERROR(fitsInt(count, rank_));
  const int n = static_cast<int>(count);
  return throughHost("MPI_Allreduce", data, count * sizeof(float), data, count * sizeof(float),
                     stream, [&](const void* s, void* r, MPI_Request* q) {
                       const void* in = s == r ? MPI_IN_PLACE : s;
                       return q ? MPI_Iallreduce(in, r, n, MPI_FLOAT, MPI_SUM, comm_, q)
                                : MPI_Allreduce(in, r, n, MPI_FLOAT, MPI_SUM, comm_);
                     });
}

Status MpiDeviceTransport::reduceScatterSum(const float* send, float* recv,
                                            std::span<const size_t> counts, cudaStream_t stream) {
  std::vector<int> c, d;
  size_t total = 0;
  QCOMM_RETURN_IF_ERROR(intCounts(counts, size_, rank_, "reduceScatterSum", &c, &d, &total));
  return throughHost("MPI_Reduce_scatter", send, total * sizeof(float), recv,
                     counts[rank_] * sizeof(float), stream,
                     [&](const void* s, void* r, MPI_Request* q) {
                       return q ? MPI_Ireduce_scatter(s, r, c.data(), MPI_FLOAT, MPI_SUM, comm_, q)
                                : MPI_Reduce_scatter(s, r, c.data(), MPI_FLOAT, MPI_SUM, comm_);
                     });
}

Status MpiDeviceTransport::allGatherV(const void* send, void* recv, std::span<const size_t> bytes,
                                      cudaStream_t stream) {
  std::vector<int> c, d;
  size_t total = 0;
  QCOMM_RETURN_IF_ERROR(intCounts(bytes, size_, rank_, "allGatherV", &c, &d, &total));
  return throughHost("MPI_Allgatherv", send, bytes[rank_], recv, total, stream,
                     [&](const void* s, void* r, MPI_Request* q) {
                       return q ? MPI_Iallgatherv(s, c[rank_], MPI_BYTE, r, c.data(), d.data(),
                                                  MPI_BYTE, comm_, q)
                                : MPI_Allgatherv(s, c[rank_], MPI_BYTE, r, c.data(), d.data(),
                                                 MPI_BYTE, comm_);
                     });
}

Result<std::unique_ptr<DeviceTransport>> MpiDeviceTransport::split(int color, int key) {
  QCOMM_RETURN_IF_ERROR(broken_);
  MPI_Comm part = MPI_COMM_NULL;
  QCOMM_MPI_CALL(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &part));
  if (part == MPI_COMM_NULL) return std::unique_ptr<DeviceTransport>();
  Result<std::unique_ptr<MpiDeviceTransport>> t =
      create(part, /*forceStaging=*/!cudaAware_,
             timeout_.count() == 0 ? std::chrono::milliseconds(-1) : timeout_);
  MPI_Comm_free(&part);  // create() keeps a duplicate
  if (!t.isOk()) return t.status();
  return std::unique_ptr<DeviceTransport>(std::move(*t));
}

Status MpiDeviceTransport::synchronize(cudaStream_t stream) {
  QCOMM_CUDA_CALL(cudaStreamSynchronize(stream));
  return Status::ok();
}

}  // namespace qcomm::transport
