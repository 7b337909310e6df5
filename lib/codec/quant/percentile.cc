// Percentile clipping (notes 001 and 003): the range from percentiles instead of min/max, values
// outside it clamped. Percentiles as numpy's default ("linear") method computes them.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "codec/quant/quant_codecs.h"

namespace qcomm::quant {
namespace {

// numpy.percentile(x, p) with method='linear': virtual index p/100 * (n - 1), interpolated as
// numpy's _lerp does (from the upper neighbour when the fraction is >= 0.5).
template <typename T>
T percentileOf(std::vector<T>& x, double p) {
  const double virtualIndex = (p / 100.0) * static_cast<double>(x.size() - 1);
  const double below = std::floor(virtualIndex);
  const double gamma = virtualIndex - below;
  const size_t i = static_cast<size_t>(below);
  std::nth_element(x.begin(), x.begin() + i, x.end());
  if (i + 1 >= x.size()) return x[i];
  const T b = *std::min_element(x.begin() + i + 1, x.end());
  // In float64 for float32 input too, as numpy computes it; then rounded to T.
  return static_cast<T>(percentileLerp(static_cast<double>(x[i]), static_cast<double>(b), gamma));
}

}  // namespace

template <typename T>
BlockParams<T> percentileParams(const T* v, int64_t n, const QuantOptions& options) {
  std::vector<T> x(v, v + n);
  for (const T value : x) {
    if (!std::isfinite(value)) return {std::numeric_limits<T>::quiet_NaN(), 0};
  }
  if (options.symmetric) {
    for (T& value : x) value = std::fabs(value);
    return paramsFromRange(percentileOf(x, options.percentile), T(0), true, options.bits);
  }
  const T alpha = percentileOf(x, options.percentile);
  const T beta = percentileOf(x, 100.0 - options.percentile);
  return paramsFromRange(alpha, beta, false, options.bits);
}

template BlockParams<float> percentileParams(const float*, int64_t, const QuantOptions&);
template BlockParams<double> percentileParams(const double*, int64_t, const QuantOptions&);

}  // namespace qcomm::quant
