// Writing and validating wire messages. Layout (all little-endian; docs/format.md):
//   0 magic u32 | 4 version u16 | 6 header bytes u16 | 8 codec u8 | 9 bits u8 | 10 layout u8 |
//  11 norm u8 | 12 dtype u8 | 13 scale bytes u8 | 14 ndim u16 | 16 flags u32 | 20 crc32c u32 |
//  24 bucket size i64 | 32 count i64 | 40 word count i64 | 48 config hash u64 | 56 reserved u64 |
//  64 shape i64[ndim] | scales (f32 or f64)[buckets], zero-padded to 8 bytes | words u64[]
#include <bit>
#include <cmath>
#include <cstring>

#include "qcomm/env.h"
#include "qcomm/wire.h"

#include "codec/wire_bytes.h"

namespace qcomm {
using wire::fnv1a;
using wire::get;
using wire::padTo8;
using wire::put;
using wire::scaleBytes;

Result<WireOptions> WireOptions::fromEnvironment() {
  QCOMM_ASSIGN_OR_RETURN(const int64_t crc, knobInt(Knob::kWireCrc, 0, 1));
  WireOptions options;
  options.crc = crc == 1;
  return options;
}

uint64_t configHash(const EncodedTensor& e) {
  const uint8_t fields[5] = {static_cast<uint8_t>(CodecId::kQsgd), static_cast<uint8_t>(e.bits),
                             static_cast<uint8_t>(e.layout), static_cast<uint8_t>(e.norm),
                             static_cast<uint8_t>(e.dtype)};
  uint64_t hash = fnv1a(wire::kFnvOffset, fields, sizeof(fields));
  hash = fnv1a(hash, &e.bucketSize, sizeof(e.bucketSize));
  // 16-bit draws change the words: mixed in only then, so 32-bit messages hash as before.
  if ((e.flags & kFlagRandom16) != 0) hash = fnv1a(hash, "r16", 3);
  return hash;
}

Result<size_t> wireSize(const EncodedTensor& e) {
  QCOMM_RETURN_IF_ERROR(validateEncoded(e));
  if (e.shape.size() > kWireMaxDims) {
    return invalidArgument("tensor has ", e.shape.size(), " dimensions; the wire format allows ",
                           kWireMaxDims);
  }
  return wireSize(e.shape.size(), e.dtype, static_cast<int64_t>(e.scales.size()),
                  static_cast<int64_t>(e.words.size()));
}

size_t wireSize(size_t dims, DType dtype, int64_t buckets, int64_t words) {
  return kWireHeaderBytes + 8 * dims + padTo8(scaleBytes(dtype) * static_cast<size_t>(buckets)) +
         8 * static_cast<size_t>(words);
}

Status writeWire(const EncodedTensor& e, const WireOptions& options, std::span<uint8_t> out) {
  QCOMM_ASSIGN_OR_RETURN(const size_t size, wireSize(e));
  if (out.size() != size) {
    return invalidArgument("wire buffer holds ", out.size(), " bytes, the message needs ", size);
  }
  uint8_t* p = out.data();
  const size_t headerBytes = wire::writeHeaderPrefix(out, e.shape.size());
  p[8] = static_cast<uint8_t>(CodecId::kQsgd);
  p[9] = static_cast<uint8_t>(e.bits);
  p[10] = static_cast<uint8_t>(e.layout);
  p[11] = static_cast<uint8_t>(e.norm);
  p[12] = static_cast<uint8_t>(e.dtype);
  p[13] = static_cast<uint8_t>(scaleBytes(e.dtype));
  const uint32_t flags = (e.flags & ~kFlagCrc) | (options.crc ? kFlagCrc : 0u);
  put<uint32_t>(p + 16, flags);
  put<int64_t>(p + 24, e.bucketSize);
  put<int64_t>(p + 32, e.count);
  put<int64_t>(p + 40, static_cast<int64_t>(e.words.size()));
  put<uint64_t>(p + 48, configHash(e));
  for (size_t i = 0; i < e.shape.size(); ++i) put<int64_t>(p + 64 + 8 * i, e.shape[i]);
  uint8_t* scales = p + headerBytes;
  for (size_t b = 0; b < e.scales.size(); ++b) {
    if (e.dtype == DType::kFloat32) {
      put<float>(scales + 4 * b, static_cast<float>(e.scales[b]));
    } else {
      put<double>(scales + 8 * b, e.scales[b]);
    }
  }
  uint8_t* words = scales + padTo8(scaleBytes(e.dtype) * e.scales.size());
  if (!e.words.empty()) std::memcpy(words, e.words.data(), 8 * e.words.size());
  if (options.crc) wire::putPayloadCrc(out, headerBytes);
  return Status::ok();
}

Result<std::vector<uint8_t>> toWire(const EncodedTensor& e, const WireOptions& options) {
  QCOMM_ASSIGN_OR_RETURN(const size_t size, wireSize(e));
  std::vector<uint8_t> out(size);
  QCOMM_RETURN_IF_ERROR(writeWire(e, options, out));
  return out;
}

Result<EncodedTensor> fromWire(std::span<const uint8_t> message) {
  EncodedTensor e;
  QCOMM_RETURN_IF_ERROR(fromWireInto(message, &e));
  return e;
}

Status fromWireInto(std::span<const uint8_t> message, EncodedTensor* out) {
  const size_t size = message.size();
  const uint8_t* p = message.data();
  QCOMM_ASSIGN_OR_RETURN(const size_t headerBytes, wire::checkHeaderPrefix(message));
  const uint16_t ndim = get<uint16_t>(p + 14);
  if (p[8] != static_cast<uint8_t>(CodecId::kQsgd)) {
    return dataLoss("codec id ", int{p[8]}, " is unknown (1 is qsgd)");
  }
  EncodedTensor& e = *out;
  e.bits = p[9];
  if (e.bits < kMinBits || e.bits > kMaxBits) {
    return dataLoss("bits field is ", e.bits, ", outside [", kMinBits, ", ", kMaxBits, "]");
  }
  if (p[10] > 1) return dataLoss("layout field is ", int{p[10]}, " (0 seed, 1 compact)");
  if (p[11] > 1) return dataLoss("norm field is ", int{p[11]}, " (0 l2, 1 max)");
  if (p[12] > 1) return dataLoss("dtype field is ", int{p[12]}, " (0 float32, 1 float64)");
  e.layout = static_cast<Layout>(p[10]);
  e.norm = static_cast<NormKind>(p[11]);
  e.dtype = static_cast<DType>(p[12]);
  if (p[13] != scaleBytes(e.dtype)) {
    return dataLoss("scale bytes field is ", int{p[13]}, " but ", dtypeName(e.dtype),
                    " tensors carry ", scaleBytes(e.dtype), "-byte scales");
  }
  const uint32_t flags = get<uint32_t>(p + 16);
  if ((flags & ~kKnownFlags) != 0) {
    return dataLoss("flags 0x", std::hex, flags, " hold unknown bits");
  }
  if (get<uint64_t>(p + 56) != 0) return dataLoss("reserved header field is not zero");
  e.flags = flags & ~kFlagCrc;
  e.bucketSize = get<int64_t>(p + 24);
  e.count = get<int64_t>(p + 32);
  const int64_t wordCount = get<int64_t>(p + 40);
  if (e.bucketSize < 1) return dataLoss("bucket size field is ", e.bucketSize, ", must be >= 1");
  QsgdOptions options;
  options.bits = e.bits;
  options.layout = e.layout;
  options.bucketSize = e.bucketSize;
  Result<QsgdGeometry> g = qsgdGeometry(e.count, options);
  if (!g.isOk()) return dataLoss("element count field: ", g.status().message());
  if (wordCount != g->wordCount) {
    return dataLoss("word count field is ", wordCount, " but ", e.count, " values at ", e.bits,
                    " bits (", layoutName(e.layout), " layout, buckets of ", e.bucketSize,
                    ") need ", g->wordCount);
  }
  if (get<uint64_t>(p + 48) != configHash(e)) {
    return dataLoss("config hash does not match the header's codec fields (corrupted header)");
  }
  e.shape.resize(ndim);
  for (size_t i = 0; i < ndim; ++i) e.shape[i] = get<int64_t>(p + 64 + 8 * i);
  const size_t scaleArea = padTo8(scaleBytes(e.dtype) * static_cast<size_t>(g->numBuckets));
  const size_t expected = headerBytes + scaleArea + 8 * static_cast<size_t>(g->wordCount);
  if (size != expected) {
    return dataLoss("message is ", size, " bytes but its header describes ", expected, " (",
                    g->numBuckets, " scales, ", g->wordCount, " words)",
                    size < expected ? ": truncated" : ": trailing bytes");
  }
  QCOMM_RETURN_IF_ERROR(wire::checkPayloadCrc(message, headerBytes, flags));
  const uint8_t* scales = p + headerBytes;
  e.scales.resize(g->numBuckets);
  for (int64_t b = 0; b < g->numBuckets; ++b) {
    e.scales[b] = e.dtype == DType::kFloat32 ? static_cast<double>(get<float>(scales + 4 * b))
                                             : get<double>(scales + 8 * b);
  }
  e.words.resize(g->wordCount);
  if (g->wordCount > 0) std::memcpy(e.words.data(), scales + scaleArea, 8 * e.words.size());
  return validateEncoded(e);
}

}  // namespace qcomm
