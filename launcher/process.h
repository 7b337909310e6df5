// Running external commands (ip, tc, mpirun) for the launcher.
#pragma once

#include <string>
#include <vector>

#include "qcomm/status.h"

namespace qcomm::launcher {

using Argv = std::vector<std::string>;

// Runs argv and waits; the Status names the command and its exit code, plus what it printed on
// stderr when it failed.
Status runCommand(const Argv& argv);
// Runs argv and returns what it printed on stdout (empty on failure).
Result<std::string> captureCommand(const Argv& argv);
// Runs argv with this process's standard streams and returns its exit code (128 + signal).
// SIGINT, SIGTERM and SIGHUP do not end this process meanwhile: the signal is stored in
// *interruptedBy (0 if none came) for the caller to clean up after.
Result<int> runInForeground(const Argv& argv, int* interruptedBy = nullptr);
// Replaces this process with argv (returns only on failure).
Status execCommand(const Argv& argv);
std::string joinArgv(const Argv& argv);
bool runningAsRoot();

}  // namespace qcomm::launcher
