// Inputs and exact expectations shared by the local (threads) and mpirun allreduce tests: every
// rank can rebuild every other rank's input from (rank, n, salt), so each checks the result alone.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "qcomm/communicator.h"

namespace qcomm::testing {

inline std::vector<float> inputOf(int rank, int64_t n, uint32_t salt = 0) {
  std::mt19937 rng(1000 * rank + 7 + salt);
  std::normal_distribution<float> dist(0.5f * rank, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<double> exactMean(int worldSize, int64_t n, uint32_t salt = 0) {
  std::vector<double> mean(n, 0.0);
  for (int r = 0; r < worldSize; ++r) {
    const std::vector<float> x = inputOf(r, n, salt);
    for (int64_t i = 0; i < n; ++i) mean[i] += x[i] / double(worldSize);
  }
  return mean;
}

// Largest allowed |result - exact mean| for max-norm QSGD at `bits`: every rank's code is off by
// at most one step (max|x_r| / s); sra re-quantizes the mean, adding a step of its magnitude.
inline double quantizationBound(int worldSize, int64_t n, int bits, Algorithm algorithm,
                                uint32_t salt = 0) {
  const double s = (1 << bits) - 1;
  double steps = 0.0;
  for (int r = 0; r < worldSize; ++r) {
    double m = 0.0;
    for (float x : inputOf(r, n, salt)) m = std::max(m, double(std::fabs(x)));
    steps += m / s / worldSize;
  }
  double meanMax = 0.0;
  for (double e : exactMean(worldSize, n, salt)) meanMax = std::max(meanMax, std::fabs(e));
  return algorithm == Algorithm::kSra ? steps + (meanMax + steps) / s : steps;
}

// The first index where result leaves the bound, or -1.
inline int64_t firstOutOfBound(const std::vector<float>& result, int worldSize, int bits,
                               Algorithm algorithm, uint32_t salt = 0) {
  const int64_t n = static_cast<int64_t>(result.size());
  const std::vector<double> exact = exactMean(worldSize, n, salt);
  const double bound = quantizationBound(worldSize, n, bits, algorithm, salt) * (1 + 1e-5) + 1e-6;
  for (int64_t i = 0; i < n; ++i) {
    if (!(std::fabs(result[i] - exact[i]) <= bound)) return i;
  }
  return -1;
}

// Two tensors reduced blocking or asynchronously (waited on in reverse), then a blocking third
// that must wait for them; out = the three results, end to end. The same on every transport.
inline Status reduceTwoThenOne(transport::Transport& t, bool useAsync, std::vector<float>* out) {
  CommunicatorOptions o;
  o.minCompressNumel = 0;
  o.errorFeedback = true;
  o.algorithm = Algorithm::kSra;  // auto could choose differently in the two runs compared
  QCOMM_ASSIGN_OR_RETURN(auto comm, Communicator::create(t, o));
  std::vector<float> a = inputOf(t.rank(), 70000, 1);
  std::vector<float> b = inputOf(t.rank(), 3000, 2);
  if (useAsync) {
    QCOMM_ASSIGN_OR_RETURN(const PendingAllreduce first, comm->allreduceMeanAsync(a, "a"));
    QCOMM_ASSIGN_OR_RETURN(const PendingAllreduce second, comm->allreduceMeanAsync(b, "b"));
    QCOMM_RETURN_IF_ERROR(second.wait());
    QCOMM_RETURN_IF_ERROR(first.wait());
  } else {
    QCOMM_RETURN_IF_ERROR(comm->allreduceMean(a, "a"));
    QCOMM_RETURN_IF_ERROR(comm->allreduceMean(b, "b"));
  }
  // A blocking call after asynchronous ones waits for them and keeps the order.
  std::vector<float> c = inputOf(t.rank(), 600, 3);
  QCOMM_RETURN_IF_ERROR(comm->allreduceMean(c, "c"));
  *out = a;
  out->insert(out->end(), b.begin(), b.end());
  out->insert(out->end(), c.begin(), c.end());
  return Status::ok();
}

}  // namespace qcomm::testing
