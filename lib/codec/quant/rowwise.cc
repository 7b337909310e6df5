// Row-wise quantization (note 004): per row, scale = (max - min) / (2^b - 1) and zero point = min,
// so that products of row- and column-quantized matrices can be computed in integers.
#include <cmath>
#include <limits>

#include "codec/quant/quant_codecs.h"

namespace qcomm::quant {

template <typename T>
BlockParams<T> rowwiseParams(const T* v, int64_t n, const QuantOptions& options) {
  T lo = v[0], hi = v[0];
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return {std::numeric_limits<T>::quiet_NaN(), 0};
    lo = v[i] < lo ? v[i] : lo;
    hi = v[i] > hi ? v[i] : hi;
  }
  return rowwiseFromRange(hi, lo, options.bits);
}

template BlockParams<float> rowwiseParams(const float*, int64_t, const QuantOptions&);
template BlockParams<double> rowwiseParams(const double*, int64_t, const QuantOptions&);

}  // namespace qcomm::quant
