// What every allreduce schedule gets: the transport, the codec, the random key and the
// error-feedback buffers. Schedules see only the codec and transport interfaces.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "qcomm/codec.h"
#include "qcomm/communicator.h"
#include "qcomm/topology.h"
#include "qcomm/transport.h"
#include "qcomm/wire.h"

namespace qcomm::collectives {

// Buffers the schedules reuse from call to call (the Communicator owns one; its calls run one at
// a time): after the first call of a size nothing is allocated, so no fresh page is touched.
struct Workspace {
  struct Slot {
    EncodedTensor encoded;
    std::vector<int64_t> bounds;
    std::vector<size_t> sendCounts, recvCounts;
    std::vector<uint8_t> send, recv;
    std::unique_ptr<transport::Request> request;
    int64_t begin = 0, end = 0;
  };
  Slot slots[2];  // the two-deep pipeline
  EncodedTensor scratch;
  std::vector<uint8_t> message, gathered;
  std::vector<size_t> counts;
  std::vector<float> decoded, mean;
  std::vector<EncodedTensor> codes;  // parsed received messages
  std::vector<const EncodedTensor*> views;
  struct Hierarchy {  // the hierarchical schedule's own, untouched by the cross-host steps
    std::vector<size_t> sendCounts, recvCounts, counts;
    std::vector<float> gathered, result;
    std::vector<float> hostSum[2];  // per pipeline slot: read again when the chunk finishes
  } hierarchy;
};

struct ScheduleContext {
  transport::Transport& transport;
  Executor* executor;
  CodecConfig codec;
  WireOptions wire;
  uint64_t seed;
  uint32_t tensorId;
  uint64_t step;
  int64_t chunkNumel;
  // Error feedback: when non-empty (same size as the input), the schedule stores
  // input - D(Q(input)) of what this rank sent, and (sra) the owner's re-encoding residual, which
  // it also adds before re-encoding.
  std::span<float> residual;
  std::span<float> ownerResidual;
  CommunicatorStats* stats;
  Workspace* workspace;
  // The hierarchical schedule's groups: the ranks of this host, and (owners of a slice) the
  // ranks of other hosts that own the same slice.
  const HostLayout* layout = nullptr;
  transport::Transport* intra = nullptr;
  transport::Transport* cross = nullptr;
};

// output = mean over ranks of input (input and output may be the same span).
Status allreduceAllgather(ScheduleContext& ctx, std::span<const float> input,
                          std::span<float> output);
Status allreduceSra(ScheduleContext& ctx, std::span<const float> input, std::span<float> output);
Status allreduceUncompressed(ScheduleContext& ctx, std::span<const float> input,
                             std::span<float> output);
Status allreduceHierarchical(ScheduleContext& ctx, std::span<const float> input,
                             std::span<float> output);
// What the hierarchical schedule runs among hosts on a slice of `count` values.
Algorithm crossHostAlgorithm(int64_t count, int hosts);

// One chunk of the compressed exchanges, in the halves the pipelines interleave: start encodes
// and starts the transfer; finish waits, decodes and averages into `out`. `in` must stay as it is
// until finish. Error feedback: allgather writes `residual` in finish, sra in start, and sra's
// owner residual (the whole chunk's span) in finish.
Status allgatherStart(ScheduleContext& ctx, Workspace::Slot& s, std::span<const float> in);
Status allgatherFinish(ScheduleContext& ctx, Workspace::Slot& s, std::span<const float> in,
                       std::span<float> out, std::span<float> residual);
Status sraStart(ScheduleContext& ctx, Workspace::Slot& s, std::span<const float> in,
                std::span<float> residual);
Status sraFinish(ScheduleContext& ctx, Workspace::Slot& s, std::span<float> out,
                 std::span<float> ownerResidual);

// The two-deep pipeline every chunked schedule uses: n values are cut into chunks of
// ctx.chunkNumel; start(c, begin, end) (encode, start the transfer) of chunk c + 1 runs before
// finish(c) (wait, decode), so encoding overlaps communication.
Status runPipelined(const ScheduleContext& ctx, int64_t n,
                    const std::function<Status(int64_t, int64_t, int64_t)>& start,
                    const std::function<Status(int64_t)>& finish);

// Encodes `values` (global index offset `first` for the random stream) into a wire message.
Status encodeMessage(ScheduleContext& ctx, std::span<const float> values, uint32_t rank,
                     uint32_t tensorId, EncodedTensor* scratch, std::vector<uint8_t>* message);
// The exact wire size of `count` encoded values under ctx's codec.
Result<size_t> messageSize(const ScheduleContext& ctx, int64_t count);
// Parses and decodes one message of exactly out.size() values.
Status decodeMessage(ScheduleContext& ctx, std::span<const uint8_t> message, std::span<float> out);
// out = mean, summed in rank order, of the `ranks` messages of `size` bytes each in `messages`
// (QSGD: qsgdDecodeMean, one pass that writes out once); with residual.residualOf = r, also
// residual = residual.input - decode(message r).
Status decodeMeanMessages(ScheduleContext& ctx, std::span<const uint8_t> messages, size_t size,
                          int ranks, std::span<float> out, const DecodeMeanResidual& residual);

}  // namespace qcomm::collectives
