// The host-side plans of CUDA codes (QSGD: geometry and workspace; block quantizers: the kernel
// plan). Shared by the launchers and the kernel emulation test.
#pragma once

#include <cstddef>
#include <cstdint>

#include "codec/cuda/qsgd_kernels.h"
#include "codec/cuda/quant_kernels.h"
#include "qcomm/codec.h"
#include "qcomm/quantizers.h"
#include "qcomm/status.h"

namespace qcomm::cuda::detail {

// Checks count and options and lays out buckets, words and norm tiles.
Result<Geometry> planGeometry(int64_t count, const QsgdOptions& options);
// Bytes of workspace the encoder needs (0 when every bucket takes the one-pass kernel).
size_t encodeWorkspaceBytes(const Geometry& g);
// Checks and plans a block quantizer's code of `count` values in blocks of `blockSize`.
Result<QuantPlan> planQuant(int64_t count, const QuantOptions& options, int64_t blockSize,
                            const RandomKey& key);

}  // namespace qcomm::cuda::detail
