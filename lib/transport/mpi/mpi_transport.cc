#include "qcomm/mpi_transport.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "mpi_wait.h"

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

using mpi_wait::Clock;

// `count` floats for the life of one request, taken from and given back to the transport's spare
// buffer, so that calls after the first reuse warm pages. Grown, never shrunk: a small call
// between two large ones must not make the next large one zero its buffer again.
class Scratch {
 public:
  Scratch(std::shared_ptr<MpiTransport::Shared> shared, size_t count) : shared_(std::move(shared)) {
    {
      std::lock_guard<std::mutex> lock(shared_->spareMutex);
      floats_.swap(shared_->spare);
    }
    if (floats_.size() < count) floats_.resize(count);
  }
  ~Scratch() {
    std::lock_guard<std::mutex> lock(shared_->spareMutex);
    if (floats_.size() > shared_->spare.size()) floats_.swap(shared_->spare);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* data() { return floats_.data(); }
  float operator[](size_t i) const { return floats_[i]; }

 private:
  std::shared_ptr<MpiTransport::Shared> shared_;
  std::vector<float> floats_;
};

// A started operation: point-to-point requests (peer[i] >= 0; receives check their byte count)
// or one nonblocking collective (peer[i] == -1). wait() polls them against the transport's
// timeout and names the ranks it has not heard from when the deadline passes.
class MpiRequest final : public Request {
 public:
  MpiRequest(std::string op, MPI_Comm comm, int rank, int size, std::chrono::milliseconds timeout,
             std::shared_ptr<MpiTransport::Shared> shared)
      : op_(std::move(op)),
        comm_(comm),
        rank_(rank),
        size_(size),
        timeout_(timeout),
        shared_(std::move(shared)) {}
  ~MpiRequest() override {
    // Requests still active after a failed wait are abandoned (a receive was cancelled; a send or
    // a collective cannot be taken back): the transport is broken and the job should end.
    if (!abandoned_) {
      for (MPI_Request& r : requests_) {
        if (r != MPI_REQUEST_NULL) MPI_Wait(&r, MPI_STATUS_IGNORE);
      }
    } else {
      (void)kept_.release();  // an abandoned collective may still read it
    }
  }

  void addReceive(MPI_Request request, int peer, size_t bytes) {
    requests_.push_back(request);
    peers_.push_back(peer);
    expected_.push_back(bytes);
    receive_.push_back(true);
  }
  void addSend(MPI_Request request, int peer) {
    requests_.push_back(request);
    peers_.push_back(peer);
    expected_.push_back(0);
    receive_.push_back(false);
  }
  void addCollective(MPI_Request request) {
    requests_.push_back(request);
    peers_.push_back(-1);
    expected_.push_back(0);
    receive_.push_back(false);
  }
  // Part of a collective made of messages (the recursive-doubling allreduce): its deadline is the
  // whole collective's, and past it the roll call names the silent ranks, as for MPI's
  // collectives (a partner that does not answer may itself be waiting for a silent rank).
  void partOfCollective(Clock::time_point deadline) {
    rollCall_ = true;
    deadline_ = deadline;
  }
  // A buffer the operation reads until it completes.
  Scratch& keep(std::unique_ptr<Scratch> scratch) {
    kept_ = std::move(scratch);
    return *kept_;
  }

  Status wait() override {
    if (!shared_->broken.isOk()) return shared_->broken;
    const size_t n = requests_.size();
    std::vector<int> indices(n);
    std::vector<MPI_Status> statuses(n);
    const bool limited = timeout_.count() > 0;
    const Clock::time_point deadline = deadline_ ? *deadline_ : Clock::now() + timeout_;
    Status result;
    uint64_t polls = 0;
    for (size_t left = active(); left > 0;) {
      int done = 0;
      const int code = MPI_Testsome(static_cast<int>(n), requests_.data(), &done, indices.data(),
                                    statuses.data());
      if (code != MPI_SUCCESS && code != MPI_ERR_IN_STATUS) {
        return fail(mpiStatus(code, "MPI_Testsome", rank_).withContext(op_ + ": "));
      }
      if (done == MPI_UNDEFINED) break;
      for (int k = 0; k < done; ++k) {
        const Status s = completed(indices[k], statuses[k], code == MPI_ERR_IN_STATUS);
        if (result.isOk() && !s.isOk()) result = s;
      }
      left -= done;
      if (left == 0) break;
      if (limited && Clock::now() > deadline) return fail(timedOut());
      mpi_wait::afterFruitlessPoll(++polls);
    }
    return result;
  }

 private:
  size_t active() const {
    return std::count_if(requests_.begin(), requests_.end(),
                         [](MPI_Request r) { return r != MPI_REQUEST_NULL; });
  }

  // A finished request: an error in its status, or a receive of the wrong size (DataLoss: the
  // operation completed and the ranks stay in step).
  Status completed(int i, const MPI_Status& status, bool errorInStatus) {
    if (errorInStatus && status.MPI_ERROR == MPI_ERR_TRUNCATE) {
      return dataLoss(op_, " on rank ", rank_, ": the message from rank ", peers_[i],
                      " is larger than the ", expected_[i], " bytes expected (size mismatch)");
    }
    if (errorInStatus && status.MPI_ERROR != MPI_SUCCESS) {
      return mpiStatus(status.MPI_ERROR, op_.c_str(), rank_)
          .withContext(strCat("with rank ", peers_[i], ": "));
    }
    if (!receive_[i]) return Status::ok();
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    if (static_cast<size_t>(count) != expected_[i]) {
      return dataLoss(op_, " on rank ", rank_, ": the message from rank ", peers_[i], " is ", count,
                      " bytes where ", expected_[i], " were expected (size mismatch)");
    }
    return Status::ok();
  }

  Status timedOut() {
    std::vector<int> silent, notReceiving;
    bool collective = rollCall_;
    for (size_t i = 0; i < requests_.size(); ++i) {
      if (requests_[i] == MPI_REQUEST_NULL) continue;
      if (peers_[i] < 0) collective = true;
      (receive_[i] ? silent : notReceiving).push_back(peers_[i]);
    }
    // A collective hides whom it waits for: the ranks that do not answer a roll call are the
    // ones not heard from. Every rank answers, whatever it was waiting in.
    std::string who;
    if (collective) {
      who = mpi_wait::rollCallVerdict(comm_, rank_, size_, shared_->tagLimit, timeout_);
    } else {
      // The peers may be waiting in a collective: this rank answers their roll call.
      mpi_wait::rollCall(comm_, rank_, size_, shared_->tagLimit, /*listen=*/false, timeout_);
      who = silent.empty()
                ? strCat(describeRanks(notReceiving), " not receiving within ", timeout_.count(),
                         " ms")
                : strCat(describeRanks(silent), " not heard from within ", timeout_.count(), " ms");
    }
    return deadlineExceeded(op_, " on rank ", rank_, " of the MPI transport, timeout ",
                            timeout_.count(), " ms: ", who,
                            "; the transport is broken (end the job)");
  }

  // Cancels the receives, abandons the rest and breaks the transport with `reason`.
  Status fail(Status reason) {
    for (size_t i = 0; i < requests_.size(); ++i) {
      if (requests_[i] != MPI_REQUEST_NULL && receive_[i]) {
        MPI_Cancel(&requests_[i]);
        MPI_Request_free(&requests_[i]);
      }
    }
    abandoned_ = true;
    shared_->broken = reason;
    return reason;
  }

  std::string op_;
  MPI_Comm comm_;
  int rank_;
  int size_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<MpiTransport::Shared> shared_;
  std::vector<MPI_Request> requests_;
  std::vector<int> peers_;
  std::vector<size_t> expected_;
  std::vector<bool> receive_;
  bool abandoned_ = false;
  bool rollCall_ = false;
  std::optional<Clock::time_point> deadline_;
  std::unique_ptr<Scratch> kept_;  // after requests_: released only once they are done
};

}  // namespace

MpiTransport::MpiTransport(MPI_Comm comm, int rank, int size)
    : comm_(comm), rank_(rank), size_(size), shared_(std::make_shared<Shared>()) {
  shared_->tagLimit = mpi_wait::rollCallTag(comm);
}

Status MpiTransport::usable() const { return shared_->broken; }

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
  // A broken transport may have requests in flight on its communicator: leave it to MPI_Finalize
  // (or the job's end).
  if (!finalized && shared_->broken.isOk()) MPI_Comm_free(&comm_);
}

namespace {

// Posts the receives (recvCounts[r] bytes from rank r at its displacement) and the sends
// (sendCounts[r] bytes at its displacement to rank r) of one operation; this rank's own block is
// copied.
Status postExchange(MpiRequest& request, MPI_Comm comm, int rank, int size, int tag,
                    std::span<const uint8_t> send, std::span<const size_t> sendCounts,
                    std::span<const size_t> sendOffsets, std::span<uint8_t> recv,
                    std::span<const size_t> recvCounts, const char* op) {
  const std::vector<size_t> recvOffsets = displacements(recvCounts);
  for (int r = 0; r < size; ++r) {
    if (r == rank) continue;
    MPI_Request handle = MPI_REQUEST_NULL;
    QCOMM_RETURN_IF_ERROR(mpiStatus(MPI_Irecv(recv.data() + recvOffsets[r],
                                              static_cast<int>(recvCounts[r]), MPI_BYTE, r, tag,
                                              comm, &handle),
                                    op, rank));
    request.addReceive(handle, r, recvCounts[r]);
  }
  for (int k = 1; k < size; ++k) {  // rank + 1 first, so the ranks do not all send to rank 0
    const int r = (rank + k) % size;
    MPI_Request handle = MPI_REQUEST_NULL;
    QCOMM_RETURN_IF_ERROR(mpiStatus(MPI_Isend(send.data() + sendOffsets[r],
                                              static_cast<int>(sendCounts[r]), MPI_BYTE, r, tag,
                                              comm, &handle),
                                    op, rank));
    request.addSend(handle, r);
  }
  if (sendCounts[rank] != recvCounts[rank]) {
    return invalidArgument(op, " on rank ", rank, ": sends itself ", sendCounts[rank],
                           " bytes but expects ", recvCounts[rank]);
  }
  if (recvCounts[rank] > 0) {
    std::memcpy(recv.data() + recvOffsets[rank], send.data() + sendOffsets[rank],
                recvCounts[rank]);
  }
  return Status::ok();
}

}  // namespace

int MpiTransport::takeTag() {
  const int tag = shared_->nextTag;
  shared_->nextTag = tag + 1 >= shared_->tagLimit ? 0 : tag + 1;  // tagLimit: the roll call
  return tag;
}

Result<std::unique_ptr<Request>> MpiTransport::iallgatherv(std::span<const uint8_t> send,
                                                           std::span<uint8_t> recv,
                                                           std::span<const size_t> recvCounts) {
  QCOMM_RETURN_IF_ERROR(usable());
  if (static_cast<int>(recvCounts.size()) != size_ || send.size() != recvCounts[rank_] ||
      recv.size() != total(recvCounts)) {
    return invalidArgument("allgatherv on rank ", rank_, ": send ", send.size(), " bytes, recv ",
                           recv.size(), " bytes, ", recvCounts.size(), " counts for ", size_,
                           " ranks do not agree");
  }
  std::vector<int> ints, offsets;
  QCOMM_RETURN_IF_ERROR(toInts(recvCounts, "allgatherv", rank_, &ints, &offsets));
  auto request = std::make_unique<MpiRequest>("allgatherv", comm_, rank_, size_, timeout(), shared_);
  // The same block to every rank.
  const std::vector<size_t> sendCounts(size_, send.size()), sendOffsets(size_, 0);
  QCOMM_RETURN_IF_ERROR(postExchange(*request, comm_, rank_, size_, takeTag(), send, sendCounts,
                                     sendOffsets, recv, recvCounts, "allgatherv"));
  return std::unique_ptr<Request>(std::move(request));
}

Result<std::unique_ptr<Request>> MpiTransport::ialltoallv(std::span<const uint8_t> send,
                                                          std::span<const size_t> sendCounts,
                                                          std::span<uint8_t> recv,
                                                          std::span<const size_t> recvCounts) {
  QCOMM_RETURN_IF_ERROR(usable());
  if (static_cast<int>(sendCounts.size()) != size_ ||
      static_cast<int>(recvCounts.size()) != size_ || send.size() != total(sendCounts) ||
      recv.size() != total(recvCounts)) {
    return invalidArgument("alltoallv on rank ", rank_, ": buffers and counts do not agree");
  }
  std::vector<int> ints, offsets;
  QCOMM_RETURN_IF_ERROR(toInts(sendCounts, "alltoallv", rank_, &ints, &offsets));
  QCOMM_RETURN_IF_ERROR(toInts(recvCounts, "alltoallv", rank_, &ints, &offsets));
  auto request = std::make_unique<MpiRequest>("alltoallv", comm_, rank_, size_, timeout(), shared_);
  QCOMM_RETURN_IF_ERROR(postExchange(*request, comm_, rank_, size_, takeTag(), send, sendCounts,
                                     displacements(sendCounts), recv, recvCounts, "alltoallv"));
  return std::unique_ptr<Request>(std::move(request));
}

namespace {

// The float sum by recursive doubling over point-to-point messages: log2(P) exchanges of the
// whole vector with one partner each (plus one before and one after where P is not a power of
// two), every rank adding the partner's partial sum to its own. Both partners of an exchange add
// the same two vectors, and IEEE addition is commutative, so every rank ends with the same bits.
// Used where latency dominates: Open MPI's MPI_Iallreduce (libnbc) reduces to rank 0 and
// broadcasts back (2 log2(P) steps) for messages under 64 KB, for P < 4, and whenever the call is
// in place, where the blocking MPI_Allreduce takes log2(P) (docs/performance.md, "The
// uncompressed allreduce").
class RecursiveDoublingRequest final : public Request {
 public:
  RecursiveDoublingRequest(std::span<float> data, MPI_Comm comm, int rank, int size, int tag,
                           std::chrono::milliseconds timeout,
                           std::shared_ptr<MpiTransport::Shared> shared)
      : data_(data),
        comm_(comm),
        rank_(rank),
        size_(size),
        tag_(tag),
        timeout_(timeout),
        shared_(shared),
        partial_(std::move(shared), data.size()) {}
  ~RecursiveDoublingRequest() override {
    if (!waited_) (void)wait();  // the partners count on this rank's messages
  }

  Status wait() override {
    if (waited_) return result_;
    waited_ = true;
    result_ = run();
    return result_;
  }

 private:
  Status run() {
    const Clock::time_point deadline = Clock::now() + timeout_;
    int pof2 = 1;
    while (pof2 * 2 <= size_) pof2 *= 2;
    const int extra = size_ - pof2;
    // Ranks below 2 * extra pair up first: the even one hands its vector to the odd one and
    // waits for the result; the others renumber 0 .. pof2 - 1.
    if (rank_ < 2 * extra && rank_ % 2 == 0) {
      QCOMM_RETURN_IF_ERROR(step(rank_ + 1, /*send=*/true, /*receive=*/false, deadline));
      return step(rank_ + 1, /*send=*/false, /*receive=*/true, deadline, /*add=*/false);
    }
    if (rank_ < 2 * extra) {
      QCOMM_RETURN_IF_ERROR(step(rank_ - 1, /*send=*/false, /*receive=*/true, deadline));
    }
    const int me = rank_ < 2 * extra ? rank_ / 2 : rank_ - extra;
    auto realRank = [&](int r) { return r < extra ? 2 * r + 1 : r + extra; };
    for (int mask = 1; mask < pof2; mask *= 2) {
      QCOMM_RETURN_IF_ERROR(step(realRank(me ^ mask), true, true, deadline));
    }
    if (rank_ < 2 * extra) return step(rank_ - 1, /*send=*/true, /*receive=*/false, deadline);
    return Status::ok();
  }

  // One exchange with `peer`: sends this rank's vector and/or receives the peer's, which is added
  // to this rank's (or, without `add`, replaces it: the final result handed back).
  Status step(int peer, bool send, bool receive, Clock::time_point deadline, bool add = true) {
    MpiRequest request("allreduce", comm_, rank_, size_, timeout_, shared_);
    request.partOfCollective(deadline);
    const int count = static_cast<int>(data_.size());
    float* into = add ? partial_.data() : data_.data();
    if (receive) {
      MPI_Request handle = MPI_REQUEST_NULL;
      QCOMM_RETURN_IF_ERROR(mpiStatus(
          MPI_Irecv(into, count, MPI_FLOAT, peer, tag_, comm_, &handle), "allreduce", rank_));
      request.addReceive(handle, peer, data_.size_bytes());
    }
    if (send) {
      MPI_Request handle = MPI_REQUEST_NULL;
      QCOMM_RETURN_IF_ERROR(mpiStatus(
          MPI_Isend(data_.data(), count, MPI_FLOAT, peer, tag_, comm_, &handle), "allreduce", rank_));
      request.addSend(handle, peer);
    }
    QCOMM_RETURN_IF_ERROR(request.wait());
    if (receive && add) {
      for (size_t i = 0; i < data_.size(); ++i) data_[i] += partial_[i];
    }
    return Status::ok();
  }

  std::span<float> data_;
  MPI_Comm comm_;
  int rank_, size_, tag_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<MpiTransport::Shared> shared_;
  Scratch partial_;
  bool waited_ = false;
  Status result_;
};

// Under this many bytes (and always below 4 ranks) the sum goes by recursive doubling; above, by
// MPI_Iallreduce from a copy of the input (not in place: libnbc then reduces by Rabenseifner's
// reduce-scatter and allgather, which moves 2 (P-1)/P of the vector per rank).
constexpr size_t kRecursiveDoublingBytes = 64 * 1024;

}  // namespace

Result<std::unique_ptr<Request>> MpiTransport::iallreduceSum(std::span<float> data) {
  QCOMM_RETURN_IF_ERROR(usable());
  if (data.size() > static_cast<size_t>(INT_MAX)) {
    return outOfRange("allreduce on rank ", rank_, ": ", data.size(), " values exceed int counts");
  }
  if (size_ == 1 || data.empty()) return std::unique_ptr<Request>(new CompletedRequest());
  if (size_ < 4 || data.size_bytes() < kRecursiveDoublingBytes) {
    return std::unique_ptr<Request>(new RecursiveDoublingRequest(data, comm_, rank_, size_,
                                                                 takeTag(), timeout(), shared_));
  }
  auto request = std::make_unique<MpiRequest>("allreduce", comm_, rank_, size_, timeout(), shared_);
  float* input = request->keep(std::make_unique<Scratch>(shared_, data.size())).data();
  std::copy(data.begin(), data.end(), input);
  MPI_Request handle = MPI_REQUEST_NULL;
  QCOMM_RETURN_IF_ERROR(
      mpiStatus(MPI_Iallreduce(input, data.data(), static_cast<int>(data.size()), MPI_FLOAT,
                               MPI_SUM, comm_, &handle),
                "MPI_Iallreduce", rank_));
  request->addCollective(handle);
  return std::unique_ptr<Request>(std::move(request));
}

Capabilities MpiTransport::capabilities() const {
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  Capabilities caps;
  caps.otherThreads = provided >= MPI_THREAD_SERIALIZED;
  return caps;
}

Status MpiTransport::barrier() {
  QCOMM_RETURN_IF_ERROR(usable());
  MpiRequest request("barrier", comm_, rank_, size_, timeout(), shared_);
  MPI_Request handle = MPI_REQUEST_NULL;
  QCOMM_RETURN_IF_ERROR(mpiStatus(MPI_Ibarrier(comm_, &handle), "MPI_Ibarrier", rank_));
  request.addCollective(handle);
  return request.wait();
}

}  // namespace qcomm::transport

namespace qcomm::transport {

// Hosts: the default (host name and network namespace), not MPI_COMM_TYPE_SHARED: with the
// emulated hosts of `qcomm cluster`, which share a host name, Open MPI 4.1's split by type
// crashes (SIGSEGV in ompi_comm_activate), and on real hosts both agree.

Result<std::unique_ptr<Transport>> MpiTransport::split(int color, int key) {
  QCOMM_RETURN_IF_ERROR(usable());
  MPI_Comm sub = MPI_COMM_NULL;
  QCOMM_RETURN_IF_ERROR(
      mpiStatus(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub),
                "MPI_Comm_split", rank_));
  if (sub == MPI_COMM_NULL) return std::unique_ptr<Transport>();
  MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN);
  int rank = 0, size = 0;
  MPI_Comm_rank(sub, &rank);
  MPI_Comm_size(sub, &size);
  auto transport = std::unique_ptr<Transport>(new MpiTransport(sub, rank, size));
  transport->setTimeout(timeout());
  return transport;
}

}  // namespace qcomm::transport
