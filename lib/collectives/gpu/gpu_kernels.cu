#include "collectives/gpu/gpu_kernels.h"

namespace qcomm::collectives::gpu {
namespace {

__global__ void addKernel(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = a[i] + b[i];
  }
}

__global__ void multiplyKernel(float* out, const float* in, int64_t n, float factor) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = in[i] * factor;
  }
}

__global__ void divideKernel(float* data, int64_t n, float divisor) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    data[i] = data[i] / divisor;
  }
}

unsigned blocksFor(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65535 * 16 ? blocks : 65535 * 16);
}

}  // namespace

cudaError_t add(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  addKernel<<<blocksFor(n), 256, 0, stream>>>(out, a, b, n);
  return cudaGetLastError();
}

cudaError_t multiply(float* out, const float* in, int64_t n, float factor, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  multiplyKernel<<<blocksFor(n), 256, 0, stream>>>(out, in, n, factor);
  return cudaGetLastError();
}

cudaError_t divide(float* data, int64_t n, float divisor, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  divideKernel<<<blocksFor(n), 256, 0, stream>>>(data, n, divisor);
  return cudaGetLastError();
}

}  // namespace qcomm::collectives::gpu
