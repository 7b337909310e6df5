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

}  // namespace qcomm::testing
