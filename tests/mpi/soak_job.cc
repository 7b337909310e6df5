// The soak (issue 15): N compressed allreduces (mixed sizes, blocking and asynchronous, error
// feedback on) on every rank, sampling resident memory and open descriptors every --every calls.
// Rank 0 prints the samples; the job fails (exit 1) when, after the warm-up, resident memory grew
// by more than --slack-mb on any rank or the descriptor count changed.
//
//   qcomm_soak_job [--calls N] [--every K] [--warmup W] [--slack-mb M]
//
// QCOMM_SOAK_SLACK_MB overrides the slack: under AddressSanitizer, whose quarantine keeps up to
// 256 MB of freed memory, resident memory says nothing and LeakSanitizer is the check.
#include <dirent.h>
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "qcomm/communicator.h"
#include "qcomm/mpi_transport.h"

namespace {

long residentKb() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

long openDescriptors() {
  long n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) ++n;
    closedir(d);
  }
  return n - 3;  // ".", ".." and the directory's own descriptor
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int me = 0, p = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  long calls = 10000, every = 500, warmup = 1000, slackMb = 16;
  if (const char* slack = std::getenv("QCOMM_SOAK_SLACK_MB")) slackMb = std::atol(slack);
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const long value = std::atol(argv[i + 1]);
    if (key == "--calls") calls = value;
    else if (key == "--every") every = value;
    else if (key == "--warmup") warmup = value;
    else if (key == "--slack-mb") slackMb = value;
  }
  auto transport = qcomm::transport::MpiTransport::create(MPI_COMM_WORLD);
  qcomm::CommunicatorOptions options;
  options.algorithm = qcomm::Algorithm::kAuto;
  options.errorFeedback = true;
  options.minCompressNumel = 1024;
  auto comm = transport.isOk() ? qcomm::Communicator::create(**transport, options)
                               : qcomm::Result<std::unique_ptr<qcomm::Communicator>>(
                                     transport.status());
  if (!comm.isOk()) {
    std::fprintf(stderr, "rank %d: %s\n", me, comm.status().toString().c_str());
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  // Sizes from 100 values (uncompressed) to 2^18; a list call every 7th.
  const int64_t sizes[] = {100, 3000, 1 << 14, 50000, 1 << 18, 777, 120000};
  std::vector<std::vector<float>> grads(7);
  long baseRss = 0, baseFds = 0, maxGrowthKb = 0, fdChanges = 0;
  if (me == 0) std::printf("%8s %12s %8s\n", "calls", "rss_kb(r0)", "fds(r0)");
  for (long c = 0; c < calls; ++c) {
    const int k = static_cast<int>(c % 7);
    grads[k].assign(sizes[k], 0.001f * static_cast<float>((me + 1) * (c % 13)));
    qcomm::Status s;
    if (k == 6) {
      std::vector<qcomm::NamedTensor> list = {{"a", grads[6]}, {"b", grads[0]}};
      s = (*comm)->allreduceMean(list);
    } else if (c % 2 == 0) {
      s = (*comm)->allreduceMean(grads[k], "t" + std::to_string(k));
    } else {
      auto pending = (*comm)->allreduceMeanAsync(grads[k], "t" + std::to_string(k));
      s = pending.isOk() ? pending->wait() : pending.status();
    }
    if (!s.isOk()) {
      std::fprintf(stderr, "rank %d, call %ld: %s\n", me, c, s.toString().c_str());
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    if ((c + 1) % every == 0) {
      const long rss = residentKb(), fds = openDescriptors();
      if (c + 1 == warmup) {
        baseRss = rss;
        baseFds = fds;
      } else if (c + 1 > warmup) {
        maxGrowthKb = std::max(maxGrowthKb, rss - baseRss);
        fdChanges += fds != baseFds;
      }
      if (me == 0) std::printf("%8ld %12ld %8ld\n", c + 1, rss, fds);
    }
  }
  long worstGrowth = 0, worstFds = 0;
  MPI_Allreduce(&maxGrowthKb, &worstGrowth, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(&fdChanges, &worstFds, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
  const bool ok = worstGrowth <= slackMb * 1024 && worstFds == 0;
  if (me == 0) {
    std::printf("soak: %ld calls on %d ranks; after %ld calls of warm-up, resident memory grew by "
                "at most %ld KB on any rank (allowed %ld MB), descriptor count changed %ld "
                "times: %s\n",
                calls, p, warmup, worstGrowth, slackMb, worstFds, ok ? "PASSED" : "FAILED");
  }
  comm->reset();
  transport->reset();
  MPI_Finalize();
  return ok ? 0 : 1;
}
