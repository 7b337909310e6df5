#include "run_command.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "docker_cluster.h"

extern char** environ;

namespace qcomm::launcher {

namespace {

bool insideMount(const std::string& path, const ClusterSpec& s) {
  for (const std::string& m : s.mounts) {
    if (path == m || path.rfind(m + "/", 0) == 0) return true;
  }
  return false;
}

}  // namespace

Result<std::string> programInContainers(const std::string& program, const ClusterSpec& s,
                                        const std::string& workdir) {
  // A bare name is looked up on the containers' PATH, an absolute path may be the image's own.
  if (program.find('/') == std::string::npos || program[0] == '/') return program;
  // A relative path means this machine's working directory, which the containers share only
  // where a mount holds it.
  const std::string absolute = (std::filesystem::path(workdir) / program).lexically_normal();
  if (insideMount(absolute, s)) return absolute;
  std::string mounts;
  for (const std::string& m : s.mounts) mounts += (mounts.empty() ? "" : ", ") + m;
  return failedPrecondition("program '", program, "' (", absolute, ") is not inside a folder ",
                            "mounted into the containers of cluster '", s.prefix, "' (",
                            mounts.empty() ? "none" : mounts,
                            "); bring the cluster up again with --mount FOLDER");
}

Result<Argv> mpirunArgv(const RunRequest& r, const RunContext& c) {
  if (r.ranks < 1) return invalidArgument("--np must be >= 1, got ", r.ranks);
  if (r.program.empty()) return invalidArgument("no program to run (qcomm run --np N PROGRAM ...)");
  const int targets =
      (r.hostfile.empty() ? 0 : 1) + (r.hosts.empty() ? 0 : 1) + (r.cluster.empty() ? 0 : 1);
  if (targets > 1) return invalidArgument("give at most one of --hostfile, --hosts and --cluster");
  Argv argv;
  bool root = c.root;
  if (!r.cluster.empty()) {
    if (!c.cluster) return failedPrecondition("cluster '", r.cluster, "' is not loaded");
    if (c.cluster->docker) {
      // mpirun runs inside container 0 (as root there); ssh starts the other daemons.
      argv = dockerExecArgv(*c.cluster, c.qcommVariables, c.workdir);
      root = true;
    } else {
      // mpirun runs inside host 0; the agent starts the other daemons in their namespaces.
      argv = {"ip", "netns", "exec", c.cluster->namespaceOf(0)};
    }
  }
  if (root)
    argv.insert(argv.end(),
                {"env", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"});
  argv.insert(argv.end(), {"mpirun", "-np", std::to_string(r.ranks)});
  int slots = c.cores;
  if (!r.cluster.empty()) {
    const ClusterSpec& s = *c.cluster;
    const std::string subnet = s.subnet + ".0/24";
    // Ranks of one host talk over shared memory (vader), hosts over TCP on the shaped links.
    if (s.docker) {
      argv.insert(argv.end(), {"--hostfile", "/etc/qcomm/hostfile"});
    } else {
      argv.insert(argv.end(), {"--hostfile", s.hostfile(), "--mca", "plm_rsh_agent", s.agent()});
    }
    argv.insert(argv.end(), {"--mca", "btl", s.slots > 1 ? "self,vader,tcp" : "self,tcp",
                             "--mca", "btl_tcp_if_include", subnet,
                             "--mca", "oob_tcp_if_include", subnet,
                             // Several daemons start on one machine at once; Open MPI 4.1's
                             // shared topology segment (mapped at a fixed "hole") then crashes
                             // some of them in hwloc_shmem_topology_write. Skip the sharing.
                             "--mca", "rtc_hwloc_vmhole", "none"});
    slots = s.hosts * s.slots;
    // The emulated hosts share this machine's cores, which Open MPI does not know: ranks beyond
    // them must yield instead of busy-polling (measured: 3x slower allreduces without it).
    if (r.ranks > c.cores) argv.insert(argv.end(), {"--mca", "mpi_yield_when_idle", "1"});
  } else if (!r.hostfile.empty()) {
    argv.insert(argv.end(), {"--hostfile", r.hostfile});
    slots = 0;  // the hostfile decides
  } else if (!r.hosts.empty()) {
    std::string list;
    for (const std::string& h : r.hosts) list += (list.empty() ? "" : ",") + h;
    argv.insert(argv.end(), {"--host", list});
    slots = 0;
  }
  if (slots > 0 && r.ranks > slots) argv.push_back("--oversubscribe");
  for (const std::string& name : c.qcommVariables) argv.insert(argv.end(), {"-x", name});
  argv.insert(argv.end(), r.program.begin(), r.program.end());
  if (c.cluster && c.cluster->docker) {
    QCOMM_ASSIGN_OR_RETURN(argv[argv.size() - r.program.size()],
                           programInContainers(r.program[0], *c.cluster, c.workdir));
  }
  return argv;
}

std::vector<std::string> acceptMpirunStyleNp(const std::vector<std::string>& args) {
  std::vector<std::string> out = args;
  // Options of run / bench allreduce that take a value; after them the next word is that value.
  static const std::vector<std::string> withValue = {"--np",       "-np",     "--ranks",
                                                     "--hostfile", "--hosts", "--cluster"};
  bool inOptions = false;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!inOptions) {
      inOptions = out[i] == "run" || out[i] == "allreduce";
      continue;
    }
    if (out[i] == "-np") out[i] = "--np";
    if (std::find(withValue.begin(), withValue.end(), out[i]) != withValue.end()) {
      ++i;  // skip the value
    } else if (out[i].rfind("-", 0) != 0) {
      break;  // the program starts here: its arguments are its own
    }
  }
  return out;
}

Result<RunContext> currentRunContext(const RunRequest& request) {
  RunContext c;
  c.root = runningAsRoot();
  c.cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "QCOMM_", 6) == 0) {
      const char* eq = std::strchr(*e, '=');
      c.qcommVariables.emplace_back(*e, eq ? eq - *e : std::strlen(*e));
    }
  }
  std::error_code ec;
  c.workdir = std::filesystem::current_path(ec).string();
  if (!request.cluster.empty()) {
    QCOMM_ASSIGN_OR_RETURN(ClusterSpec spec, loadCluster(request.cluster));
    c.cluster = spec;
  }
  return c;
}

namespace {

int report(const Status& s, const char* what) {
  if (s.isOk()) return 0;
  std::fprintf(stderr, "qcomm %s: %s\n", what, s.message().c_str());
  return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

}  // namespace

int runJob(const Argv& argv, const RunContext& context, const char* what) {
  if (!context.cluster || !context.cluster->docker) return report(execCommand(argv), what);
  int interruptedBy = 0;
  Result<int> code = runInForeground(argv, &interruptedBy);
  if (!code.isOk()) return report(code.status(), what);
  if (interruptedBy != 0) {
    // The docker client leaves on a signal, but what it started in container 0 goes on: end
    // mpirun there, which ends the job on every host.
    const ClusterSpec& s = *context.cluster;
    const Status stopped = runCommand(
        {"docker", "-H", s.dockerHost, "exec", s.namespaceOf(0), "pkill", "-TERM", "-x", "mpirun"});
    std::fprintf(stderr, "qcomm %s: interrupted (signal %d); %s\n", what, interruptedBy,
                 stopped.isOk() ? ("ended mpirun in container " + s.namespaceOf(0)).c_str()
                                : "no mpirun was left in container 0");
    return 128 + interruptedBy;
  }
  if (*code != 0) {
    const std::string stopped = stoppedContainers(*context.cluster);
    std::fprintf(stderr, "qcomm %s: the job on docker cluster '%s' ended with exit code %d%s%s",
                 what, context.cluster->prefix.c_str(), *code, stopped.empty() ? "" : "; ",
                 stopped.empty() ? "\n" : stopped.c_str());
  }
  return *code;
}

void addRunCommand(CLI::App& app, int& exitCode) {
  auto request = std::make_shared<RunRequest>();
  auto dryRun = std::make_shared<bool>(false);
  CLI::App* run = app.add_subcommand("run",
                                     "run a program under mpirun (here, on a hostfile, or "
                                     "on an emulated cluster)");
  run->add_option("--np,--ranks", request->ranks, "number of ranks")->required();
  run->add_option("--hostfile", request->hostfile, "Open MPI hostfile (real hosts)");
  run->add_option("--hosts", request->hosts, "comma-separated hosts")->delimiter(',');
  run->add_option("--cluster", request->cluster, "an emulated cluster from qcomm cluster up");
  run->add_flag("--dry-run", *dryRun, "print the mpirun command instead of running it");
  // Everything from the first argument qcomm does not know is the program and its arguments.
  run->prefix_command();
  run->footer(
      "usage: qcomm run --np N [--hostfile F | --hosts a,b | --cluster NAME] PROGRAM [ARGS...]");
  run->callback([run, request, dryRun, &exitCode] {
    request->program = run->remaining();
    Result<RunContext> context = currentRunContext(*request);
    if (!context.isOk()) {
      exitCode = report(context.status(), "run");
      return;
    }
    Result<Argv> argv = mpirunArgv(*request, *context);
    if (!argv.isOk()) {
      exitCode = report(argv.status(), "run");
      return;
    }
    if (*dryRun) {
      std::printf("%s\n", joinArgv(*argv).c_str());
      exitCode = 0;
      return;
    }
    exitCode = runJob(*argv, *context, "run");
  });
}

void addSweepCommand(CLI::App& app, int& exitCode) {
  auto file = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  CLI::App* sweep = app.add_subcommand(
      "sweep",
      "run the allreduce benchmark over a grid from a TOML file (CSV, JSON, PNG plots, "
      "Markdown report)");
  sweep->add_option("file", *file, "sweep file, e.g. examples/sweep.toml")->required();
  sweep->add_option("--out", *out, "output folder (default: sweep-<name>)");
  auto cluster = std::make_shared<std::string>();
  sweep->add_option("--cluster", *cluster,
                    "run every group on this cluster from qcomm cluster up (namespaces or "
                    "--docker) instead of the file's links");
  sweep->callback([file, out, cluster, &exitCode] {
    std::error_code ec;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
    const std::filesystem::path script =
        self.parent_path().parent_path() / "share" / "qcomm" / "sweep.py";
    if (!std::filesystem::exists(script)) {
      exitCode = report(failedPrecondition(script.string(), " is missing"), "sweep");
      return;
    }
    Argv argv = {QCOMM_PYTHON, script.string(), *file, "--qcomm", self.string()};
    if (!out->empty()) argv.insert(argv.end(), {"--out", *out});
    if (!cluster->empty()) argv.insert(argv.end(), {"--cluster", *cluster});
    exitCode = report(execCommand(argv), "sweep");
  });
}

void addClusterCommand(CLI::App& app, int& exitCode) {
  CLI::App* cluster = app.add_subcommand(
      "cluster", "an emulated cluster of hosts on rate-limited links (network namespaces; root)");
  cluster->require_subcommand(1);
  auto spec = std::make_shared<ClusterSpec>();
  CLI::App* up = cluster->add_subcommand("up", "create N hosts joined by shaped links");
  up->add_option("hosts", spec->hosts, "number of hosts")->required();
  up->add_option("--link", spec->link, "link rate (tc syntax: 500mbit, 1gbit, 2gbit)")
      ->capture_default_str();
  up->add_option("--slots", spec->slots,
                 "ranks per host: they share memory inside it, the shaped link between hosts")
      ->capture_default_str();
  up->add_option("--prefix,--name", spec->prefix, "cluster name (prefix of everything it creates)")
      ->capture_default_str();
  up->add_option("--subnet", spec->subnet, "first three octets of its /24")->capture_default_str();
  up->add_flag("--docker", spec->docker,
               "hosts are containers (sshd inside; starts qcomm's own dockerd when none answers)");
  up->add_option("--image", spec->image, "with --docker: the hosts' image")->capture_default_str();
  up->add_option("--mount", spec->mounts,
                 "with --docker: a folder visible read-only at the same path in every host "
                 "(repeatable; qcomm's own build tree is mounted by default)")
      ->allow_extra_args(false);  // one folder per --mount: the host count may follow
  up->callback([spec, &exitCode] {
    if (!spec->docker && (spec->image != ClusterSpec().image || !spec->mounts.empty())) {
      exitCode = report(invalidArgument("--image and --mount need --docker"), "cluster up");
      return;
    }
    const Status s = clusterUp(*spec);
    if (s.isOk()) {
      std::printf(
          "cluster %s up: %d %s x %d slots on %s links; run on it with qcomm run --cluster "
          "%s --np %d PROGRAM\n",
          spec->prefix.c_str(), spec->hosts, spec->docker ? "containers" : "hosts", spec->slots,
          spec->link.c_str(),
          spec->prefix.c_str(), spec->hosts * spec->slots);
    }
    exitCode = report(s, "cluster up");
  });
  auto stop = std::make_shared<bool>(false);
  CLI::App* engine = cluster->add_subcommand(
      "engine", "print the Docker engine docker clusters use (DOCKER_HOST, the system's, or "
                "qcomm's own dockerd, started if none answers); --stop stops qcomm's own if idle");
  engine->add_flag("--stop", *stop, "stop qcomm's own dockerd (when no container is left on it)");
  engine->callback([stop, &exitCode] {
    if (*stop) {
      Result<bool> stopped = stopOwnDockerEngineIfIdle(ClusterSpec().stateRoot);
      if (stopped.isOk()) {
        std::printf("%s\n", *stopped ? "stopped qcomm's dockerd" : "qcomm's dockerd is not "
                                                                   "running, or still has containers");
      }
      exitCode = report(stopped.status(), "cluster engine");
      return;
    }
    Result<std::string> host = ensureDockerEngine(ClusterSpec().stateRoot);
    if (host.isOk()) std::printf("%s\n", host->c_str());
    exitCode = report(host.status(), "cluster engine");
  });
  auto name = std::make_shared<std::string>("qcomm");
  CLI::App* down = cluster->add_subcommand("down", "remove everything a cluster made");
  down->add_option("name", *name, "cluster name")->capture_default_str();
  down->callback([name, &exitCode] { exitCode = report(clusterDown(*name), "cluster down"); });
  CLI::App* status = cluster->add_subcommand("status", "what exists of a cluster");
  status->add_option("name", *name, "cluster name")->capture_default_str();
  status->callback([name, &exitCode] {
    Result<std::string> text = clusterStatus(*name);
    if (text.isOk()) std::printf("%s", text->c_str());
    exitCode = report(text.status(), "cluster status");
  });
}

}  // namespace qcomm::launcher
