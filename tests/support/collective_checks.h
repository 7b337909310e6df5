// Every collective of the Transport contract against a plain expectation: the check each
// backend's tests run on every rank (local threads, gloo, ...).
#pragma once

#include <numeric>
#include <string>
#include <vector>

#include "qcomm/transport.h"

namespace qcomm::testing {

inline Status checkEveryCollective(transport::Transport& t) {
  using transport::total;
  const int p = t.size();
  const int me = t.rank();
  // allgatherv: rank r sends r+1 bytes of value r.
  std::vector<size_t> counts(p);
  std::iota(counts.begin(), counts.end(), 1);
  std::vector<uint8_t> send(me + 1, static_cast<uint8_t>(me)), recv(total(counts));
  QCOMM_RETURN_IF_ERROR(t.allgatherv(send, recv, counts));
  size_t at = 0;
  for (int r = 0; r < p; ++r) {
    for (int i = 0; i <= r; ++i) {
      if (recv[at++] != r) return internalError("allgatherv byte from rank ", r);
    }
  }
  // alltoallv: rank me sends (me + j) % 3 + 1 bytes of value 10*me + j to rank j.
  std::vector<size_t> sendCounts(p), recvCounts(p);
  std::vector<uint8_t> out;
  for (int j = 0; j < p; ++j) {
    sendCounts[j] = (me + j) % 3 + 1;
    recvCounts[j] = (j + me) % 3 + 1;
    out.insert(out.end(), sendCounts[j], static_cast<uint8_t>(10 * me + j));
  }
  std::vector<uint8_t> in(total(recvCounts));
  QCOMM_RETURN_IF_ERROR(t.alltoallv(out, sendCounts, in, recvCounts));
  at = 0;
  for (int r = 0; r < p; ++r) {
    for (size_t i = 0; i < recvCounts[r]; ++i) {
      if (in[at++] != 10 * r + me) return internalError("alltoallv byte from rank ", r);
    }
  }
  std::vector<float> values = {float(me), 1.0f, -float(me) * 0.5f};
  QCOMM_RETURN_IF_ERROR(t.allreduceSum(values));
  const float sum = p * (p - 1) / 2.0f;
  if (values != std::vector<float>{sum, float(p), -sum * 0.5f}) {
    return internalError("allreduce gave ", values[0], " ", values[1], " ", values[2]);
  }
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                         t.allgatherStrings(std::string(me, 'x')));
  for (int r = 0; r < p; ++r) {
    if (names[r] != std::string(r, 'x')) return internalError("allgatherStrings");
  }
  // Zero bytes from some ranks, and an empty allreduce.
  std::vector<size_t> someEmpty(p);
  for (int r = 0; r < p; ++r) someEmpty[r] = r % 2 == 0 ? 0 : 3;
  std::vector<uint8_t> few(someEmpty[me], static_cast<uint8_t>(me)), all(total(someEmpty));
  QCOMM_RETURN_IF_ERROR(t.allgatherv(few, all, someEmpty));
  at = 0;
  for (int r = 0; r < p; ++r) {
    for (size_t i = 0; i < someEmpty[r]; ++i) {
      if (all[at++] != r) return internalError("allgatherv with empty ranks, byte from rank ", r);
    }
  }
  std::vector<float> none;
  QCOMM_RETURN_IF_ERROR(t.allreduceSum(none));
  return t.barrier();
}

}  // namespace qcomm::testing
