// The CPU QSGD inner loops: the function table each ISA build fills in, and its selection.
// The loops themselves are in qsgd_cpu_kernels.inc, compiled once per ISA with different flags;
// they call the shared math of qsgd_format.h, so every ISA writes the same words.
#pragma once

#include <cstdint>
#include <string_view>

#include "codec/qsgd_format.h"
#include "qcomm/status.h"

namespace qcomm::qsgd {

// Word tiles: the encoder and decoder work on up to kWordTile words of a bucket at a time, with
// k rows of kWordTile codes in scratch (k <= 32).
inline constexpr int kWordTile = 256;

struct CpuKernels {
  std::string_view name;
  // tileSums[t] = fixed-order sum of squares of tile t (kNormTile values) of v[0, count).
  void (*sumSquaresTilesF32)(const float* v, int64_t count, double* tileSums);
  // max |v_i| over v[0, count); sets *nonFinite when some value is NaN or +-Inf.
  float (*maxAbsF32)(const float* v, int64_t count, bool* nonFinite);
  // codes[i] = signed code of v[i], whose index in the tensor is first + i; randomBits (32 or 16)
  // is QsgdOptions::randomBits.
  void (*quantizeRunF32)(const float* v, int64_t first, int64_t count, EncodeScaleF32 es, int bits,
                         Layout layout, PhiloxKey key, uint64_t step, int randomBits,
                         uint32_t* codes);
  void (*quantizeRunF64)(const double* v, int64_t first, int64_t count, double scale, int bits,
                         Layout layout, PhiloxKey key, uint64_t step, int randomBits,
                         uint32_t* codes);
  void (*decodeRunF32)(const uint32_t* codes, int64_t count, int bits, Layout layout,
                       DecodeScaleF32 ds, float* out);
  void (*decodeRunF64)(const uint32_t* codes, int64_t count, int bits, Layout layout, double scale,
                       double* out);
  // acc[i] = acc[i] + decodeF32(codes[i]): decode-and-mean's accumulation, in fp32.
  void (*decodeAddRunF32)(const uint32_t* codes, int64_t count, int bits, Layout layout,
                          DecodeScaleF32 ds, float* acc);
  // Decode-and-mean of one bucket straight from the words, for a bucket whose words fit one tile
  // (sectionLength <= kWordTile): out[i] = (0 + d_0[i] + d_1[i] + ... + d_{n-1}[i]) / n in fp32,
  // added in code order, where d_c[i] = decodeF32 of value i of code c (words[c]: the bucket's
  // first word in code c, ds[c]: its decode scale; every scale finite). Bit-identical to
  // unpackWords, decodeAddRunF32 per code and one division. `ahead` (or null): the first words
  // of a later bucket in each code, aheadLength of them, asked into cache while this one decodes
  // (the AVX-512 kernel spreads the requests over its loop: a burst of them is partly dropped).
  void (*decodeMeanBucketF32)(const uint64_t* const* words, const DecodeScaleF32* ds, int nCodes,
                              int64_t sectionLength, int64_t count, int bits, Layout layout,
                              float* out, const uint64_t* const* ahead, int64_t aheadLength);
  // words[t] = codes of rows 0..k-1 at column t, row 0 most significant (rows are `stride` apart).
  void (*packWords)(const uint32_t* codes, int k, int width, int64_t nWords, int64_t stride,
                    uint64_t* words);
  void (*unpackWords)(const uint64_t* words, int64_t nWords, int k, int width, int64_t stride,
                      uint32_t* codes);
  // out[4*i + j] = word j of philox4x32_10({lo(b0+i), hi(b0+i), lo(step), hi(step)}, key): the
  // 32-bit draws of values 4*b0 .. 4*(b0 + nBlocks) - 1 (the block quantizers' random stream).
  void (*philoxBlocks)(uint64_t b0, int64_t nBlocks, uint64_t step, PhiloxKey key, uint32_t* out);
  // dst[0, n) = src[0, n), the whole cache lines of dst written with non-temporal stores where the
  // ISA has them (no read for ownership; the lines dst shares with its neighbours are stored
  // plainly), so the stores are weakly ordered: streamFence() before another thread reads dst.
  void (*streamF32)(const float* src, int64_t n, float* dst);
  void (*streamFence)();
};

const CpuKernels& genericKernels();
const CpuKernels* avx2Kernels();    // nullptr when not built or not supported by this CPU
const CpuKernels* avx512Kernels();  // likewise

// "auto" (the best this CPU runs), "generic", "avx2" or "avx512"; an error names what was asked
// and why it cannot be had.
Result<const CpuKernels*> selectKernels(std::string_view isa);

}  // namespace qcomm::qsgd
