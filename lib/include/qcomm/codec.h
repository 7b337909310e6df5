// The QSGD codec on the CPU: options, the encoded tensor, encode and decode.
// The format (bits, words, floating-point sequence) is specified in docs/format.md.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qcomm/executor.h"
#include "qcomm/format_types.h"
#include "qcomm/status.h"

namespace qcomm {

struct QsgdOptions {
  int bits = 4;            // q: 1..16 magnitude bits, s = 2^q - 1 levels
  int64_t bucketSize = 0;  // values per bucket; 0 means the whole tensor is one bucket
  NormKind norm = NormKind::kL2;
  Layout layout = Layout::kSeed;
  // Random bits per value for the stochastic rounding: 16, the default (half the Philox work;
  // unbiased to 2^-16 of a step), or 32 (unbiased to 2^-24 of a step; the draws of the seed and
  // of qcomm before 2026-12-04). Encoded messages say which (flags); decoding does not depend on
  // it. The codec benchmark chose the default (docs/performance.md, "16-bit draws by default").
  int randomBits = 16;

  Status validate() const;
};

// What keys the stochastic rounding: the same key and input give the same words on any thread
// count, any CPU kernel and the GPU.
struct RandomKey {
  uint64_t seed = 0;
  uint32_t rank = 0;
  uint32_t tensorId = 0;
  uint64_t step = 0;
};

// An encoded tensor: the header fields of the wire message, one scale per bucket and the words.
struct EncodedTensor {
  int bits = 4;
  Layout layout = Layout::kSeed;
  NormKind norm = NormKind::kL2;
  DType dtype = DType::kFloat32;
  int64_t bucketSize = 1;      // effective bucket size, >= 1 (the element count for one bucket)
  int64_t count = 0;           // number of values
  std::vector<int64_t> shape;  // product == count; {count} for a flat tensor
  uint32_t flags = 0;          // kFlagNonFinite when some bucket held NaN/Inf
  // Per-bucket scale (the norm). Float32 tensors carry fp32 values here, widened exactly. A NaN
  // marks a bucket that held NaN/Inf: it decodes as NaN.
  std::vector<double> scales;
  std::vector<uint64_t> words;

  int64_t numBuckets() const;
  bool operator==(const EncodedTensor&) const = default;
};

// A read-only view of an encoded tensor whose scales and words live elsewhere: in an
// EncodedTensor (viewOf) or in a received wire message (viewWire in qcomm/wire.h), which decode
// then reads in place, without copying the words. The viewed memory must outlive the view.
struct EncodedView {
  int bits = 4;
  Layout layout = Layout::kSeed;
  NormKind norm = NormKind::kL2;
  DType dtype = DType::kFloat32;
  int64_t bucketSize = 1;  // effective, >= 1
  int64_t count = 0;
  uint32_t flags = 0;
  // One scale per bucket: fp32 as a float32 message carries them, or fp64 (an EncodedTensor's
  // widened scales, a float64 message's).
  std::span<const float> scalesF32;
  std::span<const double> scalesF64;
  std::span<const uint64_t> words;

  int64_t numBuckets() const;
  size_t scaleCount() const { return scalesF32.empty() ? scalesF64.size() : scalesF32.size(); }
  double scale(int64_t b) const {
    return scalesF32.empty() ? scalesF64[b] : static_cast<double>(scalesF32[b]);
  }
};
EncodedView viewOf(const EncodedTensor& encoded);

// Geometry shared by every function that sizes buffers.
struct QsgdGeometry {
  int codeWidth = 0;       // bits per code: q + 2 (seed) or q + 1 (compact)
  int valuesPerWord = 0;   // k = 64 / codeWidth
  int64_t bucketSize = 0;  // effective, >= 1
  int64_t numBuckets = 0;
  int64_t wordCount = 0;
};
// Fails (OutOfRange) when the sizes overflow.
Result<QsgdGeometry> qsgdGeometry(int64_t count, const QsgdOptions& options);

// Checks that an EncodedTensor is self-consistent (what decode and the wire writer rely on); the
// message names the first field that is wrong.
Status validateEncoded(const EncodedTensor& encoded);
// The same for a view (everything but the shape, which a view does not carry).
Status validateView(const EncodedView& view);
// Checks that `shape` describes `count` values (no negative dimension; () holds one value).
Status validateShape(std::span<const int64_t> shape, int64_t count);

// Encodes `values` (the shape defaults to {values.size()}). The executor, when given, spreads the
// work over its threads; the words do not depend on it.
Result<EncodedTensor> qsgdEncode(std::span<const float> values, const QsgdOptions& options,
                                 const RandomKey& key, Executor* executor = nullptr,
                                 std::span<const int64_t> shape = {});
Result<EncodedTensor> qsgdEncode(std::span<const double> values, const QsgdOptions& options,
                                 const RandomKey& key, Executor* executor = nullptr,
                                 std::span<const int64_t> shape = {});

// The same, into `out`, reusing its buffers' capacity: no allocation once `out` has held a tensor
// of this size (what a training loop calling it every step wants).
Status qsgdEncodeInto(std::span<const float> values, const QsgdOptions& options,
                      const RandomKey& key, Executor* executor, EncodedTensor* out,
                      std::span<const int64_t> shape = {});
Status qsgdEncodeInto(std::span<const double> values, const QsgdOptions& options,
                      const RandomKey& key, Executor* executor, EncodedTensor* out,
                      std::span<const int64_t> shape = {});

// Encodes like qsgdEncodeInto and also writes residual[i] = values[i] - decode(out)[i], the
// error-feedback residual, from each tile's codes while they are in cache (no second pass over
// the message; the same floats qsgdDecode would give). residual must hold values.size() floats.
Status qsgdEncodeWithResidual(std::span<const float> values, const QsgdOptions& options,
                              const RandomKey& key, Executor* executor, EncodedTensor* out,
                              std::span<float> residual);

// Decodes into `out`, whose size must equal encoded.count. A float32 message decodes with fp32
// arithmetic and a float64 one with fp64, whatever the output type.
Status qsgdDecode(const EncodedTensor& encoded, std::span<float> out, Executor* executor = nullptr);
Status qsgdDecode(const EncodedView& encoded, std::span<float> out, Executor* executor = nullptr);

// Decode-and-mean, the allreduce's inner loop: out[i] = (sum over r, in order, of
// decode(codes[r])[i]) / codes.size(), summed in fp32 from 0, the arithmetic of decoding each code
// and adding (and of the CUDA qsgdDecodeMean). The codes are float32 messages of the same count,
// bits, layout and bucket size. Each bucket is decoded into cache and out is written once. With
// residualOf = r, also residual[i] = input[i] - decode(codes[r])[i] (error feedback).
struct DecodeMeanResidual {
  int residualOf = -1;
  std::span<const float> input;
  std::span<float> residual;
};
Status qsgdDecodeMean(std::span<const EncodedTensor* const> codes, std::span<float> out,
                      Executor* executor = nullptr, const DecodeMeanResidual& residual = {});
// The same on views: the allreduce averages received messages in place (viewWire).
Status qsgdDecodeMean(std::span<const EncodedView> codes, std::span<float> out,
                      Executor* executor = nullptr, const DecodeMeanResidual& residual = {});
Status qsgdDecode(const EncodedTensor& encoded, std::span<double> out,
                  Executor* executor = nullptr);

// Names used by the Python API, the CLI and codec specs.
std::string_view layoutName(Layout layout);
std::string_view normKindName(NormKind norm);
std::string_view dtypeName(DType dtype);
Result<Layout> parseLayout(std::string_view name);
Result<NormKind> parseNormKind(std::string_view name);

// Bits on the wire per value (words only, scales and header excluded) for n values.
double wireBitsPerValue(const EncodedTensor& encoded);

}  // namespace qcomm
