#include "bench_command.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include <unistd.h>

#include "run_command.h"

namespace qcomm::launcher {

// `qcomm bench ddp`: bench/ddp_compare.py (PyTorch DDP with PyTorch's hooks and qcomm's).
void addDdpCommand(CLI::App* bench, int& exitCode) {
  CLI::App* ddp = bench->add_subcommand(
      "ddp", "PyTorch DDP on digits: plain allreduce, fp16 and PowerSGD hooks against qcomm's "
             "(arguments go to bench/ddp_compare.py: --ranks --epochs --methods --cluster --json)");
  ddp->allow_extras();
  ddp->callback([ddp, &exitCode] {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    const auto share = self.parent_path().parent_path() / "share" / "qcomm";
    const std::string script = (share / "ddp_compare.py").string();
    if (!std::filesystem::exists(script)) {
      std::fprintf(stderr, "qcomm bench ddp: %s is missing\n", script.c_str());
      exitCode = 1;
      return;
    }
    // The qcomm package next to this build (build/python) unless PYTHONPATH says otherwise.
    const std::string python = (self.parent_path().parent_path() / "python").string();
    setenv("PYTHONPATH", python.c_str(), 0);
    Argv argv = {QCOMM_PYTHON, script};
    for (const std::string& a : ddp->remaining()) argv.push_back(a);
    const Status s = execCommand(argv);
    std::fprintf(stderr, "qcomm bench ddp: %s\n", s.message().c_str());
    exitCode = 1;
  });
}

void addBenchCommand(CLI::App& app, int& exitCode) {
  CLI::App* bench = app.add_subcommand("bench", "benchmarks");
  bench->require_subcommand(1);
  addDdpCommand(bench, exitCode);
  auto request = std::make_shared<RunRequest>();
  request->ranks = 4;
  auto dryRun = std::make_shared<bool>(false);
  CLI::App* allreduce = bench->add_subcommand(
      "allreduce",
      "MPI_Allreduce against qcomm's allgather and sra (extra arguments go to the "
      "benchmark: -b -e -f -n -w --codec --algorithms --json)");
  allreduce->add_option("--np,--ranks", request->ranks, "ranks")->capture_default_str();
  allreduce->add_option("--hostfile", request->hostfile, "Open MPI hostfile (real hosts)");
  allreduce->add_option("--cluster", request->cluster, "an emulated cluster from qcomm cluster up");
  allreduce->add_flag("--dry-run", *dryRun, "print the command instead of running it");
  allreduce->allow_extras();
  allreduce->callback([allreduce, request, dryRun, &exitCode] {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    const std::string benchPath = (self.parent_path() / "qcomm_allreduce_bench").string();
    if (!std::filesystem::exists(benchPath)) {
      std::fprintf(stderr, "qcomm bench: %s not found (qcomm was built without MPI?)\n",
                   benchPath.c_str());
      exitCode = 1;
      return;
    }
    request->program = {benchPath};
    for (const std::string& a : allreduce->remaining()) request->program.push_back(a);
    Result<RunContext> context = currentRunContext(*request);
    // On a docker cluster rank 0 writes --json inside container 0: into the cluster's shared
    // folder, copied to the path asked for afterwards.
    std::string jsonWanted, jsonShared;
    if (context.isOk() && context->cluster && context->cluster->docker) {
      const std::string shared =
          context->cluster->shared() + "/bench-" + std::to_string(getpid()) + ".json";
      Argv& p = request->program;
      for (size_t i = 1; i < p.size(); ++i) {
        if (p[i] == "--json" && i + 1 < p.size()) {
          jsonWanted = p[i + 1];
          p[i + 1] = jsonShared = shared;
        } else if (p[i].rfind("--json=", 0) == 0) {
          jsonWanted = p[i].substr(7);
          p[i] = "--json=" + (jsonShared = shared);
        }
      }
    }
    Result<Argv> argv =
        context.isOk() ? mpirunArgv(*request, *context) : Result<Argv>(context.status());
    if (!argv.isOk()) {
      std::fprintf(stderr, "qcomm bench: %s\n", argv.status().message().c_str());
      exitCode = 2;
      return;
    }
    if (*dryRun) {
      std::printf("%s\n", joinArgv(*argv).c_str());
      exitCode = 0;
      return;
    }
    exitCode = runJob(*argv, *context, "bench");
    if (!jsonShared.empty()) {
      std::filesystem::copy_file(jsonShared, jsonWanted,
                                 std::filesystem::copy_options::overwrite_existing, ec);
      std::error_code ignored;
      std::filesystem::remove(jsonShared, ignored);
      if (ec && exitCode == 0) {
        std::fprintf(stderr, "qcomm bench: cannot copy the results to %s: %s\n",
                     jsonWanted.c_str(), ec.message().c_str());
        exitCode = 1;
      }
    }
  });
}

}  // namespace qcomm::launcher
