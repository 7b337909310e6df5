#include "qcomm/executor.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "qcomm/env.h"

namespace qcomm {

struct Executor::Pool {
  std::mutex jobMutex;  // one parallelFor at a time; concurrent callers queue here
  std::mutex mutex;
  std::condition_variable wake;
  std::condition_variable done;
  std::vector<std::thread> threads;
  // The job in flight: pieces are claimed through `next`.
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;
  int64_t pieceSize = 0;
  int64_t pieces = 0;
  std::atomic<int64_t> next{0};
  int busy = 0;
  uint64_t generation = 0;
  bool stop = false;

  void runPieces() {
    for (int64_t piece = next.fetch_add(1); piece < pieces; piece = next.fetch_add(1)) {
      const int64_t begin = piece * pieceSize;
      (*fn)(begin, std::min(n, begin + pieceSize));
    }
  }

  void workerLoop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex);
    while (true) {
      wake.wait(lock, [&] { return stop || generation != seen; });
      if (stop) return;
      seen = generation;
      lock.unlock();
      runPieces();
      lock.lock();
      if (--busy == 0) done.notify_all();
    }
  }
};

Executor::Executor(int numThreads) : numThreads_(std::max(1, numThreads)) {
  pool_ = std::make_unique<Pool>();
  for (int i = 1; i < numThreads_; ++i) {
    pool_->threads.emplace_back([pool = pool_.get()] { pool->workerLoop(); });
  }
}

Executor::~Executor() {
  {
    std::lock_guard<std::mutex> lock(pool_->mutex);
    pool_->stop = true;
  }
  pool_->wake.notify_all();
  for (std::thread& thread : pool_->threads) thread.join();
}

Result<std::unique_ptr<Executor>> Executor::fromEnvironment() {
  QCOMM_ASSIGN_OR_RETURN(int64_t threads, knobInt(Knob::kNumThreads, 0, 4096));
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  return std::make_unique<Executor>(static_cast<int>(threads));
}

void Executor::parallelFor(int64_t n, int64_t grain,
                           const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t maxPieces = (n + grain - 1) / grain;
  // A few pieces per thread balance uneven work without much claiming overhead.
  const int64_t pieces = std::min<int64_t>(maxPieces, int64_t{numThreads_} * 4);
  if (numThreads_ == 1 || pieces == 1) {
    fn(0, n);
    return;
  }
  Pool& pool = *pool_;
  std::lock_guard<std::mutex> job(pool.jobMutex);
  std::unique_lock<std::mutex> lock(pool.mutex);
  pool.fn = &fn;
  pool.n = n;
  pool.pieceSize = (n + pieces - 1) / pieces;
  pool.pieces = (n + pool.pieceSize - 1) / pool.pieceSize;
  pool.next.store(0);
  pool.busy = static_cast<int>(pool.threads.size());
  ++pool.generation;
  lock.unlock();
  pool.wake.notify_all();
  pool.runPieces();
  lock.lock();
  pool.done.wait(lock, [&] { return pool.busy == 0; });
  pool.fn = nullptr;
}

void parallelFor(Executor* executor, int64_t n, int64_t grain,
                 const std::function<void(int64_t, int64_t)>& fn) {
  if (executor != nullptr) {
    executor->parallelFor(n, grain, fn);
  } else if (n > 0) {
    fn(0, n);
  }
}

}  // namespace qcomm
