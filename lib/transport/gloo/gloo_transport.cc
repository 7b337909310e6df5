#include "qcomm/gloo_transport.h"

#include <gloo/allgatherv.h>
#include <gloo/allreduce.h>
#include <gloo/alltoallv.h>
#include <gloo/barrier.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/hash_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <exception>
#include <filesystem>
#include <mutex>
#include <stdexcept>

namespace qcomm::transport {
namespace {

// Gloo reports failures by exceptions; qcomm by Status. A timeout is its own code.
Status fromException(const std::exception& e, std::string_view what) {
  const std::string text = e.what();
  if (text.find("Timed out") != std::string::npos || text.find("timed out") != std::string::npos ||
      text.find("imeout") != std::string::npos) {
    return deadlineExceeded(what, ": ", text);
  }
  return ioError(what, ": ", text);
}

// A KeyValueStore over one of Gloo's own stores, safe to share between threads (ranks as threads
// in one process, a transport and its splits): Gloo's FileStore::set appends to a member vector
// unguarded (ThreadSanitizer found it with an instrumented Gloo), so sets are serialized. Gets
// and waits only read files, or take HashStore's own lock.
class GlooBackedStore final : public KeyValueStore {
 public:
  explicit GlooBackedStore(std::unique_ptr<gloo::rendezvous::Store> store)
      : store_(std::move(store)) {}

  Status set(const std::string& key, const std::vector<char>& value) override {
    try {
      const std::lock_guard<std::mutex> lock(setMutex_);
      store_->set(key, value);
      return Status::ok();
    } catch (const std::exception& e) {
      return fromException(e, strCat("store: setting '", key, "'"));
    }
  }
  Result<std::vector<char>> get(const std::string& key,
                                std::chrono::milliseconds timeout) override {
    try {
      store_->wait({key}, timeout);
      return store_->get(key);
    } catch (const std::exception& e) {
      return fromException(e, strCat("store: getting '", key, "'"));
    }
  }
  Status wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override {
    try {
      store_->wait(keys, timeout);
      return Status::ok();
    } catch (const std::exception& e) {
      return fromException(e, strCat("store: waiting for ", keys.size(), " keys"));
    }
  }

 private:
  std::unique_ptr<gloo::rendezvous::Store> store_;
  std::mutex setMutex_;
};

// Gloo's view of a KeyValueStore, under this group's prefix; errors go back as exceptions.
class PrefixedStoreForGloo final : public gloo::rendezvous::Store {
 public:
  PrefixedStoreForGloo(KeyValueStore& store, std::string prefix,
                       std::chrono::milliseconds timeout)
      : store_(store), prefix_(std::move(prefix) + "/"), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    check(store_.set(prefix_ + key, data));
  }
  std::vector<char> get(const std::string& key) override {
    Result<std::vector<char>> value = store_.get(prefix_ + key, timeout_);
    check(value.status());
    return std::move(*value);
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    std::vector<std::string> prefixed;
    for (const std::string& k : keys) prefixed.push_back(prefix_ + k);
    check(store_.wait(prefixed, timeout));
  }

 private:
  static void check(const Status& status) {
    if (!status.isOk()) throw std::runtime_error(status.message());
  }
  KeyValueStore& store_;
  std::string prefix_;
  std::chrono::milliseconds timeout_;
};

std::string thisHost() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

}  // namespace

Result<std::shared_ptr<KeyValueStore>> makeFileStore(const std::string& directory) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) {
    return ioError("file store: cannot create directory '", directory, "': ", error.message());
  }
  try {
    return std::shared_ptr<KeyValueStore>(std::make_shared<GlooBackedStore>(
        std::make_unique<gloo::rendezvous::FileStore>(directory)));
  } catch (const std::exception& e) {
    return fromException(e, strCat("file store in '", directory, "'"));
  }
}

std::shared_ptr<KeyValueStore> makeMemoryStore() {
  return std::make_shared<GlooBackedStore>(std::make_unique<gloo::rendezvous::HashStore>());
}

struct GlooTransport::State {
  std::shared_ptr<KeyValueStore> store;  // kept alive while the group lives
  std::shared_ptr<gloo::transport::Device> device;
  std::shared_ptr<gloo::rendezvous::Context> context;
  GlooOptions options;
  int rank = 0;
  int size = 1;
  uint32_t tag = 0;  // one per operation: Gloo matches messages by tag
  int splits = 0;    // split calls so far: each gets its own store keys

  std::chrono::milliseconds timeout{0};  // of every operation; <= 0: none
  Status broken;  // set by a failed operation: Gloo's pairs are unusable from then on

  std::string where(std::string_view op) const {
    return strCat("gloo transport, rank ", rank, " of ", size, ": ", op);
  }

  // How long a rank that gave up waits for the others' roll call: ranks that entered the
  // operation later than that are named although alive.
  static constexpr std::chrono::milliseconds kRollCallGrace{5000};

  // Gloo does not say whom it waited for (a ring waits on its neighbour, which may itself be
  // waiting). Every rank whose operation fails answers a roll call through the store (its key,
  // the operation's tag as value); the ranks that do not answer within min(timeout, 5 s) (5 s
  // without a timeout) are the ones not heard from.
  std::string rollCall(uint32_t opTag) {
    const std::string base = strCat(options.prefix, "/rollcall/");
    const std::string mine = std::to_string(opTag);
    if (!store->set(base + std::to_string(rank), std::vector<char>(mine.begin(), mine.end()))
             .isOk()) {
      return "(the roll call through the store failed)";
    }
    const std::chrono::milliseconds grace =
        timeout.count() > 0 ? std::min(timeout, kRollCallGrace) : kRollCallGrace;
    const auto deadline = std::chrono::steady_clock::now() + grace;
    std::vector<int> silent, elsewhere;
    for (int r = 0; r < size; ++r) {
      if (r == rank) continue;
      const auto left = std::max(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     deadline - std::chrono::steady_clock::now()),
                                 std::chrono::milliseconds(1));
      Result<std::vector<char>> answer = store->get(base + std::to_string(r), left);
      if (!answer.isOk()) {
        silent.push_back(r);
      } else if (std::string(answer->begin(), answer->end()) != mine) {
        elsewhere.push_back(r);
      }
    }
    std::string who;
    if (!silent.empty()) {
      who = strCat(describeRanks(silent), " not heard from (no answer to a roll call within ",
                   grace.count(), " ms after the deadline)");
    }
    if (!elsewhere.empty()) {
      who += strCat(who.empty() ? "" : "; ", describeRanks(elsewhere),
                    " waiting in another operation");
    }
    if (who.empty()) {
      who = "every rank answered a roll call after the deadline (the network is too slow?)";
    }
    return who;
  }

  // A failed operation: Gloo closes its connections on a timeout (so the peers' operations fail
  // too, with "Connection closed by peer") and a pair that failed stays closed, so the transport
  // is broken from then on. The roll call names the ranks that did not fail with this one.
  Status failed(const std::exception& e, std::string_view op, uint32_t opTag) {
    const StatusCode code = fromException(e, where(op)).code();
    const std::string limit =
        timeout.count() > 0 ? strCat("timeout ", timeout.count(), " ms") : "no timeout";
    broken = Status(code, strCat(where(op), ", ", limit, ": ", rollCall(opTag),
                                 "; the transport is broken (end the job). Gloo: ", e.what()));
    return broken;
  }
};

GlooTransport::GlooTransport(std::unique_ptr<State> state) : state_(std::move(state)) {}
GlooTransport::~GlooTransport() = default;

Result<std::unique_ptr<GlooTransport>> GlooTransport::create(std::shared_ptr<KeyValueStore> store,
                                                             int rank, int size,
                                                             const GlooOptions& options) {
  if (store == nullptr) return invalidArgument("gloo transport: no store");
  if (size < 1 || rank < 0 || rank >= size) {
    return invalidArgument("gloo transport: rank ", rank, " of ", size,
                           " (needs 0 <= rank < size)");
  }
  if (options.timeout.count() <= 0) {
    return invalidArgument("gloo transport: timeout must be positive, got ",
                           options.timeout.count(), " ms");
  }
  auto state = std::make_unique<State>();
  state->store = std::move(store);
  state->options = options;
  state->rank = rank;
  state->size = size;
  gloo::transport::tcp::attr attr;
  attr.hostname = options.iface.empty() && options.hostname.empty() ? thisHost() : options.hostname;
  attr.iface = options.iface;
  try {
    state->device = gloo::transport::tcp::CreateDevice(attr);
  } catch (const std::exception& e) {
    return fromException(e, state->where(strCat("no TCP device on '",
                                                attr.iface.empty() ? attr.hostname : attr.iface,
                                                "'")));
  }
  try {
    state->context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    state->context->setTimeout(options.timeout);
    PrefixedStoreForGloo prefixed(*state->store, options.prefix, options.timeout);
    state->context->connectFullMesh(prefixed, state->device);
    // connectFullMesh can return on one side of a pair before the other side has read the
    // handshake; a rank that then finishes and closes its sockets breaks its peer's connect.
    // One barrier makes create return only once every rank is connected.
    gloo::BarrierOptions opts(state->context);
    opts.setTag(state->tag++);
    gloo::barrier(opts);
  } catch (const std::exception& e) {
    return fromException(e, state->where(strCat("connecting to the other ", size - 1,
                                                " ranks through the store (prefix '",
                                                options.prefix, "')")));
  }
  state->timeout = options.timeout;
  auto transport = std::unique_ptr<GlooTransport>(new GlooTransport(std::move(state)));
  transport->Transport::setTimeout(options.timeout);
  return transport;
}

void GlooTransport::setTimeout(std::chrono::milliseconds timeout) {
  Transport::setTimeout(timeout);
  state_->timeout = timeout;
  state_->context->setTimeout(timeout.count() > 0 ? timeout : gloo::kNoTimeout);
}

int GlooTransport::rank() const { return state_->rank; }
int GlooTransport::size() const { return state_->size; }

Result<std::unique_ptr<Request>> GlooTransport::iallgatherv(std::span<const uint8_t> send,
                                                            std::span<uint8_t> recv,
                                                            std::span<const size_t> recvCounts) {
  State& s = *state_;
  if (recvCounts.size() != static_cast<size_t>(s.size) || send.size() != recvCounts[s.rank] ||
      recv.size() != total(recvCounts)) {
    return invalidArgument(s.where("allgatherv"), ": sends ", send.size(), " bytes into ",
                           recv.size(), " with ", recvCounts.size(), " counts summing to ",
                           total(recvCounts));
  }
  QCOMM_RETURN_IF_ERROR(s.broken);
  if (recv.empty()) return std::unique_ptr<Request>(new CompletedRequest());
  const uint32_t tag = s.tag++;
  try {
    gloo::AllgathervOptions opts(s.context);
    opts.setInput(const_cast<uint8_t*>(send.data()), send.size());
    opts.setOutput(recv.data(), std::vector<size_t>(recvCounts.begin(), recvCounts.end()));
    opts.setTag(tag);
    gloo::allgatherv(opts);
  } catch (const std::exception& e) {
    return s.failed(e, strCat("allgatherv of ", recv.size(), " bytes"), tag);
  }
  return std::unique_ptr<Request>(new CompletedRequest());
}

Result<std::unique_ptr<Request>> GlooTransport::ialltoallv(std::span<const uint8_t> send,
                                                           std::span<const size_t> sendCounts,
                                                           std::span<uint8_t> recv,
                                                           std::span<const size_t> recvCounts) {
  State& s = *state_;
  if (sendCounts.size() != static_cast<size_t>(s.size) ||
      recvCounts.size() != static_cast<size_t>(s.size) || send.size() != total(sendCounts) ||
      recv.size() != total(recvCounts)) {
    return invalidArgument(s.where("alltoallv"), ": ", send.size(), " bytes in ",
                           sendCounts.size(), " blocks, ", recv.size(), " bytes out in ",
                           recvCounts.size(), " blocks");
  }
  QCOMM_RETURN_IF_ERROR(s.broken);
  const uint32_t tag = s.tag++;
  try {
    gloo::AlltoallvOptions opts(s.context);
    std::vector<int64_t> in(sendCounts.begin(), sendCounts.end());
    std::vector<int64_t> out(recvCounts.begin(), recvCounts.end());
    uint8_t dummy = 0;  // Gloo wants a buffer even for zero bytes
    opts.setInput(send.empty() ? &dummy : const_cast<uint8_t*>(send.data()), std::move(in));
    opts.setOutput(recv.empty() ? &dummy : recv.data(), std::move(out));
    opts.setTag(tag);
    gloo::alltoallv(opts);
  } catch (const std::exception& e) {
    return s.failed(e, strCat("alltoallv of ", send.size(), " bytes out, ", recv.size(), " in"),
                    tag);
  }
  return std::unique_ptr<Request>(new CompletedRequest());
}

Result<std::unique_ptr<Request>> GlooTransport::iallreduceSum(std::span<float> data) {
  State& s = *state_;
  QCOMM_RETURN_IF_ERROR(s.broken);
  if (data.empty() || s.size == 1) return std::unique_ptr<Request>(new CompletedRequest());
  const uint32_t tag = s.tag++;
  try {
    gloo::AllreduceOptions opts(s.context);
    opts.setOutput(data.data(), data.size());
    opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    opts.setTag(tag);
    gloo::allreduce(opts);
  } catch (const std::exception& e) {
    return s.failed(e, strCat("allreduce of ", data.size(), " floats"), tag);
  }
  return std::unique_ptr<Request>(new CompletedRequest());
}

Status GlooTransport::barrier() {
  State& s = *state_;
  QCOMM_RETURN_IF_ERROR(s.broken);
  const uint32_t tag = s.tag++;
  try {
    gloo::BarrierOptions opts(s.context);
    opts.setTag(tag);
    gloo::barrier(opts);
  } catch (const std::exception& e) {
    return s.failed(e, "barrier", tag);
  }
  return Status::ok();
}

}  // namespace qcomm::transport

namespace qcomm::transport {

Result<std::vector<int>> GlooTransport::hostOfRanks() {
  const std::string host = state_->options.host.empty() ? thisHostKey() : state_->options.host;
  QCOMM_ASSIGN_OR_RETURN(const std::vector<std::string> names, allgatherStrings(host));
  return numberHosts(names);
}

Result<std::unique_ptr<Transport>> GlooTransport::split(int color, int key) {
  State& s = *state_;
  const int call = s.splits++;
  // Every rank learns every (color, key) to find its place.
  const uint64_t mine = (static_cast<uint64_t>(static_cast<uint32_t>(color)) << 32) |
                        static_cast<uint32_t>(key);
  QCOMM_ASSIGN_OR_RETURN(const std::vector<uint64_t> all, allgatherU64(mine));
  if (color < 0) return std::unique_ptr<Transport>();
  std::vector<std::pair<int, int>> members;  // (key, rank)
  for (int r = 0; r < s.size; ++r) {
    if (static_cast<int>(all[r] >> 32) == color) {
      members.emplace_back(static_cast<int>(static_cast<uint32_t>(all[r])), r);
    }
  }
  std::sort(members.begin(), members.end());
  const int rank = static_cast<int>(
      std::find_if(members.begin(), members.end(), [&](auto& m) { return m.second == s.rank; }) -
      members.begin());
  GlooOptions options = s.options;
  options.prefix = strCat(s.options.prefix, "/split", call, "/", color);
  if (timeout().count() > 0) options.timeout = timeout();
  QCOMM_ASSIGN_OR_RETURN(std::unique_ptr<GlooTransport> sub,
                         create(s.store, rank, static_cast<int>(members.size()), options));
  sub->setTimeout(timeout());
  return std::unique_ptr<Transport>(std::move(sub));
}

}  // namespace qcomm::transport
