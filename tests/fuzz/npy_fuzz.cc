// Untrusted .npy images (qcomm codec reads them): parse or fail with an error naming the file;
// what parses holds exactly count * itemsize bytes.
#include <vector>

#include "fuzz_target.h"
#include "npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcomm;
  const std::vector<uint8_t> bytes(data, data + size);
  Result<launcher::NpyArray> a = launcher::parseNpy(bytes, "fuzz.npy");
  if (a.isOk()) {
    const size_t item = a->dtype == DType::kFloat32 ? 4 : 8;
    if (a->data.size() != static_cast<size_t>(a->count()) * item) {
      fuzz::broken("parsed array's data does not match its shape");
    }
    if (a->data.size() > size) fuzz::broken("parsed array holds more bytes than the file");
  } else if (a.status().message().find("fuzz.npy") == std::string::npos) {
    fuzz::broken("the error does not name the file:", a.status().message().c_str());
  }
  return 0;
}
