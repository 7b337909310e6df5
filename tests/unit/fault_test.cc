// Injected faults (tests/support/faulty_transport.h) under the Communicator, over the local
// transport: under each fault every rank returns an error that names what happened, never wrong
// values and never a hang; after a damaged message the communicator is usable again.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "qcomm/communicator.h"
#include "qcomm/env.h"
#include "qcomm/local_transport.h"
#include "support/allreduce_expectations.h"
#include "support/faulty_transport.h"

namespace qcomm {
namespace {

using testing::Fault;
using testing::FaultPlan;
using testing::faultName;

constexpr int kRanks = 4;
constexpr int64_t kValues = 3000;

// What each rank saw in each of three calls, and its results.
struct RankRun {
  std::vector<Status> calls;
  std::vector<std::vector<float>> results;
  int injected = 0;
};

// Every rank wraps its local transport with `plan`, creates a communicator with `options` and
// runs `calls` allreduces of one tensor (inputs salted by the call). Ranks are plain threads: no
// rank's failure aborts the group, so only timeouts end waits.
std::vector<RankRun> runCalls(const FaultPlan& plan, const CommunicatorOptions& options,
                              int calls) {
  transport::LocalGroup group(kRanks);
  std::vector<RankRun> runs(kRanks);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      std::unique_ptr<transport::Transport> local = group.transport(r);
      testing::FaultyTransport faulty(*local, plan);
      Result<std::unique_ptr<Communicator>> comm = Communicator::create(faulty, options);
      if (!comm.isOk()) {
        runs[r].calls.push_back(comm.status());
        return;
      }
      faulty.arm();
      for (int c = 0; c < calls; ++c) {
        std::vector<float> x = testing::inputOf(r, kValues, c);
        runs[r].calls.push_back((*comm)->allreduceMean(x, "grad"));
        runs[r].results.push_back(std::move(x));
        // After a timeout the transport is broken; a rank that failed on its own would exit.
        const Status& last = runs[r].calls.back();
        if (last.code() == StatusCode::kDeadlineExceeded ||
            (!last.isOk() && plan.fault == Fault::kFail && r == plan.from)) {
          break;
        }
      }
      runs[r].injected = faulty.injected();
    });
  }
  for (std::thread& t : threads) t.join();
  return runs;
}

CommunicatorOptions optionsFor(Algorithm algorithm, const std::string& codec =
                                                         "qsgd:bits=4,bucket=512,norm=max") {
  CommunicatorOptions o;
  o.codec = codec;
  o.algorithm = algorithm;
  o.minCompressNumel = 0;
  o.errorFeedback = true;
  o.timeout = std::chrono::seconds(20);  // generous: only the drop/fail cases wait for it
  return o;
}

std::string describe(const FaultPlan& plan, Algorithm algorithm) {
  return strCat(faultName(plan.fault), " of rank ", plan.from, "'s message at ",
                plan.at < 0 ? std::string("every rank") : strCat("rank ", plan.at),
                " in operation ", plan.operation, ", ", algorithmName(algorithm));
}

// Call 0 runs clean, call 1 carries the damage, call 2 must be sound again: identical on every
// rank and within the quantization bound.
void expectRecovered(const std::vector<RankRun>& runs, const FaultPlan& plan,
                     Algorithm algorithm, const std::string& what) {
  const std::string where = describe(plan, algorithm);
  int injected = 0;
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(runs[r].calls.size(), 3u) << where;
    EXPECT_TRUE(runs[r].calls[0].isOk()) << where << ": rank " << r << " "
                                         << runs[r].calls[0].toString();
    const Status& hit = runs[r].calls[1];
    EXPECT_EQ(hit.code(), StatusCode::kDataLoss) << where << ": rank " << r << " "
                                                 << hit.toString();
    EXPECT_NE(hit.message().find(what), std::string::npos)
        << where << ": rank " << r << " does not say '" << what << "': " << hit.message();
    EXPECT_NE(hit.message().find(strCat("rank ", plan.from)), std::string::npos)
        << where << ": rank " << r << " does not name the sender: " << hit.message();
    EXPECT_TRUE(runs[r].calls[2].isOk()) << where << ": rank " << r << " after the fault: "
                                         << runs[r].calls[2].toString();
    EXPECT_EQ(runs[r].results[2], runs[0].results[2]) << where << ": rank " << r;
    injected += runs[r].injected;
  }
  EXPECT_GE(injected, 1) << where << ": the fault was never injected";
  // Error feedback starts again from zero after the failed call, so call 2 is as a fresh
  // communicator's: within the quantization bound of its inputs.
  EXPECT_EQ(testing::firstOutOfBound(runs[0].results[2], kRanks, 4, algorithm, 2), -1) << where;
}

TEST(Faults, DamagedMessagesFailTheCallOnEveryRankAndTheNextCallIsSound) {
  struct Case {
    Fault fault;
    const char* what;
  };
  for (const Case& c : {Case{Fault::kCorrupt, "CRC"}, Case{Fault::kTruncate, "size mismatch"},
                        Case{Fault::kDuplicate, "stale, duplicated or misdelivered"}}) {
    for (Algorithm algorithm : {Algorithm::kAllgather, Algorithm::kSra}) {
      // allgather sends one message per call, sra two (its all-to-all, then the owners' means).
      const int perCall = algorithm == Algorithm::kSra ? 2 : 1;
      for (int phase = 0; phase < perCall; ++phase) {
        for (int at : {-1, 3}) {
          FaultPlan plan;
          plan.fault = c.fault;
          plan.from = 1;
          plan.at = at;
          plan.operation = perCall + phase;  // in call 1
          expectRecovered(runCalls(plan, optionsFor(algorithm), 3), plan, algorithm, c.what);
        }
      }
    }
  }
}

TEST(Faults, DamagedBlockQuantizerMessagesAreCaughtToo) {
  FaultPlan plan;
  plan.fault = Fault::kCorrupt;
  plan.from = 2;
  plan.operation = 1;
  const std::vector<RankRun> runs =
      runCalls(plan, optionsFor(Algorithm::kAllgather, "linear:bits=8"), 3);
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(runs[r].calls.size(), 3u);
    EXPECT_TRUE(runs[r].calls[0].isOk()) << runs[r].calls[0].toString();
    EXPECT_EQ(runs[r].calls[1].code(), StatusCode::kDataLoss) << runs[r].calls[1].toString();
    EXPECT_NE(runs[r].calls[1].message().find("rank 2"), std::string::npos)
        << runs[r].calls[1].message();
    EXPECT_TRUE(runs[r].calls[2].isOk()) << runs[r].calls[2].toString();
    EXPECT_EQ(runs[r].results[2], runs[0].results[2]);
  }
}

TEST(Faults, ADelayShorterThanTheTimeoutChangesNothing) {
  for (Algorithm algorithm : {Algorithm::kAllgather, Algorithm::kSra}) {
    FaultPlan none;
    const std::vector<RankRun> clean = runCalls(none, optionsFor(algorithm), 3);
    FaultPlan plan;
    plan.fault = Fault::kDelay;
    plan.from = 2;
    plan.operation = 1;
    plan.delay = std::chrono::milliseconds(300);
    const std::vector<RankRun> delayed = runCalls(plan, optionsFor(algorithm), 3);
    for (int r = 0; r < kRanks; ++r) {
      ASSERT_EQ(delayed[r].calls.size(), 3u);
      for (int c = 0; c < 3; ++c) {
        EXPECT_TRUE(delayed[r].calls[c].isOk()) << delayed[r].calls[c].toString();
        EXPECT_EQ(delayed[r].results[c], clean[r].results[c]) << "rank " << r << " call " << c;
      }
    }
    EXPECT_EQ(delayed[2].injected, 1);
  }
}

// A rank whose message is lost, or that fails without taking part: the others fail with
// DeadlineExceeded naming it, never hang.
TEST(Faults, ALostMessageOrAFailedRankEndsEveryRankWithinTheTimeout) {
  for (Fault fault : {Fault::kDrop, Fault::kFail}) {
    for (Algorithm algorithm : {Algorithm::kAllgather, Algorithm::kSra}) {
      FaultPlan plan;
      plan.fault = fault;
      plan.from = 1;
      plan.operation = algorithm == Algorithm::kSra ? 2 : 1;  // the first message of call 1
      CommunicatorOptions options = optionsFor(algorithm);
      options.timeout = std::chrono::milliseconds(1500);
      // A hang would stop at the test's own time limit (ctest); no wall-clock check here.
      const std::vector<RankRun> runs = runCalls(plan, options, 3);
      const std::string where = strCat(faultName(fault), ", ", algorithmName(algorithm));
      EXPECT_EQ(runs[1].injected, 1) << where;
      for (int r = 0; r < kRanks; ++r) {
        ASSERT_GE(runs[r].calls.size(), 2u) << where;
        EXPECT_TRUE(runs[r].calls[0].isOk()) << where << runs[r].calls[0].toString();
        const Status& hit = runs[r].calls[1];
        ASSERT_FALSE(hit.isOk()) << where << ": rank " << r << " returned wrong values as OK";
        if (r == 1) continue;  // the rank at fault: its own failure, or a timeout of its own
        EXPECT_EQ(hit.code(), StatusCode::kDeadlineExceeded) << where << " rank " << r << " "
                                                             << hit.toString();
        EXPECT_NE(hit.message().find("rank 1 not heard from"), std::string::npos)
            << where << " rank " << r << ": " << hit.message();
      }
      if (fault == Fault::kFail) {
        EXPECT_NE(runs[1].calls[1].message().find("injected failure"), std::string::npos)
            << runs[1].calls[1].message();
      }
    }
  }
}

TEST(Faults, TheTimeoutComesFromTheOptionsOrQcommTimeout) {
  const std::vector<Status> results = transport::spawn(2, [](transport::Transport& t) -> Status {
    CommunicatorOptions o;
    o.timeout = std::chrono::milliseconds(1234);
    QCOMM_RETURN_IF_ERROR(Communicator::create(t, o).status());
    EXPECT_EQ(t.timeout().count(), 1234);
    o.timeout = std::chrono::milliseconds(-1);
    QCOMM_RETURN_IF_ERROR(Communicator::create(t, o).status());
    EXPECT_LT(t.timeout().count(), 0);  // no limit
    o.timeout = std::chrono::milliseconds(0);
    QCOMM_RETURN_IF_ERROR(Communicator::create(t, o).status());
    // QCOMM_TIMEOUT (default 300 s) when the options say 0.
    EXPECT_EQ(t.timeout().count(), *knobInt(Knob::kTimeout, 0, int64_t{1} << 31) * 1000);
    return Status::ok();
  });
  for (const Status& s : results) EXPECT_TRUE(s.isOk()) << s.toString();
}

TEST(Faults, TheLocalTransportNamesTheRanksItDidNotHearFrom) {
  transport::LocalGroup group(3);
  std::vector<Status> results(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {  // rank 2 never comes
    threads.emplace_back([&, r] {
      std::unique_ptr<transport::Transport> t = group.transport(r);
      t->setTimeout(std::chrono::milliseconds(200));
      results[r] = t->barrier();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(results[r].code(), StatusCode::kDeadlineExceeded) << results[r].toString();
    EXPECT_NE(results[r].message().find("rank 2 not heard from within 200 ms"), std::string::npos)
        << results[r].message();
  }
  // The group is aborted: a late rank fails at once rather than waiting alone.
  std::unique_ptr<transport::Transport> late = group.transport(2);
  EXPECT_EQ(late->barrier().code(), StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace qcomm
