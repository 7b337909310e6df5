// The transport contract: what a collective schedule needs from a network, and nothing about
// QSGD. Backends: local (ranks as threads in one process), mpi (Open MPI), later nccl.
// Every rank must issue the same operations in the same order (as with MPI collectives).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qcomm/status.h"

namespace qcomm::transport {

struct Capabilities {
  bool deviceMemory = false;  // accepts device pointers
  // May be driven from a thread other than the one that created it (a Communicator's
  // asynchronous calls run on its own worker thread).
  bool otherThreads = true;
};

// A started operation; wait() completes it. Buffers passed to the operation must stay alive and
// untouched until wait() returns.
class Request {
 public:
  virtual ~Request() = default;
  virtual Status wait() = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string_view name() const = 0;
  virtual Capabilities capabilities() const = 0;

  // recv holds the contributions of ranks 0..P-1 back to back, recvCounts[r] bytes from rank r;
  // send.size() must equal recvCounts[rank()].
  virtual Result<std::unique_ptr<Request>> iallgatherv(std::span<const uint8_t> send,
                                                       std::span<uint8_t> recv,
                                                       std::span<const size_t> recvCounts) = 0;
  // Block r of send (sendCounts[r] bytes) goes to rank r; recv receives recvCounts[r] bytes from
  // rank r, back to back in rank order.
  virtual Result<std::unique_ptr<Request>> ialltoallv(std::span<const uint8_t> send,
                                                      std::span<const size_t> sendCounts,
                                                      std::span<uint8_t> recv,
                                                      std::span<const size_t> recvCounts) = 0;
  // In-place elementwise sum over ranks; every rank gets the same values.
  virtual Result<std::unique_ptr<Request>> iallreduceSum(std::span<float> data) = 0;
  virtual Status barrier() = 0;

  // Which host each rank runs on: hosts[r] for every rank r, hosts numbered 0, 1, ... in order of
  // their first rank. Collective. The default compares thisHostKey() of every rank; backends
  // that know better override it.
  virtual Result<std::vector<int>> hostOfRanks();
  // A transport over the ranks that pass the same color (>= 0), ranked by (key, rank); a rank
  // passing a negative color takes part in the call and gets nullptr. Collective over all ranks.
  // The result shares this transport's resources and must not outlive it.
  virtual Result<std::unique_ptr<Transport>> split(int color, int key);

  // How long an operation waits for the other ranks before it fails with DeadlineExceeded, naming
  // the operation and the ranks not heard from; zero or negative: no limit (the default, except
  // gloo's, which starts with GlooOptions::timeout). Communicator::create sets it from
  // CommunicatorOptions::timeout. A timed-out operation cannot be taken back on every backend
  // (an MPI collective stays posted), so after one the transport is broken: every later
  // operation fails at once with the same error, and the job should end (docs/reliability.md).
  // Transports split from this one inherit the timeout in force when they are split.
  virtual void setTimeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // Blocking forms.
  Status allgatherv(std::span<const uint8_t> send, std::span<uint8_t> recv,
                    std::span<const size_t> recvCounts);
  Status alltoallv(std::span<const uint8_t> send, std::span<const size_t> sendCounts,
                   std::span<uint8_t> recv, std::span<const size_t> recvCounts);
  Status allreduceSum(std::span<float> data);
  // Every rank's value, in rank order.
  Result<std::vector<uint64_t>> allgatherU64(uint64_t value);
  // Every rank's string, in rank order (lengths are exchanged first).
  Result<std::vector<std::string>> allgatherStrings(const std::string& value);

 private:
  std::chrono::milliseconds timeout_{0};
};

// "ranks 2, 5" / "rank 3": for messages that name the ranks an operation did not hear from.
std::string describeRanks(std::span<const int> ranks);

// A request that finished when it was started (backends that complete eagerly).
class CompletedRequest final : public Request {
 public:
  explicit CompletedRequest(Status status = Status::ok()) : status_(std::move(status)) {}
  Status wait() override { return status_; }

 private:
  Status status_;
};

// This host's name and network namespace ("vm/net:[4026531840]"): ranks with equal keys share
// a host. The namespace tells apart the emulated hosts of `qcomm cluster`, which share a name.
std::string thisHostKey();

// Host numbers in order of first appearance: {"b", "a", "b"} -> {0, 1, 0}.
std::vector<int> numberHosts(std::span<const std::string> hostNames);

// Sum of counts, and the offset of each block, for the v-collectives.
std::vector<size_t> displacements(std::span<const size_t> counts);
size_t total(std::span<const size_t> counts);

}  // namespace qcomm::transport
