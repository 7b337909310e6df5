// What `auto` learns from its own calls (docs/algorithms.md, "How auto decides").
#include <algorithm>

#include "qcomm/communicator.h"
#include "qcomm/topology.h"

namespace qcomm {
namespace {

constexpr std::array<Algorithm, 4> kOrder = {Algorithm::kUncompressed, Algorithm::kAllgather,
                                             Algorithm::kSra, Algorithm::kHierarchical};

int indexOf(Algorithm algorithm) {
  for (int i = 0; i < static_cast<int>(kOrder.size()); ++i) {
    if (kOrder[i] == algorithm) return i;
  }
  return 0;  // kAuto never runs; callers pass a concrete algorithm
}

}  // namespace

double AutoTrials::estimate(const Times* t, int index, double predicted) {
  // Not run warm yet: the model may be this far off (its probes last milliseconds, and ranks
  // that share cores wait for one in them), so an algorithm predicted up to kTrust times slower
  // than the best time seen still gets trials. A first call tells nothing: it pays for first
  // touches of buffers and lazily made connections (a hierarchical call of 16 MB on 4 ranks of
  // one host took 296 ms the first time, 12 ms after).
  if (t == nullptr || t->runs[index] <= 1) return predicted / kTrust;
  // Then the mean of the warm calls: the fastest alone would favour a call that caught a burst
  // (shaped links let a few calls' worth through at full speed after quieter ones).
  return t->warmSum[index] / (t->runs[index] - 1);
}

AutoTrials::Choice AutoTrials::choose(int64_t count, const AlgorithmCosts& predicted,
                                      bool hierarchical) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = sizes_.find(count);
  if (found == sizes_.end() && sizes_.size() >= kMaxSizes) {
    return {fastestAlgorithm(predicted, hierarchical), false};
  }
  const Times* t = found == sizes_.end() ? nullptr : &found->second;
  int best = 0;
  double bestEstimate = 0.0;
  for (int i = 0; i < static_cast<int>(kOrder.size()); ++i) {
    if (kOrder[i] == Algorithm::kHierarchical && !hierarchical) continue;
    const double e = estimate(t, i, predicted.of(kOrder[i]));
    if (i == 0 || e < bestEstimate) best = i, bestEstimate = e;  // ties: the simpler
  }
  return {kOrder[best], t == nullptr || t->runs[best] < kRuns};
}

void AutoTrials::record(int64_t count, Algorithm algorithm, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!sizes_.contains(count) && sizes_.size() >= kMaxSizes) return;
  Times& t = sizes_[count];
  const int i = indexOf(algorithm);
  if (t.runs[i] > 0) t.warmSum[i] += seconds;  // a first call is not kept
  ++t.runs[i];
}

void AutoTrials::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  sizes_.clear();
}

AlgorithmCosts AutoTrials::estimates(int64_t count, const AlgorithmCosts& predicted) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = sizes_.find(count);
  const Times* t = found == sizes_.end() ? nullptr : &found->second;
  AlgorithmCosts out;
  double* fields[] = {&out.uncompressed, &out.allgather, &out.sra, &out.hierarchical};
  for (int i = 0; i < static_cast<int>(kOrder.size()); ++i) {
    *fields[i] = estimate(t, i, predicted.of(kOrder[i]));
  }
  return out;
}

}  // namespace qcomm
