// CUDA runtime errors as Status values that name the call, the file and the line.
#pragma once

#include <cuda_runtime_api.h>

#include "qcomm/status.h"

namespace qcomm::cuda {

inline Status cudaFailure(const char* call, cudaError_t error, const char* file, int line) {
  return internalError(call, " failed at ", file, ":", line, ": ", cudaGetErrorName(error), " (",
                       cudaGetErrorString(error), ")");
}

}  // namespace qcomm::cuda

// Evaluates a CUDA runtime call and returns a Status naming it when it fails.
#define QCOMM_CUDA_RETURN_IF_ERROR(call)                                               \
  do {                                                                                 \
    const cudaError_t qcomm_cuda_error_ = (call);                                      \
    if (qcomm_cuda_error_ != cudaSuccess) {                                            \
      return ::qcomm::cuda::cudaFailure(#call, qcomm_cuda_error_, __FILE__, __LINE__); \
    }                                                                                  \
  } while (0)

// After a kernel launch: a bad configuration shows up in cudaGetLastError, named by the kernel.
#define QCOMM_CUDA_RETURN_IF_LAUNCH_FAILED(kernel)                                                \
  do {                                                                                            \
    const cudaError_t qcomm_cuda_error_ = cudaGetLastError();                                     \
    if (qcomm_cuda_error_ != cudaSuccess) {                                                       \
      return ::qcomm::cuda::cudaFailure("launch of " #kernel, qcomm_cuda_error_, __FILE__,         \
                                        __LINE__);                                                \
    }                                                                                             \
  } while (0)
