// The kernel launches of the CUDA codec (the kernels themselves are in qsgd_kernels.cuh).
#include "codec/cuda/qsgd_kernels.cuh"
#include "codec/cuda/stream_launch.cuh"

namespace qcomm::cuda::detail {

int fusedThreads(int64_t bucketSize) { return kernels::fusedThreadsFor(bucketSize); }

cudaError_t launchEncode(const float* values, const Geometry& g, const RandomArgs& r,
                         float* scales, uint64_t* words, double* tileSums, double* foldScratch,
                         float* tileMaxima, cudaStream_t stream) {
  return kernels::runEncode(StreamLaunch{stream}, values, g, r, scales, words, tileSums,
                            foldScratch, tileMaxima);
}

cudaError_t launchDecode(const Geometry& g, const DecodeArgs& codes, float* out,
                         const float* input, float* residual, cudaStream_t stream) {
  return kernels::runDecode(StreamLaunch{stream}, g, codes, out, input, residual);
}

}  // namespace qcomm::cuda::detail
