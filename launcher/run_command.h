// `qcomm run`: mpirun on this machine, on hosts from a hostfile, or on an emulated cluster.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cluster.h"
#include "process.h"

namespace qcomm::launcher {

struct RunRequest {
  int ranks = 1;
  std::string hostfile;            // --hostfile
  std::vector<std::string> hosts;  // --hosts a,b,c
  std::string cluster;             // --cluster NAME
  Argv program;                    // the program and its arguments
};

// What the command line depends on besides the request (gathered by the caller; pure function).
struct RunContext {
  bool root = false;
  int cores = 1;
  std::vector<std::string> qcommVariables;  // names of QCOMM_* variables set now: forwarded
  std::optional<ClusterSpec> cluster;       // loaded when request.cluster is set
  std::string workdir;                      // where qcomm runs (kept inside a docker cluster
                                            // when a mount holds it)
};

// The exact mpirun command line (unit-tested by comparing vectors).
Result<Argv> mpirunArgv(const RunRequest& request, const RunContext& context);
// The program as the containers of a docker cluster see it: a path relative to `workdir` becomes
// absolute, and must lie inside one of the cluster's mounts.
Result<std::string> programInContainers(const std::string& program, const ClusterSpec& spec,
                                        const std::string& workdir);
// Gathers the RunContext from the environment (and the cluster's state).
Result<RunContext> currentRunContext(const RunRequest& request);

// mpirun users type -np; CLI11 takes only --np. Rewrites "-np" to "--np" among the options of
// `run` and `bench allreduce`, never inside the program's own arguments (pure; unit-tested).
std::vector<std::string> acceptMpirunStyleNp(const std::vector<std::string>& args);

// Runs the mpirun command line: replaces this process, except on a docker cluster, where it
// waits and, when the job fails, names the containers that stopped. Returns the exit code.
int runJob(const Argv& argv, const RunContext& context, const char* what);

// Adds `run`, `sweep` and `cluster`.
void addRunCommand(CLI::App& app, int& exitCode);
void addSweepCommand(CLI::App& app, int& exitCode);
void addClusterCommand(CLI::App& app, int& exitCode);

}  // namespace qcomm::launcher
