// allgather: every rank encodes its chunk once, the codes are all-gathered, every rank decodes
// the P codes and averages them in rank order (so all ranks get bit-identical results). Chunks
// are pipelined: chunk c+1 is encoded while chunk c travels.
#include <algorithm>

#include "collectives/schedule.h"

namespace qcomm::collectives {

Status allgatherStart(ScheduleContext& ctx, Workspace::Slot& s, std::span<const float> in,
                      std::span<float> residual) {
  const int p = ctx.transport.size();
  QCOMM_RETURN_IF_ERROR(
      encodeMessage(ctx, in, {ctx.tensorId, static_cast<uint32_t>(ctx.transport.rank()), s.begin},
                    &s.encoded, &s.send, residual));
  s.recvCounts.assign(p, s.send.size());  // same config and size everywhere: same size
  s.recv.resize(s.send.size() * p);
  ctx.stats->bytesSent += s.send.size() * (p - 1);
  ctx.stats->bytesReceived += s.send.size() * (p - 1);
  QCOMM_ASSIGN_OR_RETURN(s.request, ctx.transport.iallgatherv(s.send, s.recv, s.recvCounts));
  return Status::ok();
}

Status allgatherFinish(ScheduleContext& ctx, Workspace::Slot& s, std::span<float> out) {
  QCOMM_RETURN_IF_ERROR(deferDataLoss(ctx, s.request->wait()));
  return decodeMeanMessages(ctx, s.recv, s.send.size(), ctx.transport.size(), ctx.tensorId,
                            s.begin, out, {});
}

Status allreduceAllgather(ScheduleContext& ctx, std::span<const float> input,
                          std::span<float> output) {
  Workspace::Slot* slots = ctx.workspace->slots;
  auto start = [&](int64_t c, int64_t begin, int64_t end) -> Status {
    Workspace::Slot& s = slots[c % 2];
    s.begin = begin;
    s.end = end;
    const int64_t m = end - begin;
    return allgatherStart(ctx, s, input.subspan(begin, m),
                          ctx.residual.empty() ? std::span<float>()
                                               : ctx.residual.subspan(begin, m));
  };
  auto finish = [&](int64_t c) -> Status {
    Workspace::Slot& s = slots[c % 2];
    return allgatherFinish(ctx, s, output.subspan(s.begin, s.end - s.begin));
  };
  return runPipelined(ctx, static_cast<int64_t>(input.size()), start, finish);
}

}  // namespace qcomm::collectives
