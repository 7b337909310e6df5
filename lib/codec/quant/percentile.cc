// Percentile clipping (notes 001 and 003): the range from percentiles instead of min/max, values
// outside it clamped. Percentiles as numpy's default ("linear") method computes them.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "codec/quant/quant_codecs.h"
#include "codec/quant/quant_cpu_kernels.h"

namespace qcomm::quant {
namespace {

// Order statistics above this rank from the top are found with a heap; below it by nth_element.
constexpr int64_t kHeapLimit = 4096;

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

// The generic selection behind percentileOf for any T.
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

// float32 near the top, with the vector kernels: the (n - i)-th largest of `width` column maxima
// of the block is at most x[i] (those maxima are that many distinct values >= it), so x[i] and
// x[i + 1] are among the values >= it, a few percent of the block, selected in one vector pass.
struct KernelSelect {
  const float* v;
  int64_t n;
  const QuantCpuKernels& k;
  void operator()(ValueView view, int64_t i, float* at, float* next) const {
    const int64_t keep = n - i;
    const int64_t width = std::max<int64_t>(16, (2 * keep + 15) / 16 * 16);
    if (keep > kHeapLimit || 4 * width > n) return ScalarSelect<float>{v, n}(view, i, at, next);
    std::vector<float> maxima(width);
    k.columnMaxF32(v, n / width, width, view, maxima.data());
    std::nth_element(maxima.begin(), maxima.begin() + (width - keep), maxima.end());
    const float t = maxima[width - keep];
    std::unique_ptr<float[]> candidates(new float[n]);
    const int64_t c = k.selectAtLeastF32(v, n, t, view, candidates.get());
    float* first = candidates.get();
    std::nth_element(first, first + (c - keep), first + c);
    *at = first[c - keep];
    *next = keep >= 2 ? *std::min_element(first + (c - keep) + 1, first + c) : *at;
  }
};

// numpy.percentile(x, p) with method='linear': virtual index p/100 * (n - 1), interpolated as
// numpy's _lerp does (from the upper neighbour when the fraction is >= 0.5). A low percentile is
// the high one of -x (x[i] of x is -(x'[n-1-i]) of x' = -x), so both ends select near the top.
template <typename T, typename Select>
T percentileOf(const Select& select, int64_t n, bool absolute, double p) {
  const double virtualIndex = (p / 100.0) * static_cast<double>(n - 1);
  const double below = std::floor(virtualIndex);
  const double gamma = virtualIndex - below;
  const int64_t i = static_cast<int64_t>(below);
  T a, b;
  if (!absolute && i + 1 < n - i) {
    T negatedAt, negatedNext;  // -x'[n-1-i] = x[i], and x[i+1] = -x'[n-2-i] (i + 1 < n here)
    select(ValueView::kNegated, n - 2 - i, &negatedAt, &negatedNext);
    a = -negatedNext;
    b = -negatedAt;
  } else {
    select(absolute ? ValueView::kAbsolute : ValueView::kPlain, i, &a, &b);
  }
  if (i + 1 >= n) return a;
  // In float64 for float32 input too, as numpy computes it; then rounded to T.
  return static_cast<T>(percentileLerp(static_cast<double>(a), static_cast<double>(b), gamma));
}

// Whether v[0, n) holds NaN or +-Inf.
template <typename T>
bool anyNonFinite(const T* v, int64_t n) {
  int bad = 0;  // no early exit, an int reduction: the loop vectorizes
  for (int64_t j = 0; j < n; ++j) bad |= !(std::fabs(v[j]) <= std::numeric_limits<T>::max());
  return bad != 0;
}

template <typename T, typename Select>
BlockParams<T> paramsOf(const T* v, int64_t n, const QuantOptions& options, const Select& select,
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
  return paramsOf(v, n, options, ScalarSelect<T>{v, n}, anyNonFinite(v, n));
}

BlockParams<float> percentileParams(const float* v, int64_t n, const QuantOptions& options,
                                    const QuantCpuKernels& kernels) {
  // The ISA's block statistics find non-finite values (this file is built for the baseline ISA).
  return paramsOf(v, n, options, KernelSelect{v, n, kernels}, !kernels.statsF32(v, n).finite);
}

template BlockParams<float> percentileParams(const float*, int64_t, const QuantOptions&);
template BlockParams<double> percentileParams(const double*, int64_t, const QuantOptions&);

}  // namespace qcomm::quant
