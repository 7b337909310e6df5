// The block quantizers' per-block parameters, one codec per file (linear.cc, percentile.cc,
// dynamic.cc, rowwise.cc; casts need none), and the per-value code and value of each kind, on top
// of the shared math in codec/quant_format.h.
#pragma once

#include <cstdint>

#include "codec/quant_format.h"
#include "qcomm/quantizers.h"

namespace qcomm::quant {

// Each codec's parameters of one block of n >= 1 values.
template <typename T>
BlockParams<T> linearParams(const T* v, int64_t n, const QuantOptions& options);
template <typename T>
BlockParams<T> percentileParams(const T* v, int64_t n, const QuantOptions& options);
template <typename T>
BlockParams<T> dynamicParams(const T* v, int64_t n, const QuantOptions& options);
template <typename T>
BlockParams<T> rowwiseParams(const T* v, int64_t n, const QuantOptions& options);

}  // namespace qcomm::quant
