// An emulated cluster on one machine: N hosts as network namespaces on a bridge, each link shaped
// with tbf (this kernel has no netem), a hostfile, and an rsh agent through which Open MPI starts
// its daemons inside the namespaces. Everything is named after the cluster's prefix; addresses
// live only inside the namespaces (the bridge has none), and state lives in /run/qcomm/<prefix>.
//
// With `docker`, each host is a container (docker_cluster.h) started without a network; its
// network namespace is attached under the same name NAME-hN, so that the same plan wires it to
// the bridge, and Open MPI reaches the containers over ssh instead of the rsh agent.
#pragma once

#include <string>
#include <vector>

#include "process.h"
#include "qcomm/status.h"

namespace qcomm::launcher {

struct ClusterSpec {
  std::string prefix = "qcomm";
  int hosts = 4;
  int slots = 1;                     // ranks per host (shared memory among them)
  std::string link = "1gbit";        // tc rate syntax: 500mbit, 1gbit, 2gbit
  std::string subnet = "10.231.77";  // first three octets of a /24
  std::string stateRoot = "/run/qcomm";
  // Containers as hosts (docker_cluster.h).
  bool docker = false;
  std::string image = "qcomm:latest";
  std::string dockerHost;           // the engine's socket, unix:///...
  std::vector<std::string> mounts;  // host folders visible read-only at the same path inside

  Status validate() const;
  std::string stateDir() const { return stateRoot + "/" + prefix; }
  std::string namespaceOf(int host) const { return prefix + "-h" + std::to_string(host); }
  std::string addressOf(int host) const { return subnet + "." + std::to_string(host + 1); }
  std::string bridge() const { return prefix + "-br"; }
  std::string rootVeth(int host) const { return prefix + "-v" + std::to_string(host); }
  std::string hostfile() const { return stateDir() + "/hostfile"; }
  std::string agent() const { return stateDir() + "/agent"; }
  std::string keys() const { return stateDir() + "/keys"; }
  // A docker cluster's one writable shared folder, at this path in every container too.
  std::string shared() const { return stateDir() + "/shared"; }
};

// The commands that build the cluster, in order (pure: compared in unit tests). For a docker
// cluster, `pids` holds each container's process: its network namespace is attached, not added.
std::vector<Argv> clusterUpPlan(const ClusterSpec& spec, const std::vector<int>& pids = {});
// The files `up` writes: hostfile, agent script, spec.
std::string clusterHostfile(const ClusterSpec& spec);
std::string clusterAgentScript(const ClusterSpec& spec);
std::string clusterSpecText(const ClusterSpec& spec);
Result<ClusterSpec> parseClusterSpecText(const std::string& text);
// tbf burst for a rate: enough for 4 ms at that rate, at least 64 KB.
Result<std::string> tbfBurst(const std::string& rate);

// Root-only operations.
Status clusterUp(const ClusterSpec& spec);
// Removes the namespaces, bridge and veths named after `prefix`, and its state, whether or not
// the state survived (after a crash it finds leftovers by prefix).
Status clusterDown(const std::string& prefix, const std::string& stateRoot = "/run/qcomm");
Result<ClusterSpec> loadCluster(const std::string& prefix,
                                const std::string& stateRoot = "/run/qcomm");
// What exists of the cluster now (namespaces, links) as text.
Result<std::string> clusterStatus(const std::string& prefix,
                                  const std::string& stateRoot = "/run/qcomm");
// Namespaces and links whose names start with "<prefix>-".
Result<std::vector<std::string>> leftoverNamespaces(const std::string& prefix);
Result<std::vector<std::string>> leftoverLinks(const std::string& prefix);

}  // namespace qcomm::launcher
