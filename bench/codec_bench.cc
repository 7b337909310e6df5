// QSGD encode/decode throughput on the CPU, in GB/s of float32 input, beside a memcpy of the same
// bytes timed after every codec call (counters memcpy_GBps and x_memcpy, the median of memcpy time
// / codec time over the iterations; see timeLoop).
//
//   build/bench/qcomm_codec_bench --benchmark_filter='Encode/seed/4/512/'
//
// Arguments: layout (0 seed, 1 compact), bits, bucket (0: whole tensor), log2(values), threads
// (0: QCOMM_NUM_THREADS or all cores), norm (0 L2, 1 max), random bits per value (32 or 16).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "qcomm/codec.h"
#include "qcomm/quantizers.h"
#include "qcomm/wire.h"

namespace qcomm {
namespace {

// n fresh Gaussian values: every block different, as gradients are. (Up to a868e78 a block of
// 65536 values was repeated, scaled by 0.999 each time: the branch predictor learned its pattern
// every 16 blocks of 4096, which flattered data-dependent branches; docs/performance.md,
// "Percentile: thresholds carried from block to block".) The largest set is drawn once per
// process (64M values take ~2 s) and the first n of it handed out.
std::vector<float> gaussian(int64_t n) {
  static std::vector<float> drawn;
  if (static_cast<int64_t>(drawn.size()) < n) {
    drawn.resize(n);
    std::mt19937 rng(12345);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (float& x : drawn) x = dist(rng);
  }
  return std::vector<float>(drawn.begin(), drawn.begin() + n);
}

struct Setup {
  QsgdOptions options;
  int64_t n;
  std::unique_ptr<Executor> executor;  // null: single thread on the caller
  std::vector<float> x;
};

// threads: 0 for QCOMM_NUM_THREADS (or all cores), 1 for the caller alone (null), else a pool.
std::unique_ptr<Executor> executorFor(int64_t threads) {
  if (threads == 0) {
    Result<std::unique_ptr<Executor>> executor = Executor::fromEnvironment();
    return executor.isOk() ? std::move(*executor) : nullptr;
  }
  return threads > 1 ? std::make_unique<Executor>(static_cast<int>(threads)) : nullptr;
}

Setup makeSetup(const benchmark::State& state) {
  Setup s;
  s.options.layout = state.range(0) == 0 ? Layout::kSeed : Layout::kCompact;
  s.options.bits = static_cast<int>(state.range(1));
  s.options.bucketSize = state.range(2);
  s.options.norm = state.range(5) == 0 ? NormKind::kL2 : NormKind::kMax;
  s.options.randomBits = static_cast<int>(state.range(6));
  s.n = int64_t{1} << state.range(3);
  s.executor = executorFor(state.range(4));
  s.x = gaussian(s.n);
  return s;
}

using Clock = std::chrono::steady_clock;

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const size_t m = x.size() / 2;
  return x.size() % 2 == 1 ? x[m] : 0.5 * (x[m - 1] + x[m]);
}

// The codec's times and the memcpy's, one of each per iteration, and what is reported from them:
// GB/s from each one's median time, and x_memcpy, the median over iterations of memcpy time /
// codec time. Each iteration's memcpy runs right after its codec call, so that both see the same
// phase of this shared machine (a memcpy rate taken once before the loop moved the ratio by
// +-30% whenever a slow phase met only one of them).
void report(benchmark::State& state, const Setup& s, const std::vector<double>& codecSeconds,
            const std::vector<double>& memcpySeconds) {
  if (codecSeconds.empty()) return;
  const double bytes = 4.0 * double(s.n);
  state.SetBytesProcessed(static_cast<int64_t>(bytes * double(state.iterations())));
  std::vector<double> ratios(codecSeconds.size());
  for (size_t i = 0; i < ratios.size(); ++i) ratios[i] = memcpySeconds[i] / codecSeconds[i];
  state.counters["codec_GBps"] = bytes / median(codecSeconds) * 1e-9;
  state.counters["memcpy_GBps"] = bytes / median(memcpySeconds) * 1e-9;
  state.counters["x_memcpy"] = median(ratios);
  state.counters["threads"] = s.executor ? s.executor->numThreads() : 1;
}

// Times `once` (returns a Status) over the benchmark's iterations, each followed by a memcpy of
// the values into a buffer of its own outside the benchmark's timer (not into the codec's
// output: a memcpy into it slowed the next decode by 20-80% here), and reports; `sink` is what
// the compiler must not optimize away.
template <typename Once>
void timeLoop(benchmark::State& state, const Setup& s, Once once, const void* sink) {
  std::vector<float> copy(s.x.size());
  std::memcpy(copy.data(), s.x.data(), 4 * s.x.size());  // its pages touched before the loop
  std::vector<double> codecSeconds, memcpySeconds;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const Status status = once();
    benchmark::DoNotOptimize(sink);
    benchmark::ClobberMemory();
    const auto t1 = Clock::now();
    if (!status.isOk()) {
      state.SkipWithError(status.message().c_str());
      return;
    }
    state.PauseTiming();
    const auto t2 = Clock::now();
    std::memcpy(copy.data(), s.x.data(), 4 * s.x.size());
    benchmark::DoNotOptimize(copy.data());
    benchmark::ClobberMemory();
    const auto t3 = Clock::now();
    codecSeconds.push_back(std::chrono::duration<double>(t1 - t0).count());
    memcpySeconds.push_back(std::chrono::duration<double>(t3 - t2).count());
    state.ResumeTiming();
  }
  report(state, s, codecSeconds, memcpySeconds);
}

void BM_Encode(benchmark::State& state) {
  Setup s = makeSetup(state);
  uint64_t step = 0;
  EncodedTensor e;  // reused, as a training loop would
  (void)qsgdEncodeInto(std::span<const float>(s.x), s.options, {7, 0, 0, 0}, nullptr, &e);
  const auto once = [&] {
    return qsgdEncodeInto(std::span<const float>(s.x), s.options, {7, 0, 0, step++},
                          s.executor.get(), &e);
  };
  timeLoop(state, s, once, e.words.data());
}

void BM_Decode(benchmark::State& state) {
  Setup s = makeSetup(state);
  const EncodedTensor e = *qsgdEncode(std::span<const float>(s.x), s.options, {7, 0, 0, 0});
  std::vector<float> out(s.n);
  const auto once = [&] { return qsgdDecode(e, std::span<float>(out), s.executor.get()); };
  timeLoop(state, s, once, out.data());
}

// Decode-and-mean of P codes (the allreduce's inner loop). GB/s counts the float32 output written
// once; memcpy copies that many bytes.
void BM_DecodeMean(benchmark::State& state) {
  Setup s = makeSetup(state);
  const int p = static_cast<int>(state.range(7));
  std::vector<EncodedTensor> codes;
  std::vector<const EncodedTensor*> views;
  for (int r = 0; r < p; ++r) {
    codes.push_back(*qsgdEncode(std::span<const float>(s.x), s.options, {7, uint32_t(r), 0, 0}));
  }
  for (const EncodedTensor& e : codes) views.push_back(&e);
  std::vector<float> out(s.n);
  // One untimed pass: the codes' pages are touched once, as the allreduce's receive buffers are.
  (void)qsgdDecodeMean(views, std::span<float>(out), s.executor.get());
  const auto once = [&] { return qsgdDecodeMean(views, std::span<float>(out), s.executor.get()); };
  timeLoop(state, s, once, out.data());
}

// One pass of BM_DecodeMeanMemoryFloor over `groups` buckets of 512 values: the words of every
// code read in the decoder's order (16 of each code in turn, in 64-byte loads as the decoder's:
// narrower loads keep fewer lines in flight, and a test program took 42.7 ms for q = 8's 621 MB
// at P = 8 in 16-byte loads against 31.4 ms in 64-byte ones, back to back on this VM), a value
// per bucket streamed out past the cache (as the decoder streams from 2^21 values on). Built for
// AVX-512 and for any x86-64, chosen where it runs.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "default")))
#endif
void memoryFloorPass(const uint64_t* const* base, int p, int64_t words, int64_t groups,
                     float* out) {
  using Line = uint64_t __attribute__((vector_size(64)));
  constexpr int64_t kGroup = 512;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t w0 = g * words / groups, w1 = (g + 1) * words / groups;
    Line lanes[2] = {};  // independent sums: the loads, not an add chain, set the pace
    int64_t t = w0;
    for (; t + 16 <= w1; t += 16) {
      for (int c = 0; c < p; ++c) {
        Line a, b;
        std::memcpy(&a, base[c] + t, sizeof a);
        std::memcpy(&b, base[c] + t + 8, sizeof b);
        lanes[0] += a;
        lanes[1] += b;
      }
    }
    uint64_t sum = 0;
    for (int c = 0; c < p; ++c) {
      for (int64_t i = t; i < w1; ++i) sum += base[c][i];
    }
    for (int j = 0; j < 8; ++j) sum += lanes[0][j] + lanes[1][j];
    const float value = static_cast<float>(sum & 0xFFFF);
    float* o = out + g * kGroup;
#if defined(__SSE2__)
    // 16-byte aligned (std::vector's storage): four floats per non-temporal store.
    for (int64_t i = 0; i < kGroup; i += 4) _mm_stream_ps(o + i, _mm_set1_ps(value));
#else
    for (int64_t i = 0; i < kGroup; ++i) o[i] = value;
#endif
  }
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// A memory floor for BM_DecodeMean: the same bytes moved in the decoder's order with one add per
// word instead of decoding, single thread, no software prefetch (memoryFloorPass). What lies
// between its time and BM_DecodeMean's is the decoding and how well it overlaps the memory.
void BM_DecodeMeanMemoryFloor(benchmark::State& state) {
  Setup s = makeSetup(state);
  const int p = static_cast<int>(state.range(7));
  state.SetLabel("memory floor: words read, floats written (streamed), no decoding");
  std::vector<EncodedTensor> codes;
  for (int r = 0; r < p; ++r) {
    codes.push_back(*qsgdEncode(std::span<const float>(s.x), s.options, {7, uint32_t(r), 0, 0}));
  }
  std::vector<float> out(s.n);
  std::vector<const uint64_t*> base;
  for (const EncodedTensor& e : codes) base.push_back(e.words.data());
  const int64_t words = static_cast<int64_t>(codes[0].words.size()), groups = s.n / 512;
  const auto once = [&]() -> Status {
    memoryFloorPass(base.data(), p, words, groups, out.data());
    return Status::ok();
  };
  (void)once();
  timeLoop(state, s, once, out.data());
}

// ---- the engine's two per-step savings (issue 13, item 4), each beside what it replaced --------

// Encode with error feedback's residual. Argument ef: 0 encodes, decodes the code just made and
// subtracts (what sra did before), 1 asks the encoder for the residual (qsgdEncodeWithResidual).
void BM_EncodeResidual(benchmark::State& state) {
  Setup s = makeSetup(state);
  const bool fused = state.range(7) == 1;
  state.SetLabel(fused ? "residual from the encoder" : "encode, then decode own code");
  std::vector<float> residual(s.n), decoded(fused ? 0 : s.n);
  EncodedTensor e;
  uint64_t step = 0;
  const auto once = [&]() -> Status {
    const RandomKey key{7, 0, 0, step++};
    if (fused) {
      return qsgdEncodeWithResidual(s.x, s.options, key, s.executor.get(), &e, residual);
    }
    QCOMM_RETURN_IF_ERROR(qsgdEncodeInto(std::span<const float>(s.x), s.options, key,
                                         s.executor.get(), &e));
    QCOMM_RETURN_IF_ERROR(qsgdDecode(e, std::span<float>(decoded), s.executor.get()));
    for (int64_t i = 0; i < s.n; ++i) residual[i] = s.x[i] - decoded[i];
    return Status::ok();
  };
  (void)once();  // buffers sized and touched, as in a training loop's later steps
  timeLoop(state, s, once, residual.data());
}

// Decode-and-mean of P received wire messages (as the allreduce gets them). Argument view: 0
// parses each into an EncodedTensor (fromWireInto copies the words, what the schedules did
// before), 1 reads them in place (viewWire). GB/s counts the float32 output, as BM_DecodeMean.
void BM_DecodeMeanWire(benchmark::State& state) {
  Setup s = makeSetup(state);
  const int p = static_cast<int>(state.range(7));
  const bool inPlace = state.range(8) == 1;
  state.SetLabel(inPlace ? "read in place" : "copied out (fromWireInto)");
  std::vector<std::vector<uint8_t>> messages;
  for (int r = 0; r < p; ++r) {
    const EncodedTensor e =
        *qsgdEncode(std::span<const float>(s.x), s.options, {7, uint32_t(r), 0, 0});
    messages.push_back(*toWire(e, *WireOptions::fromEnvironment()));  // the engine's CRC setting
  }
  std::vector<float> out(s.n);
  std::vector<EncodedTensor> copies(p);
  std::vector<const EncodedTensor*> pointers(p);
  std::vector<EncodedView> views(p);
  const auto once = [&]() -> Status {
    for (int r = 0; r < p; ++r) {
      if (inPlace) {
        QCOMM_ASSIGN_OR_RETURN(views[r], viewWire(messages[r]));
      } else {
        QCOMM_RETURN_IF_ERROR(fromWireInto(messages[r], &copies[r]));
        pointers[r] = &copies[r];
      }
    }
    return inPlace ? qsgdDecodeMean(std::span<const EncodedView>(views), std::span<float>(out),
                                    s.executor.get())
                   : qsgdDecodeMean(std::span<const EncodedTensor* const>(pointers),
                                    std::span<float>(out), s.executor.get());
  };
  (void)once();
  timeLoop(state, s, once, out.data());
}

BENCHMARK(BM_EncodeResidual)->Apply([](benchmark::internal::Benchmark* b) {
  b->ArgNames({"layout", "bits", "bucket", "log2n", "threads", "norm", "rbits", "ef"});
  for (int bits : {2, 4, 8}) {
    for (int ef : {0, 1}) b->Args({1, bits, 512, 22, 1, 1, 16, ef});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.3);
});
BENCHMARK(BM_DecodeMeanWire)->Apply([](benchmark::internal::Benchmark* b) {
  b->ArgNames({"layout", "bits", "bucket", "log2n", "threads", "norm", "rbits", "P", "view"});
  for (int bits : {2, 4}) {
    for (int p : {2, 4}) {
      for (int view : {0, 1}) b->Args({1, bits, 512, 22, 1, 1, 16, p, view});
    }
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.3);
});

// ---- the block quantizers (issue 12, item 3): arguments spec (index into kQuantSpecs), log2n,
// threads; GB/s counts the float32 values once, as for QSGD.
// Indices 0-7 draw 32 random bits per value (the default before 2026-12-04: the same rows as in
// the older tables), 10-17 16 bits, now the default.
const char* const kQuantSpecs[] = {
    "linear:bits=8,mode=sym,block=4096,random_bits=32",
    "linear:bits=4,mode=asym,block=512,random_bits=32",
    "linear:bits=3,mode=asym,random_bits=32",
    "percentile:bits=8,mode=sym,p=99.9,block=4096,random_bits=32",
    "percentile:bits=4,mode=asym,p=99,block=4096,random_bits=32",
    "dynamic:block=4096,random_bits=32",
    "rowwise:bits=8,block=1024,random_bits=32",
    "rowwise:bits=4,block=4096,random_bits=32",
    "fp16",
    "bf16",
    // 16 random bits per value (QuantOptions::randomBits): half the Philox work.
    "linear:bits=8,mode=sym,block=4096,random_bits=16",
    "linear:bits=4,mode=asym,block=512,random_bits=16",
    "linear:bits=3,mode=asym,random_bits=16",
    "percentile:bits=8,mode=sym,p=99.9,block=4096,random_bits=16",
    "percentile:bits=4,mode=asym,p=99,block=4096,random_bits=16",
    "dynamic:block=4096,random_bits=16",
    "rowwise:bits=8,block=1024,random_bits=16",
    "rowwise:bits=4,block=4096,random_bits=16",
};

Setup makeQuantSetup(benchmark::State& state, QuantOptions* options) {
  const char* text = kQuantSpecs[state.range(0)];
  state.SetLabel(text);
  *options = *parseQuantSpec(text);
  Setup s;
  s.n = int64_t{1} << state.range(1);
  s.executor = executorFor(state.range(2));
  s.x = gaussian(s.n);
  return s;
}

void BM_Quantize(benchmark::State& state) {
  QuantOptions options;
  Setup s = makeQuantSetup(state, &options);
  uint64_t step = 0;
  QuantizedTensor q;  // reused, as a training loop would
  (void)quantizeInto(s.x, options, {7, 0, 0, 0}, {}, nullptr, &q);
  const auto once = [&] {
    return quantizeInto(s.x, options, {7, 0, 0, step++}, {}, s.executor.get(), &q);
  };
  timeLoop(state, s, once, q.words.data());
}

void BM_Dequantize(benchmark::State& state) {
  QuantOptions options;
  Setup s = makeQuantSetup(state, &options);
  const QuantizedTensor q = *quantize(s.x, options, {7, 0, 0, 0});
  std::vector<float> out(s.n);
  // One untimed pass: on these VMs the first touch of fresh pages costs ~1 us a page at the
  // hypervisor (no guest page fault), a one-off a training loop's reused buffers never pay again.
  (void)dequantize(q, std::span<float>(out), s.executor.get());
  const auto once = [&] { return dequantize(q, std::span<float>(out), s.executor.get()); };
  timeLoop(state, s, once, out.data());
}

void quantArguments(benchmark::internal::Benchmark* b) {
  b->ArgNames({"spec", "log2n", "threads"});
  for (int spec = 0; spec < static_cast<int>(std::size(kQuantSpecs)); ++spec) {
    for (int log2n : {20, 26}) {
      for (int threads : {1, 0}) b->Args({spec, log2n, threads});
    }
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.3);
}

BENCHMARK(BM_Quantize)->Apply(quantArguments);
BENCHMARK(BM_Dequantize)->Apply(quantArguments);

// Encode also runs with 16 random bits per value (QsgdOptions::randomBits) at buckets of 512;
// decoding does not depend on it.
void arguments(benchmark::internal::Benchmark* b, bool withRandomBits) {
  b->ArgNames({"layout", "bits", "bucket", "log2n", "threads", "norm", "rbits"});
  for (int layout : {0, 1}) {
    for (int bits : {2, 4, 8}) {
      for (int bucket : {512, 0}) {
        for (int log2n : {20, 22, 24, 26}) {
          for (int threads : {1, 0}) {
            for (int norm : {0, 1}) {
              b->Args({layout, bits, bucket, log2n, threads, norm, 32});
              if (withRandomBits && bucket == 512) {
                b->Args({layout, bits, bucket, log2n, threads, norm, 16});
              }
            }
          }
        }
      }
    }
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.3);
}

BENCHMARK(BM_Encode)->Apply([](benchmark::internal::Benchmark* b) { arguments(b, true); });
BENCHMARK(BM_Decode)->Apply([](benchmark::internal::Benchmark* b) { arguments(b, false); });
BENCHMARK(BM_DecodeMeanMemoryFloor)->Apply([](benchmark::internal::Benchmark* b) {
  b->ArgNames({"layout", "bits", "bucket", "log2n", "threads", "norm", "rbits", "P"});
  for (int bits : {2, 4, 8}) {
    for (int p : {2, 4, 8}) b->Args({1, bits, 512, 26, 1, 1, 32, p});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.3);
});
BENCHMARK(BM_DecodeMean)->Apply([](benchmark::internal::Benchmark* b) {
  b->ArgNames({"layout", "bits", "bucket", "log2n", "threads", "norm", "rbits", "P"});
  for (int layout : {0, 1}) {
    for (int bits : {2, 4, 8}) {
      for (int log2n : {20, 26}) {
        for (int threads : {1, 0}) {
          for (int p : {2, 4, 8}) b->Args({layout, bits, 512, log2n, threads, 1, 32, p});
        }
      }
    }
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.3);
});

}  // namespace
}  // namespace qcomm

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
