// Algorithm names and choice, and codec specs.
#include <charconv>

#include "qcomm/communicator.h"

#include "codec/spec_items.h"

namespace qcomm {
namespace {

// Below this many values sra's second round trip costs more latency than its bandwidth saves.
constexpr int64_t kSraMinNumel = int64_t{1} << 16;

Result<int64_t> parseInt(std::string_view key, std::string_view text) {
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return invalidArgument("codec spec: ", std::string(key), "='", std::string(text),
                           "' is not an integer");
  }
  return value;
}

}  // namespace

std::string_view algorithmName(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::kAuto:
      return "auto";
    case Algorithm::kAllgather:
      return "allgather";
    case Algorithm::kSra:
      return "sra";
    case Algorithm::kUncompressed:
      return "uncompressed";
    case Algorithm::kHierarchical:
      return "hierarchical";
  }
  return "unknown";
}

Result<Algorithm> parseAlgorithm(std::string_view name) {
  for (Algorithm a :
       {Algorithm::kAuto, Algorithm::kAllgather, Algorithm::kSra, Algorithm::kUncompressed,
        Algorithm::kHierarchical}) {
    if (name == algorithmName(a)) return a;
  }
  return invalidArgument("algorithm must be auto, allgather, sra, uncompressed or hierarchical, got '",
                         std::string(name), "'");
}

Result<QsgdOptions> parseCodecSpec(std::string_view spec) {
  const size_t colon = spec.find(':');
  const std::string_view codec = spec.substr(0, colon);
  if (codec != "qsgd") {
    return invalidArgument("codec spec '", std::string(spec), "': unknown codec '",
                           std::string(codec), "' (known: qsgd)");
  }
  QsgdOptions options;
  QCOMM_RETURN_IF_ERROR(forEachSpecItem(spec, [&](std::string_view key,
                                                  std::string_view value) -> Status {
    if (key == "bits") {
      QCOMM_ASSIGN_OR_RETURN(const int64_t bits, parseInt(key, value));
      options.bits = static_cast<int>(std::clamp<int64_t>(bits, -1, 1000));
    } else if (key == "bucket") {
      QCOMM_ASSIGN_OR_RETURN(options.bucketSize, parseInt(key, value));
    } else if (key == "norm") {
      QCOMM_ASSIGN_OR_RETURN(options.norm, parseNormKind(value));
    } else if (key == "layout") {
      QCOMM_ASSIGN_OR_RETURN(options.layout, parseLayout(value));
    } else if (key == "random_bits") {
      QCOMM_ASSIGN_OR_RETURN(const int64_t r, parseInt(key, value));
      options.randomBits = static_cast<int>(std::clamp<int64_t>(r, -1, 1000));
    } else {
      return invalidArgument("codec spec '", std::string(spec), "': unknown key '",
                             std::string(key), "' (known: bits, bucket, norm, layout, random_bits)");
    }
    return Status::ok();
  }));
  QCOMM_RETURN_IF_ERROR(options.validate().withContext("codec spec: "));
  return options;
}

Result<CodecConfig> parseAnyCodecSpec(std::string_view spec) {
  CodecConfig codec;
  if (spec.substr(0, spec.find(':')) == "qsgd") {
    QCOMM_ASSIGN_OR_RETURN(codec.qsgd, parseCodecSpec(spec));
    return codec;
  }
  codec.isQsgd = false;
  QCOMM_ASSIGN_OR_RETURN(codec.quant, parseQuantSpec(spec));
  return codec;
}

std::string anyCodecSpec(const CodecConfig& codec) {
  return codec.isQsgd ? codecSpec(codec.qsgd) : quantSpec(codec.quant);
}

double codecStepBound(const CodecConfig& c) {
  if (c.isQsgd) return 1.0 / ((1 << c.qsgd.bits) - 1);
  const int b = c.quant.bits;
  // Asymmetric grids under stochastic rounding have one step fewer (docs/quantizers.md).
  const bool stochastic = c.quant.rounding == Rounding::kStochastic;
  const double linear = c.quant.symmetric ? 1.0 / ((1 << (b - 1)) - 1)
                                          : 2.0 / ((1 << b) - (stochastic ? 2 : 1));
  switch (c.quant.kind) {
    case QuantKind::kLinear: return linear;
    case QuantKind::kPercentile: return linear + 0.1;
    case QuantKind::kRowwise: return 2.0 / ((1 << b) - 1);
    case QuantKind::kDynamic: return 0.015;  // the dynamic map's widest gap is 0.0141
    case QuantKind::kFp16: return 1e-3;
    case QuantKind::kBf16: return 8e-3;
  }
  return 1.0;
}

std::string codecSpec(const QsgdOptions& o) {
  return strCat("qsgd:bits=", o.bits, ",bucket=", o.bucketSize, ",norm=", normKindName(o.norm),
                ",layout=", layoutName(o.layout),
                o.randomBits == QsgdOptions{}.randomBits ? ""
                                                         : strCat(",random_bits=", o.randomBits));
}

Status CommunicatorOptions::validate() const {
  QCOMM_RETURN_IF_ERROR(parseAnyCodecSpec(codec).status());
  if (minCompressNumel < 0) {
    return invalidArgument("minCompressNumel must be >= 0, got ", minCompressNumel);
  }
  if (chunkNumel < 1) return invalidArgument("chunkNumel must be >= 1, got ", chunkNumel);
  if (algorithmName(algorithm) == "unknown") return invalidArgument("unknown algorithm");
  if (ranksPerHost < 0) return invalidArgument("ranksPerHost must be >= 0, got ", ranksPerHost);
  return Status::ok();
}

std::string CommunicatorOptions::describe() const {
  const Result<CodecConfig> parsed = parseAnyCodecSpec(codec);
  return strCat(parsed.isOk() ? anyCodecSpec(*parsed) : codec, " algorithm=", algorithmName(algorithm),
                " error_feedback=", errorFeedback ? 1 : 0, " seed=", seed,
                " min_compress=", minCompressNumel, " chunk=", chunkNumel,
                " check_sizes=", checkSizes ? 1 : 0, " ranks_per_host=", ranksPerHost);
}

Algorithm selectAlgorithm(int64_t count, int worldSize, const transport::Capabilities& /*caps*/,
                          const CommunicatorOptions& options) {
  if (worldSize <= 1 || count < options.minCompressNumel) return Algorithm::kUncompressed;
  if (options.algorithm != Algorithm::kAuto) return options.algorithm;
  // Two ranks: sra moves as many bytes as allgather but quantizes twice.
  if (worldSize == 2 || count < kSraMinNumel) return Algorithm::kAllgather;
  return Algorithm::kSra;
}

}  // namespace qcomm
