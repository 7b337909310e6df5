// The block quantizers' CPU kernels built for the avx512 target (flags set in lib/sources.cmake).
#define QCOMM_ISA_NS avx512
#define QCOMM_ISA_NAME "avx512"
#include "codec/quant/quant_cpu_kernels.inc"
