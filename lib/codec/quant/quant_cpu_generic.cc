// The block quantizers' CPU kernels built for the generic target (flags set in lib/sources.cmake).
#define QCOMM_ISA_NS generic
#define QCOMM_ISA_NAME "generic"
#include "codec/quant/quant_cpu_kernels.inc"
