// What the schedules share: the pipeline driver, encoding to and decoding from wire messages.
#include <algorithm>

#include "collectives/schedule.h"

namespace qcomm::collectives {

Status runPipelined(const ScheduleContext& ctx, int64_t n,
                    const std::function<Status(int64_t, int64_t, int64_t)>& start,
                    const std::function<Status(int64_t)>& finish) {
  const int64_t chunk = std::max<int64_t>(1, ctx.chunkNumel);
  const int64_t chunks = (n + chunk - 1) / chunk;
  for (int64_t c = 0; c < chunks; ++c) {
    QCOMM_RETURN_IF_ERROR(start(c, c * chunk, std::min(n, (c + 1) * chunk)));
    if (c > 0) QCOMM_RETURN_IF_ERROR(finish(c - 1));
  }
  if (chunks > 0) QCOMM_RETURN_IF_ERROR(finish(chunks - 1));
  return Status::ok();
}

Status encodeMessage(ScheduleContext& ctx, std::span<const float> values, uint32_t rank,
                     uint32_t tensorId, EncodedTensor* scratch, std::vector<uint8_t>* message) {
  QCOMM_RETURN_IF_ERROR(qsgdEncodeInto(values, ctx.codec, {ctx.seed, rank, tensorId, ctx.step},
                                       ctx.executor, scratch));
  QCOMM_ASSIGN_OR_RETURN(const size_t size, wireSize(*scratch));
  message->resize(size);
  return writeWire(*scratch, ctx.wire, *message);
}

Result<size_t> messageSize(const ScheduleContext& ctx, int64_t count) {
  QCOMM_ASSIGN_OR_RETURN(const QsgdGeometry g, qsgdGeometry(count, ctx.codec));
  EncodedTensor shape;
  shape.bits = ctx.codec.bits;
  shape.layout = ctx.codec.layout;
  shape.norm = ctx.codec.norm;
  shape.bucketSize = g.bucketSize;
  shape.count = count;
  shape.shape = {count};
  shape.scales.assign(g.numBuckets, 0.0);
  shape.words.assign(g.wordCount, 0);
  return wireSize(shape);
}

Status decodeMessage(ScheduleContext& ctx, std::span<const uint8_t> message, std::span<float> out) {
  QCOMM_ASSIGN_OR_RETURN(const EncodedTensor encoded, fromWire(message));
  if (encoded.count != static_cast<int64_t>(out.size())) {
    return dataLoss("rank ", ctx.transport.rank(), " received a message of ", encoded.count,
                    " values where ", out.size(), " were expected");
  }
  return qsgdDecode(encoded, out, ctx.executor);
}

}  // namespace qcomm::collectives
