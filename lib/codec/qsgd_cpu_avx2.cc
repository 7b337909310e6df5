// The CPU QSGD kernels built for the avx2 target (flags set in lib/CMakeLists.txt).
#define QCOMM_ISA_NS avx2
#define QCOMM_ISA_NAME "avx2"
#include "codec/qsgd_cpu_kernels.inc"
