// Percentile clipping (notes 001 and 003): the range from percentiles instead of min/max, values
// outside it clamped. Percentiles as numpy's default ("linear") method computes them.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "codec/quant/quant_codecs.h"
#include "codec/quant/quant_cpu_kernels.h"

namespace qcomm::quant {
namespace {

// Order statistics above this rank from the top are found with a heap; below it by nth_element.
constexpr int64_t kHeapLimit = 4096;

// How the selection sees a value x: x, |x| or -x.
enum class ValueView : int { kPlain, kAbsolute, kNegated };

// x[i] and x[i + 1] (x[i] again when i + 1 == n) of v[0, n) sorted ascending (of |v| when
// kAbsolute; of -v when kNegate, the caller undoing the sign), as values: they do not depend on
// how they are found. Near the top (the percentiles clipping uses) one pass keeps the n - i
// largest in a min-heap; chunks of 64 values with none above its least (nearly all of them, a
// test the compiler vectorizes) are skipped whole. Elsewhere nth_element.
template <bool kAbsolute, bool kNegate, typename T>
void orderStatistics(const T* v, int64_t n, int64_t i, T* at, T* next) {
  auto value = [v](int64_t j) {
    const T m = kAbsolute ? std::fabs(v[j]) : v[j];
    return kNegate ? -m : m;
  };
  const int64_t keep = n - i;  // x[i] is the keep-th largest
  if (keep <= kHeapLimit) {
    std::vector<T> heap;
    heap.reserve(keep);
    const auto greater = std::greater<T>();
    int64_t j = 0;
    for (; j < n && static_cast<int64_t>(heap.size()) < keep; ++j) heap.push_back(value(j));
    std::make_heap(heap.begin(), heap.end(), greater);  // min-heap: heap.front() is the least
    T least = heap.front();
    auto offer = [&](int64_t from, int64_t to) {
      for (int64_t k = from; k < to; ++k) {
        const T x = value(k);
        if (!(x > least)) continue;
        std::pop_heap(heap.begin(), heap.end(), greater);
        heap.back() = x;
        std::push_heap(heap.begin(), heap.end(), greater);
        least = heap.front();
      }
    };
    constexpr int64_t kChunk = 64;
    for (; j + kChunk <= n; j += kChunk) {
      int any = 0;  // an int, not a bool: GCC vectorizes the int reduction only
      for (int64_t k = j; k < j + kChunk; ++k) any |= value(k) > least;
      if (any != 0) offer(j, j + kChunk);
    }
    offer(j, n);
    std::sort(heap.begin(), heap.end());  // heap[0] = x[i], heap[1] = x[i + 1]
    *at = heap[0];
    *next = keep >= 2 ? heap[1] : heap[0];
    return;
  }
  std::vector<T> x(n);
  for (int64_t j = 0; j < n; ++j) x[j] = value(j);
  std::nth_element(x.begin(), x.begin() + i, x.end());
  *at = x[i];
  *next = i + 1 < n ? *std::min_element(x.begin() + i + 1, x.end()) : x[i];
}

// The selection behind percentileOf for any T, one percentile at a time.
template <typename T>
struct ScalarSelect {
  const T* v;
  int64_t n;
  void operator()(ValueView view, int64_t i, T* at, T* next) const {
    switch (view) {
      case ValueView::kPlain: return orderStatistics<false, false>(v, n, i, at, next);
      case ValueView::kAbsolute: return orderStatistics<true, false>(v, n, i, at, next);
      case ValueView::kNegated: return orderStatistics<false, true>(v, n, i, at, next);
    }
  }
};

// Where numpy.percentile(x, p) with method='linear' is found: virtual index p/100 * (n - 1), the
// order statistics x[i] and x[i + 1] interpolated as numpy's _lerp does (from the upper
// neighbour when the fraction is >= 0.5). A low percentile is the high one of -x (x[i] of x is
// -(x'[n-1-i]) of x' = -x), so both ends select near the top: `index` is the order statistic
// of the view.
struct Request {
  ValueView view = ValueView::kPlain;
  int64_t index = 0;       // the view's order statistics index and index + 1 are needed
  double gamma = 0;
  bool interpolated = false;  // false: i + 1 == n, the percentile is x[i]
};

Request requestOf(int64_t n, bool absolute, double p) {
  const double virtualIndex = (p / 100.0) * static_cast<double>(n - 1);
  const double below = std::floor(virtualIndex);
  const int64_t i = static_cast<int64_t>(below);
  Request r;
  r.gamma = virtualIndex - below;
  r.interpolated = i + 1 < n;
  if (!absolute && i + 1 < n - i) {
    r.view = ValueView::kNegated;
    r.index = n - 2 - i;  // -x'[n-1-i] = x[i], and x[i+1] = -x'[n-2-i] (i + 1 < n here)
  } else {
    r.view = absolute ? ValueView::kAbsolute : ValueView::kPlain;
    r.index = i;
  }
  return r;
}

// The percentile from the view's order statistics `index` (at) and index + 1 (next).
template <typename T>
T percentileFrom(const Request& r, T at, T next) {
  const T a = r.view == ValueView::kNegated ? -next : at;
  const T b = r.view == ValueView::kNegated ? -at : next;
  if (!r.interpolated) return a;
  // In float64 for float32 input too, as numpy computes it; then rounded to T.
  return static_cast<T>(percentileLerp(static_cast<double>(a), static_cast<double>(b), r.gamma));
}

template <typename T, typename Select>
T percentileOf(const Select& select, int64_t n, bool absolute, double p) {
  const Request r = requestOf(n, absolute, p);
  T at, next;
  select(r.view, r.index, &at, &next);
  return percentileFrom(r, at, next);
}

// Whether v[0, n) holds NaN or +-Inf.
template <typename T>
bool anyNonFinite(const T* v, int64_t n) {
  int bad = 0;  // no early exit, an int reduction: the loop vectorizes
  for (int64_t j = 0; j < n; ++j) bad |= !(std::fabs(v[j]) <= std::numeric_limits<T>::max());
  return bad != 0;
}

template <typename T, typename Select>
BlockParams<T> paramsOf(int64_t n, const QuantOptions& options, const Select& select,
                        bool nonFinite) {
  if (nonFinite) return {std::numeric_limits<T>::quiet_NaN(), 0};
  if (options.symmetric) {
    return paramsFromRange(percentileOf<T>(select, n, true, options.percentile), T(0), true,
                           options.bits, false);
  }
  const T alpha = percentileOf<T>(select, n, false, options.percentile);
  const T beta = percentileOf<T>(select, n, false, 100.0 - options.percentile);
  return paramsFromRange(alpha, beta, false, options.bits,
                         options.rounding == Rounding::kStochastic);
}

}  // namespace

template <typename T>
BlockParams<T> percentileParams(const T* v, int64_t n, const QuantOptions& options) {
  return paramsOf<T>(n, options, ScalarSelect<T>{v, n}, anyNonFinite(v, n));
}

namespace {

// Column maxima (widths up to 256: percentiles within 128 values of the top) and candidates each
// end keeps on the stack; more (large blocks, values ordered by column) go to the heap.
constexpr int64_t kStackMaxima = 256;
constexpr int64_t kStackCandidates = 2048;

// One block's percentiles on the vector kernels, both ends of the range at once: candidates above
// a threshold in one pass over the block (ties at it counted, not kept), then the order
// statistics by rank among them, or the threshold itself where ties reach the rank. The
// thresholds come from the task's previous block where they keep enough candidates here (one
// pass in all), else from this block's column maxima (two passes).
class FastPercentiles {
 public:
  FastPercentiles(const float* v, int64_t n, const QuantOptions& o, const QuantCpuKernels& k)
      : v_(v), n_(n), o_(o), k_(k), twoEnds_(!o.symmetric),
        highRequest_(requestOf(n, o.symmetric, o.percentile)),
        lowRequest_(twoEnds_ ? requestOf(n, false, 100.0 - o.percentile) : Request{}),
        keepHigh_(n - highRequest_.index), keepLow_(twoEnds_ ? n - lowRequest_.index : 0) {}

  // Whether the selection applies: near the top (the percentiles clipping uses), blocks of at
  // least four rows of column maxima, and (asymmetric) one percentile at each end.
  bool applies() const {
    if (twoEnds_ &&
        (highRequest_.view != ValueView::kPlain || lowRequest_.view != ValueView::kNegated)) {
      return false;
    }
    return keep() <= kHeapLimit && 4 * width() <= n_;
  }

  // With thresholds that kept enough candidates in an earlier block: one pass (the candidates
  // and the finite check), nullopt when they keep too few or too many here.
  std::optional<BlockParams<float>> fromHint(PercentileHint* hint) {
    if (std::isnan(hint->high)) return std::nullopt;
    const int64_t room = std::min<int64_t>(kStackCandidates, 8 * keep() + 64);
    // Ties are counted where the previous block's order statistics were its thresholds (ties
    // reached them), not on values that do not repeat, where it would only cost.
    const bool ties = hint->highAt == hint->high || (twoEnds_ && hint->lowAt == hint->low);
    bool finite = true;
    if (!select(*hint, room, ties, &finite)) return std::nullopt;
    if (!finite) return nonFinite();
    if (!reaches(high_, keepHigh_) || (twoEnds_ && !reaches(low_, keepLow_))) return std::nullopt;
    return params(hint);
  }

  // Thresholds from the block itself: the (n - i)-th largest of `width` column maxima is at most
  // x[i] (those maxima are that many distinct values >= it), so x[i] and x[i + 1] are among the
  // values >= it, a few percent of the block. The thresholds used go to `hint`, taken a little
  // lower than this block needs (the (keep + keep/4)-th largest maximum, at least 4 further
  // down), so that the next block's spread rarely leaves too few: of Gaussian blocks of 4096
  // values, fewer than 1 in 1000 fall back to this pass at p = 99 and 99.9 (none of 65,536 at
  // p = 99 but each call's first).
  BlockParams<float> fromColumnMaxima(PercentileHint* hint) {
    alignas(64) float onStack[2 * kStackMaxima];
    const int64_t w = width();
    std::vector<float> onHeap(w > kStackMaxima ? 2 * w : 0);
    float* maxima = w > kStackMaxima ? onHeap.data() : onStack;
    float* negated = twoEnds_ ? maxima + w : nullptr;
    if (!k_.columnMaximaF32(v_, n_, w, o_.symmetric, maxima, negated)) return nonFinite();
    const float none = std::numeric_limits<float>::quiet_NaN();
    float unused;
    k_.topOfF32(maxima, w, slack(keepHigh_), none, &hint->high, &unused);
    if (twoEnds_) k_.topOfF32(negated, w, slack(keepLow_), none, &hint->low, &unused);
    // No tie counts: at least keep values are >= each threshold here.
    if (!select(*hint, kStackCandidates, false, nullptr)) {
      heap_.reset(new float[2 * n_]);  // room for every value: this cannot fail
      high_.values = heap_.get();
      low_.values = heap_.get() + n_;
      select(*hint, n_, false, nullptr);
    }
    return params(hint);
  }

 private:
  int64_t keep() const { return std::max(keepHigh_, keepLow_); }
  int64_t width() const { return std::max<int64_t>(16, (2 * keep() + 15) / 16 * 16); }
  // The rank of the thresholds taken from the column maxima: <= 2 keep <= width.
  static int64_t slack(int64_t keep) { return keep + std::max<int64_t>(4, keep / 4); }

  static BlockParams<float> nonFinite() { return {std::numeric_limits<float>::quiet_NaN(), 0}; }

  // The candidates against the hint's thresholds (selectEndsF32).
  bool select(const PercentileHint& hint, int64_t capacity, bool countTies, bool* finite) {
    high_.threshold = hint.high;
    low_.threshold = hint.low;
    // Thresholds from the column maxima or the block before keep about slack(keep) at each end,
    // up to twice that where the block's values spread wider.
    const int64_t expected = 2 * (slack(keepHigh_) + (twoEnds_ ? slack(keepLow_) : 0));
    return k_.selectEndsF32(v_, n_, o_.symmetric, &high_, twoEnds_ ? &low_ : nullptr, capacity,
                            countTies, expected, finite);
  }

  // Whether the keep-th largest of the view is at or above the end's threshold (as far as the
  // ties counted tell).
  static bool reaches(const SelectedEnd& end, int64_t keep) {
    return end.above + end.equal >= keep;
  }

  // The keep-th and (keep - 1)-th largest of the view (at and next), where reaches(end, keep):
  // among the candidates above the threshold, or, where fewer than keep are above it, the
  // threshold itself (a tie), and next the least candidate where exactly keep - 1 are above.
  void orderOf(SelectedEnd& end, int64_t keep, float guess, float* at, float* next) const {
    if (end.above >= keep) return k_.topOfF32(end.values, end.above, keep, guess, at, next);
    *at = end.threshold;
    *next = end.above == keep - 1 && end.above > 0
                ? *std::min_element(end.values, end.values + end.above)
                : end.threshold;
  }

  // The parameters from the candidates; the order statistics found go to `hint` as the next
  // block's guesses.
  BlockParams<float> params(PercentileHint* hint) {
    float at, next;
    orderOf(high_, keepHigh_, hint->highAt, &at, &next);
    hint->highAt = at;
    const float alpha = percentileFrom(highRequest_, at, next);
    if (!twoEnds_) return paramsFromRange(alpha, 0.0f, true, o_.bits, false);
    orderOf(low_, keepLow_, hint->lowAt, &at, &next);
    hint->lowAt = at;
    const float beta = percentileFrom(lowRequest_, at, next);
    return paramsFromRange(alpha, beta, false, o_.bits, o_.rounding == Rounding::kStochastic);
  }

  const float* v_;
  int64_t n_;
  const QuantOptions& o_;
  const QuantCpuKernels& k_;
  bool twoEnds_;
  Request highRequest_, lowRequest_;
  int64_t keepHigh_, keepLow_;
  alignas(64) float stack_[2 * kStackCandidates];
  SelectedEnd high_{0, stack_}, low_{0, stack_ + kStackCandidates};
  std::unique_ptr<float[]> heap_;
};

}  // namespace

BlockParams<float> percentileParams(const float* v, int64_t n, const QuantOptions& options,
                                    const QuantCpuKernels& kernels, PercentileHint* hint) {
  FastPercentiles fast(v, n, options, kernels);
  if (fast.applies()) {
    if (const auto p = fast.fromHint(hint)) return *p;
    return fast.fromColumnMaxima(hint);
  }
  // The ISA's block statistics find non-finite values (this file is built for the baseline ISA).
  return paramsOf<float>(n, options, ScalarSelect<float>{v, n}, !kernels.statsF32(v, n).finite);
}

template BlockParams<float> percentileParams(const float*, int64_t, const QuantOptions&);
template BlockParams<double> percentileParams(const double*, int64_t, const QuantOptions&);

}  // namespace qcomm::quant
