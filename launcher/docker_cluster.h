// `qcomm cluster up N --docker`: containers as the hosts of an emulated cluster.
//
// Each host is a container started with `--network none`, labelled qcomm.cluster=NAME and named
// NAME-hN. Its network namespace is attached as NAME-hN (`ip netns attach`), so the namespace
// cluster's plan gives it the same veth to the bridge, address and tbf-shaped link in both
// directions. Open MPI reaches the containers over ssh (sshd in the image, one key pair made at
// `up` and mounted read-only at /etc/qcomm/keys), as it would reach real hosts; `mpirun` itself
// runs inside host 0 through `docker exec`.
//
// The engine: $DOCKER_HOST, else the system's socket, else qcomm's own dockerd (state under
// /run/qcomm/docker, started without touching iptables, forwarding or the default bridge),
// which `down` stops again once no container is left on it.
#pragma once

#include <string>
#include <vector>

#include "cluster.h"
#include "process.h"
#include "qcomm/status.h"

namespace qcomm::launcher {

// The docker CLI talking to `host` (unix:///...).
Argv dockerCli(const std::string& host);
// qcomm's own engine: its socket, and the dockerd command that starts it (pure).
std::string ownDockerHost(const std::string& stateRoot);
Argv ownDockerdArgv(const std::string& stateRoot);
// Whether an engine answers at `host`.
bool dockerAnswers(const std::string& host);
// An engine that answers: $DOCKER_HOST (which must answer), the system's, or qcomm's own
// (started when none answers; up to 60 s).
Result<std::string> ensureDockerEngine(const std::string& stateRoot);
// qcomm's own engine, started unless it answers already.
Result<std::string> startOwnDockerEngine(const std::string& stateRoot);
// Stops qcomm's own engine if it runs and holds no container; returns whether it stopped one.
Result<bool> stopOwnDockerEngineIfIdle(const std::string& stateRoot);

// Names and command lines (pure; unit-tested).
std::string containerOf(const ClusterSpec& spec, int host);
Argv dockerRunArgv(const ClusterSpec& spec, int host);
// `docker exec` into host 0, forwarding `environment` (names) and starting in `workdir` when a
// mount holds it; the command to run follows.
Argv dockerExecArgv(const ClusterSpec& spec, const std::vector<std::string>& environment,
                    const std::string& workdir);
// The folders mounted by default: qcomm's own tree (unless it is installed under /usr) and the
// folders of the non-system libraries its benchmark loads (e.g. CUDA's), found with ldd.
std::vector<std::string> defaultDockerMounts();

// Root-only; called by clusterUp / clusterDown for docker clusters.
Status dockerClusterUp(const ClusterSpec& spec);
// After a failed job: the cluster's containers that are not running, one line each ("container
// qd-h2 (host 2, 10.231.92.3) is exited: Exited (137) 3 seconds ago"); empty if all run.
std::string stoppedContainers(const ClusterSpec& spec);
// Removes the containers labelled with `prefix` from the engine at `host`; returns how many.
Result<int> removeDockerContainers(const std::string& host, const std::string& prefix);

}  // namespace qcomm::launcher
