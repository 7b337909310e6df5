// The QSGD codec on an NVIDIA GPU: the CPU codec's exact words (same options, same RandomKey),
// computed from device memory into device memory.
//
// Launcher shape (CUB's): the caller asks for the workspace size, passes device pointers, the
// workspace and the stream last. Launchers only enqueue work: they never synchronize and never
// allocate. A failed CUDA call comes back as a Status naming the call, file and line.
//
// A device code is two buffers sized by qsgdGeometry(count, options): `numBuckets` float32 scales
// (the stored scale of each bucket; NaN marks a bucket that held NaN/Inf) and `wordCount` words.
// float32 values only (the fp64 path stays on the CPU).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "qcomm/codec.h"
#include "qcomm/quantizers.h"
#include "qcomm/status.h"

namespace qcomm::cuda {

// The most codes one decodeMean call averages (they travel as one kernel argument).
inline constexpr int kMaxDecodeCodes = 64;

// Device pointers of one code.
struct DeviceCode {
  const float* scales = nullptr;
  const uint64_t* words = nullptr;
};

// Bytes of device workspace qsgdEncode needs for `count` values (0 for buckets it encodes in one
// pass, up to 16 bytes per 256 values for large buckets).
Result<size_t> qsgdEncodeWorkspaceBytes(int64_t count, const QsgdOptions& options);

// Encodes values[0, count) into scales and words. `workspace` holds workspaceBytes >= what
// qsgdEncodeWorkspaceBytes returned (it may be null when that is 0).
Status qsgdEncode(const float* values, int64_t count, const QsgdOptions& options,
                  const RandomKey& key, float* scales, uint64_t* words, void* workspace,
                  size_t workspaceBytes, cudaStream_t stream);

// Decodes a code of `count` values into out[0, count).
Status qsgdDecode(DeviceCode code, int64_t count, const QsgdOptions& options, float* out,
                  cudaStream_t stream);

// Decode-and-accumulate: out[i] = (sum over r, in order, of decode(codes[r])[i]) / codes.size(),
// in fp32, exactly what the CPU allreduce computes from the same codes. With `residualOf` >= 0,
// also writes residual[i] = input[i] - decode(codes[residualOf])[i] (error feedback).
Status qsgdDecodeMean(std::span<const DeviceCode> codes, int64_t count, const QsgdOptions& options,
                      float* out, cudaStream_t stream, int residualOf = -1,
                      const float* input = nullptr, float* residual = nullptr);

// ---- the block quantizers (qcomm/quantizers.h) ---------------------------------------------------
// A device code: numBlocks float32 scales, as many zero points for asymmetric linear/percentile
// and row-wise (else null), and ceil(count * bits / 64) words; blockSize is the effective block
// (row length for row-wise; ignored by the casts). Same words as qcomm::quantize for float32 input.
// Percentile blocks are sorted in shared memory: at most 4096 values each on the GPU.

struct DeviceQuantCode {
  const float* scales = nullptr;
  const float* zeroPoints = nullptr;
  const uint64_t* words = nullptr;
};

Status quantize(const float* values, int64_t count, const QuantOptions& options,
                int64_t blockSize, const RandomKey& key, float* scales, float* zeroPoints,
                uint64_t* words, cudaStream_t stream);
// out = the code's values, or with `mean` the rank-order mean of up to 64 codes.
Status dequantize(std::span<const DeviceQuantCode> codes, int64_t count,
                  const QuantOptions& options, int64_t blockSize, bool mean, float* out,
                  cudaStream_t stream);

// ---- host helpers (these synchronize `stream`; for tests, tools and the Python layer) ----------

// Copies a device code to a host EncodedTensor (scales widened to double, flags from the scales).
Result<EncodedTensor> downloadCode(DeviceCode code, int64_t count, const QsgdOptions& options,
                                   cudaStream_t stream);
// Copies a float32 host code into device buffers sized by qsgdGeometry.
Status uploadCode(const EncodedTensor& encoded, float* scales, uint64_t* words,
                  cudaStream_t stream);

// Whether a CUDA device is usable here, and if not, why (for skipping GPU tests with a message).
Status deviceAvailable();

}  // namespace qcomm::cuda
