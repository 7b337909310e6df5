// Compile-only check (built whenever CUDA is found, CI included): the shared QSGD format math in
// lib/codec/qsgd_format.h must stay usable from device code, since the CUDA codec will call it.
// Nothing runs this kernel; the `gpu` tests of the CUDA codec will exercise the real ones.
#include "codec/qsgd_format.h"

namespace qcomm::qsgd {

__global__ void formatMathDeviceCheckKernel(const float* v, int64_t n, float scale, int bits,
                                            uint64_t seed, uint32_t* codes, float* decoded,
                                            double* sums) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint32_t s = levels(bits);
  const PhiloxKey key = philoxKey(seed, 0, 0);
  const uint32_t xi = quantizeF32(fabsf(v[i]), encodeScaleF32(scale, s), randomBits(i, 0, key), s);
  codes[i] = signedCodeF32(v[i], xi, bits, Layout::kCompact);
  decoded[i] = decodeF32(codes[i], bits, Layout::kCompact, decodeScaleF32(scale, s));
  double lanes[kNormLanes] = {};
  lanes[i % kNormLanes] = static_cast<double>(v[i]) * v[i];
  sums[i] = foldLanes(lanes) + decodeF64(codes[i], bits, Layout::kSeed, 1.0);
}

}  // namespace qcomm::qsgd
