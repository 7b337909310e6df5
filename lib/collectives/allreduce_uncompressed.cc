// Uncompressed: the transport's float allreduce, then a division by P. Used for small tensors,
// where a code would save little and cost a quantization, and as the baseline.
#include <algorithm>

#include "collectives/schedule.h"

namespace qcomm::collectives {

Status allreduceUncompressed(ScheduleContext& ctx, std::span<const float> input,
                             std::span<float> output) {
  if (output.data() != input.data()) std::copy(input.begin(), input.end(), output.begin());
  const int p = ctx.transport.size();
  ctx.stats->bytesSent += output.size_bytes();
  ctx.stats->bytesReceived += output.size_bytes();
  QCOMM_RETURN_IF_ERROR(ctx.transport.allreduceSum(output));
  const float ranks = static_cast<float>(p);
  for (float& x : output) x /= ranks;
  if (!ctx.residual.empty()) std::fill(ctx.residual.begin(), ctx.residual.end(), 0.0f);
  return Status::ok();
}

}  // namespace qcomm::collectives
