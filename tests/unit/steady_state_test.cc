// "Nothing is allocated per step after the first": a training loop calls allreduceMean on the same
// tensors every step; after the first steps have sized the workspace, a step allocates no buffer
// of a tensor's scale. Every allocation in this binary goes through the counting operator new
// below, which records those of at least kLargeBytes made while a step is measured.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include <functional>
#include <thread>

#include "qcomm/communicator.h"
#include "qcomm/local_transport.h"
#ifdef QCOMM_TEST_GLOO
#include "qcomm/gloo_transport.h"
#endif
#include "support/allreduce_expectations.h"

namespace {

// Tensor-scale: a chunk's message at 4 bits is ~40 KB here; control messages are far smaller.
constexpr size_t kLargeBytes = 4096;
std::atomic<bool> armed{false};
std::atomic<int64_t> largeAllocations{0};
std::atomic<int64_t> largestBytes{0};

void* countedNew(size_t bytes) {
  if (armed.load(std::memory_order_relaxed) && bytes >= kLargeBytes) {
    largeAllocations.fetch_add(1, std::memory_order_relaxed);
    int64_t seen = largestBytes.load(std::memory_order_relaxed);
    while (static_cast<int64_t>(bytes) > seen &&
           !largestBytes.compare_exchange_weak(seen, static_cast<int64_t>(bytes))) {
    }
  }
  if (void* p = std::malloc(bytes == 0 ? 1 : bytes)) return p;
  throw std::bad_alloc();
}

}  // namespace

void* operator new(size_t bytes) { return countedNew(bytes); }
void* operator new[](size_t bytes) { return countedNew(bytes); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace qcomm {
namespace {

using transport::spawn;
using transport::Transport;
using Spawner = std::function<std::vector<Status>(int, const std::function<Status(Transport&)>&,
                                                  std::vector<int>)>;

struct Case {
  const char* codec;
  Algorithm algorithm;
  bool errorFeedback;
  std::vector<int> hosts;  // host of each rank (hierarchical)
};

// Six steps of three tensors (one in several pipelined chunks with a shorter last one) on every
// case; steps 2-5 are measured. The ranks are threads of this process, so one window counts every
// rank's allocations.
void expectNoLargeAllocationInSteadySteps(const Spawner& spawner, const std::vector<Case>& cases,
                                          const std::string& transportName) {
  for (const Case& c : cases) {
    const int p = c.hosts.empty() ? 3 : static_cast<int>(c.hosts.size());
    const std::string what = strCat(transportName, ", ", c.codec, " ", algorithmName(c.algorithm),
                                    c.errorFeedback ? " with error feedback" : "");
    const std::vector<int64_t> sizes = {700001, 50000, 20000};
    const std::vector<Status> results = spawner(
        p,
        [&](Transport& t) -> Status {
          CommunicatorOptions o;
          o.codec = c.codec;
          o.algorithm = c.algorithm;
          o.errorFeedback = c.errorFeedback;
          o.minCompressNumel = 0;
          o.chunkNumel = 300000;
          QCOMM_ASSIGN_OR_RETURN(auto comm, Communicator::create(t, o));
          std::vector<std::vector<float>> tensors;
          for (int64_t n : sizes) tensors.push_back(testing::inputOf(t.rank(), n));
          for (int step = 0; step < 6; ++step) {
            if (step == 2 && t.rank() == 0) armed = true;
            QCOMM_RETURN_IF_ERROR(t.barrier());
            for (size_t i = 0; i < tensors.size(); ++i) {
              QCOMM_RETURN_IF_ERROR(comm->allreduceMean(tensors[i], strCat("t", i)));
            }
          }
          QCOMM_RETURN_IF_ERROR(t.barrier());
          if (t.rank() == 0) armed = false;
          return Status::ok();
        },
        c.hosts);
    armed = false;
    for (size_t r = 0; r < results.size(); ++r) {
      ASSERT_TRUE(results[r].isOk()) << what << " rank " << r << ": " << results[r].toString();
    }
    EXPECT_EQ(largeAllocations.load(), 0)
        << what << ": " << largeAllocations.load() << " allocations of >= " << kLargeBytes
        << " bytes in 4 steady steps, the largest " << largestBytes.load() << " bytes";
    largeAllocations = 0;
    largestBytes = 0;
  }
}

constexpr const char* kQsgd4 = "qsgd:bits=4,bucket=512,norm=max,layout=compact";

TEST(SteadyState, NoTensorSizedAllocationAfterTheFirstStepsLocal) {
  const std::vector<Case> cases = {
      {kQsgd4, Algorithm::kAllgather, true, {}},
      {kQsgd4, Algorithm::kSra, true, {}},
      {"qsgd:bits=2,bucket=512,norm=l2,layout=seed", Algorithm::kSra, false, {}},
      {kQsgd4, Algorithm::kHierarchical, true, {0, 0, 1, 1}},
      {kQsgd4, Algorithm::kUncompressed, false, {}},
      // The block quantizers' messages too (they allocated a tensor per message and the
      // decode-and-mean buffers per call: a 64 MB allgather 15x slower).
      {"linear:bits=8,block=512", Algorithm::kAllgather, true, {}},
      {"linear:bits=4,mode=asym,block=256", Algorithm::kSra, false, {}},
      {"rowwise:bits=4,block=1000", Algorithm::kSra, true, {}},
      {"percentile:bits=8,p=99.9,block=1024", Algorithm::kHierarchical, false, {0, 0, 1, 1}},
      {"bf16", Algorithm::kAllgather, false, {}},
  };
  expectNoLargeAllocationInSteadySteps(
      [](int p, const std::function<Status(Transport&)>& fn, std::vector<int> hosts) {
        return spawn(p, fn, std::move(hosts));
      },
      cases, "local");
}

#ifdef QCOMM_TEST_GLOO
// The DDP hook's transport: the same over Gloo's TCP pairs on loopback.
TEST(SteadyState, NoTensorSizedAllocationAfterTheFirstStepsGloo) {
  using transport::GlooOptions;
  using transport::GlooTransport;
  using transport::KeyValueStore;
  using transport::makeMemoryStore;
  const std::vector<Case> cases = {
      {kQsgd4, Algorithm::kAllgather, true, {}},
      {kQsgd4, Algorithm::kSra, true, {}},
  };
  expectNoLargeAllocationInSteadySteps(
      [](int p, const std::function<Status(Transport&)>& fn, std::vector<int>) {
        const std::shared_ptr<KeyValueStore> store = makeMemoryStore();
        std::vector<Status> results(p);
        std::vector<std::thread> threads;
        for (int r = 0; r < p; ++r) {
          threads.emplace_back([&, r] {
            GlooOptions o;
            o.hostname = "127.0.0.1";
            Result<std::unique_ptr<GlooTransport>> t = GlooTransport::create(store, r, p, o);
            results[r] = t.isOk() ? fn(**t) : t.status();
          });
        }
        for (std::thread& t : threads) t.join();
        return results;
      },
      cases, "gloo");
}
#endif

}  // namespace
}  // namespace qcomm
