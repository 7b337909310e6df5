// Any of qcomm's codecs behind one pair of calls: QSGD (qcomm/codec.h) or a block quantizer
// (qcomm/quantizers.h), to and from self-describing wire messages. The Communicator's schedules
// and the PyTorch hook use these.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "qcomm/codec.h"
#include "qcomm/executor.h"
#include "qcomm/quantizers.h"
#include "qcomm/status.h"

namespace qcomm {

struct CodecConfig {
  bool isQsgd = true;
  QsgdOptions qsgd;
  QuantOptions quant;
};

// Buffers that encodeWireMessage and decodeWireMessage reuse from call to call: no allocation
// (and no page faults of fresh memory) once they have held a message of this size.
struct CodecScratch {
  EncodedTensor encoded;
  QuantizedTensor quantized;
};

// Encodes float32 values into a wire message (resized to fit; CRC32C when `crc`). `headroom`
// bytes are left before the message (a header of the caller's, written in place afterwards).
Status encodeWireMessage(std::span<const float> values, const CodecConfig& codec,
                         const RandomKey& key, bool crc, std::vector<uint8_t>* message,
                         Executor* executor = nullptr, size_t headroom = 0,
                         CodecScratch* scratch = nullptr);
// Decodes any qcomm wire message into `out`, which must hold exactly its values; the codec is
// read from the message.
Status decodeWireMessage(std::span<const uint8_t> message, std::span<float> out,
                         Executor* executor = nullptr, CodecScratch* scratch = nullptr);

}  // namespace qcomm
