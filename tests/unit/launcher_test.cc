// Pure pieces of the launcher: the mpirun command line and the .npy reader.
#include <gtest/gtest.h>

#include "bench_command.h"
#include "npy.h"

namespace qcomm::launcher {
namespace {

TEST(Launcher, BenchAllreduceArgv) {
  EXPECT_EQ(
      benchAllreduceArgv("/b/bench", 4, false, {"-b", "1M"}),
      (std::vector<std::string>{"mpirun", "-np", "4", "--oversubscribe", "/b/bench", "-b", "1M"}));
  EXPECT_EQ(benchAllreduceArgv("/b/bench", 2, true, {}),
            (std::vector<std::string>{"env", "OMPI_ALLOW_RUN_AS_ROOT=1",
                                      "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "mpirun", "-np", "2",
                                      "--oversubscribe", "/b/bench"}));
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
