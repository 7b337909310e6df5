// Options, geometry and the consistency check of an EncodedTensor.
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <string>

#include "codec/qsgd_format.h"
#include "qcomm/codec.h"

namespace qcomm {
namespace {

constexpr int64_t kMaxCount = int64_t{1} << 56;

bool knownLayout(Layout layout) { return layout == Layout::kSeed || layout == Layout::kCompact; }
bool knownNorm(NormKind norm) { return norm == NormKind::kL2 || norm == NormKind::kMax; }
bool knownDtype(DType dtype) { return dtype == DType::kFloat32 || dtype == DType::kFloat64; }

}  // namespace

Status QsgdOptions::validate() const {
  if (bits < kMinBits || bits > kMaxBits) {
    return invalidArgument("bits must be in [", kMinBits, ", ", kMaxBits, "], got ", bits);
  }
  if (bucketSize < 0) {
    return invalidArgument("bucket size must be >= 1 (or 0 for the whole tensor), got ",
                           bucketSize);
  }
  if (bucketSize > kMaxCount) return outOfRange("bucket size ", bucketSize, " exceeds 2^56");
  if (!knownLayout(layout)) {
    return invalidArgument("layout must be seed or compact, got ", static_cast<int>(layout));
  }
  if (!knownNorm(norm)) {
    return invalidArgument("norm must be l2 or max, got ", static_cast<int>(norm));
  }
  if (randomBits != 32 && randomBits != 16) {
    return invalidArgument("random bits per value must be 32 or 16, got ", randomBits);
  }
  return Status::ok();
}

Result<QsgdGeometry> qsgdGeometry(int64_t count, const QsgdOptions& options) {
  QCOMM_RETURN_IF_ERROR(options.validate());
  if (count < 0) return invalidArgument("element count is negative: ", count);
  if (count > kMaxCount) return outOfRange("element count ", count, " exceeds 2^56");
  QsgdGeometry g;
  g.codeWidth = qsgd::codeWidth(options.bits, options.layout);
  g.valuesPerWord = qsgd::valuesPerWord(options.bits, options.layout);
  g.bucketSize = options.bucketSize == 0 ? std::max<int64_t>(count, 1) : options.bucketSize;
  g.numBuckets = count == 0 ? 0 : 1 + (count - 1) / g.bucketSize;  // any bucket size: no overflow
  if (g.numBuckets > 0) {
    const int64_t last = count - (g.numBuckets - 1) * g.bucketSize;
    g.wordCount = (g.numBuckets - 1) * qsgd::sectionLength(g.bucketSize, g.valuesPerWord) +
                  qsgd::sectionLength(last, g.valuesPerWord);
  }
  return g;
}

int64_t EncodedTensor::numBuckets() const {
  return bucketSize > 0 && count > 0 ? 1 + (count - 1) / bucketSize : 0;
}

int64_t EncodedView::numBuckets() const {
  return bucketSize > 0 && count > 0 ? 1 + (count - 1) / bucketSize : 0;
}

EncodedView viewOf(const EncodedTensor& e) {
  EncodedView v;
  v.bits = e.bits;
  v.layout = e.layout;
  v.norm = e.norm;
  v.dtype = e.dtype;
  v.bucketSize = e.bucketSize;
  v.count = e.count;
  v.flags = e.flags;
  v.scalesF64 = e.scales;
  v.words = e.words;
  return v;
}

namespace {

// The header fields: dtype, bucket size, geometry, flags. Sets *geometry.
Status validateFields(const EncodedView& e, QsgdGeometry* geometry) {
  if (!knownDtype(e.dtype))
    return dataLoss("dtype code ", static_cast<int>(e.dtype), " is unknown");
  if (e.bucketSize < 1) return dataLoss("bucket size must be >= 1, got ", e.bucketSize);
  QsgdOptions options;
  options.bits = e.bits;
  options.layout = e.layout;
  options.norm = e.norm;
  options.bucketSize = e.bucketSize;
  Result<QsgdGeometry> g = qsgdGeometry(e.count, options);
  if (!g.isOk()) return Status(StatusCode::kDataLoss, g.status().message());
  if ((e.flags & ~kKnownFlags) != 0) {
    return dataLoss("flags 0x", std::hex, e.flags, " hold unknown bits");
  }
  *geometry = *g;
  return Status::ok();
}

// Whether every scale is valid (>= 0 and finite, or NaN; a float32 value where `f32`) with a
// NaN among them exactly when `flagged`: one pass the compiler vectorizes, built for AVX2 as well
// (a scalar loop took 2 ms of a 33-ms decode-and-mean of 8 codes of 2^26 values). The loop in
// validatePayload names what is wrong.
template <typename T>
bool scalesHealthy(std::span<const T> scales, bool f32, bool flagged) {
  const T top =
      f32 ? static_cast<T>(std::numeric_limits<float>::max()) : std::numeric_limits<T>::max();
  int64_t nan = 0, bad = 0;
  for (const T x : scales) {
    nan += !(x == x);
    bad += (x < T(0)) | (x > top);
  }
  if (bad != 0 || (nan != 0) != flagged) return false;
  if constexpr (std::is_same_v<T, double>) {
    if (f32) {
      for (const double x : scales) {
        bad += (x == x) & (static_cast<double>(static_cast<float>(x)) != x);
      }
    }
  }
  return bad == 0;
}
// target_clones dispatches through an ifunc resolver, which runs at load time, before
// ThreadSanitizer's runtime starts; instrumented, it crashes the program there. TSan builds take
// the default loop alone.
#if defined(__SANITIZE_THREAD__)
#define QCOMM_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define QCOMM_UNDER_TSAN 1
#endif
#endif
#if defined(__x86_64__) && !defined(QCOMM_UNDER_TSAN)
#define QCOMM_ALSO_FOR_AVX2 __attribute__((target_clones("avx2", "default")))
#else
#define QCOMM_ALSO_FOR_AVX2
#endif
QCOMM_ALSO_FOR_AVX2 bool scalesHealthyF32(std::span<const float> scales, bool flagged) {
  return scalesHealthy(scales, true, flagged);
}
QCOMM_ALSO_FOR_AVX2 bool scalesHealthyF64(std::span<const double> scales, bool f32, bool flagged) {
  return scalesHealthy(scales, f32, flagged);
}

// The scales and words against the geometry.
Status validatePayload(const EncodedView& e, const QsgdGeometry& g) {
  if (!e.scalesF32.empty() && !e.scalesF64.empty()) {
    return invalidArgument("a view holds both fp32 and fp64 scales");
  }
  if (!e.scalesF32.empty() && e.dtype != DType::kFloat32) {
    return dataLoss("a ", dtypeName(e.dtype), " tensor with fp32 scales");
  }
  if (static_cast<int64_t>(e.scaleCount()) != g.numBuckets) {
    return dataLoss("expected ", g.numBuckets, " bucket scales for ", e.count,
                    " values in buckets of ", e.bucketSize, ", got ", e.scaleCount());
  }
  if (static_cast<int64_t>(e.words.size()) != g.wordCount) {
    return dataLoss("expected ", g.wordCount, " words for ", e.count, " values at ", e.bits,
                    " bits (", layoutName(e.layout), " layout, buckets of ", e.bucketSize,
                    "), got ", e.words.size());
  }
  const bool flagged = (e.flags & kFlagNonFinite) != 0;
  if (e.scalesF32.empty() ? scalesHealthyF64(e.scalesF64, e.dtype == DType::kFloat32, flagged)
                          : scalesHealthyF32(e.scalesF32, flagged)) {
    return Status::ok();
  }
  bool anyNan = false;
  for (int64_t b = 0; b < g.numBuckets; ++b) {
    const double x = e.scale(b);
    if (std::isnan(x)) {
      anyNan = true;
      continue;
    }
    if (!(x >= 0.0) || std::isinf(x)) return dataLoss("scale of bucket ", b, " is invalid: ", x);
    if (e.dtype == DType::kFloat32 && static_cast<double>(static_cast<float>(x)) != x) {
      return dataLoss("scale of bucket ", b, " (", x, ") is not a float32 value");
    }
  }
  if (anyNan != flagged) {
    return dataLoss(anyNan ? "a bucket scale is NaN but the non-finite flag is clear"
                           : "the non-finite flag is set but no bucket scale is NaN");
  }
  return Status::ok();
}

}  // namespace

Status validateShape(std::span<const int64_t> shape, int64_t count) {
  int64_t product = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t d = shape[i];
    if (d < 0) return dataLoss("shape dimension ", i, " is negative: ", d);
    if (d != 0 && product > kMaxCount / d) return dataLoss("shape holds more than 2^56 values");
    product *= d;
  }
  if (shape.empty() && count != 1) {
    return dataLoss("a scalar shape () holds 1 value but the count is ", count);
  }
  if (!shape.empty() && product != count) {
    return dataLoss("shape holds ", product, " values but the count is ", count);
  }
  return Status::ok();
}

Status validateView(const EncodedView& e) {
  QsgdGeometry g;
  QCOMM_RETURN_IF_ERROR(validateFields(e, &g));
  return validatePayload(e, g);
}

Status validateEncoded(const EncodedTensor& e) {
  const EncodedView view = viewOf(e);
  QsgdGeometry g;
  QCOMM_RETURN_IF_ERROR(validateFields(view, &g));
  QCOMM_RETURN_IF_ERROR(validateShape(e.shape, e.count));
  return validatePayload(view, g);
}

std::string_view layoutName(Layout layout) {
  return layout == Layout::kSeed ? "seed" : layout == Layout::kCompact ? "compact" : "unknown";
}
std::string_view normKindName(NormKind norm) {
  return norm == NormKind::kL2 ? "l2" : norm == NormKind::kMax ? "max" : "unknown";
}
std::string_view dtypeName(DType dtype) {
  return dtype == DType::kFloat32 ? "float32" : dtype == DType::kFloat64 ? "float64" : "unknown";
}

Result<Layout> parseLayout(std::string_view name) {
  if (name == "seed") return Layout::kSeed;
  if (name == "compact") return Layout::kCompact;
  return invalidArgument("layout must be 'seed' or 'compact', got '", std::string(name), "'");
}

Result<NormKind> parseNormKind(std::string_view name) {
  if (name == "l2") return NormKind::kL2;
  if (name == "max") return NormKind::kMax;
  return invalidArgument("norm must be 'l2' or 'max', got '", std::string(name), "'");
}

double wireBitsPerValue(const EncodedTensor& encoded) {
  if (encoded.count == 0) return 0.0;
  return 64.0 * static_cast<double>(encoded.words.size()) / static_cast<double>(encoded.count);
}

}  // namespace qcomm
