// The block quantizers through the plain quantize()/dequantize() API that every version of qcomm
// has, so one program measures before and after a change: build it against each tree and run
// both. 64M float32 values, single thread (no executor), stochastic rounding where the codec has
// it; malloc kept off mmap so that freed results are reused and fresh pages are not what is timed;
// min of 5 after one warm-up, memcpy of the same bytes beside each row. Prints a markdown table:
//   | spec | encode GB/s | x memcpy | decode GB/s | x memcpy | memcpy GB/s |
//
//   build/bench/qcomm_quantizer_api_bench
//   g++ -O2 -std=c++20 -I OLD/lib/include bench/quantizer_api_bench.cc -L OLD/build/lib -lqcomm \
//       -Wl,-rpath,OLD/build/lib -o old_bench && ./old_bench
#include <malloc.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
#include "qcomm/quantizers.h"
using namespace qcomm;
using Clock = std::chrono::steady_clock;
template <typename F> double best(F f) {
  f(); double b = 1e9;
  for (int r = 0; r < 5; ++r) { auto t0 = Clock::now(); f(); b = std::min(b, std::chrono::duration<double>(Clock::now() - t0).count()); }
  return b;
}
int main() {
  mallopt(M_MMAP_MAX, 0); mallopt(M_TRIM_THRESHOLD, 1 << 30);
  const int64_t n = int64_t{1} << 26;
  std::vector<float> x(n), out(n);
  std::mt19937 g(12345); std::normal_distribution<float> d;
  for (int64_t i = 0; i < 65536; ++i) x[i] = d(g);
  for (int64_t i = 65536; i < n; ++i) x[i] = x[i - 65536] * 0.999f;
  const char* specs[] = {"linear:bits=8,mode=sym,block=4096", "linear:bits=4,mode=asym,block=512",
      "linear:bits=3,mode=asym", "percentile:bits=8,mode=sym,p=99.9,block=4096",
      "percentile:bits=4,mode=asym,p=99,block=4096", "dynamic:block=4096", "rowwise:bits=8,block=1024",
      "rowwise:bits=4,block=4096", "fp16", "bf16",
      // 16 random bits per value (2026-12-02); a tree without the option prints "n/a".
      "linear:bits=8,mode=sym,block=4096,random_bits=16", "linear:bits=4,mode=asym,block=512,random_bits=16",
      "linear:bits=3,mode=asym,random_bits=16", "percentile:bits=8,mode=sym,p=99.9,block=4096,random_bits=16",
      "percentile:bits=4,mode=asym,p=99,block=4096,random_bits=16", "dynamic:block=4096,random_bits=16",
      "rowwise:bits=8,block=1024,random_bits=16", "rowwise:bits=4,block=4096,random_bits=16"};
  for (const char* s : specs) {
    const Result<QuantOptions> parsed = parseQuantSpec(s);
    if (!parsed.isOk()) {
      std::printf("| `%s` | n/a | | | | |\n", s);
      continue;
    }
    QuantOptions o = *parsed;
    if (o.kind != QuantKind::kFp16 && o.kind != QuantKind::kBf16) o.rounding = Rounding::kStochastic;
    const double mc = best([&] { std::memcpy(out.data(), x.data(), 4 * n); });
    uint64_t step = 0;
    const double enc = best([&] { auto q = quantize(x, o, {7, 0, 0, step++}); if (!q.isOk()) std::abort(); });
    QuantizedTensor q = *quantize(x, o, {7, 0, 0, 0});
    const double dec = best([&] { if (!dequantize(q, std::span<float>(out)).isOk()) std::abort(); });
    std::printf("| `%s` | %.2f | %.2f | %.2f | %.2f | %.2f |\n", s, 4.0 * n / enc / 1e9, mc / enc,
                4.0 * n / dec / 1e9, mc / dec, 4.0 * n / mc / 1e9);
  }
}
