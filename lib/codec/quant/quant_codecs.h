// The block quantizers' per-block parameters, one codec per file (linear.cc, percentile.cc,
// dynamic.cc, rowwise.cc; casts need none), and the per-value code and value of each kind, on top
// of the shared math in codec/quant_format.h.
#pragma once

#include <cstdint>

#include "codec/quant_format.h"
#include "qcomm/quantizers.h"

namespace qcomm::quant {

template <typename T>
struct BlockParams {
  T scale = 0;   // NaN: the block held NaN/Inf
  T zero = 0;    // zero point (asymmetric: integer-valued; row-wise: the row's min)
};

// Each codec's parameters of one block of n >= 1 values.
template <typename T>
BlockParams<T> linearParams(const T* v, int64_t n, const QuantOptions& options);
template <typename T>
BlockParams<T> percentileParams(const T* v, int64_t n, const QuantOptions& options);
template <typename T>
BlockParams<T> dynamicParams(const T* v, int64_t n, const QuantOptions& options);
template <typename T>
BlockParams<T> rowwiseParams(const T* v, int64_t n, const QuantOptions& options);

// Linear parameters from a range: symmetric from alpha = max |x|, asymmetric from [beta, alpha]
// widened to include 0 (so that 0 is exact, as PyTorch's observers do). Shared by linear and
// percentile.
template <typename T>
BlockParams<T> paramsFromRange(T alpha, T beta, const QuantOptions& options) {
  BlockParams<T> p;
  if (options.symmetric) {
    p.scale = symmetricScale(alpha, options.bits);
    return p;
  }
  alpha = alpha > T(0) ? alpha : T(0);
  beta = beta < T(0) ? beta : T(0);
  p.scale = asymmetricScale(alpha, beta, options.bits);
  p.zero = asymmetricZero(beta, p.scale);
  return p;
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
