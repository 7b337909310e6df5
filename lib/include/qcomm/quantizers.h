// The block quantizers practitioners compare QSGD against (seed notes 001-004), behind one
// interface: linear symmetric/asymmetric, percentile clipping, dynamic 8-bit, row-wise, and the
// fp16/bf16 casts. Codes are packed densely (b bits each) into uint64 words; per-block scales and
// zero points travel in the wire message. docs/quantizers.md specifies each formula.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qcomm/codec.h"
#include "qcomm/executor.h"
#include "qcomm/status.h"

namespace qcomm {

// QuantKind (the codec ids) is in qcomm/format_types.h, shared with device code.

enum class Rounding : uint8_t { kNearest = 0, kStochastic = 1 };

struct QuantOptions {
  QuantKind kind = QuantKind::kLinear;
  int bits = 8;                // 2..8 (dynamic: 8; casts: 16)
  bool symmetric = true;       // linear and percentile: mode=sym or mode=asym
  Rounding rounding = Rounding::kStochastic;
  int64_t blockSize = 0;       // values per block (row-wise: per row); 0: the whole tensor
                               // (dynamic: 4096; row-wise: the shape's last dimension)
  double percentile = 99.9;    // percentile: the range's upper percentile, in (50, 100]
  // Random bits per value for stochastic rounding (spec key random_bits): 16, the default, which
  // halves the Philox work for a bias of at most 2^-16 of a step, or 32, unbiased to 2^-24 of a
  // step (the same draws as QsgdOptions::randomBits; docs/quantizers.md). Rounding to nearest
  // draws nothing and keeps the default. Decoding does not depend on it.
  int randomBits = 16;

  Status validate() const;
};

struct QuantizedTensor {
  QuantOptions options;
  DType dtype = DType::kFloat32;
  int64_t blockSize = 1;         // effective
  int64_t count = 0;
  std::vector<int64_t> shape;
  uint32_t flags = 0;            // kFlagNonFinite when some block held NaN/Inf
  std::vector<double> scales;    // per block (absmax for dynamic); NaN for a non-finite block
  std::vector<double> zeroPoints;  // per block for asymmetric linear/percentile and row-wise
  std::vector<uint64_t> words;

  int64_t numBlocks() const;
  bool hasZeroPoints() const;
  int codeBits() const;  // bits per packed code
};

// "linear:bits=8,mode=asym,rounding=stochastic,block=1024", "percentile:bits=8,p=99.9",
// "dynamic:block=2048", "rowwise:bits=4", "fp16", "bf16". Errors name the key that is wrong.
Result<QuantOptions> parseQuantSpec(std::string_view spec);
std::string quantSpec(const QuantOptions& options);
std::string_view quantKindName(QuantKind kind);

// Quantizes values (shape defaults to {n}; row-wise needs the shape, and takes its last dimension
// as the row). The same key and input give the same words.
Result<QuantizedTensor> quantize(std::span<const float> values, const QuantOptions& options,
                                 const RandomKey& key = {}, std::span<const int64_t> shape = {},
                                 Executor* executor = nullptr);
Result<QuantizedTensor> quantize(std::span<const double> values, const QuantOptions& options,
                                 const RandomKey& key = {}, std::span<const int64_t> shape = {},
                                 Executor* executor = nullptr);
// quantize into `out`, reusing its buffers (no allocation once they are large enough), as
// qsgdEncodeInto does for QSGD. On error `out` holds no valid tensor.
Status quantizeInto(std::span<const float> values, const QuantOptions& options, const RandomKey& key,
                    std::span<const int64_t> shape, Executor* executor, QuantizedTensor* out);
Status quantizeInto(std::span<const double> values, const QuantOptions& options,
                    const RandomKey& key, std::span<const int64_t> shape, Executor* executor,
                    QuantizedTensor* out);

Status dequantize(const QuantizedTensor& q, std::span<float> out, Executor* executor = nullptr);
Status dequantize(const QuantizedTensor& q, std::span<double> out, Executor* executor = nullptr);
// The codes, unpacked, as the notes show them (symmetric codes are signed).
std::vector<int32_t> unpackCodes(const QuantizedTensor& q);
Status validateQuantized(const QuantizedTensor& q);

// The 256 values of the signed dynamic map (note 002's create_dynamic_map(signed=True, n=7)),
// sorted, as float32.
std::span<const float, 256> dynamicMap();

// Wire messages (docs/quantizers.md): the QSGD header layout with this codec's id.
Result<size_t> quantWireSize(const QuantizedTensor& q);
// The size of the message of `count` values of a flat tensor (shape {count}), without
// quantizing them: quantWireSize of what quantize would make.
Result<size_t> quantWireSizeFor(const QuantOptions& options, int64_t count,
                                DType dtype = DType::kFloat32);
Status writeQuantWire(const QuantizedTensor& q, bool crc, std::span<uint8_t> out);
Result<QuantizedTensor> quantFromWire(std::span<const uint8_t> message);
// quantFromWire into `out`, reusing its buffers (no allocation once they are large enough). On
// error `out` holds no valid tensor.
Status quantFromWireInto(std::span<const uint8_t> message, QuantizedTensor* out);
// The codec id byte of a message (after checking magic and size), to dispatch on.
Result<uint8_t> wireCodecId(std::span<const uint8_t> message);

}  // namespace qcomm
