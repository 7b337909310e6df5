// The block quantizers' driver: plans blocks, takes each block's parameters from its codec, packs
// codes densely into words and unpacks them, on the executor.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "codec/quant/quant_codecs.h"

namespace qcomm {
namespace {

constexpr int64_t kMaxCount = int64_t{1} << 56;
constexpr int64_t kGrain = int64_t{1} << 14;

bool isCast(QuantKind kind) { return kind == QuantKind::kFp16 || kind == QuantKind::kBf16; }

// Values per block: the option, or the codec's default (dynamic: 4096; row-wise: the last
// dimension of the shape; otherwise the whole tensor).
int64_t effectiveBlock(const QuantOptions& o, int64_t count, std::span<const int64_t> shape) {
  int64_t block = o.blockSize;
  if (o.kind == QuantKind::kRowwise && block == 0) block = shape.empty() ? count : shape.back();
  if (block == 0) block = o.kind == QuantKind::kDynamic ? 4096 : count;
  return std::max<int64_t>(block, 1);
}

template <typename T>
quant::BlockParams<T> blockParams(const T* v, int64_t n, const QuantOptions& o) {
  switch (o.kind) {
    case QuantKind::kLinear: return quant::linearParams(v, n, o);
    case QuantKind::kPercentile: return quant::percentileParams(v, n, o);
    case QuantKind::kDynamic: return quant::dynamicParams(v, n, o);
    case QuantKind::kRowwise: return quant::rowwiseParams(v, n, o);
    case QuantKind::kFp16:
    case QuantKind::kBf16: break;
  }
  return {};
}

template <typename T>
Status quantizeImpl(std::span<const T> values, const QuantOptions& o, const RandomKey& key,
                    std::span<const int64_t> shape, Executor* executor, QuantizedTensor* out) {
  QCOMM_RETURN_IF_ERROR(o.validate());
  const int64_t n = static_cast<int64_t>(values.size());
  if (n > kMaxCount) return outOfRange("more than 2^56 values");
  QuantizedTensor& q = *out;
  q.options = o;
  q.dtype = std::is_same_v<T, float> ? DType::kFloat32 : DType::kFloat64;
  q.count = n;
  q.flags = 0;
  if (shape.empty()) {
    q.shape = {n};
  } else {
    int64_t product = 1;
    for (const int64_t d : shape) {
      if (d < 0) return invalidArgument("shape has a negative dimension: ", d);
      product *= d;
    }
    if (product != n) return invalidArgument("shape holds ", product, " values but there are ", n);
    q.shape.assign(shape.begin(), shape.end());
  }
  q.blockSize = effectiveBlock(o, n, shape);
  const int64_t blocks = isCast(o.kind) ? 0 : (n + q.blockSize - 1) / q.blockSize;
  std::vector<quant::BlockParams<T>> params(blocks);
  const T* v = values.data();
  parallelFor(executor, blocks, std::max<int64_t>(1, kGrain / q.blockSize), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * q.blockSize;
      params[b] = blockParams(v + begin, std::min(q.blockSize, n - begin), o);
    }
  });
  q.scales.resize(blocks);
  q.zeroPoints.assign(q.hasZeroPoints() ? blocks : 0, 0.0);
  for (int64_t b = 0; b < blocks; ++b) {
    q.scales[b] = static_cast<double>(params[b].scale);
    if (q.hasZeroPoints()) q.zeroPoints[b] = static_cast<double>(params[b].zero);
    if (std::isnan(q.scales[b])) q.flags |= kFlagNonFinite;
  }
  const int bits = q.codeBits();
  q.words.assign(quant::wordsFor(n, bits), 0);
  const qsgd::PhiloxKey philox = qsgd::philoxKey(key.seed, key.rank, key.tensorId);
  const bool stochastic = o.rounding == Rounding::kStochastic;
  const float* map = dynamicMap().data();
  bool castNonFinite = false;
  if (isCast(o.kind)) {
    for (int64_t i = 0; i < n; ++i) castNonFinite |= !std::isfinite(v[i]);
    if (castNonFinite) q.flags |= kFlagNonFinite;
  }
  uint64_t* words = q.words.data();
  // Each task codes the values its words cover once, into a buffer (one Philox call per four
  // values, as the random stream is laid out), then packs them.
  parallelFor(executor, static_cast<int64_t>(q.words.size()), std::max<int64_t>(1, kGrain / 8),
              [&](int64_t w0, int64_t w1) {
    const int64_t i0 = quant::firstCode(w0, bits);
    const int64_t i1 = std::min(quant::lastCode(w1 - 1, bits), n - 1) + 1;
    std::vector<uint32_t> codes(i1 - i0, 0u);
    std::vector<uint32_t> random(stochastic ? i1 - i0 : 0);
    for (int64_t block = i0 >> 2; stochastic && block <= (i1 - 1) >> 2; ++block) {
      uint32_t c[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                       static_cast<uint32_t>(key.step), static_cast<uint32_t>(key.step >> 32)};
      qsgd::philox4x32_10(c, philox);  // qsgd::randomBits of the four indices 4*block + j
      for (int j = 0; j < 4; ++j) {
        const int64_t i = 4 * block + j;
        if (i >= i0 && i < i1) random[i - i0] = c[j];
      }
    }
    for (int64_t i = i0; i < i1; ++i) {
      if (isCast(o.kind)) {
        codes[i - i0] = quant::encodeValue<T>(o.kind, v[i], T(0), T(0), false, false, 0, bits, map);
        continue;
      }
      const quant::BlockParams<T>& p = params[i / q.blockSize];
      if (std::isnan(p.scale)) continue;  // a non-finite block: zero codes
      codes[i - i0] = quant::encodeValue<T>(o.kind, v[i], p.scale, p.zero, o.symmetric,
                                            stochastic, stochastic ? random[i - i0] : 0u, bits,
                                            map);
    }
    for (int64_t w = w0; w < w1; ++w) {
      uint64_t word = 0;
      const int64_t last = std::min(quant::lastCode(w, bits), n - 1);
      for (int64_t i = quant::firstCode(w, bits); i <= last; ++i) {
        word |= quant::codeBitsInWord(codes[i - i0], i, bits, w);
      }
      words[w] = word;
    }
  });
  return Status::ok();
}

template <typename T, typename Out>
void dequantizeAs(const QuantizedTensor& q, Out* out, Executor* executor) {
  const int bits = q.codeBits();
  const float* map = dynamicMap().data();
  const bool cast = isCast(q.options.kind);
  parallelFor(executor, q.count, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const uint32_t code = quant::readCode(q.words.data(), i, bits);
      if (cast) {
        out[i] = static_cast<Out>(quant::decodeValue<T>(q.options.kind, code, T(0), T(0), false,
                                                         bits, map));
        continue;
      }
      const int64_t b = i / q.blockSize;
      const T scale = static_cast<T>(q.scales[b]);
      if (std::isnan(scale)) {
        out[i] = std::numeric_limits<Out>::quiet_NaN();
        continue;
      }
      const T zero = q.hasZeroPoints() ? static_cast<T>(q.zeroPoints[b]) : T(0);
      out[i] = static_cast<Out>(quant::decodeValue<T>(q.options.kind, code, scale, zero,
                                                       q.options.symmetric, bits, map));
    }
  });
}

template <typename Out>
Status dequantizeImpl(const QuantizedTensor& q, std::span<Out> out, Executor* executor) {
  QCOMM_RETURN_IF_ERROR(validateQuantized(q));
  if (static_cast<int64_t>(out.size()) != q.count) {
    return invalidArgument("dequantize output holds ", out.size(), " values but the code has ",
                           q.count);
  }
  if (q.dtype == DType::kFloat32) {
    dequantizeAs<float>(q, out.data(), executor);
  } else {
    dequantizeAs<double>(q, out.data(), executor);
  }
  return Status::ok();
}

}  // namespace

int64_t QuantizedTensor::numBlocks() const {
  if (isCast(options.kind) || count == 0) return 0;
  return (count + blockSize - 1) / blockSize;
}

bool QuantizedTensor::hasZeroPoints() const {
  return options.kind == QuantKind::kRowwise ||
         (!options.symmetric &&
          (options.kind == QuantKind::kLinear || options.kind == QuantKind::kPercentile));
}

int QuantizedTensor::codeBits() const { return options.bits; }

Status validateQuantized(const QuantizedTensor& q) {
  QCOMM_RETURN_IF_ERROR(q.options.validate());
  if (q.count < 0 || q.count > kMaxCount) return dataLoss("value count ", q.count, " is invalid");
  if (q.blockSize < 1) return dataLoss("block size ", q.blockSize, " is below 1");
  int64_t product = 1;
  for (const int64_t d : q.shape) {
    if (d < 0) return dataLoss("shape has a negative dimension: ", d);
    if (d != 0 && product > kMaxCount / d) return dataLoss("shape holds more than 2^56 values");
    product *= d;
  }
  if (product != q.count) {
    return dataLoss("shape holds ", product, " values but the count is ", q.count);
  }
  const int64_t blocks = q.numBlocks();
  if (static_cast<int64_t>(q.scales.size()) != blocks) {
    return dataLoss("expected ", blocks, " block scales for ", q.count, " values in blocks of ",
                    q.blockSize, ", got ", q.scales.size());
  }
  const int64_t zeros = q.hasZeroPoints() ? blocks : 0;
  if (static_cast<int64_t>(q.zeroPoints.size()) != zeros) {
    return dataLoss("expected ", zeros, " zero points, got ", q.zeroPoints.size());
  }
  const int64_t words = quant::wordsFor(q.count, q.codeBits());
  if (static_cast<int64_t>(q.words.size()) != words) {
    return dataLoss("expected ", words, " words for ", q.count, " codes of ", q.codeBits(),
                    " bits, got ", q.words.size());
  }
  return Status::ok();
}

Result<QuantizedTensor> quantize(std::span<const float> values, const QuantOptions& options,
                                 const RandomKey& key, std::span<const int64_t> shape,
                                 Executor* executor) {
  QuantizedTensor q;
  QCOMM_RETURN_IF_ERROR(quantizeImpl(values, options, key, shape, executor, &q));
  return q;
}

Result<QuantizedTensor> quantize(std::span<const double> values, const QuantOptions& options,
                                 const RandomKey& key, std::span<const int64_t> shape,
                                 Executor* executor) {
  QuantizedTensor q;
  QCOMM_RETURN_IF_ERROR(quantizeImpl(values, options, key, shape, executor, &q));
  return q;
}

Status dequantize(const QuantizedTensor& q, std::span<float> out, Executor* executor) {
  return dequantizeImpl(q, out, executor);
}

Status dequantize(const QuantizedTensor& q, std::span<double> out, Executor* executor) {
  return dequantizeImpl(q, out, executor);
}

std::vector<int32_t> unpackCodes(const QuantizedTensor& q) {
  std::vector<int32_t> codes(q.count);
  const bool linear = q.options.kind == QuantKind::kLinear ||
                      q.options.kind == QuantKind::kPercentile;
  for (int64_t i = 0; i < q.count; ++i) {
    const uint32_t code = quant::readCode(q.words.data(), i, q.codeBits());
    codes[i] = linear ? quant::linearSigned(code, q.options.symmetric, q.codeBits())
                      : static_cast<int32_t>(code);
  }
  return codes;
}

}  // namespace qcomm
