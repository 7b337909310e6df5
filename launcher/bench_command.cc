#include "bench_command.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>

namespace qcomm::launcher {

std::vector<std::string> benchAllreduceArgv(const std::string& benchPath, int ranks, bool asRoot,
                                            const std::vector<std::string>& benchArgs) {
  std::vector<std::string> argv = {"mpirun", "-np", std::to_string(ranks), "--oversubscribe"};
  if (asRoot) {
    // Open MPI refuses root unless told twice; -x would only forward, so set them on the command.
    argv.insert(argv.begin(),
                {"env", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"});
  }
  argv.push_back(benchPath);
  argv.insert(argv.end(), benchArgs.begin(), benchArgs.end());
  return argv;
}

void addBenchCommand(CLI::App& app, int& exitCode) {
  CLI::App* bench = app.add_subcommand("bench", "benchmarks");
  bench->require_subcommand(1);
  auto ranks = std::make_shared<int>(4);
  auto dryRun = std::make_shared<bool>(false);
  CLI::App* allreduce = bench->add_subcommand(
      "allreduce",
      "MPI_Allreduce against qcomm's allgather and sra (extra arguments go to the "
      "benchmark: -b -e -f -n -w --codec --algorithms --json)");
  allreduce->add_option("--np,--ranks", *ranks, "ranks on this machine")->capture_default_str();
  allreduce->add_flag("--dry-run", *dryRun, "print the command instead of running it");
  allreduce->allow_extras();
  allreduce->callback([allreduce, ranks, dryRun, &exitCode] {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    const std::string benchPath = (self.parent_path() / "qcomm_allreduce_bench").string();
    if (!std::filesystem::exists(benchPath)) {
      std::fprintf(stderr, "qcomm bench: %s not found (qcomm was built without MPI?)\n",
                   benchPath.c_str());
      exitCode = 1;
      return;
    }
    const std::vector<std::string> argv =
        benchAllreduceArgv(benchPath, *ranks, geteuid() == 0, allreduce->remaining());
    if (*dryRun) {
      for (const std::string& a : argv) std::printf("%s ", a.c_str());
      std::printf("\n");
      exitCode = 0;
      return;
    }
    std::vector<char*> cargv;
    for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    std::fflush(stdout);
    execvp(cargv[0], cargv.data());
    std::perror("qcomm bench: cannot start mpirun");
    exitCode = 1;
  });
}

}  // namespace qcomm::launcher
