// The local transport: every collective against a plain expectation, and errors that reach every
// rank instead of hanging.
#include <gtest/gtest.h>

#include <numeric>

#include "qcomm/local_transport.h"

namespace qcomm::transport {
namespace {

void expectAllOk(const std::vector<Status>& results) {
  for (size_t r = 0; r < results.size(); ++r)
    EXPECT_TRUE(results[r].isOk()) << r << ": " << results[r].toString();
}

TEST(LocalTransport, AllgathervAlltoallvAllreduce) {
  for (int p : {1, 2, 3, 5}) {
    expectAllOk(spawn(p, [&](Transport& t) -> Status {
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
      return t.barrier();
    }));
  }
}

TEST(LocalTransport, MismatchedCountsFailOnTheRankThatSeesThemWithoutHanging) {
  const std::vector<Status> results = spawn(3, [](Transport& t) -> Status {
    std::vector<uint8_t> send(t.rank() == 1 ? 5 : 4), recv(12);
    const std::vector<size_t> counts(3, 4);
    return t.allgatherv(send, recv, counts);
  });
  EXPECT_EQ(results[1].message(), "allgatherv on rank 1: sends 5 bytes but recvCounts[1] is 4");
  EXPECT_EQ(results[0].message(),
            "allgatherv on rank 0: expected 4 bytes from rank 1, which sent 5");
}

TEST(LocalTransport, AFailingRankAbortsTheOthers) {
  const std::vector<Status> results = spawn(4, [](Transport& t) -> Status {
    if (t.rank() == 2) return invalidArgument("rank 2 gives up");
    return t.barrier();  // would wait forever for rank 2 without the abort
  });
  EXPECT_EQ(results[2].message(), "rank 2 gives up");
  for (int r : {0, 1, 3}) {
    EXPECT_EQ(results[r].message(), "local group aborted: rank 2: rank 2 gives up") << r;
  }
}

}  // namespace
}  // namespace qcomm::transport
