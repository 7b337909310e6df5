// The CPU QSGD kernels built for the avx512 target (flags set in lib/CMakeLists.txt).
#define QCOMM_ISA_NS avx512
#define QCOMM_ISA_NAME "avx512"
#include "codec/qsgd_cpu_kernels.inc"
