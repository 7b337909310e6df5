// Writes the seed corpus of every fuzz target (tests/fuzz/corpus/NAME/seed-*): valid inputs of
// each kind, from the library itself, so that fuzzing starts from the real formats. Run once
// after a format change: qcomm_fuzz_make_corpus tests/fuzz/corpus
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "npy.h"
#include "qcomm/any_codec.h"
#include "qcomm/communicator.h"
#include "qcomm/local_transport.h"
#include "qcomm/persist.h"

namespace {

using namespace qcomm;

std::filesystem::path root;

void put(const std::string& target, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(root / target);
  std::ofstream(root / target / ("seed-" + name), std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> bytesOf(const std::string& s) { return {s.begin(), s.end()}; }

std::vector<float> values(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = std::sin(0.37f * static_cast<float>(i)) * (1 + i % 5);
  return v;
}

std::vector<uint8_t> message(const std::string& spec, const std::vector<float>& v, bool crc) {
  std::vector<uint8_t> m;
  if (!encodeWireMessage(v, parseAnyCodecSpec(spec).value(), {1, 2, 3, 4}, crc, &m).isOk()) {
    std::fprintf(stderr, "encoding %s failed\n", spec.c_str());
    std::exit(1);
  }
  return m;
}

const char* const kSpecs[] = {"qsgd:bits=4,bucket=512,norm=max,layout=compact,random_bits=16",
                              "qsgd:bits=1", "qsgd:bits=8,bucket=7,norm=l2,layout=seed",
                              "qsgd:bits=16,bucket=0,norm=max",
                              "linear:bits=8", "linear:bits=4,mode=asym,block=64",
                              "percentile:bits=3,p=99.9,block=100", "dynamic:block=64",
                              "rowwise:bits=6,block=25", "fp16", "bf16"};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: qcomm_fuzz_make_corpus CORPUS_DIR\n");
    return 2;
  }
  root = argv[1];
  int i = 0;
  for (const char* spec : kSpecs) {
    for (int n : {0, 1, 100}) {
      const std::vector<uint8_t> m = message(spec, values(n), n == 100);
      put("wire", std::to_string(i) + "-" + std::to_string(n), m);
      put("spec", std::to_string(i), bytesOf(spec));
      // decode_mean: ranks - 1, the expected count (2 bytes), 0 = the QSGD context, messages.
      if (n == 100) {
        std::vector<uint8_t> batch = {2, 100, 0, static_cast<uint8_t>(i < 4 ? 0 : 1)};
        for (int r = 0; r < 3; ++r) batch.insert(batch.end(), m.begin(), m.end());
        put("decode_mean", std::to_string(i), batch);
      }
    }
    ++i;
  }
  for (const char* spec : {"qsgd:", "linear:bits=9", "qsgd:bits=4,bucket=-1", "fp16:rounding=stochastic"}) {
    put("spec", "bad-" + std::to_string(i++), bytesOf(spec));
  }
  // persist: 0 binary .qc, 1 text .qc, 2 a communicator checkpoint.
  const EncodedTensor e = qsgdEncode(values(300), parseCodecSpec("qsgd:bits=4,bucket=64").value(),
                                     {5, 0, 0, 0})
                              .value();
  for (ArchiveKind kind : {ArchiveKind::kBinary, ArchiveKind::kText}) {
    std::ostringstream out;
    if (!saveEncoded(e, out, kind).isOk()) return 1;
    std::vector<uint8_t> bytes = {static_cast<uint8_t>(kind == ArchiveKind::kBinary ? 0 : 1)};
    const std::string s = out.str();
    bytes.insert(bytes.end(), s.begin(), s.end());
    put("persist", kind == ArchiveKind::kBinary ? "qc-binary" : "qc-text", bytes);
  }
  {
    transport::LocalGroup group(1);
    const std::unique_ptr<transport::Transport> t = group.transport(0);
    CommunicatorOptions options;
    options.algorithm = Algorithm::kAllgather;
    options.errorFeedback = true;
    auto comm = Communicator::create(*t, options).value();
    std::vector<float> v = values(20000);
    if (!comm->allreduceMean(v, "w").isOk()) return 1;
    std::ostringstream out;
    if (!comm->saveState(out).isOk()) return 1;
    std::vector<uint8_t> bytes = {2};
    const std::string s = out.str();
    bytes.insert(bytes.end(), s.begin(), s.end());
    put("persist", "state", bytes);
  }
  // npy: float32 and float64, several shapes.
  for (int k = 0; k < 3; ++k) {
    launcher::NpyArray a;
    a.dtype = k == 1 ? DType::kFloat64 : DType::kFloat32;
    a.shape = k == 2 ? std::vector<int64_t>{3, 4, 5} : std::vector<int64_t>{7};
    const size_t item = a.dtype == DType::kFloat32 ? 4 : 8;
    a.data.assign(a.count() * item, 0x3F);
    put("npy", std::to_string(k), launcher::formatNpy(a));
  }
  // roundtrip: selector bytes, then floats (specials included).
  const float specials[] = {0.0f, -0.0f, 1.0f, -2.5f, std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), 1e-30f, 3.0f, -7.0f};
  for (int k = 0; k < 8; ++k) {
    std::vector<uint8_t> bytes = {static_cast<uint8_t>(k), static_cast<uint8_t>(k * 37),
                                  static_cast<uint8_t>(k * 11), 0, 0, 0,
                                  static_cast<uint8_t>(k * 5), static_cast<uint8_t>(k * 3)};
    for (int j = 0; j < 12; ++j) bytes.push_back(static_cast<uint8_t>(j * k));
    const std::vector<float> v = values(64);
    for (float x : v) {
      const auto* p = reinterpret_cast<const uint8_t*>(&x);
      bytes.insert(bytes.end(), p, p + 4);
    }
    if (k >= 4) {
      for (float x : specials) {
        const auto* p = reinterpret_cast<const uint8_t*>(&x);
        bytes.insert(bytes.end(), p, p + 4);
      }
    }
    put("roundtrip", std::to_string(k), bytes);
  }
  std::printf("corpus written to %s\n", root.c_str());
  return 0;
}
