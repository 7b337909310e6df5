// The host-side plan of a CUDA code: its geometry and the workspace its encoder needs. Shared by
// the launchers and the kernel emulation test.
#pragma once

#include <cstddef>
#include <cstdint>

#include "codec/cuda/qsgd_kernels.h"
#include "qcomm/codec.h"
#include "qcomm/status.h"

namespace qcomm::cuda::detail {

// Checks count and options and lays out buckets, words and norm tiles.
Result<Geometry> planGeometry(int64_t count, const QsgdOptions& options);
// Bytes of workspace the encoder needs (0 when every bucket takes the one-pass kernel).
size_t encodeWorkspaceBytes(const Geometry& g);

}  // namespace qcomm::cuda::detail
