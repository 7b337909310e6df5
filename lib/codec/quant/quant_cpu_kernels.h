// The block quantizers' CPU inner loops for float32: the function table each ISA build fills in
// (quant_cpu_kernels.inc, compiled once per ISA like the QSGD kernels) and its selection. Every
// loop computes exactly the per-value math of codec/quant_format.h, so words are identical on
// every ISA, thread count and on the GPU; tests/unit/quant_reference.h checks it value by value.
#pragma once

#include <cstdint>
#include <string_view>

#include "qcomm/quantizers.h"
#include "qcomm/status.h"

namespace qcomm::quant {

// min, max and max |x| of a block, as the sequential loops of linear.cc and rowwise.cc find them
// (a zero min or max has the sign of the block's first zero); finite is false when some value is
// NaN or +-Inf (then the other fields are meaningless).
struct BlockStatsF32 {
  float lo = 0, hi = 0, absmax = 0;
  bool finite = true;
};

// One run of values inside one block: the codec and the block's parameters.
// One key's record of the dynamic codec's lookup (see DynamicLookup in quant_codecs.h): the map
// values around lo ride along so that a SIMD coder reads one 16-byte record per value with a
// plain load instead of four gathers.
struct DynamicRecord {
  int32_t lo;       // the first map index >= the least float of the key's range, in [0, 255]
  float below;      // map[lo - 1] (map[0] when lo == 0: unused, the code is then 0)
  float at;         // map[lo]
  float above;      // map[lo + 1] (map[256] = +inf when lo == 255)
};
static_assert(sizeof(DynamicRecord) == 16);

// The stochastic draws of a run of values, in the Philox words qsgd::CpuKernels::philoxBlocks wrote
// for them (qsgd::randomBits): with 32 random bits per value, value i's draw is word i; with 16,
// the i-th 16-bit half of the words in memory order (word i / 2, its low half for even i), placed
// in the top 16 bits (the kernels read them so, per ISA).
struct Draws {
  const unsigned char* bytes = nullptr;
  int randomBits = 32;

  Draws operator+(int64_t k) const { return {bytes + k * (randomBits / 8), randomBits}; }
};

struct RunF32 {
  QuantKind kind = QuantKind::kLinear;
  bool symmetric = true;
  bool stochastic = false;
  int bits = 8;
  float scale = 0;  // finite (non-finite blocks are not coded)
  float zero = 0;
  const float* map = nullptr;           // dynamic: the 256 map values, then +inf
  const DynamicRecord* dynamicRecord = nullptr;  // dynamic: DynamicLookup::record (quant_codecs.h)
};

// One end of a percentile selection (selectEndsF32).
struct SelectedEnd {
  float threshold = 0;
  float* values = nullptr;
  int64_t above = 0;  // values > threshold, in values[0, above)
  int64_t equal = 0;  // values == threshold (where counted)
};

struct QuantCpuKernels {
  std::string_view name;
  BlockStatsF32 (*statsF32)(const float* v, int64_t n);
  // codes[i] = the code of v[i] (kinds of at most 8 bits); random[i]: value i's draw (read only
  // when run.stochastic). Where `ahead` is not null, ahead[0, n) (values the caller codes next)
  // is prefetched as v is coded, a cache line per 16 values: requests spread over the coding
  // this way reach the memory, where bursts of them between kernels were partly dropped
  // (docs/performance.md, "Prefetch spread over the coding").
  void (*encodeF32)(const RunF32& run, const float* v, int64_t n, Draws random, uint8_t* codes,
                    const float* ahead);
  void (*decodeF32)(const RunF32& run, const uint8_t* codes, int64_t n, float* out);
  // fp16/bf16: the 16-bit codes of v[0, n) as 2n little-endian bytes (the words' bytes, which
  // need no packing); returns whether some value was NaN or +-Inf.
  bool (*castF32)(QuantKind kind, const float* v, int64_t n, uint8_t* bytes);
  void (*uncastF32)(QuantKind kind, const uint8_t* bytes, int64_t n, float* out);
  // Dense packing of n codes (n a multiple of 8) of `bits` <= 8 into n * bits / 8 bytes of the
  // little-endian bit stream; `bytes` has 8 bytes of slack past the end, which it may overwrite
  // (pack) or read (unpack).
  void (*packBytes)(const uint8_t* codes, int64_t n, int bits, uint8_t* bytes);
  void (*unpackBytes)(const uint8_t* bytes, int64_t n, int bits, uint8_t* codes);
  // Percentile selection (percentile.cc). Thresholds from a block: whether v[0, n) is all finite
  // (the return value) and the column maxima of its first n / width rows of `width` columns:
  // maxima[c] of |x| (absolute) or x, and, when `negated` is not null, negated[c] of -x (the
  // maxima are meaningless when some value is not finite).
  bool (*columnMaximaF32)(const float* v, int64_t n, int64_t width, bool absolute, float* maxima,
                          float* negated);
  // The views above end->threshold of v[0, n) (|x| when absolute, else x) into end->values and
  // their count into end->above, and, where countTies, the views equal to it counted in
  // end->equal (0 otherwise: ties are counted, never kept, so a block of equal values keeps
  // nothing; counting costs a little on values that do not repeat); the same for -x and `low`
  // where `low` is not null. Both ends' values pass through low's values first, so `capacity`
  // floats of room each must hold the two ends' values together. `expected`: about how many
  // values the caller expects the ends to keep together; it picks how they are stored, not what.
  // Whether v[0, n) is all finite goes to `finite` where it is not null (the ends are
  // meaningless when it is not). False when the values kept would not fit (the counts and
  // `finite` are then unset).
  bool (*selectEndsF32)(const float* v, int64_t n, bool absolute, SelectedEnd* high,
                        SelectedEnd* low, int64_t capacity, bool countTies, int64_t expected,
                        bool* finite);
  // x[c - keep] and x[c - keep + 1] (x[c - keep] again when keep == 1) of finite x[0, c) sorted
  // ascending, 1 <= keep <= c, as values; x may be reordered. `guess`: a value near x[c - keep]
  // that may speed the search (NaN: none); it does not change the result.
  void (*topOfF32)(float* x, int64_t c, int64_t keep, float guess, float* at, float* next);
};

// The table for QCOMM_CPU_ISA (auto, generic, avx2, avx512); errors as qsgd::selectKernels.
Result<const QuantCpuKernels*> selectQuantKernels(std::string_view isa);

}  // namespace qcomm::quant
