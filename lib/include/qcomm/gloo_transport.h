// The Gloo transport: qcomm on hosts without MPI. Ranks find each other through a key-value
// store (the rendezvous of torchrun-style jobs: a file on a shared file system, an in-process
// table for ranks that are threads, or any store a front end adapts, such as torch's c10d store),
// then talk over Gloo's TCP transport. Link qcomm::gloo.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "qcomm/key_value_store.h"
#include "qcomm/transport.h"

namespace qcomm::transport {

// Files in `directory` (created if missing), one per key: ranks in several processes, or hosts
// sharing a file system.
Result<std::shared_ptr<KeyValueStore>> makeFileStore(const std::string& directory);
// A table in this process: ranks that are threads.
std::shared_ptr<KeyValueStore> makeMemoryStore();

struct GlooOptions {
  // The address this rank listens on and announces to the others (a host name or an IP address;
  // empty: this host's name). `iface` (e.g. "eth0") picks the interface's address instead.
  std::string hostname;
  std::string iface;
  // Every store access, connection and collective fails with a clear error after this long
  // (a dead or missing rank never hangs the others).
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
  // Prefix of this group's keys, so that several groups share one store.
  std::string prefix = "qcomm";
  // Ranks with the same host share a host (hierarchical allreduce); empty: thisHostKey().
  std::string host;
};

class GlooTransport final : public Transport {
 public:
  // Connects rank `rank` of `size` (a full mesh of TCP pairs) through `store`; returns when every
  // rank has connected, or an error naming the rank and what failed.
  static Result<std::unique_ptr<GlooTransport>> create(std::shared_ptr<KeyValueStore> store,
                                                       int rank, int size,
                                                       const GlooOptions& options = {});
  ~GlooTransport() override;
  GlooTransport(const GlooTransport&) = delete;
  GlooTransport& operator=(const GlooTransport&) = delete;

  int rank() const override;
  int size() const override;
  std::string_view name() const override { return "gloo"; }
  // Host memory; driven by one thread at a time, any thread (operations complete when started).
  Capabilities capabilities() const override { return {false, true}; }

  Result<std::unique_ptr<Request>> iallgatherv(std::span<const uint8_t> send,
                                               std::span<uint8_t> recv,
                                               std::span<const size_t> recvCounts) override;
  Result<std::unique_ptr<Request>> ialltoallv(std::span<const uint8_t> send,
                                              std::span<const size_t> sendCounts,
                                              std::span<uint8_t> recv,
                                              std::span<const size_t> recvCounts) override;
  Result<std::unique_ptr<Request>> iallreduceSum(std::span<float> data) override;
  Status barrier() override;
  // Starts as GlooOptions::timeout; Communicator::create sets it from its options.
  void setTimeout(std::chrono::milliseconds timeout) override;
  // From GlooOptions::host.
  Result<std::vector<int>> hostOfRanks() override;
  // A new full mesh among each color's ranks, through the same store (keys under
  // "<prefix>/split<n>/<color>").
  Result<std::unique_ptr<Transport>> split(int color, int key) override;

  struct State;

 private:
  explicit GlooTransport(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace qcomm::transport
