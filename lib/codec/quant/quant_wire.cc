// Wire messages of the block quantizers: QSGD's 64-byte header (docs/format.md) with this codec's
// id, then the shape, per-block scales, per-block zero points (asymmetric and row-wise) and the
// words. Header fields that differ from QSGD's: byte 10 is the mode (0 symmetric, 1 asymmetric),
// byte 11 the rounding (0 nearest, 1 stochastic), offset 24 the block size and offset 56 the
// percentile (f64; 0 for other codecs).
#include <bit>
#include <cmath>
#include <cstring>

#include "codec/quant/quant_codecs.h"
#include "codec/wire_bytes.h"
#include "qcomm/wire.h"

namespace qcomm {
namespace {

using wire::fnv1a;
using wire::get;
using wire::padTo8;
using wire::put;
using wire::scaleBytes;

// Whether the message says 16-bit draws (kFlagRandom16): stochastic rounding with them. Rounding to
// nearest draws nothing and keeps the flag clear whatever its randomBits.
bool sixteenBitDraws(const QuantOptions& o) {
  return o.rounding == Rounding::kStochastic && o.randomBits == 16;
}

uint64_t configHashOf(const QuantizedTensor& q) {
  const uint8_t fields[5] = {static_cast<uint8_t>(q.options.kind),
                             static_cast<uint8_t>(q.options.bits),
                             static_cast<uint8_t>(q.options.symmetric ? 0 : 1),
                             static_cast<uint8_t>(q.options.rounding),
                             static_cast<uint8_t>(q.dtype)};
  uint64_t hash = fnv1a(wire::kFnvOffset, fields, sizeof(fields));
  hash = fnv1a(hash, &q.blockSize, sizeof(q.blockSize));
  hash = fnv1a(hash, &q.options.percentile, sizeof(double));
  // As QSGD's: hashes of 32-bit draws and of rounding to nearest are those of the format before
  // random_bits existed.
  return sixteenBitDraws(q.options) ? fnv1a(hash, "r16", 3) : hash;
}

size_t areaBytes(const QuantizedTensor& q, size_t entries) {
  return padTo8(scaleBytes(q.dtype) * entries);
}

void putScales(uint8_t* p, const std::vector<double>& values, DType dtype) {
  for (size_t b = 0; b < values.size(); ++b) {
    if (dtype == DType::kFloat32) {
      put<float>(p + 4 * b, static_cast<float>(values[b]));
    } else {
      put<double>(p + 8 * b, values[b]);
    }
  }
}

void getScales(const uint8_t* p, std::vector<double>* values, DType dtype) {
  for (size_t b = 0; b < values->size(); ++b) {
    (*values)[b] = dtype == DType::kFloat32 ? static_cast<double>(get<float>(p + 4 * b))
                                            : get<double>(p + 8 * b);
  }
}

}  // namespace

Result<uint8_t> wireCodecId(std::span<const uint8_t> message) {
  QCOMM_RETURN_IF_ERROR(wire::checkHeaderPrefix(message).status());
  return message[8];
}

Result<size_t> quantWireSize(const QuantizedTensor& q) {
  QCOMM_RETURN_IF_ERROR(validateQuantized(q));
  if (q.shape.size() > kWireMaxDims) {
    return invalidArgument("tensor has ", q.shape.size(), " dimensions; the wire format allows ",
                           kWireMaxDims);
  }
  return kWireHeaderBytes + 8 * q.shape.size() + areaBytes(q, q.scales.size()) +
         areaBytes(q, q.zeroPoints.size()) + 8 * q.words.size();
}

Result<size_t> quantWireSizeFor(const QuantOptions& options, int64_t count, DType dtype) {
  QCOMM_RETURN_IF_ERROR(options.validate());
  if (count < 0 || count > (int64_t{1} << 56)) {
    return invalidArgument("value count ", count, " is invalid (0 to 2^56)");
  }
  QuantizedTensor shell;  // what quantize makes of a flat tensor, but the buffers
  shell.options = options;
  shell.dtype = dtype;
  shell.count = count;
  shell.blockSize = quant::effectiveBlock(options, count, {});
  const size_t blocks = static_cast<size_t>(shell.numBlocks());
  return kWireHeaderBytes + 8 + areaBytes(shell, blocks) +
         areaBytes(shell, shell.hasZeroPoints() ? blocks : 0) +
         8 * static_cast<size_t>(quant::wordsFor(count, shell.codeBits()));
}

Status writeQuantWire(const QuantizedTensor& q, bool crc, std::span<uint8_t> out) {
  QCOMM_ASSIGN_OR_RETURN(const size_t size, quantWireSize(q));
  if (out.size() != size) {
    return invalidArgument("wire buffer holds ", out.size(), " bytes, the message needs ", size);
  }
  uint8_t* p = out.data();
  const size_t headerBytes = wire::writeHeaderPrefix(out, q.shape.size());
  p[8] = static_cast<uint8_t>(q.options.kind);
  p[9] = static_cast<uint8_t>(q.options.bits);
  p[10] = q.options.symmetric ? 0 : 1;
  p[11] = static_cast<uint8_t>(q.options.rounding);
  p[12] = static_cast<uint8_t>(q.dtype);
  p[13] = static_cast<uint8_t>(scaleBytes(q.dtype));
  put<uint32_t>(
      p + 16, q.flags | (crc ? kFlagCrc : 0u) | (sixteenBitDraws(q.options) ? kFlagRandom16 : 0u));
  put<int64_t>(p + 24, q.blockSize);
  put<int64_t>(p + 32, q.count);
  put<int64_t>(p + 40, static_cast<int64_t>(q.words.size()));
  put<uint64_t>(p + 48, configHashOf(q));
  put<double>(p + 56, q.options.kind == QuantKind::kPercentile ? q.options.percentile : 0.0);
  for (size_t i = 0; i < q.shape.size(); ++i) put<int64_t>(p + 64 + 8 * i, q.shape[i]);
  uint8_t* scales = p + headerBytes;
  putScales(scales, q.scales, q.dtype);
  uint8_t* zeros = scales + areaBytes(q, q.scales.size());
  putScales(zeros, q.zeroPoints, q.dtype);
  uint8_t* words = zeros + areaBytes(q, q.zeroPoints.size());
  if (!q.words.empty()) std::memcpy(words, q.words.data(), 8 * q.words.size());
  if (crc) wire::putPayloadCrc(out, headerBytes);
  return Status::ok();
}

Result<QuantizedTensor> quantFromWire(std::span<const uint8_t> message) {
  QuantizedTensor q;
  QCOMM_RETURN_IF_ERROR(quantFromWireInto(message, &q));
  return q;
}

Status quantFromWireInto(std::span<const uint8_t> message, QuantizedTensor* out) {
  if (out == nullptr) return invalidArgument("quantFromWireInto needs an output tensor, got null");
  QCOMM_ASSIGN_OR_RETURN(const size_t headerBytes, wire::checkHeaderPrefix(message));
  const uint8_t* p = message.data();
  const size_t size = message.size();
  const uint8_t codec = p[8];
  if (codec < static_cast<uint8_t>(QuantKind::kLinear) ||
      codec > static_cast<uint8_t>(QuantKind::kBf16)) {
    return dataLoss("codec id ", int{codec}, " is not a block quantizer (2..7)");
  }
  const uint16_t ndim = get<uint16_t>(p + 14);
  QuantizedTensor& q = *out;  // every field is set below; the vectors keep their capacity
  q.options = QuantOptions{};
  q.options.kind = static_cast<QuantKind>(codec);
  q.options.bits = p[9];
  if (p[10] > 1) return dataLoss("mode field is ", int{p[10]}, " (0 sym, 1 asym)");
  if (p[11] > 1) return dataLoss("rounding field is ", int{p[11]}, " (0 nearest, 1 stochastic)");
  if (p[12] > 1) return dataLoss("dtype field is ", int{p[12]}, " (0 float32, 1 float64)");
  q.options.symmetric = p[10] == 0;
  q.options.rounding = static_cast<Rounding>(p[11]);
  q.dtype = static_cast<DType>(p[12]);
  if (p[13] != scaleBytes(q.dtype)) return dataLoss("scale bytes field is ", int{p[13]});
  const uint32_t flags = get<uint32_t>(p + 16);
  if ((flags & ~(kFlagNonFinite | kFlagCrc | kFlagRandom16)) != 0) {
    return dataLoss("flags 0x", std::hex, flags, " hold unknown bits");
  }
  q.flags = flags & kFlagNonFinite;
  if ((flags & kFlagRandom16) != 0 && q.options.rounding != Rounding::kStochastic) {
    return dataLoss("flags 0x", std::hex, flags,
                    " say 16-bit draws for a message rounded to nearest");
  }
  // A clear flag: 32-bit draws, or none (rounding to nearest keeps the default).
  if ((flags & kFlagRandom16) != 0) {
    q.options.randomBits = 16;
  } else if (q.options.rounding == Rounding::kStochastic) {
    q.options.randomBits = 32;
  }
  q.blockSize = get<int64_t>(p + 24);
  q.options.blockSize = q.blockSize;
  q.count = get<int64_t>(p + 32);
  const double percentile = get<double>(p + 56);
  if (q.options.kind == QuantKind::kPercentile) q.options.percentile = percentile;
  else if (percentile != 0.0) return dataLoss("percentile field is set for a non-percentile codec");
  const Status options = q.options.validate();
  if (!options.isOk()) return dataLoss("codec fields: ", options.message());
  q.shape.resize(ndim);
  for (size_t i = 0; i < ndim; ++i) q.shape[i] = get<int64_t>(p + 64 + 8 * i);
  // Up to 2^56 values, as QSGD (no count * bits below can overflow); nothing is allocated until
  // the message's size matches what its header describes.
  if (q.count < 0 || q.count > (int64_t{1} << 56) || q.blockSize < 1) {
    return dataLoss("count ", q.count, " or block size ", q.blockSize, " is invalid");
  }
  const size_t blocks = static_cast<size_t>(q.numBlocks());
  const size_t zeroBlocks = q.hasZeroPoints() ? blocks : 0;
  const int64_t wordCount = get<int64_t>(p + 40);
  if (wordCount != quant::wordsFor(q.count, q.codeBits())) {
    return dataLoss("word count field is ", wordCount, " but ", q.count, " codes of ",
                    q.codeBits(), " bits need ", quant::wordsFor(q.count, q.codeBits()));
  }
  if (get<uint64_t>(p + 48) != configHashOf(q)) {
    return dataLoss("config hash does not match the header's codec fields (corrupted header)");
  }
  const size_t expected = headerBytes + areaBytes(q, blocks) + areaBytes(q, zeroBlocks) +
                          8 * static_cast<size_t>(wordCount);
  if (size != expected) {
    return dataLoss("message is ", size, " bytes but its header describes ", expected,
                    size < expected ? ": truncated" : ": trailing bytes");
  }
  QCOMM_RETURN_IF_ERROR(wire::checkPayloadCrc(message, headerBytes, flags));
  q.scales.resize(blocks);
  q.zeroPoints.resize(zeroBlocks);
  const uint8_t* scales = p + headerBytes;
  getScales(scales, &q.scales, q.dtype);
  const uint8_t* zeros = scales + areaBytes(q, q.scales.size());
  getScales(zeros, &q.zeroPoints, q.dtype);
  q.words.resize(wordCount);
  if (wordCount > 0) std::memcpy(q.words.data(), zeros + areaBytes(q, q.zeroPoints.size()),
                                 8 * static_cast<size_t>(wordCount));
  return validateQuantized(q).withContext("message: ");
}

}  // namespace qcomm
