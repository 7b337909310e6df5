// `qcomm bench allreduce`: starts the allreduce benchmark under mpirun on this machine.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace qcomm::launcher {

// The mpirun command line (a pure function, unit-tested): root-safety variables when `asRoot`,
// --oversubscribe always (a small machine may have fewer cores than ranks).
std::vector<std::string> benchAllreduceArgv(const std::string& benchPath, int ranks, bool asRoot,
                                            const std::vector<std::string>& benchArgs);

void addBenchCommand(CLI::App& app, int& exitCode);

}  // namespace qcomm::launcher
