// Byte-level helpers of the wire messages (QSGD's in wire.cc, the block quantizers' in
// quant/quant_wire.cc): little-endian fields, padding, the config hash's FNV-1a.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "qcomm/format_types.h"

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

}  // namespace qcomm::wire
