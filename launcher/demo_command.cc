#include "demo_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "qcomm/codec.h"
#include "qcomm/wire.h"

namespace qcomm::launcher {
namespace {

struct DemoArgs {
  int64_t size = int64_t{1} << 22;
  int64_t bucket = 512;
  std::string norm = "max";
  uint64_t seed = 0;
  int repeats = 5;
};

// Median seconds of `repeats` runs of fn.
template <typename Fn>
double medianSeconds(int repeats, Fn&& fn) {
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

Status runDemo(const DemoArgs& a) {
  if (a.size < 1) return invalidArgument("--size must be >= 1, got ", a.size);
  if (a.repeats < 1) return invalidArgument("--repeats must be >= 1, got ", a.repeats);
  QCOMM_ASSIGN_OR_RETURN(const NormKind norm, parseNormKind(a.norm));
  QCOMM_ASSIGN_OR_RETURN(std::unique_ptr<Executor> executor, Executor::fromEnvironment());

  std::mt19937_64 rng(a.seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(a.size);
  for (float& v : x) v = dist(rng);
  double norm2 = 0.0;
  for (float v : x) norm2 += double(v) * v;
  const double bytes = 4.0 * double(a.size);

  std::vector<float> copy(a.size);
  const double memcpySeconds =
      medianSeconds(a.repeats, [&] { std::memcpy(copy.data(), x.data(), x.size() * 4); });

  std::printf(
      "qcomm codec demo: %lld float32 values from N(0,1), buckets of %lld, %s norm, "
      "seed %llu, %d threads\n",
      static_cast<long long>(a.size), static_cast<long long>(a.bucket), a.norm.c_str(),
      static_cast<unsigned long long>(a.seed), executor->numThreads());
  std::printf("first values:  %+.4f %+.4f %+.4f %+.4f\n", x[0], x[1], x[2], x[3]);
  std::printf("memcpy of the same bytes (1 thread): %.2f GB/s\n\n", bytes / memcpySeconds / 1e9);
  std::printf("%2s %-8s %10s %7s %9s %10s %9s %9s   %s\n", "q", "layout", "bits/value", "ratio",
              "rel.err", "max err", "enc GB/s", "dec GB/s", "first decoded values");

  std::vector<float> out(a.size);
  for (int bits = 1; bits <= 9; ++bits) {
    for (Layout layout : {Layout::kSeed, Layout::kCompact}) {
      QsgdOptions o;
      o.bits = bits;
      o.bucketSize = a.bucket;
      o.norm = norm;
      o.layout = layout;
      const RandomKey key{a.seed, 0, 0, 0};
      Result<EncodedTensor> e = qsgdEncode(std::span<const float>(x), o, key, executor.get());
      QCOMM_RETURN_IF_ERROR(e.status());
      Status encoded;  // timed on a reused tensor, as a training loop encodes
      const double encodeSeconds = medianSeconds(a.repeats, [&] {
        encoded = qsgdEncodeInto(std::span<const float>(x), o, key, executor.get(), &*e);
      });
      QCOMM_RETURN_IF_ERROR(encoded);
      Status decoded;
      const double decodeSeconds = medianSeconds(
          a.repeats, [&] { decoded = qsgdDecode(*e, std::span<float>(out), executor.get()); });
      QCOMM_RETURN_IF_ERROR(decoded);
      QCOMM_ASSIGN_OR_RETURN(const size_t wire, wireSize(*e));
      // Error in units of one quantization step (scale / s): at most 1.
      double err2 = 0.0, maxSteps = 0.0;
      const double s = double((1u << bits) - 1u);
      for (int64_t i = 0; i < a.size; ++i) {
        const double d = double(out[i]) - x[i];
        err2 += d * d;
        const double step = e->scales[i / e->bucketSize] / s;
        if (step > 0) maxSteps = std::max(maxSteps, std::fabs(d) / step);
      }
      std::printf("%2d %-8s %10.3f %7.2f %9.4f %7.3f st %9.2f %9.2f   %+.4f %+.4f %+.4f %+.4f\n",
                  bits, std::string(layoutName(layout)).c_str(), 8.0 * wire / a.size, bytes / wire,
                  std::sqrt(err2 / norm2), maxSteps, bytes / encodeSeconds / 1e9,
                  bytes / decodeSeconds / 1e9, out[0], out[1], out[2], out[3]);
    }
  }
  std::printf(
      "\nbits/value and ratio count the whole wire message (header, scales, words); "
      "rel.err = ||Q(x)-x|| / ||x||;\nmax err is in quantization steps (scale/s), "
      "at most 1 st. Try --norm l2 for the paper's norm.\n");
  return Status::ok();
}

}  // namespace

void addDemoCommand(CLI::App& app, int& exitCode) {
  auto args = std::make_shared<DemoArgs>();
  CLI::App* demo = app.add_subcommand("demo", "the codec table: levels 1..9, error, size, speed");
  demo->add_option("--size", args->size, "values in the random tensor")->capture_default_str();
  demo->add_option("--bucket", args->bucket, "values per bucket (0: whole tensor)")
      ->capture_default_str();
  demo->add_option("--norm", args->norm, "l2 or max")->capture_default_str();
  demo->add_option("--seed", args->seed, "seed of the data and the rounding")
      ->capture_default_str();
  demo->add_option("--repeats", args->repeats, "timed runs per row (median)")
      ->capture_default_str();
  demo->callback([args, &exitCode] {
    const Status s = runDemo(*args);
    if (!s.isOk()) std::fprintf(stderr, "qcomm demo: %s\n", s.message().c_str());
    exitCode = s.isOk() ? 0 : 2;
  });
}

}  // namespace qcomm::launcher
