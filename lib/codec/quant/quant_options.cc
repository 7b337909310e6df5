// The quantizer registry: codec names, spec parsing, validation.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>

#include "qcomm/quantizers.h"

#include "codec/spec_items.h"

namespace qcomm {
namespace {

struct Entry {
  QuantKind kind;
  std::string_view name;
  int defaultBits;
};

// One row per codec: its spec name and its default bits.
constexpr Entry kRegistry[] = {
    {QuantKind::kLinear, "linear", 8},   {QuantKind::kPercentile, "percentile", 8},
    {QuantKind::kDynamic, "dynamic", 8}, {QuantKind::kRowwise, "rowwise", 8},
    {QuantKind::kFp16, "fp16", 16},      {QuantKind::kBf16, "bf16", 16},
};

Result<int64_t> parseInteger(std::string_view spec, std::string_view key, std::string_view text) {
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return invalidArgument("codec spec '", std::string(spec), "': ", std::string(key), "='",
                           std::string(text), "' is not an integer");
  }
  return value;
}

}  // namespace

std::string_view quantKindName(QuantKind kind) {
  for (const Entry& e : kRegistry) {
    if (e.kind == kind) return e.name;
  }
  return "unknown";
}

Status QuantOptions::validate() const {
  if (quantKindName(kind) == "unknown") {
    return invalidArgument("unknown quantizer id ", static_cast<int>(kind));
  }
  const bool cast = kind == QuantKind::kFp16 || kind == QuantKind::kBf16;
  if (cast && bits != 16) return invalidArgument(quantKindName(kind), " codes are 16 bits, got ", bits);
  if (kind == QuantKind::kDynamic && bits != 8) {
    return invalidArgument("dynamic codes are 8 bits (a 256-value map), got ", bits);
  }
  if (!cast && (bits < 2 || bits > 8)) {
    return invalidArgument(quantKindName(kind), " takes bits in [2, 8], got ", bits);
  }
  if (cast && rounding == Rounding::kStochastic) {
    return invalidArgument(quantKindName(kind), " rounds to nearest only (rounding=nearest)");
  }
  if (randomBits != 32 && randomBits != 16) {
    return invalidArgument("random_bits must be 32 or 16, got ", randomBits);
  }
  if (randomBits != QuantOptions{}.randomBits && rounding != Rounding::kStochastic) {
    return invalidArgument("random_bits=", randomBits, " applies to stochastic rounding; ",
                           quantKindName(kind), " here rounds to nearest");
  }
  if (blockSize < 0) return invalidArgument("block must be >= 0, got ", blockSize);
  if (kind == QuantKind::kDynamic && blockSize != 0 && blockSize < 64) {
    return invalidArgument("dynamic blocks hold at least 64 values, got ", blockSize);
  }
  if (kind == QuantKind::kPercentile && !(percentile > 50.0 && percentile <= 100.0)) {
    return invalidArgument("percentile p must be in (50, 100], got ", percentile);
  }
  return Status::ok();
}

Result<QuantOptions> parseQuantSpec(std::string_view spec) {
  const size_t colon = spec.find(':');
  const std::string_view name = spec.substr(0, colon);
  QuantOptions options;
  bool found = false;
  for (const Entry& e : kRegistry) {
    if (e.name == name) {
      options.kind = e.kind;
      options.bits = e.defaultBits;
      found = true;
    }
  }
  if (!found) {
    return invalidArgument("codec spec '", std::string(spec), "': unknown codec '",
                           std::string(name),
                           "' (known: qsgd, linear, percentile, dynamic, rowwise, fp16, bf16)");
  }
  if (options.kind == QuantKind::kFp16 || options.kind == QuantKind::kBf16) {
    options.rounding = Rounding::kNearest;
  }
  bool randomBitsGiven = false;
  QCOMM_RETURN_IF_ERROR(forEachSpecItem(spec, [&](std::string_view key,
                                                  std::string_view value) -> Status {
    if (key == "bits") {
      QCOMM_ASSIGN_OR_RETURN(const int64_t bits, parseInteger(spec, key, value));
      options.bits = static_cast<int>(std::clamp<int64_t>(bits, -1, 1000));
    } else if (key == "block") {
      QCOMM_ASSIGN_OR_RETURN(options.blockSize, parseInteger(spec, key, value));
    } else if (key == "mode" && (value == "sym" || value == "asym")) {
      options.symmetric = value == "sym";
    } else if (key == "rounding" && (value == "nearest" || value == "stochastic")) {
      options.rounding = value == "nearest" ? Rounding::kNearest : Rounding::kStochastic;
    } else if (key == "p" && options.kind == QuantKind::kPercentile) {
      const std::string text(value);
      char* end = nullptr;
      options.percentile = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size()) {
        return invalidArgument("codec spec '", std::string(spec), "': p='", text,
                               "' is not a number");
      }
    } else if (key == "random_bits") {
      QCOMM_ASSIGN_OR_RETURN(const int64_t randomBits, parseInteger(spec, key, value));
      options.randomBits = static_cast<int>(std::clamp<int64_t>(randomBits, -1, 1000));
      randomBitsGiven = true;
    } else if (key == "mode" || key == "rounding") {
      return invalidArgument("codec spec '", std::string(spec), "': ", std::string(key), "='",
                             std::string(value), "' (",
                             key == "mode" ? "sym or asym" : "nearest or stochastic", ")");
    } else {
      return invalidArgument("codec spec '", std::string(spec), "': unknown key '",
                             std::string(key), "' (known: bits, block, mode, rounding, random_bits",
                             options.kind == QuantKind::kPercentile ? ", p)" : ")");
    }
    return Status::ok();
  }));
  if (randomBitsGiven && options.rounding != Rounding::kStochastic) {
    return invalidArgument("codec spec '", std::string(spec),
                           "': random_bits applies to stochastic rounding; ",
                           quantKindName(options.kind), " here rounds to nearest");
  }
  QCOMM_RETURN_IF_ERROR(options.validate().withContext("codec spec: "));
  return options;
}

std::string quantSpec(const QuantOptions& o) {
  std::string spec = std::string(quantKindName(o.kind));
  if (o.kind == QuantKind::kFp16 || o.kind == QuantKind::kBf16) return spec;
  spec += strCat(":bits=", o.bits, ",block=", o.blockSize, ",rounding=",
                 o.rounding == Rounding::kNearest ? "nearest" : "stochastic");
  if (o.kind == QuantKind::kLinear || o.kind == QuantKind::kPercentile) {
    spec += o.symmetric ? ",mode=sym" : ",mode=asym";
  }
  if (o.kind == QuantKind::kPercentile) spec += strCat(",p=", o.percentile);
  if (o.randomBits != QuantOptions{}.randomBits) spec += strCat(",random_bits=", o.randomBits);
  return spec;
}

}  // namespace qcomm
