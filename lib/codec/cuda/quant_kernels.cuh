// The block quantizers on the GPU: the CPU codec's words (docs/quantizers.md) from device memory,
// with the per-value math of codec/quant_format.h. Three kernels: one block per quantization block
// for its parameters (reductions, or a bitonic sort in shared memory for percentiles), one thread
// per word for the codes (codes straddling two words are computed by both threads, identically),
// one thread per value to decode.
//
// Included by quant_kernels.cu (nvcc) and by the kernel emulation test (tests/gpu), like
// qsgd_kernels.cuh: only what tests/gpu/simt_emulator.h provides.
#pragma once

#include <cstdint>

#include "codec/cuda/quant_kernels.h"
#include "codec/quant_format.h"

namespace qcomm::cuda::detail {
namespace quant_kernels {
namespace {

constexpr int kWarp = 32;
constexpr uint32_t kFullMask = 0xFFFFFFFFu;

__device__ float nanValue() { return __int_as_float(0x7FC00000); }
__host__ __device__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ float warpReduce(float v, bool takeMax) {
  for (int off = kWarp / 2; off >= 1; off /= 2) {
    const float o = __shfl_down_sync(kFullMask, v, off);
    v = takeMax ? (o > v ? o : v) : (o < v ? o : v);
  }
  return v;
}

// Block-wide min or max (exact in any order); every thread gets the result.
__device__ float blockReduce(float v, bool takeMax, float* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warpReduce(v, takeMax);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float r = scratch[0];
    for (int w = 1; w < static_cast<int>(blockDim.x / kWarp); ++w) {
      r = takeMax ? (scratch[w] > r ? scratch[w] : r) : (scratch[w] < r ? scratch[w] : r);
    }
    scratch[kQuantThreads / kWarp] = r;
  }
  __syncthreads();
  const float result = scratch[kQuantThreads / kWarp];
  __syncthreads();
  return result;
}

// Sorts sorted[0, size) ascending (size a power of two, padded with +inf) across the block.
__device__ void bitonicSort(float* sorted, int size) {
  for (int k = 2; k <= size; k *= 2) {
    for (int j = k / 2; j >= 1; j /= 2) {
      for (int i = threadIdx.x; i < size; i += blockDim.x) {
        const int partner = i ^ j;
        if (partner > i) {
          const bool ascending = (i & k) == 0;
          const float a = sorted[i], b = sorted[partner];
          if ((a > b) == ascending) {
            sorted[i] = b;
            sorted[partner] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

// numpy's percentile of the sorted block values (n of them) at p.
__device__ float sortedPercentile(const float* sorted, int64_t n, double p) {
  const double virtualIndex = (p / 100.0) * static_cast<double>(n - 1);
  const double below = floor(virtualIndex);
  const int64_t i = static_cast<int64_t>(below);
  if (i + 1 >= n) return sorted[i];
  return static_cast<float>(
      quant::percentileLerp(sorted[i], sorted[i + 1], virtualIndex - below));
}

// One CUDA block per quantization block: scale and zero point (NaN scale for NaN/Inf).
__global__ void blockParamsKernel(const float* __restrict__ values, QuantPlan plan,
                                  float* __restrict__ scales, float* __restrict__ zeros) {
  __shared__ float scratch[kQuantThreads / kWarp + 1];
  __shared__ float sorted[kMaxPercentileBlock];
  __shared__ int anyBad;
  for (int64_t b = blockIdx.x; b < plan.numBlocks; b += gridDim.x) {
    const int64_t begin = b * plan.blockSize;
    const int64_t n = min64(plan.blockSize, plan.count - begin);
    if (threadIdx.x == 0) anyBad = 0;
    __syncthreads();
    float lo = 3.4e38f, hi = -3.4e38f, absmax = 0.0f;
    bool bad = false;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float v = values[begin + i];
      bad |= !isfinite(v);
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      const float a = fabsf(v);
      absmax = a > absmax ? a : absmax;
    }
    if (bad) atomicOr(&anyBad, 1);
    lo = blockReduce(lo, false, scratch);
    hi = blockReduce(hi, true, scratch);
    absmax = blockReduce(absmax, true, scratch);
    quant::BlockParams<float> params;
    if (plan.kind == QuantKind::kPercentile && anyBad == 0) {
      int size = 1;
      while (size < n) size *= 2;
      for (int i = threadIdx.x; i < size; i += blockDim.x) {
        sorted[i] = i < n ? (plan.symmetric ? fabsf(values[begin + i]) : values[begin + i])
                          : 3.4e38f;
      }
      __syncthreads();
      bitonicSort(sorted, size);
      const float alpha = sortedPercentile(sorted, n, plan.percentile);
      const float beta = plan.symmetric ? 0.0f : sortedPercentile(sorted, n, 100.0 - plan.percentile);
      params = quant::paramsFromRange(alpha, beta, plan.symmetric, plan.bits, plan.stochastic);
    } else if (plan.kind == QuantKind::kLinear) {
      params = quant::paramsFromRange(plan.symmetric ? absmax : hi, lo, plan.symmetric, plan.bits,
                                      plan.stochastic);
    } else if (plan.kind == QuantKind::kDynamic) {
      params.scale = quant::dynamicScale(absmax, plan.stochastic, plan.map);
    } else if (plan.kind == QuantKind::kRowwise) {
      params = quant::rowwiseFromRange(hi, lo, plan.bits);
    }
    params = quant::nonFiniteIfOverflowed(params);
    if (threadIdx.x == 0) {
      scales[b] = anyBad != 0 ? nanValue() : params.scale;
      if (zeros != nullptr) zeros[b] = anyBad != 0 ? 0.0f : params.zero;
    }
    __syncthreads();
  }
}

// One thread per word: the codes whose bits fall in it.
__global__ void encodeWordsKernel(const float* __restrict__ values, QuantPlan plan,
                                  const float* __restrict__ scales, const float* __restrict__ zeros,
                                  uint64_t* __restrict__ words) {
  const bool cast = plan.kind == QuantKind::kFp16 || plan.kind == QuantKind::kBf16;
  for (int64_t w = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; w < plan.wordCount;
       w += int64_t{gridDim.x} * blockDim.x) {
    uint64_t word = 0;
    const int64_t last = min64(quant::lastCode(w, plan.bits), plan.count - 1);
    for (int64_t i = quant::firstCode(w, plan.bits); i <= last; ++i) {
      uint32_t code = 0;
      if (cast) {
        code = quant::encodeValue<float>(plan.kind, values[i], 0.0f, 0.0f, false, false, 0u,
                                         plan.bits, plan.map);
      } else {
        const int64_t b = i / plan.blockSize;
        const float scale = scales[b];
        if (!isnan(scale)) {
          const uint32_t random =
              plan.stochastic ? qsgd::randomBits(i, plan.step, plan.key, plan.randomBits) : 0u;
          code = quant::encodeValue<float>(plan.kind, values[i], scale,
                                           zeros != nullptr ? zeros[b] : 0.0f, plan.symmetric,
                                           plan.stochastic, random, plan.bits, plan.map);
        }
      }
      word |= quant::codeBitsInWord(code, i, plan.bits, w);
    }
    words[w] = word;
  }
}

// One thread per value: decodes it from each code; a mean sums them in order from 0 and divides
// once (as the CPU allreduce does).
__global__ void decodeKernel(QuantPlan plan, QuantCodes codes, float* __restrict__ out) {
  const bool cast = plan.kind == QuantKind::kFp16 || plan.kind == QuantKind::kBf16;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < plan.count;
       i += int64_t{gridDim.x} * blockDim.x) {
    float sum = 0.0f;
    float value = 0.0f;
    for (int c = 0; c < codes.count; ++c) {
      const uint32_t code = quant::readCode(codes.words[c], i, plan.bits);
      if (cast) {
        value = quant::decodeValue<float>(plan.kind, code, 0.0f, 0.0f, false, plan.bits, plan.map);
      } else {
        const int64_t b = i / plan.blockSize;
        const float scale = codes.scales[c][b];
        value = isnan(scale) ? nanValue()
                             : quant::decodeValue<float>(
                                   plan.kind, code, scale,
                                   codes.zeros[c] != nullptr ? codes.zeros[c][b] : 0.0f,
                                   plan.symmetric, plan.bits, plan.map);
      }
      sum += value;
    }
    out[i] = codes.mean ? sum / static_cast<float>(codes.count) : value;
  }
}

inline int64_t gridFor(int64_t items, int threads) {
  const int64_t blocks = (items + threads - 1) / threads;
  return min64(blocks, int64_t{65535} * 16);
}

template <typename Launch>
cudaError_t runQuantize(Launch&& launch, const float* values, const QuantPlan& plan,
                        float* scales, float* zeros, uint64_t* words) {
  if (plan.numBlocks > 0) {
    const cudaError_t e = launch(blockParamsKernel, min64(plan.numBlocks, int64_t{65535} * 16),
                                 kQuantThreads, values, plan, scales, zeros);
    if (e != cudaSuccess) return e;
  }
  return launch(encodeWordsKernel, gridFor(plan.wordCount, kQuantThreads), kQuantThreads, values,
                plan, static_cast<const float*>(scales), static_cast<const float*>(zeros), words);
}

template <typename Launch>
cudaError_t runDequantize(Launch&& launch, const QuantPlan& plan, const QuantCodes& codes,
                          float* out) {
  return launch(decodeKernel, gridFor(plan.count, kQuantThreads), kQuantThreads, plan, codes, out);
}

}  // namespace
}  // namespace quant_kernels
}  // namespace qcomm::cuda::detail
