// The kernel launches of the block quantizers (the kernels are in quant_kernels.cuh).
#include "codec/cuda/quant_kernels.cuh"

namespace qcomm::cuda::detail {
namespace {

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

}  // namespace

cudaError_t launchQuantize(const float* values, const QuantPlan& plan, float* scales,
                           float* zeros, uint64_t* words, cudaStream_t stream) {
  return quant_kernels::runQuantize(StreamLaunch{stream}, values, plan, scales, zeros, words);
}

cudaError_t launchDequantize(const QuantPlan& plan, const QuantCodes& codes, float* out,
                             cudaStream_t stream) {
  return quant_kernels::runDequantize(StreamLaunch{stream}, plan, codes, out);
}

}  // namespace qcomm::cuda::detail
