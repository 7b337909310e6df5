// A value-by-value block quantizer for float32 input, written straight from the per-value math
// of codec/quant_format.h with the simplest parameter loops (percentiles by a full sort, dynamic
// codes by binary search, codes ORed into words one at a time): what the vector kernels must
// reproduce word for word.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "codec/quant_format.h"
#include "qcomm/quantizers.h"

namespace qcomm::testing {

struct ReferenceQuantized {
  std::vector<double> scales, zeroPoints;
  std::vector<uint64_t> words;
  bool nonFinite = false;
};

inline double referencePercentile(std::vector<float> x, double p) {
  std::sort(x.begin(), x.end());
  const double vi = (p / 100.0) * static_cast<double>(x.size() - 1);
  const double below = std::floor(vi);
  const size_t i = static_cast<size_t>(below);
  if (i + 1 >= x.size()) return x[i];
  return static_cast<float>(quant::percentileLerp(x[i], x[i + 1], vi - below));
}

inline quant::BlockParams<float> referenceParams(const float* v, int64_t n, const QuantOptions& o) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  float lo = v[0], hi = v[0], absmax = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return {nan, 0};
    lo = v[i] < lo ? v[i] : lo;
    hi = v[i] > hi ? v[i] : hi;
    absmax = std::fabs(v[i]) > absmax ? std::fabs(v[i]) : absmax;
  }
  const bool stochastic = o.rounding == Rounding::kStochastic;
  switch (o.kind) {
    case QuantKind::kLinear:
      return quant::paramsFromRange(o.symmetric ? absmax : hi, lo, o.symmetric, o.bits, stochastic);
    case QuantKind::kPercentile: {
      std::vector<float> x(v, v + n);
      if (o.symmetric) {
        for (float& a : x) a = std::fabs(a);
        return quant::paramsFromRange(static_cast<float>(referencePercentile(x, o.percentile)),
                                      0.0f, true, o.bits, false);
      }
      return quant::paramsFromRange(static_cast<float>(referencePercentile(x, o.percentile)),
                                    static_cast<float>(referencePercentile(x, 100 - o.percentile)),
                                    false, o.bits, stochastic);
    }
    case QuantKind::kDynamic: return {quant::dynamicScale(absmax, stochastic, dynamicMap().data()), 0};
    case QuantKind::kRowwise: return quant::rowwiseFromRange(hi, lo, o.bits);
    default: return {};
  }
}

// blockSize: the effective block (values); step and philox: the stream of RandomKey.
inline ReferenceQuantized referenceQuantize(const std::vector<float>& v, const QuantOptions& o,
                                            int64_t blockSize, qsgd::PhiloxKey philox,
                                            uint64_t step) {
  const int64_t n = static_cast<int64_t>(v.size());
  const bool cast = o.kind == QuantKind::kFp16 || o.kind == QuantKind::kBf16;
  const bool zeros = o.kind == QuantKind::kRowwise ||
                     (!o.symmetric && (o.kind == QuantKind::kLinear ||
                                       o.kind == QuantKind::kPercentile));
  ReferenceQuantized r;
  const int64_t blocks = cast ? 0 : (n + blockSize - 1) / blockSize;
  std::vector<quant::BlockParams<float>> params(blocks);
  for (int64_t b = 0; b < blocks; ++b) {
    params[b] = referenceParams(v.data() + b * blockSize, std::min(blockSize, n - b * blockSize), o);
    r.scales.push_back(params[b].scale);
    if (zeros) r.zeroPoints.push_back(params[b].zero);
    r.nonFinite |= std::isnan(params[b].scale);
  }
  r.words.assign(quant::wordsFor(n, o.bits), 0);
  const bool stochastic = o.rounding == Rounding::kStochastic;
  const float* map = dynamicMap().data();
  for (int64_t i = 0; i < n; ++i) {
    uint32_t code = 0;
    if (cast) {
      r.nonFinite |= !std::isfinite(v[i]);
      code = quant::encodeValue<float>(o.kind, v[i], 0.0f, 0.0f, false, false, 0, o.bits, map);
    } else {
      const quant::BlockParams<float>& p = params[i / blockSize];
      if (std::isnan(p.scale)) continue;
      const uint32_t random = stochastic ? qsgd::randomBits(i, step, philox, o.randomBits) : 0u;
      code = quant::encodeValue<float>(o.kind, v[i], p.scale, p.zero, o.symmetric, stochastic,
                                       random, o.bits, map);
    }
    const int64_t first = i * o.bits / 64, last = (i * o.bits + o.bits - 1) / 64;
    for (int64_t w = first; w <= last; ++w) r.words[w] |= quant::codeBitsInWord(code, i, o.bits, w);
  }
  return r;
}

// The values of a QuantizedTensor of float32 input, value by value.
inline std::vector<float> referenceDequantize(const QuantizedTensor& q) {
  std::vector<float> out(q.count);
  const float* map = dynamicMap().data();
  const bool cast = q.options.kind == QuantKind::kFp16 || q.options.kind == QuantKind::kBf16;
  for (int64_t i = 0; i < q.count; ++i) {
    const uint32_t code = quant::readCode(q.words.data(), i, q.codeBits());
    float scale = 0, zero = 0;
    if (!cast) {
      scale = static_cast<float>(q.scales[i / q.blockSize]);
      if (std::isnan(scale)) {
        out[i] = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      if (q.hasZeroPoints()) zero = static_cast<float>(q.zeroPoints[i / q.blockSize]);
    }
    out[i] = quant::decodeValue<float>(q.options.kind, code, scale, zero, q.options.symmetric,
                                       q.codeBits(), map);
  }
  return out;
}

}  // namespace qcomm::testing
