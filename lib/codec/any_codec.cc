// Encoding and decoding wire messages of any codec (qcomm/any_codec.h).
#include "qcomm/any_codec.h"

#include "qcomm/wire.h"

namespace qcomm {

Status encodeWireMessage(std::span<const float> values, const CodecConfig& codec,
                         const RandomKey& key, bool crc, std::vector<uint8_t>* message,
                         Executor* executor, size_t headroom, CodecScratch* scratch) {
  CodecScratch local;
  CodecScratch& s = scratch != nullptr ? *scratch : local;
  if (!codec.isQsgd) {
    QCOMM_RETURN_IF_ERROR(quantizeInto(values, codec.quant, key, {}, executor, &s.quantized));
    QCOMM_ASSIGN_OR_RETURN(const size_t size, quantWireSize(s.quantized));
    message->resize(headroom + size);
    return writeQuantWire(s.quantized, crc, std::span<uint8_t>(*message).subspan(headroom));
  }
  QCOMM_RETURN_IF_ERROR(qsgdEncodeInto(values, codec.qsgd, key, executor, &s.encoded));
  QCOMM_ASSIGN_OR_RETURN(const size_t size, wireSize(s.encoded));
  message->resize(headroom + size);
  WireOptions wire;
  wire.crc = crc;
  return writeWire(s.encoded, wire, std::span<uint8_t>(*message).subspan(headroom));
}

Status decodeWireMessage(std::span<const uint8_t> message, std::span<float> out, Executor* executor,
                         CodecScratch* scratch) {
  QCOMM_ASSIGN_OR_RETURN(const uint8_t codec, wireCodecId(message));
  CodecScratch local;
  CodecScratch& s = scratch != nullptr ? *scratch : local;
  int64_t count = 0;
  if (codec != static_cast<uint8_t>(CodecId::kQsgd)) {
    QCOMM_RETURN_IF_ERROR(quantFromWireInto(message, &s.quantized));
    count = s.quantized.count;
    if (count == static_cast<int64_t>(out.size())) return dequantize(s.quantized, out, executor);
  } else {
    // Read in place where the message is aligned as the schedules' buffers are; else a copy.
    const bool aligned = reinterpret_cast<uintptr_t>(message.data()) % 8 == 0;
    if (aligned) {
      QCOMM_ASSIGN_OR_RETURN(const EncodedView view, viewWire(message));
      count = view.count;
      if (count == static_cast<int64_t>(out.size())) return qsgdDecode(view, out, executor);
    } else {
      QCOMM_ASSIGN_OR_RETURN(s.encoded, fromWire(message));
      count = s.encoded.count;
      if (count == static_cast<int64_t>(out.size())) return qsgdDecode(s.encoded, out, executor);
    }
  }
  return dataLoss("message holds ", count, " values where ", out.size(), " were expected");
}

}  // namespace qcomm
