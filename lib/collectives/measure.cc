// What `auto` measures when a communicator is created: the codec's speed on this rank, and the
// latency and bandwidth inside a host, out of a host and of the float allreduce. Every rank takes
// part in every probe and ends with the same numbers (the slowest rank's), so every rank predicts
// the same costs and picks the same algorithm (docs/algorithms.md, "How auto decides").
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "collectives/schedule.h"

namespace qcomm {
namespace {

using Clock = std::chrono::steady_clock;

template <typename Fn>
Result<double> bestOf(int runs, Fn&& fn) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = Clock::now();
    QCOMM_RETURN_IF_ERROR(fn());
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// The best of `runs` timings of `fn`, each started right after a barrier of `t` (the barrier is
// not timed: ranks arrive at a probe at different times, after codec probes of their own speed).
template <typename Fn>
Result<double> bestAfterBarrier(transport::Transport& t, int runs, Fn&& fn) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    QCOMM_RETURN_IF_ERROR(t.barrier());
    const auto t0 = Clock::now();
    QCOMM_RETURN_IF_ERROR(fn());
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// Every rank sends `perPeer` bytes to every other rank of `t`; seconds.
Result<double> timeExchange(transport::Transport& t, size_t perPeer, int runs) {
  const int p = t.size();
  std::vector<size_t> counts(p, perPeer);
  counts[t.rank()] = 0;
  std::vector<uint8_t> send(perPeer * (p - 1), 1), recv(perPeer * (p - 1));
  return bestAfterBarrier(t, runs, [&] { return t.alltoallv(send, counts, recv, counts); });
}

// latency + bytes * secondsPerByte, where bytes is what each rank sends (with one rank per host:
// what each host's link carries). The first exchange of each size is not timed: the first small
// one sets up connections (Open MPI connects a pair of ranks on its first message), the first
// large one empties the token buckets of shaped links and touches the buffers.
Result<LinkCost> probeExchange(transport::Transport& t, size_t small, size_t large) {
  QCOMM_RETURN_IF_ERROR(timeExchange(t, small, 1).status());
  QCOMM_ASSIGN_OR_RETURN(const double tSmall, timeExchange(t, small, 5));
  QCOMM_RETURN_IF_ERROR(timeExchange(t, large, 1).status());
  QCOMM_ASSIGN_OR_RETURN(const double tLarge, timeExchange(t, large, 2));
  const double bytes = static_cast<double>(t.size() - 1) * static_cast<double>(large - small);
  return LinkCost{tSmall, std::max(0.0, tLarge - tSmall) / bytes};
}

Result<LinkCost> probeAllreduce(transport::Transport& t) {
  constexpr size_t kSmall = 256, kLarge = size_t{1} << 18;
  std::vector<float> small(kSmall, 1.0f), large(kLarge, 1.0f);
  auto run = [&](std::vector<float>& data) {
    return [&]() -> Status { return t.allreduceSum(data); };
  };
  QCOMM_RETURN_IF_ERROR(bestAfterBarrier(t, 1, run(small)).status());
  QCOMM_ASSIGN_OR_RETURN(const double tSmall, bestAfterBarrier(t, 5, run(small)));
  QCOMM_RETURN_IF_ERROR(bestAfterBarrier(t, 1, run(large)).status());
  QCOMM_ASSIGN_OR_RETURN(const double tLarge, bestAfterBarrier(t, 1, run(large)));
  return LinkCost{tSmall, std::max(0.0, tLarge - tSmall) / (4.0 * (kLarge - kSmall))};
}

}  // namespace

Status Communicator::measure() {
  CostParameters& c = costParameters_;
  // The codec, on this rank's executor.
  constexpr int64_t kValues = int64_t{1} << 16;
  std::vector<float> values(kValues), out(kValues);
  for (int64_t i = 0; i < kValues; ++i) values[i] = std::sin(0.37f * static_cast<float>(i));
  CommunicatorStats scratchStats;
  collectives::ScheduleContext ctx{transport_, executor_, codec_,          WireOptions{},
                                   0,          0,         0,               kValues,
                                   {},         {},        &scratchStats,   workspace_.get()};
  EncodedTensor scratch;
  std::vector<uint8_t> message, twice;
  // Two messages, as from ranks 0 and 1, for the decode-and-mean.
  auto encodeTwice = [&](std::span<const float> v) -> Status {
    QCOMM_RETURN_IF_ERROR(collectives::encodeMessage(ctx, v, {0, 1, 0}, &scratch, &message));
    twice = message;
    QCOMM_RETURN_IF_ERROR(collectives::encodeMessage(ctx, v, {0, 0, 0}, &scratch, &message));
    twice.insert(twice.begin(), message.begin(), message.end());
    return Status::ok();
  };
  QCOMM_ASSIGN_OR_RETURN(const double encode, bestOf(3, [&] {
                           return collectives::encodeMessage(ctx, values, {0, 0, 0}, &scratch,
                                                             &message);
                         }));
  QCOMM_RETURN_IF_ERROR(encodeTwice(values));
  QCOMM_ASSIGN_OR_RETURN(const double decode, bestOf(3, [&] {
                           return collectives::decodeMeanMessages(ctx, twice, message.size(), 2,
                                                                  0, 0, out, {});
                         }));
  QCOMM_ASSIGN_OR_RETURN(const double sum, bestOf(3, [&] {
                           for (int64_t i = 0; i < kValues; ++i) out[i] += values[i];
                           return Status::ok();
                         }));
  c.encodeSecondsPerValue = encode / kValues;
  c.decodeSecondsPerValue = decode / (2.0 * kValues);
  c.sumSecondsPerValue = sum / kValues;
  c.codeBytesPerValue = static_cast<double>(message.size()) / kValues;
  // The fixed cost of a pass: a small tensor, less what its values cost at the large rate.
  constexpr int64_t kFew = 1024;
  const std::span<const float> few(values.data(), kFew);
  QCOMM_ASSIGN_OR_RETURN(const double encodeFew, bestOf(3, [&] {
                           return collectives::encodeMessage(ctx, few, {0, 0, 0}, &scratch,
                                                             &message);
                         }));
  QCOMM_RETURN_IF_ERROR(encodeTwice(few));
  QCOMM_ASSIGN_OR_RETURN(const double decodeFew, bestOf(3, [&] {
                           return collectives::decodeMeanMessages(
                               ctx, twice, message.size(), 2, 0, 0,
                               std::span<float>(out).first(kFew), {});
                         }));
  c.codecLatency = std::max(0.0, (encodeFew + decodeFew - kFew * (c.encodeSecondsPerValue +
                                                                     2 * c.decodeSecondsPerValue)) /
                                     2.0);

  // The links. Inside a host: every host at once, each rank to its neighbours.
  transport::Transport* intra = layout_.hosts == 1 ? &transport_ : intra_.get();
  if (intra != nullptr && intra->size() > 1) {
    QCOMM_ASSIGN_OR_RETURN(c.intra, probeExchange(*intra, 64, size_t{1} << 21));
  }
  // Out of a host: one rank per host (the owners of slice 0), about 2 MB over each link; all
  // ranks where there is one rank per host or the transport could not split (then the busiest
  // link carries l (H-1) of the probe's blocks, and the estimate errs on the slow side).
  if (layout_.hosts > 1) {
    // (intra_ exists where the split worked; cross_ is null also on ranks that own no slice.)
    const bool oneRankEach = !layout_.multiLevel() || intra_ == nullptr;
    transport::Transport* inter =
        oneRankEach ? &transport_ : (layout_.localRank == 0 ? cross_.get() : nullptr);
    if (inter != nullptr) {
      QCOMM_ASSIGN_OR_RETURN(c.inter, probeExchange(*inter, 64, (size_t{2} << 20) /
                                                                    (inter->size() - 1)));
    }
  }
  QCOMM_ASSIGN_OR_RETURN(c.allreduce, probeAllreduce(transport_));

  // Every rank takes the slowest rank's numbers (ranks outside a probe measured zeros).
  for (double* field : costFields(c)) {
    QCOMM_ASSIGN_OR_RETURN(const std::vector<uint64_t> all,
                           transport_.allgatherU64(std::bit_cast<uint64_t>(*field)));
    for (uint64_t bits : all) *field = std::max(*field, std::bit_cast<double>(bits));
  }
  measured_ = true;
  if (debug_) {
    std::fprintf(stderr,
                 "qcomm: auto measured: encode %.2f ns/value, decode %.2f ns/value, sum %.2f "
                 "ns/value, %.1f us a pass, %.3f bytes/value; inside a host %.1f us + %.3f GB/s; out of a host "
                 "%.1f us + %.3f GB/s; float allreduce %.1f us + %.3f GB/s\n",
                 c.encodeSecondsPerValue * 1e9, c.decodeSecondsPerValue * 1e9,
                 c.sumSecondsPerValue * 1e9, c.codecLatency * 1e6, c.codeBytesPerValue, c.intra.latency * 1e6,
                 c.intra.secondsPerByte > 0 ? 1e-9 / c.intra.secondsPerByte : 0.0,
                 c.inter.latency * 1e6,
                 c.inter.secondsPerByte > 0 ? 1e-9 / c.inter.secondsPerByte : 0.0,
                 c.allreduce.latency * 1e6,
                 c.allreduce.secondsPerByte > 0 ? 1e-9 / c.allreduce.secondsPerByte : 0.0);
  }
  return Status::ok();
}

}  // namespace qcomm
