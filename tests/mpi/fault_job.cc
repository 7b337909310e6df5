// A training-like job for the killed-rank tests (tests/mpi/fault_job_test.sh and the cluster
// test): every rank runs compressed allreduces of mixed sizes; rank R, at call K, either dies by
// SIGKILL (--mode kill) or stops answering (--mode stall). A rank whose allreduce fails prints
// the error and ends the job with MPI_Abort, as a training script should.
//
//   qcomm_fault_job --mode kill|stall --rank R --at-call K [--timeout-ms T] [--calls N]
#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "qcomm/communicator.h"
#include "qcomm/mpi_transport.h"

namespace {

struct Args {
  std::string mode = "kill";
  int rank = 1;
  int atCall = 5;
  int timeoutMs = 10000;
  int calls = 1000;
};

bool parse(int argc, char** argv, Args* a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--mode") a->mode = value;
    else if (key == "--rank") a->rank = std::atoi(value.c_str());
    else if (key == "--at-call") a->atCall = std::atoi(value.c_str());
    else if (key == "--timeout-ms") a->timeoutMs = std::atoi(value.c_str());
    else if (key == "--calls") a->calls = std::atoi(value.c_str());
    else return false;
  }
  return (argc % 2) == 1 && (a->mode == "kill" || a->mode == "stall");
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  int me = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  Args args;
  if (!parse(argc, argv, &args)) {
    if (me == 0) {
      std::fprintf(stderr, "usage: qcomm_fault_job --mode kill|stall --rank R --at-call K "
                           "[--timeout-ms T] [--calls N]\n");
    }
    MPI_Finalize();
    return 2;
  }
  auto transport = qcomm::transport::MpiTransport::create(MPI_COMM_WORLD);
  if (!transport.isOk()) {
    std::fprintf(stderr, "rank %d: %s\n", me, transport.status().toString().c_str());
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  qcomm::CommunicatorOptions options;
  options.algorithm = qcomm::Algorithm::kSra;
  options.errorFeedback = true;
  options.timeout = std::chrono::milliseconds(args.timeoutMs);
  auto comm = qcomm::Communicator::create(**transport, options);
  if (!comm.isOk()) {
    std::fprintf(stderr, "rank %d: %s\n", me, comm.status().toString().c_str());
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  const int64_t sizes[] = {1 << 14, 100000, 1 << 18, 3000};
  for (int c = 0; c < args.calls; ++c) {
    if (me == args.rank && c == args.atCall) {
      std::fprintf(stderr, "qcomm_fault_job: rank %d %s at call %d\n", me,
                   args.mode == "kill" ? "kills itself (SIGKILL)" : "stops answering", c);
      std::fflush(stderr);
      if (args.mode == "kill") raise(SIGKILL);
      while (true) pause();  // stalled until the job ends it
    }
    std::vector<float> grad(sizes[c % 4], 0.001f * static_cast<float>(me + c));
    const qcomm::Status s = (*comm)->allreduceMean(grad, "grad" + std::to_string(c % 4));
    if (!s.isOk()) {
      std::fprintf(stderr, "qcomm_fault_job: rank %d, call %d: %s\n", me, c, s.toString().c_str());
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
  }
  if (me == 0) std::printf("qcomm_fault_job: %d calls done\n", args.calls);
  MPI_Finalize();
  return 0;
}
