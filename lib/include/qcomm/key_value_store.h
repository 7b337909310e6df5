// A rendezvous store (the interface only, no dependencies): how ranks that have no MPI find each
// other. The Gloo transport connects through one (qcomm/gloo_transport.h has a file store and an
// in-process store), the NCCL transport gets its unique id through one (qcomm/nccl_store.h), and
// front ends adapt their own (the Python engine adapts torch.distributed's stores).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "qcomm/status.h"

namespace qcomm::transport {

// Set once, get (waiting until the key is set, up to the timeout), wait for keys.
// Implementations are shared by every rank of a process that uses them and must be safe to call
// from several threads.
class KeyValueStore {
 public:
  virtual ~KeyValueStore() = default;
  virtual Status set(const std::string& key, const std::vector<char>& value) = 0;
  virtual Result<std::vector<char>> get(const std::string& key,
                                        std::chrono::milliseconds timeout) = 0;
  virtual Status wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) = 0;
};

}  // namespace qcomm::transport
