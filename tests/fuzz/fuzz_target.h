// What every fuzz target defines: libFuzzer's entry point. Built two ways (tests/fuzz/CMakeLists):
// with clang and -fsanitize=fuzzer,address,undefined for fuzzing (tests/fuzz/run.sh), and with
// the regular compiler against replay_main.cc, which feeds the committed corpus through the same
// function under ctest (label fuzz). A target returns 0; a broken promise aborts with a message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace qcomm::fuzz {

// A promise the code under test broke: say which and abort (libFuzzer saves the input).
[[noreturn]] inline void broken(const char* what, const char* detail = "") {
  std::fprintf(stderr, "fuzz: broken promise: %s %s\n", what, detail);
  std::abort();
}

// Reads structured choices off the front of the input; zeros once it runs out.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{u8()} << (8 * i);
    return v;
  }
  const uint8_t* rest() const { return data_ + pos_; }
  size_t restSize() const { return size_ - pos_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace qcomm::fuzz
