// Pure pieces of the launcher: the mpirun command line, cluster plans (namespaces and docker)
// and the .npy reader.
#include <gtest/gtest.h>

#include "cluster.h"
#include "docker_cluster.h"
#include "npy.h"
#include "run_command.h"

namespace qcomm::launcher {
namespace {

TEST(Launcher, MpirunArgvOnThisMachine) {
  RunRequest r;
  r.ranks = 4;
  r.program = {"./bench", "-b", "1M"};
  RunContext c;
  c.cores = 2;
  c.qcommVariables = {"QCOMM_NUM_THREADS"};
  EXPECT_EQ(*mpirunArgv(r, c), (Argv{"mpirun", "-np", "4", "--oversubscribe", "-x",
                                     "QCOMM_NUM_THREADS", "./bench", "-b", "1M"}));
  c.root = true;
  c.cores = 8;
  c.qcommVariables.clear();
  EXPECT_EQ(*mpirunArgv(r, c),
            (Argv{"env", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "mpirun",
                  "-np", "4", "./bench", "-b", "1M"}));
  r.hosts = {"a", "b"};
  EXPECT_EQ(*mpirunArgv(r, RunContext{}),
            (Argv{"mpirun", "-np", "4", "--host", "a,b", "./bench", "-b", "1M"}));
  r.hostfile = "hosts.txt";
  EXPECT_EQ(mpirunArgv(r, RunContext{}).status().message(),
            "give at most one of --hostfile, --hosts and --cluster");
  r.hosts.clear();
  EXPECT_EQ(*mpirunArgv(r, RunContext{}),
            (Argv{"mpirun", "-np", "4", "--hostfile", "hosts.txt", "./bench", "-b", "1M"}));
  r.ranks = 0;
  EXPECT_EQ(mpirunArgv(r, RunContext{}).status().message(), "--np must be >= 1, got 0");
}

TEST(Launcher, MpirunArgvOnAnEmulatedCluster) {
  RunRequest r;
  r.ranks = 4;
  r.cluster = "qc";
  r.program = {"./bench"};
  RunContext c;
  c.root = true;
  c.cores = 4;  // enough for the 4 ranks: no yielding
  ClusterSpec spec;
  spec.prefix = "qc";
  spec.hosts = 4;
  c.cluster = spec;
  EXPECT_EQ(*mpirunArgv(r, c), (Argv{"ip",
                                     "netns",
                                     "exec",
                                     "qc-h0",
                                     "env",
                                     "OMPI_ALLOW_RUN_AS_ROOT=1",
                                     "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                                     "mpirun",
                                     "-np",
                                     "4",
                                     "--hostfile",
                                     "/run/qcomm/qc/hostfile",
                                     "--mca",
                                     "plm_rsh_agent",
                                     "/run/qcomm/qc/agent",
                                     "--mca",
                                     "btl",
                                     "self,tcp",
                                     "--mca",
                                     "btl_tcp_if_include",
                                     "10.231.77.0/24",
                                     "--mca",
                                     "oob_tcp_if_include",
                                     "10.231.77.0/24",
                                     "--mca",
                                     "rtc_hwloc_vmhole",
                                     "none",
                                     "./bench"}));
}

TEST(Launcher, MpirunStyleNpIsAcceptedBeforeTheProgramOnly) {
  using V = std::vector<std::string>;
  EXPECT_EQ(acceptMpirunStyleNp(V{"run", "-np", "4", "./prog", "-np", "7"}),
            (V{"run", "--np", "4", "./prog", "-np", "7"}));
  EXPECT_EQ(acceptMpirunStyleNp(V{"run", "--cluster", "qc", "-np", "2", "--dry-run", "./p"}),
            (V{"run", "--cluster", "qc", "--np", "2", "--dry-run", "./p"}));
  EXPECT_EQ(acceptMpirunStyleNp(V{"bench", "allreduce", "-np", "3", "-b", "1M"}),
            (V{"bench", "allreduce", "--np", "3", "-b", "1M"}));
  EXPECT_EQ(acceptMpirunStyleNp(V{"codec", "info", "-np"}), (V{"codec", "info", "-np"}));
}

TEST(Launcher, ClusterPlanNamesAndShapesEveryLink) {
  ClusterSpec s;
  s.prefix = "qc";
  s.hosts = 2;
  s.link = "1gbit";
  const std::vector<Argv> plan = clusterUpPlan(s);
  ASSERT_EQ(plan.size(), 2u + 2 * 11);
  EXPECT_EQ(plan[0], (Argv{"ip", "link", "add", "qc-br", "type", "bridge"}));
  EXPECT_EQ(plan[2], (Argv{"ip", "netns", "add", "qc-h0"}));
  EXPECT_EQ(plan[9], (Argv{"ip", "netns", "exec", "qc-h0", "ip", "addr", "add", "10.231.77.1/24",
                           "dev", "eth0"}));
  EXPECT_EQ(plan[11],
            (Argv{"ip", "netns", "exec", "qc-h0", "tc", "qdisc", "add", "dev", "eth0", "root",
                  "tbf", "rate", "1gbit", "burst", "500000b", "latency", "100ms"}));
  EXPECT_EQ(plan[12], (Argv{"tc", "qdisc", "add", "dev", "qc-v0", "root", "tbf", "rate", "1gbit",
                            "burst", "500000b", "latency", "100ms"}));
  EXPECT_EQ(clusterHostfile(s).substr(clusterHostfile(s).find('\n') + 1),
            "10.231.77.1 slots=1\n10.231.77.2 slots=1\n");
  EXPECT_NE(clusterAgentScript(s).find("10.231.77.2) ns=qc-h1 ;;"), std::string::npos);
  EXPECT_EQ(*tbfBurst("100mbit"), "65536b");
  EXPECT_EQ(parseClusterSpecText(clusterSpecText(s))->hosts, 2);
}

TEST(Launcher, ClusterWithSeveralSlotsSharesMemoryInsideEachHost) {
  ClusterSpec s;
  s.prefix = "qc";
  s.hosts = 2;
  s.slots = 2;
  EXPECT_EQ(clusterHostfile(s).substr(clusterHostfile(s).find('\n') + 1),
            "10.231.77.1 slots=2\n10.231.77.2 slots=2\n");
  // Each emulated host's ranks keep their shared-memory files apart from the other hosts'.
  EXPECT_NE(clusterAgentScript(s).find("OMPI_MCA_btl_vader_backing_directory=\"$tmp\""),
            std::string::npos);
  EXPECT_EQ(parseClusterSpecText(clusterSpecText(s))->slots, 2);
  RunRequest r;
  r.ranks = 4;
  r.cluster = "qc";
  r.program = {"./bench"};
  RunContext c;
  c.cluster = s;
  c.cores = 2;
  const Argv argv = *mpirunArgv(r, c);
  EXPECT_NE(std::find(argv.begin(), argv.end(), "self,vader,tcp"), argv.end());
  EXPECT_EQ(std::find(argv.begin(), argv.end(), "--oversubscribe"), argv.end());  // 4 slots
  // More ranks than this machine's cores: they yield instead of busy-polling.
  EXPECT_NE(std::find(argv.begin(), argv.end(), "mpi_yield_when_idle"), argv.end());
  c.cores = 4;
  const Argv fits = *mpirunArgv(r, c);
  EXPECT_EQ(std::find(fits.begin(), fits.end(), "mpi_yield_when_idle"), fits.end());
  r.ranks = 5;
  const Argv over = *mpirunArgv(r, c);
  EXPECT_NE(std::find(over.begin(), over.end(), "--oversubscribe"), over.end());
  s.slots = 0;
  EXPECT_EQ(s.validate().message(), "slots must be in [1, 64], got 0");
}

TEST(Launcher, ClusterSpecsAreValidated) {
  ClusterSpec s;
  s.prefix = "Bad_Name";
  EXPECT_EQ(s.validate().message(),
            "cluster name 'Bad_Name' must be a lowercase letter then up to 7 letters or digits");
  s.prefix = "ok";
  s.link = "fast";
  EXPECT_EQ(s.validate().message(), "link rate 'fast' is not a tc rate such as 500mbit or 1gbit");
  s.link = "1gbit";
  s.hosts = 0;
  EXPECT_EQ(s.validate().message(), "hosts must be in [1, 64], got 0");
  s.hosts = 4;
  s.subnet = "10.300.1";
  EXPECT_EQ(s.validate().message(), "subnet '10.300.1' must be three octets such as 10.231.77");
}

ClusterSpec dockerSpec() {
  ClusterSpec s;
  s.prefix = "qd";
  s.hosts = 2;
  s.docker = true;
  s.image = "qcomm:node";
  s.dockerHost = "unix:///run/qcomm/docker/docker.sock";
  s.mounts = {"/src/build", "/opt/cuda/lib"};
  return s;
}

TEST(Launcher, DockerClusterHostsAreContainersWiredByTheSamePlan) {
  const ClusterSpec s = dockerSpec();
  const std::vector<Argv> plan = clusterUpPlan(s, {4242, 4343});
  ASSERT_EQ(plan.size(), 2u + 2 * 11);
  // The container's network namespace is attached under the host's name, not created.
  EXPECT_EQ(plan[2], (Argv{"ip", "netns", "attach", "qd-h0", "4242"}));
  EXPECT_EQ(plan[13], (Argv{"ip", "netns", "attach", "qd-h1", "4343"}));
  EXPECT_EQ(plan[12], (Argv{"tc", "qdisc", "add", "dev", "qd-v0", "root", "tbf", "rate", "1gbit",
                            "burst", "500000b", "latency", "100ms"}));
  EXPECT_EQ(dockerRunArgv(s, 1),
            (Argv{"docker", "-H", "unix:///run/qcomm/docker/docker.sock", "run", "-d", "--name",
                  "qd-h1", "--hostname", "qd-h1", "--network", "none", "--shm-size", "1g",
                  "--label", "qcomm.cluster=qd", "-v", "/run/qcomm/qd/keys:/etc/qcomm/keys:ro",
                  "-v", "/run/qcomm/qd/hostfile:/etc/qcomm/hostfile:ro", "-v",
                  "/run/qcomm/qd/shared:/run/qcomm/qd/shared", "-v", "/src/build:/src/build:ro",
                  "-v", "/opt/cuda/lib:/opt/cuda/lib:ro", "qcomm:node", "qcomm-node", "serve"}));
  const Result<ClusterSpec> back = parseClusterSpecText(clusterSpecText(s));
  ASSERT_TRUE(back.isOk()) << back.status().message();
  EXPECT_TRUE(back->docker);
  EXPECT_EQ(back->image, "qcomm:node");
  EXPECT_EQ(back->dockerHost, s.dockerHost);
  EXPECT_EQ(back->mounts, s.mounts);
  EXPECT_FALSE(parseClusterSpecText(clusterSpecText(ClusterSpec()))->docker);
}

TEST(Launcher, MpirunArgvOnADockerClusterRunsInContainerZeroOverSsh) {
  RunRequest r;
  r.ranks = 2;
  r.cluster = "qd";
  r.program = {"build/bench", "-b", "1M"};
  RunContext c;
  c.cluster = dockerSpec();
  c.cores = 2;
  c.workdir = "/src";
  c.qcommVariables = {"QCOMM_TIMEOUT"};
  const Result<Argv> argv = mpirunArgv(r, c);
  ASSERT_TRUE(argv.isOk()) << argv.status().message();
  EXPECT_EQ(*argv,
            (Argv{"docker", "-H", "unix:///run/qcomm/docker/docker.sock", "exec", "-e",
                  "QCOMM_TIMEOUT", "qd-h0", "env", "OMPI_ALLOW_RUN_AS_ROOT=1",
                  "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "mpirun", "-np", "2", "--hostfile",
                  "/etc/qcomm/hostfile", "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include",
                  "10.231.77.0/24", "--mca", "oob_tcp_if_include", "10.231.77.0/24", "--mca",
                  "rtc_hwloc_vmhole", "none", "-x", "QCOMM_TIMEOUT", "/src/build/bench", "-b",
                  "1M"}));
  // Inside a mount, the job starts where qcomm was started.
  c.workdir = "/src/build/sub";
  r.program = {"../bench"};
  const Argv inside = *mpirunArgv(r, c);
  EXPECT_EQ(std::vector<std::string>(inside.begin() + 4, inside.begin() + 9),
            (Argv{"-e", "QCOMM_TIMEOUT", "-w", "/src/build/sub", "qd-h0"}));
  EXPECT_EQ(inside.back(), "/src/build/bench");
  // A relative path the containers cannot see is an error that says what to mount.
  c.workdir = "/home/me";
  r.program = {"./train"};
  EXPECT_EQ(mpirunArgv(r, c).status().message(),
            "program './train' (/home/me/train) is not inside a folder mounted into the containers "
            "of cluster 'qd' (/src/build, /opt/cuda/lib); bring the cluster up again with --mount "
            "FOLDER");
  // Bare names and absolute paths are the containers' own.
  r.program = {"hostname"};
  EXPECT_EQ(mpirunArgv(r, c)->back(), "hostname");
  r.program = {"/usr/local/bin/qcomm_digits_example"};
  EXPECT_EQ(mpirunArgv(r, c)->back(), "/usr/local/bin/qcomm_digits_example");
}

TEST(Launcher, DockerSpecsAreValidated) {
  ClusterSpec s = dockerSpec();
  s.mounts = {};
  EXPECT_TRUE(s.validate().isOk()) << s.validate().message();
  s.prefix = "docker";
  EXPECT_EQ(s.validate().message(),
            "cluster name 'docker' is taken by qcomm's own Docker engine's state");
  s.prefix = "qd";
  s.image = "-bad image";
  EXPECT_EQ(s.validate().message(), "image '-bad image' is not a Docker image name");
  s.image = "qcomm:node";
  s.mounts = {"relative/dir"};
  EXPECT_EQ(s.validate().message(), "--mount 'relative/dir' must be a folder's absolute path (no ':')");
  s.mounts = {"/a:/b"};
  EXPECT_FALSE(s.validate().isOk());
  s.mounts = {"/tmp"};
  EXPECT_TRUE(s.validate().isOk());
  // qcomm's own engine: no iptables, forwarding, masquerading or default bridge.
  const Argv dockerd = ownDockerdArgv("/run/qcomm");
  for (const char* flag : {"--iptables=false", "--ip-forward=false", "--ip-masq=false",
                           "--bridge=none"}) {
    EXPECT_NE(std::find(dockerd.begin(), dockerd.end(), flag), dockerd.end()) << flag;
  }
  EXPECT_EQ(dockerd.back(), "unix:///run/qcomm/docker/docker.sock");
}

TEST(Launcher, NpyRoundTripsEveryRank) {
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{}, {5}, {2, 3}, {0, 4}}) {
    NpyArray a;
    a.dtype = DType::kFloat64;
    a.shape = shape;
    a.data.resize(a.count() * 8, 0x3F);
    Result<NpyArray> back = parseNpy(formatNpy(a), "mem");
    ASSERT_TRUE(back.isOk()) << back.status().toString();
    EXPECT_EQ(back->shape, shape);
    EXPECT_EQ(back->data, a.data);
    EXPECT_EQ(formatNpy(a).size() % 64, (a.data.size()) % 64);  // data starts 64-byte aligned
  }
}

}  // namespace
}  // namespace qcomm::launcher
