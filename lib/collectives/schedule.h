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
  std::vector<float> mean;
  std::vector<EncodedView> views;  // received messages, read in place
  // The block quantizers' messages: their tensors, and the decoded values and running sum of
  // decode-and-mean (allocated and faulted in afresh on every call, they made a 64 MB allgather
  // with linear 8-bit 15x slower).
  CodecScratch codec;
  std::vector<float> decoded, sum;
  struct Hierarchy {  // the hierarchical schedule's own, untouched by the cross-host steps
    std::vector<size_t> sendCounts, recvCounts, counts;
    std::vector<float> gathered, result;
    std::vector<float> hostSum[2];  // per pipeline slot: read again when the chunk finishes
  } hierarchy;
};

// The first n elements of a reused buffer, grown when too small but never shrunk: resizing a
// vector up again after a smaller chunk would zero the regrown part on every call.
template <typename T>
std::span<T> firstOf(std::vector<T>& buffer, size_t n) {
  if (buffer.size() < n) buffer.resize(n);
  return std::span<T>(buffer).first(n);
}

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
  // Where a damaged received message is recorded (see deferDataLoss); null: nowhere, every
  // error ends the schedule at once.
  Status* damaged = nullptr;
};

// A damaged received message (DataLoss: a CRC or size mismatch, a bad header, a message of
// another call) must not end the schedule on this rank alone, or the other ranks would wait for
// it in the next collective: it is recorded in *ctx.damaged (the first one), and the schedule
// goes on with the values it would have given set to zero. The Communicator then fails the call
// on every rank. Returns `status` itself for other errors, or when ctx.damaged is null.
Status deferDataLoss(const ScheduleContext& ctx, Status status);

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
// and starts the transfer; finish waits, decodes and averages into `out`. Error feedback: start
// writes `residual` (input - D(Q(input)), from the encoder), and sra's finish the owner residual
// (the whole chunk's span).
Status allgatherStart(ScheduleContext& ctx, Workspace::Slot& s, std::span<const float> in,
                      std::span<float> residual);
Status allgatherFinish(ScheduleContext& ctx, Workspace::Slot& s, std::span<float> out);
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

// Every message a schedule sends starts with an envelope: 8 bytes that hash what its receiver
// expects (seed, step, random stream, sender, the first value's index in the tensor, the count),
// so that a stale, duplicated or misdelivered message is a DataLoss naming its sender, not
// wrong values. The wire message follows.
inline constexpr size_t kEnvelopeBytes = 8;
struct MessageId {
  uint32_t stream;  // the tensor's random stream (tensorId, or the owners' stream)
  uint32_t sender;  // the sender's rank in ctx.transport
  int64_t first;    // the index of the message's first value in the whole tensor
};

// The envelope of a message about `count` values.
uint64_t messageEnvelope(const ScheduleContext& ctx, const MessageId& id, int64_t count);
// Encodes `values` into an envelope and a wire message (random key: seed, id.sender, id.stream,
// step). With `residual` (values.size() floats), also residual = values - decode(message), the
// error-feedback residual (QSGD: from the encoder, no second pass).
Status encodeMessage(ScheduleContext& ctx, std::span<const float> values, const MessageId& id,
                     EncodedTensor* scratch, std::vector<uint8_t>* message,
                     std::span<float> residual = {});
// The exact size (envelope and wire message) of `count` encoded values under ctx's codec.
Result<size_t> messageSize(const ScheduleContext& ctx, int64_t count);
// Checks the envelope, parses and decodes one message of exactly out.size() values.
Status decodeMessage(ScheduleContext& ctx, std::span<const uint8_t> message, const MessageId& id,
                     std::span<float> out);
// out = mean, summed in rank order, of the `ranks` messages of `size` bytes each in `messages`,
// message r from sender r about values [first, first + out.size()) of stream `stream`
// (QSGD: qsgdDecodeMean, one pass that writes out once); with residual.residualOf = r, also
// residual = residual.input - decode(message r).
Status decodeMeanMessages(ScheduleContext& ctx, std::span<const uint8_t> messages, size_t size,
                          int ranks, uint32_t stream, int64_t first, std::span<float> out,
                          const DecodeMeanResidual& residual);

}  // namespace qcomm::collectives
