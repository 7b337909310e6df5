// The Open MPI transport (target qcomm::mpi). It works on a duplicate of the communicator it is
// given, so qcomm's traffic never mixes with the caller's, with MPI_ERRORS_RETURN so that every
// MPI failure becomes a Status instead of an abort. allgatherv and alltoallv are nonblocking
// point-to-point messages (one tag per operation), so that a wait knows which ranks it has heard
// from: with a timeout set, requests are polled against the deadline and a DeadlineExceeded names
// the ranks that sent nothing; a message of the wrong size is a DataLoss naming its sender. The
// float allreduce is recursive doubling over such messages under 64 KB (and under 4 ranks), and
// MPI_Iallreduce from a copy of the input above (docs/algorithms.md, "uncompressed"); it and the
// barrier (MPI_Ibarrier) do not say whom they wait for: past their deadline every rank that
// gives up answers a roll call (a zero-byte message to every rank on the reserved tag
// MPI_TAG_UB), and the ranks that do not answer within min(timeout, 5 s) are the ones named.
#pragma once

#include <mpi.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "qcomm/transport.h"

namespace qcomm::transport {

class MpiTransport final : public Transport {
 public:
  // MPI must be initialized. Fails with a clear Status when duplicating `comm` fails.
  static Result<std::unique_ptr<MpiTransport>> create(MPI_Comm comm);
  ~MpiTransport() override;
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view name() const override { return "mpi"; }
  // otherThreads needs MPI initialized with at least MPI_THREAD_SERIALIZED (and, under
  // SERIALIZED, no MPI calls of your own while an asynchronous allreduce is pending).
  Capabilities capabilities() const override;

  Result<std::unique_ptr<Request>> iallgatherv(std::span<const uint8_t> send,
                                               std::span<uint8_t> recv,
                                               std::span<const size_t> recvCounts) override;
  Result<std::unique_ptr<Request>> ialltoallv(std::span<const uint8_t> send,
                                              std::span<const size_t> sendCounts,
                                              std::span<uint8_t> recv,
                                              std::span<const size_t> recvCounts) override;
  Result<std::unique_ptr<Request>> iallreduceSum(std::span<float> data) override;
  Status barrier() override;
  // MPI_Comm_split.
  Result<std::unique_ptr<Transport>> split(int color, int key) override;

  MPI_Comm comm() const { return comm_; }

  // What this transport's requests share: the error that broke it (a timeout), the next tag, and
  // a float buffer the allreduce reuses between calls (fresh pages cost more than the copy).
  struct Shared {
    Status broken;
    int nextTag = 0;
    int tagLimit = 32767;  // MPI_TAG_UB (at least 32767), reserved for the roll call
    std::mutex spareMutex;
    std::vector<float> spare;
  };

 private:
  MpiTransport(MPI_Comm comm, int rank, int size);
  Status usable() const;
  int takeTag();  // one per point-to-point operation: the same sequence on every rank
  MPI_Comm comm_;
  int rank_;
  int size_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace qcomm::transport
