// The Communicator: agreement, per-call size checks, error feedback and fusion around the
// schedules of collectives/.
#include "qcomm/communicator.h"

#include "codec/wire_bytes.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <istream>
#include <mutex>
#include <optional>
#include <ostream>
#include <thread>

#include "collectives/schedule.h"
#include "collectives/state_archive.h"
#include "qcomm/env.h"

namespace qcomm {
namespace {

uint64_t fnv1a(std::string_view text) {
  return wire::fnv1a(wire::kFnvOffset, text.data(), text.size());
}

// The residual buffer for `key`, reset (zeroed) when the tensor's size changed.
std::span<float> residualFor(std::map<std::string, std::vector<float>>& map, const std::string& key,
                             size_t size) {
  std::vector<float>& r = map[key];
  if (r.size() != size) r.assign(size, 0.0f);
  return r;
}

// What the agreement before a call compares besides the tensors: the algorithm, and whether the
// call is a trial of auto's (a trial adds a collective after the call).
std::string describeChoice(const AutoTrials::Choice& choice) {
  return strCat(algorithmName(choice.algorithm), choice.trial ? " (a timed trial of auto's)" : "");
}

}  // namespace

// One thread that runs the asynchronous allreduces in submission order.
struct Communicator::Worker {
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::packaged_task<Status()>> jobs;
  std::vector<std::shared_future<Status>> pending;
  bool stop = false;
  std::thread thread{[this] { run(); }};

  void run() {
    while (true) {
      std::packaged_task<Status()> job;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [&] { return stop || !jobs.empty(); });
        if (jobs.empty()) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      job();
    }
  }

  PendingAllreduce submit(std::function<Status()> fn) {
    auto times = std::make_shared<PendingTimes>();
    times->submitted = std::chrono::steady_clock::now();
    // The times are written before the future is made ready, so a waiter reads them whole.
    std::packaged_task<Status()> task([fn = std::move(fn), times] {
      times->started = std::chrono::steady_clock::now();
      Status status = fn();
      times->finished = std::chrono::steady_clock::now();
      return status;
    });
    std::shared_future<Status> done = task.get_future().share();
    {
      std::lock_guard<std::mutex> lock(mutex);
      jobs.push_back(std::move(task));
      // Forget finished calls (their callers hold their own futures) so a loop that only ever
      // calls asynchronously does not grow this list.
      std::erase_if(pending, [](const std::shared_future<Status>& f) {
        return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
      });
      pending.push_back(done);
    }
    wake.notify_one();
    return PendingAllreduce(std::move(done), std::move(times));
  }

  ~Worker() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;  // the queue is still drained: ranks must issue the same collectives
    }
    wake.notify_one();
    thread.join();
  }
};

Status PendingAllreduce::wait() const {
  if (!done_.valid()) return failedPrecondition("waiting on an empty PendingAllreduce");
  return done_.get();
}

Communicator::~Communicator() = default;

Status Communicator::drain() {
  if (!worker_) return Status::ok();
  std::vector<std::shared_future<Status>> pending;
  {
    std::lock_guard<std::mutex> lock(worker_->mutex);
    pending.swap(worker_->pending);
  }
  Status first;
  for (const auto& done : pending) {
    const Status s = done.get();
    if (first.isOk() && !s.isOk()) first = s;
  }
  return first;
}

Status Communicator::asyncAllowed() const {
  if (!transport_.capabilities().otherThreads) {
    return failedPrecondition("allreduceMeanAsync on rank ", transport_.rank(), ": the ",
                              transport_.name(),
                              " transport may not be driven from another thread (for MPI, "
                              "initialize with MPI_Init_thread and MPI_THREAD_SERIALIZED or "
                              "MPI_THREAD_MULTIPLE)");
  }
  return Status::ok();
}

Result<PendingAllreduce> Communicator::allreduceMeanAsync(std::span<float> data, std::string key) {
  QCOMM_RETURN_IF_ERROR(asyncAllowed());
  if (!worker_) worker_ = std::make_unique<Worker>();
  return worker_->submit([this, data, key = std::move(key)] { return reduceChecked(data, key); });
}

Result<PendingAllreduce> Communicator::allreduceMeanAsync(std::vector<NamedTensor> tensors) {
  QCOMM_RETURN_IF_ERROR(asyncAllowed());
  if (!worker_) worker_ = std::make_unique<Worker>();
  return worker_->submit([this, tensors = std::move(tensors)] { return reduceList(tensors); });
}

Communicator::Communicator(transport::Transport& transport, CommunicatorOptions options,
                           CodecConfig codec, Executor* executor)
    : transport_(transport),
      options_(std::move(options)),
      codec_(codec),
      executor_(executor),
      workspace_(std::make_unique<collectives::Workspace>()) {}

Result<std::unique_ptr<Communicator>> Communicator::create(transport::Transport& transport,
                                                           const CommunicatorOptions& options,
                                                           Executor* executor) {
  // A local error must not leave the other ranks waiting in the agreement below, so the
  // agreement runs on every rank and carries the error text instead of a configuration.
  Status valid = options.validate();
  // The timeout bounds the agreement too.
  std::chrono::milliseconds timeout = options.timeout;
  if (timeout.count() == 0) {
    const Result<int64_t> seconds = knobInt(Knob::kTimeout, 0, int64_t{1} << 31);
    if (valid.isOk()) valid = seconds.status();
    if (seconds.isOk()) timeout = std::chrono::seconds(*seconds);
  }
  transport.setTimeout(timeout);
  const std::string mine = valid.isOk() ? options.describe() : "invalid: " + valid.message();
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> all, transport.allgatherStrings(mine));
  if (!valid.isOk()) return valid.withContext(strCat("rank ", transport.rank(), ": "));
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    if (all[r] != all[0]) {
      return failedPrecondition("communicator configuration differs between ranks: rank ", r,
                                " has '", all[r], "' but rank 0 has '", all[0], "'");
    }
  }
  CodecConfig codec = *parseAnyCodecSpec(options.codec);
  std::unique_ptr<Communicator> comm(new Communicator(transport, options, codec, executor));
  QCOMM_ASSIGN_OR_RETURN(const int64_t debug, knobInt(Knob::kDebug, 0, 1));
  comm->debug_ = debug == 1 && transport.rank() == 0;
  QCOMM_RETURN_IF_ERROR(comm->setUpHierarchy());
  if (options.algorithm == Algorithm::kAuto && transport.size() > 1) {
    QCOMM_RETURN_IF_ERROR(comm->measure());
  }
  return comm;
}

Status Communicator::setUpHierarchy() {
  const int p = transport_.size(), me = transport_.rank();
  QCOMM_ASSIGN_OR_RETURN(
      layout_, groupRanksByHost(
                   options_.ranksPerHost, p, me, [&] { return transport_.hostOfRanks(); },
                   [&](uint64_t mine) { return transport_.allgatherU64(mine); }));
  if (debug_) std::fprintf(stderr, "qcomm: %d ranks on %s\n", p, layout_.describe().c_str());
  const bool wanted = options_.algorithm == Algorithm::kHierarchical ||
                      options_.algorithm == Algorithm::kAuto;
  if (!wanted || p == 1 || (layout_.hosts > 1 && !layout_.multiLevel())) return Status::ok();
  // Every rank splits (the calls are collective); a transport that cannot split leaves `auto`
  // without the hierarchical algorithm and fails a pinned one.
  Result<std::unique_ptr<transport::Transport>> intra = transport_.split(layout_.host, me);
  if (intra.isOk() && layout_.hosts > 1) {
    Result<std::unique_ptr<transport::Transport>> cross = transport_.split(
        layout_.localRank < layout_.slices ? layout_.localRank : -1, layout_.host);
    if (!cross.isOk()) return cross.status().withContext("hierarchical allreduce: ");
    cross_ = std::move(*cross);
  }
  if (!intra.isOk()) {
    if (options_.algorithm == Algorithm::kAuto) return Status::ok();
    return intra.status().withContext("hierarchical allreduce: ");
  }
  intra_ = std::move(*intra);
  return Status::ok();
}

bool Communicator::triesAlgorithms(int64_t count) const {
  return options_.algorithm == Algorithm::kAuto && measured_ && transport_.size() > 1 &&
         count >= options_.minCompressNumel;
}

AutoTrials::Choice Communicator::choiceFor(int64_t count) const {
  const int p = transport_.size();
  AutoTrials::Choice choice{selectAlgorithm(count, p, transport_.capabilities(), options_)};
  if (triesAlgorithms(count)) {
    // On one host hierarchical is an uncompressed reduce-scatter and allgather, which can beat
    // the transport's own allreduce: it competes there too.
    choice = trials_.choose(count, predictAllreduce(count, layout_, costParameters_),
                            intra_ != nullptr);
  }
  if (choice.algorithm == Algorithm::kHierarchical && intra_ == nullptr) {
    choice.algorithm = Algorithm::kSra;
  }
  return choice;
}

Algorithm Communicator::algorithmFor(int64_t count) const { return choiceFor(count).algorithm; }

AlgorithmCosts Communicator::autoEstimates(int64_t count) const {
  if (!measured_) return {};
  return trials_.estimates(count, predictAllreduce(count, layout_, costParameters_));
}

Status Communicator::checkAgreement(std::string_view what, const std::string& mine,
                                    std::string_view algorithm) {
  const std::string both = strCat(mine, "\n", algorithm);
  QCOMM_ASSIGN_OR_RETURN(const std::vector<uint64_t> hashes, transport_.allgatherU64(fnv1a(both)));
  bool same = true;
  for (uint64_t h : hashes) same &= h == hashes[0];
  if (same) return Status::ok();
  // Rare path: fetch the descriptions to say exactly what differs, the tensors first.
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> all, transport_.allgatherStrings(both));
  auto tensors = [](const std::string& text) { return text.substr(0, text.rfind('\n')); };
  auto algorithmOf = [](const std::string& text) { return text.substr(text.rfind('\n') + 1); };
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    if (tensors(all[r]) != tensors(all[0])) {
      return invalidArgument(what, ": rank ", r, " has ", tensors(all[r]), " but rank 0 has ",
                             tensors(all[0]), " (seen from rank ", transport_.rank(), ")");
    }
  }
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    if (algorithmOf(all[r]) != algorithmOf(all[0])) {
      return failedPrecondition(what, ": rank ", r, " would run ", algorithmOf(all[r]), " on ",
                                tensors(all[r]), " but rank 0 would run ", algorithmOf(all[0]),
                                " (seen from rank ", transport_.rank(),
                                "; did only some ranks load a checkpoint?)");
    }
  }
  return internalError(what, ": hashes differ but descriptions agree");
}

Status Communicator::reduce(std::span<float> data, const std::string& key,
                            std::optional<Algorithm> pinned) {
  ++stats_.calls;
  const uint64_t step = step_++;
  const int64_t n = static_cast<int64_t>(data.size());
  const AutoTrials::Choice choice = pinned ? AutoTrials::Choice{*pinned} : choiceFor(n);
  const Algorithm algorithm = choice.algorithm;
  stats_.lastAlgorithm = algorithm;
  stats_.lastPrediction = measured_ ? predictAllreduce(n, layout_, costParameters_)
                                    : AlgorithmCosts{};
  stats_.autoTrials += choice.trial;
  const bool byAuto = !pinned && triesAlgorithms(n);
  if (byAuto && trials_.noteCall(n)) {
    ++stats_.autoRechecks;
    if (debug_) {
      std::fprintf(stderr, "qcomm: %lld values: %lld calls since auto's trials; timing again\n",
                   static_cast<long long>(n), static_cast<long long>(AutoTrials::kRecheckEvery));
    }
  }
  // Where the per-call checks run, their all-gather after the call shares its time for free: a
  // settled size's calls are watched too (AutoTrials::watch).
  const bool watched = byAuto && !choice.trial && options_.checkSizes;
  if (debug_ && !measured_) {  // pinned: no model, no trials
    std::fprintf(stderr, "qcomm: step %llu '%s' %lld values: %s\n",
                 static_cast<unsigned long long>(step), key.c_str(), static_cast<long long>(n),
                 std::string(algorithmName(algorithm)).c_str());
  } else if (debug_) {
    const AlgorithmCosts& c = stats_.lastPrediction;
    const AlgorithmCosts seen = trials_.estimates(n, c);
    std::fprintf(stderr,
                 "qcomm: step %llu '%s' %lld values: %s%s (predicted ms: uncompressed %.3f "
                 "allgather %.3f sra %.3f hierarchical %.3f; after the trials so far: %.3f %.3f "
                 "%.3f %.3f)\n",
                 static_cast<unsigned long long>(step), key.c_str(), static_cast<long long>(n),
                 std::string(algorithmName(algorithm)).c_str(), choice.trial ? ", a trial" : "",
                 c.uncompressed * 1e3, c.allgather * 1e3, c.sra * 1e3, c.hierarchical * 1e3,
                 seen.uncompressed * 1e3, seen.allgather * 1e3, seen.sra * 1e3,
                 seen.hierarchical * 1e3);
  }
  QCOMM_ASSIGN_OR_RETURN(const WireOptions wire, WireOptions::fromEnvironment());
  collectives::ScheduleContext ctx{transport_,
                                   executor_,
                                   codec_,
                                   wire,
                                   options_.seed,
                                   static_cast<uint32_t>(fnv1a(key)),
                                   step,
                                   options_.chunkNumel,
                                   {},
                                   {},
                                   &stats_,
                                   workspace_.get(),
                                   &layout_,
                                   intra_.get(),
                                   cross_.get()};
  Status damaged;
  ctx.damaged = &damaged;
  std::span<const float> input = data;
  if (const auto [last, added] = algorithmOfKey_.try_emplace(key, algorithm);
      !added && last->second != algorithm) {
    // auto changed the key's algorithm (a trial, or the end of them): error feedback restarts.
    residuals_.erase(key);
    ownerResiduals_.erase(key);
    last->second = algorithm;
  }
  if (options_.errorFeedback && algorithm != Algorithm::kUncompressed) {
    // g' = g + e; the schedule sends Q(g') and leaves e = g' - D(Q(g')). The hierarchical
    // schedule adds e itself, to the host sums it compresses.
    ctx.residual = residualFor(residuals_, key, data.size());
    if (algorithm == Algorithm::kSra || algorithm == Algorithm::kHierarchical)
      ctx.ownerResidual = residualFor(ownerResiduals_, key, data.size());
    if (algorithm != Algorithm::kHierarchical) {
      work_.resize(data.size());
      for (int64_t i = 0; i < n; ++i) work_[i] = data[i] + ctx.residual[i];
      input = work_;
    }
  }
  const uint64_t sentBefore = stats_.bytesSent;
  const auto started = std::chrono::steady_clock::now();
  Status status;
  switch (algorithm) {
    case Algorithm::kAllgather:
      status = collectives::allreduceAllgather(ctx, input, data);
      break;
    case Algorithm::kSra:
      status = collectives::allreduceSra(ctx, input, data);
      break;
    case Algorithm::kHierarchical:
      status = collectives::allreduceHierarchical(ctx, input, data);  // counts its own
      break;
    default:
      status = collectives::allreduceUncompressed(ctx, input, data);
  }
  // Flat algorithms address every other rank alike: the share on other hosts crossed.
  if (layout_.hosts > 1 && algorithm != Algorithm::kHierarchical) {
    const int p = transport_.size(), others = p - layout_.localSize();
    stats_.bytesSentAcrossHosts += (stats_.bytesSent - sentBefore) * others / (p - 1);
  }
  std::optional<double> seconds;
  if (choice.trial || watched) {
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  }
  if (status.isOk()) status = agreeOnOutcome(key, damaged, n, algorithm, seconds, choice.trial);
  if (!status.isOk()) {
    // The values are unspecified after a failed call; the error-feedback state of the tensor
    // starts again from zero, so that the next call is sound.
    residuals_.erase(key);
    ownerResiduals_.erase(key);
  }
  return status;
}

Status Communicator::agreeOnOutcome(const std::string& key, const Status& damaged,
                                    int64_t count, Algorithm algorithm,
                                    std::optional<double> seconds, bool trial) {
  // Every rank completed the schedule's collectives, so all can agree (unless told not to; auto's
  // trials, which every rank runs alike, share their time here all the same).
  if (transport_.size() == 1 || (!options_.checkSizes && !seconds)) return damaged;
  // One number per rank: the status code in the low 8 bits, the call's nanoseconds above them.
  constexpr int kCodeBits = 8;
  const uint64_t nanoseconds =
      seconds ? static_cast<uint64_t>(std::clamp(*seconds * 1e9, 1.0, 0x1p55)) : 0;
  QCOMM_ASSIGN_OR_RETURN(
      std::vector<uint64_t> codes,
      transport_.allgatherU64(nanoseconds << kCodeBits | static_cast<uint64_t>(damaged.code())));
  uint64_t slowest = 0;
  for (uint64_t& c : codes) {
    slowest = std::max(slowest, c >> kCodeBits);
    c &= (uint64_t{1} << kCodeBits) - 1;
  }
  int first = -1;
  for (int r = 0; r < static_cast<int>(codes.size()) && first < 0; ++r) {
    if (codes[r] != 0) first = r;
  }
  if (first < 0) {
    const double took = static_cast<double>(slowest) * 1e-9;
    if (seconds && trial) trials_.record(count, algorithm, took);
    if (seconds && !trial && trials_.watch(count, took)) {
      ++stats_.autoRechecks;
      if (debug_) {
        std::fprintf(stderr,
                     "qcomm: %lld values: %s's last %d calls over %.1fx its trials' median; "
                     "timing again\n",
                     static_cast<long long>(count), std::string(algorithmName(algorithm)).c_str(),
                     AutoTrials::kRuns - 1, AutoTrials::kWatchSlower);
      }
    }
    return Status::ok();
  }
  if (!options_.checkSizes) return damaged;
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> texts,
                         transport_.allgatherStrings(damaged.message()));
  std::vector<int> failed;
  for (int r = 0; r < static_cast<int>(codes.size()); ++r) {
    if (codes[r] != 0) failed.push_back(r);
  }
  const std::string context = strCat("allreduceMean of '", key, "' failed on every rank (",
                                     transport::describeRanks(failed),
                                     " received damaged data): ");
  if (!damaged.isOk()) return damaged.withContext(context);
  return Status(static_cast<StatusCode>(codes[first]),
                strCat(context, "on rank ", first, ": ", texts[first], " (seen from rank ",
                       transport_.rank(), ")"));
}

Status Communicator::reduceChecked(std::span<float> data, const std::string& key) {
  if (options_.checkSizes) {
    // The algorithm too: ranks that measured differently (say, one resumed from a checkpoint and
    // one not) must fail here rather than issue different collectives.
    QCOMM_RETURN_IF_ERROR(checkAgreement(
        "allreduceMean", strCat("tensor '", key, "' of ", data.size(), " values"),
        describeChoice(choiceFor(static_cast<int64_t>(data.size())))));
  }
  return reduce(data, key);
}

Status Communicator::allreduceMean(std::span<float> data, std::string_view key) {
  QCOMM_RETURN_IF_ERROR(drain());
  return reduceChecked(data, std::string(key));
}

Status Communicator::allreduceMean(std::span<const NamedTensor> tensors) {
  QCOMM_RETURN_IF_ERROR(drain());
  return reduceList(tensors);
}

Status Communicator::reduceList(std::span<const NamedTensor> tensors) {
  std::string description = strCat(tensors.size(), " tensors:");
  int64_t large = 0;
  for (const NamedTensor& t : tensors) {
    description += strCat(" '", t.name, "' of ", t.data.size());
    if (static_cast<int64_t>(t.data.size()) >= options_.minCompressNumel) large += t.data.size();
  }
  if (options_.checkSizes) {
    QCOMM_RETURN_IF_ERROR(
        checkAgreement("allreduceMean", description, describeChoice(choiceFor(large))));
  }
  // Large tensors share one compressed message, small ones one uncompressed allreduce.
  for (const bool large : {true, false}) {
    std::vector<float> fused;
    std::string key = large ? "fused:" : "fused-small:";
    for (const NamedTensor& t : tensors) {
      if ((static_cast<int64_t>(t.data.size()) >= options_.minCompressNumel) != large) continue;
      fused.insert(fused.end(), t.data.begin(), t.data.end());
      key += t.name + ",";
    }
    if (fused.empty()) continue;
    // The small ones stay uncompressed even when together they reach minCompressNumel.
    QCOMM_RETURN_IF_ERROR(
        reduce(fused, key, large ? std::nullopt : std::optional(Algorithm::kUncompressed)));
    size_t offset = 0;
    for (const NamedTensor& t : tensors) {
      if ((static_cast<int64_t>(t.data.size()) >= options_.minCompressNumel) != large) continue;
      std::copy(fused.begin() + offset, fused.begin() + offset + t.data.size(), t.data.begin());
      offset += t.data.size();
    }
  }
  return Status::ok();
}

Status Communicator::saveState(std::ostream& out) {
  QCOMM_RETURN_IF_ERROR(drain());
  // What auto measured travels too, so that a resumed job chooses as the one it resumes.
  std::vector<double> costs;
  if (measured_) {
    for (double* field : costFields(costParameters_)) costs.push_back(*field);
  }
  return collectives::writeStateArchive(options_.describe(), step_, residuals_, ownerResiduals_,
                                        costs, out, "saving communicator state");
}

Status Communicator::loadState(std::istream& in) {
  QCOMM_RETURN_IF_ERROR(drain());
  collectives::StateArchive state;
  QCOMM_RETURN_IF_ERROR(collectives::readStateArchive(in, options_.describe(),
                                                      "loading communicator state", &state));
  const size_t fieldCount = costFields(costParameters_).size();
  if (!state.costs.empty() && state.costs.size() != fieldCount) {
    return dataLoss("loading communicator state: ", state.costs.size(), " cost parameters where ",
                    fieldCount, " were expected");
  }
  if (!state.costs.empty() && measured_) {
    size_t i = 0;
    for (double* field : costFields(costParameters_)) *field = state.costs[i++];
    // What the trials saw does not travel: the resumed job tries again from the measurements.
    trials_.clear();
  }
  step_ = state.step;
  residuals_ = std::move(state.residuals);
  ownerResiduals_ = std::move(state.ownerResiduals);
  return Status::ok();
}

Status Communicator::resetState() {
  QCOMM_RETURN_IF_ERROR(drain());
  residuals_.clear();
  ownerResiduals_.clear();
  return Status::ok();
}

}  // namespace qcomm
