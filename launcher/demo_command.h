// `qcomm demo`: the README's main job. For now the codec table in the spirit of the seed notebook
// (levels 1..9: values, error, bits per value, ratio, speed); the allreduce experiment joins it
// when the communicator lands.
#pragma once

#include <CLI/CLI.hpp>

namespace qcomm::launcher {

void addDemoCommand(CLI::App& app, int& exitCode);

}  // namespace qcomm::launcher
