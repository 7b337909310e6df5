// Elementwise helpers of the GPU allreduce.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace qcomm::collectives::gpu {

// out[i] = a[i] + b[i]
cudaError_t add(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream);
// out[i] = in[i] * factor (out may be in)
cudaError_t multiply(float* out, const float* in, int64_t n, float factor, cudaStream_t stream);
// data[i] = data[i] / divisor (a division, as the CPU path does)
cudaError_t divide(float* data, int64_t n, float divisor, cudaStream_t stream);

}  // namespace qcomm::collectives::gpu
