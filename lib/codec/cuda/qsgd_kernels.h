// What the QSGD launchers (qsgd_cuda.cc, plain C++) hand the kernels (qsgd_kernels.cu): the plan of
// a code, computed on the host, and the launch functions. Keeps the kernels' translation unit free
// of host-only headers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "codec/qsgd_format.h"

namespace qcomm::cuda::detail {

// Buckets up to this size are encoded by one block each from shared memory.
inline constexpr int64_t kFusedBucket = 4096;
inline constexpr int kMaxFusedThreads = 256;
inline constexpr int64_t kMaxGrid = 65535LL * 16;
inline constexpr int kMaxCodes = 64;

struct Geometry {
  int bits;
  Layout layout;
  NormKind norm;
  int k;                   // values per word
  int width;               // bits per code
  int randomBits;          // random bits per value: 32 or 16 (QsgdOptions::randomBits)
  int64_t count;           // values
  int64_t bucketSize;      // effective, >= 1
  int64_t numBuckets;
  int64_t sectionFull;     // words of a full bucket
  int64_t wordCount;
  int64_t tilesPerBucket;  // norm tiles of a full bucket
  int64_t numTiles;        // norm tiles of all buckets
};

struct RandomArgs {
  qsgd::PhiloxKey key;
  uint64_t step;
};

struct DeviceCodeArgs {
  const float* scales;
  const uint64_t* words;
};

struct DecodeArgs {
  DeviceCodeArgs code[kMaxCodes];
  int count;
  bool mean;       // false: a plain decode of code[0]
  int residualOf;  // -1: none
};

// Threads per block of the fused encoder for a bucket size.
int fusedThreads(int64_t bucketSize);

// Scratch for buckets over kFusedBucket: numTiles doubles each for tileSums and foldScratch, and
// numTiles floats for tileMaxima.
cudaError_t launchEncode(const float* values, const Geometry& g, const RandomArgs& r,
                         float* scales, uint64_t* words, double* tileSums, double* foldScratch,
                         float* tileMaxima, cudaStream_t stream);
cudaError_t launchDecode(const Geometry& g, const DecodeArgs& codes, float* out,
                         const float* input, float* residual, cudaStream_t stream);

}  // namespace qcomm::cuda::detail
