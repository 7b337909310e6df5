// The allreduce's inner loop on untrusted input: a batch of P messages of one size (as the
// allgather and sra receive them), decoded and averaged into `out`. Any mix of codecs, configs,
// counts and garbage must give an error naming the rank, or a mean of the right size. Each
// message gets the envelope its receiver expects (so the wire decoder is reached), except when
// the input asks for a wrong one.
#include <cstring>
#include <vector>

#include "collectives/schedule.h"
#include "fuzz_target.h"
#include "qcomm/local_transport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcomm;
  fuzz::Bytes in(data, size);
  const int ranks = 1 + in.u8() % 8;
  const int64_t count = in.u8() | (int64_t{in.u8()} << 8);  // what the receiver expects
  const uint8_t flags = in.u8();
  const bool qsgd = (flags & 1) == 0;
  const bool wrongEnvelope = (flags & 0x1e) == 0x1e;  // 1 in 16
  const size_t each = in.restSize() / ranks;
  transport::LocalGroup group(1);
  const std::unique_ptr<transport::Transport> t = group.transport(0);
  CodecConfig codec;
  codec.isQsgd = qsgd;
  codec.qsgd = {4, 512, NormKind::kMax, Layout::kCompact};
  codec.quant = parseQuantSpec("linear:bits=4").value();
  CommunicatorStats stats;
  collectives::Workspace workspace;
  collectives::ScheduleContext ctx{*t, nullptr, codec, WireOptions{}, 0, 0, 0, 1 << 20,
                                   {},  {},      &stats, &workspace};
  std::vector<float> out(count), input(count, 1.0f), residual(count);
  const size_t framed = collectives::kEnvelopeBytes + each;
  std::vector<uint8_t> messages(framed * ranks);
  for (int k = 0; k < ranks; ++k) {
    const uint64_t envelope =
        collectives::messageEnvelope(ctx, {7, static_cast<uint32_t>(k), 0}, count) ^
        (wrongEnvelope ? 1 : 0);
    std::memcpy(messages.data() + k * framed, &envelope, sizeof(envelope));
    std::memcpy(messages.data() + k * framed + collectives::kEnvelopeBytes, in.rest() + k * each,
                each);
  }
  DecodeMeanResidual r{0, input, residual};
  const Status s =
      collectives::decodeMeanMessages(ctx, messages, framed, ranks, 7, 0, out, r);
  if (!s.isOk() && s.message().find("rank 0: ") == std::string::npos) {
    fuzz::broken("the error does not name the receiving rank:", s.message().c_str());
  }
  return 0;
}
