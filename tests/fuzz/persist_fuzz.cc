// Untrusted archives: `.qc` files (loadEncoded, binary and text Boost archives). A forged archive
// must fail with an error, not crash or allocate more than its size can describe, and what loads
// must be a valid tensor that decodes. Communicator checkpoints (Communicator::loadState, first
// byte 2) too: they load within the same budget (codec/budget.h).
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_target.h"
#include "qcomm/communicator.h"
#include "qcomm/local_transport.h"
#include "qcomm/persist.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcomm;
  if (size == 0) return 0;
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
    case 1: {
      std::istringstream in(bytes);
      const ArchiveKind kind = data[0] % 3 == 0 ? ArchiveKind::kBinary : ArchiveKind::kText;
      if (Result<EncodedTensor> e = loadEncoded(in, kind); e.isOk()) {
        if (!validateEncoded(*e).isOk()) fuzz::broken("loadEncoded returned an invalid tensor");
        std::vector<float> out(e->count);
        if (!qsgdDecode(*e, out).isOk()) fuzz::broken("a loaded tensor did not decode");
      }
      return 0;
    }
    default: {
      transport::LocalGroup group(1);
      const std::unique_ptr<transport::Transport> t = group.transport(0);
      CommunicatorOptions options;
      options.algorithm = Algorithm::kAllgather;
      options.errorFeedback = true;
      auto comm = Communicator::create(*t, options);
      if (!comm.isOk()) fuzz::broken("creating the communicator", comm.status().message().c_str());
      std::istringstream in(bytes);
      (void)(*comm)->loadState(in);
      return 0;
    }
  }
}
