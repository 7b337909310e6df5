// sra (scatter-reduce-allgather): a chunk is cut into P parts; part j of every rank goes to rank
// j (all-to-all), which decodes the P codes, averages them in rank order, re-encodes the mean and
// all-gathers it; every rank (the owner too) decodes the re-encoded parts, so all ranks end with
// identical values. Each rank receives about 2(P-1)/P of one code. Chunks are pipelined: chunk
// c+1's all-to-all is in flight while chunk c is reduced and gathered.
#include <algorithm>

#include "collectives/schedule.h"

namespace qcomm::collectives {
namespace {

// The re-encoded means use their own random stream.
constexpr uint32_t kOwnerStream = 0x80000000u;

}  // namespace

Status sraStart(ScheduleContext& ctx, Workspace::Slot& s, std::span<const float> in,
                std::span<float> residual) {
  const int p = ctx.transport.size();
  const int me = ctx.transport.rank();
  Workspace& w = *ctx.workspace;
  // Slot::bounds: part j is [bounds[j], bounds[j+1]) within the chunk.
  const int64_t m = static_cast<int64_t>(in.size());
  s.bounds.resize(p + 1);
  for (int j = 0; j <= p; ++j) s.bounds[j] = m * j / p;
  s.send.clear();
  s.sendCounts.assign(p, 0);
  for (int j = 0; j < p; ++j) {
    const auto part = in.subspan(s.bounds[j], s.bounds[j + 1] - s.bounds[j]);
    // Error feedback: what part j loses on the way, input - D(Q(input)), from the encoder.
    const std::span<float> lost =
        residual.empty() ? residual : residual.subspan(s.bounds[j], part.size());
    QCOMM_RETURN_IF_ERROR(encodeMessage(
        ctx, part, {ctx.tensorId, static_cast<uint32_t>(me), s.begin + s.bounds[j]}, &w.scratch,
        &w.message, lost));
    s.sendCounts[j] = w.message.size();
    s.send.insert(s.send.end(), w.message.begin(), w.message.end());
  }
  // Every rank sends this rank a message about part `me`, all of the same size.
  s.recvCounts.assign(p, s.sendCounts[me]);
  s.recv.resize(transport::total(s.recvCounts));
  ctx.stats->bytesSent += transport::total(s.sendCounts) - s.sendCounts[me];
  ctx.stats->bytesReceived += s.recv.size() - s.sendCounts[me];
  QCOMM_ASSIGN_OR_RETURN(s.request,
                         ctx.transport.ialltoallv(s.send, s.sendCounts, s.recv, s.recvCounts));
  return Status::ok();
}

Status sraFinish(ScheduleContext& ctx, Workspace::Slot& s, std::span<float> out,
                 std::span<float> ownerResidual) {
  const int p = ctx.transport.size();
  const int me = ctx.transport.rank();
  Workspace& w = *ctx.workspace;
  const uint32_t ownerStream = ctx.tensorId ^ kOwnerStream;
  QCOMM_RETURN_IF_ERROR(deferDataLoss(ctx, s.request->wait()));
  // Reduce part `me`: decode the P codes and average in rank order.
  const int64_t mine = s.bounds[me + 1] - s.bounds[me];
  const std::span<float> mean = firstOf(w.mean, mine);
  QCOMM_RETURN_IF_ERROR(decodeMeanMessages(ctx, s.recv, s.recvCounts[me], p, ctx.tensorId,
                                           s.begin + s.bounds[me], mean, {}));
  const std::span<float> owner =
      ownerResidual.empty() ? std::span<float>() : ownerResidual.subspan(s.bounds[me], mine);
  if (!owner.empty()) {
    for (int64_t i = 0; i < mine; ++i) mean[i] += owner[i];
  }
  QCOMM_RETURN_IF_ERROR(
      encodeMessage(ctx, mean, {ownerStream, static_cast<uint32_t>(me), s.begin + s.bounds[me]},
                    &w.scratch, &w.message));
  // Gather every owner's re-encoded mean; message sizes follow from the part sizes.
  std::vector<size_t>& counts = w.counts;
  counts.resize(p);
  for (int r = 0; r < p; ++r) {
    QCOMM_ASSIGN_OR_RETURN(counts[r], messageSize(ctx, s.bounds[r + 1] - s.bounds[r]));
  }
  const std::span<uint8_t> gathered = firstOf(w.gathered, transport::total(counts));
  ctx.stats->bytesSent += w.message.size() * (p - 1);
  ctx.stats->bytesReceived += gathered.size() - w.message.size();
  QCOMM_RETURN_IF_ERROR(deferDataLoss(ctx, ctx.transport.allgatherv(w.message, gathered, counts)));
  const std::vector<size_t> offsets = transport::displacements(counts);
  for (int r = 0; r < p; ++r) {
    const auto part = out.subspan(s.bounds[r], s.bounds[r + 1] - s.bounds[r]);
    QCOMM_RETURN_IF_ERROR(
        decodeMessage(ctx, std::span<const uint8_t>(gathered).subspan(offsets[r], counts[r]),
                      {ownerStream, static_cast<uint32_t>(r), s.begin + s.bounds[r]}, part));
    if (r == me && !owner.empty()) {
      for (int64_t i = 0; i < mine; ++i) owner[i] = mean[i] - part[i];
    }
  }
  return Status::ok();
}

Status allreduceSra(ScheduleContext& ctx, std::span<const float> input, std::span<float> output) {
  Workspace::Slot* slots = ctx.workspace->slots;
  auto chunkOf = [](std::span<float> v, const Workspace::Slot& s) {
    return v.empty() ? v : v.subspan(s.begin, s.end - s.begin);
  };
  auto start = [&](int64_t c, int64_t begin, int64_t end) -> Status {
    Workspace::Slot& s = slots[c % 2];
    s.begin = begin;
    s.end = end;
    return sraStart(ctx, s, input.subspan(begin, end - begin), chunkOf(ctx.residual, s));
  };
  auto finish = [&](int64_t c) -> Status {
    Workspace::Slot& s = slots[c % 2];
    return sraFinish(ctx, s, chunkOf(output, s), chunkOf(ctx.ownerResidual, s));
  };
  return runPipelined(ctx, static_cast<int64_t>(input.size()), start, finish);
}

}  // namespace qcomm::collectives
