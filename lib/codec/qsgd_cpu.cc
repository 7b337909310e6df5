// QSGD on the CPU: validates, plans buckets and word tiles, computes each bucket's scale in the
// fixed order of docs/format.md and runs the ISA kernels over the tiles on the executor.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "codec/qsgd_cpu_kernels.h"
#include "qcomm/codec.h"
#include "qcomm/env.h"

namespace qcomm {
namespace {

using qsgd::CpuKernels;
using qsgd::kNormTile;
using qsgd::kWordTile;

// Buckets up to this size are scaled and encoded by one thread, start to end, while they sit in
// cache; larger ones are scaled and encoded tile by tile on all threads.
constexpr int64_t kFusedBucketLimit = int64_t{1} << 16;
// Decode-and-mean prefetches this many buckets ahead (measured: 1-4 are within noise at P = 2,
// 3 and 4 do best at P = 8).
constexpr int64_t kPrefetchBuckets = 3;
// ... and the buckets' scales this many buckets ahead (two lines of float64 scales).
constexpr int64_t kScaleAhead = 16;
// Decode-and-mean writes outputs of at least this many values with non-temporal stores
// (CpuKernels::streamF32): 8 MB, past what the caches would keep for the caller anyway. At 2^26
// values, P = 8, one thread: 42-43 -> 37-42 ms (docs/performance.md, "Decode-and-mean's output
// streamed").
constexpr int64_t kStreamValues = int64_t{1} << 21;
// The least work (values) worth handing to a thread.
constexpr int64_t kGrainValues = int64_t{1} << 15;
// Largest element count accepted: keeps every size computation far from int64 overflow.
constexpr int64_t kMaxCount = int64_t{1} << 56;

bool isNan(double x) { return std::isnan(x); }

// Where bucket b lives.
struct Bucket {
  int64_t begin;          // first value
  int64_t count;          // values
  int64_t wordBegin;      // first word
  int64_t sectionLength;  // L: its words
};

Bucket bucketAt(int64_t b, int64_t count, int64_t bucketSize, int k) {
  const int64_t begin = b * bucketSize;
  const int64_t n = std::min(bucketSize, count - begin);
  return {begin, n, b * qsgd::sectionLength(bucketSize, k), qsgd::sectionLength(n, k)};
}

Result<const CpuKernels*> kernelsFromEnvironment() {
  return qsgd::selectKernels(knobString(Knob::kCpuIsa));
}

// ---- scales -------------------------------------------------------------------------------------

float scaleFromSumF32(double sumOfSquares) {
  if (!std::isfinite(sumOfSquares)) return std::numeric_limits<float>::quiet_NaN();
  return qsgd::clampScaleF32(static_cast<float>(std::sqrt(sumOfSquares)));
}

float scaleFromMaxF32(float maxAbs, bool nonFinite) {
  if (nonFinite) return std::numeric_limits<float>::quiet_NaN();
  return qsgd::clampScaleF32(maxAbs);
}

// The scale of one fp32 bucket, on the calling thread.
float bucketScaleF32(const float* v, int64_t count, NormKind norm, const CpuKernels& k) {
  if (norm == NormKind::kMax) {
    bool nonFinite = false;
    const float m = k.maxAbsF32(v, count, &nonFinite);
    return scaleFromMaxF32(m, nonFinite);
  }
  const int64_t tiles = (count + kNormTile - 1) / kNormTile;
  double local[kFusedBucketLimit / kNormTile];
  std::vector<double> heap;
  double* sums = local;
  if (tiles > static_cast<int64_t>(std::size(local))) {
    heap.resize(tiles);
    sums = heap.data();
  }
  k.sumSquaresTilesF32(v, count, sums);
  return scaleFromSumF32(qsgd::foldPairwise(sums, tiles));
}

// The scale of one large fp32 bucket, its tiles spread over the executor.
float bucketScaleF32Parallel(const float* v, int64_t count, NormKind norm, const CpuKernels& k,
                             Executor* executor) {
  const int64_t tiles = (count + kNormTile - 1) / kNormTile;
  const int64_t grain = kGrainValues / kNormTile;
  if (norm == NormKind::kMax) {
    std::vector<float> maxima(tiles);
    std::vector<uint8_t> bad(tiles, 0);
    parallelFor(executor, tiles, grain, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        bool nonFinite = false;
        const int64_t m = std::min<int64_t>(kNormTile, count - t * kNormTile);
        maxima[t] = k.maxAbsF32(v + t * kNormTile, m, &nonFinite);
        bad[t] = nonFinite;
      }
    });
    const bool nonFinite = std::find(bad.begin(), bad.end(), 1) != bad.end();
    return scaleFromMaxF32(*std::max_element(maxima.begin(), maxima.end()), nonFinite);
  }
  std::vector<double> sums(tiles);
  parallelFor(executor, tiles, grain, [&](int64_t t0, int64_t t1) {
    const int64_t first = t0 * kNormTile;
    k.sumSquaresTilesF32(v + first, std::min(count, t1 * kNormTile) - first, sums.data() + t0);
  });
  return scaleFromSumF32(qsgd::foldPairwise(sums.data(), tiles));
}

// fp64 buckets (CPU only): the L2 norm is taken of v * 2^-e, e the exponent of max|v|, in the same
// lane/tile order as fp32, then scaled back; so it neither overflows nor underflows.
double bucketScaleF64(const double* v, int64_t count, NormKind norm) {
  double maxAbs = 0.0;
  bool nonFinite = false;
  for (int64_t i = 0; i < count; ++i) {
    const double a = std::fabs(v[i]);
    nonFinite |= !(a <= std::numeric_limits<double>::max());
    maxAbs = a > maxAbs ? a : maxAbs;
  }
  if (nonFinite) return std::numeric_limits<double>::quiet_NaN();
  if (norm == NormKind::kMax || maxAbs == 0.0) return std::min(maxAbs, qsgd::kMaxScaleF64);
  const int e = std::ilogb(maxAbs);
  // v * 2^-e rounds exactly like ldexp(v, -e); 2^-e is representable unless max|v| < 2^-1023.
  const double factor = e >= -1023 ? std::ldexp(1.0, -e) : 0.0;
  const int64_t tiles = (count + kNormTile - 1) / kNormTile;
  std::vector<double> sums(tiles);
  for (int64_t t = 0; t < tiles; ++t) {
    double lanes[qsgd::kNormLanes] = {};
    const int64_t m = std::min<int64_t>(kNormTile, count - t * kNormTile);
    for (int64_t i = 0; i < m; ++i) {
      const double value = v[t * kNormTile + i];
      const double x = factor != 0.0 ? value * factor : std::ldexp(value, -e);
      lanes[i % qsgd::kNormLanes] += x * x;
    }
    sums[t] = qsgd::foldLanes(lanes);
  }
  const double norm2 = std::ldexp(std::sqrt(qsgd::foldPairwise(sums.data(), tiles)), e);
  return std::min(norm2, qsgd::kMaxScaleF64);
}

// ---- words --------------------------------------------------------------------------------------

struct CodeParams {
  int bits;
  Layout layout;
  int k;
  int width;
  qsgd::PhiloxKey key;
  uint64_t step;
  int randomBits;
};

void quantizeRun(const CpuKernels& k, const float* v, int64_t first, int64_t n, double scale,
                 const CodeParams& p, uint32_t* codes) {
  const auto es = qsgd::encodeScaleF32(static_cast<float>(scale), qsgd::levels(p.bits));
  k.quantizeRunF32(v, first, n, es, p.bits, p.layout, p.key, p.step, p.randomBits, codes);
}

void quantizeRun(const CpuKernels& k, const double* v, int64_t first, int64_t n, double scale,
                 const CodeParams& p, uint32_t* codes) {
  k.quantizeRunF64(v, first, n, scale, p.bits, p.layout, p.key, p.step, p.randomBits, codes);
}

// residual[i] = v[i] - decode(codes[i]) for n <= kMaxValuesPerWord * kWordTile values just
// quantized with `scale`: decodeWords' arithmetic on codes still in cache.
void residualRun(const CpuKernels& k, const uint32_t* codes, const float* v, int64_t n,
                 double scale, const CodeParams& p, float* residual) {
  float decoded[qsgd::kMaxValuesPerWord * kWordTile];
  if (isNan(scale)) {
    std::fill_n(decoded, n, std::numeric_limits<float>::quiet_NaN());
  } else {
    const auto ds = qsgd::decodeScaleF32(static_cast<float>(scale), qsgd::levels(p.bits));
    k.decodeRunF32(codes, n, p.bits, p.layout, ds, decoded);
  }
  for (int64_t i = 0; i < n; ++i) residual[i] = v[i] - decoded[i];
}

// Writes words [t0, t1) of bucket `bk` (whose values start at v, global index bk.begin); with
// `residual` (fp32 only: the bucket's first residual), also the error-feedback residual of the
// values those words hold.
template <typename T>
void encodeWords(const CpuKernels& k, const T* v, const Bucket& bk, double scale,
                 const CodeParams& p, int64_t t0, int64_t t1, uint64_t* words,
                 float* residual = nullptr) {
  const uint32_t pad = qsgd::padCode(p.bits, p.layout);
  uint32_t codes[qsgd::kMaxValuesPerWord * kWordTile];
  const bool nonFinite = isNan(scale);
  if (t0 == 0 && t1 == bk.sectionLength && bk.sectionLength <= kWordTile) {
    // The whole bucket in one tile: with row stride L its k rows are its values in order, so it is
    // quantized as one long run (long enough for the SIMD Philox).
    const int64_t valid = nonFinite ? 0 : bk.count;
    if (valid > 0) quantizeRun(k, v, bk.begin, valid, scale, p, codes);
    if constexpr (std::is_same_v<T, float>) {
      if (residual != nullptr) residualRun(k, codes, v, bk.count, scale, p, residual);
    }
    std::fill(codes + valid, codes + p.k * bk.sectionLength, pad);
    k.packWords(codes, p.k, p.width, bk.sectionLength, bk.sectionLength, words + bk.wordBegin);
    return;
  }
  for (int64_t tt = t0; tt < t1; tt += kWordTile) {
    const int64_t c = std::min<int64_t>(kWordTile, t1 - tt);
    for (int j = 0; j < p.k; ++j) {
      uint32_t* row = codes + j * kWordTile;
      const int64_t e0 = j * bk.sectionLength + tt;
      // A non-finite bucket is sent as all zero codes; its NaN scale carries the news.
      const int64_t valid = nonFinite ? 0 : std::clamp<int64_t>(bk.count - e0, 0, c);
      if (valid > 0) quantizeRun(k, v + e0, bk.begin + e0, valid, scale, p, row);
      if constexpr (std::is_same_v<T, float>) {
        const int64_t held = std::clamp<int64_t>(bk.count - e0, 0, c);
        if (residual != nullptr && held > 0) {
          residualRun(k, row, v + e0, held, scale, p, residual + e0);
        }
      }
      std::fill(row + valid, row + c, pad);
    }
    k.packWords(codes, p.k, p.width, c, kWordTile, words + bk.wordBegin + tt);
  }
}

// Asks for the next bucket while this one is computed: the scale pass is the first to touch a
// bucket and would otherwise wait on memory.
template <typename T>
void prefetchNext(const T* next, int64_t count) {
  constexpr int64_t kLine = 64 / sizeof(T);
  for (int64_t i = 0; i < count; i += kLine) __builtin_prefetch(next + i);
}

template <typename T>
double bucketScale(const CpuKernels& k, const T* v, int64_t count, NormKind norm,
                   Executor* executor) {
  if constexpr (std::is_same_v<T, float>) {
    return executor != nullptr && count > kFusedBucketLimit
               ? bucketScaleF32Parallel(v, count, norm, k, executor)
               : bucketScaleF32(v, count, norm, k);
  } else {
    return bucketScaleF64(v, count, norm);
  }
}

Status checkShape(std::span<const int64_t> shape, int64_t count, std::vector<int64_t>* out) {
  if (shape.empty()) {
    *out = {count};
    return Status::ok();
  }
  int64_t product = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) return invalidArgument("shape dimension ", i, " is negative: ", shape[i]);
    if (shape[i] != 0 && product > kMaxCount / shape[i]) {
      return outOfRange("shape holds more than 2^56 values");
    }
    product *= shape[i];
  }
  if (product != count) {
    return invalidArgument("shape holds ", product, " values but the tensor has ", count);
  }
  out->assign(shape.begin(), shape.end());
  return Status::ok();
}

template <typename T>
Status encodeImpl(std::span<const T> values, const QsgdOptions& options, const RandomKey& key,
                  Executor* executor, std::span<const int64_t> shape, EncodedTensor* result,
                  std::span<float> residual = {}) {
  const int64_t n = static_cast<int64_t>(values.size());
  QCOMM_ASSIGN_OR_RETURN(const QsgdGeometry g, qsgdGeometry(n, options));
  QCOMM_ASSIGN_OR_RETURN(const CpuKernels* kernels, kernelsFromEnvironment());
  const CpuKernels& k = *kernels;

  EncodedTensor& out = *result;
  QCOMM_RETURN_IF_ERROR(checkShape(shape, n, &out.shape));
  out.bits = options.bits;
  out.layout = options.layout;
  out.norm = options.norm;
  out.dtype = std::is_same_v<T, float> ? DType::kFloat32 : DType::kFloat64;
  out.bucketSize = g.bucketSize;
  out.count = n;
  out.flags = options.randomBits == 16 ? kFlagRandom16 : 0u;
  // Every scale and word is written below; resize keeps the capacity of a reused tensor.
  out.scales.resize(g.numBuckets);
  out.words.resize(g.wordCount);

  const CodeParams p{options.bits,
                     options.layout,
                     g.valuesPerWord,
                     g.codeWidth,
                     qsgd::philoxKey(key.seed, key.rank, key.tensorId),
                     key.step,
                     options.randomBits};
  const T* v = values.data();
  uint64_t* words = out.words.data();
  float* res = residual.empty() ? nullptr : residual.data();
  const auto residualAt = [res](int64_t i) { return res == nullptr ? nullptr : res + i; };
  if (g.bucketSize <= kFusedBucketLimit) {
    const int64_t grain = std::max<int64_t>(1, kGrainValues / g.bucketSize);
    parallelFor(executor, g.numBuckets, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const Bucket bk = bucketAt(b, n, g.bucketSize, p.k);
        prefetchNext(v + bk.begin + bk.count, std::min(bk.count, n - bk.begin - bk.count));
        const double scale = bucketScale(k, v + bk.begin, bk.count, options.norm, nullptr);
        out.scales[b] = scale;
        encodeWords(k, v + bk.begin, bk, scale, p, 0, bk.sectionLength, words,
                    residualAt(bk.begin));
      }
    });
  } else {
    for (int64_t b = 0; b < g.numBuckets; ++b) {
      const Bucket bk = bucketAt(b, n, g.bucketSize, p.k);
      const double scale = bucketScale(k, v + bk.begin, bk.count, options.norm, executor);
      out.scales[b] = scale;
      const int64_t grain = std::max<int64_t>(kWordTile, kGrainValues / p.k);
      parallelFor(executor, bk.sectionLength, grain, [&](int64_t t0, int64_t t1) {
        encodeWords(k, v + bk.begin, bk, scale, p, t0, t1, words, residualAt(bk.begin));
      });
    }
  }
  if (std::any_of(out.scales.begin(), out.scales.end(), isNan)) out.flags |= kFlagNonFinite;
  return Status::ok();
}

template <typename T>
Result<EncodedTensor> encodeNew(std::span<const T> values, const QsgdOptions& options,
                                const RandomKey& key, Executor* executor,
                                std::span<const int64_t> shape) {
  EncodedTensor out;
  QCOMM_RETURN_IF_ERROR(encodeImpl(values, options, key, executor, shape, &out));
  return out;
}

// ---- decode -------------------------------------------------------------------------------------

// Decodes values of bucket `bk` held in words [t0, t1) into out (the bucket's first value).
template <typename Out>
void decodeWords(const CpuKernels& k, const EncodedView& e, const Bucket& bk, double scale,
                 int kk, int width, int64_t t0, int64_t t1, Out* out) {
  const bool nonFinite = isNan(scale);
  uint32_t codes[qsgd::kMaxValuesPerWord * kWordTile];
  float f32[kWordTile];
  double f64[kWordTile];
  const auto ds = qsgd::decodeScaleF32(static_cast<float>(scale), qsgd::levels(e.bits));
  const auto decodeRun = [&](const uint32_t* rowCodes, int64_t valid, Out* dst) {
    if (nonFinite) {
      std::fill(dst, dst + valid, std::numeric_limits<Out>::quiet_NaN());
    } else if (e.dtype == DType::kFloat32) {
      if constexpr (std::is_same_v<Out, float>) {
        k.decodeRunF32(rowCodes, valid, e.bits, e.layout, ds, dst);
      } else {
        for (int64_t i = 0; i < valid; i += kWordTile) {
          const int64_t m = std::min<int64_t>(kWordTile, valid - i);
          k.decodeRunF32(rowCodes + i, m, e.bits, e.layout, ds, f32);
          std::copy(f32, f32 + m, dst + i);
        }
      }
    } else {
      if constexpr (std::is_same_v<Out, double>) {
        k.decodeRunF64(rowCodes, valid, e.bits, e.layout, scale, dst);
      } else {
        for (int64_t i = 0; i < valid; i += kWordTile) {
          const int64_t m = std::min<int64_t>(kWordTile, valid - i);
          k.decodeRunF64(rowCodes + i, m, e.bits, e.layout, scale, f64);
          std::copy(f64, f64 + m, dst + i);
        }
      }
    }
  };
  if (t0 == 0 && t1 == bk.sectionLength && bk.sectionLength <= kWordTile) {
    // Whole bucket in one tile (see encodeWords): one contiguous run.
    if (!nonFinite) {
      k.unpackWords(e.words.data() + bk.wordBegin, bk.sectionLength, kk, width, bk.sectionLength,
                    codes);
    }
    decodeRun(codes, bk.count, out);
    return;
  }
  for (int64_t tt = t0; tt < t1; tt += kWordTile) {
    const int64_t c = std::min<int64_t>(kWordTile, t1 - tt);
    if (!nonFinite) {
      k.unpackWords(e.words.data() + bk.wordBegin + tt, c, kk, width, kWordTile, codes);
    }
    for (int j = 0; j < kk; ++j) {
      const int64_t e0 = j * bk.sectionLength + tt;
      const int64_t valid = std::clamp<int64_t>(bk.count - e0, 0, c);
      if (valid == 0) break;  // later sections start even further on
      decodeRun(codes + j * kWordTile, valid, out + e0);
    }
  }
}

// `e` has been validated by the caller (validateView or validateEncoded).
template <typename Out>
Status decodeImpl(const EncodedView& e, std::span<Out> out, Executor* executor) {
  if (static_cast<int64_t>(out.size()) != e.count) {
    return invalidArgument("decode output holds ", out.size(), " values but the message has ",
                           e.count);
  }
  QCOMM_ASSIGN_OR_RETURN(const CpuKernels* kernels, kernelsFromEnvironment());
  const int kk = qsgd::valuesPerWord(e.bits, e.layout);
  const int width = qsgd::codeWidth(e.bits, e.layout);
  const int64_t nb = e.numBuckets();
  Out* dst = out.data();
  if (e.bucketSize <= kFusedBucketLimit) {
    const int64_t grain = std::max<int64_t>(1, kGrainValues / e.bucketSize);
    parallelFor(executor, nb, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const Bucket bk = bucketAt(b, e.count, e.bucketSize, kk);
        decodeWords(*kernels, e, bk, e.scale(b), kk, width, 0, bk.sectionLength, dst + bk.begin);
      }
    });
  } else {
    for (int64_t b = 0; b < nb; ++b) {
      const Bucket bk = bucketAt(b, e.count, e.bucketSize, kk);
      const int64_t grain = std::max<int64_t>(kWordTile, kGrainValues / kk);
      parallelFor(executor, bk.sectionLength, grain, [&](int64_t t0, int64_t t1) {
        decodeWords(*kernels, e, bk, e.scale(b), kk, width, t0, t1, dst + bk.begin);
      });
    }
  }
  return Status::ok();
}

// ---- decode-and-mean ------------------------------------------------------------------------------

// Asks for bucket b's scale to come into cache.
void prefetchScale(const EncodedView& e, int64_t b) {
  if (e.scalesF32.empty()) {
    __builtin_prefetch(e.scalesF64.data() + b);
  } else {
    __builtin_prefetch(e.scalesF32.data() + b);
  }
}

Status checkMeanInputs(std::span<const EncodedView> codes, std::span<float> out,
                       const DecodeMeanResidual& r) {
  if (codes.empty()) return invalidArgument("decode-and-mean of no codes");
  const EncodedView& first = codes[0];
  for (size_t c = 0; c < codes.size(); ++c) {
    const EncodedView& e = codes[c];
    QCOMM_RETURN_IF_ERROR(validateView(e).withContextOf("code ", c, ": "));
    if (e.dtype != DType::kFloat32) {
      return invalidArgument("decode-and-mean: code ", c, " holds ", dtypeName(e.dtype),
                             " values; it averages float32 codes");
    }
    if (e.count != first.count || e.bits != first.bits || e.layout != first.layout ||
        e.bucketSize != first.bucketSize) {
      return invalidArgument("decode-and-mean: code ", c, " (", e.count, " values, ", e.bits,
                             " bits, ", layoutName(e.layout), ", buckets of ", e.bucketSize,
                             ") differs from code 0 (", first.count, " values, ", first.bits,
                             " bits, ", layoutName(first.layout), ", buckets of ",
                             first.bucketSize, ")");
    }
  }
  if (static_cast<int64_t>(out.size()) != first.count) {
    return invalidArgument("decode-and-mean output holds ", out.size(), " values but the codes have ",
                           first.count);
  }
  if (r.residualOf >= static_cast<int>(codes.size())) {
    return invalidArgument("residual of code ", r.residualOf, " but there are ", codes.size());
  }
  if (r.residualOf >= 0 && (static_cast<int64_t>(r.input.size()) != first.count ||
                            static_cast<int64_t>(r.residual.size()) != first.count)) {
    return invalidArgument("residual input and output must hold ", first.count, " values, got ",
                           r.input.size(), " and ", r.residual.size());
  }
  return Status::ok();
}

// Words [t0, t1) of bucket `bk` of every code, decoded and summed in cache, then the mean (and the
// residual) written once. A whole bucket that fits one tile is one run of values in order (its
// rows are `sectionLength` apart, see encodeWords); larger buckets go tile by tile, k rows each.
void decodeMeanWords(const CpuKernels& k, std::span<const EncodedView> codes,
                     const Bucket& bk, int64_t b, int kk, int width, int64_t t0, int64_t t1,
                     const DecodeMeanResidual& r, float* out) {
  const bool whole = t0 == 0 && t1 == bk.sectionLength && bk.sectionLength <= kWordTile;
  const int64_t stride = whole ? bk.sectionLength : kWordTile;
  uint32_t scratch[qsgd::kMaxValuesPerWord * kWordTile];
  float acc[qsgd::kMaxValuesPerWord * kWordTile];
  float decoded[qsgd::kMaxValuesPerWord * kWordTile];
  const float ranks = static_cast<float>(codes.size());
  for (int64_t tt = t0; tt < t1; tt += kWordTile) {
    const int64_t c = std::min<int64_t>(kWordTile, t1 - tt);
    // Runs of values: (offset in acc, first value in the bucket, count).
    struct Run {
      int64_t at, first, count;
    };
    Run runs[qsgd::kMaxValuesPerWord];
    int nRuns = 0;
    if (whole) {
      runs[nRuns++] = {0, 0, bk.count};
    } else {
      for (int j = 0; j < kk; ++j) {
        const int64_t first = j * bk.sectionLength + tt;
        const int64_t valid = std::clamp<int64_t>(bk.count - first, 0, c);
        if (valid == 0) break;  // later sections start even further on
        runs[nRuns++] = {j * stride, first, valid};
      }
    }
    for (int u = 0; u < nRuns; ++u) std::fill_n(acc + runs[u].at, runs[u].count, 0.0f);
    for (size_t code = 0; code < codes.size(); ++code) {
      const EncodedView& e = codes[code];
      const double scale = e.scale(b);
      const bool nonFinite = isNan(scale);
      const bool keepResidual = static_cast<int>(code) == r.residualOf;
      if (!nonFinite) k.unpackWords(e.words.data() + bk.wordBegin + tt, c, kk, width, stride, scratch);
      const auto ds = qsgd::decodeScaleF32(static_cast<float>(scale), qsgd::levels(e.bits));
      for (int u = 0; u < nRuns; ++u) {
        const Run& run = runs[u];
        float* a = acc + run.at;
        if (!nonFinite && !keepResidual) {
          k.decodeAddRunF32(scratch + run.at, run.count, e.bits, e.layout, ds, a);
          continue;
        }
        float* d = decoded + run.at;
        if (nonFinite) {
          std::fill_n(d, run.count, std::numeric_limits<float>::quiet_NaN());
        } else {
          k.decodeRunF32(scratch + run.at, run.count, e.bits, e.layout, ds, d);
        }
        for (int64_t i = 0; i < run.count; ++i) a[i] += d[i];
        if (keepResidual) {
          const float* in = r.input.data() + bk.begin + run.first;
          float* res = r.residual.data() + bk.begin + run.first;
          for (int64_t i = 0; i < run.count; ++i) res[i] = in[i] - d[i];
        }
      }
    }
    for (int u = 0; u < nRuns; ++u) {
      const float* a = acc + runs[u].at;
      float* dst = out + bk.begin + runs[u].first;
      for (int64_t i = 0; i < runs[u].count; ++i) dst[i] = a[i] / ranks;
    }
  }
}

}  // namespace

Status qsgdDecodeMean(std::span<const EncodedTensor* const> codes, std::span<float> out,
                      Executor* executor, const DecodeMeanResidual& residual) {
  std::vector<EncodedView> views;
  views.reserve(codes.size());
  for (size_t c = 0; c < codes.size(); ++c) {
    if (codes[c] == nullptr) return invalidArgument("decode-and-mean: code ", c, " is null");
    QCOMM_RETURN_IF_ERROR(validateEncoded(*codes[c]).withContextOf("code ", c, ": "));
    views.push_back(viewOf(*codes[c]));
  }
  return qsgdDecodeMean(std::span<const EncodedView>(views), out, executor, residual);
}

Status qsgdDecodeMean(std::span<const EncodedView> codes, std::span<float> out,
                      Executor* executor, const DecodeMeanResidual& residual) {
  QCOMM_RETURN_IF_ERROR(checkMeanInputs(codes, out, residual));
  QCOMM_ASSIGN_OR_RETURN(const CpuKernels* kernels, kernelsFromEnvironment());
  const EncodedView& e = codes[0];
  const int kk = qsgd::valuesPerWord(e.bits, e.layout);
  const int width = qsgd::codeWidth(e.bits, e.layout);
  const int64_t nb = e.numBuckets();
  if (e.bucketSize <= kFusedBucketLimit) {
    const int64_t grain = std::max<int64_t>(1, kGrainValues / e.bucketSize);
    const auto levelsOf = qsgd::levels(e.bits);
    const bool stream = e.count >= kStreamValues;
    parallelFor(executor, nb, grain, [&](int64_t b0, int64_t b1) {
      std::vector<const uint64_t*> words(codes.size()), aheadWords(codes.size());
      std::vector<qsgd::DecodeScaleF32> scales(codes.size());
      for (int64_t b = b0; b < b1; ++b) {
        const Bucket bk = bucketAt(b, e.count, e.bucketSize, kk);
        // The fused kernel takes buckets in one tile, with finite scales.
        bool fused = bk.sectionLength <= kWordTile;
        for (size_t c = 0; fused && c < codes.size(); ++c) {
          const double scale = codes[c].scale(b);
          fused = !isNan(scale);
          words[c] = codes[c].words.data() + bk.wordBegin;
          scales[c] = qsgd::decodeScaleF32(static_cast<float>(scale), levelsOf);
        }
        // The scales kScaleAhead buckets on: P arrays read 4 or 8 bytes per bucket are streams
        // the hardware prefetcher leaves alone like the words (their loads missed: 2 of the 30 ms
        // of 2^26 values at P = 8, q = 4).
        if (b + kScaleAhead < b1) {
          for (size_t c = 0; c < codes.size(); ++c) prefetchScale(codes[c], b + kScaleAhead);
        }
        int64_t aheadLength = 0;
        if (fused && b + kPrefetchBuckets < b1) {
          // The words and the output kPrefetchBuckets buckets on, fetched while this one
          // decodes: P + 1 streams are more than the hardware prefetcher follows, and the
          // output's lines are owned before they are written (streamed lines need no owning).
          // The kernel asks for the words as it goes.
          const Bucket ahead = bucketAt(b + kPrefetchBuckets, e.count, e.bucketSize, kk);
          aheadLength = ahead.sectionLength;
          for (size_t c = 0; c < codes.size(); ++c) {
            aheadWords[c] = codes[c].words.data() + ahead.wordBegin;
          }
          float* next = out.data() + ahead.begin;
          for (int64_t i = 0; !stream && i < ahead.count; i += 16) __builtin_prefetch(next + i, 1);
        }
        if (!fused) {
          decodeMeanWords(*kernels, codes, bk, b, kk, width, 0, bk.sectionLength, residual,
                          out.data());
          continue;
        }
        const auto decodeMean = [&](float* into) {
          kernels->decodeMeanBucketF32(words.data(), scales.data(), static_cast<int>(codes.size()),
                                       bk.sectionLength, bk.count, e.bits, e.layout, into,
                                       aheadWords.data(), aheadLength);
        };
        if (stream) {
          // Decoded into a buffer in cache, then streamed out a line at a time: the kernel's
          // stores land section by section, not on line boundaries.
          alignas(64) float stage[qsgd::kMaxValuesPerWord * kWordTile];
          decodeMean(stage);
          kernels->streamF32(stage, bk.count, out.data() + bk.begin);
        } else {
          decodeMean(out.data() + bk.begin);
        }
        if (residual.residualOf >= 0) {  // residual = input - own decoded code
          float mine[qsgd::kMaxValuesPerWord * kWordTile];
          const EncodedView& own = codes[residual.residualOf];
          decodeWords(*kernels, own, bk, own.scale(b), kk, width, 0, bk.sectionLength, mine);
          const float* in = residual.input.data() + bk.begin;
          float* res = residual.residual.data() + bk.begin;
          for (int64_t i = 0; i < bk.count; ++i) res[i] = in[i] - mine[i];
        }
      }
      if (stream) kernels->streamFence();  // the streamed lines visible to whoever joins us
    });
  } else {
    for (int64_t b = 0; b < nb; ++b) {
      const Bucket bk = bucketAt(b, e.count, e.bucketSize, kk);
      const int64_t grain = std::max<int64_t>(kWordTile, kGrainValues / kk);
      parallelFor(executor, bk.sectionLength, grain, [&](int64_t t0, int64_t t1) {
        decodeMeanWords(*kernels, codes, bk, b, kk, width, t0, t1, residual, out.data());
      });
    }
  }
  return Status::ok();
}

Result<EncodedTensor> qsgdEncode(std::span<const float> values, const QsgdOptions& options,
                                 const RandomKey& key, Executor* executor,
                                 std::span<const int64_t> shape) {
  return encodeNew(values, options, key, executor, shape);
}

Result<EncodedTensor> qsgdEncode(std::span<const double> values, const QsgdOptions& options,
                                 const RandomKey& key, Executor* executor,
                                 std::span<const int64_t> shape) {
  return encodeNew(values, options, key, executor, shape);
}

Status qsgdEncodeInto(std::span<const float> values, const QsgdOptions& options,
                      const RandomKey& key, Executor* executor, EncodedTensor* out,
                      std::span<const int64_t> shape) {
  if (out == nullptr) return invalidArgument("qsgdEncodeInto: out is null");
  return encodeImpl(values, options, key, executor, shape, out);
}

Status qsgdEncodeWithResidual(std::span<const float> values, const QsgdOptions& options,
                              const RandomKey& key, Executor* executor, EncodedTensor* out,
                              std::span<float> residual) {
  if (out == nullptr) return invalidArgument("qsgdEncodeWithResidual: out is null");
  if (residual.size() != values.size()) {
    return invalidArgument("error-feedback residual holds ", residual.size(), " values, the input ",
                           values.size());
  }
  return encodeImpl(values, options, key, executor, {}, out, residual);
}

Status qsgdEncodeInto(std::span<const double> values, const QsgdOptions& options,
                      const RandomKey& key, Executor* executor, EncodedTensor* out,
                      std::span<const int64_t> shape) {
  if (out == nullptr) return invalidArgument("qsgdEncodeInto: out is null");
  return encodeImpl(values, options, key, executor, shape, out);
}

Status qsgdDecode(const EncodedTensor& encoded, std::span<float> out, Executor* executor) {
  QCOMM_RETURN_IF_ERROR(validateEncoded(encoded));
  return decodeImpl(viewOf(encoded), out, executor);
}

Status qsgdDecode(const EncodedView& encoded, std::span<float> out, Executor* executor) {
  QCOMM_RETURN_IF_ERROR(validateView(encoded));
  return decodeImpl(encoded, out, executor);
}

Status qsgdDecode(const EncodedTensor& encoded, std::span<double> out, Executor* executor) {
  QCOMM_RETURN_IF_ERROR(validateEncoded(encoded));
  return decodeImpl(viewOf(encoded), out, executor);
}

}  // namespace qcomm
