// Plain enums and constants of the QSGD wire format. No standard-library containers here: this
// header is included by device code too.
#pragma once

#include <cstdint>

namespace qcomm {

enum class CodecId : uint8_t { kQsgd = 1 };

// How codes are packed into 64-bit words (docs/format.md).
enum class Layout : uint8_t {
  kSeed = 0,     // 2-bit sign field (sign+1), bit-compatible with the seed notebook
  kCompact = 1,  // 1-bit sign
};

// The per-bucket scale QSGD normalises by.
enum class NormKind : uint8_t {
  kL2 = 0,   // ||v||_2, as in the paper and the seed
  kMax = 1,  // max |v_i|, lower variance
};

// Element type of the tensor that was encoded (and that decode returns by default).
enum class DType : uint8_t { kFloat32 = 0, kFloat64 = 1 };

// Wire codec ids of the block quantizers (qcomm/quantizers.h; 1 is QSGD).
enum class QuantKind : uint8_t {
  kLinear = 2,
  kPercentile = 3,
  kDynamic = 4,
  kRowwise = 5,
  kFp16 = 6,
  kBf16 = 7,
};

inline constexpr int kMinBits = 1;
inline constexpr int kMaxBits = 16;

// Message flags (a bit set in the header).
inline constexpr uint32_t kFlagNonFinite = 1u << 0;  // some bucket held NaN or +-Inf
inline constexpr uint32_t kFlagCrc = 1u << 1;        // the header carries a CRC32C of the payload
// QSGD: the words were rounded with 16 random bits per value (QsgdOptions::randomBits), not 32.
// Decoding is the same; the flag keeps the message self-describing and the config hash honest.
inline constexpr uint32_t kFlagRandom16 = 1u << 2;
inline constexpr uint32_t kKnownFlags = kFlagNonFinite | kFlagCrc | kFlagRandom16;

}  // namespace qcomm
