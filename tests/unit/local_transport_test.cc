// The local transport: every collective against a plain expectation, and errors that reach every
// rank instead of hanging.
#include <gtest/gtest.h>

#include <numeric>

#include "qcomm/local_transport.h"
#include "support/collective_checks.h"

namespace qcomm::transport {
namespace {

void expectAllOk(const std::vector<Status>& results) {
  for (size_t r = 0; r < results.size(); ++r)
    EXPECT_TRUE(results[r].isOk()) << r << ": " << results[r].toString();
}

TEST(LocalTransport, AllgathervAlltoallvAllreduce) {
  for (int p : {1, 2, 3, 5}) {
    expectAllOk(spawn(p, testing::checkEveryCollective));
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
