// Pure pieces of the launcher: the mpirun command line and the .npy reader.
#include <gtest/gtest.h>

#include "cluster.h"
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
