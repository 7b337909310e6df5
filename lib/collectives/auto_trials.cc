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
  // Then the median of the warm calls: not the fastest, which would favour a call that caught a
  // burst (shaped links let a few calls' worth through at full speed after quieter ones), and not
  // the mean, which one call slowed by a neighbour on a shared core would sway.
  const int n = std::min(t->runs[index] - 1, kRuns - 1);
  std::array<double, kRuns - 1> warm = t->warm[index];
  std::sort(warm.begin(), warm.begin() + n);
  return n % 2 ? warm[n / 2] : 0.5 * (warm[n / 2 - 1] + warm[n / 2]);
}

AutoTrials::Choice AutoTrials::choose(int64_t count, const AlgorithmCosts& predicted,
                                      bool hierarchical) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = sizes_.find(count);
  if (found == sizes_.end() && sizes_.size() >= kMaxSizes) {
    return {fastestAlgorithm(predicted, hierarchical), false};
  }
  const Times* t = found == sizes_.end() ? nullptr : &found->second;
  auto allowed = [&](int i) { return kOrder[i] != Algorithm::kHierarchical || hierarchical; };
  if (t != nullptr && t->settled >= 0 && allowed(t->settled)) return {kOrder[t->settled], false};
  std::array<double, kOrder.size()> e{};
  int best = -1;
  for (int i = 0; i < static_cast<int>(kOrder.size()); ++i) {
    if (!allowed(i)) continue;
    e[i] = estimate(t, i, predicted.of(kOrder[i]));
    if (best < 0 || e[i] < e[best]) best = i;  // ties: the simpler
  }
  // A contender: an algorithm whose fastest warm call is within kMargin of the best estimate, or
  // one the model lets in (prediction / kTrust within kMargin) that has not had kWarmToDrop warm
  // calls yet: one slow call alone does not put an algorithm out of the race (on 2 x 2 emulated
  // hosts, 16 KB uncompressed calls took 206 us at the median and 691 us on average).
  const double cutoff = e[best] * (1.0 + kMargin);
  auto contender = [&](int i) {
    if (t == nullptr || t->runs[i] <= 1) return e[i] <= cutoff;
    if (t->runs[i] <= kWarmToDrop && predicted.of(kOrder[i]) / kTrust <= cutoff) return true;
    const int n = std::min(t->runs[i] - 1, kRuns - 1);
    return *std::min_element(t->warm[i].begin(), t->warm[i].begin() + n) <= cutoff;
  };
  // The least-run contender not yet run kRuns times, if any (ties: the smaller estimate, then
  // the simpler): contenders take turns, so a slow moment of the machine falls on all alike.
  // Every contender runs kRuns times, long calls too: medians decide, and on 4 ranks of one
  // machine (2 cores), where one 64 MB call in four or five took 1.5-5x the median, seven warm
  // calls each put hierarchical (49 ms in the benchmark's timed rounds) at 54 ms and sra (63) at
  // 50. Contenders are within kMargin of each other, so their trials cost little.
  int trial = -1;
  for (int i = 0; i < static_cast<int>(kOrder.size()); ++i) {
    if (!allowed(i) || !contender(i)) continue;
    const int runs = t == nullptr ? 0 : t->runs[i];
    if (runs >= kRuns) continue;
    const int trialRuns = trial < 0 ? 0 : (t == nullptr ? 0 : t->runs[trial]);
    if (trial < 0 || runs < trialRuns || (runs == trialRuns && e[i] < e[trial])) trial = i;
  }
  if (trial >= 0) return {kOrder[trial], true};
  // A second look before settling: an algorithm that dropped out after its first warm calls is
  // run until it has had 2 * kWarmToDrop warm ones, now that the contenders are timed; a fast
  // one is a contender again. A size's first calls come when a job is young and can all be
  // slow: at 4 KB on 4 ranks of one machine, allgather's two warm calls right after the
  // communicators were made took 130 and 150 us against hierarchical's 80-90 and put it out,
  // and the benchmark's timed rounds later measured allgather at 22 us, the fastest, and
  // hierarchical at 30.
  for (int i = 0; t != nullptr && i < static_cast<int>(kOrder.size()); ++i) {
    if (!allowed(i) || t->runs[i] < 2 || t->runs[i] > 2 * kWarmToDrop) continue;
    if (trial < 0 || t->runs[i] < t->runs[trial] ||
        (t->runs[i] == t->runs[trial] && e[i] < e[trial])) {
      trial = i;
    }
  }
  if (trial >= 0) return {kOrder[trial], true};
  if (t != nullptr) {
    t->settled = best;
    t->settledEstimate = e[best];
  }
  return {kOrder[best], false};
}

void AutoTrials::record(int64_t count, Algorithm algorithm, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!sizes_.contains(count) && sizes_.size() >= kMaxSizes) return;
  Times& t = sizes_[count];
  const int i = indexOf(algorithm);
  // A first call is not kept; nor calls past kRuns (trials stop there).
  if (t.runs[i] > 0 && t.runs[i] < kRuns) t.warm[i][t.runs[i] - 1] = seconds;
  ++t.runs[i];
  t.settled = -1;
  t.watchedCalls = 0;
}

void AutoTrials::recheck(Times& t) {
  // The trials start again as on the size's first calls, but every algorithm that ran is warm
  // already, so none throws a first call away. Older times are dropped, those of algorithms far
  // behind too: the machine that made them may have changed (a link that was slow when sra beat
  // allgather by 2x may be fast again, and allgather the faster).
  for (int& runs : t.runs) runs = std::min(runs, 1);
  t.settled = -1;
  t.settledCalls = 0;
  t.watchedCalls = 0;
}

bool AutoTrials::noteCall(int64_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = sizes_.find(count);
  if (found == sizes_.end()) return false;
  Times& t = found->second;
  // choose() settles a size when its trials end (every rank alike: the tables are the same);
  // calls before that are trials, counted by their runs.
  if (t.settled < 0) return false;
  if (++t.settledCalls < kRecheckEvery) return false;
  recheck(t);
  return true;
}

bool AutoTrials::watch(int64_t count, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = sizes_.find(count);
  if (found == sizes_.end() || found->second.settled < 0) return false;
  Times& t = found->second;
  if (t.runs[t.settled] < 2) return false;  // chosen by the model alone: nothing to compare with
  constexpr int kWindow = kRuns - 1;
  t.watched[t.watchedCalls++ % kWindow] = seconds;
  if (t.watchedCalls < kWindow) return false;
  // The median of the last kWindow settled calls against the chosen algorithm's trials: much
  // slower, and the choice may be stale (a link that slowed, a neighbour on the cores).
  std::array<double, kWindow> w = t.watched;
  std::nth_element(w.begin(), w.begin() + kWindow / 2, w.end());
  if (w[kWindow / 2] <= t.settledEstimate * kWatchSlower) return false;
  recheck(t);
  return true;
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
