// What qcomm's two MPI transports (host, mpi_transport.cc; device, mpi_device_transport.cc) share
// to keep a rank from waiting forever: a nonblocking request polled against a deadline, and the
// roll call that names the ranks not heard from where MPI cannot say (a collective does not tell
// whom it waits for). Internal: included by those two sources only.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "qcomm/status.h"
#include "qcomm/transport.h"

namespace qcomm::transport::mpi_wait {

using Clock = std::chrono::steady_clock;

// Between polls of an unfinished request a waiting rank gives its core away once every this many
// polls, not after each: on 4 ranks sharing one 2-core machine, yielding after every poll made
// qcomm's algorithms 1.3-2x slower per call up to 256 KB per rank, and no faster above
// (docs/performance.md, "MPI waits: yield every 16th poll"); ranks that share a core still get
// it back within a few microseconds.
inline constexpr int kPollsPerYield = 16;

// Called after each fruitless poll, `polls` counting them from 1.
inline void afterFruitlessPoll(uint64_t polls) {
  if (polls % kPollsPerYield == 0) std::this_thread::yield();
}

// How long a rank that gave up in a collective listens for the others' roll call: ranks that
// entered the operation later than that are named although alive.
inline constexpr std::chrono::milliseconds kRollCallGrace{5000};

// The tag reserved for the roll call: MPI_TAG_UB of `comm` (at least 32767). Operations number
// their own tags below it.
inline int rollCallTag(MPI_Comm comm) {
  int* tagUb = nullptr;
  int found = 0;
  MPI_Comm_get_attr(comm, MPI_TAG_UB, &tagUb, &found);
  return found && tagUb != nullptr && *tagUb > 0 ? *tagUb : 32767;
}

// After a deadline every rank that gives up says so to every other rank (a zero-byte message on
// the reserved tag), so that a rank waiting in a collective can tell which ranks are still alive:
// those that gave up too. With `listen`, waits up to `grace` for the others' word and returns the
// ranks that sent none; otherwise returns none.
inline std::vector<int> rollCall(MPI_Comm comm, int rank, int size, int tag, bool listen,
                                 std::chrono::milliseconds grace) {
  for (int r = 0; r < size; ++r) {
    if (r == rank) continue;
    MPI_Request send = MPI_REQUEST_NULL;  // zero bytes: nothing to keep alive until it leaves
    if (MPI_Isend(nullptr, 0, MPI_BYTE, r, tag, comm, &send) == MPI_SUCCESS) {
      MPI_Request_free(&send);
    }
  }
  std::vector<int> silent;
  if (!listen) return silent;
  std::vector<MPI_Request> receives;
  std::vector<int> peers;
  for (int r = 0; r < size; ++r) {
    if (r == rank) continue;
    MPI_Request receive = MPI_REQUEST_NULL;
    if (MPI_Irecv(nullptr, 0, MPI_BYTE, r, tag, comm, &receive) != MPI_SUCCESS) continue;
    receives.push_back(receive);
    peers.push_back(r);
  }
  const Clock::time_point deadline = Clock::now() + grace;
  std::vector<int> indices(receives.size());
  for (;;) {
    int done = 0;  // MPI_Testsome frees what completed (MPI_Testall would free nothing)
    MPI_Testsome(static_cast<int>(receives.size()), receives.data(), &done, indices.data(),
                 MPI_STATUSES_IGNORE);
    if (done == MPI_UNDEFINED || Clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (size_t i = 0; i < receives.size(); ++i) {
    if (receives[i] == MPI_REQUEST_NULL) continue;
    silent.push_back(peers[i]);
    MPI_Cancel(&receives[i]);
    MPI_Request_free(&receives[i]);
  }
  return silent;
}

// The roll call after a collective's deadline, as words for an error message.
inline std::string rollCallVerdict(MPI_Comm comm, int rank, int size, int tag,
                                   std::chrono::milliseconds timeout) {
  const std::chrono::milliseconds grace = std::min(timeout, kRollCallGrace);
  const std::vector<int> absent = rollCall(comm, rank, size, tag, /*listen=*/true, grace);
  if (absent.empty()) {
    return "every rank answered a roll call after the deadline (they wait in different "
           "operations, or the network is too slow), but the operation is not complete";
  }
  return strCat(describeRanks(absent), " not heard from (no answer to a roll call within ",
                grace.count(), " ms after the deadline)");
}

// Waits for one started collective. timeout <= 0: as long as it takes. Past the deadline the
// request is abandoned (a collective cannot be cancelled) and the error names, through the roll
// call, the ranks not heard from: `where` says which operation on which transport. An error of
// the operation itself comes back as `call` failing.
inline Status waitCollective(MPI_Request* request, MPI_Comm comm, int rank, int size,
                             std::chrono::milliseconds timeout, std::string_view where,
                             const char* call) {
  const bool limited = timeout.count() > 0;
  const Clock::time_point deadline = Clock::now() + timeout;
  uint64_t polls = 0;
  for (;;) {
    int done = 0;
    MPI_Status status;
    const int code = MPI_Test(request, &done, &status);
    if (code != MPI_SUCCESS) {
      char text[MPI_MAX_ERROR_STRING];
      int length = 0;
      MPI_Error_string(code, text, &length);
      return internalError(call, " failed on rank ", rank, ": ", std::string(text, length));
    }
    if (done) return Status::ok();
    if (limited && Clock::now() > deadline) {
      return deadlineExceeded(where, ", timeout ", timeout.count(), " ms: ",
                              rollCallVerdict(comm, rank, size, rollCallTag(comm), timeout),
                              "; the transport is broken (end the job)");
    }
    afterFruitlessPoll(++polls);
  }
}

}  // namespace qcomm::transport::mpi_wait
