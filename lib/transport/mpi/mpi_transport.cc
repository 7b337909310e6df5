#include "qcomm/mpi_transport.h"

#include <climits>
#include <vector>

namespace qcomm::transport {
namespace {

Status mpiStatus(int code, const char* call, int rank) {
  if (code == MPI_SUCCESS) return Status::ok();
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return Status(StatusCode::kInternal,
                strCat(call, " failed on rank ", rank, ": ", std::string(text, length)));
}

// MPI counts are ints.
Status toInts(std::span<const size_t> counts, const char* op, int rank, std::vector<int>* out,
              std::vector<int>* offsets) {
  out->clear();
  offsets->clear();
  size_t offset = 0;
  for (size_t c : counts) {
    if (c > static_cast<size_t>(INT_MAX) || offset > static_cast<size_t>(INT_MAX)) {
      return outOfRange(op, " on rank ", rank, ": ", c, " bytes at offset ", offset,
                        " exceed MPI's int counts; use smaller chunks");
    }
    out->push_back(static_cast<int>(c));
    offsets->push_back(static_cast<int>(offset));
    offset += c;
  }
  return Status::ok();
}

class MpiRequest final : public Request {
 public:
  MpiRequest(const char* call, int rank) : call_(call), rank_(rank) {}
  ~MpiRequest() override {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  Status wait() override { return mpiStatus(MPI_Wait(&request_, MPI_STATUS_IGNORE), call_, rank_); }

  MPI_Request request_ = MPI_REQUEST_NULL;
  // Count arrays must outlive the non-blocking call.
  std::vector<int> counts_, offsets_, counts2_, offsets2_;

 private:
  const char* call_;
  int rank_;
};

}  // namespace

Result<std::unique_ptr<MpiTransport>> MpiTransport::create(MPI_Comm comm) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return failedPrecondition("MpiTransport::create: MPI is not initialized");
  MPI_Comm dup;
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  QCOMM_RETURN_IF_ERROR(mpiStatus(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup", rank));
  MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  MPI_Comm_size(dup, &size);
  return std::unique_ptr<MpiTransport>(new MpiTransport(dup, rank, size));
}

MpiTransport::~MpiTransport() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
}

Result<std::unique_ptr<Request>> MpiTransport::iallgatherv(std::span<const uint8_t> send,
                                                           std::span<uint8_t> recv,
                                                           std::span<const size_t> recvCounts) {
  if (static_cast<int>(recvCounts.size()) != size_ || send.size() != recvCounts[rank_] ||
      recv.size() != total(recvCounts)) {
    return invalidArgument("allgatherv on rank ", rank_, ": send ", send.size(), " bytes, recv ",
                           recv.size(), " bytes, ", recvCounts.size(), " counts for ", size_,
                           " ranks do not agree");
  }
  auto request = std::make_unique<MpiRequest>("MPI_Iallgatherv", rank_);
  QCOMM_RETURN_IF_ERROR(
      toInts(recvCounts, "allgatherv", rank_, &request->counts_, &request->offsets_));
  QCOMM_RETURN_IF_ERROR(
      mpiStatus(MPI_Iallgatherv(send.data(), static_cast<int>(send.size()), MPI_BYTE, recv.data(),
                                request->counts_.data(), request->offsets_.data(), MPI_BYTE, comm_,
                                &request->request_),
                "MPI_Iallgatherv", rank_));
  return std::unique_ptr<Request>(std::move(request));
}

Result<std::unique_ptr<Request>> MpiTransport::ialltoallv(std::span<const uint8_t> send,
                                                          std::span<const size_t> sendCounts,
                                                          std::span<uint8_t> recv,
                                                          std::span<const size_t> recvCounts) {
  if (static_cast<int>(sendCounts.size()) != size_ ||
      static_cast<int>(recvCounts.size()) != size_ || send.size() != total(sendCounts) ||
      recv.size() != total(recvCounts)) {
    return invalidArgument("alltoallv on rank ", rank_, ": buffers and counts do not agree");
  }
  auto request = std::make_unique<MpiRequest>("MPI_Ialltoallv", rank_);
  QCOMM_RETURN_IF_ERROR(
      toInts(sendCounts, "alltoallv", rank_, &request->counts_, &request->offsets_));
  QCOMM_RETURN_IF_ERROR(
      toInts(recvCounts, "alltoallv", rank_, &request->counts2_, &request->offsets2_));
  QCOMM_RETURN_IF_ERROR(
      mpiStatus(MPI_Ialltoallv(send.data(), request->counts_.data(), request->offsets_.data(),
                               MPI_BYTE, recv.data(), request->counts2_.data(),
                               request->offsets2_.data(), MPI_BYTE, comm_, &request->request_),
                "MPI_Ialltoallv", rank_));
  return std::unique_ptr<Request>(std::move(request));
}

Result<std::unique_ptr<Request>> MpiTransport::iallreduceSum(std::span<float> data) {
  if (data.size() > static_cast<size_t>(INT_MAX)) {
    return outOfRange("allreduce on rank ", rank_, ": ", data.size(), " values exceed int counts");
  }
  auto request = std::make_unique<MpiRequest>("MPI_Iallreduce", rank_);
  QCOMM_RETURN_IF_ERROR(
      mpiStatus(MPI_Iallreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), MPI_FLOAT,
                               MPI_SUM, comm_, &request->request_),
                "MPI_Iallreduce", rank_));
  return std::unique_ptr<Request>(std::move(request));
}

Capabilities MpiTransport::capabilities() const {
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  Capabilities caps;
  caps.otherThreads = provided >= MPI_THREAD_SERIALIZED;
  return caps;
}

Status MpiTransport::barrier() { return mpiStatus(MPI_Barrier(comm_), "MPI_Barrier", rank_); }

}  // namespace qcomm::transport

namespace qcomm::transport {

// Hosts: the default (host name and network namespace), not MPI_COMM_TYPE_SHARED: with the
// emulated hosts of `qcomm cluster`, which share a host name, Open MPI 4.1's split by type
// crashes (SIGSEGV in ompi_comm_activate), and on real hosts both agree.

Result<std::unique_ptr<Transport>> MpiTransport::split(int color, int key) {
  MPI_Comm sub = MPI_COMM_NULL;
  QCOMM_RETURN_IF_ERROR(
      mpiStatus(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub),
                "MPI_Comm_split", rank_));
  if (sub == MPI_COMM_NULL) return std::unique_ptr<Transport>();
  MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN);
  int rank = 0, size = 0;
  MPI_Comm_rank(sub, &rank);
  MPI_Comm_size(sub, &size);
  return std::unique_ptr<Transport>(new MpiTransport(sub, rank, size));
}

}  // namespace qcomm::transport
