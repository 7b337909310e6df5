// What the block quantizers' launchers (quant_cuda.cc) hand their kernels (quant_kernels.cuh):
// a plain plan computed on the host, and the launch functions.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "codec/qsgd_format.h"

namespace qcomm::cuda::detail {

// Percentile blocks are sorted in shared memory: at most this many values on the GPU.
inline constexpr int64_t kMaxPercentileBlock = 4096;
inline constexpr int kQuantThreads = 256;

struct QuantPlan {
  QuantKind kind;
  int bits;
  bool symmetric;
  bool stochastic;
  int randomBits;  // QuantOptions::randomBits: 32 or 16 draws per value
  int64_t count;
  int64_t blockSize;   // effective
  int64_t numBlocks;   // 0 for the casts
  int64_t wordCount;
  double percentile;
  qsgd::PhiloxKey key;
  uint64_t step;
  float map[256];      // the dynamic map
};

// Up to kMaxCodes codes for decode-and-accumulate.
struct QuantCodes {
  const float* scales[64];
  const float* zeros[64];
  const uint64_t* words[64];
  int count;
  bool mean;
};

cudaError_t launchQuantize(const float* values, const QuantPlan& plan, float* scales,
                           float* zeros, uint64_t* words, cudaStream_t stream);
cudaError_t launchDequantize(const QuantPlan& plan, const QuantCodes& codes, float* out,
                             cudaStream_t stream);

}  // namespace qcomm::cuda::detail
