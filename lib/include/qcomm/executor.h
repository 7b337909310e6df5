// A small fixed thread pool for the CPU codecs. It is owned by whoever encodes (a Communicator, the
// Python module, a benchmark) and passed explicitly; qcomm keeps no global pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "qcomm/status.h"

namespace qcomm {

class Executor {
 public:
  // numThreads >= 1 threads in all, the calling thread included.
  explicit Executor(int numThreads);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // An executor sized by QCOMM_NUM_THREADS (0 or unset: one thread per available core).
  static Result<std::unique_ptr<Executor>> fromEnvironment();

  int numThreads() const { return numThreads_; }

  // Runs fn(begin, end) on contiguous pieces covering [0, n), each at least `grain` long (except
  // the last), spread over the threads, and returns when all are done. Pieces never overlap, so
  // results do not depend on the thread count as long as fn writes only its own range.
  void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct Pool;
  int numThreads_;
  std::unique_ptr<Pool> pool_;
};

// Convenience: runs on `executor` when given, else inline on the calling thread.
void parallelFor(Executor* executor, int64_t n, int64_t grain,
                 const std::function<void(int64_t, int64_t)>& fn);

}  // namespace qcomm
