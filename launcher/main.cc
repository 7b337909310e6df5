// The `qcomm` command: codec tools, the demo, benchmarks, mpirun runs and emulated clusters.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_command.h"
#include "codec_command.h"
#include "demo_command.h"
#include "qcomm/env.h"
#include "run_command.h"

int main(int argc, char** argv) {
  CLI::App app("qcomm: QSGD-compressed allreduce for slow networks");
  app.require_subcommand(1);
  app.set_version_flag("--version", "qcomm 0.1.0");
  int exitCode = 0;
  qcomm::launcher::addCodecCommand(app, exitCode);
  qcomm::launcher::addDemoCommand(app, exitCode);
  qcomm::launcher::addBenchCommand(app, exitCode);
  qcomm::launcher::addRunCommand(app, exitCode);
  qcomm::launcher::addSweepCommand(app, exitCode);
  qcomm::launcher::addClusterCommand(app, exitCode);
  CLI::App* env = app.add_subcommand("env", "list the QCOMM_* environment knobs");
  env->callback([] {
    for (const qcomm::KnobInfo& k : qcomm::knobs()) {
      std::printf("%-20s = %-8s (default %s)  %s\n", std::string(k.name).c_str(),
                  qcomm::knobString(k.knob).c_str(), std::string(k.defaultValue).c_str(),
                  std::string(k.help).c_str());
    }
  });
  std::vector<std::string> args(argv + 1, argv + argc);
  args = qcomm::launcher::acceptMpirunStyleNp(args);
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments back to front
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exitCode;
}
