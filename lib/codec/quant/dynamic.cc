// Dynamic 8-bit quantization (note 002, after bitsandbytes): 256 values from a dynamic exponent and
// fraction, each block normalized by its absmax, codes found by binary search.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "codec/quant/quant_codecs.h"

namespace qcomm {
namespace {

// numpy.linspace(start, stop, num): i * step + start, the last value exactly stop.
std::vector<double> linspace(double start, double stop, int num) {
  std::vector<double> y(num);
  const double step = (stop - start) / (num - 1);
  for (int i = 0; i < num; ++i) y[i] = static_cast<double>(i) * step + start;
  y[num - 1] = stop;
  return y;
}

// create_dynamic_map(signed=True, n=7) in float64, then float32.
std::array<float, 256> makeDynamicMap() {
  constexpr int kExponentBits = 7;
  std::vector<double> data;
  for (int i = 0; i < kExponentBits; ++i) {
    const int fractionItems = (1 << i) + 1;  // 2^(i + 7 - n) + 1
    const std::vector<double> b = linspace(0.1, 1.0, fractionItems);
    const double power = std::pow(10.0, -(kExponentBits - 1) + i);
    for (int j = 0; j + 1 < fractionItems; ++j) {
      const double mean = (b[j] + b[j + 1]) / 2.0;
      data.push_back(power * mean);
      data.push_back(-(power * mean));
    }
  }
  data.push_back(0.0);
  data.push_back(1.0);
  std::sort(data.begin(), data.end());
  std::array<float, 256> map{};
  for (size_t i = 0; i < map.size(); ++i) map[i] = static_cast<float>(data[i]);
  return map;
}

}  // namespace

std::span<const float, 256> dynamicMap() {
  static const std::array<float, 256> map = makeDynamicMap();
  return map;
}

namespace quant {

template <typename T>
BlockParams<T> dynamicParams(const T* v, int64_t n, const QuantOptions&) {
  T absmax = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return {std::numeric_limits<T>::quiet_NaN(), 0};
    const T a = std::fabs(v[i]);
    absmax = a > absmax ? a : absmax;
  }
  return {absmax, 0};
}

template BlockParams<float> dynamicParams(const float*, int64_t, const QuantOptions&);
template BlockParams<double> dynamicParams(const double*, int64_t, const QuantOptions&);

}  // namespace quant
}  // namespace qcomm
