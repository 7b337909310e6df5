// What the schedules share: the pipeline driver, encoding to and decoding from wire messages.
#include <algorithm>

#include "collectives/schedule.h"

namespace qcomm::collectives {

namespace {

Status pipeline(const ScheduleContext& ctx, int64_t n,
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

}  // namespace

Status runPipelined(const ScheduleContext& ctx, int64_t n,
                    const std::function<Status(int64_t, int64_t, int64_t)>& start,
                    const std::function<Status(int64_t)>& finish) {
  const Status status = pipeline(ctx, n, start, finish);
  // A request left by a failed chunk ends with this call (as when the slots were its locals),
  // not with the next one that reuses the workspace.
  for (Workspace::Slot& slot : ctx.workspace->slots) slot.request.reset();
  return status;
}

Status encodeMessage(ScheduleContext& ctx, std::span<const float> values, uint32_t rank,
                     uint32_t tensorId, EncodedTensor* scratch, std::vector<uint8_t>* message) {
  const RandomKey key{ctx.seed, rank, tensorId, ctx.step};
  if (!ctx.codec.isQsgd) {
    return encodeWireMessage(values, ctx.codec, key, ctx.wire.crc, message, ctx.executor);
  }
  // QSGD reuses the caller's scratch tensor: no allocation once it has held this size.
  QCOMM_RETURN_IF_ERROR(qsgdEncodeInto(values, ctx.codec.qsgd, key, ctx.executor, scratch));
  QCOMM_ASSIGN_OR_RETURN(const size_t size, wireSize(*scratch));
  message->resize(size);
  return writeWire(*scratch, ctx.wire, *message);
}

Result<size_t> messageSize(const ScheduleContext& ctx, int64_t count) {
  if (!ctx.codec.isQsgd) {
    // The size depends on the count and the options only: quantize zeros.
    const std::vector<float> zeros(count, 0.0f);
    QCOMM_ASSIGN_OR_RETURN(const QuantizedTensor q, quantize(zeros, ctx.codec.quant));
    return quantWireSize(q);
  }
  QCOMM_ASSIGN_OR_RETURN(const QsgdGeometry g, qsgdGeometry(count, ctx.codec.qsgd));
  return wireSize(1, DType::kFloat32, g.numBuckets, g.wordCount);  // a flat float32 tensor
}

Status decodeMessage(ScheduleContext& ctx, std::span<const uint8_t> message, std::span<float> out) {
  return decodeWireMessage(message, out, ctx.executor)
      .withContext(strCat("rank ", ctx.transport.rank(), ": "));
}

Status decodeMeanMessages(ScheduleContext& ctx, std::span<const uint8_t> messages, size_t size,
                          int ranks, std::span<float> out, const DecodeMeanResidual& residual) {
  const auto message = [&](int r) { return messages.subspan(r * size, size); };
  const std::string where = strCat("rank ", ctx.transport.rank(), ": ");
  if (ctx.codec.isQsgd) {
    std::vector<EncodedTensor>& codes = ctx.workspace->codes;
    std::vector<const EncodedTensor*>& views = ctx.workspace->views;
    if (codes.size() < static_cast<size_t>(ranks)) codes.resize(ranks);
    views.resize(ranks);
    for (int r = 0; r < ranks; ++r) {
      const Status parsed = fromWireInto(message(r), &codes[r]);
      if (!parsed.isOk()) return parsed.withContext(strCat(where, "message from rank ", r, ": "));
      if (codes[r].count != static_cast<int64_t>(out.size())) {
        return dataLoss(where, "message from rank ", r, " holds ", codes[r].count,
                        " values where ", out.size(), " were expected");
      }
      views[r] = &codes[r];
    }
    return qsgdDecodeMean(views, out, ctx.executor, residual).withContext(where);
  }
  // The other codecs: decode each message and add, the same arithmetic.
  std::vector<float> sum(out.size(), 0.0f), decoded(out.size());
  for (int r = 0; r < ranks; ++r) {
    QCOMM_RETURN_IF_ERROR(decodeMessage(ctx, message(r), decoded));
    for (size_t i = 0; i < out.size(); ++i) sum[i] += decoded[i];
    if (r == residual.residualOf) {
      for (size_t i = 0; i < out.size(); ++i) residual.residual[i] = residual.input[i] - decoded[i];
    }
  }
  const float p = static_cast<float>(ranks);
  for (size_t i = 0; i < out.size(); ++i) out[i] = sum[i] / p;
  return Status::ok();
}

}  // namespace qcomm::collectives
