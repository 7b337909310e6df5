// The local transport: P ranks as threads of one process, for tests and single-process
// experiments. A LocalGroup holds what the ranks share; each rank gets its own Transport.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "qcomm/transport.h"

namespace qcomm::transport {

class LocalGroup {
 public:
  // hostOfRank[r]: the host rank r pretends to run on (for hierarchical algorithms); empty means
  // all on one host.
  explicit LocalGroup(int size, std::vector<int> hostOfRank = {});
  ~LocalGroup();
  LocalGroup(const LocalGroup&) = delete;
  LocalGroup& operator=(const LocalGroup&) = delete;

  int size() const;
  // The transport of `rank` (0 <= rank < size); the group must outlive it.
  std::unique_ptr<Transport> transport(int rank);
  // Wakes every rank waiting in (or later entering) a collective, of this group or of any group
  // split from it, with an error naming `reason`, so that one failing rank never leaves the
  // others hanging.
  void abort(const Status& reason);

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// Runs fn(transport) on `worldSize` threads, one rank each, and returns every rank's Status (in
// rank order). A rank that fails aborts the group, so the others return instead of waiting.
// hostOfRank as for LocalGroup.
std::vector<Status> spawn(int worldSize, const std::function<Status(Transport&)>& fn,
                          std::vector<int> hostOfRank = {});

}  // namespace qcomm::transport
