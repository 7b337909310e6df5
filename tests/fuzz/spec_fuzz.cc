// Codec specs from users (command lines, Python, QCOMM_* knobs): any string parses or fails with
// an error; what parses prints back to a spec that parses to the same codec.
#include <string>

#include "fuzz_target.h"
#include "qcomm/communicator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcomm;
  const std::string spec(reinterpret_cast<const char*>(data), size);
  Result<CodecConfig> c = parseAnyCodecSpec(spec);
  if (!c.isOk()) {
    if (c.status().message().empty()) fuzz::broken("an error without a message");
    return 0;
  }
  const std::string printed = anyCodecSpec(*c);
  Result<CodecConfig> again = parseAnyCodecSpec(printed);
  if (!again.isOk()) fuzz::broken("the printed spec does not parse:", printed.c_str());
  if (anyCodecSpec(*again) != printed) fuzz::broken("the printed spec changed:", printed.c_str());
  return 0;
}
