// What every qcomm wire message shares (QSGD's in wire.cc, the block quantizers' in
// quant/quant_wire.cc): little-endian fields, padding, the config hash's FNV-1a, the header prefix
// (magic, version, header size, ndim) and the payload CRC32C.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "qcomm/format_types.h"
#include "qcomm/status.h"
#include "qcomm/wire.h"

namespace qcomm::wire {

static_assert(std::endian::native == std::endian::little,
              "qcomm's wire code assumes little-endian");

template <typename T>
void put(uint8_t* p, T value) {
  std::memcpy(p, &value, sizeof(T));
}

template <typename T>
T get(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// Scales (and zero points) travel in the tensor's precision.
inline size_t scaleBytes(DType dtype) { return dtype == DType::kFloat32 ? 4 : 8; }
inline size_t padTo8(size_t n) { return (n + 7) / 8 * 8; }

inline constexpr uint64_t kFnvOffset = 0xCBF29CE484222325ull;
inline uint64_t fnv1a(uint64_t hash, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) hash = (hash ^ p[i]) * 0x100000001B3ull;
  return hash;
}

// Zeroes the message and writes the prefix every codec shares: magic, version, header size (the
// 64 fixed bytes plus 8 per dimension) and ndim. Returns the header size.
inline size_t writeHeaderPrefix(std::span<uint8_t> out, size_t ndim) {
  uint8_t* p = out.data();
  std::memset(p, 0, out.size());
  const size_t headerBytes = kWireHeaderBytes + 8 * ndim;
  put<uint32_t>(p + 0, kWireMagic);
  put<uint16_t>(p + 4, kWireVersion);
  put<uint16_t>(p + 6, static_cast<uint16_t>(headerBytes));
  put<uint16_t>(p + 14, static_cast<uint16_t>(ndim));
  return headerBytes;
}

// Checks the shared prefix of a received message before anything else is read; returns the
// header size (fixed header plus shape). Errors are DataLoss and name the field.
inline Result<size_t> checkHeaderPrefix(std::span<const uint8_t> message) {
  const size_t size = message.size();
  const uint8_t* p = message.data();
  if (size < kWireHeaderBytes) {
    return dataLoss("message is ", size, " bytes, shorter than the ", kWireHeaderBytes,
                    "-byte header");
  }
  const uint32_t magic = get<uint32_t>(p);
  if (magic != kWireMagic) {
    return dataLoss("bad magic 0x", std::hex, magic, " (expected 0x", kWireMagic,
                    "): not a qcomm message");
  }
  const uint16_t version = get<uint16_t>(p + 4);
  if (version != kWireVersion) {
    return dataLoss("unknown format version ", version, " (this build reads version ", kWireVersion,
                    ")");
  }
  const uint16_t ndim = get<uint16_t>(p + 14);
  if (ndim > kWireMaxDims) return dataLoss("ndim ", ndim, " exceeds ", kWireMaxDims);
  const size_t headerBytes = get<uint16_t>(p + 6);
  if (headerBytes != kWireHeaderBytes + 8 * size_t{ndim}) {
    return dataLoss("header bytes field is ", headerBytes, " but ndim ", ndim, " needs ",
                    kWireHeaderBytes + 8 * size_t{ndim});
  }
  if (size < headerBytes) {
    return dataLoss("message is ", size, " bytes, shorter than its ", headerBytes,
                    "-byte header and shape");
  }
  return headerBytes;
}

// The CRC32C of the payload (everything after the header and shape), at offset 20.
inline void putPayloadCrc(std::span<uint8_t> message, size_t headerBytes) {
  put<uint32_t>(message.data() + 20, crc32c(message.subspan(headerBytes)));
}

// With the CRC flag, the stored CRC must match the payload; without it, the field must be zero.
inline Status checkPayloadCrc(std::span<const uint8_t> message, size_t headerBytes,
                              uint32_t flags) {
  const uint32_t stored = get<uint32_t>(message.data() + 20);
  if ((flags & kFlagCrc) == 0) {
    if (stored != 0) return dataLoss("CRC field is set but the CRC flag is clear");
    return Status::ok();
  }
  const uint32_t actual = crc32c(message.subspan(headerBytes));
  if (stored != actual) {
    return dataLoss("payload CRC32C mismatch: header says 0x", std::hex, stored,
                    ", payload hashes to 0x", actual);
  }
  return Status::ok();
}

}  // namespace qcomm::wire
