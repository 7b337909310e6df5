#include "cluster.h"

#include "docker_cluster.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace qcomm::launcher {
namespace {

const std::regex kRate(R"((\d+(\.\d+)?)(k|m|g)?bit)");
const std::regex kPrefix(R"([a-z][a-z0-9]{0,7})");  // leaves room in 15-char interface names

Status requireRoot(const char* what) {
  if (!runningAsRoot()) {
    return failedPrecondition("'", what, "' needs root: emulated clusters are network "
                              "namespaces, veth links and tc qdiscs; run it with sudo or as root");
  }
  return Status::ok();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

Status writeText(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return ioError("cannot write ", path);
  chmod(path.c_str(), mode);
  return Status::ok();
}

}  // namespace

Status ClusterSpec::validate() const {
  if (!std::regex_match(prefix, kPrefix)) {
    return invalidArgument("cluster name '", prefix,
                           "' must be a lowercase letter then up to 7 letters or digits");
  }
  if (prefix == "docker") {
    return invalidArgument("cluster name 'docker' is taken by qcomm's own Docker engine's state");
  }
  if (docker) {
    static const std::regex imageName(R"([a-zA-Z0-9][a-zA-Z0-9_.:/@-]*)");
    if (!std::regex_match(image, imageName)) {
      return invalidArgument("image '", image, "' is not a Docker image name");
    }
    for (const std::string& m : mounts) {
      if (m.empty() || m[0] != '/' || m.find(':') != std::string::npos) {
        return invalidArgument("--mount '", m, "' must be a folder's absolute path (no ':')");
      }
    }
  }
  if (hosts < 1 || hosts > 64) return invalidArgument("hosts must be in [1, 64], got ", hosts);
  if (slots < 1 || slots > 64) return invalidArgument("slots must be in [1, 64], got ", slots);
  if (!std::regex_match(link, kRate)) {
    return invalidArgument("link rate '", link, "' is not a tc rate such as 500mbit or 1gbit");
  }
  static const std::regex octets(R"((\d{1,3})\.(\d{1,3})\.(\d{1,3}))");
  std::smatch m;
  if (!std::regex_match(subnet, m, octets) || std::stoi(m[1]) > 255 || std::stoi(m[2]) > 255 ||
      std::stoi(m[3]) > 255) {
    return invalidArgument("subnet '", subnet, "' must be three octets such as 10.231.77");
  }
  return Status::ok();
}

Result<std::string> tbfBurst(const std::string& rate) {
  std::smatch m;
  if (!std::regex_match(rate, m, kRate)) return invalidArgument("bad rate '", rate, "'");
  double bits = std::stod(m[1]);
  const std::string unit = m[3];
  bits *= unit == "k" ? 1e3 : unit == "m" ? 1e6 : unit == "g" ? 1e9 : 1.0;
  const int64_t bytes = std::max<int64_t>(64 * 1024, static_cast<int64_t>(bits / 8 * 0.004));
  return std::to_string(bytes) + "b";
}

std::vector<Argv> clusterUpPlan(const ClusterSpec& s, const std::vector<int>& pids) {
  const std::string burst = tbfBurst(s.link).value();
  std::vector<Argv> plan = {{"ip", "link", "add", s.bridge(), "type", "bridge"},
                            {"ip", "link", "set", s.bridge(), "up"}};
  for (int h = 0; h < s.hosts; ++h) {
    const std::string ns = s.namespaceOf(h), veth = s.rootVeth(h);
    const std::string peer = s.prefix + "-p" + std::to_string(h);
    const Argv inNs = {"ip", "netns", "exec", ns};
    auto in = [&](Argv cmd) {
      Argv full = inNs;
      full.insert(full.end(), cmd.begin(), cmd.end());
      return full;
    };
    if (s.docker) {
      plan.push_back({"ip", "netns", "attach", ns, std::to_string(pids.at(h))});
    } else {
      plan.push_back({"ip", "netns", "add", ns});
    }
    plan.push_back({"ip", "link", "add", veth, "type", "veth", "peer", "name", peer});
    plan.push_back({"ip", "link", "set", peer, "netns", ns});
    plan.push_back({"ip", "link", "set", veth, "master", s.bridge()});
    plan.push_back({"ip", "link", "set", veth, "up"});
    plan.push_back(in({"ip", "link", "set", "lo", "up"}));
    plan.push_back(in({"ip", "link", "set", peer, "name", "eth0"}));
    plan.push_back(in({"ip", "addr", "add", s.addressOf(h) + "/24", "dev", "eth0"}));
    plan.push_back(in({"ip", "link", "set", "eth0", "up"}));
    // Both directions of the host's link: out of the host, and out of the bridge towards it.
    plan.push_back(in({"tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", s.link, "burst",
                       burst, "latency", "100ms"}));
    plan.push_back({"tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", s.link, "burst",
                    burst, "latency", "100ms"});
  }
  return plan;
}

std::string clusterHostfile(const ClusterSpec& s) {
  std::string text = "# qcomm emulated cluster '" + s.prefix + "': " + std::to_string(s.hosts) +
                     " hosts x " + std::to_string(s.slots) + " slots, " + s.link + " links\n";
  for (int h = 0; h < s.hosts; ++h) {
    text += s.addressOf(h) + " slots=" + std::to_string(s.slots) + "\n";
  }
  return text;
}

std::string clusterAgentScript(const ClusterSpec& s) {
  // Open MPI calls "<agent> <host> <command>" as it would ssh; run the command in the host's
  // namespace instead, through a shell as ssh would.
  std::string text = "#!/bin/sh\n# rsh agent of the qcomm emulated cluster '" + s.prefix +
                     "' (made by qcomm cluster up)\nhost=$1\nshift\ncase \"$host\" in\n";
  for (int h = 0; h < s.hosts; ++h) {
    text += "  " + s.addressOf(h) + ") ns=" + s.namespaceOf(h) + " ;;\n";
  }
  text +=
      "  *) echo \"qcomm cluster agent: unknown host $host\" >&2; exit 1 ;;\nesac\n"
      // Every namespace shares /tmp, /dev/shm and the hostname, so Open MPI's per-host session
      // directories and vader's shared-memory segments would collide (ranks crash in
      // MPI_Comm_dup): each host's daemon, and the ranks it starts, get their own.
      "tmp=" +
      s.stateDir() +
      "/tmp/$ns\nmkdir -p \"$tmp\"\n"
      "exec ip netns exec \"$ns\" env OMPI_MCA_orte_tmpdir_base=\"$tmp\" "
      "OMPI_MCA_btl_vader_backing_directory=\"$tmp\" sh -c \"$*\"\n";
  return text;
}

std::string clusterSpecText(const ClusterSpec& s) {
  std::string text = "prefix=" + s.prefix + "\nhosts=" + std::to_string(s.hosts) +
                     "\nslots=" + std::to_string(s.slots) + "\nlink=" + s.link +
                     "\nsubnet=" + s.subnet + "\n";
  if (s.docker) {
    text += "docker=1\nimage=" + s.image + "\ndocker_host=" + s.dockerHost + "\n";
    for (const std::string& m : s.mounts) text += "mount=" + m + "\n";
  }
  return text;
}

Result<ClusterSpec> parseClusterSpecText(const std::string& text) {
  ClusterSpec s;
  for (const std::string& line : lines(text)) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "prefix") s.prefix = value;
    if (key == "hosts") s.hosts = std::atoi(value.c_str());
    if (key == "slots") s.slots = std::atoi(value.c_str());
    if (key == "link") s.link = value;
    if (key == "subnet") s.subnet = value;
    if (key == "docker") s.docker = value == "1";
    if (key == "image") s.image = value;
    if (key == "docker_host") s.dockerHost = value;
    if (key == "mount") s.mounts.push_back(value);
  }
  QCOMM_RETURN_IF_ERROR(s.validate().withContext("cluster state: "));
  return s;
}

Result<std::vector<std::string>> leftoverNamespaces(const std::string& prefix) {
  QCOMM_ASSIGN_OR_RETURN(const std::string text, captureCommand({"ip", "netns", "list"}));
  std::vector<std::string> found;
  const std::regex mine(prefix + R"(-h\d+)");
  for (const std::string& line : lines(text)) {
    const std::string name = line.substr(0, line.find(' '));
    if (std::regex_match(name, mine)) found.push_back(name);
  }
  return found;
}

Result<std::vector<std::string>> leftoverLinks(const std::string& prefix) {
  QCOMM_ASSIGN_OR_RETURN(const std::string text, captureCommand({"ip", "-o", "link", "show"}));
  std::vector<std::string> found;
  const std::regex mine(R"(^\d+: ()" + prefix + R"(-(br|v\d+|p\d+))[@:])");
  std::smatch m;
  for (const std::string& line : lines(text)) {
    if (std::regex_search(line, m, mine)) found.push_back(m[1]);
  }
  return found;
}

Result<ClusterSpec> loadCluster(const std::string& prefix, const std::string& stateRoot) {
  const std::string path = stateRoot + "/" + prefix + "/spec";
  std::ifstream in(path);
  if (!in) {
    return failedPrecondition("no emulated cluster named '", prefix, "' (", path,
                              " is missing); start one with: qcomm cluster up 4 --prefix ", prefix);
  }
  std::stringstream text;
  text << in.rdbuf();
  QCOMM_ASSIGN_OR_RETURN(ClusterSpec spec, parseClusterSpecText(text.str()));
  spec.stateRoot = stateRoot;
  return spec;
}

Status clusterUp(const ClusterSpec& requested) {
  QCOMM_RETURN_IF_ERROR(requested.validate());
  QCOMM_RETURN_IF_ERROR(requireRoot("up"));
  ClusterSpec spec = requested;
  if (spec.docker) {
    for (const std::string& m : spec.mounts) {
      if (!std::filesystem::is_directory(m)) {
        return invalidArgument("--mount '", m, "' is not an existing folder");
      }
    }
    std::vector<std::string> mounts = defaultDockerMounts();
    for (const std::string& m : spec.mounts) {
      if (std::find(mounts.begin(), mounts.end(), m) == mounts.end()) mounts.push_back(m);
    }
    spec.mounts = mounts;
    QCOMM_ASSIGN_OR_RETURN(spec.dockerHost, ensureDockerEngine(spec.stateRoot));
  }
  // Idempotent: the same cluster already up is fine; anything else by these names is not ours.
  Result<ClusterSpec> existing = loadCluster(spec.prefix, spec.stateRoot);
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> namespaces,
                         leftoverNamespaces(spec.prefix));
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> links, leftoverLinks(spec.prefix));
  if (existing.isOk()) {
    if (clusterSpecText(*existing) != clusterSpecText(spec)) {
      return failedPrecondition(
          "cluster '", spec.prefix, "' is already up with a different shape (", existing->hosts,
          " hosts x ", existing->slots, " slots, ", existing->link, "); run qcomm cluster down ", spec.prefix, " first");
    }
    if (static_cast<int>(namespaces.size()) == spec.hosts) return Status::ok();
  } else if (!namespaces.empty() || !links.empty()) {
    return failedPrecondition(
        "refusing to touch ", namespaces.size() + links.size(), " namespaces/links named '",
        spec.prefix, "-*' that qcomm did not record creating (e.g. ",
        namespaces.empty() ? links[0] : namespaces[0],
        "); pick another --prefix, or remove them with qcomm cluster down ", spec.prefix);
  }
  // Another cluster of ours on the same subnet would share addresses.
  std::error_code ec;
  if (std::filesystem::exists(spec.stateRoot, ec)) {
    for (const auto& entry : std::filesystem::directory_iterator(spec.stateRoot, ec)) {
      const std::string other = entry.path().filename();
      if (other == spec.prefix) continue;
      Result<ClusterSpec> o = loadCluster(other, spec.stateRoot);
      if (o.isOk() && o->subnet == spec.subnet) {
        return failedPrecondition("cluster '", other, "' already uses subnet ", spec.subnet,
                                  ".0/24; pass --subnet");
      }
    }
  }
  std::filesystem::create_directories(spec.stateDir(), ec);
  if (ec) return ioError("cannot create ", spec.stateDir(), ": ", ec.message());
  // The spec goes first, so that a crash half-way leaves something `down` recognises.
  QCOMM_RETURN_IF_ERROR(writeText(spec.stateDir() + "/spec", clusterSpecText(spec), 0644));
  if (spec.docker) {
    const Status s = dockerClusterUp(spec);
    if (!s.isOk()) (void)clusterDown(spec.prefix, spec.stateRoot);
    return s.withContext("qcomm cluster up --docker (undone): ");
  }
  for (const Argv& command : clusterUpPlan(spec)) {
    const Status s = runCommand(command);
    if (!s.isOk()) {
      (void)clusterDown(spec.prefix, spec.stateRoot);
      return s.withContext("qcomm cluster up (undone): ");
    }
  }
  QCOMM_RETURN_IF_ERROR(writeText(spec.hostfile(), clusterHostfile(spec), 0644));
  QCOMM_RETURN_IF_ERROR(writeText(spec.agent(), clusterAgentScript(spec), 0755));
  return Status::ok();
}

Status clusterDown(const std::string& prefix, const std::string& stateRoot) {
  if (!std::regex_match(prefix, kPrefix)) {
    return invalidArgument("cluster name '", prefix, "' is not one qcomm would have made");
  }
  QCOMM_RETURN_IF_ERROR(requireRoot("down"));
  Status first;
  // Containers first: their network namespaces are attached under the names removed below.
  const Result<ClusterSpec> spec = loadCluster(prefix, stateRoot);
  std::vector<std::string> engines;
  if (spec.isOk() && spec->docker) {
    // After a crash of qcomm's own engine its containers may still run: start it to remove them.
    if (spec->dockerHost == ownDockerHost(stateRoot) && !dockerAnswers(spec->dockerHost)) {
      Result<std::string> own = startOwnDockerEngine(stateRoot);
      if (!own.isOk()) first = own.status();
    }
    engines.push_back(spec->dockerHost);
  } else if (!spec.isOk()) {
    // No state (lost, or a crash before it was written): ask every engine that answers, and
    // qcomm's own even if it is down (its containers outlive a crashed daemon).
    if (!dockerAnswers(ownDockerHost(stateRoot)) &&
        captureCommand({"pgrep", "-f", "containerd-shim.* -address " + stateRoot + "/docker/"})
            .isOk()) {
      (void)startOwnDockerEngine(stateRoot);
    }
    for (const std::string& host : {ownDockerHost(stateRoot),
                                    std::string("unix:///var/run/docker.sock")}) {
      if (dockerAnswers(host)) engines.push_back(host);
    }
  }
  for (const std::string& host : engines) {
    const Status s = removeDockerContainers(host, prefix).status();
    if (!s.isOk() && first.isOk()) first = s;
  }
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> namespaces, leftoverNamespaces(prefix));
  for (const std::string& ns : namespaces) {
    // Processes left inside (an interrupted run) would keep the namespace alive.
    (void)runCommand({"sh", "-c", "ip netns pids " + ns + " | xargs -r kill -9"});
    const Status s = runCommand({"ip", "netns", "del", ns});
    if (first.isOk() && !s.isOk()) first = s;
  }
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> links, leftoverLinks(prefix));
  for (const std::string& link : links) {
    (void)runCommand({"ip", "link", "del", link});  // a veth may vanish with its peer meanwhile
  }
  // Containers that could not be removed keep the state, so that another `down` can retry.
  if (!first.isOk() && spec.isOk() && spec->docker) return first;
  std::error_code ec;
  std::filesystem::remove_all(stateRoot + "/" + prefix, ec);
  if ((spec.isOk() && spec->docker) || !engines.empty()) {
    Result<bool> stopped = stopOwnDockerEngineIfIdle(stateRoot);
    if (!stopped.isOk() && first.isOk()) first = stopped.status();
  }
  return first;
}

Result<std::string> clusterStatus(const std::string& prefix, const std::string& stateRoot) {
  QCOMM_RETURN_IF_ERROR(requireRoot("status"));
  Result<ClusterSpec> spec = loadCluster(prefix, stateRoot);
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> namespaces, leftoverNamespaces(prefix));
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> links, leftoverLinks(prefix));
  std::string text;
  if (spec.isOk()) {
    text += "cluster " + prefix + ": " + std::to_string(spec->hosts) + " hosts x " +
            std::to_string(spec->slots) + " slots, " + spec->link +
            " links, subnet " + spec->subnet + ".0/24\nhostfile " + spec->hostfile() + "\n";
  } else {
    text += "cluster " + prefix + ": no state in " + stateRoot + "\n";
  }
  text += std::to_string(namespaces.size()) + " namespaces, " + std::to_string(links.size()) +
          " links in the root namespace\n";
  for (const std::string& ns : namespaces) text += "  " + ns + "\n";
  if (spec.isOk() && spec->docker) {
    Result<std::string> ps = captureCommand(
        {"docker", "-H", spec->dockerHost, "ps", "-a", "--filter", "label=qcomm.cluster=" + prefix,
         "--format", "{{.Names}} {{.Status}} ({{.Image}})"});
    const std::string list = ps.isOk() ? *ps : "  (the engine does not answer)\n";
    text += "containers on " + spec->dockerHost + ", image " + spec->image + ":\n";
    for (const std::string& line : lines(list)) text += "  " + line + "\n";
    for (const std::string& m : spec->mounts) text += "mounted read-only: " + m + "\n";
  }
  return text;
}

}  // namespace qcomm::launcher
