// auto on a machine that changes under it: many allreduces of one size under `auto`, printed in
// windows of calls (time since the start, rank 0's median call, which algorithms ran, how many
// calls were trials), so that a change of the link or of the load during the run shows whether
// and when auto follows it (its re-checks: docs/algorithms.md, "How auto decides", step 5).
// Start it with any mpirun, e.g. on an emulated cluster whose links are reshaped mid-run
// (docs/performance.md, "auto follows a link that changes"):
//
//   qcomm run --cluster qa --np 4 build/bin/qcomm_auto_drift_bench --size 64K --calls 6000 \
//       --at 3000 --run 'touch /tmp/slow'
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "qcomm/communicator.h"
#include "qcomm/mpi_transport.h"

namespace {

int fail(const qcomm::Status& status) {
  std::fprintf(stderr, "qcomm_auto_drift_bench: %s\n", status.toString().c_str());
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

// "4096", "64K", "1M" (binary units, either case); -1 for anything else.
int64_t parseBytes(const std::string& text) {
  size_t used = 0;
  int64_t value = -1;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    return -1;
  }
  const std::string unit = text.substr(used);
  if (unit.empty()) return value;
  if (unit == "K" || unit == "k") return value * 1024;
  if (unit == "M" || unit == "m") return value * 1024 * 1024;
  return -1;
}

struct Window {
  double start = 0.0;  // seconds since the first call
  std::vector<double> seconds;
  std::map<std::string, int> ran;
  uint64_t trials = 0, rechecks = 0;
};

void print(int first, const Window& w) {
  std::vector<double> s = w.seconds;
  std::nth_element(s.begin(), s.begin() + s.size() / 2, s.end());
  std::string ran;
  for (const auto& [name, calls] : w.ran) ran += " " + name + " " + std::to_string(calls);
  std::printf("%7d %7d %9.2f %12.3f  %6llu %8llu  %s\n", first,
              first + static_cast<int>(w.seconds.size()) - 1, w.start, s[s.size() / 2] * 1e3,
              static_cast<unsigned long long>(w.trials),
              static_cast<unsigned long long>(w.rechecks), ran.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  CLI::App app("auto's choice over many calls of one size (run under mpirun)");
  std::string sizeText = "64K", codec = "qsgd:bits=4,bucket=512,norm=max,layout=compact";
  int calls = 6000, window = 250;
  app.add_option("--size", sizeText, "bytes of float32 per rank (K/M suffixes)")
      ->capture_default_str();
  app.add_option("--calls", calls, "allreduces in all")->capture_default_str();
  app.add_option("--window", window, "calls per printed line")->capture_default_str();
  app.add_option("--codec", codec, "codec spec")->capture_default_str();
  bool noChecks = false;
  app.add_flag("--no-checks", noChecks,
               "per-call checks off: settled calls are not watched, so re-checks come only "
               "every AutoTrials::kRecheckEvery calls");
  std::vector<int> at;
  std::vector<std::string> commands;
  app.add_option("--at", at, "before this call, rank 0 runs the --run command of the same place "
                             "(the others wait in the call); may be given again");
  app.add_option("--run", commands, "a shell command for the --at of the same place");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    MPI_Finalize();
    return code;
  }
  if (calls < 1 || window < 1) {
    return fail(qcomm::invalidArgument("--calls and --window must be >= 1"));
  }
  if (at.size() != commands.size()) {
    return fail(qcomm::invalidArgument("--at given ", at.size(), " times but --run ",
                                       commands.size(), " times: they go in pairs"));
  }
  const int64_t bytes = parseBytes(sizeText);
  if (bytes < 4) {
    return fail(qcomm::invalidArgument("--size '", sizeText,
                                       "': want bytes of at least one float, e.g. 4096, 64K, 1M"));
  }
  const int64_t count = bytes / 4;

  auto transport = qcomm::transport::MpiTransport::create(MPI_COMM_WORLD);
  if (!transport.isOk()) return fail(transport.status());
  qcomm::CommunicatorOptions options;
  options.codec = codec;
  options.minCompressNumel = 0;
  options.algorithm = qcomm::Algorithm::kAuto;
  options.checkSizes = !noChecks;
  auto comm = qcomm::Communicator::create(**transport, options);
  if (!comm.isOk()) return fail(comm.status());

  std::vector<float> input(count), data(count);
  for (int64_t i = 0; i < count; ++i) input[i] = static_cast<float>((i * 7 + rank * 13) % 101) - 50;
  if (rank == 0) {
    std::printf("# %d ranks, %lld values per rank, %s; rank 0's call times\n",
                (*transport)->size(), static_cast<long long>(count), codec.c_str());
    std::printf("%7s %7s %9s %12s  %6s %8s  %s\n", "from", "to", "t(s)", "median(ms)", "trials",
                "rechecks", "algorithms run");
  }
  const auto begin = std::chrono::steady_clock::now();
  Window w;
  for (int k = 0; k < calls; ++k) {
    for (size_t i = 0; i < at.size() && rank == 0; ++i) {
      if (at[i] != k) continue;
      const double t =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
      std::printf("# before call %d (t = %.2f s): %s\n", k, t, commands[i].c_str());
      std::fflush(stdout);
      if (const int rc = std::system(commands[i].c_str()); rc != 0) {
        return fail(qcomm::internalError("--run '", commands[i], "' exited with ", rc));
      }
    }
    std::copy(input.begin(), input.end(), data.begin());
    const qcomm::CommunicatorStats before = (*comm)->stats();
    const auto started = std::chrono::steady_clock::now();
    if (qcomm::Status s = (*comm)->allreduceMean(data, "g"); !s.isOk()) return fail(s);
    const auto ended = std::chrono::steady_clock::now();
    const qcomm::CommunicatorStats& after = (*comm)->stats();
    if (w.seconds.empty()) w.start = std::chrono::duration<double>(started - begin).count();
    w.seconds.push_back(std::chrono::duration<double>(ended - started).count());
    ++w.ran[std::string(qcomm::algorithmName(after.lastAlgorithm))];
    w.trials += after.autoTrials - before.autoTrials;
    w.rechecks += after.autoRechecks - before.autoRechecks;
    if (static_cast<int>(w.seconds.size()) == window || k + 1 == calls) {
      if (rank == 0) print(k + 1 - static_cast<int>(w.seconds.size()), w);
      w = Window{};
    }
  }
  MPI_Finalize();
  return 0;
}
