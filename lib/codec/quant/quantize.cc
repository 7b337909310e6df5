// The block quantizers' driver: plans blocks, takes each block's parameters from its codec, packs
// codes densely into words and unpacks them, on the executor.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include <atomic>
#include <cstring>

#include "codec/qsgd_cpu_kernels.h"
#include "codec/quant/quant_codecs.h"
#include "codec/quant/quant_cpu_kernels.h"
#include "qcomm/env.h"

namespace qcomm {
namespace {

constexpr int64_t kMaxCount = int64_t{1} << 56;
constexpr int64_t kGrain = int64_t{1} << 14;

// Values per tile of the float32 kernels: a multiple of 64, so every tile starts on a word.
constexpr int64_t kTile = 4096;

bool isCast(QuantKind kind) { return kind == QuantKind::kFp16 || kind == QuantKind::kBf16; }

// The kernels QCOMM_CPU_ISA selects: the block quantizers' and QSGD's (for Philox).
struct Kernels {
  const quant::QuantCpuKernels* quant;
  const qsgd::CpuKernels* qsgd;
};

Result<Kernels> kernelsFromEnvironment() {
  const std::string isa = knobString(Knob::kCpuIsa);
  QCOMM_ASSIGN_OR_RETURN(const quant::QuantCpuKernels* q, quant::selectQuantKernels(isa));
  QCOMM_ASSIGN_OR_RETURN(const qsgd::CpuKernels* k, qsgd::selectKernels(isa));
  return Kernels{q, k};
}

template <typename T>
quant::BlockParams<T> rawBlockParams(const T* v, int64_t n, const QuantOptions& o) {
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

// float32 blocks: the statistics from the vector kernels, then the same parameters as above.
quant::BlockParams<float> rawBlockParams(const float* v, int64_t n, const QuantOptions& o,
                                         const Kernels& kernels, quant::PercentileHint* hint) {
  const quant::QuantCpuKernels& k = *kernels.quant;
  if (o.kind == QuantKind::kPercentile) return quant::percentileParams(v, n, o, k, hint);
  if (isCast(o.kind)) return {};
  const bool stochastic = o.rounding == Rounding::kStochastic;
  if (o.kind == QuantKind::kDynamic || (o.kind == QuantKind::kLinear && o.symmetric)) {
    // Only max |x| matters: QSGD's kernel finds it (and non-finite values) in half the work.
    bool nonFinite = false;
    const float absmax = kernels.qsgd->maxAbsF32(v, n, &nonFinite);
    if (nonFinite) return {std::numeric_limits<float>::quiet_NaN(), 0.0f};
    if (o.kind == QuantKind::kDynamic) {
      return {quant::dynamicScale(absmax, stochastic, dynamicMap().data()), 0.0f};
    }
    return quant::paramsFromRange(absmax, 0.0f, true, o.bits, stochastic);
  }
  const quant::BlockStatsF32 s = k.statsF32(v, n);
  if (!s.finite) return {std::numeric_limits<float>::quiet_NaN(), 0.0f};
  switch (o.kind) {
    case QuantKind::kLinear:
      return quant::paramsFromRange(o.symmetric ? s.absmax : s.hi, s.lo, o.symmetric, o.bits,
                                    o.rounding == Rounding::kStochastic);
    case QuantKind::kDynamic:
      return {quant::dynamicScale(s.absmax, o.rounding == Rounding::kStochastic,
                                  dynamicMap().data()),
              0.0f};
    case QuantKind::kRowwise: return quant::rowwiseFromRange(s.hi, s.lo, o.bits);
    default: return {};
  }
}

// What a block is quantized with: a scale that overflowed makes the block non-finite.
template <typename T>
quant::BlockParams<T> blockParams(const T* v, int64_t n, const QuantOptions& o) {
  return quant::nonFiniteIfOverflowed(rawBlockParams(v, n, o));
}

// `hint`: the percentile thresholds of the task's previous block (quant_codecs.h).
quant::BlockParams<float> blockParams(const float* v, int64_t n, const QuantOptions& o,
                                      const Kernels& k, quant::PercentileHint* hint) {
  return quant::nonFiniteIfOverflowed(rawBlockParams(v, n, o, k, hint));
}

// A run of the codec of `o` with block parameters p. The tile loops make one per task and set
// each block's parameters with `withParams` (the kernels are called once per block).
quant::RunF32 runOf(const QuantOptions& o, quant::BlockParams<float> p) {
  const quant::DynamicLookup& lookup = quant::dynamicLookup();
  quant::RunF32 run;
  run.kind = o.kind;
  run.symmetric = o.symmetric;
  run.stochastic = o.rounding == Rounding::kStochastic;
  run.bits = o.bits;
  run.scale = p.scale;
  run.zero = p.zero;
  run.map = lookup.map;
  run.dynamicRecord = lookup.record;
  return run;
}

quant::RunF32 withParams(quant::RunF32 run, quant::BlockParams<float> p) {
  run.scale = p.scale;
  run.zero = p.zero;
  return run;
}

// Blocks up to this size are scaled by the task that encodes them, while they sit in cache; larger
// ones in a pass of their own first.
constexpr int64_t kTaskTiles = 16;
constexpr int64_t kFusedBlockLimit = kTaskTiles * kTile / 4;

// Block b's scale and zero point into the tensor (sized for every block).
template <typename T>
void storeParam(QuantizedTensor& q, int64_t b, quant::BlockParams<T> p) {
  q.scales[b] = static_cast<double>(p.scale);
  if (!q.zeroPoints.empty()) q.zeroPoints[b] = static_cast<double>(p.zero);
}

// The non-finite flag from the stored scales (a non-finite block has a NaN scale).
void flagNonFiniteBlocks(QuantizedTensor& q) {
  for (const double scale : q.scales) {
    if (std::isnan(scale)) q.flags |= kFlagNonFinite;
  }
}

// Sizes the tensor's scales and zero points for `blocks` blocks.
void sizeParams(QuantizedTensor& q, int64_t blocks) {
  q.scales.resize(blocks);
  q.zeroPoints.resize(q.hasZeroPoints() ? blocks : 0);
}

// Scales, zero points and the non-finite flag from the blocks' parameters.
template <typename T>
void storeParams(const std::vector<quant::BlockParams<T>>& params, QuantizedTensor& q) {
  const int64_t blocks = static_cast<int64_t>(params.size());
  sizeParams(q, blocks);
  for (int64_t b = 0; b < blocks; ++b) storeParam(q, b, params[b]);
  flagNonFiniteBlocks(q);
}

// Asks for values p[0, count) to come into cache (the casts' next tile; the encoder spreads its
// own requests over its coding, QuantCpuKernels::encodeF32).
void prefetchValues(const float* p, int64_t count) {
  for (int64_t i = 0; i < count; i += 16) __builtin_prefetch(p + i, 0, 2);
}

// float32 quantization in tasks of one tile (blocks of at most a tile) or kTaskTiles tiles: each
// scales the (small) blocks it touches, then per tile draws Philox, codes per block run and packs
// densely into the words (tiles never share a word), while the next task's tile at the same
// position comes into cache. A block on a task boundary is scaled by both tasks (the same values);
// the task holding its first value stores its parameters.
void quantizeTilesF32(const Kernels& k, const float* v, qsgd::PhiloxKey philox, uint64_t step,
                      Executor* executor, QuantizedTensor& q) {
  const QuantOptions& o = q.options;
  const int64_t n = q.count;
  const int bits = q.codeBits();
  const int64_t bs = q.blockSize;
  const bool cast = isCast(o.kind);
  const int64_t blocks = cast ? 0 : (n + bs - 1) / bs;
  const bool fused = bs <= kFusedBlockLimit;
  // The blocks' parameters go straight into the tensor's scales and zero points (reused by
  // quantizeInto: a per-call array of them was the last tensor-sized allocation of a step).
  sizeParams(q, blocks);
  const bool withZeros = q.hasZeroPoints();
  const auto store = [&](int64_t b, quant::BlockParams<float> p) { storeParam(q, b, p); };
  const auto stored = [&](int64_t b) {  // exact: they were floats
    return quant::BlockParams<float>{static_cast<float>(q.scales[b]),
                                     withZeros ? static_cast<float>(q.zeroPoints[b]) : 0.0f};
  };
  if (!fused) {
    parallelFor(executor, blocks, 1, [&](int64_t b0, int64_t b1) {
      quant::PercentileHint hint;
      for (int64_t b = b0; b < b1; ++b) {
        store(b, blockParams(v + b * bs, std::min(bs, n - b * bs), o, k, &hint));
      }
    });
  }
  q.words.resize(quant::wordsFor(n, bits));  // every byte is written below but the last word's tail
  if (!q.words.empty()) q.words.back() = 0;
  uint8_t* stream = reinterpret_cast<uint8_t*>(q.words.data());
  const int64_t totalBytes = static_cast<int64_t>(q.words.size()) * 8;
  const int64_t tiles = (n + kTile - 1) / kTile;
  std::atomic<bool> nonFinite{false};
  // Blocks within a tile are scaled tile by tile; larger ones by a task of kTaskTiles tiles.
  const int64_t taskTiles = bs <= kTile ? 1 : kTaskTiles;
  parallelFor(executor, (tiles + taskTiles - 1) / taskTiles, 1, [&](int64_t g0, int64_t g1) {
    alignas(64) uint32_t random[kTile];  // Philox words: one per value, or one per two values
    alignas(64) uint8_t tileCodes[kTile];
    alignas(64) uint8_t bytes[kTile + 8];
    const quant::RunF32 base = runOf(o, {});
    std::vector<quant::BlockParams<float>> local;
    quant::PercentileHint hint;
    bool bad = false;
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t s0 = g * taskTiles * kTile;
      const int64_t s1 = std::min(n, s0 + taskTiles * kTile);
      const int64_t firstBlock = cast ? 0 : s0 / bs;
      if (fused && !cast) {
        local.resize((s1 - 1) / bs - firstBlock + 1);
        for (int64_t b = firstBlock; b <= (s1 - 1) / bs; ++b) {
          local[b - firstBlock] = blockParams(v + b * bs, std::min(bs, n - b * bs), o, k, &hint);
          if (b * bs >= s0) store(b, local[b - firstBlock]);
        }
      }
      for (int64_t s = s0; s < s1; s += kTile) {
        const int64_t m = std::min(kTile, n - s);
        const int64_t offset = s * bits / 8;
        // The next task's tile at this position comes into cache while this one is coded, so
        // the next block statistics read from cache: the memory traffic overlaps the coding
        // instead of preceding it (2^26 values, linear 4-bit, 16-bit draws, one thread: 47-53 ->
        // 33-38 ms in single runs). The encoder asks for it a line per 16 values as it codes
        // each run (docs/performance.md, "Prefetch spread over the coding").
        const int64_t distance = taskTiles * kTile;
        const int64_t aheadCount = g + 1 < g1 ? std::clamp<int64_t>(n - s - distance, 0, m) : 0;
        if (cast) {  // 16-bit codes are their own packing
          prefetchValues(v + s + distance, aheadCount);
          bad |= k.quant->castF32(o.kind, v + s, m, stream + offset);
          continue;
        }
        if (o.rounding == Rounding::kStochastic) {  // s is a multiple of 8: its own block
          const int shift = qsgd::philoxBlockShift(o.randomBits);
          k.qsgd->philoxBlocks(static_cast<uint64_t>(s) >> shift, (m + (1 << shift) - 1) >> shift,
                               step, philox, random);
        }
        const quant::Draws draws{reinterpret_cast<const unsigned char*>(random), o.randomBits};
        // 8-bit codes are their own packing: coded straight into the words.
        uint8_t* const codes = bits == 8 ? stream + offset : tileCodes;
        for (int64_t i = s, b = s / bs; i < s + m; ++b) {
          const int64_t e = std::min(s + m, (b + 1) * bs);
          const quant::BlockParams<float> p = fused ? local[b - firstBlock] : stored(b);
          if (std::isnan(p.scale)) {
            std::fill(codes + (i - s), codes + (e - s), uint8_t{0});  // a non-finite block
          } else {
            const float* ahead = e - s <= aheadCount ? v + i + distance : nullptr;
            k.quant->encodeF32(withParams(base, p), v + i, e - i, draws + (i - s), codes + (i - s),
                               ahead);
          }
          i = e;
        }
        const int64_t padded = (m + 7) / 8 * 8;
        std::fill(codes + m, codes + padded, uint8_t{0});  // within the words: s is a multiple of 8
        if (bits == 8) continue;
        // All but the last 32 codes straight into the words: packBytes' 8 bytes of slack then land
        // on this tile's own tail (32 codes of >= 2 bits), which the rest rewrites from `bytes`.
        const int64_t direct = std::max<int64_t>(0, padded - 32);
        k.quant->packBytes(codes, direct, bits, stream + offset);
        k.quant->packBytes(codes + direct, padded - direct, bits, bytes);
        const int64_t tail = offset + direct * bits / 8;
        const int64_t length = std::min((padded - direct) * bits / 8, totalBytes - tail);
        std::memcpy(stream + tail, bytes, static_cast<size_t>(length));
      }
    }
    if (bad) nonFinite = true;
  });
  flagNonFiniteBlocks(q);
  if (nonFinite) q.flags |= kFlagNonFinite;
}

template <typename T>
Status quantizeImpl(std::span<const T> values, const QuantOptions& o, const RandomKey& key,
                    std::span<const int64_t> shape, Executor* executor, QuantizedTensor* out) {
  QCOMM_RETURN_IF_ERROR(o.validate());
  const int64_t n = static_cast<int64_t>(values.size());
  if (n > kMaxCount) return outOfRange("more than 2^56 values");
  QCOMM_ASSIGN_OR_RETURN(const Kernels kernels, kernelsFromEnvironment());
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
  q.blockSize = quant::effectiveBlock(o, n, shape);
  if constexpr (std::is_same_v<T, float>) {
    quantizeTilesF32(kernels, values.data(), qsgd::philoxKey(key.seed, key.rank, key.tensorId),
                     key.step, executor, q);
    return Status::ok();
  }
  // float64 input: parameters per block, then codes value by value.
  const int64_t blocks = isCast(o.kind) ? 0 : (n + q.blockSize - 1) / q.blockSize;
  std::vector<quant::BlockParams<T>> params(blocks);
  const T* v = values.data();
  parallelFor(executor, blocks, std::max<int64_t>(1, kGrain / q.blockSize), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * q.blockSize;
      params[b] = blockParams(v + begin, std::min(q.blockSize, n - begin), o);
    }
  });
  storeParams(params, q);
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
    const int shift = qsgd::philoxBlockShift(o.randomBits);
    for (int64_t block = i0 >> shift; stochastic && block <= (i1 - 1) >> shift; ++block) {
      uint32_t c[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                       static_cast<uint32_t>(key.step), static_cast<uint32_t>(key.step >> 32)};
      qsgd::philox4x32_10(c, philox);  // qsgd::randomBits of the indices the block covers
      for (int64_t i = block << shift; i < (block + 1) << shift; ++i) {
        if (i >= i0 && i < i1) random[i - i0] = qsgd::drawOfBlock(c, i, o.randomBits);
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

// float32 codes to float32 values, tile by tile: the tile's bytes, unpacked, decoded per block run.
void decodeTilesF32(const quant::QuantCpuKernels& k, const QuantizedTensor& q, float* out,
                    Executor* executor) {
  const int64_t n = q.count;
  const int bits = q.codeBits();
  const int64_t tiles = (n + kTile - 1) / kTile;
  const int64_t totalBytes = static_cast<int64_t>(q.words.size()) * 8;
  const uint8_t* stream = reinterpret_cast<const uint8_t*>(q.words.data());
  const quant::RunF32 base = runOf(q.options, {});
  const bool withZeros = q.hasZeroPoints();
  parallelFor(executor, tiles, std::max<int64_t>(1, kGrain / kTile), [&](int64_t t0, int64_t t1) {
    alignas(64) uint8_t codes[kTile];
    alignas(64) uint8_t bytes[kTile + 8];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t s = t * kTile;
      const int64_t m = std::min(kTile, n - s);
      const int64_t offset = s * bits / 8;
      if (isCast(q.options.kind)) {
        k.uncastF32(q.options.kind, stream + offset, m, out + s);
        continue;
      }
      // Unpacking reads up to 8 bytes past the tile: from the stream itself where it has them,
      // else (the last tile) from a copy with zeros after it.
      const int64_t padded = (m + 7) / 8 * 8;
      const int64_t length = padded * bits / 8;
      const uint8_t* source = stream + offset;
      if (offset + length + 8 > totalBytes) {
        const int64_t available = std::min(length, totalBytes - offset);
        std::copy(source, source + available, bytes);
        std::fill(bytes + available, bytes + length + 8, uint8_t{0});
        source = bytes;
      }
      k.unpackBytes(source, padded, bits, codes);
      for (int64_t i = s; i < s + m;) {
        const int64_t b = i / q.blockSize;
        const int64_t e = std::min(s + m, (b + 1) * q.blockSize);
        const float scale = static_cast<float>(q.scales[b]);
        if (std::isnan(scale)) {
          std::fill(out + i, out + e, std::numeric_limits<float>::quiet_NaN());
        } else {
          const float zero = withZeros ? static_cast<float>(q.zeroPoints[b]) : 0.0f;
          k.decodeF32(withParams(base, {scale, zero}), codes + (i - s), e - i, out + i);
        }
        i = e;
      }
    }
  });
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
    if constexpr (std::is_same_v<Out, float>) {
      QCOMM_ASSIGN_OR_RETURN(const Kernels kernels, kernelsFromEnvironment());
      decodeTilesF32(*kernels.quant, q, out.data(), executor);
      return Status::ok();
    }
    dequantizeAs<float>(q, out.data(), executor);
  } else {
    dequantizeAs<double>(q, out.data(), executor);
  }
  return Status::ok();
}

}  // namespace

namespace quant {

int64_t effectiveBlock(const QuantOptions& o, int64_t count, std::span<const int64_t> shape) {
  int64_t block = o.blockSize;
  if (o.kind == QuantKind::kRowwise && block == 0) block = shape.empty() ? count : shape.back();
  if (block == 0) block = o.kind == QuantKind::kDynamic ? 4096 : count;
  return std::max<int64_t>(block, 1);
}

}  // namespace quant

int64_t QuantizedTensor::numBlocks() const {
  if (isCast(options.kind) || count <= 0 || blockSize < 1) return 0;
  return 1 + (count - 1) / blockSize;  // no overflow for any block size read from a header
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

Status quantizeInto(std::span<const float> values, const QuantOptions& options, const RandomKey& key,
                    std::span<const int64_t> shape, Executor* executor, QuantizedTensor* out) {
  if (out == nullptr) return invalidArgument("quantizeInto needs an output tensor, got null");
  return quantizeImpl(values, options, key, shape, executor, out);
}

Status quantizeInto(std::span<const double> values, const QuantOptions& options,
                    const RandomKey& key, std::span<const int64_t> shape, Executor* executor,
                    QuantizedTensor* out) {
  if (out == nullptr) return invalidArgument("quantizeInto needs an output tensor, got null");
  return quantizeImpl(values, options, key, shape, executor, out);
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
