// hierarchical: compress only what crosses hosts. With H hosts and s = the fewest ranks any host
// has, the tensor is cut into s slices:
//   1. inside each host, an uncompressed reduce-scatter: local rank j (j < s) receives slice j of
//      every rank of its host and sums them in local-rank order;
//   2. across hosts, local ranks j of every host (one "cross" group per slice) run the compressed
//      allgather (2 hosts) or sra on their host sums; the mean of the H host sums, times H/P, is
//      the mean over all P ranks;
//   3. inside each host, an allgather of the s finished slices.
// Every rank of a host copies the same bytes, and the cross groups end bit-identical, so all
// ranks end bit-identical. One host: steps 1 and 3 only (nothing is compressed).
#include <algorithm>
#include <cstring>

#include "collectives/schedule.h"

namespace qcomm::collectives {
namespace {

// Each slice's cross group draws its own random stream.
uint32_t sliceStream(uint32_t tensorId, int slice) {
  return tensorId ^ (0x9E3779B9u * static_cast<uint32_t>(slice + 1));
}

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
  const int64_t n = static_cast<int64_t>(input.size());
  const int l = intra.size(), me = intra.rank(), s = layout.slices;
  const bool owner = me < s;
  auto sliceBegin = [&](int j) { return n * j / s; };
  const int64_t begin = owner ? sliceBegin(me) : 0, count = owner ? sliceBegin(me + 1) - begin : 0;
  Workspace& w = *ctx.workspace;

  // 1. Reduce-scatter inside the host: slice j goes to local rank j, straight from the input.
  Workspace::Hierarchy& hw = w.hierarchy;  // apart from what the cross schedule reuses
  std::vector<size_t>& sendCounts = hw.sendCounts;
  std::vector<size_t>& recvCounts = hw.recvCounts;
  sendCounts.assign(l, 0);
  for (int j = 0; j < s; ++j) sendCounts[j] = (sliceBegin(j + 1) - sliceBegin(j)) * sizeof(float);
  recvCounts.assign(l, count * sizeof(float));
  std::vector<float>& gathered = hw.gathered;
  gathered.resize(static_cast<size_t>(count) * l);
  QCOMM_RETURN_IF_ERROR(intra.alltoallv(bytesOf(input.first(sliceBegin(s))), sendCounts,
                                        bytesOf(std::span<float>(gathered)), recvCounts));
  ctx.stats->bytesSent += transport::total(sendCounts) - (owner ? sendCounts[me] : 0);
  ctx.stats->bytesReceived += gathered.size() * sizeof(float) - count * sizeof(float);

  std::vector<float>& hostSum = hw.hostSum;
  if (owner) {
    hostSum.assign(gathered.begin(), gathered.begin() + count);
    for (int r = 1; r < l; ++r) {  // local-rank order: the same sum on every host's owner
      const float* from = gathered.data() + static_cast<size_t>(r) * count;
      for (int64_t i = 0; i < count; ++i) hostSum[i] += from[i];
    }
  }

  // 2. Across hosts, on this rank's slice.
  std::vector<float>& result = hw.result;
  if (owner) {
    result.resize(count);
    const float scale = static_cast<float>(layout.hosts) / static_cast<float>(layout.worldSize);
    if (layout.hosts > 1) {
      const std::span<float> residual =
          ctx.residual.empty() ? std::span<float>() : ctx.residual.subspan(begin, count);
      if (!residual.empty()) {  // error feedback on what this rank compresses: its host sum
        for (int64_t i = 0; i < count; ++i) hostSum[i] += residual[i];
      }
      const Algorithm algorithm = crossHostAlgorithm(count, layout.hosts);
      const std::span<float> ownerResidual =
          algorithm == Algorithm::kSra && !ctx.ownerResidual.empty()
              ? ctx.ownerResidual.subspan(begin, count)
              : std::span<float>();
      ScheduleContext cross{*ctx.cross,   ctx.executor, ctx.codec,
                            ctx.wire,     ctx.seed,     sliceStream(ctx.tensorId, me),
                            ctx.step,     ctx.chunkNumel, residual,
                            ownerResidual, ctx.stats,   ctx.workspace};
      const uint64_t sentBefore = ctx.stats->bytesSent;
      QCOMM_RETURN_IF_ERROR(algorithm == Algorithm::kSra
                                ? allreduceSra(cross, hostSum, result)
                                : allreduceAllgather(cross, hostSum, result));
      ctx.stats->bytesSentAcrossHosts += ctx.stats->bytesSent - sentBefore;
    } else {
      std::copy(hostSum.begin(), hostSum.end(), result.begin());
      if (!ctx.residual.empty()) {  // nothing was compressed, nothing was lost
        std::fill(ctx.residual.begin() + begin, ctx.residual.begin() + begin + count, 0.0f);
      }
    }
    for (float& x : result) x *= scale;
  }

  // 3. Allgather inside the host: the owners' slices land in order in the output.
  std::vector<size_t>& counts = hw.counts;
  counts.assign(l, 0);
  for (int j = 0; j < s; ++j) counts[j] = sendCounts[j];
  QCOMM_RETURN_IF_ERROR(intra.allgatherv(bytesOf(std::span<const float>(result.data(), count)),
                                         bytesOf(output), counts));
  ctx.stats->bytesSent += count * sizeof(float) * (l - 1);
  ctx.stats->bytesReceived += output.size_bytes() - count * sizeof(float);
  return Status::ok();
}

}  // namespace qcomm::collectives
