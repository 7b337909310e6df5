#include "demo_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cluster.h"
#include "qcomm/codec.h"
#include "qcomm/wire.h"
#include "run_command.h"

namespace qcomm::launcher {
namespace {

struct DemoArgs {
  int64_t size = int64_t{1} << 21;
  bool codecOnly = false;
  bool noCluster = false;
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

Status runCodecTable(const DemoArgs& a) {
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

// The mpirun command for `program` with `ranks` ranks (here, or on `cluster` when given).
Result<Argv> underMpi(int ranks, const std::string& cluster, const Argv& program) {
  RunRequest request;
  request.ranks = ranks;
  request.cluster = cluster;
  request.program = program;
  QCOMM_ASSIGN_OR_RETURN(const RunContext context, currentRunContext(request));
  return mpirunArgv(request, context);
}

Status runUnderMpi(int ranks, const std::string& cluster, const Argv& program) {
  QCOMM_ASSIGN_OR_RETURN(const Argv argv, underMpi(ranks, cluster, program));
  std::fflush(stdout);
  return runCommand(argv);
}

// The speedup of sra over MPI_Allreduce at the largest size of a benchmark JSON file.
std::string speedupLine(const std::string& jsonPath) {
  std::ifstream in(jsonPath);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.contains("rows")) return "";
  double mpi = 0, sra = 0;
  int64_t size = 0;
  for (const auto& row : j["rows"]) {
    const int64_t s = row["size"];
    if (s < size) continue;
    if (s > size) mpi = sra = 0, size = s;
    if (row["algorithm"] == "mpi") mpi = row["time_us"];
    if (row["algorithm"] == "sra") sra = row["time_us"];
  }
  if (mpi <= 0 || sra <= 0) return "";
  char line[256];
  std::snprintf(line, sizeof(line),
                "at %lld MB per rank: MPI_Allreduce %.1f ms, qcomm sra %.1f ms -> %.2fx faster",
                static_cast<long long>(size >> 20), mpi / 1e3, sra / 1e3, mpi / sra);
  return line;
}

// Tears the demo's cluster down however the demo ends.
struct ClusterGuard {
  std::string prefix;
  ~ClusterGuard() {
    if (!prefix.empty()) (void)clusterDown(prefix);
  }
};

Status runDemo(const DemoArgs& a) {
  std::printf("== 1. QSGD codec\n");
  QCOMM_RETURN_IF_ERROR(runCodecTable(a));
  if (a.codecOnly) return Status::ok();
  std::error_code ec;
  const std::filesystem::path bin =
      std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  const std::string bench = (bin / "qcomm_allreduce_bench").string();
  const std::string example = (bin / "qcomm_digits_example").string();
  const std::string digits = (bin.parent_path() / "examples" / "digits.bin").string();
  if (!std::filesystem::exists(bench)) {
    std::printf("\n(qcomm was built without MPI: no allreduce demo)\n");
    return Status::ok();
  }
  std::printf("\n== 2. Allreduce on this machine: 4 ranks over shared memory\n");
  QCOMM_RETURN_IF_ERROR(
      runUnderMpi(4, "", {bench, "-b", "1M", "-e", "16M", "-f", "4", "-n", "3", "-w", "1"}));
  std::printf(
      "(one machine: shared memory moves bytes about as fast as the codec makes them, so the\n"
      " rows are close and their order changes from run to run; on slow links, section 4, it\n"
      " does not; the `auto` algorithm times the candidates and keeps the fastest)\n");
  if (std::filesystem::exists(example) && std::filesystem::exists(digits)) {
    std::printf("\n== 3. Data-parallel training, 4 ranks (examples/digits_train.cc)\n");
    QCOMM_ASSIGN_OR_RETURN(const Argv argv, underMpi(4, "", {example, "--data", digits}));
    QCOMM_ASSIGN_OR_RETURN(const std::string output, captureCommand(argv));
    std::istringstream in(output);  // the per-epoch lines are long; show the summaries
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("   ", 0) == 0 || line.rfind("summary", 0) == 0)
        std::printf("%s\n", line.c_str());
    }
  }
  if (a.noCluster) return Status::ok();
  if (!runningAsRoot()) {
    std::printf(
        "\n(run as root to see the same benchmark on an emulated cluster with slow links)\n");
    return Status::ok();
  }
  std::printf("\n== 4. The same on an emulated cluster: 4 hosts, 1 Gbit/s links\n");
  ClusterSpec spec;
  spec.prefix = "qcdemo";
  spec.hosts = 4;
  spec.link = "1gbit";
  spec.subnet = "10.231.79";
  (void)clusterDown(spec.prefix);  // leftovers of an interrupted demo
  ClusterGuard guard{spec.prefix};
  QCOMM_RETURN_IF_ERROR(clusterUp(spec));
  const std::string json = "/tmp/qcomm-demo-cluster-" + std::to_string(getpid()) + ".json";
  QCOMM_RETURN_IF_ERROR(runUnderMpi(
      4, spec.prefix,
      {bench, "-b", "1M", "-e", "64M", "-f", "8", "-n", "3", "-w", "1", "--json", json}));
  const std::string speedup = speedupLine(json);
  std::filesystem::remove(json, ec);
  if (!speedup.empty()) std::printf("\n%s\n", speedup.c_str());
  std::printf("(the cluster is removed again; build your own with qcomm cluster up)\n");
  return Status::ok();
}

}  // namespace

void addDemoCommand(CLI::App& app, int& exitCode) {
  auto args = std::make_shared<DemoArgs>();
  CLI::App* demo = app.add_subcommand(
      "demo",
      "the codec table, allreduce on this machine, training, and (as root) allreduce on "
      "an emulated 4-host 1 Gbit/s cluster");
  demo->add_flag("--codec-only", args->codecOnly, "only the codec table");
  demo->add_flag("--no-cluster", args->noCluster, "skip the emulated cluster");
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
