// The block quantizers' per-block parameters, one codec per file (linear.cc, percentile.cc,
// dynamic.cc, rowwise.cc; casts need none), and the per-value code and value of each kind, on top
// of the shared math in codec/quant_format.h.
#pragma once

#include <cstdint>
#include <limits>
#include <span>

#include "codec/quant/quant_cpu_kernels.h"
#include "codec/quant_format.h"
#include "qcomm/quantizers.h"

namespace qcomm::quant {

// Values per block: the option, or the codec's default (dynamic: 4096; row-wise: the last
// dimension of the shape; otherwise the whole tensor).
int64_t effectiveBlock(const QuantOptions& o, int64_t count, std::span<const int64_t> shape);

// Each codec's parameters of one block of n >= 1 values.
template <typename T>
BlockParams<T> linearParams(const T* v, int64_t n, const QuantOptions& options);
template <typename T>
BlockParams<T> percentileParams(const T* v, int64_t n, const QuantOptions& options);
// Percentile thresholds carried from one block to the next of a task's blocks (in order): those
// that kept enough candidates before are tried first, which saves the pass that finds thresholds
// where neighbouring blocks look alike. They change how much work a block takes, never its
// parameters. NaN: none yet.
struct PercentileHint {
  float high = std::numeric_limits<float>::quiet_NaN();  // thresholds
  float low = std::numeric_limits<float>::quiet_NaN();
  float highAt = std::numeric_limits<float>::quiet_NaN();  // the order statistics found
  float lowAt = std::numeric_limits<float>::quiet_NaN();
};
// float32 with the vector kernels' selection (the same parameters).
BlockParams<float> percentileParams(const float* v, int64_t n, const QuantOptions& options,
                                    const QuantCpuKernels& kernels, PercentileHint* hint);
template <typename T>
BlockParams<T> dynamicParams(const T* v, int64_t n, const QuantOptions& options);
template <typename T>
BlockParams<T> rowwiseParams(const T* v, int64_t n, const QuantOptions& options);

// Dynamic coding by lookup instead of binary search: the map padded with +inf at [256], and for
// each value of the 16 high bits of a float's order-preserving key (bits | sign, or ~bits when
// negative) the first map index >= the least float with those bits. Every such range of floats in
// [-1, 1] holds at most one map value (checked when built; relative map spacing >= 1.4% against
// ranges of 2^-7), so the first index >= y is lo + (map[lo] < y) with lo = record[key].lo. The
// record (DynamicRecord, quant_cpu_kernels.h) also carries the map values around lo.
struct DynamicLookup {
  float map[257];
  DynamicRecord record[65536];
};
const DynamicLookup& dynamicLookup();

}  // namespace qcomm::quant
