// The math of the block quantizers (linear symmetric/asymmetric, percentile, dynamic 8-bit,
// row-wise, fp16/bf16 casts), shared by the CPU driver and device code. Every step here is part of
// the wire format (docs/quantizers.md). T is float (CPU and GPU) or double (CPU, float64 input).
// Compile callers without FP contraction.
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#include "codec/qsgd_format.h"
#include "core/host_device.h"

namespace qcomm::quant {

// ---- dense packing: code i occupies bits [i*b, i*b + b) of the little-endian bit stream -------

// The stream bits of word w hold codes firstCode(w) .. lastCode(w) (the first and last may straddle
// into the neighbouring words).
QCOMM_HOST_DEVICE int64_t firstCode(int64_t word, int bits) { return (word * 64) / bits; }
QCOMM_HOST_DEVICE int64_t lastCode(int64_t word, int bits) { return (word * 64 + 63) / bits; }
QCOMM_HOST_DEVICE int64_t wordsFor(int64_t count, int bits) { return (count * bits + 63) / 64; }

// The part of code i (value `code`, `bits` wide) that lies in word w, shifted into place.
QCOMM_HOST_DEVICE uint64_t codeBitsInWord(uint32_t code, int64_t i, int bits, int64_t word) {
  const int64_t start = i * bits - word * 64;  // may be negative (code began in the word before)
  const uint64_t c = static_cast<uint64_t>(code);
  if (start >= 0) return start < 64 ? c << start : 0;
  return -start < bits ? c >> (-start) : 0;
}

// Reads code i from the stream.
QCOMM_HOST_DEVICE uint32_t readCode(const uint64_t* words, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const int64_t w = bit / 64;
  const int shift = static_cast<int>(bit % 64);
  uint64_t v = words[w] >> shift;
  if (shift + bits > 64) v |= words[w + 1] << (64 - shift);
  return static_cast<uint32_t>(v & ((uint64_t{1} << bits) - 1));
}

// ---- rounding -----------------------------------------------------------------------------------

// Round half to even (numpy's and torch's round) in the default rounding mode, and floor; the
// C functions, which host and device code both have.
QCOMM_HOST_DEVICE float roundEven(float y) { return nearbyintf(y); }
QCOMM_HOST_DEVICE double roundEven(double y) { return nearbyint(y); }
QCOMM_HOST_DEVICE float floorOf(float y) { return floorf(y); }
QCOMM_HOST_DEVICE double floorOf(double y) { return floor(y); }

// The uniform [0, 1) draw of value i: the 24 high bits of its Philox word (as QSGD's).
template <typename T>
QCOMM_HOST_DEVICE T uniform(uint32_t random) {
  return static_cast<T>(static_cast<int32_t>(random >> 8)) * static_cast<T>(0x1p-24);
}

// floor(y) + (u < frac(y)): unbiased, E = y.
template <typename T>
QCOMM_HOST_DEVICE T roundStochastic(T y, uint32_t random) {
  const T l = floorOf(y);
  return l + (uniform<T>(random) < y - l ? T(1) : T(0));
}

template <typename T>
QCOMM_HOST_DEVICE T clampTo(T y, T low, T high) {
  return y < low ? low : (y > high ? high : y);
}

// ---- linear and percentile ----------------------------------------------------------------------
// Symmetric: scale = alpha / (2^(b-1) - 1), q = clamp(round(x / scale), -qmax, qmax), stored as
// q + 2^(b-1); x' = q * scale. Asymmetric: scale = (alpha - beta) / (2^b - 1), z = round(-beta /
// scale), q = clamp(round(x / scale + z), 0, 2^b - 1); x' = scale * (q - z). A zero scale (all-zero
// block) gives q = z (0 for symmetric), so x' = 0.
// Asymmetric with stochastic rounding: the rounded z moves the grid [-z, 2^b-1-z] * scale off
// [beta, alpha] by up to half a step, and clamping the values outside it would bias them. So the
// range is cut into 2^b - 2 steps, scale = (alpha - beta) / (2^b - 2), and z = ceil(-beta / scale):
// the grid then reaches below beta and above alpha, every value lies between two grid points, and
// rounding is unbiased up to the ends.

QCOMM_HOST_DEVICE int32_t symmetricMax(int bits) { return (1 << (bits - 1)) - 1; }
QCOMM_HOST_DEVICE int32_t symmetricOffset(int bits) { return 1 << (bits - 1); }
QCOMM_HOST_DEVICE int32_t asymmetricMax(int bits) { return (1 << bits) - 1; }

template <typename T>
QCOMM_HOST_DEVICE T symmetricScale(T alpha, int bits) {
  return alpha / static_cast<T>(symmetricMax(bits));
}

template <typename T>
QCOMM_HOST_DEVICE T asymmetricScale(T alpha, T beta, int bits) {
  return (alpha - beta) / static_cast<T>(asymmetricMax(bits));
}

template <typename T>
QCOMM_HOST_DEVICE T asymmetricZero(T beta, T scale) {
  return scale > T(0) ? roundEven(-beta / scale) : T(0);
}

// The stochastic variants (above): one step fewer, the zero point rounded up.
template <typename T>
QCOMM_HOST_DEVICE T asymmetricStochasticScale(T alpha, T beta, int bits) {
  return (alpha - beta) / static_cast<T>(asymmetricMax(bits) - 1);
}

template <typename T>
QCOMM_HOST_DEVICE T asymmetricStochasticZero(T beta, T scale) {
  return scale > T(0) ? -floorOf(beta / scale) : T(0);
}

// The stored code of x. `stochastic` draws with `random`.
template <typename T>
QCOMM_HOST_DEVICE uint32_t linearCode(T x, T scale, T zero, bool symmetric, bool stochastic,
                                      uint32_t random, int bits) {
  if (symmetric) {
    const T top = static_cast<T>(symmetricMax(bits));
    T q = T(0);
    if (scale > T(0)) {
      const T y = x / scale;
      q = clampTo(stochastic ? roundStochastic(y, random) : roundEven(y), -top, top);
    }
    return static_cast<uint32_t>(static_cast<int32_t>(q) + symmetricOffset(bits));
  }
  const T top = static_cast<T>(asymmetricMax(bits));
  T q = zero;
  if (scale > T(0)) {
    const T y = x / scale + zero;
    q = clampTo(stochastic ? roundStochastic(y, random) : roundEven(y), T(0), top);
  }
  return static_cast<uint32_t>(static_cast<int32_t>(q));
}

// The signed code (the notes' view) of a stored code.
QCOMM_HOST_DEVICE int32_t linearSigned(uint32_t code, bool symmetric, int bits) {
  return symmetric ? static_cast<int32_t>(code) - symmetricOffset(bits) : static_cast<int32_t>(code);
}

template <typename T>
QCOMM_HOST_DEVICE T linearValue(uint32_t code, T scale, T zero, bool symmetric, int bits) {
  if (symmetric) return static_cast<T>(linearSigned(code, true, bits)) * scale;
  return scale * (static_cast<T>(static_cast<int32_t>(code)) - zero);
}

// ---- row-wise (note 004): zero point = the row's min -----------------------------------------
// scale = (max - min) / (2^b - 1), q = clamp(round((x - min) / scale), 0, 2^b - 1),
// x' = q * scale + min.

template <typename T>
QCOMM_HOST_DEVICE uint32_t rowwiseCode(T x, T scale, T minimum, bool stochastic, uint32_t random,
                                       int bits) {
  if (!(scale > T(0))) return 0;
  const T y = (x - minimum) / scale;
  const T q = clampTo(stochastic ? roundStochastic(y, random) : roundEven(y), T(0),
                      static_cast<T>(asymmetricMax(bits)));
  return static_cast<uint32_t>(static_cast<int32_t>(q));
}

template <typename T>
QCOMM_HOST_DEVICE T rowwiseValue(uint32_t code, T scale, T minimum) {
  return static_cast<T>(static_cast<int32_t>(code)) * scale + minimum;
}

// ---- dynamic 8-bit (note 002): 256 sorted map values in [-1, 1], absmax-normalized ----------

// Index of the nearest map entry to y (ties to the lower index, like numpy's argmin), by binary
// search; stochastic picks between the two neighbours with probability proportional to nearness.
template <typename T>
QCOMM_HOST_DEVICE uint32_t dynamicCode(T y, const float* map, bool stochastic, uint32_t random) {
  // First index with map[i] >= y, in [0, 256].
  int lo = 0, hi = 256;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (static_cast<T>(map[mid]) < y) lo = mid + 1; else hi = mid;
  }
  if (lo == 0) return 0;
  if (lo == 256) return 255;
  const T below = static_cast<T>(map[lo - 1]);
  const T above = static_cast<T>(map[lo]);
  if (stochastic) {
    const T p = (y - below) / (above - below);  // in [0, 1]
    return uniform<T>(random) < p ? static_cast<uint32_t>(lo) : static_cast<uint32_t>(lo - 1);
  }
  return (y - below) <= (above - y) ? static_cast<uint32_t>(lo - 1) : static_cast<uint32_t>(lo);
}

template <typename T>
QCOMM_HOST_DEVICE T dynamicValue(uint32_t code, T absmax, const float* map) {
  return static_cast<T>(map[code]) * absmax;
}

// ---- casts --------------------------------------------------------------------------------------

QCOMM_HOST_DEVICE uint32_t floatBits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

QCOMM_HOST_DEVICE float bitsFloat(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// bfloat16: the high 16 bits, rounded to nearest even (NaN stays a quiet NaN).
QCOMM_HOST_DEVICE uint32_t toBf16(float x) {
  const uint32_t u = floatBits(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (u >> 16) | 0x40u;
  return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

QCOMM_HOST_DEVICE float fromBf16(uint32_t h) { return bitsFloat(h << 16); }

// IEEE half, round to nearest even, overflow to infinity, subnormals kept.
QCOMM_HOST_DEVICE uint32_t toFp16(float x) {
  const uint32_t u = floatBits(x);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7E00u;  // NaN
  if (a >= 0x477FF000u) return sign | 0x7C00u;  // rounds to or beyond 65520: infinity
  if (a < 0x38800000u) {                        // below 2^-14: subnormal half (or zero)
    if (a < 0x33000000u) return sign;           // below half of the smallest subnormal
    const uint32_t e = a >> 23;
    const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    const int shift = 126 - static_cast<int>(e);  // x / 2^-24 = m * 2^(e - 126); e in [102, 112]
    const uint32_t half = 1u << (shift - 1);
    const uint32_t rest = m & ((1u << shift) - 1u);
    uint32_t r = m >> shift;
    if (rest > half || (rest == half && (r & 1u))) ++r;
    return sign | r;
  }
  const uint32_t rounded = a + 0xFFFu + ((a >> 13) & 1u);
  return sign | ((rounded - 0x38000000u) >> 13);
}

QCOMM_HOST_DEVICE float fromFp16(uint32_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu;
  const uint32_t m = h & 0x3FFu;
  if (e == 0x1Fu) return bitsFloat(sign | 0x7F800000u | (m << 13));
  if (e == 0) {
    const float magnitude = static_cast<float>(m) * 0x1p-24f;  // exact
    return sign ? -magnitude : magnitude;
  }
  return bitsFloat(sign | ((e + 112u) << 23) | (m << 13));
}

// ---- per-value dispatch on the codec ------------------------------------------------------------

// Linear parameters from a range: symmetric from alpha = max |x|, asymmetric from [beta, alpha]
// widened to include 0 (so that 0 is exact, as PyTorch's observers do). Shared by linear and
// percentile, on the CPU and the GPU.
template <typename T>
struct BlockParams {
  T scale = 0;  // NaN: the block held NaN/Inf
  T zero = 0;   // zero point (asymmetric: integer-valued; row-wise: the row's min)
};

// Near FLT_MAX the grid's ends can overflow even where the scale does not: such a block cannot be
// decoded, so its scale becomes non-finite (nonFiniteIfOverflowed then marks the block).
template <typename T>
QCOMM_HOST_DEVICE T unlessGridOverflows(T scale, T low, T high) {
  const T a = scale * low, b = scale * high;
  return a - a == T(0) && b - b == T(0) ? scale : (a - a) + (b - b);
}

template <typename T>
QCOMM_HOST_DEVICE BlockParams<T> paramsFromRange(T alpha, T beta, bool symmetric, int bits,
                                                 bool stochastic) {
  BlockParams<T> p;
  if (symmetric) {
    const T top = static_cast<T>(symmetricMax(bits));
    p.scale = unlessGridOverflows(symmetricScale(alpha, bits), -top, top);
    return p;
  }
  alpha = alpha > T(0) ? alpha : T(0);
  beta = beta < T(0) ? beta : T(0);
  if (stochastic) {
    p.scale = asymmetricStochasticScale(alpha, beta, bits);
    p.zero = asymmetricStochasticZero(beta, p.scale);
  } else {
    p.scale = asymmetricScale(alpha, beta, bits);
    p.zero = asymmetricZero(beta, p.scale);
  }
  p.scale = unlessGridOverflows(p.scale, -p.zero, static_cast<T>(asymmetricMax(bits)) - p.zero);
  return p;
}

// Row-wise parameters of a row spanning [lo, hi]: scale and zero point (the minimum). The top of
// the grid is q * scale + lo: checked as the decoder computes it.
template <typename T>
QCOMM_HOST_DEVICE BlockParams<T> rowwiseFromRange(T hi, T lo, int bits) {
  BlockParams<T> p;
  p.scale = asymmetricScale(hi, lo, bits);
  p.zero = lo;
  const T top = static_cast<T>(asymmetricMax(bits)) * p.scale + lo;
  if (!(top - top == T(0))) p.scale = top - top;
  return p;
}

// A block whose scale overflowed (its range exceeds the type's largest value, as max - min can
// for finite values near FLT_MAX) cannot be represented: it is treated as a non-finite block (NaN
// scale, zero point 0), flagged in the message and decoded as NaN, like a block holding NaN or
// Inf, instead of decoding to garbage. (x - x is NaN exactly when x is infinite or NaN.)
template <typename T>
QCOMM_HOST_DEVICE BlockParams<T> nonFiniteIfOverflowed(BlockParams<T> p) {
  if (!(p.scale - p.scale == T(0))) {
    p.scale = p.scale - p.scale;
    p.zero = T(0);
  }
  return p;
}

// numpy.percentile's default ("linear") interpolation between the order statistics a <= b around
// the virtual index p/100 * (n - 1), whose fraction is gamma: in float64, from the upper
// neighbour when gamma >= 0.5, as numpy's _lerp.
QCOMM_HOST_DEVICE double percentileLerp(double a, double b, double gamma) {
  const double diff = b - a;
  return gamma >= 0.5 ? b - diff * (1.0 - gamma) : a + diff * gamma;
}

// Dynamic: a block's scale is its absmax, so y = x / scale lies in [-1, 1]; but the map's most
// negative value is map[0] = -0.99297, and under stochastic rounding the values below it would be
// clipped (biased). The scale is then absmax / |map[0]|: every y lies inside the map.
template <typename T>
QCOMM_HOST_DEVICE T dynamicScale(T absmax, bool stochastic, const float* map) {
  return stochastic ? absmax / static_cast<T>(-map[0]) : absmax;
}

// The stored code of x under `kind` (random: its Philox word, used when stochastic).
template <typename T>
QCOMM_HOST_DEVICE uint32_t encodeValue(QuantKind kind, T x, T scale, T zero, bool symmetric,
                                       bool stochastic, uint32_t random, int bits,
                                       const float* map) {
  switch (kind) {
    case QuantKind::kLinear:
    case QuantKind::kPercentile:
      return linearCode(x, scale, zero, symmetric, stochastic, random, bits);
    case QuantKind::kDynamic:
      return dynamicCode(scale > T(0) ? x / scale : T(0), map, stochastic, random);
    case QuantKind::kRowwise:
      return rowwiseCode(x, scale, zero, stochastic, random, bits);
    case QuantKind::kFp16:
      return toFp16(static_cast<float>(x));
    case QuantKind::kBf16:
      return toBf16(static_cast<float>(x));
  }
  return 0;
}

template <typename T>
QCOMM_HOST_DEVICE T decodeValue(QuantKind kind, uint32_t code, T scale, T zero, bool symmetric,
                                int bits, const float* map) {
  switch (kind) {
    case QuantKind::kLinear:
    case QuantKind::kPercentile:
      return linearValue(code, scale, zero, symmetric, bits);
    case QuantKind::kDynamic:
      return dynamicValue(code, scale, map);
    case QuantKind::kRowwise:
      return rowwiseValue(code, scale, zero);
    case QuantKind::kFp16:
      return static_cast<T>(fromFp16(code));
    case QuantKind::kBf16:
      return static_cast<T>(fromBf16(code));
  }
  return T(0);
}

}  // namespace qcomm::quant
