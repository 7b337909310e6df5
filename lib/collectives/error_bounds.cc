// How far one quantization can move each value (quantizationErrorBounds, qcomm/communicator.h):
// what the benchmark and the tests check every result against, for any codec, norm and bucket.
#include <algorithm>
#include <cmath>
#include <deque>

#include "qcomm/communicator.h"

namespace qcomm {
namespace {

// out[i] = max of m over [i - w, i + w] (clipped to the tensor), by a monotonic deque: O(n).
void windowMax(std::span<const double> m, int64_t w, std::vector<double>& out) {
  const int64_t n = static_cast<int64_t>(m.size());
  std::deque<int64_t> candidates;  // indices of decreasing values
  for (int64_t j = 0; j < n + w; ++j) {
    if (j < n) {
      while (!candidates.empty() && m[candidates.back()] <= m[j]) candidates.pop_back();
      candidates.push_back(j);
    }
    const int64_t i = j - w;
    if (i < 0) continue;
    while (candidates.front() < i - w) candidates.pop_front();
    out[i] = m[candidates.front()];
  }
}

// out[i] = sqrt(sum of m^2 over [i - w, i + w]), a running sum: O(n).
void windowL2(std::span<const double> m, int64_t w, std::vector<double>& out) {
  const int64_t n = static_cast<int64_t>(m.size());
  double sum = 0.0;
  for (int64_t j = 0; j < std::min(n, w); ++j) sum += m[j] * m[j];
  for (int64_t i = 0; i < n; ++i) {
    if (i + w < n) sum += m[i + w] * m[i + w];
    if (i - w - 1 >= 0) sum -= m[i - w - 1] * m[i - w - 1];
    out[i] = std::sqrt(std::max(sum, 0.0));
  }
}

}  // namespace

std::vector<double> quantizationErrorBounds(const CodecConfig& codec,
                                            std::span<const double> magnitudes) {
  const int64_t n = static_cast<int64_t>(magnitudes.size());
  std::vector<double> out(n, 0.0);
  if (n == 0) return out;
  if (!codec.isQsgd) {  // the block quantizers: their step for |x| <= 1, times the largest |x|
    const double largest = *std::max_element(magnitudes.begin(), magnitudes.end());
    std::fill(out.begin(), out.end(), codecStepBound(codec) * largest);
    return out;
  }
  // A QSGD bucket's step is its norm / s. Whatever the chunk and slice boundaries, the bucket
  // holding value i lies inside [i - B + 1, i + B - 1]: that window's norm bounds its norm.
  const QsgdOptions& q = codec.qsgd;
  const int64_t w = q.bucketSize == 0 ? n : std::min<int64_t>(q.bucketSize, n) - 1;
  if (q.norm == NormKind::kMax) {
    windowMax(magnitudes, w, out);
  } else {
    windowL2(magnitudes, w, out);
  }
  const double levels = static_cast<double>((1 << q.bits) - 1);
  for (double& x : out) x /= levels;
  return out;
}

}  // namespace qcomm
