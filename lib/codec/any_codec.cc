// Encoding and decoding wire messages of any codec (qcomm/any_codec.h).
#include "qcomm/any_codec.h"

#include "qcomm/wire.h"

namespace qcomm {

Status encodeWireMessage(std::span<const float> values, const CodecConfig& codec,
                         const RandomKey& key, bool crc, std::vector<uint8_t>* message,
                         Executor* executor, size_t headroom) {
  if (!codec.isQsgd) {
    QCOMM_ASSIGN_OR_RETURN(const QuantizedTensor q,
                           quantize(values, codec.quant, key, {}, executor));
    QCOMM_ASSIGN_OR_RETURN(const size_t size, quantWireSize(q));
    message->resize(headroom + size);
    return writeQuantWire(q, crc, std::span<uint8_t>(*message).subspan(headroom));
  }
  QCOMM_ASSIGN_OR_RETURN(const EncodedTensor e, qsgdEncode(values, codec.qsgd, key, executor));
  QCOMM_ASSIGN_OR_RETURN(const size_t size, wireSize(e));
  message->resize(headroom + size);
  WireOptions wire;
  wire.crc = crc;
  return writeWire(e, wire, std::span<uint8_t>(*message).subspan(headroom));
}

Status decodeWireMessage(std::span<const uint8_t> message, std::span<float> out,
                         Executor* executor) {
  QCOMM_ASSIGN_OR_RETURN(const uint8_t codec, wireCodecId(message));
  int64_t count = 0;
  if (codec != static_cast<uint8_t>(CodecId::kQsgd)) {
    QCOMM_ASSIGN_OR_RETURN(const QuantizedTensor q, quantFromWire(message));
    count = q.count;
    if (count == static_cast<int64_t>(out.size())) return dequantize(q, out, executor);
  } else {
    // Read in place where the message is aligned as the schedules' buffers are; else a copy.
    const bool aligned = reinterpret_cast<uintptr_t>(message.data()) % 8 == 0;
    if (aligned) {
      QCOMM_ASSIGN_OR_RETURN(const EncodedView view, viewWire(message));
      count = view.count;
      if (count == static_cast<int64_t>(out.size())) return qsgdDecode(view, out, executor);
    } else {
      QCOMM_ASSIGN_OR_RETURN(const EncodedTensor e, fromWire(message));
      count = e.count;
      if (count == static_cast<int64_t>(out.size())) return qsgdDecode(e, out, executor);
    }
  }
  return dataLoss("message holds ", count, " values where ", out.size(), " were expected");
}

}  // namespace qcomm
