// Where ranks run, and what each allreduce algorithm costs there: the pure functions behind the
// hierarchical algorithm and `auto` (docs/algorithms.md, "Hierarchical" and "How auto decides").
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qcomm/status.h"

namespace qcomm {

enum class Algorithm;

// The ranks grouped by host, seen from one rank.
struct HostLayout {
  int worldSize = 1;
  int rank = 0;
  int hosts = 1;               // H
  int host = 0;                // this rank's host (numbered by first rank)
  int localRank = 0;           // this rank among its host's ranks, in rank order
  std::vector<int> localSizes; // ranks on each host
  // Ranks 0..slices-1 of every host own one slice each in the hierarchical algorithm: the fewest
  // ranks any host has.
  int slices = 1;

  int localSize() const { return localSizes[host]; }
  int maxLocalSize() const;
  // Several hosts, and some host with several ranks: the hierarchical algorithm differs from flat.
  bool multiLevel() const { return hosts > 1 && maxLocalSize() > 1; }
  std::string describe() const;  // "2 hosts x {2, 2} ranks"
};

// The ranks per host a communicator groups by: `option` when > 0, else QCOMM_RANKS_PER_HOST, else
// 0 (ask where the ranks run).
Result<int> ranksPerHostSetting(int option);
// The layout of `hostOfRank` seen from `rank`, once every rank is known to see the same grouping
// (QCOMM_RANKS_PER_HOST set on some ranks only would make their splits disagree): `gather`
// all-gathers one number per rank over the communicator's transport.
Result<HostLayout> agreedHostLayout(
    std::span<const int> hostOfRank, int rank,
    const std::function<Result<std::vector<uint64_t>>(uint64_t)>& gather);

// How a communicator groups its ranks: blocks of ranksPerHostSetting(option) ranks, or, when that
// is 0, `whereRanksRun()` (host numbers of every rank, collective); agreed as above.
Result<HostLayout> groupRanksByHost(
    int option, int worldSize, int rank,
    const std::function<Result<std::vector<int>>()>& whereRanksRun,
    const std::function<Result<std::vector<uint64_t>>(uint64_t)>& gather);

// An error naming `what` and the layout unless every host has the same number of ranks.
Status checkUniformHosts(const HostLayout& layout, std::string_view what);

// hostOfRank[r]: the host of rank r (any numbering: ranks with equal numbers share a host).
Result<HostLayout> makeHostLayout(std::span<const int> hostOfRank, int rank);
// Ranks [0, K) on host 0, [K, 2K) on host 1, ...: the grouping forced by ranksPerHost = K.
std::vector<int> blockHosts(int worldSize, int ranksPerHost);

// The hierarchical algorithm's slices (CPU and GPU alike): slice j of s of a chunk of m values
// starts at sliceStart(m, j, s) and ends at sliceStart(m, j + 1, s).
inline int64_t sliceStart(int64_t m, int j, int slices) { return m * j / slices; }
// Across several hosts the hierarchical algorithm pipelines chunks of at most this many values
// (CPU and GPU alike), whatever CommunicatorOptions::chunkNumel allows: a chunk's host sum,
// encoding and decoding then stay in a core's L2 cache while the previous chunk's codes cross
// hosts. On 2 emulated hosts x 2 ranks, 64 MB per rank, chunks of 256K values took 98-110 ms
// against 159-176 ms with chunks of 4M (docs/performance.md). On one host (nothing compressed)
// the chunks stay chunkNumel.
inline constexpr int64_t kHierarchicalChunkNumel = int64_t{1} << 18;
inline int64_t hierarchicalChunkNumel(int64_t chunkNumel, int hosts) {
  return hosts > 1 && chunkNumel > kHierarchicalChunkNumel ? kHierarchicalChunkNumel : chunkNumel;
}
// The random stream (tensor id) of slice j's cross-host group: each slice draws its own.
inline uint32_t sliceStream(uint32_t tensorId, int slice) {
  return tensorId ^ (0x9E3779B9u * static_cast<uint32_t>(slice + 1));
}

// A link: a message of b bytes takes latency + b * secondsPerByte.
struct LinkCost {
  double latency = 0.0;
  double secondsPerByte = 0.0;
  double time(double bytes) const { return latency + bytes * secondsPerByte; }
};

// What `auto` measures when a communicator is created (every rank ends with the same numbers).
struct CostParameters {
  double encodeSecondsPerValue = 0.0;  // the codec's encode, with this rank's executor
  double decodeSecondsPerValue = 0.0;  // decoding (and averaging) one received value
  double sumSecondsPerValue = 0.0;     // adding one float (the hierarchical reduce-scatter)
  double codecLatency = 0.0;           // fixed cost of one encode or decode pass, whatever its size
  double codeBytesPerValue = 0.5;      // wire bytes per value under the codec
  LinkCost intra;                      // between ranks of one host (per rank, all at once)
  LinkCost inter;                      // out of one host (its link, all its ranks together)
  LinkCost allreduce;                  // the transport's float allreduce over all ranks, per byte
};

// Every number of `c`, in a fixed order (agreement between ranks, checkpoints).
std::array<double*, 11> costFields(CostParameters& c);

// Predicted seconds of one allreduce of `count` floats under each algorithm.
struct AlgorithmCosts {
  double uncompressed = 0.0, allgather = 0.0, sra = 0.0, hierarchical = 0.0;
  double of(Algorithm algorithm) const;
};

AlgorithmCosts predictAllreduce(int64_t count, const HostLayout& layout,
                                const CostParameters& parameters);
// The fastest of the predicted algorithms (hierarchical only where `hierarchical` is allowed);
// ties go to the simpler one (uncompressed, allgather, sra, hierarchical).
Algorithm fastestAlgorithm(const AlgorithmCosts& costs, bool hierarchical);

// What `auto` learns from its own calls, per tensor size: the time each algorithm it ran took
// (the slowest rank's, which every rank records alike, so every rank holds the same table and
// makes the same choice). An algorithm not timed warm yet is estimated at its prediction /
// kTrust (its first call pays for first touches and tells nothing); after that, at the median of
// its later (warm) calls. The contenders are the algorithms whose fastest warm call is within
// kMargin of the smallest estimate (untimed ones: their estimate; the model's candidates stay
// until they have had kWarmToDrop warm calls); while one of them has run fewer than kRuns times,
// the call is a trial of the least-run contender (timed and recorded), so contenders are timed
// in turns, alike often. Then each algorithm that dropped out after its first warm calls gets a
// second look, up to 2 * kWarmToDrop warm calls in all (a fast one is a contender again), and
// the smallest estimate is the choice for that size. After kRecheckEvery more calls of a settled
// size (noteCall counts them) its trials start again, on fresh times only (no first call thrown
// away: the algorithms are warm), so that a machine or a link that drifts (a neighbour on the
// cores, another job on the link) is followed; sooner where the settled calls are timed (watch:
// the median of the last kRuns - 1 more than kWatchSlower times the chosen algorithm's trials).
// docs/algorithms.md, "How auto decides". Thread-safe (a worker thread runs asynchronous calls).
class AutoTrials {
 public:
  static constexpr int kRuns = 32;         // a first call (first touches), then 31 warm ones
  static constexpr double kTrust = 8.0;    // how far off the model may be
  static constexpr double kMargin = 0.3;   // how close a contender must be to be timed fully
  static constexpr int kWarmToDrop = 2;    // warm calls before the model's candidates drop out
  static_assert(kRuns > 1 + 2 * kWarmToDrop, "a second look ends before a contender's trials");
  static constexpr size_t kMaxSizes = 64;  // tensor sizes beyond these go by the model alone
  static constexpr int64_t kRecheckEvery = 2048;  // calls of a settled size before a re-check
  // How much slower than its trials the chosen algorithm's watched calls must be for a re-check
  // (their median against the trials'): above the drift of a busy machine's medians (on 2 x 2
  // emulated hosts of this project's 2-core machine, up to 1.33x between auto's trials and the
  // benchmark's timed rounds seconds later), so that noise seldom re-checks.
  static constexpr double kWatchSlower = 1.5;

  struct Choice {
    Algorithm algorithm;
    bool trial = false;  // time this call and record() it
  };
  // The algorithm for `count` values (hierarchical only where allowed).
  Choice choose(int64_t count, const AlgorithmCosts& predicted, bool hierarchical) const;
  // A trial of `algorithm` on `count` values took `seconds` (on the slowest rank).
  void record(int64_t count, Algorithm algorithm, double seconds);
  // One call of `count` values ran auto's choice (once per call, after choose(), on every rank
  // alike). True when this call ends a settled stretch of kRecheckEvery calls: the next calls
  // are trials again (a re-check).
  bool noteCall(int64_t count);
  // A settled call of `count` values (not a trial) took `seconds` on the slowest rank (every rank
  // alike). True when the last kRuns - 1 such calls' median is more than kWatchSlower times the
  // chosen algorithm's trials' median: the trials start again now (a re-check, as noteCall's).
  bool watch(int64_t count, double seconds);
  void clear();
  // The estimates the next call of `count` values goes by (for QCOMM_DEBUG and tests).
  AlgorithmCosts estimates(int64_t count, const AlgorithmCosts& predicted) const;

 private:
  struct Times {
    // By AlgorithmCosts' order: uncompressed ... hierarchical.
    std::array<std::array<double, kRuns - 1>, 4> warm{};  // the later trials' times
    std::array<int, 4> runs{};
    // The choice once the trials ended (an index into AlgorithmCosts' order), -1 before: calls
    // of a settled size skip the medians (four sorts of 31 times: 430 ns a call).
    mutable int settled = -1;
    mutable double settledEstimate = 0.0;  // the choice's median then, for watch()
    int64_t settledCalls = 0;  // calls since the trials last ended (noteCall)
    std::array<double, kRuns - 1> watched{};  // the latest settled calls' times (watch)
    int64_t watchedCalls = 0;                 // settled calls timed since the trials ended
  };
  static double estimate(const Times* t, int index, double predicted);
  static void recheck(Times& t);  // the trials start again, on fresh times
  mutable std::mutex mutex_;
  std::map<int64_t, Times> sizes_;
};

}  // namespace qcomm
