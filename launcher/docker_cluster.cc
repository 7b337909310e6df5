#include "docker_cluster.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

namespace qcomm::launcher {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string ownEngineDir(const std::string& stateRoot) { return stateRoot + "/docker"; }

Argv withCli(const std::string& host, Argv tail) {
  Argv argv = dockerCli(host);
  argv.insert(argv.end(), tail.begin(), tail.end());
  return argv;
}

std::string lastLines(const std::string& path, int n) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string text;
  for (size_t i = all.size() > size_t(n) ? all.size() - n : 0; i < all.size(); ++i) {
    text += all[i] + "\n";
  }
  return text;
}

// Where Debian's own libraries live: every image has them (or their equivalents).
bool systemLibraryFolder(const fs::path& p) {
  const std::string s = p.string();
  for (const std::string prefix : {"/lib", "/lib64", "/usr/lib", "/usr/lib64"}) {
    if (s == prefix || s.rfind(prefix + "/", 0) == 0) return true;
  }
  return false;
}

pid_t readPid(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  in >> pid;
  return pid > 1 ? static_cast<pid_t>(pid) : 0;
}

// Whether `pid` is a running `command` (dockerd, containerd): not a zombie (a killed daemon whose
// parent, init here, has not reaped it yet), and not another program that reused a stale pid.
bool alive(pid_t pid, const std::string& command) {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // "PID (COMM) STATE ..."
  const size_t open = text.find('('), close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 >= text.size()) {
    return false;
  }
  return text.substr(open + 1, close - open - 1) == command && text[close + 2] != 'Z';
}

}  // namespace

Argv dockerCli(const std::string& host) { return {"docker", "-H", host}; }

std::string ownDockerHost(const std::string& stateRoot) {
  return "unix://" + ownEngineDir(stateRoot) + "/docker.sock";
}

Argv ownDockerdArgv(const std::string& stateRoot) {
  const std::string dir = ownEngineDir(stateRoot);
  // No iptables rules, no forwarding, no masquerading and no default bridge: the machine's
  // network settings stay as they are; clusters bring their own bridge.
  return {"dockerd",           "--iptables=false",     "--ip-forward=false",
          "--ip-masq=false",   "--bridge=none",        "--data-root",
          dir + "/data",       "--exec-root",          dir + "/exec",
          "--pidfile",         dir + "/dockerd.pid",   "-H",
          ownDockerHost(stateRoot)};
}

bool dockerAnswers(const std::string& host) {
  return captureCommand(withCli(host, {"version", "--format", "{{.Server.Version}}"})).isOk();
}

Result<std::string> ensureDockerEngine(const std::string& stateRoot) {
  if (const char* env = std::getenv("DOCKER_HOST"); env != nullptr && *env != '\0') {
    if (dockerAnswers(env)) return std::string(env);
    // qcomm's own engine, stopped by a `down` since it was exported: start it again.
    if (env == ownDockerHost(stateRoot)) return startOwnDockerEngine(stateRoot);
    return failedPrecondition("no Docker engine answers at DOCKER_HOST=", env,
                       "; unset it to let qcomm use the system's engine or start its own");
  }
  if (dockerAnswers("unix:///var/run/docker.sock")) return std::string("unix:///var/run/docker.sock");
  return startOwnDockerEngine(stateRoot);
}

Result<std::string> startOwnDockerEngine(const std::string& stateRoot) {
  const std::string own = ownDockerHost(stateRoot);
  if (dockerAnswers(own)) return own;
  if (!runningAsRoot()) return failedPrecondition("starting a Docker engine needs root");
  const std::string dir = ownEngineDir(stateRoot);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ioError("cannot create ", dir, ": ", ec.message());
  // A daemon of ours that died (kill -9, a crash) leaves its pid file and socket behind, and
  // its containerd running, which would keep a new daemon's containerd from starting (the
  // containers' shims survive both and are taken over again).
  if (!alive(readPid(dir + "/dockerd.pid"), "dockerd")) {
    fs::remove(dir + "/dockerd.pid", ec);
    fs::remove(dir + "/docker.sock", ec);
    const pid_t containerd = readPid(dir + "/exec/containerd/containerd.pid");
    if (alive(containerd, "containerd")) {
      kill(containerd, SIGTERM);
      const auto deadline = Clock::now() + std::chrono::seconds(10);
      while (alive(containerd, "containerd") && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (alive(containerd, "containerd")) kill(containerd, SIGKILL);
    }
    // dockerd takes any process under that pid, a zombie included, for its containerd.
    fs::remove(dir + "/exec/containerd/containerd.pid", ec);
  }
  // In its own session, so that it outlives this command; its log (of this start) beside its
  // state.
  const std::string log = dir + "/dockerd.log";
  const std::string command = "setsid " + joinArgv(ownDockerdArgv(stateRoot)) + " >" + log +
                              " 2>&1 </dev/null &";
  if (!runCommand({"sh", "-c", "command -v dockerd >/dev/null"}).isOk()) {
    return failedPrecondition("no Docker engine answers and dockerd is not installed "
                              "(apt-get install docker.io)");
  }
  QCOMM_RETURN_IF_ERROR(runCommand({"sh", "-c", command}));
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    if (dockerAnswers(own)) return own;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return deadlineExceeded("qcomm's dockerd did not answer at ", own, " within 60 s; the end of ", log,
                     ":\n", lastLines(log, 15));
}

Result<bool> stopOwnDockerEngineIfIdle(const std::string& stateRoot) {
  const std::string dir = ownEngineDir(stateRoot), host = ownDockerHost(stateRoot);
  // dockerd leaves two mounts behind when it stops or dies: its network namespace handle and
  // its data root bound onto itself. The data (the images) stays as the cache; the mounts go.
  auto unmount = [&dir] {
    for (const std::string& mount : {dir + "/exec/netns/default", dir + "/data"}) {
      umount2(mount.c_str(), MNT_DETACH);  // not mounted: EINVAL, nothing to do
    }
  };
  const pid_t pid = readPid(dir + "/dockerd.pid");
  if (!alive(pid, "dockerd")) {
    if (!dockerAnswers(host)) unmount();
    return false;
  }
  if (dockerAnswers(host)) {
    QCOMM_ASSIGN_OR_RETURN(const std::string ids, captureCommand(withCli(host, {"ps", "-aq"})));
    if (ids.find_first_not_of(" \n") != std::string::npos) return false;  // someone else's
  }
  kill(pid, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (alive(pid, "dockerd") && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (alive(pid, "dockerd")) {
    kill(pid, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (alive(pid, "dockerd")) return internalError("qcomm's dockerd (pid ", pid, ") did not stop");
  unmount();
  return true;
}

std::string containerOf(const ClusterSpec& s, int host) { return s.namespaceOf(host); }

Argv dockerRunArgv(const ClusterSpec& s, int host) {
  const std::string name = containerOf(s, host);
  Argv argv = withCli(s.dockerHost,
                      {"run", "-d", "--name", name, "--hostname", name, "--network", "none",
                       // vader's segments live in /dev/shm: Docker's default is 64 MB.
                       "--shm-size", "1g", "--label", "qcomm.cluster=" + s.prefix, "-v",
                       s.keys() + ":/etc/qcomm/keys:ro", "-v",
                       s.hostfile() + ":/etc/qcomm/hostfile:ro", "-v",
                       s.shared() + ":" + s.shared()});
  for (const std::string& m : s.mounts) argv.insert(argv.end(), {"-v", m + ":" + m + ":ro"});
  argv.insert(argv.end(), {s.image, "qcomm-node", "serve"});
  return argv;
}

Argv dockerExecArgv(const ClusterSpec& s, const std::vector<std::string>& environment,
                    const std::string& workdir) {
  Argv argv = withCli(s.dockerHost, {"exec"});
  for (const std::string& name : environment) argv.insert(argv.end(), {"-e", name});
  for (const std::string& m : s.mounts) {
    if (workdir == m || workdir.rfind(m + "/", 0) == 0) {
      argv.insert(argv.end(), {"-w", workdir});
      break;
    }
  }
  argv.push_back(containerOf(s, 0));
  return argv;
}

std::vector<std::string> defaultDockerMounts() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const fs::path tree = self.parent_path().parent_path();
  std::vector<std::string> mounts;
  // Installed system-wide, the image is expected to hold the same installation (qcomm:latest).
  if (tree != "/" && tree != "/usr" && tree != "/usr/local") mounts.push_back(tree.string());
  // Libraries of the benchmark from outside the system folders and outside the tree (CUDA's).
  const fs::path bench = self.parent_path() / "qcomm_allreduce_bench";
  Result<std::string> text = captureCommand({"ldd", bench.string()});
  if (!text.isOk()) return mounts;
  std::set<std::string> seen(mounts.begin(), mounts.end());
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    const size_t arrow = line.find("=> /");
    if (arrow == std::string::npos) continue;
    std::string path = line.substr(arrow + 3);
    path = path.substr(0, path.find(' '));
    const fs::path folder = fs::path(path).parent_path();
    if (systemLibraryFolder(folder) || folder.string().rfind(tree.string() + "/", 0) == 0) continue;
    if (seen.insert(folder.string()).second) mounts.push_back(folder.string());
  }
  return mounts;
}

std::string stoppedContainers(const ClusterSpec& s) {
  std::string text;
  for (int h = 0; h < s.hosts; ++h) {
    Result<std::string> state = captureCommand(withCli(
        s.dockerHost, {"inspect", "--format", "{{.State.Status}} (exit code {{.State.ExitCode}}, "
                                              "OOM-killed {{.State.OOMKilled}})",
                       containerOf(s, h)}));
    std::string line = state.isOk() ? *state : "gone\n";
    if (line.rfind("running", 0) == 0) continue;
    text += "container " + containerOf(s, h) + " (host " + std::to_string(h) + ", " +
            s.addressOf(h) + ") is " + line;
  }
  return text;
}

Result<int> removeDockerContainers(const std::string& host, const std::string& prefix) {
  QCOMM_ASSIGN_OR_RETURN(
      const std::string text,
      captureCommand(withCli(host, {"ps", "-aq", "--filter", "label=qcomm.cluster=" + prefix})));
  Argv remove = withCli(host, {"rm", "-f"});
  std::istringstream in(text);
  for (std::string id; in >> id;) remove.push_back(id);
  const int count = static_cast<int>(remove.size()) - 5;
  if (count > 0) QCOMM_RETURN_IF_ERROR(captureCommand(remove).status());
  return count;
}

Status dockerClusterUp(const ClusterSpec& s) {
  if (!captureCommand(withCli(s.dockerHost, {"image", "inspect", "--format", "{{.Id}}", s.image}))
           .isOk()) {
    return failedPrecondition("image '", s.image, "' is not on the Docker engine at ", s.dockerHost,
                    "; build it (docker/README.md): DOCKER_HOST=", s.dockerHost,
                    " docker/build_images.sh");
  }
  // Containers of an earlier cluster of this name that a crash left on the engine, stopped.
  QCOMM_RETURN_IF_ERROR(removeDockerContainers(s.dockerHost, s.prefix).status());
  std::error_code ec;
  fs::create_directories(s.keys(), ec);
  if (ec) return ioError("cannot create ", s.keys(), ": ", ec.message());
  chmod(s.keys().c_str(), 0700);
  // One key pair for the cluster, made by the image's ssh-keygen (the host may have none).
  if (!fs::exists(s.keys() + "/id_ed25519")) {
    QCOMM_RETURN_IF_ERROR(runCommand(withCli(
        s.dockerHost,
        {"run", "--rm", "--network", "none", "-v", s.keys() + ":/k", s.image, "sh", "-c",
         "ssh-keygen -q -t ed25519 -N '' -C qcomm-cluster-" + s.prefix +
             " -f /k/id_ed25519 && cp /k/id_ed25519.pub /k/authorized_keys && "
             "chmod 600 /k/authorized_keys"})));
  }
  fs::create_directories(s.shared(), ec);
  if (ec) return ioError("cannot create ", s.shared(), ": ", ec.message());
  std::ofstream(s.hostfile()) << clusterHostfile(s);
  std::vector<int> pids;
  for (int h = 0; h < s.hosts; ++h) {
    QCOMM_RETURN_IF_ERROR(captureCommand(dockerRunArgv(s, h)).status());
    QCOMM_ASSIGN_OR_RETURN(
        const std::string pid,
        captureCommand(withCli(s.dockerHost,
                               {"inspect", "--format", "{{.State.Pid}}", containerOf(s, h)})));
    pids.push_back(std::atoi(pid.c_str()));
    if (pids.back() <= 0) return internalError("container ", containerOf(s, h), " has no process");
  }
  for (const Argv& command : clusterUpPlan(s, pids)) QCOMM_RETURN_IF_ERROR(runCommand(command));
  // Ready when host 0 logs in to every host over the shaped links (sshd starting, keys).
  for (int h = 0; h < s.hosts; ++h) {
    const Argv probe = withCli(s.dockerHost, {"exec", containerOf(s, 0), "ssh", "-o",
                                              "BatchMode=yes", "-o", "ConnectTimeout=2",
                                              s.addressOf(h), "true"});
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    Status last = runCommand(probe);
    while (!last.isOk() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      last = runCommand(probe);
    }
    if (!last.isOk()) {
      return deadlineExceeded("host 0 cannot log in to host ", h, " (", s.addressOf(h),
                         ") over ssh within 30 s: ", last.message());
    }
  }
  return Status::ok();
}

}  // namespace qcomm::launcher
