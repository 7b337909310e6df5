// Chooses the CPU kernel table at run time, so one binary runs everywhere and uses AVX2/AVX-512
// where the CPU has them.
#include <string>

#include "codec/qsgd_cpu_kernels.h"

namespace qcomm::qsgd {

namespace generic {
const CpuKernels& kernels();
}
#if defined(QCOMM_HAVE_X86_KERNELS)
namespace avx2 {
const CpuKernels& kernels();
}
namespace avx512 {
const CpuKernels& kernels();
}
#endif

const CpuKernels& genericKernels() { return generic::kernels(); }

const CpuKernels* avx2Kernels() {
#if defined(QCOMM_HAVE_X86_KERNELS)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2")) return &avx2::kernels();
#endif
  return nullptr;
}

const CpuKernels* avx512Kernels() {
#if defined(QCOMM_HAVE_X86_KERNELS)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("bmi2")) {
    return &avx512::kernels();
  }
#endif
  return nullptr;
}

Result<const CpuKernels*> selectKernels(std::string_view isa) {
  if (isa == "auto") {
    if (const CpuKernels* k = avx512Kernels()) return k;
    if (const CpuKernels* k = avx2Kernels()) return k;
    return &genericKernels();
  }
  if (isa == "generic") return &genericKernels();
  if (isa == "avx2" || isa == "avx512") {
    const CpuKernels* k = isa == "avx2" ? avx2Kernels() : avx512Kernels();
    if (k == nullptr) {
      return failedPrecondition(
          "CPU kernels '", isa,
          "' were asked for (QCOMM_CPU_ISA) but this CPU or build lacks them");
    }
    return k;
  }
  return invalidArgument("QCOMM_CPU_ISA='", std::string(isa),
                         "' is not one of auto, generic, avx2, avx512");
}

}  // namespace qcomm::qsgd
