// The block quantizers' CPU kernels built for the avx2 target (flags set in lib/sources.cmake).
#define QCOMM_ISA_NS avx2
#define QCOMM_ISA_NAME "avx2"
#include "codec/quant/quant_cpu_kernels.inc"
