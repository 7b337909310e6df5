// The Communicator: allreduceMean with QSGD-compressed messages over any transport.
// Each rank encodes, the words travel, every rank decodes and averages; all ranks end with
// bit-identical values. Nothing throws: every call returns a Status naming rank, tensor, expected
// and actual values.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qcomm/any_codec.h"
#include "qcomm/codec.h"
#include "qcomm/executor.h"
#include "qcomm/topology.h"
#include "qcomm/transport.h"

namespace qcomm {

namespace collectives {
struct Workspace;
}  // namespace collectives

enum class Algorithm {
  kAuto,          // decided per call: from measurements when the communicator was created
  kAllgather,     // every rank's codes to every rank: one quantization
  kSra,           // scatter-reduce-allgather: bandwidth-optimal, two quantizations
  kUncompressed,  // the transport's float allreduce
  kHierarchical,  // reduce inside hosts uncompressed, compress only across hosts
};

std::string_view algorithmName(Algorithm algorithm);
Result<Algorithm> parseAlgorithm(std::string_view name);

// Codec specs: "qsgd:bits=4,bucket=512,norm=max,layout=compact" (every key optional; bucket=0
// means the whole tensor; random_bits=32 draws 32 random bits per value instead of the default 16,
// and codecSpec names it only then). The error names the key or value that is wrong.
Result<QsgdOptions> parseCodecSpec(std::string_view spec);
std::string codecSpec(const QsgdOptions& options);

// "qsgd:..." or "linear:...", "percentile:...", "dynamic:...", "rowwise:...", "fp16", "bf16".
Result<CodecConfig> parseAnyCodecSpec(std::string_view spec);
std::string anyCodecSpec(const CodecConfig& codec);
// The most a value with |x| <= 1 can move through the codec (one quantization step; percentile
// adds 0.1 for what clipping cuts off; QSGD with the L2 norm: in units of the bucket's L2 norm, not
// of max |x|). Benchmarks and tests check results against it.
double codecStepBound(const CodecConfig& codec);
// The most one quantization under `codec` can move each value of a tensor whose absolute values
// are `magnitudes`, whatever the chunk and slice boundaries: QSGD's step (the bucket's norm / s)
// with the norm taken over the 2B-1 values around each one (the whole tensor for bucket=0), the
// block quantizers' codecStepBound times the largest magnitude. Float rounding is not included.
std::vector<double> quantizationErrorBounds(const CodecConfig& codec,
                                            std::span<const double> magnitudes);

struct CommunicatorOptions {
  // 16 random bits per value (every spec's default since 2026-12-04, named here as before): the
  // encoder's Philox work halves, for a rounding bias of at most 2^-16 of a step
  // (docs/performance.md, "QSGD encode" and "16-bit draws by default").
  std::string codec = "qsgd:bits=4,bucket=512,norm=max,layout=compact,random_bits=16";
  Algorithm algorithm = Algorithm::kAuto;
  bool errorFeedback = false;
  uint64_t seed = 0;
  int64_t minCompressNumel = int64_t{1} << 14;  // smaller tensors go uncompressed
  // Large tensors are pipelined in chunks of this (hierarchical across hosts: of at most 256K
  // values, kHierarchicalChunkNumel, so that its host-level steps run in cache).
  int64_t chunkNumel = int64_t{1} << 22;
  // Agree on tensor names and sizes before every collective, and on its outcome after it (a
  // rank that received a damaged message makes the call fail on every rank).
  bool checkSizes = true;
  // Ranks per host for the hierarchical algorithm and `auto`: ranks [0, K) on host 0, [K, 2K) on
  // host 1, ... (the last host may have fewer). 0: QCOMM_RANKS_PER_HOST, else the transport says
  // (MPI: shared-memory domains; gloo: host names).
  int ranksPerHost = 0;
  // How long a collective waits for the other ranks before every rank that waits fails with
  // DeadlineExceeded naming the operation and the ranks not heard from (set on the transport at
  // creation). Zero: QCOMM_TIMEOUT seconds (default 300); negative: no limit. A timeout is not
  // recoverable: the transport is broken afterwards (docs/reliability.md).
  std::chrono::milliseconds timeout{0};

  Status validate() const;
  // One line that every rank must agree on.
  std::string describe() const;
};

// The algorithm for one allreduce of `count` values: a pure function, unit-tested.
Algorithm selectAlgorithm(int64_t count, int worldSize, const transport::Capabilities& caps,
                          const CommunicatorOptions& options);

struct NamedTensor {
  std::string name;
  std::span<float> data;
};

struct CommunicatorStats {
  uint64_t calls = 0;
  uint64_t bytesSent = 0;      // payload this rank handed to the transport
  uint64_t bytesReceived = 0;  // payload delivered to this rank
  // Of bytesSent, what went to ranks on other hosts.
  uint64_t bytesSentAcrossHosts = 0;
  // The last call: the algorithm it ran and, under `auto` with measurements, the prediction
  // for every algorithm (zeros otherwise).
  Algorithm lastAlgorithm = Algorithm::kAuto;
  AlgorithmCosts lastPrediction;
  // Calls on which auto timed an algorithm it was trying (docs/algorithms.md, "How auto decides").
  uint64_t autoTrials = 0;
  // Times a settled size's trials began again: after AutoTrials::kRecheckEvery calls, or at
  // once when its watched calls slowed (AutoTrials::watch); the re-check's trials count in
  // autoTrials.
  uint64_t autoRechecks = 0;
};

// When an asynchronous call was submitted, started on the worker thread and finished (steady
// clock: CLOCK_MONOTONIC on Linux, the clock of Python's time.monotonic). Zero until it happened.
struct PendingTimes {
  std::chrono::steady_clock::time_point submitted, started, finished;
};

// A started asynchronous allreduce; wait() returns its Status. The data it was given must stay
// alive and untouched until then.
class PendingAllreduce {
 public:
  PendingAllreduce() = default;
  PendingAllreduce(std::shared_future<Status> done, std::shared_ptr<const PendingTimes> times)
      : done_(std::move(done)), times_(std::move(times)) {}
  Status wait() const;
  bool valid() const { return done_.valid(); }
  // Its times: read them after wait() has returned (the worker writes them before).
  PendingTimes times() const { return times_ ? *times_ : PendingTimes{}; }

 private:
  std::shared_future<Status> done_;
  std::shared_ptr<const PendingTimes> times_;
};

class Communicator {
 public:
  // Agrees on the configuration with every rank of `transport` (a mismatch is an error on every
  // rank). The transport and executor must outlive the communicator.
  static Result<std::unique_ptr<Communicator>> create(transport::Transport& transport,
                                                      const CommunicatorOptions& options,
                                                      Executor* executor = nullptr);

  // Replaces data with the mean over ranks. `key` names the tensor: it keys error feedback and
  // the random stream, and must be the same on every rank.
  Status allreduceMean(std::span<float> data, std::string_view key = "tensor");
  // Several named tensors in one call: large ones fused into one compressed message, small ones
  // (under minCompressNumel) into one uncompressed allreduce, even when together they hold more.
  Status allreduceMean(std::span<const NamedTensor> tensors);

  // The same, on the communicator's worker thread, so a training loop can go on with backward
  // while gradients travel. Calls run in submission order on every rank. A blocking call waits
  // for the pending ones first. Needs a transport whose capabilities allow otherThreads.
  Result<PendingAllreduce> allreduceMeanAsync(std::span<float> data, std::string key = "tensor");
  Result<PendingAllreduce> allreduceMeanAsync(std::vector<NamedTensor> tensors);

  // Error-feedback state, for checkpoints (Boost.Serialization binary archive). Each waits for
  // pending asynchronous calls first.
  Status saveState(std::ostream& out);
  // loadState reads `in` to its end and allocates no more than its size justifies: a forged
  // length is a DataLoss, not a huge allocation.
  Status loadState(std::istream& in);
  Status resetState();

  ~Communicator();
  const CommunicatorOptions& options() const { return options_; }
  const CommunicatorStats& stats() const { return stats_; }
  const HostLayout& layout() const { return layout_; }
  // What `auto` measured at creation; null for pinned algorithms and single ranks.
  const CostParameters* costParameters() const {
    return measured_ ? &costParameters_ : nullptr;
  }
  // The algorithm the next call of `count` values runs (the same on every rank; under auto it
  // may change after the first calls of a size, its trials).
  Algorithm algorithmFor(int64_t count) const;
  // Under auto, the seconds each algorithm is estimated to take on `count` values: the model's
  // prediction / AutoTrials::kTrust until an algorithm has run warm, then the median of its
  // trials' times (docs/algorithms.md, "How auto decides"); all zero for pinned algorithms.
  AlgorithmCosts autoEstimates(int64_t count) const;
  uint64_t step() const { return step_; }

 private:
  Communicator(transport::Transport& transport, CommunicatorOptions options, CodecConfig codec,
               Executor* executor);
  // Every rank has `mine` and would run `algorithm` on it, or an error on every rank.
  Status checkAgreement(std::string_view what, const std::string& mine,
                        std::string_view algorithm);
  // The bodies of the public calls, without waiting for pending asynchronous ones (the worker
  // thread runs these).
  // `pinned`: run this algorithm instead of the one algorithmFor() picks.
  Status reduce(std::span<float> data, const std::string& key,
                std::optional<Algorithm> pinned = std::nullopt);
  Status reduceChecked(std::span<float> data, const std::string& key);
  // After a call whose collectives all ran: every rank learns whether any rank received damaged
  // data (`damaged` is this rank's), and all fail together if one did. Where `seconds` (this
  // rank's time of the call) is given, every rank also learns the slowest rank's time, and
  // auto records it: as a trial (`trial`, also where the per-call checks are off), or as a
  // settled call it watches.
  Status agreeOnOutcome(const std::string& key, const Status& damaged, int64_t count,
                        Algorithm algorithm, std::optional<double> seconds, bool trial);
  // auto's choice for `count` values, and whether the call is one of its trials.
  AutoTrials::Choice choiceFor(int64_t count) const;
  // Whether auto times algorithms on calls of `count` values (trials_ decides them).
  bool triesAlgorithms(int64_t count) const;
  Status reduceList(std::span<const NamedTensor> tensors);
  Status asyncAllowed() const;

  transport::Transport& transport_;
  CommunicatorOptions options_;
  CodecConfig codec_;
  Executor* executor_;
  uint64_t step_ = 0;
  CommunicatorStats stats_;
  // Error feedback per tensor key: the sender's residual and (sra) the owner's residual.
  std::map<std::string, std::vector<float>> residuals_;
  std::map<std::string, std::vector<float>> ownerResiduals_;
  // The algorithm each key ran last: auto may change it, and the residuals of one algorithm mean
  // nothing to another.
  std::map<std::string, Algorithm> algorithmOfKey_;
  std::vector<float> work_;  // reused scratch
  std::unique_ptr<collectives::Workspace> workspace_;  // the schedules' reused buffers
  HostLayout layout_;
  std::unique_ptr<transport::Transport> intra_, cross_;  // hierarchical: this host, this slice
  bool measured_ = false;
  CostParameters costParameters_;
  AutoTrials trials_;
  bool debug_ = false;  // QCOMM_DEBUG=1
  Status setUpHierarchy();
  Status measure();
  struct Worker;
  std::unique_ptr<Worker> worker_;  // started by the first asynchronous call
  Status drain();
};

}  // namespace qcomm
