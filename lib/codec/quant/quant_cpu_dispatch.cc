// Chooses the block quantizers' CPU kernels: the same ISA as the QSGD kernels (one knob,
// QCOMM_CPU_ISA, one CPU check in codec/qsgd_cpu_dispatch.cc).
#include "codec/qsgd_cpu_kernels.h"
#include "codec/quant/quant_cpu_kernels.h"

namespace qcomm::quant {

namespace generic {
const QuantCpuKernels& kernels();
}
#if defined(QCOMM_HAVE_X86_KERNELS)
namespace avx2 {
const QuantCpuKernels& kernels();
}
namespace avx512 {
const QuantCpuKernels& kernels();
}
#endif

Result<const QuantCpuKernels*> selectQuantKernels(std::string_view isa) {
  QCOMM_ASSIGN_OR_RETURN(const qsgd::CpuKernels* chosen, qsgd::selectKernels(isa));
#if defined(QCOMM_HAVE_X86_KERNELS)
  if (chosen->name == "avx512") return &avx512::kernels();
  if (chosen->name == "avx2") return &avx2::kernels();
#endif
  return &generic::kernels();
}

}  // namespace qcomm::quant
