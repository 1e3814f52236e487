/* SPDX-License-Identifier: MIT */
/*
 * The kernels' fatbin (sm_80 and sm_90 machine code, compute_90 PTX), built
 * by nvcc from kernels.cu and embedded here at build time. The assembler
 * finds kernels.fatbin through its include path (-Wa,-I<dir>); see
 * cuda.ninja. cuModuleLoadData wants the image aligned.
 */
#include "cuda_priv.h"

__asm__(".section .rodata.dprt_fatbin,\"a\",@progbits\n"
	".balign 64\n"
	".globl cuda_fatbin\n"
	".type cuda_fatbin, @object\n"
	"cuda_fatbin:\n"
	".incbin \"kernels.fatbin\"\n"
	".size cuda_fatbin, . - cuda_fatbin\n"
	".byte 0\n"
	".previous\n");
