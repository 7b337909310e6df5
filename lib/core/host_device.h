// QCOMM_HOST_DEVICE marks functions that the CPU code and the CUDA kernels both call, so the two
// share one definition of the format math (CUB's habit).
#pragma once

#if defined(__CUDACC__)
#define QCOMM_HOST_DEVICE __host__ __device__ inline
#else
#define QCOMM_HOST_DEVICE inline
#endif
