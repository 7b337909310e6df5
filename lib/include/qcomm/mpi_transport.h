// The Open MPI transport (target qcomm::mpi). It works on a duplicate of the communicator it is
// given, so qcomm's traffic never mixes with the caller's, with MPI_ERRORS_RETURN so that every
// MPI failure becomes a Status instead of an abort.
#pragma once

#include <mpi.h>

#include <memory>

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

 private:
  MpiTransport(MPI_Comm comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}
  MPI_Comm comm_;
  int rank_;
  int size_;
};

}  // namespace qcomm::transport
