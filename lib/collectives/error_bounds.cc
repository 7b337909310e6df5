// How far one quantization can move each value (quantizationErrorBounds, qcomm/communicator.h):
// what the benchmark and the tests check every result against, for any codec, norm and bucket.
#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>

#include "qcomm/communicator.h"

namespace qcomm {
namespace {

// out[i] = max of m over [i - w, i + w] (clipped to the tensor), by a monotonic deque: O(n).
// (m holds no NaN: the caller maps non-finite magnitudes to infinity.)
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

// out[i] = sqrt(sum of m^2 over [i - w, i + w]) (clipped to the tensor), in O(n) and by additions
// only: a running sum that subtracts what leaves the window would lose every small square next to
// a huge one (1e76 + 0.04 - 1e76 = 0), and keep inf - inf = NaN once an infinity left. So the
// tensor is cut into pieces of w + 1 values, each with its prefix and suffix sums; a window is a
// suffix, at most one whole piece and a prefix (or a prefix or suffix alone at the tensor's ends).
void windowL2(std::span<const double> m, int64_t w, std::vector<double>& out) {
  const int64_t n = static_cast<int64_t>(m.size()), piece = w + 1;
  std::vector<double> prefix(n), suffix(n), total((n + piece - 1) / piece);
  for (int64_t c0 = 0; c0 < n; c0 += piece) {
    const int64_t c1 = std::min(n, c0 + piece);
    double sum = 0.0;
    for (int64_t j = c0; j < c1; ++j) prefix[j] = sum += m[j] * m[j];
    total[c0 / piece] = sum;
    sum = 0.0;
    for (int64_t j = c1 - 1; j >= c0; --j) suffix[j] = sum += m[j] * m[j];
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t a = std::max<int64_t>(0, i - w), b = std::min(n - 1, i + w);
    const int64_t ca = a / piece, cb = b / piece;
    double sum;
    if (ca == cb) {  // only where the window is clipped: it starts or ends with its piece
      sum = a == ca * piece ? prefix[b] : suffix[a];
    } else {
      sum = suffix[a] + prefix[b];
      for (int64_t c = ca + 1; c < cb; ++c) sum += total[c];
    }
    out[i] = std::sqrt(sum);
  }
}

}  // namespace

std::vector<double> quantizationErrorBounds(const CodecConfig& codec,
                                            std::span<const double> magnitudes) {
  const int64_t n = static_cast<int64_t>(magnitudes.size());
  std::vector<double> out(n, 0.0);
  if (n == 0) return out;
  if (!codec.isQsgd) {  // the block quantizers: their step for |x| <= 1, times the largest |x|
    double largest = 0.0;
    for (double x : magnitudes) largest = std::isfinite(x) ? std::max(largest, x) : std::numeric_limits<double>::infinity();
    std::fill(out.begin(), out.end(), codecStepBound(codec) * largest);
    return out;
  }
  // A QSGD bucket's step is its norm / s. Whatever the chunk and slice boundaries, the bucket
  // holding value i lies inside [i - B + 1, i + B - 1]: that window's norm bounds its norm.
  const QsgdOptions& q = codec.qsgd;
  std::vector<double> m(magnitudes.begin(), magnitudes.end());
  for (double& x : m) {
    if (!std::isfinite(x)) x = std::numeric_limits<double>::infinity();  // NaN too: no bound
  }
  const int64_t w = q.bucketSize == 0 ? n : std::min<int64_t>(q.bucketSize, n) - 1;
  if (q.norm == NormKind::kMax) {
    windowMax(m, w, out);
  } else {
    windowL2(m, w, out);
  }
  const double levels = static_cast<double>((1 << q.bits) - 1);
  for (double& x : out) x /= levels;
  return out;
}

}  // namespace qcomm
