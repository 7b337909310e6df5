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

Status allreduceSra(ScheduleContext& ctx, std::span<const float> input, std::span<float> output) {
  const int64_t n = static_cast<int64_t>(input.size());
  const int p = ctx.transport.size();
  const int me = ctx.transport.rank();
  // Slot::bounds: part j is [bounds[j], bounds[j+1]) within the chunk.
  Workspace& w = *ctx.workspace;
  Workspace::Slot* slots = w.slots;
  EncodedTensor& scratch = w.scratch;
  std::vector<uint8_t>& message = w.message;
  std::vector<float>& decoded = w.decoded;
  std::vector<float>& mean = w.mean;

  auto start = [&](int64_t c, int64_t begin, int64_t end) -> Status {
    Workspace::Slot& s = slots[c % 2];
    s.begin = begin;
    s.end = end;
    const int64_t m = s.end - s.begin;
    s.bounds.resize(p + 1);
    for (int j = 0; j <= p; ++j) s.bounds[j] = m * j / p;
    s.send.clear();
    s.sendCounts.assign(p, 0);
    for (int j = 0; j < p; ++j) {
      const auto part = input.subspan(s.begin + s.bounds[j], s.bounds[j + 1] - s.bounds[j]);
      QCOMM_RETURN_IF_ERROR(encodeMessage(ctx, part, me, ctx.tensorId, &scratch, &message));
      s.sendCounts[j] = message.size();
      s.send.insert(s.send.end(), message.begin(), message.end());
      if (!ctx.residual.empty()) {  // what part j lost on the way: input - D(Q(input))
        decoded.resize(part.size());
        QCOMM_RETURN_IF_ERROR(qsgdDecode(scratch, decoded, ctx.executor));
        for (size_t i = 0; i < part.size(); ++i) {
          ctx.residual[s.begin + s.bounds[j] + i] = part[i] - decoded[i];
        }
      }
    }
    // Every rank sends this rank a message about part `me`, all of the same size.
    s.recvCounts.assign(p, s.sendCounts[me]);
    s.recv.resize(transport::total(s.recvCounts));
    ctx.stats->bytesSent += transport::total(s.sendCounts) - s.sendCounts[me];
    ctx.stats->bytesReceived += s.recv.size() - s.sendCounts[me];
    QCOMM_ASSIGN_OR_RETURN(s.request,
                           ctx.transport.ialltoallv(s.send, s.sendCounts, s.recv, s.recvCounts));
    return Status::ok();
  };

  auto finish = [&](int64_t c) -> Status {
    Workspace::Slot& s = slots[c % 2];
    QCOMM_RETURN_IF_ERROR(s.request->wait());
    // Reduce part `me`: decode the P codes and average in rank order.
    const int64_t mine = s.bounds[me + 1] - s.bounds[me];
    mean.resize(mine);
    QCOMM_RETURN_IF_ERROR(decodeMeanMessages(ctx, s.recv, s.recvCounts[me], p, mean, {}));
    const int64_t ownerBegin = s.begin + s.bounds[me];
    if (!ctx.ownerResidual.empty()) {
      for (int64_t i = 0; i < mine; ++i) mean[i] += ctx.ownerResidual[ownerBegin + i];
    }
    QCOMM_RETURN_IF_ERROR(
        encodeMessage(ctx, mean, me, ctx.tensorId ^ kOwnerStream, &scratch, &message));
    // Gather every owner's re-encoded mean; message sizes follow from the part sizes.
    std::vector<size_t>& counts = w.counts;
    counts.resize(p);
    for (int r = 0; r < p; ++r) {
      QCOMM_ASSIGN_OR_RETURN(counts[r], messageSize(ctx, s.bounds[r + 1] - s.bounds[r]));
    }
    std::vector<uint8_t>& gathered = w.gathered;
    gathered.resize(transport::total(counts));
    ctx.stats->bytesSent += message.size() * (p - 1);
    ctx.stats->bytesReceived += gathered.size() - message.size();
    QCOMM_RETURN_IF_ERROR(ctx.transport.allgatherv(message, gathered, counts));
    const std::vector<size_t> offsets = transport::displacements(counts);
    for (int r = 0; r < p; ++r) {
      const auto part = output.subspan(s.begin + s.bounds[r], s.bounds[r + 1] - s.bounds[r]);
      QCOMM_RETURN_IF_ERROR(decodeMessage(
          ctx, std::span<const uint8_t>(gathered).subspan(offsets[r], counts[r]), part));
      if (r == me && !ctx.ownerResidual.empty()) {
        for (int64_t i = 0; i < mine; ++i) ctx.ownerResidual[ownerBegin + i] = mean[i] - part[i];
      }
    }
    return Status::ok();
  };

  return runPipelined(ctx, n, start, finish);
}

}  // namespace qcomm::collectives
