// Linear quantization (note 001): symmetric from max |x|, asymmetric from [min, max].
#include <cmath>
#include <limits>

#include "codec/quant/quant_codecs.h"

namespace qcomm::quant {

template <typename T>
BlockParams<T> linearParams(const T* v, int64_t n, const QuantOptions& options) {
  T lo = v[0], hi = v[0], absmax = 0;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    finite &= std::isfinite(v[i]);
    lo = v[i] < lo ? v[i] : lo;
    hi = v[i] > hi ? v[i] : hi;
    const T a = std::fabs(v[i]);
    absmax = a > absmax ? a : absmax;
  }
  if (!finite) return {std::numeric_limits<T>::quiet_NaN(), 0};
  return paramsFromRange(options.symmetric ? absmax : hi, lo, options.symmetric, options.bits,
                         options.rounding == Rounding::kStochastic);
}

template BlockParams<float> linearParams(const float*, int64_t, const QuantOptions&);
template BlockParams<double> linearParams(const double*, int64_t, const QuantOptions&);

}  // namespace qcomm::quant
