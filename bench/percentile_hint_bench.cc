// Percentile encode where the previous block's thresholds always miss, blocks alternating in
// scale by 100x ("alternate"), against Gaussian blocks of one scale ("gaussian"), and on blocks
// of ties: one value in seven (at random) +-1 and the rest 0 ("sparse"), all zeros ("zeros"); a
// second argument names another codec spec. 2^24 fresh values (not the codec benchmark's
// repeated block), one thread: the median of 15 quantizeInto calls reusing one result against
// the median memcpy of the same bytes (docs/performance.md, "Percentile: thresholds carried from
// block to block"). Plain API only, so one program measures two trees:
//   build/bench/qcomm_percentile_hint_bench gaussian|alternate|sparse|zeros [SPEC]
//   g++ -O2 -std=c++20 -I OLD/lib/include bench/percentile_hint_bench.cc -L OLD/build/lib -lqcomm \
//       -Wl,-rpath,OLD/build/lib -o old_bench && ./old_bench MODE [SPEC]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "qcomm/quantizers.h"
using namespace qcomm;

int main(int argc, char** argv) {
  const int64_t n = int64_t{1} << 24, block = 4096;
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "gaussian" && mode != "alternate" && mode != "sparse" && mode != "zeros") {
    std::fprintf(stderr, "usage: %s gaussian|alternate|sparse|zeros [SPEC] (got '%s')\n", argv[0],
                 mode.c_str());
    return 2;
  }
  const bool alternate = mode == "alternate";
  std::vector<float> v(n);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  const bool sparse = mode == "sparse", zeros = mode == "zeros";
  for (int64_t i = 0; i < n; ++i) {
    if (sparse) {
      const uint32_t r = gen();
      v[i] = r % 7 != 0 ? 0.0f : ((r >> 16) % 2 == 0 ? 1.0f : -1.0f);
    } else {
      v[i] = zeros ? 0.0f : normal(gen) * ((alternate && (i / block) % 2 == 1) ? 100.0f : 1.0f);
    }
  }
  const char* spec =
      argc > 2 ? argv[2] : "percentile:bits=4,mode=asym,p=99,block=4096,random_bits=16";
  const Result<QuantOptions> parsed = parseQuantSpec(spec);
  if (!parsed.isOk()) {
    std::fprintf(stderr, "%s\n", parsed.status().message().c_str());
    return 1;
  }
  const QuantOptions o = parsed.value();
  QuantizedTensor q;
  std::vector<double> ms;
  for (int r = 0; r < 16; ++r) {  // the first call (fresh result pages) is not counted
    const auto t0 = std::chrono::steady_clock::now();
    const Status status = quantizeInto(v, o, {7, 0, 0, static_cast<uint64_t>(r)}, {}, nullptr, &q);
    if (!status.isOk()) {
      std::fprintf(stderr, "quantizeInto: %s\n", status.message().c_str());
      return 1;
    }
    const auto t1 = std::chrono::steady_clock::now();
    if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::vector<float> copy(n);
  std::vector<double> copyMs;
  for (int r = 0; r < 16; ++r) {  // memcpy of the same bytes, the first (fresh pages) not counted
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(copy.data(), v.data(), static_cast<size_t>(n) * 4);
    const auto t1 = std::chrono::steady_clock::now();
    if (r > 0) copyMs.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  std::sort(copyMs.begin(), copyMs.end());
  const double codec = ms[ms.size() / 2], memcpy = copyMs[copyMs.size() / 2];
  std::printf("%s, %s blocks: median %.2f ms per 2^24 values, memcpy %.2f ms, %.2fx memcpy\n", spec,
              mode.c_str(), codec, memcpy, memcpy / codec);
}
