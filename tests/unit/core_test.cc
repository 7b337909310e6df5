// Status/Result, the knob registry and the executor.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <set>

#include "qcomm/env.h"
#include "qcomm/executor.h"
#include "qcomm/status.h"

namespace qcomm {
namespace {

Result<int> half(int x) {
  if (x % 2 != 0) return invalidArgument("expected an even number, got ", x);
  return x / 2;
}

Status quarter(int x, int* out) {
  QCOMM_ASSIGN_OR_RETURN(const int h, half(x));
  QCOMM_ASSIGN_OR_RETURN(*out, half(h));
  return Status::ok();
}

TEST(Status, ResultAndMacros) {
  int out = 0;
  EXPECT_TRUE(quarter(8, &out).isOk());
  EXPECT_EQ(out, 2);
  const Status s = quarter(6, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.toString(), "InvalidArgument: expected an even number, got 3");
  EXPECT_EQ(s.withContext("rank 2: ").message(), "rank 2: expected an even number, got 3");
  Result<int> fromOk = Status::ok();
  EXPECT_FALSE(fromOk.isOk());
  EXPECT_EQ(fromOk.status().code(), StatusCode::kInternal);
}

TEST(Env, KnobsAreRegisteredOnceAndParsed) {
  std::set<std::string_view> names;
  for (const KnobInfo& k : knobs()) {
    EXPECT_TRUE(k.name.starts_with("QCOMM_")) << k.name;
    EXPECT_TRUE(names.insert(k.name).second) << "declared twice: " << k.name;
    EXPECT_EQ(&knobInfo(k.knob), &k);
  }
  unsetenv("QCOMM_NUM_THREADS");
  EXPECT_EQ(*knobInt(Knob::kNumThreads, 0, 64), 0);
  setenv("QCOMM_NUM_THREADS", "12", 1);
  EXPECT_EQ(*knobInt(Knob::kNumThreads, 0, 64), 12);
  setenv("QCOMM_NUM_THREADS", "twelve", 1);
  EXPECT_EQ(knobInt(Knob::kNumThreads, 0, 64).status().message(),
            "QCOMM_NUM_THREADS='twelve' is not an integer");
  setenv("QCOMM_NUM_THREADS", "100", 1);
  EXPECT_EQ(knobInt(Knob::kNumThreads, 0, 64).status().message(),
            "QCOMM_NUM_THREADS=100 is outside [0, 64]");
  setenv("QCOMM_NUM_THREADS", "-1", 1);
  EXPECT_EQ(Executor::fromEnvironment().status().message(),
            "QCOMM_NUM_THREADS=-1 is outside [0, 4096]");
  unsetenv("QCOMM_NUM_THREADS");
}

TEST(Executor, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 5}) {
    Executor executor(threads);
    EXPECT_EQ(executor.numThreads(), threads);
    for (int64_t n : {0, 1, 7, 1000, 100003}) {
      for (int64_t grain : {1, 10, 4096}) {
        std::vector<std::atomic<int>> hits(n);
        executor.parallelFor(n, grain, [&](int64_t b, int64_t e) {
          ASSERT_LT(b, e);
          for (int64_t i = b; i < e; ++i) hits[i]++;
        });
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[i].load(), 1) << n << " " << grain << " " << i;
      }
    }
  }
}

TEST(Executor, ConcurrentCallersAreSerialized) {
  Executor executor(3);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int r = 0; r < 50; ++r) {
        executor.parallelFor(1000, 10, [&](int64_t b, int64_t e) { total += e - b; });
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 50 * 1000);
}

}  // namespace
}  // namespace qcomm
