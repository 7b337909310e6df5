// A transport wrapper that injects one fault into one operation, for the reliability tests: a
// message dropped, delayed, corrupted, truncated or duplicated on its way, or a rank that fails.
// Every rank of a group wraps its transport with the same plan; operations are counted per
// wrapper (every rank issues the same sequence, so operation N is the same collective on all).
// Only allgatherv and alltoallv are touched: they carry the encoded tensors.
#pragma once

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "qcomm/transport.h"

namespace qcomm::testing {

enum class Fault {
  kNone,
  kDrop,       // rank `from`'s messages are lost: it goes silent until its timeout
  kDelay,      // rank `from` starts the operation `delay` late
  kCorrupt,    // one byte of `from`'s message flips on the way to `at`
  kTruncate,   // `from`'s message reaches `at` cut in half (the transport reports the size)
  kDuplicate,  // `at` receives, in place of `from`'s message, an earlier one again
  kFail,       // rank `from` fails the operation without taking part
};

inline const char* faultName(Fault fault) {
  switch (fault) {
    case Fault::kNone: return "none";
    case Fault::kDrop: return "drop";
    case Fault::kDelay: return "delay";
    case Fault::kCorrupt: return "corrupt";
    case Fault::kTruncate: return "truncate";
    case Fault::kDuplicate: return "duplicate";
    case Fault::kFail: return "fail";
  }
  return "?";
}

struct FaultPlan {
  Fault fault = Fault::kNone;
  // Which allgatherv/alltoallv, counted from 0 on every rank among those in which `from` sends
  // at least minBytes (so the small exchanges of agreement checks do not count).
  int64_t operation = 0;
  size_t minBytes = 64;
  int from = 0;           // the rank whose message is damaged, or that misbehaves
  int at = -1;            // the receiving rank that sees the damage; -1: every rank but `from`
  std::chrono::milliseconds delay{0};
};

class FaultyTransport final : public transport::Transport {
 public:
  FaultyTransport(transport::Transport& inner, FaultPlan plan) : inner_(inner), plan_(plan) {}

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::string_view name() const override { return inner_.name(); }
  transport::Capabilities capabilities() const override { return inner_.capabilities(); }
  void setTimeout(std::chrono::milliseconds timeout) override {
    Transport::setTimeout(timeout);
    inner_.setTimeout(timeout);
  }
  Result<std::vector<int>> hostOfRanks() override { return inner_.hostOfRanks(); }
  Status barrier() override { return inner_.barrier(); }
  Result<std::unique_ptr<transport::Request>> iallreduceSum(std::span<float> data) override {
    return inner_.iallreduceSum(data);
  }

  Result<std::unique_ptr<transport::Request>> iallgatherv(
      std::span<const uint8_t> send, std::span<uint8_t> recv,
      std::span<const size_t> recvCounts) override {
    const std::vector<size_t> counts(recvCounts.begin(), recvCounts.end());
    return inject(recv, counts, [&] { return inner_.iallgatherv(send, recv, recvCounts); });
  }
  Result<std::unique_ptr<transport::Request>> ialltoallv(
      std::span<const uint8_t> send, std::span<const size_t> sendCounts, std::span<uint8_t> recv,
      std::span<const size_t> recvCounts) override {
    const std::vector<size_t> counts(recvCounts.begin(), recvCounts.end());
    return inject(recv, counts,
                  [&] { return inner_.ialltoallv(send, sendCounts, recv, recvCounts); });
  }

  // Operations are counted from here on (so that, say, a communicator's creation does not count).
  void arm() { armed_ = true; }
  // How many operations carried a fault (0 or 1).
  int injected() const { return injected_; }

 private:
  // Damages the received block of `from` once the inner request completes.
  class DamagingRequest final : public transport::Request {
   public:
    DamagingRequest(std::unique_ptr<transport::Request> inner, FaultyTransport& owner,
                    std::span<uint8_t> block)
        : inner_(std::move(inner)), owner_(owner), block_(block) {}
    Status wait() override {
      QCOMM_RETURN_IF_ERROR(inner_->wait());
      return owner_.damage(block_);
    }

   private:
    std::unique_ptr<transport::Request> inner_;
    FaultyTransport& owner_;
    std::span<uint8_t> block_;
  };

  template <typename Start>
  Result<std::unique_ptr<transport::Request>> inject(std::span<uint8_t> recv,
                                                     const std::vector<size_t>& counts,
                                                     Start start) {
    const int me = rank();
    const std::vector<size_t> offsets = transport::displacements(counts);
    const std::span<uint8_t> fromBlock =
        plan_.from < static_cast<int>(counts.size())
            ? recv.subspan(offsets[plan_.from], counts[plan_.from])
            : std::span<uint8_t>();
    const int64_t op = armed_ && fromBlock.size() >= plan_.minBytes ? next_++ : -1;
    if (op != plan_.operation || plan_.fault == Fault::kNone) {
      Result<std::unique_ptr<transport::Request>> request = start();
      // Remember `from`'s messages by size, for a later duplicate.
      if (request.isOk() && plan_.fault == Fault::kDuplicate && op >= 0 &&
          op < plan_.operation) {
        QCOMM_RETURN_IF_ERROR((*request)->wait());
        earlier_[fromBlock.size()].assign(fromBlock.begin(), fromBlock.end());
        return std::unique_ptr<transport::Request>(new transport::CompletedRequest());
      }
      return request;
    }
    const bool misbehaving = me == plan_.from;
    const bool receiving = !misbehaving && (plan_.at < 0 || plan_.at == me);
    switch (plan_.fault) {
      case Fault::kDrop:
        // Its messages are lost, and it waits in vain for the others' until its timeout.
        if (!misbehaving) break;
        ++injected_;
        std::this_thread::sleep_for(timeout());
        return Status(StatusCode::kDeadlineExceeded,
                      strCat("rank ", me, ": operation ", op, " lost its messages (injected drop)"));
      case Fault::kFail:
        if (!misbehaving) break;
        ++injected_;
        return Status(StatusCode::kInternal,
                      strCat("injected failure of rank ", me, " in operation ", op));
      case Fault::kDelay:
        if (!misbehaving) break;
        ++injected_;
        std::this_thread::sleep_for(plan_.delay);
        break;
      default:
        if (!receiving) break;
        QCOMM_ASSIGN_OR_RETURN(std::unique_ptr<transport::Request> request, start());
        return std::unique_ptr<transport::Request>(
            new DamagingRequest(std::move(request), *this, fromBlock));
    }
    return start();
  }

  Status damage(std::span<uint8_t> block) {
    if (block.empty()) return Status::ok();
    ++injected_;
    switch (plan_.fault) {
      case Fault::kCorrupt:
        block[block.size() / 2] ^= 0x10;
        return Status::ok();
      case Fault::kTruncate: {
        // What a transport that checks sizes (MPI's) reports; the tail never arrived.
        const size_t kept = block.size() / 2;
        std::memset(block.data() + kept, 0, block.size() - kept);
        return dataLoss("injected truncation on rank ", rank(), ": the message from rank ",
                        plan_.from, " is ", kept, " bytes where ", block.size(),
                        " were expected (size mismatch)");
      }
      case Fault::kDuplicate:
        if (const auto earlier = earlier_.find(block.size()); earlier != earlier_.end()) {
          std::memcpy(block.data(), earlier->second.data(), block.size());
        } else {
          --injected_;  // no earlier message of this size: nothing to duplicate
        }
        return Status::ok();
      default:
        return Status::ok();
    }
  }

  transport::Transport& inner_;
  FaultPlan plan_;
  bool armed_ = false;
  int64_t next_ = 0;
  int injected_ = 0;
  std::map<size_t, std::vector<uint8_t>> earlier_;
};

}  // namespace qcomm::testing
