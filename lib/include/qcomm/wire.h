// The self-describing wire message of an encoded tensor (docs/format.md, "Wire message"):
// a fixed little-endian header, the shape, per-bucket scales and the words. Parsing validates every
// field against the buffer before touching the payload.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "qcomm/codec.h"
#include "qcomm/status.h"

namespace qcomm {

inline constexpr uint32_t kWireMagic =
    0x57434D51u;  // "QMCW" as little-endian bytes 'Q','M','C','W'
inline constexpr uint16_t kWireVersion = 1;
inline constexpr size_t kWireHeaderBytes = 64;  // before the shape
inline constexpr int kWireMaxDims = 32;

struct WireOptions {
  bool crc = true;  // append a CRC32C of the payload (QCOMM_WIRE_CRC sets the default)
  static Result<WireOptions> fromEnvironment();
};

// Hash of what must agree between sender and receiver: codec, bits, layout, norm, dtype, bucket.
uint64_t configHash(const EncodedTensor& encoded);

// Exact size of the message for `encoded`.
Result<size_t> wireSize(const EncodedTensor& encoded);
// The same from the geometry alone: `dims` shape dimensions, `buckets` scales of `dtype`,
// `words` words.
size_t wireSize(size_t dims, DType dtype, int64_t buckets, int64_t words);
// Writes the message into `out`, which must be exactly wireSize() bytes.
Status writeWire(const EncodedTensor& encoded, const WireOptions& options, std::span<uint8_t> out);
Result<std::vector<uint8_t>> toWire(const EncodedTensor& encoded, const WireOptions& options = {});

// Parses and validates a message. Errors are DataLoss and name the field that is wrong.
Result<EncodedTensor> fromWire(std::span<const uint8_t> message);
// The same into `out`, reusing its buffers (no allocation once they have held this size); on an
// error `out` holds a partly parsed message.
Status fromWireInto(std::span<const uint8_t> message, EncodedTensor* out);

// Parses and validates a message like fromWire, without copying: the view's scales and words
// point into `message` (which must outlive it). Word and scale reads need the message to start
// at an 8-byte aligned address (any vector's data, or an offset that is a multiple of 8 into
// one); FailedPrecondition otherwise. The shape is checked but not returned.
Result<EncodedView> viewWire(std::span<const uint8_t> message);

// CRC32C (Castagnoli), hardware-accelerated where the CPU has it.
uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc = 0);

}  // namespace qcomm
