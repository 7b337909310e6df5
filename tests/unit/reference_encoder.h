// A deliberately plain QSGD encoder written straight from docs/format.md with the shared format
// math: one value at a time, no tiles, no SIMD, no threads. The optimized CPU coder (and later the
// GPU) must produce exactly its words.
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "codec/qsgd_format.h"
#include "qcomm/codec.h"

namespace qcomm::testing {

inline float referenceScaleF32(const float* v, int64_t n, NormKind norm) {
  using namespace qsgd;
  bool bad = false;
  float maxAbs = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    bad |= !std::isfinite(v[i]);
    maxAbs = std::max(maxAbs, std::fabs(v[i]));
  }
  if (bad) return std::numeric_limits<float>::quiet_NaN();
  if (norm == NormKind::kMax) return clampScaleF32(maxAbs);
  std::vector<double> tiles;
  for (int64_t t = 0; t * kNormTile < n; ++t) {
    double lanes[kNormLanes] = {};
    for (int64_t i = t * kNormTile; i < std::min<int64_t>(n, (t + 1) * kNormTile); ++i) {
      lanes[(i - t * kNormTile) % kNormLanes] += double(v[i]) * double(v[i]);
    }
    tiles.push_back(foldLanes(lanes));
  }
  const double sum = foldPairwise(tiles.data(), static_cast<int64_t>(tiles.size()));
  return clampScaleF32(static_cast<float>(std::sqrt(sum)));
}

inline EncodedTensor referenceEncodeF32(const std::vector<float>& v, const QsgdOptions& o,
                                        const RandomKey& key) {
  using namespace qsgd;
  const int64_t n = static_cast<int64_t>(v.size());
  const int k = valuesPerWord(o.bits, o.layout);
  const int width = codeWidth(o.bits, o.layout);
  const uint32_t s = levels(o.bits);
  const PhiloxKey pk = philoxKey(key.seed, key.rank, key.tensorId);
  EncodedTensor e;
  e.bits = o.bits;
  e.layout = o.layout;
  e.norm = o.norm;
  e.flags = o.randomBits == 16 ? kFlagRandom16 : 0u;
  e.bucketSize = o.bucketSize == 0 ? std::max<int64_t>(n, 1) : o.bucketSize;
  e.count = n;
  e.shape = {n};
  for (int64_t begin = 0; begin < n; begin += e.bucketSize) {
    const int64_t count = std::min(e.bucketSize, n - begin);
    const float scale = referenceScaleF32(v.data() + begin, count, o.norm);
    e.scales.push_back(scale);
    if (std::isnan(scale)) e.flags |= kFlagNonFinite;
    const int64_t L = sectionLength(count, k);
    const EncodeScaleF32 es = encodeScaleF32(scale, s);
    for (int64_t t = 0; t < L; ++t) {
      uint64_t word = 0;
      for (int j = 0; j < k; ++j) {
        const int64_t i = j * L + t;  // value index within the bucket
        uint32_t code = padCode(o.bits, o.layout);
        if (i < count && !std::isnan(scale)) {
          const float x = v[begin + i];
          const uint32_t xi = quantizeF32(std::fabs(x), es, randomBits(begin + i, key.step, pk, o.randomBits), s);
          code = signedCodeF32(x, xi, o.bits, o.layout);
        }
        word |= uint64_t{code} << slotShift(j, k, width);
      }
      e.words.push_back(word);
    }
  }
  return e;
}

}  // namespace qcomm::testing
