// GoogleTest under mpirun. After each test every rank contributes its pass/fail to an
// MPI_Allreduce, so all ranks report the same outcome and none is left waiting on a failed one.
#include <gtest/gtest.h>
#include <mpi.h>

#if defined(QCOMM_MPI_TESTS_NEED_CUDA)  // the GPU allreduce tests: skip (77) without a device
#include <cstdio>

#include "qcomm/cuda_codec.h"
#endif

namespace {

class AgreeOnOutcome : public ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo& info) override {
    int failed = info.result()->Failed() ? 1 : 0, anyFailed = 0;
    MPI_Allreduce(&failed, &anyFailed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (anyFailed && !failed) {
      ADD_FAILURE() << "another rank failed " << info.test_suite_name() << "." << info.name();
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  // MPI_THREAD_MULTIPLE so the Communicator's asynchronous calls can be tested for real.
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
#if defined(QCOMM_MPI_TESTS_NEED_CUDA)
  if (const qcomm::Status device = qcomm::cuda::deviceAvailable(); !device.isOk()) {
    if (rank == 0) std::printf("SKIP: these tests need a CUDA device: %s\n", device.message().c_str());
    MPI_Finalize();
    return 77;
  }
#endif
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) delete listeners.Release(listeners.default_result_printer());
  listeners.Append(new AgreeOnOutcome);
  const int failed = RUN_ALL_TESTS();
  int anyFailed = 0;
  MPI_Allreduce(&failed, &anyFailed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return anyFailed;
}
