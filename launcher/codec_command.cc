#include "codec_command.h"

#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "npy.h"
#include "qcomm/codec.h"
#include "qcomm/wire.h"

namespace qcomm::launcher {
namespace {

struct EncodeArgs {
  std::string input, output;
  int bits = 4;
  int64_t bucket = 0;
  std::string norm = "l2", layout = "seed";
  uint64_t seed = 0;
  bool noCrc = false;
};

int fail(const Status& status) {
  std::cerr << "qcomm codec: " << status.message() << "\n";
  return status.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

Status runEncode(const EncodeArgs& a) {
  QCOMM_ASSIGN_OR_RETURN(const NpyArray array, readNpy(a.input));
  QsgdOptions options;
  options.bits = a.bits;
  options.bucketSize = a.bucket;
  QCOMM_ASSIGN_OR_RETURN(options.norm, parseNormKind(a.norm));
  QCOMM_ASSIGN_OR_RETURN(options.layout, parseLayout(a.layout));
  QCOMM_ASSIGN_OR_RETURN(std::unique_ptr<Executor> executor, Executor::fromEnvironment());
  const RandomKey key{a.seed, 0, 0, 0};
  Result<EncodedTensor> encoded = invalidArgument("unreachable");
  if (array.dtype == DType::kFloat32) {
    std::vector<float> values(array.count());
    if (!values.empty()) std::memcpy(values.data(), array.data.data(), array.data.size());
    encoded = qsgdEncode(std::span<const float>(values), options, key, executor.get(), array.shape);
  } else {
    std::vector<double> values(array.count());
    if (!values.empty()) std::memcpy(values.data(), array.data.data(), array.data.size());
    encoded =
        qsgdEncode(std::span<const double>(values), options, key, executor.get(), array.shape);
  }
  QCOMM_RETURN_IF_ERROR(encoded.status());
  if (array.shape.empty()) encoded->shape.clear();
  WireOptions wire;
  wire.crc = !a.noCrc;
  QCOMM_ASSIGN_OR_RETURN(const std::vector<uint8_t> bytes, toWire(*encoded, wire));
  QCOMM_RETURN_IF_ERROR(writeFile(a.output, bytes));
  std::cout << "encoded " << encoded->count << " " << dtypeName(encoded->dtype) << " values into "
            << bytes.size() << " bytes (" << encoded->words.size() << " words, "
            << wireBitsPerValue(*encoded) << " bits/value) -> " << a.output << "\n";
  return Status::ok();
}

Status runDecode(const std::string& input, const std::string& output) {
  QCOMM_ASSIGN_OR_RETURN(const std::vector<uint8_t> bytes, readFile(input));
  Result<EncodedTensor> parsed = fromWire(bytes);
  if (!parsed.isOk()) return parsed.status().withContext(input + ": ");
  const EncodedTensor& e = *parsed;
  QCOMM_ASSIGN_OR_RETURN(std::unique_ptr<Executor> executor, Executor::fromEnvironment());
  NpyArray array;
  array.dtype = e.dtype;
  array.shape = e.shape;
  const size_t itemsize = e.dtype == DType::kFloat32 ? 4 : 8;
  array.data.resize(static_cast<size_t>(e.count) * itemsize);
  if (e.dtype == DType::kFloat32) {
    std::span<float> out(reinterpret_cast<float*>(array.data.data()), e.count);
    QCOMM_RETURN_IF_ERROR(qsgdDecode(e, out, executor.get()));
  } else {
    std::span<double> out(reinterpret_cast<double*>(array.data.data()), e.count);
    QCOMM_RETURN_IF_ERROR(qsgdDecode(e, out, executor.get()));
  }
  QCOMM_RETURN_IF_ERROR(writeNpy(output, array));
  std::cout << "decoded " << e.count << " " << dtypeName(e.dtype) << " values -> " << output
            << "\n";
  return Status::ok();
}

Status runInfo(const std::string& input, bool json) {
  QCOMM_ASSIGN_OR_RETURN(const std::vector<uint8_t> bytes, readFile(input));
  Result<EncodedTensor> parsed = fromWire(bytes);
  if (!parsed.isOk()) return parsed.status().withContext(input + ": ");
  const EncodedTensor& e = *parsed;
  int64_t nonFinite = 0;
  for (double s : e.scales) nonFinite += std::isnan(s) ? 1 : 0;
  const bool crc = (bytes[16] & kFlagCrc) != 0;
  const double inputBytes = double(e.count) * (e.dtype == DType::kFloat32 ? 4 : 8);
  nlohmann::ordered_json j;
  j["file"] = input;
  j["codec"] = "qsgd";
  j["bits"] = e.bits;
  j["layout"] = layoutName(e.layout);
  j["norm"] = normKindName(e.norm);
  j["dtype"] = dtypeName(e.dtype);
  j["shape"] = e.shape;
  j["count"] = e.count;
  j["bucket_size"] = e.bucketSize;
  j["buckets"] = e.numBuckets();
  j["nonfinite_buckets"] = nonFinite;
  j["words"] = e.words.size();
  j["message_bytes"] = bytes.size();
  j["bits_per_value"] = wireBitsPerValue(e);
  j["compression_ratio"] = bytes.empty() ? 0.0 : inputBytes / double(bytes.size());
  j["crc32c"] = crc;
  j["config_hash"] = configHash(e);
  if (json) {
    std::cout << j.dump(2) << "\n";
  } else {
    for (const auto& [key, value] : j.items()) {
      std::cout << key << std::string(20 - key.size(), ' ') << value.dump() << "\n";
    }
  }
  return Status::ok();
}

}  // namespace

void addCodecCommand(CLI::App& app, int& exitCode) {
  CLI::App* codec = app.add_subcommand("codec", "QSGD-encode, decode and inspect .npy tensors");
  codec->require_subcommand(1);

  auto args = std::make_shared<EncodeArgs>();
  CLI::App* encode = codec->add_subcommand("encode", "encode IN.npy into the wire message OUT.qc");
  encode->add_option("input", args->input, "float32/float64 .npy file")->required();
  encode->add_option("output", args->output, "output .qc file")->required();
  encode->add_option("--bits,-q", args->bits, "magnitude bits q (1..16)")->capture_default_str();
  encode->add_option("--bucket", args->bucket, "values per bucket (0: whole tensor)")
      ->capture_default_str();
  encode->add_option("--norm", args->norm, "l2 or max")->capture_default_str();
  encode->add_option("--layout", args->layout, "seed or compact")->capture_default_str();
  encode->add_option("--seed", args->seed, "seed of the stochastic rounding")
      ->capture_default_str();
  encode->add_flag("--no-crc", args->noCrc, "leave the payload CRC32C out");
  encode->callback([args, &exitCode] {
    const Status s = runEncode(*args);
    exitCode = s.isOk() ? 0 : fail(s);
  });

  auto paths = std::make_shared<std::pair<std::string, std::string>>();
  CLI::App* decode = codec->add_subcommand("decode", "decode IN.qc into OUT.npy");
  decode->add_option("input", paths->first, "input .qc file")->required();
  decode->add_option("output", paths->second, "output .npy file")->required();
  decode->callback([paths, &exitCode] {
    const Status s = runDecode(paths->first, paths->second);
    exitCode = s.isOk() ? 0 : fail(s);
  });

  auto infoPath = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  CLI::App* info = codec->add_subcommand("info", "describe the wire message IN.qc");
  info->add_option("input", *infoPath, "input .qc file")->required();
  info->add_flag("--json", *json, "print JSON");
  info->callback([infoPath, json, &exitCode] {
    const Status s = runInfo(*infoPath, *json);
    exitCode = s.isOk() ? 0 : fail(s);
  });
}

}  // namespace qcomm::launcher
