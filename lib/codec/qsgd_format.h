// The QSGD format math, shared by the CPU coder and the CUDA kernels. Every arithmetic step here is
// part of the wire format (docs/format.md): change one and the words change. Compile the callers
// without FP contraction (-ffp-contract=off, nvcc --fmad=false) so that a*b+c is never fused.
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "qcomm/format_types.h"

namespace qcomm::qsgd {

// ---- geometry ----------------------------------------------------------------------------------

// Bits per code: q magnitude bits plus the sign field.
QCOMM_HOST_DEVICE int codeWidth(int bits, Layout layout) {
  return bits + (layout == Layout::kSeed ? 2 : 1);
}
// k: codes per 64-bit word (also the number of sections of a bucket).
QCOMM_HOST_DEVICE int valuesPerWord(int bits, Layout layout) {
  return 64 / codeWidth(bits, layout);
}
// L: words of a bucket of `count` values (its section length).
QCOMM_HOST_DEVICE int64_t sectionLength(int64_t count, int k) { return (count + k - 1) / k; }
// The most codes a word holds (q = 1, compact layout: 2-bit codes).
inline constexpr int kMaxValuesPerWord = 32;
// Slot j of a word (section j) occupies bits [slotShift, slotShift + width): section 0 is the most
// significant, as in the seed.
QCOMM_HOST_DEVICE constexpr int slotShift(int slot, int k, int width) {
  return (k - 1 - slot) * width;
}
// s = 2^q - 1: the largest magnitude code.
QCOMM_HOST_DEVICE uint32_t levels(int bits) { return (1u << bits) - 1u; }
QCOMM_HOST_DEVICE uint64_t codeMask(int width) { return (uint64_t{1} << width) - 1u; }
// Code of a padding slot (beyond the bucket's values): the code of the value 0.
QCOMM_HOST_DEVICE uint32_t padCode(int bits, Layout layout) {
  return layout == Layout::kSeed ? (1u << bits) : 0u;
}

// ---- stochastic rounding: Philox4x32-10 ---------------------------------------------------------
// Value i of a tensor takes output word (i % 4) of philox4x32_10(counter, key) with
// counter = {lo(i/4), hi(i/4), lo(step), hi(step)} and key = philoxKey(seed, rank, tensorId).

inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
inline constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
inline constexpr int kPhiloxRounds = 10;

QCOMM_HOST_DEVICE uint64_t splitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

struct PhiloxKey {
  uint32_t k0;
  uint32_t k1;
};

QCOMM_HOST_DEVICE PhiloxKey philoxKey(uint64_t seed, uint32_t rank, uint32_t tensorId) {
  const uint64_t stream = (uint64_t{rank} << 32) | tensorId;
  const uint64_t key = splitMix64(seed ^ splitMix64(stream));
  return {static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)};
}

// One Philox4x32 round on c[0..3] (Salmon et al. 2011; identical to Random123's philox4x32).
QCOMM_HOST_DEVICE void philoxRound(uint32_t c[4], uint32_t k0, uint32_t k1) {
  const uint64_t p0 = uint64_t{kPhiloxM0} * c[0];
  const uint64_t p1 = uint64_t{kPhiloxM1} * c[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  const uint32_t n0 = hi1 ^ c[1] ^ k0;
  const uint32_t n2 = hi0 ^ c[3] ^ k1;
  c[0] = n0;
  c[1] = lo1;
  c[2] = n2;
  c[3] = lo0;
}

// Philox4x32-10 of counter c (in place), key k.
QCOMM_HOST_DEVICE void philox4x32_10(uint32_t c[4], PhiloxKey key) {
  uint32_t k0 = key.k0, k1 = key.k1;
  for (int round = 0; round < kPhiloxRounds; ++round) {
    philoxRound(c, k0, k1);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// How many random bits a value draws (QsgdOptions::randomBits): 16, the options' default, which
// halves the Philox work, or 32. With 32, value i takes word i % 4 of block i / 4. With 16, value i
// takes the low (i even) or high (i odd) half of word (i / 2) % 4 of block i / 8, placed in the top
// 16 bits of its 32-bit draw (the low 16 bits zero), so that quantizeF32 reads both the same way;
// rounding is then unbiased to within 2^-16 of a step instead of 2^-24 (docs/format.md).
QCOMM_HOST_DEVICE int valuesPerPhiloxBlock(int randomBits) { return randomBits == 16 ? 8 : 4; }
QCOMM_HOST_DEVICE int philoxBlockShift(int randomBits) { return randomBits == 16 ? 3 : 2; }

// The draw of value `index` from the words c[0..3] of its Philox block.
QCOMM_HOST_DEVICE uint32_t drawOfBlock(const uint32_t c[4], int64_t index, int randomBits) {
  if (randomBits == 16) {
    const uint32_t w = c[(index >> 1) & 3];
    return (index & 1) != 0 ? (w & 0xFFFF0000u) : (w << 16);
  }
  return c[index & 3];
}

// The random draw that value `index` of the tensor uses at `step`.
QCOMM_HOST_DEVICE uint32_t randomBits(int64_t index, uint64_t step, PhiloxKey key,
                                      int randomBitsPerValue = 32) {
  const uint64_t block = static_cast<uint64_t>(index) >> philoxBlockShift(randomBitsPerValue);
  uint32_t c[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                   static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32)};
  philox4x32_10(c, key);
  return drawOfBlock(c, index, randomBitsPerValue);
}

// ---- float32 quantization -----------------------------------------------------------------------

// The largest scale stored: two ulps below FLT_MAX, so that s * (scale / s) never rounds to Inf
// for any q (with FLT_MAX itself it does for 9 of the 16 values of q).
inline constexpr float kMaxScaleF32 = 0x1.fffffap+127f;
// Scales below kTinyF32 are lifted by the exact factor 2^64 so that s / scale cannot overflow and
// scale / s cannot lose precision to underflow.
inline constexpr float kTinyF32 = 0x1p-96f;
inline constexpr float kUpF32 = 0x1p64f;
inline constexpr float kDownF32 = 0x1p-64f;

struct EncodeScaleF32 {
  float pre;   // exact power of two applied to |v| first
  float mult;  // s / (scale * pre), rounded once
};

QCOMM_HOST_DEVICE EncodeScaleF32 encodeScaleF32(float scale, uint32_t s) {
  if (!(scale > 0.0f)) return {1.0f, 0.0f};  // all-zero bucket: every magnitude code is 0
  if (scale < kTinyF32) return {kUpF32, static_cast<float>(s) / (scale * kUpF32)};
  return {1.0f, static_cast<float>(s) / scale};
}

// xi: the stochastically rounded magnitude code of |v| in [0, s]. Unbiased: E[xi] = y.
// Integer steps go through int32 (every quantity is below 2^24) so that SIMD converts them
// directly.
QCOMM_HOST_DEVICE uint32_t quantizeF32(float absValue, EncodeScaleF32 es, uint32_t random,
                                       uint32_t s) {
  const float y = (absValue * es.pre) * es.mult;
  const int32_t l = static_cast<int32_t>(y);  // floor, since y >= 0
  const float p = y - static_cast<float>(l);  // exact
  const float u = static_cast<float>(static_cast<int32_t>(random >> 8)) * 0x1p-24f;  // exact, [0,1)
  const int32_t xi = l + (u < p ? 1 : 0);
  const int32_t top = static_cast<int32_t>(s);
  return static_cast<uint32_t>(xi < top ? xi : top);
}

// The full code of a value whose magnitude code is xi. Seed: sign field 2 (v > 0), 1 (v == 0),
// 0 (v < 0); compact: a 1 bit for v < 0.
QCOMM_HOST_DEVICE uint32_t signedCodeF32(float value, uint32_t xi, int bits, Layout layout) {
  if (layout == Layout::kSeed) {
    const uint32_t sign =
        static_cast<uint32_t>(value > 0.0f) + static_cast<uint32_t>(value >= 0.0f);
    return (sign << bits) | xi;
  }
  return (static_cast<uint32_t>(value < 0.0f) << bits) | xi;
}

struct DecodeScaleF32 {
  float unit;  // (scale * pre) / s
  float post;  // exact power of two applied last
};

QCOMM_HOST_DEVICE DecodeScaleF32 decodeScaleF32(float scale, uint32_t s) {
  if (scale < kTinyF32) return {(scale * kUpF32) / static_cast<float>(s), kDownF32};
  return {scale / static_cast<float>(s), 1.0f};
}

// Decodes one code. The seed layout's sign field f gives the factor f - 1 (f = 3 never comes from
// qcomm's encoder, but the seed notebook can write it and its decoder reads it as 2).
QCOMM_HOST_DEVICE float decodeF32(uint32_t code, int bits, Layout layout, DecodeScaleF32 ds) {
  const uint32_t xi = code & levels(bits);
  const float magnitude = (static_cast<float>(xi) * ds.unit) * ds.post;
  const uint32_t sign = code >> bits;
  if (layout == Layout::kSeed)
    return static_cast<float>(static_cast<int32_t>(sign) - 1) * magnitude;
  return sign != 0u ? -magnitude : magnitude;
}

// ---- float32 L2 norm: the fixed reduction order -------------------------------------------------
// Squares are taken in fp64 (exact for fp32 inputs). A bucket is cut into tiles of kNormTile
// values; in a tile, lane l (of kNormLanes) adds values l, l+32, ... in order, then the lanes are
// folded by halves (lane l += lane l + h for h = 16, 8, 4, 2, 1). Tile sums are folded pairwise,
// level by level ((t0+t1), (t2+t3), ...; an odd last one carried up). norm = float(sqrt(sum)).
inline constexpr int kNormTile = 256;
inline constexpr int kNormLanes = 32;

QCOMM_HOST_DEVICE double foldLanes(double lanes[kNormLanes]) {
  for (int half = kNormLanes / 2; half >= 1; half /= 2) {
    for (int l = 0; l < half; ++l) lanes[l] += lanes[l + half];
  }
  return lanes[0];
}

// Folds sums[0..count) pairwise in place, level by level; returns the total (0 for count == 0).
QCOMM_HOST_DEVICE double foldPairwise(double* sums, int64_t count) {
  if (count == 0) return 0.0;
  while (count > 1) {
    const int64_t half = count / 2;
    for (int64_t i = 0; i < half; ++i) sums[i] = sums[2 * i] + sums[2 * i + 1];
    if (count & 1) sums[half] = sums[count - 1];
    count = half + (count & 1);
  }
  return sums[0];
}

// The stored scale of an fp32 bucket from its fp64 sum of squares or its max |v|.
QCOMM_HOST_DEVICE float clampScaleF32(float scale) {
  return scale > kMaxScaleF32 ? kMaxScaleF32 : scale;
}

// ---- float64 (CPU only, but kept beside its fp32 sibling) ---------------------------------------

inline constexpr double kMaxScaleF64 = 0x1.ffffffffffffdp+1023;
inline constexpr double kTinyF64 = 0x1p-900;
inline constexpr double kUpF64 = 0x1p512;
// Below this scale the decoder uses the seed notebook's order ((f-1)*xi*scale)/s, which cannot
// overflow there; above it, (f-1)*xi*(scale/s).
inline constexpr double kSeedOrderLimitF64 = 0x1p1000;

struct EncodeScaleF64 {
  double pre;
  double mult;
};

QCOMM_HOST_DEVICE EncodeScaleF64 encodeScaleF64(double scale, uint32_t s) {
  if (!(scale > 0.0)) return {1.0, 0.0};
  if (scale < kTinyF64) return {kUpF64, static_cast<double>(s) / (scale * kUpF64)};
  return {1.0, static_cast<double>(s) / scale};
}

QCOMM_HOST_DEVICE uint32_t quantizeF64(double absValue, EncodeScaleF64 es, uint32_t random,
                                       uint32_t s) {
  const double y = (absValue * es.pre) * es.mult;
  const int64_t l = static_cast<int64_t>(y);
  const double p = y - static_cast<double>(l);
  const double u = static_cast<double>(random) * 0x1p-32;
  const int64_t xi = l + (u < p ? 1 : 0);
  const int64_t top = static_cast<int64_t>(s);
  return static_cast<uint32_t>(xi < top ? xi : top);
}

QCOMM_HOST_DEVICE uint32_t signedCodeF64(double value, uint32_t xi, int bits, Layout layout) {
  if (layout == Layout::kSeed) {
    const uint32_t sign = static_cast<uint32_t>(value > 0.0) + static_cast<uint32_t>(value >= 0.0);
    return (sign << bits) | xi;
  }
  return (static_cast<uint32_t>(value < 0.0) << bits) | xi;
}

QCOMM_HOST_DEVICE double decodeF64(uint32_t code, int bits, Layout layout, double scale) {
  const uint32_t s = levels(bits);
  const double xi = static_cast<double>(code & s);
  const uint32_t sign = code >> bits;
  const double factor = layout == Layout::kSeed
                            ? static_cast<double>(static_cast<int32_t>(sign) - 1)
                            : (sign != 0u ? -1.0 : 1.0);
  if (scale <= kSeedOrderLimitF64) return ((factor * xi) * scale) / static_cast<double>(s);
  return (factor * xi) * (scale / static_cast<double>(s));
}

}  // namespace qcomm::qsgd
