/* SPDX-License-Identifier: MIT */
/*
 * Kernels of bench/bandwidth.c, embedded the way src/exec/cuda embeds its
 * own: read bandwidth of a buffer (device memory, or pinned host memory
 * through its device mapping: DHA), and a random fill for GEMM operands.
 */
#include <cuda_fp16.h>
#include <stdint.h>

/* Read n16 16-byte words of src (grid-stride, 4 loads in flight per
 * thread); xor everything into sink[block] so nothing is optimised out. */
extern "C" __global__ void bw_read(const uint4 *src, unsigned long long n16, unsigned *sink)
{
	unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
	unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;
	unsigned acc = 0;

	for (; i + 3 * step < n16; i += 4 * step) {
		uint4 a = src[i], b = src[i + step], c = src[i + 2 * step], d = src[i + 3 * step];

		acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w;
		acc ^= c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
	}
	for (; i < n16; i += step) {
		uint4 a = src[i];

		acc ^= a.x ^ a.y ^ a.z ^ a.w;
	}
	if (acc == 0x9e3779b9u) /* practically never: keeps the loads */
		sink[blockIdx.x] = acc;
}

__device__ __forceinline__ float hash_unit(unsigned long long i, unsigned seed)
{
	unsigned long long x = i * 0x9e3779b97f4a7c15ull + seed;

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (float)(long long)(x >> 40) * (1.0f / 8388608.0f) - 1.0f;
}

/* Uniform [-1, 1) values: fp32 (f16 == 0) or fp16. */
extern "C" __global__ void bw_fill(void *dst, unsigned long long n, unsigned seed, int f16)
{
	for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
	     i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
		float v = hash_unit(i, seed);

		if (f16)
			((__half *)dst)[i] = __float2half_rn(v);
		else
			((float *)dst)[i] = v;
	}
}
