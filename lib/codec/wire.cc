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

namespace {

uint64_t configHashOf(int bits, Layout layout, NormKind norm, DType dtype, int64_t bucketSize,
                      uint32_t flags) {
  const uint8_t fields[5] = {static_cast<uint8_t>(CodecId::kQsgd), static_cast<uint8_t>(bits),
                             static_cast<uint8_t>(layout), static_cast<uint8_t>(norm),
                             static_cast<uint8_t>(dtype)};
  uint64_t hash = fnv1a(wire::kFnvOffset, fields, sizeof(fields));
  hash = fnv1a(hash, &bucketSize, sizeof(bucketSize));
  // 16-bit draws change the words: mixed in only then, so 32-bit messages hash as before.
  if ((flags & kFlagRandom16) != 0) hash = fnv1a(hash, "r16", 3);
  return hash;
}

}  // namespace

uint64_t configHash(const EncodedTensor& e) {
  return configHashOf(e.bits, e.layout, e.norm, e.dtype, e.bucketSize, e.flags);
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

namespace {

// A checked message: its header fields (in `fields`, scales and words left empty) and where the
// shape, scales and words start. Everything but the scale values is validated here.
struct ParsedWire {
  EncodedView fields;
  size_t ndim = 0;
  size_t scalesAt = 0, wordsAt = 0;
  int64_t numBuckets = 0, wordCount = 0;
};

Status parseWire(std::span<const uint8_t> message, ParsedWire* out) {
  const size_t size = message.size();
  const uint8_t* p = message.data();
  QCOMM_ASSIGN_OR_RETURN(const size_t headerBytes, wire::checkHeaderPrefix(message));
  if (p[8] != static_cast<uint8_t>(CodecId::kQsgd)) {
    return dataLoss("codec id ", int{p[8]}, " is unknown (1 is qsgd)");
  }
  EncodedView& e = out->fields;
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
  if (get<uint64_t>(p + 48) !=
      configHashOf(e.bits, e.layout, e.norm, e.dtype, e.bucketSize, e.flags)) {
    return dataLoss("config hash does not match the header's codec fields (corrupted header)");
  }
  out->ndim = get<uint16_t>(p + 14);
  const size_t scaleArea = padTo8(scaleBytes(e.dtype) * static_cast<size_t>(g->numBuckets));
  const size_t expected = headerBytes + scaleArea + 8 * static_cast<size_t>(g->wordCount);
  if (size != expected) {
    return dataLoss("message is ", size, " bytes but its header describes ", expected, " (",
                    g->numBuckets, " scales, ", g->wordCount, " words)",
                    size < expected ? ": truncated" : ": trailing bytes");
  }
  QCOMM_RETURN_IF_ERROR(wire::checkPayloadCrc(message, headerBytes, flags));
  out->scalesAt = headerBytes;
  out->wordsAt = headerBytes + scaleArea;
  out->numBuckets = g->numBuckets;
  out->wordCount = g->wordCount;
  return Status::ok();
}

Status checkWireShape(std::span<const uint8_t> message, const ParsedWire& parsed) {
  int64_t shape[kWireMaxDims];
  for (size_t i = 0; i < parsed.ndim; ++i) shape[i] = get<int64_t>(message.data() + 64 + 8 * i);
  return validateShape(std::span<const int64_t>(shape, parsed.ndim), parsed.fields.count);
}

}  // namespace

Status fromWireInto(std::span<const uint8_t> message, EncodedTensor* out) {
  ParsedWire parsed;
  QCOMM_RETURN_IF_ERROR(parseWire(message, &parsed));
  const EncodedView& f = parsed.fields;
  EncodedTensor& e = *out;
  e.bits = f.bits;
  e.layout = f.layout;
  e.norm = f.norm;
  e.dtype = f.dtype;
  e.bucketSize = f.bucketSize;
  e.count = f.count;
  e.flags = f.flags;
  const uint8_t* p = message.data();
  e.shape.resize(parsed.ndim);
  for (size_t i = 0; i < parsed.ndim; ++i) e.shape[i] = get<int64_t>(p + 64 + 8 * i);
  const uint8_t* scales = p + parsed.scalesAt;
  e.scales.resize(parsed.numBuckets);
  for (int64_t b = 0; b < parsed.numBuckets; ++b) {
    e.scales[b] = e.dtype == DType::kFloat32 ? static_cast<double>(get<float>(scales + 4 * b))
                                             : get<double>(scales + 8 * b);
  }
  e.words.resize(parsed.wordCount);
  if (parsed.wordCount > 0) {
    std::memcpy(e.words.data(), p + parsed.wordsAt, 8 * e.words.size());
  }
  return validateEncoded(e);
}

Result<EncodedView> viewWire(std::span<const uint8_t> message) {
  static_assert(std::endian::native == std::endian::little,
                "viewWire reads the little-endian words and scales in place");
  if (reinterpret_cast<uintptr_t>(message.data()) % 8 != 0) {
    return failedPrecondition("a message viewed in place must start at an 8-byte aligned address",
                              " (this one is at offset ",
                              reinterpret_cast<uintptr_t>(message.data()) % 8,
                              "); copy it with fromWire instead");
  }
  ParsedWire parsed;
  QCOMM_RETURN_IF_ERROR(parseWire(message, &parsed));
  QCOMM_RETURN_IF_ERROR(checkWireShape(message, parsed));
  EncodedView view = parsed.fields;
  const uint8_t* p = message.data();
  const auto buckets = static_cast<size_t>(parsed.numBuckets);
  if (view.dtype == DType::kFloat32) {
    view.scalesF32 = {reinterpret_cast<const float*>(p + parsed.scalesAt), buckets};
  } else {
    view.scalesF64 = {reinterpret_cast<const double*>(p + parsed.scalesAt), buckets};
  }
  view.words = {reinterpret_cast<const uint64_t*>(p + parsed.wordsAt),
                static_cast<size_t>(parsed.wordCount)};
  QCOMM_RETURN_IF_ERROR(validateView(view));
  return view;
}

}  // namespace qcomm
