// `qcomm codec encode|decode|info`: QSGD on .npy files.
#pragma once

#include <CLI/CLI.hpp>

namespace qcomm::launcher {

// Adds the `codec` subcommand and its three verbs to `app`; each sets `exitCode` when it runs.
void addCodecCommand(CLI::App& app, int& exitCode);

}  // namespace qcomm::launcher
