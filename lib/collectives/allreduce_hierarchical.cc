// hierarchical: compress only what crosses hosts. With H hosts and s = the fewest ranks any host
// has, each chunk of the tensor is cut into s slices:
//   1. inside each host, an uncompressed reduce-scatter: local rank j (j < s) receives slice j of
//      every rank of its host and sums them in local-rank order;
//   2. across hosts, local ranks j of every host (one "cross" group per slice) run the compressed
//      allgather (2 hosts) or sra on their host sums; the mean of the H host sums, times H/P, is
//      the mean over all P ranks;
//   3. inside each host, an allgather of the s finished slices.
// Chunks are pipelined: chunk c+1's steps 1 and 2a (encode, start the transfer) run while chunk
// c's codes cross hosts. Every rank of a host copies the same bytes, and the cross groups end
// bit-identical, so all ranks end bit-identical. One host: steps 1 and 3 only (nothing is
// compressed).
#include <algorithm>
#include <cstring>

#include "collectives/schedule.h"

namespace qcomm::collectives {
namespace {

std::span<const uint8_t> bytesOf(std::span<const float> values) {
  return {reinterpret_cast<const uint8_t*>(values.data()), values.size_bytes()};
}

std::span<uint8_t> bytesOf(std::span<float> values) {
  return {reinterpret_cast<uint8_t*>(values.data()), values.size_bytes()};
}

}  // namespace

Algorithm crossHostAlgorithm(int64_t count, int hosts) {
  CommunicatorOptions options;
  options.minCompressNumel = 0;
  return selectAlgorithm(count, hosts, {}, options);
}

Status allreduceHierarchical(ScheduleContext& ctx, std::span<const float> input,
                             std::span<float> output) {
  if (ctx.layout == nullptr || (ctx.layout->hosts > 1 && !ctx.layout->multiLevel())) {
    return allreduceSra(ctx, input, output);  // one rank per host: flat sra
  }
  const HostLayout& layout = *ctx.layout;
  transport::Transport& intra = *ctx.intra;
  const int l = intra.size(), me = intra.rank(), s = layout.slices;
  const bool owner = me < s, across = layout.hosts > 1;
  const float scale = static_cast<float>(layout.hosts) / static_cast<float>(layout.worldSize);
  Workspace& w = *ctx.workspace;
  Workspace::Hierarchy& hw = w.hierarchy;  // apart from what the cross-host steps reuse
  // Chunks of the tensor (each owner's slice of a chunk is 1/s of it): across hosts of at most
  // kHierarchicalChunkNumel values, so that a chunk's steps run in cache.
  ScheduleContext chunked = ctx;
  chunked.chunkNumel = hierarchicalChunkNumel(ctx.chunkNumel, layout.hosts);
  const int64_t n = static_cast<int64_t>(input.size());
  // This rank's slice of chunk [begin, end): [begin + m*me/s, begin + m*(me+1)/s).
  auto sliceBegin = [&](int64_t m, int j) { return sliceStart(m, j, s); };
  const Algorithm algorithm =
      // (chosen by chunkNumel, not the capped chunk: more than 2 hosts keep sra's bytes)
      across ? crossHostAlgorithm(std::max<int64_t>(1, std::min(n, ctx.chunkNumel) / s),
                                  layout.hosts)
             : Algorithm::kUncompressed;
  // Ranks that own no slice have no cross-host transport (and never use this context's).
  ScheduleContext cross{across && ctx.cross != nullptr ? *ctx.cross : intra,
                        ctx.executor,
                        ctx.codec,
                        ctx.wire,
                        ctx.seed,
                        sliceStream(ctx.tensorId, me),
                        ctx.step,
                        ctx.chunkNumel,
                        {},
                        {},
                        ctx.stats,
                        ctx.workspace};
  cross.damaged = ctx.damaged;
  auto sliceOf = [&](std::span<float> v, const Workspace::Slot& slot) {
    const int64_t m = slot.end - slot.begin;
    const int64_t b = slot.begin + (owner ? sliceBegin(m, me) : 0);
    return v.empty() || !owner ? std::span<float>() : v.subspan(b, sliceBegin(m, me + 1) -
                                                                       sliceBegin(m, me));
  };

  // Steps 1 and 2a for chunk c: reduce-scatter inside the host, straight from the input; sum;
  // encode the host sum and start its transfer across hosts.
  auto start = [&](int64_t c, int64_t begin, int64_t end) -> Status {
    Workspace::Slot& slot = w.slots[c % 2];
    slot.begin = begin;
    slot.end = end;
    const int64_t m = end - begin;
    const int64_t count = owner ? sliceBegin(m, me + 1) - sliceBegin(m, me) : 0;
    hw.sendCounts.assign(l, 0);
    for (int j = 0; j < s; ++j) {
      hw.sendCounts[j] = (sliceBegin(m, j + 1) - sliceBegin(m, j)) * sizeof(float);
    }
    hw.recvCounts.assign(l, count * sizeof(float));
    hw.gathered.resize(static_cast<size_t>(count) * l);
    QCOMM_RETURN_IF_ERROR(deferDataLoss(
        ctx, intra.alltoallv(bytesOf(input.subspan(begin, m)), hw.sendCounts,
                             bytesOf(std::span<float>(hw.gathered)), hw.recvCounts)));
    ctx.stats->bytesSent += transport::total(hw.sendCounts) - (owner ? hw.sendCounts[me] : 0);
    ctx.stats->bytesReceived += (hw.gathered.size() - count) * sizeof(float);
    if (!owner) return Status::ok();
    std::vector<float>& hostSum = hw.hostSum[c % 2];
    hostSum.resize(count);
    // In local-rank order; this rank's own block read from the input (no copy of it first).
    const float* own = input.data() + begin + sliceBegin(m, me);
    auto block = [&](int r) {
      return r == me ? own : hw.gathered.data() + static_cast<size_t>(r) * count;
    };
    const float* first = block(0);
    const float* second = l > 1 ? block(1) : nullptr;
    if (second == nullptr) {
      std::copy(first, first + count, hostSum.begin());
    } else {
      for (int64_t i = 0; i < count; ++i) hostSum[i] = first[i] + second[i];
    }
    for (int r = 2; r < l; ++r) {
      const float* from = block(r);
      for (int64_t i = 0; i < count; ++i) hostSum[i] += from[i];
    }
    if (!across) return Status::ok();
    const std::span<float> residual = sliceOf(ctx.residual, slot);
    if (!residual.empty()) {  // error feedback on what this rank compresses: its host sum
      for (int64_t i = 0; i < count; ++i) hostSum[i] += residual[i];
    }
    const uint64_t sentBefore = ctx.stats->bytesSent;
    const Status started = algorithm == Algorithm::kSra
                               ? sraStart(cross, slot, hostSum, residual)
                               : allgatherStart(cross, slot, hostSum, residual);
    ctx.stats->bytesSentAcrossHosts += ctx.stats->bytesSent - sentBefore;
    return started;
  };

  // Steps 2b and 3 for chunk c: finish the exchange across hosts, scale, allgather in the host.
  auto finish = [&](int64_t c) -> Status {
    Workspace::Slot& slot = w.slots[c % 2];
    const int64_t m = slot.end - slot.begin;
    const int64_t count = owner ? sliceBegin(m, me + 1) - sliceBegin(m, me) : 0;
    std::vector<float>& result = hw.result;
    result.resize(count);
    if (owner) {
      std::vector<float>& hostSum = hw.hostSum[c % 2];
      const std::span<float> residual = sliceOf(ctx.residual, slot);
      if (across) {
        const uint64_t sentBefore = ctx.stats->bytesSent;
        QCOMM_RETURN_IF_ERROR(algorithm == Algorithm::kSra
                                  ? sraFinish(cross, slot, result, sliceOf(ctx.ownerResidual, slot))
                                  : allgatherFinish(cross, slot, result));
        ctx.stats->bytesSentAcrossHosts += ctx.stats->bytesSent - sentBefore;
      } else {
        std::copy(hostSum.begin(), hostSum.end(), result.begin());
        // Nothing was compressed, nothing was lost.
        if (!residual.empty()) std::fill(residual.begin(), residual.end(), 0.0f);
      }
      for (float& x : result) x *= scale;
    }
    // The owners' slices land in order in the output.
    hw.counts.assign(l, 0);
    for (int j = 0; j < s; ++j) {
      hw.counts[j] = (sliceBegin(m, j + 1) - sliceBegin(m, j)) * sizeof(float);
    }
    QCOMM_RETURN_IF_ERROR(deferDataLoss(
        ctx, intra.allgatherv(bytesOf(std::span<const float>(result)),
                              bytesOf(output.subspan(slot.begin, m)), hw.counts)));
    ctx.stats->bytesSent += count * sizeof(float) * (l - 1);
    ctx.stats->bytesReceived += (m - count) * sizeof(float);
    return Status::ok();
  };
  return runPipelined(chunked, n, start, finish);
}

}  // namespace qcomm::collectives
