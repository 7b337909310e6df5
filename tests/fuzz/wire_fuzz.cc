// Untrusted wire messages (QSGD and the block quantizers): parsing either succeeds with a
// consistent tensor or fails with an error; decoding what parsed writes exactly its values; the
// codec-agnostic decodeWireMessage and the in-place reader (viewWire) agree; nothing reads past the message or allocates more than
// its bytes justify.
#include <cstring>
#include <span>
#include <vector>

#include "fuzz_target.h"
#include "qcomm/any_codec.h"
#include "qcomm/codec.h"
#include "qcomm/quantizers.h"
#include "qcomm/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcomm;
  const std::span<const uint8_t> message(data, size);
  int64_t count = -1;
  if (Result<EncodedTensor> e = fromWire(message); e.isOk()) {
    // A message carries at least one bit per value: a count beyond that is a forged header.
    if (static_cast<uint64_t>(e->count) > 64 * uint64_t{size} + 64) fuzz::broken("qsgd count");
    count = e->count;
    std::vector<float> out(count);
    if (!qsgdDecode(*e, out).isOk()) fuzz::broken("a parsed QSGD message did not decode");
  }
  {
    // Read in place (an aligned copy of the message): parses exactly when the copying parser
    // does, and decodes to the same bits.
    std::vector<uint64_t> aligned((size + 7) / 8);
    if (size > 0) std::memcpy(aligned.data(), data, size);
    const std::span<const uint8_t> inPlace(reinterpret_cast<const uint8_t*>(aligned.data()), size);
    Result<EncodedView> view = viewWire(inPlace);
    if (view.isOk() != (count >= 0)) fuzz::broken("viewWire disagrees with fromWire");
    if (view.isOk()) {
      std::vector<float> fromView(count), fromCopy(count);
      if (!qsgdDecode(*view, fromView).isOk()) fuzz::broken("a viewed message did not decode");
      // (memcmp of an empty tensor's null pointers is undefined: compare only values.)
      if (!qsgdDecode(*fromWire(message), fromCopy).isOk() ||
          (!fromView.empty() &&
           std::memcmp(fromView.data(), fromCopy.data(), 4 * fromView.size()) != 0)) {
        fuzz::broken("a viewed message decodes differently from its copy");
      }
    }
  }
  if (Result<QuantizedTensor> q = quantFromWire(message); q.isOk()) {
    if (count >= 0) fuzz::broken("both codecs parsed one message");
    if (static_cast<uint64_t>(q->count) > 64 * uint64_t{size} + 64) fuzz::broken("quant count");
    count = q->count;
    std::vector<float> out(count);
    if (!dequantize(*q, out).isOk()) fuzz::broken("a parsed quantizer message did not decode");
  }
  std::vector<float> out(count < 0 ? 16 : count);
  const bool decoded = decodeWireMessage(message, out).isOk();
  if (decoded != (count >= 0)) fuzz::broken("decodeWireMessage disagrees with the parsers");
  return 0;
}
