// QSGD kernels: the CPU codec's words (docs/format.md) from device memory. Every arithmetic step
// comes from codec/qsgd_format.h, shared with the CPU coder; this file only decides which thread
// does what. Built with --fmad=false: a fused multiply-add would change the L2 sums.
//
// Buckets of up to kFusedBucket values are encoded by one block each, start to end, from shared
// memory: the input is read once. Larger buckets take three kernels: per-tile norms, a per-bucket
// fold into the scale, and one thread per word.
//
// Included by qsgd_kernels.cu (nvcc) and, on machines without a GPU, by the kernel emulation test
// (tests/gpu/kernel_emulation_test.cc), which runs these same kernels on CPU threads under a small
// SIMT emulator: only the CUDA features that emulator provides (tests/gpu/simt_emulator.h).
#pragma once

#include <cstdint>

#include "codec/cuda/qsgd_kernels.h"
#include "codec/qsgd_format.h"

namespace qcomm::cuda::detail {

using qsgd::DecodeScaleF32;
using qsgd::EncodeScaleF32;
using qsgd::kNormLanes;
using qsgd::kNormTile;

// Internal linkage: each including translation unit (the launcher, or the emulation test) has its
// own copy, so a static build that links both has no duplicate symbols.
namespace kernels {
namespace {

constexpr int kWarp = 32;
constexpr uint32_t kFullMask = 0xFFFFFFFFu;

__device__ float quietNan() { return __int_as_float(0x7FC00000); }

struct Bucket {
  int64_t begin;      // first value
  int64_t count;      // values
  int64_t wordBegin;  // first word
  int64_t section;    // L: its words
};

__host__ __device__ int64_t minI64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ Bucket bucketAt(const Geometry& g, int64_t b) {
  const int64_t begin = b * g.bucketSize;
  const int64_t n = minI64(g.bucketSize, g.count - begin);
  return {begin, n, b * g.sectionFull, qsgd::sectionLength(n, g.k)};
}

// A warp's fixed-order fold of its 32 lane sums (qsgd::foldLanes): lane l += lane l + h for
// h = 16, 8, 4, 2, 1; lane 0 ends with the tile's sum.
__device__ double foldWarp(double s) {
  for (int half = kNormLanes / 2; half >= 1; half /= 2) s += __shfl_down_sync(kFullMask, s, half);
  return s;
}

// Sum of squares of one tile (m <= 256 values at v) in the fixed lane order, on one warp.
__device__ double tileSumSquares(const float* v, int64_t m, int lane) {
  double s = 0.0;
  for (int64_t i = lane; i < m; i += kNormLanes) {
    const double x = static_cast<double>(v[i]);
    s += x * x;
  }
  return foldWarp(s);
}

// max |v| of one warp's values (exact in any order) and whether one was NaN/Inf.
__device__ float warpMax(float m) {
  for (int off = kWarp / 2; off >= 1; off /= 2) {
    const float o = __shfl_down_sync(kFullMask, m, off);
    m = o > m ? o : m;
  }
  return m;
}

__device__ float scaleFromSum(double sum) {
  if (!isfinite(sum)) return quietNan();
  return qsgd::clampScaleF32(static_cast<float>(sqrt(sum)));
}

__device__ float scaleFromMax(float maxAbs, bool nonFinite) {
  return nonFinite ? quietNan() : qsgd::clampScaleF32(maxAbs);
}

__device__ uint32_t codeOf(float v, EncodeScaleF32 es, uint32_t random, const Geometry& g) {
  const uint32_t s = qsgd::levels(g.bits);
  return qsgd::signedCodeF32(v, qsgd::quantizeF32(fabsf(v), es, random, s), g.bits, g.layout);
}

// ---- small buckets: one block per bucket --------------------------------------------------------

__global__ void encodeFusedKernel(const float* __restrict__ values, Geometry g, RandomArgs r,
                                  float* __restrict__ scales, uint64_t* __restrict__ words) {
  __shared__ float vals[kFusedBucket];
  __shared__ uint32_t codes[kFusedBucket + qsgd::kMaxValuesPerWord];
  __shared__ double tileSums[kFusedBucket / kNormTile];
  __shared__ float warpMaxima[kMaxFusedThreads / kWarp];
  __shared__ int anyBad;
  __shared__ float scale;
  const int tid = threadIdx.x;
  const int lane = tid % kWarp;
  const int warp = tid / kWarp;
  const int warps = blockDim.x / kWarp;
  const uint32_t pad = qsgd::padCode(g.bits, g.layout);

  for (int64_t b = blockIdx.x; b < g.numBuckets; b += gridDim.x) {
    const Bucket bk = bucketAt(g, b);
    const int n = static_cast<int>(bk.count);
    if (tid == 0) anyBad = 0;
    float localMax = 0.0f;
    bool bad = false;
    for (int i = tid; i < n; i += blockDim.x) {
      const float v = values[bk.begin + i];
      vals[i] = v;
      const float a = fabsf(v);
      bad |= !(a <= 0x1.fffffep+127f);
      localMax = a > localMax ? a : localMax;
    }
    __syncthreads();
    if (g.norm == NormKind::kL2) {
      const int tiles = (n + kNormTile - 1) / kNormTile;
      for (int t = warp; t < tiles; t += warps) {
        const double s = tileSumSquares(vals + t * kNormTile, n - t * kNormTile < kNormTile ? n - t * kNormTile : kNormTile,
                                        lane);
        if (lane == 0) tileSums[t] = s;
      }
      __syncthreads();
      if (tid == 0) scale = scaleFromSum(qsgd::foldPairwise(tileSums, tiles));
    } else {
      const float m = warpMax(localMax);
      if (bad) atomicOr(&anyBad, 1);
      if (lane == 0) warpMaxima[warp] = m;
      __syncthreads();
      if (tid == 0) {
        float best = 0.0f;
        for (int w = 0; w < warps; ++w) best = warpMaxima[w] > best ? warpMaxima[w] : best;
        scale = scaleFromMax(best, anyBad != 0);
      }
    }
    __syncthreads();
    const float sc = scale;
    const int section = static_cast<int>(bk.section);
    if (isnan(sc)) {
      // A non-finite bucket is sent as padding codes; its NaN scale carries the news.
      for (int i = tid; i < g.k * section; i += blockDim.x) codes[i] = pad;
    } else {
      const EncodeScaleF32 es = qsgd::encodeScaleF32(sc, qsgd::levels(g.bits));
      // One Philox block gives the draws of 4 (or, with 16-bit draws, 8) consecutive indices.
      const int shift = qsgd::philoxBlockShift(g.randomBits);
      const int per = qsgd::valuesPerPhiloxBlock(g.randomBits);
      const int64_t first = bk.begin >> shift;
      const int64_t last = (bk.begin + n - 1) >> shift;
      for (int64_t q = first + tid; q <= last; q += blockDim.x) {
        uint32_t c[4] = {static_cast<uint32_t>(q), static_cast<uint32_t>(q >> 32),
                         static_cast<uint32_t>(r.step), static_cast<uint32_t>(r.step >> 32)};
        qsgd::philox4x32_10(c, r.key);
        for (int e = 0; e < per; ++e) {
          const int64_t index = per * q + e;
          const int64_t i = index - bk.begin;
          if (i >= 0 && i < n) codes[i] = codeOf(vals[i], es, qsgd::drawOfBlock(c, index, g.randomBits), g);
        }
      }
      for (int i = n + tid; i < g.k * section; i += blockDim.x) codes[i] = pad;
    }
    if (tid == 0) scales[b] = sc;
    __syncthreads();
    for (int t = tid; t < section; t += blockDim.x) {
      uint64_t w = 0;
      for (int j = 0; j < g.k; ++j) {
        w |= static_cast<uint64_t>(codes[j * section + t]) << qsgd::slotShift(j, g.k, g.width);
      }
      words[bk.wordBegin + t] = w;
    }
    __syncthreads();  // vals and codes are reused by the next bucket
  }
}

// ---- large buckets: tiles, fold, words ----------------------------------------------------------

// One warp per norm tile of every bucket: tile sums (L2) or tile maxima, NaN when non-finite (max).
__global__ void tileNormKernel(const float* __restrict__ values, Geometry g, double* tileSums,
                               float* tileMaxima, int64_t numTiles) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warpsInGrid = int64_t{gridDim.x} * (blockDim.x / kWarp);
  for (int64_t tile = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) / kWarp; tile < numTiles;
       tile += warpsInGrid) {
    const int64_t b = tile / g.tilesPerBucket;
    const Bucket bk = bucketAt(g, b);
    const int64_t offset = (tile - b * g.tilesPerBucket) * kNormTile;
    const float* v = values + bk.begin + offset;
    const int64_t m = minI64(kNormTile, bk.count - offset);
    if (g.norm == NormKind::kL2) {
      const double s = tileSumSquares(v, m, lane);
      if (lane == 0) tileSums[tile] = s;
    } else {
      float best = 0.0f;
      bool bad = false;
      for (int64_t i = lane; i < m; i += kWarp) {
        const float a = fabsf(v[i]);
        bad |= !(a <= 0x1.fffffep+127f);
        best = a > best ? a : best;
      }
      best = warpMax(best);
      bad = __any_sync(kFullMask, bad);
      if (lane == 0) tileMaxima[tile] = bad ? quietNan() : best;
    }
  }
}

// One block per bucket: folds its tiles pairwise, level by level (qsgd::foldPairwise, out of place
// so the threads of a level do not race), or takes the max; writes the bucket's scale.
__global__ void bucketScaleKernel(Geometry g, double* tileSums, double* foldScratch,
                                  const float* tileMaxima, float* scales) {
  __shared__ float warpMaxima[kMaxFusedThreads / kWarp];
  __shared__ int anyBad;
  const int tid = threadIdx.x;
  for (int64_t b = blockIdx.x; b < g.numBuckets; b += gridDim.x) {
    const Bucket bk = bucketAt(g, b);
    const int64_t tiles = (bk.count + kNormTile - 1) / kNormTile;
    const int64_t base = b * g.tilesPerBucket;
    if (g.norm == NormKind::kL2) {
      double* src = tileSums + base;
      double* dst = foldScratch + base;
      int64_t count = tiles;
      while (count > 1) {
        const int64_t half = count / 2;
        for (int64_t i = tid; i < half; i += blockDim.x) dst[i] = src[2 * i] + src[2 * i + 1];
        if ((count & 1) && tid == 0) dst[half] = src[count - 1];
        __syncthreads();
        double* t = src;
        src = dst;
        dst = t;
        count = half + (count & 1);
      }
      if (tid == 0) scales[b] = scaleFromSum(src[0]);
    } else {
      if (tid == 0) anyBad = 0;
      __syncthreads();
      float best = 0.0f;
      for (int64_t i = tid; i < tiles; i += blockDim.x) {
        const float m = tileMaxima[base + i];
        if (isnan(m)) anyBad = 1;
        best = m > best ? m : best;
      }
      best = warpMax(best);
      if (tid % kWarp == 0) warpMaxima[tid / kWarp] = best;
      __syncthreads();
      if (tid == 0) {
        float top = 0.0f;
        for (int w = 0; w < static_cast<int>(blockDim.x / kWarp); ++w) {
          top = warpMaxima[w] > top ? warpMaxima[w] : top;
        }
        scales[b] = scaleFromMax(top, anyBad != 0);
      }
    }
    __syncthreads();
  }
}

// One thread per word of the large buckets.
__global__ void encodeWordsKernel(const float* __restrict__ values, Geometry g, RandomArgs r,
                                  const float* __restrict__ scales, uint64_t* __restrict__ words) {
  const uint32_t pad = qsgd::padCode(g.bits, g.layout);
  for (int64_t w = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; w < g.wordCount;
       w += int64_t{gridDim.x} * blockDim.x) {
    const int64_t b = w / g.sectionFull;
    const Bucket bk = bucketAt(g, b);
    const int64_t t = w - bk.wordBegin;
    const float sc = scales[b];
    const bool nonFinite = isnan(sc);
    const EncodeScaleF32 es = qsgd::encodeScaleF32(nonFinite ? 0.0f : sc, qsgd::levels(g.bits));
    uint64_t word = 0;
    for (int j = 0; j < g.k; ++j) {
      const int64_t i = j * bk.section + t;
      uint32_t code = pad;
      if (!nonFinite && i < bk.count) {
        code = codeOf(values[bk.begin + i], es, qsgd::randomBits(bk.begin + i, r.step, r.key, g.randomBits), g);
      }
      word |= static_cast<uint64_t>(code) << qsgd::slotShift(j, g.k, g.width);
    }
    words[w] = word;
  }
}

// ---- decode -------------------------------------------------------------------------------------

// One thread per word: decodes its k values. A plain decode (codes.mean false, one code) writes
// them; decode-and-accumulate sums the codes' values in order from 0.0f and divides once, as the
// CPU allreduce does. residualOf names the code whose values also give residual = input - decoded.
__global__ void decodeKernel(Geometry g, DecodeArgs codes, float* __restrict__ out,
                             const float* __restrict__ input, float* __restrict__ residual) {
  const uint64_t mask = qsgd::codeMask(g.width);
  const uint32_t s = qsgd::levels(g.bits);
  for (int64_t w = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; w < g.wordCount;
       w += int64_t{gridDim.x} * blockDim.x) {
    const int64_t b = w / g.sectionFull;
    const Bucket bk = bucketAt(g, b);
    const int64_t t = w - bk.wordBegin;
    float sum[qsgd::kMaxValuesPerWord];
    for (int j = 0; j < g.k; ++j) sum[j] = 0.0f;
    for (int c = 0; c < codes.count; ++c) {
      const float sc = codes.code[c].scales[b];
      const uint64_t word = codes.code[c].words[w];
      const DecodeScaleF32 ds = qsgd::decodeScaleF32(sc, s);
      for (int j = 0; j < g.k; ++j) {
        const int64_t i = j * bk.section + t;
        if (i >= bk.count) break;
        const uint32_t code =
            static_cast<uint32_t>((word >> qsgd::slotShift(j, g.k, g.width)) & mask);
        const float d = isnan(sc) ? quietNan() : qsgd::decodeF32(code, g.bits, g.layout, ds);
        if (!codes.mean) out[bk.begin + i] = d;  // a plain decode keeps -0.0 as the CPU does
        sum[j] += d;
        if (c == codes.residualOf) residual[bk.begin + i] = input[bk.begin + i] - d;
      }
    }
    if (!codes.mean) continue;
    const float divisor = static_cast<float>(codes.count);
    for (int j = 0; j < g.k; ++j) {
      const int64_t i = j * bk.section + t;
      if (i >= bk.count) break;
      out[bk.begin + i] = sum[j] / divisor;
    }
  }
}

inline int64_t gridFor(int64_t items, int threads) {
  const int64_t blocks = (items + threads - 1) / threads;
  return minI64(blocks, kMaxGrid);
}

inline int fusedThreadsFor(int64_t bucketSize) {
  int threads = kWarp;
  while (threads < kMaxFusedThreads && threads * 4 < bucketSize) threads *= 2;
  return threads;
}

// The launch sequence, shared by the real launcher (nvcc's <<<>>>) and the emulator: Launch is
// called as launch(kernel, blocks, threads, args...) and returns a cudaError_t.
template <typename Launch>
cudaError_t runEncode(Launch&& launch, const float* values, const Geometry& g, const RandomArgs& r,
                      float* scales, uint64_t* words, double* tileSums, double* foldScratch,
                      float* tileMaxima) {
  if (g.bucketSize <= kFusedBucket) {
    return launch(encodeFusedKernel, minI64(g.numBuckets, kMaxGrid), fusedThreadsFor(g.bucketSize),
                  values, g, r, scales, words);
  }
  cudaError_t e = launch(tileNormKernel, gridFor(g.numTiles * kWarp, 256), 256, values, g,
                         tileSums, tileMaxima, g.numTiles);
  if (e != cudaSuccess) return e;
  e = launch(bucketScaleKernel, minI64(g.numBuckets, kMaxGrid), kMaxFusedThreads, g, tileSums,
             foldScratch, static_cast<const float*>(tileMaxima), scales);
  if (e != cudaSuccess) return e;
  return launch(encodeWordsKernel, gridFor(g.wordCount, 256), 256, values, g, r,
                static_cast<const float*>(scales), words);
}

template <typename Launch>
cudaError_t runDecode(Launch&& launch, const Geometry& g, const DecodeArgs& codes, float* out,
                      const float* input, float* residual) {
  return launch(decodeKernel, gridFor(g.wordCount, 256), 256, g, codes, out,
                input, residual);
}

}  // namespace
}  // namespace kernels
}  // namespace qcomm::cuda::detail
