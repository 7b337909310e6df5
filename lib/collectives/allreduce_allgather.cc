// allgather: every rank encodes its chunk once, the codes are all-gathered, every rank decodes
// the P codes and averages them in rank order (so all ranks get bit-identical results). Chunks
// are pipelined: chunk c+1 is encoded while chunk c travels.
#include <algorithm>

#include "collectives/schedule.h"

namespace qcomm::collectives {

Status allreduceAllgather(ScheduleContext& ctx, std::span<const float> input,
                          std::span<float> output) {
  const int64_t n = static_cast<int64_t>(input.size());
  const int p = ctx.transport.size();
  const int me = ctx.transport.rank();
  Workspace::Slot* slots = ctx.workspace->slots;

  // Encodes chunk c and starts its all-gather.
  auto start = [&](int64_t c, int64_t begin, int64_t end) -> Status {
    Workspace::Slot& s = slots[c % 2];
    s.begin = begin;
    s.end = end;
    QCOMM_RETURN_IF_ERROR(encodeMessage(ctx, input.subspan(s.begin, s.end - s.begin), me,
                                        ctx.tensorId, &s.encoded, &s.send));
    s.recvCounts.assign(p, s.send.size());  // same config and size everywhere: same size
    s.recv.resize(s.send.size() * p);
    ctx.stats->bytesSent += s.send.size() * (p - 1);
    ctx.stats->bytesReceived += s.send.size() * (p - 1);
    QCOMM_ASSIGN_OR_RETURN(s.request, ctx.transport.iallgatherv(s.send, s.recv, s.recvCounts));
    return Status::ok();
  };
  // Waits for chunk c and writes its mean (and this rank's residual).
  auto finish = [&](int64_t c) -> Status {
    Workspace::Slot& s = slots[c % 2];
    QCOMM_RETURN_IF_ERROR(s.request->wait());
    const int64_t m = s.end - s.begin;
    DecodeMeanResidual residual;
    if (!ctx.residual.empty()) {
      residual = {me, input.subspan(s.begin, m), ctx.residual.subspan(s.begin, m)};
    }
    return decodeMeanMessages(ctx, s.recv, s.send.size(), p, output.subspan(s.begin, m),
                              residual);
  };

  return runPipelined(ctx, n, start, finish);
}

}  // namespace qcomm::collectives
