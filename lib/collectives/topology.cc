// Host layouts and the cost model of `auto` (docs/algorithms.md, "How auto decides").
#include "qcomm/topology.h"

#include <algorithm>
#include <map>

#include "codec/wire_bytes.h"
#include "qcomm/communicator.h"
#include "qcomm/env.h"

namespace qcomm {

int HostLayout::maxLocalSize() const {
  return *std::max_element(localSizes.begin(), localSizes.end());
}

std::string HostLayout::describe() const {
  std::string sizes;
  for (int l : localSizes) sizes += (sizes.empty() ? "" : ", ") + std::to_string(l);
  return strCat(hosts, hosts == 1 ? " host x {" : " hosts x {", sizes, "} ranks");
}

Result<HostLayout> makeHostLayout(std::span<const int> hostOfRank, int rank) {
  if (hostOfRank.empty() || rank < 0 || rank >= static_cast<int>(hostOfRank.size())) {
    return invalidArgument("host layout: rank ", rank, " of ", hostOfRank.size(), " ranks");
  }
  HostLayout layout;
  layout.worldSize = static_cast<int>(hostOfRank.size());
  layout.rank = rank;
  std::map<int, int> number;  // given host id -> 0, 1, ... by first rank
  for (int r = 0; r < layout.worldSize; ++r) {
    const auto [it, added] = number.emplace(hostOfRank[r], static_cast<int>(number.size()));
    if (added) layout.localSizes.push_back(0);
    if (r == rank) {
      layout.host = it->second;
      layout.localRank = layout.localSizes[it->second];
    }
    ++layout.localSizes[it->second];
  }
  layout.hosts = static_cast<int>(layout.localSizes.size());
  layout.slices = *std::min_element(layout.localSizes.begin(), layout.localSizes.end());
  return layout;
}

Result<int> ranksPerHostSetting(int option) {
  if (option > 0) return option;
  QCOMM_ASSIGN_OR_RETURN(const int64_t knob, knobInt(Knob::kRanksPerHost, 0, 1 << 20));
  return static_cast<int>(knob);
}

Result<HostLayout> agreedHostLayout(
    std::span<const int> hostOfRank, int rank,
    const std::function<Result<std::vector<uint64_t>>(uint64_t)>& gather) {
  QCOMM_ASSIGN_OR_RETURN(HostLayout layout, makeHostLayout(hostOfRank, rank));
  std::string grouping;
  for (int h : hostOfRank) grouping += strCat(h, ",");
  QCOMM_ASSIGN_OR_RETURN(const std::vector<uint64_t> seen,
                         gather(wire::fnv1a(wire::kFnvOffset, grouping.data(), grouping.size())));
  for (size_t r = 0; r < seen.size(); ++r) {
    if (seen[r] != seen[0]) {
      return failedPrecondition("rank ", r, " sees a different host grouping than rank 0 (seen "
                                "from rank ", rank, ": ", layout.describe(),
                                "); set QCOMM_RANKS_PER_HOST alike on every rank");
    }
  }
  return layout;
}

Result<HostLayout> groupRanksByHost(
    int option, int worldSize, int rank,
    const std::function<Result<std::vector<int>>()>& whereRanksRun,
    const std::function<Result<std::vector<uint64_t>>(uint64_t)>& gather) {
  QCOMM_ASSIGN_OR_RETURN(const int perHost, ranksPerHostSetting(option));
  std::vector<int> hosts;
  if (perHost > 0) {
    hosts = blockHosts(worldSize, perHost);
  } else {
    QCOMM_ASSIGN_OR_RETURN(hosts, whereRanksRun());
  }
  return agreedHostLayout(hosts, rank, gather);
}

Status checkUniformHosts(const HostLayout& layout, std::string_view what) {
  if (layout.maxLocalSize() == layout.slices) return Status::ok();
  return failedPrecondition(what, " needs the same number of ranks on every host; rank ",
                            layout.rank, " sees ", layout.describe());
}

std::vector<int> blockHosts(int worldSize, int ranksPerHost) {
  std::vector<int> hosts(worldSize);
  for (int r = 0; r < worldSize; ++r) hosts[r] = r / std::max(1, ranksPerHost);
  return hosts;
}

std::array<double*, 11> costFields(CostParameters& c) {
  return {&c.encodeSecondsPerValue, &c.decodeSecondsPerValue, &c.sumSecondsPerValue,
          &c.codecLatency,          &c.codeBytesPerValue,     &c.intra.latency,
          &c.intra.secondsPerByte,  &c.inter.latency,         &c.inter.secondsPerByte,
          &c.allreduce.latency,     &c.allreduce.secondsPerByte};
}

double AlgorithmCosts::of(Algorithm algorithm) const {
  switch (algorithm) {
    case Algorithm::kAllgather:
      return allgather;
    case Algorithm::kSra:
      return sra;
    case Algorithm::kHierarchical:
      return hierarchical;
    default:
      return uncompressed;
  }
}

AlgorithmCosts predictAllreduce(int64_t count, const HostLayout& layout,
                                const CostParameters& c) {
  // Only quantities every rank shares enter here, so every rank predicts the same.
  const double n = static_cast<double>(count);
  const double p = layout.worldSize, h = layout.hosts, s = layout.slices;
  const double l = layout.maxLocalSize();  // the busiest host's link decides
  const double code = n * c.codeBytesPerValue;  // one rank's whole tensor, encoded
  const double floats = 4.0 * n;
  // Inside a host is never slower than out of it: where the probe inside a host measured more
  // (ranks of emulated hosts that share two cores waited for one: 1.7-4 ms a small exchange
  // against 20-80 us in other runs, with 30-120 us across hosts), the link between hosts bounds it.
  LinkCost intra = c.intra;
  if (layout.hosts > 1 && c.inter.latency > 0.0) {
    intra.latency = std::min(intra.latency, c.inter.latency);
  }
  if (layout.hosts > 1 && c.inter.secondsPerByte > 0.0) {
    intra.secondsPerByte = std::min(intra.secondsPerByte, c.inter.secondsPerByte);
  }
  // A flat exchange in which each rank sends `perPeer` bytes to every other rank: the busiest host
  // sends l(p - l) of them over its link, and each rank (l - 1) to its neighbours.
  auto flatExchange = [&](double perPeer) {
    if (layout.hosts == 1) return intra.time((p - 1) * perPeer);
    return c.inter.time(l * (p - l) * perPeer) + (l > 1 ? intra.time((l - 1) * perPeer) : 0.0);
  };
  AlgorithmCosts out;
  out.uncompressed = c.allreduce.time(floats);
  const double passes2 = 2.0 * c.codecLatency, passes4 = 4.0 * c.codecLatency;
  out.allgather = passes2 + n * c.encodeSecondsPerValue + flatExchange(code) +
                  p * n * c.decodeSecondsPerValue;
  out.sra = passes4 + (n + n / p) * c.encodeSecondsPerValue + 2.0 * flatExchange(code / p) +
            2.0 * n * c.decodeSecondsPerValue;
  // Hierarchical: reduce-scatter inside hosts, the compressed algorithm across hosts on each
  // 1/s slice (the s groups share each host's link), allgather inside hosts.
  const double slice = n / s;
  double across = 0.0;
  if (layout.hosts > 1) {
    if (layout.hosts == 2) {  // allgather among the hosts
      across = passes2 + slice * c.encodeSecondsPerValue + c.inter.time((h - 1) * code) +
               h * slice * c.decodeSecondsPerValue;
    } else {  // sra among the hosts
      across = passes4 + (slice + slice / h) * c.encodeSecondsPerValue +
               2.0 * c.inter.time((h - 1) / h * code) + 2.0 * slice * c.decodeSecondsPerValue;
    }
  }
  out.hierarchical = intra.time(floats * (l - 1) / s) + l * slice * c.sumSecondsPerValue +
                     across + intra.time(floats);
  if (layout.hosts > 1 && !layout.multiLevel()) out.hierarchical = out.sra;  // flat sra then
  return out;
}

Algorithm fastestAlgorithm(const AlgorithmCosts& costs, bool hierarchical) {
  Algorithm best = Algorithm::kUncompressed;
  for (Algorithm a : {Algorithm::kAllgather, Algorithm::kSra, Algorithm::kHierarchical}) {
    if (a == Algorithm::kHierarchical && !hierarchical) continue;
    if (costs.of(a) < costs.of(best)) best = a;
  }
  return best;
}

}  // namespace qcomm
