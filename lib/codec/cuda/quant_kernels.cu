// The kernel launches of the block quantizers (the kernels are in quant_kernels.cuh).
#include "codec/cuda/quant_kernels.cuh"
#include "codec/cuda/stream_launch.cuh"

namespace qcomm::cuda::detail {

cudaError_t launchQuantize(const float* values, const QuantPlan& plan, float* scales,
                           float* zeros, uint64_t* words, cudaStream_t stream) {
  return quant_kernels::runQuantize(StreamLaunch{stream}, values, plan, scales, zeros, words);
}

cudaError_t launchDequantize(const QuantPlan& plan, const QuantCodes& codes, float* out,
                             cudaStream_t stream) {
  return quant_kernels::runDequantize(StreamLaunch{stream}, plan, codes, out);
}

}  // namespace qcomm::cuda::detail
