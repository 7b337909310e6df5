// The Communicator over real Open MPI ranks (mpirun -np 2, 3, 4): results within the quantization
// bound and identical on every rank, and the error cases asserted on every rank.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "qcomm/communicator.h"
#include "qcomm/mpi_transport.h"
#include "support/allreduce_expectations.h"

namespace qcomm {
namespace {

std::unique_ptr<transport::MpiTransport> world() {
  Result<std::unique_ptr<transport::MpiTransport>> t =
      transport::MpiTransport::create(MPI_COMM_WORLD);
  EXPECT_TRUE(t.isOk()) << t.status().toString();
  return std::move(t).value();
}

// True when `values` are bit-identical on every rank.
bool sameOnEveryRank(const std::vector<float>& values) {
  uint64_t hash = 0xCBF29CE484222325ull;
  const auto* bytes = reinterpret_cast<const uint8_t*>(values.data());
  for (size_t i = 0; i < values.size() * sizeof(float); ++i)
    hash = (hash ^ bytes[i]) * 0x100000001B3ull;
  uint64_t lo = hash, hi = hash;
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

TEST(MpiTransport, CollectivesMoveTheRightBytes) {
  auto t = world();
  const int p = t->size(), me = t->rank();
  std::vector<size_t> counts(p);
  for (int r = 0; r < p; ++r) counts[r] = r + 1;
  std::vector<uint8_t> send(me + 1, uint8_t(me)), recv(transport::total(counts));
  ASSERT_TRUE(t->allgatherv(send, recv, counts).isOk());
  size_t at = 0;
  for (int r = 0; r < p; ++r) {
    for (int i = 0; i <= r; ++i) ASSERT_EQ(recv[at++], r);
  }
  std::vector<float> values = {float(me), 1.0f};
  ASSERT_TRUE(t->allreduceSum(values).isOk());
  EXPECT_EQ(values[0], p * (p - 1) / 2.0f);
  EXPECT_EQ(values[1], float(p));
  const std::vector<size_t> wrong(p + 1, 1);
  std::vector<uint8_t> one(1), many(p + 1);
  EXPECT_EQ(t->allgatherv(one, many, wrong).code(), StatusCode::kInvalidArgument);
}

// The float sum takes recursive doubling below 64 KB (and below 4 ranks) and MPI_Iallreduce from a
// copy above: both must give every rank the same bits, close to the exact sum, at any size and
// on repeated calls (the copy's buffer is reused).
TEST(MpiTransport, TheFloatSumIsTheSameOnEveryRankAtEverySize) {
  auto t = world();
  const int p = t->size(), me = t->rank();
  for (const size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{16383}, size_t{16384},
                         size_t{100003}, size_t{16384}, size_t{5}}) {
    // Magnitudes from 1e-3 to 1e3, so that the order of the additions shows in the last bits.
    auto value = [](int rank, size_t i) {
      const uint64_t h = (uint64_t(rank) * 0x9E3779B97F4A7C15ull) ^ (i * 0xBF58476D1CE4E5B9ull);
      const double unit = double(h >> 11) * 0x1p-53;
      return float((unit - 0.5) * std::pow(10.0, double(i % 7) - 3.0));
    };
    std::vector<float> values(n);
    for (size_t i = 0; i < n; ++i) values[i] = value(me, i);
    ASSERT_TRUE(t->allreduceSum(values).isOk()) << n << " values";
    EXPECT_TRUE(sameOnEveryRank(values)) << n << " values";
    for (size_t i = 0; i < n; ++i) {
      double exact = 0.0, magnitude = 0.0;
      for (int r = 0; r < p; ++r) {
        exact += value(r, i);
        magnitude += std::fabs(value(r, i));
      }
      ASSERT_NEAR(values[i], exact, p * magnitude * 0x1p-23) << n << " values, index " << i;
    }
  }
}

// A message longer or shorter than its receiver expects is a DataLoss naming the sender, and the
// transport stays usable (the operation completed everywhere).
TEST(MpiTransport, AWrongSizedMessageIsADataLossNamingItsSender) {
  auto t = world();
  const int p = t->size(), me = t->rank();
  for (const size_t believed : {size_t{50}, size_t{200}}) {
    std::vector<size_t> counts(p, 100);
    if (me == 0) counts[1] = believed;  // rank 0 alone is wrong about rank 1's size
    std::vector<uint8_t> send(100, uint8_t(me)), recv(transport::total(counts));
    const Status s = t->allgatherv(send, recv, counts);
    if (me == 0) {
      EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.toString();
      EXPECT_NE(s.message().find("from rank 1"), std::string::npos) << s.message();
      EXPECT_NE(s.message().find("size mismatch"), std::string::npos) << s.message();
    } else {
      EXPECT_TRUE(s.isOk()) << s.toString();
    }
    EXPECT_TRUE(t->barrier().isOk());
  }
}

// A rank that never joins an operation: past the timeout every other rank fails with
// DeadlineExceeded naming it, and the transport refuses further work with the same error.
TEST(MpiTransport, ASilentRankIsNamedWhenTheTimeoutPasses) {
  auto t = world();
  const int p = t->size(), me = t->rank(), silent = p - 1;
  t->setTimeout(std::chrono::milliseconds(500));
  std::vector<size_t> counts(p, 64);  // small: eager sends complete without their receiver
  std::vector<uint8_t> send(64, uint8_t(me)), recv(64 * p);
  if (me != silent) {
    const Status s = t->allgatherv(send, recv, counts);
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.toString();
    EXPECT_NE(s.message().find(strCat("rank ", silent, " not heard from within 500 ms")),
              std::string::npos)
        << s.message();
    EXPECT_EQ(t->barrier().code(), StatusCode::kDeadlineExceeded);
  }
  MPI_Barrier(MPI_COMM_WORLD);  // the silent rank waits here for the others' verdict
}

// MPI's collectives do not say whom they wait for: the ranks that give up answer a roll call, and
// the one that does not answer is named, for the float allreduce (recursive doubling under 64 KB
// or 4 ranks, where a partner may wait for the silent rank too; MPI_Iallreduce for the 40000
// values at 4 ranks and more) and the barrier.
TEST(MpiTransport, ASilentRankIsNamedInACollectiveByTheRollCall) {
  for (const size_t values : {size_t{1000}, size_t{40000}, size_t{0}}) {
    const std::string op = values > 0 ? "allreduce" : "barrier";
    auto t = world();
    const int p = t->size(), me = t->rank(), silent = 1 % p;
    t->setTimeout(std::chrono::milliseconds(400));
    if (me != silent) {
      std::vector<float> data(values, 1.0f);
      const Status s = values == 0 ? t->barrier() : t->allreduceSum(data);
      EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << op << ": " << s.toString();
      EXPECT_NE(s.message().find(strCat(op, " on rank ", me)), std::string::npos) << s.message();
      // Every other rank answered: only the silent one is named.
      EXPECT_NE(s.message().find(strCat(": rank ", silent, " not heard from (no answer to a roll call")),
                std::string::npos)
          << s.message();
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

TEST(MpiCommunicator, EveryAlgorithmWithinTheBoundAndIdenticalOnAllRanks) {
  auto t = world();
  const int p = t->size();
  for (Algorithm algorithm : {Algorithm::kAllgather, Algorithm::kSra, Algorithm::kUncompressed}) {
    for (Layout layout : {Layout::kSeed, Layout::kCompact}) {
      for (int bits : {2, 4, 8}) {
        for (int64_t n :
             {int64_t{0}, int64_t{1}, int64_t{511}, int64_t{513}, int64_t{1001}, int64_t{200000}}) {
          CommunicatorOptions o;
          o.codec = strCat("qsgd:bits=", bits, ",bucket=512,norm=max,layout=", layoutName(layout));
          o.algorithm = algorithm;
          o.minCompressNumel = algorithm == Algorithm::kUncompressed ? (int64_t{1} << 40) : 0;
          o.chunkNumel = 70000;
          auto comm = Communicator::create(*t, o);
          ASSERT_TRUE(comm.isOk()) << comm.status().toString();
          std::vector<float> data = testing::inputOf(t->rank(), n);
          ASSERT_TRUE((*comm)->allreduceMean(data, "w").isOk());
          const std::string what = strCat(algorithmName(algorithm), " ", layoutName(layout),
                                          " q=", bits, " n=", n, " P=", p);
          EXPECT_TRUE(sameOnEveryRank(data)) << what;
          const int64_t bad = testing::firstOutOfBound(
              data, p, algorithm == Algorithm::kUncompressed ? 16 : bits, algorithm);
          EXPECT_EQ(bad, -1) << what << ": value " << bad << " leaves the bound";
        }
      }
    }
  }
}

TEST(MpiTransport, SplitAndHostsFollowMpi) {
  auto t = world();
  const int p = t->size(), me = t->rank();
  // Hosts agree with Open MPI's own count of ranks per node (one machine in mpi_np*, emulated
  // hosts in the cluster tests).
  Result<std::vector<int>> hosts = t->hostOfRanks();
  ASSERT_TRUE(hosts.isOk()) << hosts.status().toString();
  EXPECT_EQ((*hosts)[0], 0);
  const char* localSize = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const char* localRank = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (localSize != nullptr && localRank != nullptr) {
    const auto mine = std::count(hosts->begin(), hosts->end(), (*hosts)[me]);
    EXPECT_EQ(mine, std::atoi(localSize));
    EXPECT_EQ(std::count(hosts->begin(), hosts->begin() + me, (*hosts)[me]), std::atoi(localRank));
  }
  // Even and odd ranks, reversed by key; the last rank of an odd world sits out.
  const int color = (p % 2 == 1 && me == p - 1) ? -1 : me % 2;
  Result<std::unique_ptr<transport::Transport>> sub = t->split(color, -me);
  ASSERT_TRUE(sub.isOk()) << sub.status().toString();
  if (color < 0) {
    EXPECT_EQ(*sub, nullptr);
    return;
  }
  const int members = (p - (p % 2)) / 2;
  ASSERT_EQ((*sub)->size(), members);
  EXPECT_EQ((*sub)->rank(), members - 1 - me / 2);
  std::vector<float> x = {1.0f};
  ASSERT_TRUE((*sub)->allreduceSum(x).isOk());
  EXPECT_EQ(x[0], float(members));
}

// Hosts forced by ranksPerHost (CI has one machine): every grouping the world size allows.
TEST(MpiCommunicator, HierarchicalOverForcedHostGroupings) {
  auto t = world();
  const int p = t->size();
  for (int perHost = 1; perHost <= p; ++perHost) {
    for (bool feedback : {false, true}) {
      for (int64_t n : {int64_t{0}, int64_t{3}, int64_t{1001}, int64_t{200000}}) {
        CommunicatorOptions o;
        o.codec = "qsgd:bits=4,bucket=512,norm=max,layout=compact";
        o.algorithm = Algorithm::kHierarchical;
        o.minCompressNumel = 0;
        o.chunkNumel = 70000;
        o.ranksPerHost = perHost;
        o.errorFeedback = feedback;
        auto comm = Communicator::create(*t, o);
        ASSERT_TRUE(comm.isOk()) << comm.status().toString();
        const std::string what = strCat((*comm)->layout().describe(), " n=", n,
                                        feedback ? " with feedback" : "");
        for (int step = 0; step < 2; ++step) {
          std::vector<float> data = testing::inputOf(t->rank(), n);
          ASSERT_TRUE((*comm)->allreduceMean(data, "w").isOk()) << what;
          EXPECT_TRUE(sameOnEveryRank(data)) << what;
          if (step == 0) {
            const bool oneHost = perHost >= p;
            const int64_t bad =
                testing::firstOutOfBound(data, p, oneHost ? 16 : 4, Algorithm::kSra);
            EXPECT_EQ(bad, -1) << what << ": value " << bad << " leaves the bound";
          }
        }
      }
    }
  }
}

TEST(MpiCommunicator, AutoMeasuresAndEveryRankChoosesTheSame) {
  auto t = world();
  CommunicatorOptions o;  // auto
  o.minCompressNumel = 0;
  o.ranksPerHost = std::max(1, t->size() / 2);
  auto comm = Communicator::create(*t, o);
  ASSERT_TRUE(comm.isOk()) << comm.status().toString();
  ASSERT_NE((*comm)->costParameters(), nullptr);
  for (int64_t n : {int64_t{100}, int64_t{1} << 16, int64_t{1} << 20}) {
    std::vector<float> data = testing::inputOf(t->rank(), n);
    ASSERT_TRUE((*comm)->allreduceMean(data, "w").isOk());
    EXPECT_TRUE(sameOnEveryRank(data)) << n;
    uint64_t chosen = static_cast<uint64_t>((*comm)->stats().lastAlgorithm), lo = chosen,
             hi = chosen;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    EXPECT_EQ(lo, hi) << "ranks chose different algorithms for " << n << " values";
  }
}

TEST(MpiCommunicator, EveryQuantizerCodecWorksAndAgreesOnAllRanks) {
  // The block quantizers through both compressed schedules: identical results on every rank and
  // within the codec's step of the exact mean (scaled by the inputs' range; sra adds the owner's
  // re-quantization). Percentile clipping moves outliers by more than a step, so it is held to
  // its mean error instead.
  auto t = world();
  const int p = t->size();
  for (const char* spec : {"linear:bits=8", "linear:bits=4,mode=asym,block=256",
                           "percentile:bits=8,block=1024,p=99.9", "dynamic", "dynamic:block=64",
                           "rowwise:bits=6,block=512", "fp16", "bf16"}) {
    for (Algorithm algorithm : {Algorithm::kAllgather, Algorithm::kSra}) {
      for (int64_t n : {int64_t{1}, int64_t{1001}, int64_t{70001}}) {
        CommunicatorOptions o;
        o.codec = spec;
        o.algorithm = algorithm;
        o.minCompressNumel = 0;
        o.chunkNumel = 40000;
        auto comm = Communicator::create(*t, o);
        ASSERT_TRUE(comm.isOk()) << comm.status().toString();
        std::vector<float> data = testing::inputOf(t->rank(), n);
        ASSERT_TRUE((*comm)->allreduceMean(data, "w").isOk()) << spec;
        const std::string what = strCat(spec, " ", algorithmName(algorithm), " n=", n, " P=", p);
        EXPECT_TRUE(sameOnEveryRank(data)) << what;
        double inputMax = 0.0, meanMax = 0.0;
        for (int r = 0; r < p; ++r) {
          for (float x : testing::inputOf(r, n)) inputMax = std::max(inputMax, double(std::fabs(x)));
        }
        const std::vector<double> exact = testing::exactMean(p, n);
        for (double e : exact) meanMax = std::max(meanMax, std::fabs(e));
        const double step = codecStepBound(*parseAnyCodecSpec(spec));
        double worst = 0.0, total = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          const double d = std::fabs(double(data[i]) - exact[i]);
          worst = std::max(worst, d);
          total += d;
        }
        if (std::string(spec).starts_with("percentile")) {
          EXPECT_LE(total / double(n), step * inputMax) << what;
        } else {
          const double bound = step * inputMax +
                               (algorithm == Algorithm::kSra ? step * meanMax : 0.0) + 1e-6;
          EXPECT_LE(worst, bound) << what;
        }
      }
    }
  }
}

TEST(MpiCommunicator, MismatchedSizesAreAnErrorOnEveryRank) {
  auto t = world();
  auto comm = Communicator::create(*t, CommunicatorOptions{});
  ASSERT_TRUE(comm.isOk());
  std::vector<float> data(t->rank() == 1 ? 4000 : 5000, 1.0f);
  const Status s = (*comm)->allreduceMean(data, "fc.weight");
  EXPECT_EQ(s.message(), strCat("allreduceMean: rank 1 has tensor 'fc.weight' of 4000 values but "
                                "rank 0 has tensor 'fc.weight' of 5000 values (seen from rank ",
                                t->rank(), ")"));
  // The communicator stays usable after the refused call.
  std::vector<float> ok(5000, 2.0f);
  EXPECT_TRUE((*comm)->allreduceMean(ok, "fc.weight").isOk());
  EXPECT_EQ(ok[0], 2.0f);
}

TEST(MpiCommunicator, MismatchedCodecSettingsAreAnErrorOnEveryRank) {
  auto t = world();
  CommunicatorOptions o;
  o.codec = t->rank() == t->size() - 1 ? "qsgd:bits=2,bucket=512" : "qsgd:bits=4,bucket=512";
  const Status s = Communicator::create(*t, o).status();
  EXPECT_NE(s.message().find(strCat("configuration differs between ranks: rank ", t->size() - 1,
                                    " has 'qsgd:bits=2")),
            std::string::npos)
      << s.message();
}

TEST(MpiCommunicator, NanOnOneRankReachesEveryRank) {
  auto t = world();
  for (Algorithm algorithm : {Algorithm::kAllgather, Algorithm::kSra, Algorithm::kUncompressed}) {
    CommunicatorOptions o;
    o.algorithm = algorithm;
    o.minCompressNumel = algorithm == Algorithm::kUncompressed ? (int64_t{1} << 40) : 0;
    auto comm = Communicator::create(*t, o);
    ASSERT_TRUE(comm.isOk());
    std::vector<float> data(10000, 1.0f);
    if (t->rank() == 0) data[7777] = INFINITY;
    ASSERT_TRUE((*comm)->allreduceMean(data).isOk());
    EXPECT_FALSE(std::isfinite(data[7777])) << algorithmName(algorithm);
    EXPECT_TRUE(std::isfinite(data[100])) << algorithmName(algorithm);
  }
}

}  // namespace
}  // namespace qcomm

namespace qcomm {
namespace {

TEST(MpiCommunicator, AsynchronousAllreduceOverlapsWithOtherWork) {
  auto t = world();
  int provided = 0;
  MPI_Query_thread(&provided);
  ASSERT_GE(provided, MPI_THREAD_SERIALIZED) << "mpi_main initializes MPI_THREAD_MULTIPLE";
  CommunicatorOptions o;
  o.minCompressNumel = 0;
  auto comm = Communicator::create(*t, o);
  ASSERT_TRUE(comm.isOk());
  std::vector<float> a = testing::inputOf(t->rank(), 300000),
                     b = testing::inputOf(t->rank(), 5000, 1);
  auto first = (*comm)->allreduceMeanAsync(a, "a");
  auto second = (*comm)->allreduceMeanAsync(b, "b");
  ASSERT_TRUE(first.isOk() && second.isOk());
  double busy = 0;  // "backward" of the next layer while the gradients travel
  for (int i = 0; i < 1000000; ++i) busy += std::sqrt(double(i));
  EXPECT_GT(busy, 0);
  EXPECT_TRUE(first->wait().isOk());
  EXPECT_TRUE(second->wait().isOk());
  EXPECT_TRUE(sameOnEveryRank(a));
  EXPECT_TRUE(sameOnEveryRank(b));
  EXPECT_EQ(testing::firstOutOfBound(a, t->size(), 4, Algorithm::kSra), -1);
}

}  // namespace
}  // namespace qcomm
