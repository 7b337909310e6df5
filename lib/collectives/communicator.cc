// The Communicator: agreement, per-call size checks, error feedback and fusion around the
// schedules of collectives/.
#include "qcomm/communicator.h"

#include "codec/wire_bytes.h"

#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/serialization/map.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <istream>
#include <mutex>
#include <ostream>
#include <thread>

#include "collectives/schedule.h"

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

  std::shared_future<Status> submit(std::function<Status()> fn) {
    std::packaged_task<Status()> task(std::move(fn));
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
    return done;
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
  return PendingAllreduce(
      worker_->submit([this, data, key = std::move(key)] { return reduceChecked(data, key); }));
}

Result<PendingAllreduce> Communicator::allreduceMeanAsync(std::vector<NamedTensor> tensors) {
  QCOMM_RETURN_IF_ERROR(asyncAllowed());
  if (!worker_) worker_ = std::make_unique<Worker>();
  return PendingAllreduce(
      worker_->submit([this, tensors = std::move(tensors)] { return reduceList(tensors); }));
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
  const Status valid = options.validate();
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
  return std::unique_ptr<Communicator>(new Communicator(transport, options, codec, executor));
}

Status Communicator::checkAgreement(std::string_view what, const std::string& mine) {
  QCOMM_ASSIGN_OR_RETURN(const std::vector<uint64_t> hashes, transport_.allgatherU64(fnv1a(mine)));
  bool same = true;
  for (uint64_t h : hashes) same &= h == hashes[0];
  if (same) return Status::ok();
  // Rare path: fetch the descriptions to say exactly what differs.
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> all, transport_.allgatherStrings(mine));
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    if (all[r] != all[0]) {
      return invalidArgument(what, ": rank ", r, " has ", all[r], " but rank 0 has ", all[0],
                             " (seen from rank ", transport_.rank(), ")");
    }
  }
  return internalError(what, ": hashes differ but descriptions agree");
}

Status Communicator::reduce(std::span<float> data, const std::string& key) {
  ++stats_.calls;
  const uint64_t step = step_++;
  const int64_t n = static_cast<int64_t>(data.size());
  const Algorithm algorithm =
      selectAlgorithm(n, transport_.size(), transport_.capabilities(), options_);
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
                                   workspace_.get()};
  std::span<const float> input = data;
  if (options_.errorFeedback && algorithm != Algorithm::kUncompressed) {
    // g' = g + e; the schedule sends Q(g') and leaves e = g' - D(Q(g')).
    ctx.residual = residualFor(residuals_, key, data.size());
    if (algorithm == Algorithm::kSra)
      ctx.ownerResidual = residualFor(ownerResiduals_, key, data.size());
    work_.resize(data.size());
    for (int64_t i = 0; i < n; ++i) work_[i] = data[i] + ctx.residual[i];
    input = work_;
  }
  switch (algorithm) {
    case Algorithm::kAllgather:
      return collectives::allreduceAllgather(ctx, input, data);
    case Algorithm::kSra:
      return collectives::allreduceSra(ctx, input, data);
    default:
      return collectives::allreduceUncompressed(ctx, input, data);
  }
}

Status Communicator::reduceChecked(std::span<float> data, const std::string& key) {
  if (options_.checkSizes) {
    QCOMM_RETURN_IF_ERROR(
        checkAgreement("allreduceMean", strCat("tensor '", key, "' of ", data.size(), " values")));
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
  for (const NamedTensor& t : tensors) description += strCat(" '", t.name, "' of ", t.data.size());
  if (options_.checkSizes) QCOMM_RETURN_IF_ERROR(checkAgreement("allreduceMean", description));
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
    QCOMM_RETURN_IF_ERROR(reduce(fused, key));
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
  try {
    boost::archive::binary_oarchive archive(out);
    archive << options_.describe() << step_ << residuals_ << ownerResiduals_;
  } catch (const std::exception& e) {
    return ioError("saving communicator state: ", e.what());
  }
  return out ? Status::ok() : ioError("saving communicator state: the stream failed");
}

Status Communicator::loadState(std::istream& in) {
  QCOMM_RETURN_IF_ERROR(drain());
  std::string describe;
  uint64_t step = 0;
  std::map<std::string, std::vector<float>> residuals, ownerResiduals;
  try {
    boost::archive::binary_iarchive archive(in);
    archive >> describe >> step >> residuals >> ownerResiduals;
  } catch (const std::exception& e) {
    return dataLoss("loading communicator state: malformed archive (", e.what(), ")");
  }
  if (describe != options_.describe()) {
    return failedPrecondition("loading communicator state: saved with '", describe,
                              "' but this communicator is '", options_.describe(), "'");
  }
  step_ = step;
  residuals_ = std::move(residuals);
  ownerResiduals_ = std::move(ownerResiduals);
  return Status::ok();
}

Status Communicator::resetState() {
  QCOMM_RETURN_IF_ERROR(drain());
  residuals_.clear();
  ownerResiduals_.clear();
  return Status::ok();
}

}  // namespace qcomm
