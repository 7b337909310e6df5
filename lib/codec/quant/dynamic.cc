// Dynamic 8-bit quantization (note 002, after bitsandbytes): 256 values from a dynamic exponent and
// fraction, each block normalized by its absmax, codes found by binary search.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
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

// The float with order-preserving key `key` (the inverse of key = bits | sign, ~bits if negative).
float floatOfKey(uint32_t key) {
  return quant::bitsFloat((key & 0x80000000u) != 0 ? (key & 0x7FFFFFFFu) : ~key);
}

// First index i with map[i] >= y, in [0, 256].
int lowerBound(const std::array<float, 256>& map, float y) {
  return static_cast<int>(std::lower_bound(map.begin(), map.end(), y) - map.begin());
}

quant::DynamicLookup makeDynamicLookup(const std::array<float, 256>& map) {
  quant::DynamicLookup t{};
  std::copy(map.begin(), map.end(), t.map);
  t.map[256] = std::numeric_limits<float>::infinity();
  for (uint32_t k = 0; k < 65536; ++k) {
    // The range's floats inside [-1, 1], where normalized values lie (y = x / absmax).
    const float least = std::max(floatOfKey(k << 16), -1.0f);
    const float most = std::min(floatOfKey((k << 16) | 0xFFFFu), 1.0f);
    if (!(least <= most)) {
      // Wholly outside [-1, 1], or NaN: never looked up by a finite block.
      t.record[k] = {255, t.map[254], t.map[255], t.map[256]};
      continue;
    }
    const int first = lowerBound(map, least);
    // More than one map value in (least, most] would need a search: the map's spacing rules it
    // out (see the header); a violation is a programming error caught by the unit tests, which
    // compare every code with the binary search's.
    if (lowerBound(map, most) - first > 1) std::abort();
    const int lo = std::min(first, 255);
    t.record[k] = {lo, t.map[std::max(lo - 1, 0)], t.map[lo], t.map[lo + 1]};
  }
  return t;
}

}  // namespace

const quant::DynamicLookup& quant::dynamicLookup() {
  static const DynamicLookup lookup = makeDynamicLookup(makeDynamicMap());
  return lookup;
}

std::span<const float, 256> dynamicMap() {
  static const std::array<float, 256> map = makeDynamicMap();
  return map;
}

namespace quant {

template <typename T>
BlockParams<T> dynamicParams(const T* v, int64_t n, const QuantOptions& options) {
  T absmax = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return {std::numeric_limits<T>::quiet_NaN(), 0};
    const T a = std::fabs(v[i]);
    absmax = a > absmax ? a : absmax;
  }
  return {dynamicScale(absmax, options.rounding == Rounding::kStochastic, dynamicMap().data()), 0};
}

template BlockParams<float> dynamicParams(const float*, int64_t, const QuantOptions&);
template BlockParams<double> dynamicParams(const double*, int64_t, const QuantOptions&);

}  // namespace quant
}  // namespace qcomm
