// Sets QCOMM_CPU_ISA (the CPU codec kernels: generic, avx2, avx512) for one scope.
#pragma once

#include <cstdlib>

namespace qcomm::testing {

class ScopedIsa {
 public:
  explicit ScopedIsa(const char* isa) { setenv("QCOMM_CPU_ISA", isa, 1); }
  ~ScopedIsa() { unsetenv("QCOMM_CPU_ISA"); }
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;
};

}  // namespace qcomm::testing
