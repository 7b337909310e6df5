// The launcher the kernels' run* templates take on a real GPU: <<<>>> on a stream, reporting a bad
// launch configuration (the SIMT emulator in tests/gpu supplies the other one).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace qcomm::cuda::detail {

struct StreamLaunch {
  cudaStream_t stream;
  template <typename... Params, typename... Args>
  cudaError_t operator()(void (*kernel)(Params...), int64_t blocks, int threads,
                         Args&&... args) const {
    kernel<<<static_cast<unsigned>(blocks), static_cast<unsigned>(threads), 0, stream>>>(
        static_cast<Params>(args)...);
    return cudaGetLastError();
  }
};

}  // namespace qcomm::cuda::detail
