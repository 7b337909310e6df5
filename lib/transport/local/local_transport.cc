// Local transport: ranks post their buffers on a shared board; after a barrier every rank copies
// what it needs; a second barrier frees the senders' buffers. Operations complete eagerly.
#include "qcomm/local_transport.h"

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

namespace qcomm::transport {

struct LocalGroup::State {
  struct Post {
    std::span<const uint8_t> send;
    std::span<const size_t> sendCounts;  // alltoallv only
    std::span<float> data;               // allreduce only
  };

  explicit State(int n) : size(n), posts(n) {}

  // Waits until all ranks arrive (or the group is aborted).
  Status arrive() {
    std::unique_lock<std::mutex> lock(mutex);
    if (!aborted.isOk()) return aborted;
    const uint64_t generation = barrierGeneration;
    if (++arrived == size) {
      arrived = 0;
      ++barrierGeneration;
      wake.notify_all();
      return Status::ok();
    }
    wake.wait(lock, [&] { return barrierGeneration != generation || !aborted.isOk(); });
    return barrierGeneration != generation ? Status::ok() : aborted;
  }

  int size;
  std::vector<Post> posts;
  std::mutex mutex;
  std::condition_variable wake;
  int arrived = 0;
  uint64_t barrierGeneration = 0;
  Status aborted;
};

namespace {

class LocalTransport final : public Transport {
 public:
  LocalTransport(LocalGroup::State* state, int rank) : state_(state), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return state_->size; }
  std::string_view name() const override { return "local"; }
  Capabilities capabilities() const override { return {}; }

  Result<std::unique_ptr<Request>> iallgatherv(std::span<const uint8_t> send,
                                               std::span<uint8_t> recv,
                                               std::span<const size_t> recvCounts) override {
    Status local = checkCounts(recvCounts, "allgatherv");
    if (local.isOk() && send.size() != recvCounts[rank_]) {
      local = invalidArgument("allgatherv on rank ", rank_, ": sends ", send.size(),
                              " bytes but recvCounts[", rank_, "] is ", recvCounts[rank_]);
    }
    if (local.isOk() && recv.size() != total(recvCounts)) {
      local = invalidArgument("allgatherv on rank ", rank_, ": recv holds ", recv.size(),
                              " bytes, the counts sum to ", total(recvCounts));
    }
    return exchange({send, {}, {}}, local, [&]() -> Status {
      const std::vector<size_t> offsets = displacements(recvCounts);
      for (int r = 0; r < size(); ++r) {
        const auto& from = state_->posts[r].send;
        if (from.size() != recvCounts[r]) {
          return invalidArgument("allgatherv on rank ", rank_, ": expected ", recvCounts[r],
                                 " bytes from rank ", r, ", which sent ", from.size());
        }
        if (!from.empty()) std::memcpy(recv.data() + offsets[r], from.data(), from.size());
      }
      return Status::ok();
    });
  }

  Result<std::unique_ptr<Request>> ialltoallv(std::span<const uint8_t> send,
                                              std::span<const size_t> sendCounts,
                                              std::span<uint8_t> recv,
                                              std::span<const size_t> recvCounts) override {
    Status local = checkCounts(sendCounts, "alltoallv");
    if (local.isOk()) local = checkCounts(recvCounts, "alltoallv");
    if (local.isOk() && (send.size() != total(sendCounts) || recv.size() != total(recvCounts))) {
      local = invalidArgument("alltoallv on rank ", rank_, ": buffers of ", send.size(), "/",
                              recv.size(), " bytes for counts summing to ", total(sendCounts), "/",
                              total(recvCounts));
    }
    return exchange({send, sendCounts, {}}, local, [&]() -> Status {
      const std::vector<size_t> offsets = displacements(recvCounts);
      for (int r = 0; r < size(); ++r) {
        const auto& post = state_->posts[r];
        const size_t from = displacements(post.sendCounts)[rank_];
        if (post.sendCounts[rank_] != recvCounts[r]) {
          return invalidArgument("alltoallv on rank ", rank_, ": expected ", recvCounts[r],
                                 " bytes from rank ", r, ", which sent ", post.sendCounts[rank_]);
        }
        if (recvCounts[r] > 0) {
          std::memcpy(recv.data() + offsets[r], post.send.data() + from, recvCounts[r]);
        }
      }
      return Status::ok();
    });
  }

  Result<std::unique_ptr<Request>> iallreduceSum(std::span<float> data) override {
    std::vector<float> sum;
    return exchange(
        {{}, {}, data}, Status::ok(),
        [&]() -> Status {
          // Every rank adds in rank order, so all ranks get bit-identical sums.
          sum.assign(data.size(), 0.0f);
          for (int r = 0; r < size(); ++r) {
            const auto& other = state_->posts[r].data;
            if (other.size() != data.size()) {
              return invalidArgument("allreduce on rank ", rank_, ": ", data.size(),
                                     " values here, ", other.size(), " on rank ", r);
            }
            for (size_t i = 0; i < data.size(); ++i) sum[i] += other[i];
          }
          return Status::ok();
        },
        [&] { std::copy(sum.begin(), sum.end(), data.begin()); });
  }

  Status barrier() override {
    QCOMM_RETURN_IF_ERROR(state_->arrive());
    return Status::ok();
  }

 private:
  Status checkCounts(std::span<const size_t> counts, const char* op) const {
    if (static_cast<int>(counts.size()) != size()) {
      return invalidArgument(op, " on rank ", rank_, ": ", counts.size(), " counts for ", size(),
                             " ranks");
    }
    return Status::ok();
  }

  // Posts, waits for everyone, runs `read` (copying from the others' posts), waits again so no
  // rank's buffers are freed while read, then runs `write` (own buffers only). A local error still
  // takes part in both barriers, so the other ranks never hang on this one.
  template <typename Read, typename Write = void (*)()>
  Result<std::unique_ptr<Request>> exchange(
      LocalGroup::State::Post post, Status local, Read read, Write write = [] {}) {
    state_->posts[rank_] = post;
    QCOMM_RETURN_IF_ERROR(state_->arrive());
    Status result = local.isOk() ? read() : local;
    QCOMM_RETURN_IF_ERROR(state_->arrive());
    if (!result.isOk()) return result;
    write();
    return std::unique_ptr<Request>(std::make_unique<CompletedRequest>());
  }

  LocalGroup::State* state_;
  int rank_;
};

}  // namespace

LocalGroup::LocalGroup(int size) : state_(std::make_unique<State>(size)) {}
LocalGroup::~LocalGroup() = default;

int LocalGroup::size() const { return state_->size; }

std::unique_ptr<Transport> LocalGroup::transport(int rank) {
  return std::make_unique<LocalTransport>(state_.get(), rank);
}

void LocalGroup::abort(const Status& reason) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->aborted.isOk()) {
    state_->aborted =
        Status(StatusCode::kFailedPrecondition, strCat("local group aborted: ", reason.message()));
  }
  state_->wake.notify_all();
}

std::vector<Status> spawn(int worldSize, const std::function<Status(Transport&)>& fn) {
  LocalGroup group(worldSize);
  std::vector<Status> results(worldSize);
  std::vector<std::thread> threads;
  for (int r = 0; r < worldSize; ++r) {
    threads.emplace_back([&, r] {
      std::unique_ptr<Transport> transport = group.transport(r);
      results[r] = fn(*transport);
      if (!results[r].isOk()) group.abort(results[r].withContext(strCat("rank ", r, ": ")));
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

}  // namespace qcomm::transport
