// `qcomm bench allreduce`: the allreduce benchmark under mpirun, here or on an emulated cluster.
#pragma once

#include <CLI/CLI.hpp>

namespace qcomm::launcher {

void addBenchCommand(CLI::App& app, int& exitCode);

}  // namespace qcomm::launcher
