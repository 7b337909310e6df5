// The Gloo transport over loopback TCP, ranks as threads: the collective checks every backend
// runs, the Communicator sweep as over the local transport, both stores, and the failures a
// real job meets (a rank that never comes, a rank that dies, bad arguments).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>
#include <unistd.h>

#include "qcomm/communicator.h"
#include "qcomm/gloo_transport.h"
#include "support/allreduce_expectations.h"
#include "support/collective_checks.h"

namespace qcomm::transport {
namespace {

using namespace std::chrono_literals;

GlooOptions loopback(std::chrono::milliseconds timeout = 30s) {
  GlooOptions o;
  o.hostname = "127.0.0.1";
  o.timeout = timeout;
  return o;
}

// Runs fn on `size` ranks, one thread each, joined through `store`.
std::vector<Status> spawnGloo(int size, const std::function<Status(Transport&)>& fn,
                              std::shared_ptr<KeyValueStore> store = makeMemoryStore(),
                              const GlooOptions& options = loopback()) {
  std::vector<Status> results(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      Result<std::unique_ptr<GlooTransport>> t = GlooTransport::create(store, r, size, options);
      results[r] = t.isOk() ? fn(**t) : t.status();
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

void expectAllOk(const std::vector<Status>& results, const std::string& what = "") {
  for (size_t r = 0; r < results.size(); ++r) {
    ASSERT_TRUE(results[r].isOk()) << what << " rank " << r << ": " << results[r].toString();
  }
}

TEST(GlooTransport, EveryCollectiveOnOneToFiveRanks) {
  for (int p : {1, 2, 3, 5}) {
    expectAllOk(spawnGloo(p, testing::checkEveryCollective), "P=" + std::to_string(p));
  }
}

TEST(GlooTransport, FileStoreJoinsRanksAndKeepsGroupsApartByPrefix) {
  const std::string dir = strCat(::testing::TempDir(), "qcomm_gloo_store_", getpid());
  std::filesystem::remove_all(dir);
  Result<std::shared_ptr<KeyValueStore>> store = makeFileStore(dir);
  ASSERT_TRUE(store.isOk()) << store.status().toString();
  for (const char* prefix : {"first", "second"}) {  // two groups, one after the other
    GlooOptions o = loopback();
    o.prefix = prefix;
    expectAllOk(spawnGloo(3, testing::checkEveryCollective, *store, o), prefix);
  }
  std::filesystem::remove_all(dir);
}

TEST(GlooTransport, CommunicatorSweepMatchesTheExactMeanWithinTheQuantizationBound) {
  for (int p : {1, 2, 3, 4}) {
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{513}, int64_t{100000}}) {
      for (int bits : {2, 4}) {
        for (Algorithm algorithm :
             {Algorithm::kAllgather, Algorithm::kSra, Algorithm::kUncompressed}) {
          if (algorithm == Algorithm::kUncompressed && bits != 2) continue;
          const std::string what =
              strCat("P=", p, " n=", n, " q=", bits, " ", algorithmName(algorithm));
          std::vector<std::vector<float>> results(p);
          expectAllOk(spawnGloo(p,
                                [&](Transport& t) -> Status {
                                  CommunicatorOptions o;
                                  o.codec = strCat("qsgd:bits=", bits, ",bucket=512,norm=max");
                                  o.algorithm = algorithm;
                                  o.minCompressNumel = 0;
                                  o.chunkNumel = 30000;  // the largest case in 4 chunks
                                  QCOMM_ASSIGN_OR_RETURN(auto comm, Communicator::create(t, o));
                                  std::vector<float> data = testing::inputOf(t.rank(), n);
                                  QCOMM_RETURN_IF_ERROR(comm->allreduceMean(data, "w"));
                                  results[t.rank()] = std::move(data);
                                  return Status::ok();
                                }),
                      what);
          for (int r = 1; r < p; ++r) ASSERT_EQ(results[r], results[0]) << what << " rank " << r;
          const int boundBits = algorithm == Algorithm::kUncompressed ? 16 : bits;
          ASSERT_EQ(testing::firstOutOfBound(results[0], p, boundBits, algorithm), -1) << what;
        }
      }
    }
  }
}

// The Communicator's asynchronous calls drive the transport from its worker thread; the words
// are those of the blocking calls, in submission order.
TEST(GlooTransport, AsynchronousCallsEqualBlockingOnes) {
  constexpr int p = 3;
  std::vector<std::vector<float>> blocking(p), async(p);
  for (bool useAsync : {false, true}) {
    expectAllOk(spawnGloo(p,
                          [&](Transport& t) -> Status {
                            return testing::reduceTwoThenOne(
                                t, useAsync, &(useAsync ? async : blocking)[t.rank()]);
                          }),
                useAsync ? "async" : "blocking");
  }
  EXPECT_EQ(async, blocking);
  for (int r = 1; r < p; ++r) EXPECT_EQ(async[r], async[0]) << r;
}

TEST(GlooTransport, AMissingRankEndsTheOthersWithATimeout) {
  // Rank 1 of 2 never comes: rank 0 gives up after its timeout with an error that says why.
  const auto start = std::chrono::steady_clock::now();
  Result<std::unique_ptr<GlooTransport>> t =
      GlooTransport::create(makeMemoryStore(), 0, 2, loopback(1500ms));
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(t.isOk());
  EXPECT_EQ(t.status().code(), StatusCode::kDeadlineExceeded) << t.status().toString();
  EXPECT_NE(
      t.status().message().find("gloo transport, rank 0 of 2: connecting to the other 1 ranks"),
      std::string::npos)
      << t.status().message();
  EXPECT_LT(waited, 60s);  // bounded: the timeout, not forever
}

TEST(GlooTransport, ARankThatDiesMidJobFailsTheOthersCollective) {
  const std::vector<Status> results = spawnGloo(
      2,
      [](Transport& t) -> Status {
        QCOMM_RETURN_IF_ERROR(t.barrier());
        if (t.rank() == 1) return Status::ok();  // leaves: its transport closes its sockets
        std::this_thread::sleep_for(200ms);
        std::vector<float> data(1000, 1.0f);
        return t.allreduceSum(data);
      },
      makeMemoryStore(), loopback(3s));
  EXPECT_TRUE(results[1].isOk()) << results[1].toString();
  ASSERT_FALSE(results[0].isOk());
  EXPECT_NE(results[0].message().find("gloo transport, rank 0 of 2: allreduce of 1000 floats"),
            std::string::npos)
      << results[0].message();
  EXPECT_NE(results[0].message().find("rank 1 not heard from"), std::string::npos)
      << results[0].message();
}

// A rank that joins the group but not the operation: past the timeout every other rank fails
// naming it (a roll call through the store: Gloo's ring does not say whom it waited for), for
// every operation; the transport then refuses further work with the same error. The ranks whose
// own deadline passed say DeadlineExceeded; Gloo closes their connections, so a rank still
// waiting on one of them may fail first with IoError ("Connection closed by peer").
TEST(GlooTransport, ASilentRankIsNamedByTheOthersAfterTheTimeout) {
  constexpr int kSize = 4, kSilent = 2;
  for (const std::string op : {"allgatherv", "alltoallv", "allreduce", "barrier"}) {
    std::atomic<int> done{0};
    const std::vector<Status> results = spawnGloo(
        kSize,
        [&](Transport& t) -> Status {
          t.setTimeout(400ms);
          if (t.rank() == kSilent) {  // alive, connected, but never joins: waits for the verdict
            while (done.load() < kSize - 1) std::this_thread::sleep_for(1ms);
            return Status::ok();
          }
          std::vector<uint8_t> send(kSize * 8, 1), recv(kSize * 8);
          const std::vector<size_t> counts(kSize, 8), all(kSize, 8);
          std::vector<float> values(1000, 1.0f);
          Status s = op == "allgatherv" ? t.allgatherv(std::span(send).first(8), recv, counts)
                     : op == "alltoallv" ? t.alltoallv(send, all, recv, all)
                     : op == "allreduce" ? t.allreduceSum(values)
                                         : t.barrier();
          const Status again = t.barrier();  // broken: the same error at once
          ++done;
          if (again.toString() != s.toString()) {
            return internalError("after the failure the transport says ", again.toString(),
                                 " instead of ", s.toString());
          }
          return s;
        },
        makeMemoryStore(), loopback(30s));
    int timedOut = 0;
    for (int r = 0; r < kSize; ++r) {
      if (r == kSilent) continue;
      timedOut += results[r].code() == StatusCode::kDeadlineExceeded;
      EXPECT_TRUE(results[r].code() == StatusCode::kDeadlineExceeded ||
                  results[r].code() == StatusCode::kIoError)
          << op << ": " << results[r].toString();
      EXPECT_NE(results[r].message().find(strCat("rank ", r, " of 4: ")), std::string::npos)
          << results[r].message();
      EXPECT_NE(results[r].message().find(strCat(": rank ", kSilent, " not heard from (no answer "
                                                 "to a roll call")),
                std::string::npos)
          << op << ": " << results[r].message();
    }
    EXPECT_GT(timedOut, 0) << op << ": no rank saw its deadline pass";
  }
}

// A rank that is done the moment its transport exists closes its sockets at once; the others'
// create must still succeed (it used to fail with "Connection closed by peer" under load).
TEST(GlooTransport, RanksThatLeaveRightAfterCreateDoNotBreakTheOthers) {
  for (int round = 0; round < 40; ++round) {
    expectAllOk(spawnGloo(3, [](Transport&) { return Status::ok(); }),
                strCat("round ", round));
  }
}

TEST(GlooTransport, BadArgumentsGetClearErrors) {
  EXPECT_EQ(GlooTransport::create(nullptr, 0, 1).status().message(), "gloo transport: no store");
  EXPECT_EQ(GlooTransport::create(makeMemoryStore(), 2, 2).status().message(),
            "gloo transport: rank 2 of 2 (needs 0 <= rank < size)");
  GlooOptions o = loopback(0ms);
  EXPECT_EQ(GlooTransport::create(makeMemoryStore(), 0, 1, o).status().message(),
            "gloo transport: timeout must be positive, got 0 ms");
  expectAllOk(spawnGloo(2, [](Transport& t) -> Status {
    std::vector<uint8_t> send(3), recv(5);
    const std::vector<size_t> counts = {2, 2};
    const Status s = t.allgatherv(send, recv, counts);
    const std::string want = strCat("gloo transport, rank ", t.rank(),
                                    " of 2: allgatherv: sends 3 bytes into 5 with 2 counts summing to 4");
    if (s.message() != want) {
      return internalError("unexpected: ", s.toString());
    }
    return Status::ok();
  }));
}

}  // namespace
}  // namespace qcomm::transport
