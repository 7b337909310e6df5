// The NCCL transport's store bootstrap without a GPU (label unit): the unique id reaches every
// rank through a store, rank 0's failure reaches the others with its reason, a damaged value and
// a missing rank 0 are clear errors. The ranks are threads sharing an in-process store.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "qcomm/gloo_transport.h"  // makeMemoryStore
#include "qcomm/nccl_store.h"

namespace qcomm::transport {
namespace {

using std::chrono::milliseconds;

TEST(NcclStore, EveryRankGetsRankZerosUniqueId) {
  auto store = makeMemoryStore();
  constexpr int kRanks = 3;
  std::vector<Result<ncclUniqueId>> got(kRanks, internalError("not run"));
  std::vector<std::thread> ranks;
  for (int r = kRanks - 1; r >= 0; --r) {  // the others wait before rank 0 has set it
    ranks.emplace_back([&, r] { got[r] = shareNcclUniqueId(*store, r, "job", milliseconds(20000)); });
  }
  for (std::thread& t : ranks) t.join();
  if (!got[0].isOk()) {
    // NCCL could not make an id on this machine: then every rank must say so, with the reason.
    for (int r = 1; r < kRanks; ++r) {
      ASSERT_FALSE(got[r].isOk());
      EXPECT_NE(got[r].status().message().find("rank 0 could not make an NCCL unique id"),
                std::string::npos)
          << got[r].status().message();
    }
    GTEST_SKIP() << "ncclGetUniqueId failed here: " << got[0].status().message();
  }
  for (int r = 1; r < kRanks; ++r) {
    ASSERT_TRUE(got[r].isOk()) << got[r].status().message();
    EXPECT_EQ(std::memcmp(got[r]->internal, got[0]->internal, sizeof(got[0]->internal)), 0)
        << "rank " << r << " got another id";
  }
  // Another prefix is another job: a second id, not the first one again.
  Result<ncclUniqueId> other = shareNcclUniqueId(*store, 0, "job2", milliseconds(1000));
  ASSERT_TRUE(other.isOk()) << other.status().message();
  Result<std::vector<char>> first = store->get("job/nccl-unique-id", milliseconds(10));
  Result<std::vector<char>> second = store->get("job2/nccl-unique-id", milliseconds(10));
  ASSERT_TRUE(first.isOk() && second.isOk());
  EXPECT_NE(*first, *second);
}

TEST(NcclStore, RankZerosFailureReachesTheOthersWithItsReason) {
  auto store = makeMemoryStore();
  std::vector<char> value{0};
  const std::string why = "unhandled system error";
  value.insert(value.end(), why.begin(), why.end());
  ASSERT_TRUE(store->set("p/nccl-unique-id", value).isOk());
  Result<ncclUniqueId> got = shareNcclUniqueId(*store, 2, "p", milliseconds(1000));
  ASSERT_FALSE(got.isOk());
  EXPECT_EQ(got.status().message(),
            "rank 2: rank 0 could not make an NCCL unique id: unhandled system error");
}

TEST(NcclStore, ADamagedValueIsDataLoss) {
  auto store = makeMemoryStore();
  ASSERT_TRUE(store->set("p/nccl-unique-id", std::vector<char>(17, 1)).isOk());
  Result<ncclUniqueId> got = shareNcclUniqueId(*store, 1, "p", milliseconds(1000));
  ASSERT_FALSE(got.isOk());
  EXPECT_EQ(got.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(got.status().message(),
            "rank 1: 'p/nccl-unique-id' holds 17 bytes where 129 (a flag and an NCCL unique id) "
            "were expected");
}

TEST(NcclStore, AMissingRankZeroIsATimeoutNamingTheKey) {
  auto store = makeMemoryStore();
  Result<ncclUniqueId> got = shareNcclUniqueId(*store, 1, "lonely", milliseconds(200));
  ASSERT_FALSE(got.isOk());
  EXPECT_EQ(got.status().code(), StatusCode::kDeadlineExceeded) << got.status().message();
  EXPECT_NE(got.status().message().find(
                "rank 1: waiting for rank 0's NCCL unique id under 'lonely/nccl-unique-id'"),
            std::string::npos)
      << got.status().message();
}

TEST(NcclStore, ImpossibleRanksAreRefusedBeforeAnything) {
  auto store = makeMemoryStore();
  Result<std::unique_ptr<NcclTransport>> t = createNcclOverStore(*store, 3, 2, 0);
  ASSERT_FALSE(t.isOk());
  EXPECT_EQ(t.status().message(), "NCCL rank 3 of 2 is impossible");
  Result<std::vector<char>> untouched = store->get("qcomm/nccl-unique-id", milliseconds(10));
  EXPECT_FALSE(untouched.isOk()) << "the store was written before the ranks were checked";
}

}  // namespace
}  // namespace qcomm::transport
