// Local transport: ranks post their buffers on a shared board; after a barrier every rank copies
// what it needs; a second barrier frees the senders' buffers. Operations complete eagerly.
#include "qcomm/local_transport.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

namespace qcomm::transport {

struct LocalGroup::State {
  struct Post {
    std::span<const uint8_t> send;
    std::span<const size_t> sendCounts;  // alltoallv only
    std::span<float> data;               // allreduce only
    int color = 0, key = 0;              // split only
  };

  State(int n, std::vector<int> hostOfRank, State* rootState)
      : size(n),
        posts(n),
        present(n, false),
        hosts(std::move(hostOfRank)),
        root(rootState ? rootState : this) {
    if (hosts.empty()) hosts.assign(n, 0);
  }

  // Waits until all ranks arrive (or the group is aborted). Past `timeout` (if positive) the
  // group is aborted with DeadlineExceeded naming `op` and the ranks that had not arrived, so
  // every rank of it returns that error.
  Status arrive(int rank, std::chrono::milliseconds timeout, std::string_view op) {
    std::unique_lock<std::mutex> lock(mutex);
    if (!aborted.isOk()) return aborted;
    const uint64_t generation = barrierGeneration;
    present[rank] = true;
    if (++arrived == size) {
      arrived = 0;
      std::fill(present.begin(), present.end(), false);
      ++barrierGeneration;
      wake.notify_all();
      return Status::ok();
    }
    const auto done = [&] { return barrierGeneration != generation || !aborted.isOk(); };
    if (timeout.count() <= 0) {
      wake.wait(lock, done);
    } else if (!wake.wait_for(lock, timeout, done)) {
      std::vector<int> missing;
      for (int r = 0; r < size; ++r) {
        if (!present[r]) missing.push_back(r);
      }
      aborted = deadlineExceeded(op, " on rank ", rank, " of the local transport: ",
                                 describeRanks(missing), " not heard from within ",
                                 timeout.count(), " ms (the group is aborted)");
      wake.notify_all();
    }
    return barrierGeneration != generation ? Status::ok() : aborted;
  }

  void abort(const Status& reason) {
    std::lock_guard<std::mutex> lock(mutex);
    if (aborted.isOk()) aborted = reason;
    wake.notify_all();
  }

  int size;
  std::vector<Post> posts;
  std::vector<bool> present;  // ranks that arrived in the current generation (guarded by mutex)
  std::vector<int> hosts;  // of each rank
  State* root;             // the group everything was split from
  std::mutex mutex;
  std::condition_variable wake;
  int arrived = 0;
  uint64_t barrierGeneration = 0;
  Status aborted;
  // A split's new groups, by color, made by each color's first rank (guarded by mutex).
  std::map<int, std::shared_ptr<State>> splitGroups;
  // Every group split from this one, directly or not (root only, guarded by mutex): abort
  // reaches them all.
  std::vector<std::weak_ptr<State>> descendants;
};

namespace {

class LocalTransport final : public Transport {
 public:
  LocalTransport(std::shared_ptr<LocalGroup::State> state, int rank)
      : state_(std::move(state)), rank_(rank) {}

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
    return exchange("allgatherv", {send, {}, {}}, local, [&]() -> Status {
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
    return exchange("alltoallv", {send, sendCounts, {}}, local, [&]() -> Status {
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
    // The sum's buffer is reused from call to call (grown, never shrunk): no allocation per step.
    if (sum_.size() < data.size()) sum_.resize(data.size());
    const std::span<float> sum = std::span<float>(sum_).first(data.size());
    return exchange(
        "allreduce", {{}, {}, data}, Status::ok(),
        [&]() -> Status {
          // Every rank adds in rank order, so all ranks get bit-identical sums.
          std::fill(sum.begin(), sum.end(), 0.0f);
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

  Status barrier() override { return state_->arrive(rank_, timeout(), "barrier"); }

  Result<std::vector<int>> hostOfRanks() override {
    std::vector<std::string> names;
    for (int h : state_->hosts) names.push_back(std::to_string(h));
    return numberHosts(names);
  }

  Result<std::unique_ptr<Transport>> split(int color, int key) override {
    LocalGroup::State::Post post;
    post.color = color;
    post.key = key;
    std::shared_ptr<LocalGroup::State> mine;
    int newRank = 0;
    QCOMM_RETURN_IF_ERROR(exchange("split", post, Status::ok(), [&]() -> Status {
      if (color < 0) return Status::ok();
      std::vector<std::pair<int, int>> members;  // (key, rank) of this color
      for (int r = 0; r < size(); ++r) {
        const auto& p = state_->posts[r];
        if (p.color == color) members.emplace_back(p.key, r);
      }
      std::sort(members.begin(), members.end());
      for (size_t i = 0; i < members.size(); ++i) {
        if (members[i].second == rank_) newRank = static_cast<int>(i);
      }
      std::vector<int> hosts;
      for (const auto& [k, r] : members) hosts.push_back(state_->hosts[r]);
      // The color's lowest rank makes the group; the others take it after the second barrier.
      if (std::min_element(members.begin(), members.end(), [](auto& a, auto& b) {
            return a.second < b.second;
          })->second == rank_) {
        auto group = std::make_shared<LocalGroup::State>(static_cast<int>(members.size()),
                                                         std::move(hosts), state_->root);
        {
          std::lock_guard<std::mutex> lock(state_->root->mutex);
          state_->root->descendants.push_back(group);
          if (!state_->root->aborted.isOk()) group->aborted = state_->root->aborted;
        }
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->splitGroups[color] = std::move(group);
      }
      return Status::ok();
    }).status());
    if (color >= 0) {
      std::lock_guard<std::mutex> lock(state_->mutex);
      mine = state_->splitGroups.at(color);
    }
    // Once every rank holds its group, the table is emptied for the next split (which cannot
    // start filling it before every rank has passed this barrier).
    QCOMM_RETURN_IF_ERROR(state_->arrive(rank_, timeout(), "split"));
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->splitGroups.erase(color);
    }
    if (color < 0) return std::unique_ptr<Transport>();
    auto sub = std::make_unique<LocalTransport>(std::move(mine), newRank);
    sub->setTimeout(timeout());
    return std::unique_ptr<Transport>(std::move(sub));
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
      std::string_view op, LocalGroup::State::Post post, Status local, Read read,
      Write write = [] {}) {
    state_->posts[rank_] = post;
    QCOMM_RETURN_IF_ERROR(state_->arrive(rank_, timeout(), op));
    Status result = local.isOk() ? read() : local;
    QCOMM_RETURN_IF_ERROR(state_->arrive(rank_, timeout(), op));
    if (!result.isOk()) return result;
    write();
    return std::unique_ptr<Request>(std::make_unique<CompletedRequest>());
  }

  std::shared_ptr<LocalGroup::State> state_;
  int rank_;
  std::vector<float> sum_;  // allreduceSum's scratch
};

}  // namespace

LocalGroup::LocalGroup(int size, std::vector<int> hostOfRank)
    : state_(std::make_shared<State>(size, std::move(hostOfRank), nullptr)) {}
LocalGroup::~LocalGroup() = default;

int LocalGroup::size() const { return state_->size; }

std::unique_ptr<Transport> LocalGroup::transport(int rank) {
  return std::make_unique<LocalTransport>(state_, rank);
}

void LocalGroup::abort(const Status& reason) {
  const Status aborted(StatusCode::kFailedPrecondition,
                       strCat("local group aborted: ", reason.message()));
  std::vector<std::shared_ptr<State>> groups;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (state_->aborted.isOk()) state_->aborted = aborted;
    state_->wake.notify_all();
    for (const auto& weak : state_->descendants) {
      if (auto group = weak.lock()) groups.push_back(std::move(group));
    }
  }
  for (const auto& group : groups) group->abort(aborted);
}

std::vector<Status> spawn(int worldSize, const std::function<Status(Transport&)>& fn,
                          std::vector<int> hostOfRank) {
  LocalGroup group(worldSize, std::move(hostOfRank));
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
