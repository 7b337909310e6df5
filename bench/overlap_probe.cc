// How much of a memory stream one core hides behind arithmetic, with decode-and-mean's traffic
// and none of its decoding (docs/performance.md, "What one core overlaps"). Per bucket of 512
// values it reads P streams of W words (compact q = 4 at P = 8 by default: 43 words each),
// streams 512 floats out, and does `rounds` x 12 vmulps per stream on registers that no load
// feeds (work about as long as the decoder's own with every input in cache: rounds = 2, about
// 20 ms per 2^26 values here). Four programs, each beside a memcpy of the output's bytes:
//   work   the arithmetic and the output alone (the words not read)
//   bytes  the words read and the output written, no arithmetic
//   both   the two together, the words asked for `ahead` buckets on (as the decoder does)
//   both0  the two together, nothing asked for
// If the core hid the memory behind the arithmetic, `both` would take about max(work, bytes).
//
//   taskset -c 0 build/bench/qcomm_overlap_probe [P [W [rounds [ahead]]]]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace {

constexpr int64_t kValues = int64_t{1} << 26;
constexpr int64_t kBucket = 512;

// 64-byte aligned (the streamed stores need it), freed with the probe.
struct Free {
  void operator()(void* p) const { std::free(p); }
};
template <typename T>
std::unique_ptr<T[], Free> aligned(int64_t n) {
  void* p = std::aligned_alloc(64, (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64);
  if (p == nullptr) {
    std::fprintf(stderr, "out of memory for %lld values\n", static_cast<long long>(n));
    std::exit(1);
  }
  return std::unique_ptr<T[], Free>(static_cast<T*>(p));
}

struct Buffers {
  std::vector<std::unique_ptr<uint64_t[], Free>> streams;
  std::unique_ptr<float[], Free> out, src, dst;
};

// One pass over every bucket; returns a value that depends on all work so none is dropped.
__attribute__((target("avx512f"))) float pass(const Buffers& b, int p, int w, int rounds,
                                              int ahead, bool read) {
  const int64_t buckets = kValues / kBucket;
  __m512 x[12];
  for (int i = 0; i < 12; ++i) x[i] = _mm512_set1_ps(1.0f + static_cast<float>(i) * 1e-7f);
  const __m512 f = _mm512_set1_ps(0.9999999f);
  for (int64_t k = 0; k < buckets; ++k) {
    __m512i sum = _mm512_setzero_si512();
    for (int c = 0; c < p; ++c) {
      const uint64_t* words = b.streams[c].get() + k * w;
      if (read && ahead > 0 && k + ahead < buckets) {
        for (int i = 0; i < w; i += 8) __builtin_prefetch(words + ahead * w + i);
      }
      if (read) {
        for (int i = 0; i < w; i += 8) {
          sum = _mm512_add_epi64(sum, _mm512_loadu_si512(words + i));
        }
      }
      for (int r = 0; r < rounds; ++r) {
        for (int i = 0; i < 12; ++i) x[i] = _mm512_mul_ps(x[i], f);
        // Keeps the multiplies in the loop (they would otherwise fold into one per round trip).
        __asm__ volatile("" : "+v"(x[0]), "+v"(x[1]), "+v"(x[2]), "+v"(x[3]), "+v"(x[4]),
                         "+v"(x[5]));
      }
    }
    const __m512 v = _mm512_add_ps(_mm512_castsi512_ps(sum), x[k % 12]);
    for (int64_t i = 0; i < kBucket; i += 16) _mm512_stream_ps(b.out.get() + k * kBucket + i, v);
  }
  _mm_sfence();
  return b.out[kValues / 2];
}

double millis(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int p = argc > 1 ? std::atoi(argv[1]) : 8;
  const int w = argc > 2 ? std::atoi(argv[2]) : 43;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 2;
  const int ahead = argc > 4 ? std::atoi(argv[4]) : 3;
  if (p < 1 || p > 64 || w < 1 || w > 4096 || rounds < 0 || ahead < 0) {
    std::fprintf(stderr, "usage: %s [P 1-64 [W 1-4096 [rounds >= 0 [ahead >= 0]]]]\n", argv[0]);
    return 2;
  }
  if (!__builtin_cpu_supports("avx512f")) {
    std::fprintf(stderr, "%s: this CPU has no AVX-512F; the probe needs it\n", argv[0]);
    return 2;
  }
  const int64_t words = kValues / kBucket * w;
  Buffers b;
  for (int c = 0; c < p; ++c) {
    b.streams.push_back(aligned<uint64_t>(words + static_cast<int64_t>(ahead + 1) * w + 8));
    std::memset(b.streams.back().get(), c + 1, 8 * words);
  }
  for (auto* buffer : {&b.out, &b.src, &b.dst}) {
    *buffer = aligned<float>(kValues);
    std::memset(buffer->get(), 1, 4 * kValues);
  }
  struct Program {
    const char* name;
    int rounds, ahead;
    bool read;
  };
  const Program programs[] = {{"work", rounds, 0, false},
                              {"bytes", 0, 0, true},
                              {"both", rounds, ahead, true},
                              {"both0", rounds, 0, true}};
  std::printf("P = %d streams of %d words per bucket of %lld values, %d rounds, 2^26 values\n", p,
              w, static_cast<long long>(kBucket), rounds);
  float sink = 0.0f;
  for (const Program& program : programs) {
    double best = 1e30, bestCopy = 1e30;
    for (int r = 0; r < 5; ++r) {  // the best of five, each beside a memcpy
      auto t0 = std::chrono::steady_clock::now();
      sink += pass(b, p, w, program.rounds, program.ahead, program.read);
      best = std::min(best, millis(t0));
      t0 = std::chrono::steady_clock::now();
      std::memcpy(b.dst.get(), b.src.get(), 4 * kValues);
      bestCopy = std::min(bestCopy, millis(t0));
    }
    std::printf("%-6s %7.2f ms   memcpy %6.2f ms   x memcpy %.2f\n", program.name, best, bestCopy,
                bestCopy / best);
  }
  return sink == 12345.0f ? 1 : 0;  // never: keeps the sums alive
}
