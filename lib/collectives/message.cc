// What the schedules share: the pipeline driver, encoding to and decoding from wire messages.
#include <algorithm>

#include "codec/wire_bytes.h"
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

uint64_t messageEnvelope(const ScheduleContext& ctx, const MessageId& id, int64_t count) {
  const uint64_t fields[] = {ctx.seed,  ctx.step, id.stream, id.sender, static_cast<uint64_t>(id.first),
                             static_cast<uint64_t>(count)};
  return wire::fnv1a(wire::kFnvOffset, fields, sizeof(fields));
}

namespace {

Status checkEnvelope(const ScheduleContext& ctx, std::span<const uint8_t> message,
                     const MessageId& id, int64_t count) {
  if (message.size() < kEnvelopeBytes) {
    return dataLoss("rank ", ctx.transport.rank(), ": the message from rank ", id.sender, " is ",
                    message.size(), " bytes, shorter than its envelope");
  }
  const uint64_t expected = messageEnvelope(ctx, id, count);
  const uint64_t got = wire::get<uint64_t>(message.data());
  if (got != expected) {
    return dataLoss("rank ", ctx.transport.rank(), ": the message from rank ", id.sender,
                    " is not the one expected here (step ", ctx.step, ", values from ", id.first,
                    ", ", count, " of them; envelope 0x", std::hex, got, " where 0x", expected,
                    " was expected): a stale, duplicated or misdelivered message");
  }
  return Status::ok();
}

}  // namespace

Status encodeMessage(ScheduleContext& ctx, std::span<const float> values, const MessageId& id,
                     EncodedTensor* scratch, std::vector<uint8_t>* message,
                     std::span<float> residual) {
  const RandomKey key{ctx.seed, id.sender, id.stream, ctx.step};
  const uint64_t envelope = messageEnvelope(ctx, id, static_cast<int64_t>(values.size()));
  if (!ctx.codec.isQsgd) {
    // Written after the envelope in place (no shift of the whole message).
    QCOMM_RETURN_IF_ERROR(encodeWireMessage(values, ctx.codec, key, ctx.wire.crc, message,
                                            ctx.executor, kEnvelopeBytes, &ctx.workspace->codec));
    wire::put<uint64_t>(message->data(), envelope);
    if (residual.empty()) return Status::ok();
    // The block quantizers have no fused residual: decode the message just written.
    QCOMM_RETURN_IF_ERROR(decodeWireMessage(std::span<const uint8_t>(*message).subspan(kEnvelopeBytes),
                                            residual, ctx.executor, &ctx.workspace->codec));
    for (size_t i = 0; i < values.size(); ++i) residual[i] = values[i] - residual[i];
    return Status::ok();
  }
  // QSGD reuses the caller's scratch tensor: no allocation once it has held this size. The
  // residual comes out of the encoder, from the codes while they are in cache.
  QCOMM_RETURN_IF_ERROR(
      residual.empty()
          ? qsgdEncodeInto(values, ctx.codec.qsgd, key, ctx.executor, scratch)
          : qsgdEncodeWithResidual(values, ctx.codec.qsgd, key, ctx.executor, scratch, residual));
  QCOMM_ASSIGN_OR_RETURN(const size_t size, wireSize(*scratch));
  message->resize(kEnvelopeBytes + size);
  wire::put<uint64_t>(message->data(), envelope);
  return writeWire(*scratch, ctx.wire, std::span<uint8_t>(*message).subspan(kEnvelopeBytes));
}

Result<size_t> messageSize(const ScheduleContext& ctx, int64_t count) {
  if (!ctx.codec.isQsgd) {
    // The size depends on the count and the options only (quantizing zeros to find it took
    // 3 ms per 8M values, for every part of every sra call).
    QCOMM_ASSIGN_OR_RETURN(const size_t size, quantWireSizeFor(ctx.codec.quant, count));
    return kEnvelopeBytes + size;
  }
  QCOMM_ASSIGN_OR_RETURN(const QsgdGeometry g, qsgdGeometry(count, ctx.codec.qsgd));
  // A flat float32 tensor.
  return kEnvelopeBytes + wireSize(1, DType::kFloat32, g.numBuckets, g.wordCount);
}

Status deferDataLoss(const ScheduleContext& ctx, Status status) {
  if (status.isOk() || status.code() != StatusCode::kDataLoss || ctx.damaged == nullptr) {
    return status;
  }
  if (ctx.damaged->isOk()) *ctx.damaged = std::move(status);
  return Status::ok();
}

Status decodeMessage(ScheduleContext& ctx, std::span<const uint8_t> message, const MessageId& id,
                     std::span<float> out) {
  Status decoded = checkEnvelope(ctx, message, id, static_cast<int64_t>(out.size()));
  if (decoded.isOk()) {
    decoded = decodeWireMessage(message.subspan(kEnvelopeBytes), out, ctx.executor,
                                &ctx.workspace->codec)
                  .withContextOf("rank ", ctx.transport.rank(), ": message from rank ",
                                 id.sender, ": ");
  }
  if (!decoded.isOk() && ctx.damaged != nullptr) std::fill(out.begin(), out.end(), 0.0f);
  return deferDataLoss(ctx, decoded);
}

namespace {

Status decodeMean(ScheduleContext& ctx, std::span<const uint8_t> messages, size_t size, int ranks,
                  uint32_t stream, int64_t first, std::span<float> out,
                  const DecodeMeanResidual& residual) {
  const auto idOf = [&](int r) { return MessageId{stream, static_cast<uint32_t>(r), first}; };
  const auto message = [&](int r) { return messages.subspan(r * size, size); };
  const int me = ctx.transport.rank();
  if (ctx.codec.isQsgd) {
    // Zero-copy: the codes are read in place in the transport's receive buffer.
    std::vector<EncodedView>& views = ctx.workspace->views;
    views.resize(ranks);
    for (int r = 0; r < ranks; ++r) {
      QCOMM_RETURN_IF_ERROR(
          checkEnvelope(ctx, message(r), idOf(r), static_cast<int64_t>(out.size())));
      Result<EncodedView> view = viewWire(message(r).subspan(kEnvelopeBytes));
      if (!view.isOk()) {
        return view.status().withContextOf("rank ", me, ": message from rank ", r, ": ");
      }
      if (view->count != static_cast<int64_t>(out.size())) {
        return dataLoss("rank ", me, ": message from rank ", r, " holds ", view->count,
                        " values where ", out.size(), " were expected");
      }
      views[r] = *view;
    }
    return qsgdDecodeMean(std::span<const EncodedView>(views), out, ctx.executor, residual)
        .withContextOf("rank ", me, ": ");
  }
  // The other codecs: decode each message and add, the same arithmetic (the sum starts at +0,
  // one division at the end), in buffers reused from call to call; the last message's add and
  // the division share one pass, after its residual (out is written only once all decoded).
  const std::span<float> sum = firstOf(ctx.workspace->sum, out.size());
  const std::span<float> decoded = firstOf(ctx.workspace->decoded, out.size());
  const float p = static_cast<float>(ranks);
  for (int r = 0; r < ranks; ++r) {
    QCOMM_RETURN_IF_ERROR(decodeMessage(ctx, message(r), idOf(r), decoded));
    if (r == residual.residualOf) {
      for (size_t i = 0; i < out.size(); ++i) residual.residual[i] = residual.input[i] - decoded[i];
    }
    const bool last = r + 1 == ranks;
    if (r == 0 && last) {
      for (size_t i = 0; i < out.size(); ++i) out[i] = (0.0f + decoded[i]) / p;
    } else if (r == 0) {
      for (size_t i = 0; i < out.size(); ++i) sum[i] = 0.0f + decoded[i];
    } else if (last) {
      for (size_t i = 0; i < out.size(); ++i) out[i] = (sum[i] + decoded[i]) / p;
    } else {
      for (size_t i = 0; i < out.size(); ++i) sum[i] += decoded[i];
    }
  }
  return Status::ok();
}

}  // namespace

Status decodeMeanMessages(ScheduleContext& ctx, std::span<const uint8_t> messages, size_t size,
                          int ranks, uint32_t stream, int64_t first, std::span<float> out,
                          const DecodeMeanResidual& residual) {
  // Non-QSGD codecs decode each message with decodeMessage, which defers by itself.
  const Status decoded = decodeMean(ctx, messages, size, ranks, stream, first, out, residual);
  if (!decoded.isOk() && decoded.code() == StatusCode::kDataLoss && ctx.damaged != nullptr) {
    std::fill(out.begin(), out.end(), 0.0f);
    if (residual.residualOf >= 0) {
      std::fill(residual.residual.begin(), residual.residual.end(), 0.0f);
    }
  }
  return deferDataLoss(ctx, decoded);
}

}  // namespace qcomm::collectives
