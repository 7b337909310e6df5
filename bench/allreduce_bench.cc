// Allreduce benchmark, nccl-tests style: plain MPI_Allreduce beside qcomm's allgather and sra in
// the same run. Start it with any mpirun (any hostfile, any launcher):
//
//   mpirun -np 4 build/bin/qcomm_allreduce_bench -b 1M -e 64M -f 4 --json out.json
//
// Columns: size count type redop root time(us) algbw busbw #wrong, then algorithm codec
// wire_bytes (bytes this rank received per call) ratio (2(P-1)/P * size / wire_bytes) err (max
// |result - exact mean| / max |exact mean|). algbw is uncompressed bytes / time; busbw =
// algbw * 2(P-1)/P. #wrong counts values outside the quantization bound of the algorithm that ran
// (qcomm::quantizationErrorBounds per code, so L2 and max norms, buckets and whole tensors alike;
// 0 for MPI_Allreduce means: within float rounding). Inputs come from (rank, index), so every rank
// checks locally. Like nccl-tests, the benchmark exits 1 when any #wrong is not 0.
// host_tx: bytes per call sent out of the busiest host's network interfaces (all but lo, read
// from /sys/class/net by one rank per host; shared memory inside a host does not count). auto
// rows name the algorithm auto chose ("auto:sra"; in --json: algorithm "auto", chosen "sra",
// auto_trials: how many of the row's calls, warm-up included, were auto's timed trials,
// auto_trials_timed: how many of those were timed calls; blocked rows need warm-up calls to time
// auto after its trials: up to 128 per size, AutoTrials::kRuns per algorithm; a stretch of
// AutoTrials::kRecheckEvery calls of a size, as --min-time gives small sizes, reaches a re-check).
// --order blocked (default, as before): each row's calls back to back, time(us) the slowest
// rank's mean call. --order interleaved --stat median: every row's communicator made at once,
// then rounds of one call per row (each round in a new order), warm-up rounds going on
// until every auto row has ended its trials; time(us) the median over calls of each call's
// slowest rank. On shared machines this compares rows of one size under the same conditions
// (two blocked rows of one algorithm differed by 10-60% on this project's 2-core machine);
// --min-time S adds timed rounds until they have taken S seconds per size (-n rounds of 1 MB
// last a few milliseconds: two interleaved rows of one algorithm still differed by up to 14%).
// --json has every statistic either way.
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string_view>
#include <fstream>
#include <numeric>
#include <random>
#include <nlohmann/json.hpp>

#include "qcomm/communicator.h"
#include "qcomm/mpi_transport.h"
#if defined(QCOMM_HAVE_CUDA)
#include "allreduce_bench_cuda.h"
#endif

namespace {

using qcomm::Algorithm;

// Value i of rank r: uniform in [-1, 1), from a counter hash (cheap, reproducible anywhere).
float inputValue(int rank, int64_t i) {
  uint64_t x = (uint64_t(rank) << 40) ^ uint64_t(i);
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return float(x >> 40) * 0x1p-23f - 1.0f;
}

int64_t parseSize(const std::string& text) {
  double value = std::stod(text);
  switch (text.empty() ? ' ' : text.back()) {
    case 'K':
    case 'k':
      value *= 1024;
      break;
    case 'M':
    case 'm':
      value *= 1024 * 1024;
      break;
    case 'G':
    case 'g':
      value *= 1024.0 * 1024 * 1024;
      break;
    default:
      break;
  }
  return static_cast<int64_t>(value);
}

// A row's timed calls, across ranks.
struct CallTimes {
  double meanOfRankMeans = 0.0;  // the slowest rank's mean (the blocked figures' statistic)
  double median = 0.0;           // the median over calls of each call's slowest rank
  double mean = 0.0;             // the mean of the same
  size_t calls = 0;
};

// Every rank passes its time of the same calls, in the same order (a collective).
CallTimes slowestRankTimes(std::vector<double> seconds) {
  CallTimes t;
  t.calls = seconds.size();
  if (seconds.empty()) return t;
  double rankMean = 0.0;
  for (double s : seconds) rankMean += s;
  rankMean /= double(seconds.size());
  MPI_Allreduce(&rankMean, &t.meanOfRankMeans, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, seconds.data(), int(seconds.size()), MPI_DOUBLE, MPI_MAX,
                MPI_COMM_WORLD);
  for (double s : seconds) t.mean += s;
  t.mean /= double(seconds.size());
  std::sort(seconds.begin(), seconds.end());
  const size_t n = seconds.size();
  t.median = n % 2 ? seconds[n / 2] : 0.5 * (seconds[n / 2 - 1] + seconds[n / 2]);
  return t;
}

// One row's contender at one size: its communicator (none for MPI_Allreduce), its own result
// buffer, and what its timed calls measured on this rank.
struct Contender {
  std::string name;
  std::unique_ptr<qcomm::Communicator> comm;
  std::vector<float> data;
  std::vector<double> seconds;  // this rank's time of each timed call
  double txBytes = 0.0;         // interface bytes sent per call (readers only)
  uint64_t timedTrials = 0;     // auto's trials among the timed calls
};

struct Row {
  int64_t bytes, count;
  std::string algorithm, codec;
  double seconds, algbw, busbw;
  int64_t wrong;
  double wireBytes, ratio, err, hostTx;
  std::string chosen;  // what the communicator ran (auto's choice)
  uint64_t trials;     // auto's timed trials, warm-up calls included
  uint64_t timedTrials;  // of which among the timed calls
  CallTimes times;
  qcomm::AlgorithmCosts estimates;  // auto's, after its trials (seconds)
};

// Bytes sent so far by this host's network interfaces, loopback excepted.
double interfaceTxBytes() {
  double total = 0.0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/class/net", ec)) {
    if (entry.path().filename() == "lo") continue;
    std::ifstream in(entry.path() / "statistics" / "tx_bytes");
    double bytes = 0.0;
    if (in >> bytes) total += bytes;
  }
  return total;
}

// The most each value of the result may differ from the exact mean when `algorithm` ran: one
// quantization of every rank's input (allgather), or of every host's sum (hierarchical), averaged;
// sra and hierarchical over more than two hosts add the owner's re-quantization of the mean. Plus
// float rounding: a few ulps of the codes' norms.
std::vector<double> resultBounds(const qcomm::CodecConfig& codec, std::string_view algorithm,
                                 int p, std::span<const int> hostOfRank,
                                 std::span<const float> exact) {
  const int64_t count = static_cast<int64_t>(exact.size());
  std::vector<double> bound(count, 0.0), magnitudes(count);
  auto addQuantized = [&](double weight) {
    const std::vector<double> e = qcomm::quantizationErrorBounds(codec, magnitudes);
    for (int64_t i = 0; i < count; ++i) bound[i] += weight * e[i];
  };
  // The owner's second quantization: of a mean whose values are at most |exact| + the first
  // stage's bound, rescaled by `factor` (hierarchical: the mean of host sums, times H/P).
  auto addRequantized = [&](double factor) {
    for (int64_t i = 0; i < count; ++i) magnitudes[i] = (std::fabs(exact[i]) + bound[i]) / factor;
    addQuantized(factor);
  };
  std::vector<int> hosts(hostOfRank.begin(), hostOfRank.end());
  std::sort(hosts.begin(), hosts.end());
  const int h = static_cast<int>(std::unique(hosts.begin(), hosts.end()) - hosts.begin());
  if (algorithm == "hierarchical" && h > 1 && h < p) {
    for (int host = 0; host < p; ++host) {  // host ids are rank-numbered: at most p of them
      if (std::find(hostOfRank.begin(), hostOfRank.end(), host) == hostOfRank.end()) continue;
      std::fill(magnitudes.begin(), magnitudes.end(), 0.0);
      for (int r = 0; r < p; ++r) {
        if (hostOfRank[r] != host) continue;
        for (int64_t i = 0; i < count; ++i) magnitudes[i] += inputValue(r, i);
      }
      for (double& m : magnitudes) m = std::fabs(m);
      addQuantized(1.0 / p);
    }
    if (h > 2) addRequantized(static_cast<double>(h) / p);
  } else if (algorithm == "allgather" || algorithm == "sra" || algorithm == "hierarchical") {
    if (algorithm == "hierarchical" && h == 1) return bound;  // uncompressed inside one host
    for (int r = 0; r < p; ++r) {
      for (int64_t i = 0; i < count; ++i) magnitudes[i] = std::fabs(inputValue(r, i));
      addQuantized(1.0 / p);
    }
    if (algorithm != "allgather") addRequantized(1.0);
  }
  const double levels = 1.0 / qcomm::codecStepBound(codec);
  for (double& b : bound) b += 1e-6 * levels * b;
  return bound;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, p = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &p);

  CLI::App app("qcomm allreduce benchmark (run under mpirun)");
  std::string minText = "1M", maxText = "64M", jsonPath,
              codec = "qsgd:bits=4,bucket=512,norm=max,layout=compact,random_bits=16";
  std::vector<std::string> algorithms = {"mpi", "allgather", "sra"};
  double factor = 4;
  int iters = 10, warmup = 3;
  int64_t chunk = int64_t{1} << 22;
  app.add_option("-b,--minbytes", minText, "smallest size (bytes of float32; K/M/G suffixes)")
      ->capture_default_str();
  app.add_option("-e,--maxbytes", maxText, "largest size")->capture_default_str();
  app.add_option("-f,--stepfactor", factor, "size multiplier between rows")->capture_default_str();
  app.add_option("-n,--iters", iters, "timed iterations")->capture_default_str();
  app.add_option("-w,--warmup", warmup, "untimed iterations")->capture_default_str();
  app.add_option("--codec", codec, "codec spec")->capture_default_str();
  app.add_option("--algorithms", algorithms,
                 "any of mpi, allgather, sra, hierarchical, uncompressed, auto")
      ->delimiter(',');
  int ranksPerHost = 0;
  app.add_option("--ranks-per-host", ranksPerHost,
                 "force ranks [0,K) onto host 0, ... for hierarchical and auto (0: MPI's "
                 "shared-memory domains)")
      ->capture_default_str();
  app.add_option("--chunk", chunk, "pipelining chunk (values)")->capture_default_str();
  double boundScale = 1.0;
  app.add_option("--bound-scale", boundScale,
                 "multiply the quantization bounds #wrong checks against (tests of the check: "
                 "0 makes nearly every quantized value wrong)")
      ->capture_default_str();
  std::string order = "blocked", stat = "mean";
  app.add_option("--order", order,
                 "blocked: each row's calls back to back; interleaved: after every row's warm-up "
                 "calls, rounds of one timed call per row (each round in a new order), so that "
                 "the machine's drift and bursts fall on every row alike (all of a size's "
                 "communicators live at once)")
      ->check(CLI::IsMember({"blocked", "interleaved"}))
      ->capture_default_str();
  app.add_option("--stat", stat,
                 "time(us): mean (the slowest rank's mean call) or median (of each call's "
                 "slowest rank); --json has both")
      ->check(CLI::IsMember({"mean", "median"}))
      ->capture_default_str();
  double minTime = 0.0;
  app.add_option("--min-time", minTime,
                 "with --order interleaved: timed rounds go on past -n until they have taken "
                 "this many seconds per size (rank 0's clock), so that every row's statistic "
                 "spans the machine's slower drift, not a few milliseconds of it")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  bool checks = false;
  app.add_flag("--checks", checks,
               "keep CommunicatorOptions::checkSizes on, as by default: the per-call size check "
               "and outcome agreement (two small allgathers) are timed too; off: the collective "
               "alone");
  app.add_option("--json", jsonPath, "write every row to this file (rank 0)");
  std::string device = "cpu", deviceTransport = "auto";
  app.add_option("--device", device, "cpu, or cuda: device buffers through the GPU pipeline")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--device-transport", deviceTransport,
                 "with --device cuda: auto (NCCL when every rank has its own GPU), nccl or mpi")
      ->check(CLI::IsMember({"auto", "nccl", "mpi"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = rank == 0 ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 2);
    MPI_Finalize();
    return code;
  }
  const int64_t minBytes = parseSize(minText), maxBytes = parseSize(maxText);
  auto fail = [&](const qcomm::Status& s) {
    std::fprintf(stderr, "rank %d: %s\n", rank, s.toString().c_str());
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  };
  if (minBytes < 4 || maxBytes < minBytes || factor <= 1.0 || iters < 1) {
    if (rank == 0)
      std::fprintf(stderr, "need 4 <= minbytes <= maxbytes, stepfactor > 1, iters >= 1\n");
    MPI_Finalize();
    return 2;
  }
  if (minTime > 0.0 && order != "interleaved") {
    if (rank == 0) std::fprintf(stderr, "--min-time needs --order interleaved\n");
    MPI_Finalize();
    return 2;
  }
  if (device == "cuda") {
#if defined(QCOMM_HAVE_CUDA)
    const int code = runDeviceAllreduceBench(minBytes, maxBytes, factor, iters, warmup, codec,
                                             chunk, deviceTransport);
#else
    if (rank == 0) std::fprintf(stderr, "--device cuda: qcomm was built without CUDA\n");
    const int code = 2;
#endif
    MPI_Finalize();
    return code;
  }
  auto transport = qcomm::transport::MpiTransport::create(MPI_COMM_WORLD);
  if (!transport.isOk()) return fail(transport.status());
  auto executor = qcomm::Executor::fromEnvironment();
  if (!executor.isOk()) return fail(executor.status());

  const double busFactor = p > 1 ? 2.0 * (p - 1) / p : 1.0;
  // One rank per host (the first) reads its interfaces.
  auto hostOfRanks = (*transport)->hostOfRanks();
  if (!hostOfRanks.isOk()) return fail(hostOfRanks.status());
  const bool readsInterfaces =
      std::find(hostOfRanks->begin(), hostOfRanks->end(), (*hostOfRanks)[rank]) -
          hostOfRanks->begin() == rank;
  if (rank == 0) {
    std::printf(
        "# qcomm allreduce benchmark: %d ranks, codec %s, %d iters after %d warm-up, %s, "
        "time: %s\n",
        p, codec.c_str(), iters, warmup, order.c_str(),
        stat == "median" ? "median of each call's slowest rank" : "slowest rank's mean");
    std::printf("%12s %12s %6s %6s %5s %11s %8s %8s %7s  %-17s %-44s %12s %7s %9s %12s\n",
                "size", "count", "type", "redop", "root", "time(us)", "algbw", "busbw", "#wrong",
                "algorithm", "codec", "wire_bytes", "ratio", "err", "host_tx");
  }
  std::vector<Row> rows;
  int64_t totalWrong = 0;
  for (double b = double(minBytes); b <= double(maxBytes) * 1.0001; b *= factor) {
    const int64_t count = static_cast<int64_t>(b) / 4;
    const int64_t bytes = count * 4;
    std::vector<float> input(count), exact(count, 0.0f);
    for (int64_t i = 0; i < count; ++i) input[i] = inputValue(rank, i);
    {
      std::vector<double> sum(count, 0.0);
      for (int r = 0; r < p; ++r) {
        for (int64_t i = 0; i < count; ++i) sum[i] += inputValue(r, i);
      }
      for (int64_t i = 0; i < count; ++i) exact[i] = float(sum[i] / p);
    }
    double maxExact = 0.0;
    for (float x : exact) maxExact = std::max(maxExact, double(std::fabs(x)));
    // Interleaved, every communicator of this size lives at once; blocked, one at a time (as
    // before: less memory, and each row's communicator is made just before its calls).
    std::vector<Contender> contenders;
    auto makeContender = [&](const std::string& name) -> qcomm::Result<Contender> {
      Contender c;
      c.name = name;
      c.data.resize(count);
      if (name == "mpi") return c;
      qcomm::CommunicatorOptions options;
      options.codec = codec;
      options.minCompressNumel = 0;
      options.chunkNumel = chunk;
      options.checkSizes = checks;  // off: time the collective alone
      options.ranksPerHost = ranksPerHost;
      auto algorithm = qcomm::parseAlgorithm(name);
      if (!algorithm.isOk()) return algorithm.status();
      options.algorithm = *algorithm;
      auto created = qcomm::Communicator::create(**transport, options, executor->get());
      if (!created.isOk()) return created.status();
      c.comm = std::move(*created);
      return c;
    };
    auto call = [&](Contender& c, bool timed) {
      std::copy(input.begin(), input.end(), c.data.begin());
      const uint64_t trialsBefore = c.comm ? c.comm->stats().autoTrials : 0;
      MPI_Barrier(MPI_COMM_WORLD);
      const auto t0 = std::chrono::steady_clock::now();
      if (c.comm) {
        const qcomm::Status s = c.comm->allreduceMean(c.data, "bench");
        if (!s.isOk()) return s;
      } else {
        MPI_Allreduce(MPI_IN_PLACE, c.data.data(), int(count), MPI_FLOAT, MPI_SUM,
                      MPI_COMM_WORLD);
        for (float& x : c.data) x /= float(p);
      }
      const double dt =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (timed) c.seconds.push_back(dt);
      if (timed && c.comm) c.timedTrials += c.comm->stats().autoTrials - trialsBefore;
      return qcomm::Status::ok();
    };
    // Interface counters are read around calls, never between two timed ones: reading them
    // between calls slowed the next call (a 4 KB allgather on 4 ranks of one machine: 27 us
    // per call without, 113 us with).
    auto countTx = [&](Contender& c, int calls, auto&& run) -> qcomm::Status {
      MPI_Barrier(MPI_COMM_WORLD);
      const double before = readsInterfaces ? interfaceTxBytes() : 0.0;
      QCOMM_RETURN_IF_ERROR(run());
      MPI_Barrier(MPI_COMM_WORLD);
      if (readsInterfaces) c.txBytes = (interfaceTxBytes() - before) / calls;
      return qcomm::Status::ok();
    };
    auto measure = [&](Contender& c) -> qcomm::Status {
      for (int it = 0; it < warmup; ++it) QCOMM_RETURN_IF_ERROR(call(c, false));
      return countTx(c, iters, [&]() -> qcomm::Status {
        for (int it = 0; it < iters; ++it) QCOMM_RETURN_IF_ERROR(call(c, true));
        return qcomm::Status::ok();
      });
    };
    if (order == "interleaved") {
      for (const std::string& name : algorithms) {
        auto c = makeContender(name);
        if (!c.isOk()) return fail(c.status());
        contenders.push_back(std::move(*c));
      }
      // Rounds of one call per contender, each round in a new order (the same on every rank: a
      // fixed seed), so that no row always follows the same neighbour: on shaped links a call
      // that follows a heavy one finds the token bucket empty (with the rows merely rotated,
      // allgather always followed MPI_Allreduce's 256 KB and took 1.2-1.3 ms where auto's trials
      // of it, which followed hierarchical's, took 0.86). Warm-up rounds go on past -w while an
      // auto row still makes trials, so that its trials see the same machine as the timed
      // rounds and end before them.
      const size_t n = contenders.size();
      std::vector<size_t> sequence(n);
      std::mt19937 shuffler(12345);
      auto round = [&](bool timed) -> qcomm::Status {
        std::iota(sequence.begin(), sequence.end(), size_t{0});
        std::shuffle(sequence.begin(), sequence.end(), shuffler);
        for (size_t k : sequence) QCOMM_RETURN_IF_ERROR(call(contenders[k], timed));
        return qcomm::Status::ok();
      };
      auto trialsSoFar = [&] {
        uint64_t trials = 0;
        for (const Contender& c : contenders) trials += c.comm ? c.comm->stats().autoTrials : 0;
        return trials;
      };
      constexpr int kMaxSettleRounds = 200;
      for (int it = 0, settling = 0; it < warmup || settling < kMaxSettleRounds; ++it) {
        const uint64_t before = trialsSoFar();
        if (qcomm::Status s = round(false); !s.isOk()) return fail(s);
        if (it >= warmup && trialsSoFar() == before) break;  // the same on every rank
        settling += it >= warmup;
      }
      // -n rounds, then more while rank 0 has seen less than --min-time of them (its word is
      // broadcast, so every rank stops after the same round).
      constexpr int kMaxTimedRounds = 1000000;
      const auto timedStart = std::chrono::steady_clock::now();
      for (int it = 0; it < kMaxTimedRounds; ++it) {
        if (it >= iters) {
          int more = minTime > 0.0 && std::chrono::duration<double>(
                                          std::chrono::steady_clock::now() - timedStart)
                                              .count() < minTime;
          MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
          if (!more) break;
        }
        if (qcomm::Status s = round(true); !s.isOk()) return fail(s);
      }
      for (Contender& c : contenders) {  // host_tx: one more call each, untimed
        if (qcomm::Status s = countTx(c, 1, [&] { return call(c, false); }); !s.isOk()) {
          return fail(s);
        }
      }
    }
    for (size_t index = 0; index < algorithms.size(); ++index) {
      if (order != "interleaved") {
        contenders.clear();  // the previous row's communicator and buffers go first
        auto c = makeContender(algorithms[index]);
        if (!c.isOk()) return fail(c.status());
        contenders.push_back(std::move(*c));
        if (qcomm::Status s = measure(contenders.back()); !s.isOk()) return fail(s);
      }
      Contender& c = order == "interleaved" ? contenders[index] : contenders.back();
      const std::string& name = c.name;
      const std::vector<float>& data = c.data;
      MPI_Barrier(MPI_COMM_WORLD);
      double hostTx = c.txBytes;
      MPI_Allreduce(MPI_IN_PLACE, &hostTx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      const CallTimes times = slowestRankTimes(c.seconds);
      const double seconds = stat == "median" ? times.median : times.meanOfRankMeans;
      const std::string chosen =
          c.comm ? std::string(qcomm::algorithmName(c.comm->algorithmFor(count))) : name;
      // Check against the exact mean, within the bound of what ran (float rounding for MPI).
      std::vector<double> bounds;
      if (c.comm) {
        std::vector<int> hostOfRank(p);
        const int myHost = c.comm->layout().host;
        MPI_Allgather(&myHost, 1, MPI_INT, hostOfRank.data(), 1, MPI_INT, MPI_COMM_WORLD);
        // The bound of what ran last (auto's trials may have run another than it settled on).
        bounds = resultBounds(*qcomm::parseAnyCodecSpec(codec),
                              std::string(qcomm::algorithmName(c.comm->stats().lastAlgorithm)),
                              p, hostOfRank, exact);
      }
      double err = 0.0;
      int64_t wrong = 0;
      for (int64_t i = 0; i < count; ++i) {
        const double d = std::fabs(double(data[i]) - exact[i]);
        err = std::max(err, d);
        wrong += !(d <= (c.comm ? bounds[i] * boundScale : 0.0) + 1e-6);
      }
      MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
      totalWrong += wrong;
      MPI_Allreduce(MPI_IN_PLACE, &err, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      const double modelBytes = busFactor * bytes;
      double wire = modelBytes;
      if (c.comm) wire = double(c.comm->stats().bytesReceived) / double(c.comm->stats().calls);
      Row row{bytes,
              count,
              name,
              c.comm ? qcomm::anyCodecSpec(*qcomm::parseAnyCodecSpec(codec)) : "none",
              seconds,
              bytes / seconds / 1e9,
              bytes / seconds / 1e9 * busFactor,
              wrong,
              wire,
              modelBytes / wire,
              maxExact > 0 ? err / maxExact : err,
              hostTx,
              chosen,
              c.comm ? c.comm->stats().autoTrials : 0,
              c.timedTrials,
              times,
              c.comm ? c.comm->autoEstimates(count) : qcomm::AlgorithmCosts{}};
      if (rank == 0) {
        std::printf(
            "%12lld %12lld %6s %6s %5d %11.1f %8.3f %8.3f %7lld  %-17s %-44s %12.0f %7.2f %9.2e "
            "%12.0f\n",
            (long long)row.bytes, (long long)row.count, "float", "mean", -1, row.seconds * 1e6,
            row.algbw, row.busbw, (long long)row.wrong,
            (row.algorithm == "auto" ? "auto:" + row.chosen : row.algorithm).c_str(),
            row.codec.c_str(),
            row.wireBytes, row.ratio, row.err, row.hostTx);
        std::fflush(stdout);
      }
      rows.push_back(row);
    }
  }
  if (rank == 0 && !jsonPath.empty()) {
    nlohmann::ordered_json out;
    out["ranks"] = p;
    out["order"] = order;
    out["stat"] = stat;
    out["min_time_s"] = minTime;
    for (const Row& r : rows) {
      out["rows"].push_back({{"size", r.bytes},
                             {"count", r.count},
                             {"algorithm", r.algorithm},
                             {"codec", r.codec},
                             {"time_us", r.seconds * 1e6},
                             {"time_mean_of_rank_means_us", r.times.meanOfRankMeans * 1e6},
                             {"time_median_us", r.times.median * 1e6},
                             {"time_mean_us", r.times.mean * 1e6},
                             {"timed_calls", r.times.calls},
                             {"algbw_GBps", r.algbw},
                             {"busbw_GBps", r.busbw},
                             {"wrong", r.wrong},
                             {"wire_bytes", r.wireBytes},
                             {"ratio", r.ratio},
                             {"err", r.err},
                             {"host_tx_bytes", r.hostTx},
                             {"chosen", r.chosen},
                             {"auto_trials", r.trials},
                             {"auto_trials_timed", r.timedTrials},
                             {"auto_estimates_us",
                              {{"uncompressed", r.estimates.uncompressed * 1e6},
                               {"allgather", r.estimates.allgather * 1e6},
                               {"sra", r.estimates.sra * 1e6},
                               {"hierarchical", r.estimates.hierarchical * 1e6}}}});
    }
    std::ofstream(jsonPath) << out.dump(2) << "\n";
  }
  if (rank == 0 && totalWrong > 0) {
    std::fprintf(stderr,
                 "qcomm_allreduce_bench: %lld values outside the quantization bound (#wrong): "
                 "FAILED\n",
                 (long long)totalWrong);
  }
  MPI_Finalize();
  return totalWrong > 0 ? 1 : 0;
}
