// Encode arbitrary floats (NaN, Inf, denormals, extremes) under arbitrary options, decode, and
// check the promises: encoding any input under valid options succeeds, decoding its message
// gives back as many values, and every value of a bucket (block) whose inputs are finite comes
// back within one quantization step of its input (qcomm::quantizationErrorBounds).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_target.h"
#include "qcomm/any_codec.h"
#include "qcomm/communicator.h"
#include "qcomm/quantizers.h"

namespace {

std::string quantSpec(qcomm::fuzz::Bytes& in) {
  static const char* const kKinds[] = {"linear", "percentile", "dynamic", "rowwise", "fp16",
                                       "bf16"};
  const uint8_t kind = in.u8() % 6;
  std::string spec = kKinds[kind];
  if (kind >= 4) return spec;
  const uint8_t rounding = in.u8();
  spec += (rounding & 1) ? ":rounding=stochastic" : ":rounding=nearest";
  if ((rounding & 3) == 3) spec += ",random_bits=32";
  const uint8_t block = in.u8();
  spec += ",block=" + std::to_string(block == 0 ? 0 : (kind == 2 ? 64 : 1) + block * 3);
  if (kind == 2) return spec;
  spec += ",bits=" + std::to_string(2 + in.u8() % 7);
  if (kind <= 1) spec += (in.u8() & 1) ? ",mode=asym" : ",mode=sym";
  if (kind == 1) spec += (in.u8() & 1) ? ",p=100" : ",p=99";
  return spec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcomm;
  fuzz::Bytes in(data, size);
  std::string spec;
  if ((in.u8() & 1) == 0) {
    const int bucket = in.u8() == 0 ? 0 : 1 + static_cast<int>(in.u32() % 4096);
    const uint8_t flags = in.u8();
    spec = "qsgd:bits=" + std::to_string(1 + in.u8() % 16) + ",bucket=" + std::to_string(bucket) +
           ",norm=" + ((flags & 1) ? "max" : "l2") + ",layout=" +
           ((flags & 2) ? "compact" : "seed") + ((flags & 4) ? ",random_bits=32" : "");
  } else {
    spec = quantSpec(in);
  }
  Result<CodecConfig> codec = parseAnyCodecSpec(spec);
  if (!codec.isOk()) fuzz::broken("a generated spec did not parse:", spec.c_str());
  const RandomKey key{in.u32(), in.u8(), in.u32(), in.u32()};
  const size_t n = std::min<size_t>(in.restSize() / 4, 1 << 16);
  std::vector<float> x(n);
  if (n > 0) std::memcpy(x.data(), in.rest(), 4 * n);
  std::vector<uint8_t> message;
  const Status encoded = encodeWireMessage(x, *codec, key, (key.step & 1) != 0, &message);
  if (!encoded.isOk()) {
    fuzz::broken(("encoding under " + spec + " failed:").c_str(), encoded.message().c_str());
  }
  std::vector<float> y(n);
  const Status decoded = decodeWireMessage(message, y);
  if (!decoded.isOk()) {
    fuzz::broken(("decoding under " + spec + " failed:").c_str(), decoded.message().c_str());
  }
  // The bound, for buckets (blocks) whose inputs are all finite.
  const bool percentile = !codec->isQsgd && codec->quant.kind == QuantKind::kPercentile;
  if (percentile) return 0;  // clipping moves outliers by design
  const bool cast = !codec->isQsgd && (codec->quant.kind == QuantKind::kFp16 ||
                                       codec->quant.kind == QuantKind::kBf16);
  int64_t block = codec->isQsgd ? codec->qsgd.bucketSize : codec->quant.blockSize;
  if (!codec->isQsgd && codec->quant.kind == QuantKind::kDynamic && block == 0) block = 4096;
  if (block == 0 || cast) block = std::max<int64_t>(1, static_cast<int64_t>(n));
  const Result<QuantizedTensor> quant =
      codec->isQsgd || cast ? Result<QuantizedTensor>(invalidArgument("not a block quantizer"))
                            : quantFromWire(message);
  std::vector<double> magnitudes(n);
  for (size_t i = 0; i < n; ++i) magnitudes[i] = std::fabs(static_cast<double>(x[i]));
  const std::vector<double> bound = quantizationErrorBounds(*codec, magnitudes);
  const double levels = 1.0 / codecStepBound(*codec);
  for (size_t b0 = 0; b0 < n; b0 += block) {
    const size_t b1 = std::min(n, b0 + static_cast<size_t>(block));
    bool finite = true;
    double largest = 0.0;
    for (size_t i = b0; i < b1; ++i) {
      finite &= std::isfinite(x[i]);
      largest = std::max(largest, magnitudes[i]);
    }
    if (!finite) continue;
    // A block quantizer's block whose scale overflows float32 (an asymmetric range max - min >
    // FLT_MAX, a stochastic dynamic block near FLT_MAX) is non-finite by definition
    // (nonFiniteIfOverflowed): it must come back as NaN, not as garbage, and only such blocks may.
    if (quant.isOk() && std::isnan(quant->scales[b0 / block])) {
      if (largest < 1e37) {
        fuzz::broken(("a moderate finite block was marked non-finite under " + spec).c_str());
      }
      for (size_t i = b0; i < b1; ++i) {
        if (!std::isnan(y[i])) {
          fuzz::broken(("an overflowing block decoded to a number under " + spec).c_str());
        }
      }
      continue;
    }
    for (size_t i = b0; i < b1; ++i) {
      // Casts round relative to the value itself; the others step by the bucket's norm or range.
      const bool half = cast && codec->quant.kind == QuantKind::kFp16;
      // fp16 holds magnitudes up to 65504, bf16 up to 3.39e38: beyond, infinity is the answer.
      if (cast && magnitudes[i] > (half ? 65504.0 : 3.389e38)) continue;
      const double allowed =
          cast ? std::max(codecStepBound(*codec) * magnitudes[i], half ? 3e-8 : 1e-38)
               : bound[i] * (1.0 + 1e-6 * levels) + 1e-6 * largest / levels +
                     // A step below float32's smallest normal (blocks of subnormal values)
                     // underflows: such values may come back as 0.
                     1.2e-38;
      const double err = std::fabs(static_cast<double>(y[i]) - x[i]);
      if (!(err <= allowed)) {
        char detail[256];
        std::snprintf(detail, sizeof(detail), "value %zu: %.9g came back as %.9g (allowed %.3g)",
                      i, x[i], y[i], allowed);
        fuzz::broken(("out of bound under " + spec).c_str(), detail);
      }
    }
  }
  return 0;
}
