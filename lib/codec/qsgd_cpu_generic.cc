// The CPU QSGD kernels built for the generic target (flags set in lib/CMakeLists.txt).
#define QCOMM_ISA_NS generic
#define QCOMM_ISA_NAME "generic"
#include "codec/qsgd_cpu_kernels.inc"
