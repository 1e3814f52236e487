/* SPDX-License-Identifier: MIT */
/*
 * bandwidth: the transfer and compute ceilings that dprt's numbers are
 * judged against, on the machine it runs on (GPU 0, and GPU 0 <-> 1 when
 * there are two):
 *
 *   copy     H2D and D2H, pinned and pageable host memory, 4 KiB .. 1 GiB
 *            (wall clock around back-to-back copies and a synchronize;
 *            GB/s = 1e9 bytes/s, and microseconds per copy)
 *   dha      a kernel reading pinned, device-mapped host memory (direct
 *            host access), and the same kernel reading device memory
 *   d2d      a device-to-device copy (bytes read + written)
 *   peer     a peer copy between GPUs 0 and 1 (skipped on one GPU)
 *   gemm     cuBLAS SGEMM (true fp32, no TF32) and HGEMM (fp32
 *            accumulation) on random data: large squares and the shapes
 *            of the transformers' linear layers (M out features, N tokens)
 *
 * Lines starting "BW" and "GEMM" are for scripts (bench/warm.sh).
 *
 *   bandwidth [-q]     (-q: fewer repetitions)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec/cuda/cuda_priv.h"

__asm__(".section .rodata.bw_fatbin,\"a\",@progbits\n"
	".balign 64\n"
	".globl bw_fatbin\n"
	".type bw_fatbin, @object\n"
	"bw_fatbin:\n"
	".incbin \"bw_kernels.fatbin\"\n"
	".size bw_fatbin, . - bw_fatbin\n"
	".byte 0\n"
	".previous\n");
extern const unsigned char bw_fatbin[];

#define GIB (1ull << 30)

struct bench {
	struct cuda_dev *d;
	CUmodule mod;
	CUfunction read, fill;
	CUdeviceptr dev; /* GIB of device memory */
	void *pinned;	 /* GIB, pinned and mapped */
	CUdeviceptr pinned_dev;
	void *pageable; /* GIB */
	bool quick;
};

static int check(int ret, const char *what)
{
	if (ret)
		fprintf(stderr, "bandwidth: %s: %s\n", what, err_msg(ret));
	return ret;
}

/* ----------------------------------------------------------------- copy */

enum dir { H2D, D2H };

static int copy_once(struct bench *b, enum dir dir, void *host, uint64_t size)
{
	CUstream st = b->d->stream;

	if (dir == H2D)
		return CU(cuMemcpyHtoDAsync(b->dev, host, size, st));
	return CU(cuMemcpyDtoHAsync(host, b->dev, size, st));
}

static int copy_series(struct bench *b, enum dir dir, bool pinned, uint64_t size)
{
	void *host = pinned ? b->pinned : b->pageable;
	uint64_t want = b->quick ? 128ull << 20 : 512ull << 20;
	int reps = (int)MAX(3, MIN(2000, want / size)), i, ret;
	double ms;
	uint64_t t0;

	ret = copy_once(b, dir, host, size) ?: CU(cuStreamSynchronize(b->d->stream));
	t0 = clock_ns();
	for (i = 0; i < reps && !ret; i++)
		ret = copy_once(b, dir, host, size);
	ret = ret ?: CU(cuStreamSynchronize(b->d->stream));
	ms = clock_ms_since(t0);
	if (ret)
		return ret;
	printf("BW %s %-8s %11llu B %8.2f GB/s %10.2f us/copy (%d copies)\n",
	       dir == H2D ? "h2d" : "d2h", pinned ? "pinned" : "pageable", (unsigned long long)size,
	       (double)size * reps / (ms * 1e6), ms * 1e3 / reps, reps);
	return 0;
}

static int copies(struct bench *b)
{
	static const enum dir dirs[] = {H2D, D2H};
	uint64_t size;
	int p, k, ret = 0;

	printf("# copies between host and GPU 0 (wall clock, back to back)\n");
	for (k = 0; k < 2 && !ret; k++)
		for (p = 1; p >= 0 && !ret; p--)
			for (size = 4096; size <= GIB && !ret; size *= 4)
				ret = copy_series(b, dirs[k], p, size);
	return check(ret, "copies");
}

/* ------------------------------------------------------------- kernels */

/* Read size bytes at src with grid blocks x threads; GB/s. */
static int read_rate(struct bench *b, CUdeviceptr src, uint64_t size, unsigned grid,
		     unsigned threads, double *gbs)
{
	unsigned long long n16 = size / 16;
	CUdeviceptr sink = b->dev + size; /* b->dev holds GIB; size <= GIB / 2 */
	void *args[] = {&src, &n16, &sink};
	int reps = b->quick ? 3 : 5, i, ret;
	CUevent e0 = NULL, e1 = NULL;
	float ms = 0;

	ret = CU(cuEventCreate(&e0, CU_EVENT_DEFAULT)) ?: CU(cuEventCreate(&e1, CU_EVENT_DEFAULT));
	ret = ret   ?:
		      CU(cuLaunchKernel(b->read, grid, 1, 1, threads, 1, 1, 0, b->d->stream, args,
					NULL));
	ret = ret ?: CU(cuEventRecord(e0, b->d->stream));
	for (i = 0; i < reps && !ret; i++)
		ret = CU(cuLaunchKernel(b->read, grid, 1, 1, threads, 1, 1, 0, b->d->stream, args,
					NULL));
	ret = ret					  ?:
		      CU(cuEventRecord(e1, b->d->stream)) ?:
		      CU(cuEventSynchronize(e1))	  ?:
							    CU(cuEventElapsedTime(&ms, e0, e1));
	if (e0)
		CU(cuEventDestroy(e0));
	if (e1)
		CU(cuEventDestroy(e1));
	*gbs = ret ? 0 : (double)size * reps / ((double)ms * 1e6);
	return ret;
}

static int dha(struct bench *b)
{
	static const unsigned per_sm[] = {1, 2, 4, 8, 16, 32};
	static const unsigned threads[] = {256, 512};
	uint64_t size = GIB / 2;
	double best = 0, best_dev = 0, gbs;
	size_t i, t;
	int ret = 0;

	printf("# a kernel reading %llu MiB: pinned host memory (DHA) and device memory\n",
	       (unsigned long long)(size >> 20));
	for (t = 0; t < ARRAY_SIZE(threads); t++) {
		for (i = 0; i < ARRAY_SIZE(per_sm) && !ret; i++) {
			unsigned grid = per_sm[i] * (unsigned)b->d->sm_count;

			ret = read_rate(b, b->pinned_dev, size, grid, threads[t], &gbs);
			printf("dha  grid %5u x %3u: host memory %7.2f GB/s", grid, threads[t],
			       gbs);
			best = MAX(best, gbs);
			ret = ret ?: read_rate(b, b->dev, size, grid, threads[t], &gbs);
			printf(", device memory %8.1f GB/s\n", gbs);
			best_dev = MAX(best_dev, gbs);
		}
	}
	if (!ret)
		printf("BW dha best %.2f GB/s\nBW devread best %.1f GB/s\n", best, best_dev);
	return check(ret, "dha");
}

static int d2d(struct bench *b)
{
	uint64_t half = GIB / 2;
	int reps = 10, i, ret;
	uint64_t t0;
	double ms;

	ret = CU(cuMemcpyDtoDAsync(b->dev + half, b->dev, half, b->d->stream)) ?:
		      CU(cuStreamSynchronize(b->d->stream));
	t0 = clock_ns();
	for (i = 0; i < reps && !ret; i++)
		ret = CU(cuMemcpyDtoDAsync(b->dev + half, b->dev, half, b->d->stream));
	ret = ret ?: CU(cuStreamSynchronize(b->d->stream));
	ms = clock_ms_since(t0);
	if (!ret)
		printf("BW d2d %.1f GB/s (512 MiB copies, read + written)\n",
		       2.0 * (double)half * reps / (ms * 1e6));
	return check(ret, "d2d");
}

static int peer(struct bench *b)
{
	struct cuda_dev *d1 = NULL;
	CUdeviceptr far = 0;
	uint64_t size = 256ull << 20;
	int n = cuda_device_count(), can = 0, reps = 10, i, ret;
	uint64_t t0;
	double ms;

	if (n < 2) {
		printf("BW peer skipped: this machine has %d GPU\n", n);
		return 0;
	}
	/* far on GPU 1 (its context is current after the open), then back */
	ret = cuda_device_open(1, &d1)					  ?:
		      CU(cuMemAlloc(&far, size))			  ?:
		      CU(cuDeviceCanAccessPeer(&can, b->d->dev, d1->dev)) ?:
									    cuda_dev_enter(b->d);
	if (!ret && can)
		ret = CU(cuCtxEnablePeerAccess(d1->ctx, 0));
	if (!ret && !can)
		printf("# GPUs 0 and 1 have no peer access: copies go through the host\n");
	ret = ret										 ?:
		      CU(cuMemcpyPeerAsync(far, d1->ctx, b->dev, b->d->ctx, size, b->d->stream)) ?:
		      CU(cuStreamSynchronize(b->d->stream));
	t0 = clock_ns();
	for (i = 0; i < reps && !ret; i++)
		ret = CU(cuMemcpyPeerAsync(far, d1->ctx, b->dev, b->d->ctx, size, b->d->stream));
	ret = ret ?: CU(cuStreamSynchronize(b->d->stream));
	ms = clock_ms_since(t0);
	if (!ret)
		printf("BW peer 0->1 %.1f GB/s (256 MiB copies, peer access %s)\n",
		       (double)size * reps / (ms * 1e6), can ? "on" : "off");
	if (far) {
		cuda_dev_enter(d1);
		CU(cuMemFree(far));
	}
	cuda_device_close(d1);
	cuda_dev_enter(b->d);
	return check(ret, "peer");
}

/* ---------------------------------------------------------------- GEMM */

static int fill(struct bench *b, CUdeviceptr p, uint64_t n, unsigned seed, int f16)
{
	unsigned long long nn = n;
	void *args[] = {&p, &nn, &seed, &f16};

	return CU(cuLaunchKernel(b->fill, (unsigned)b->d->sm_count * 8, 1, 1, 256, 1, 1, 0,
				 b->d->stream, args, NULL));
}

/* C[m, n] = A^T B as the linear layers call it (A: K x M, B: K x N). */
static int gemm(struct bench *b, int m, int n, int k, bool f16)
{
	cudaDataType_t t = f16 ? CUDA_R_16F : CUDA_R_32F;
	uint64_t es = f16 ? 2 : 4;
	uint64_t sa = ALIGN_UP((uint64_t)m * k * es, 256), sb = ALIGN_UP((uint64_t)k * n * es, 256);
	CUdeviceptr a = b->dev, bb = b->dev + sa, c = b->dev + sa + sb;
	const float one = 1.0f, zero = 0.0f;
	int reps = m >= 4096 && n >= 4096 ? 10 : 50, i, ret;
	CUevent e0 = NULL, e1 = NULL;
	float ms = 0;

	if (sa + sb + (uint64_t)m * n * es > GIB)
		return err_set(-EINVAL, "GEMM %dx%dx%d does not fit", m, n, k);
	ret = fill(b, a, (uint64_t)m * k, 1, f16) ?: fill(b, bb, (uint64_t)k * n, 2, f16);
	ret = ret					       ?:
		      CU(cuEventCreate(&e0, CU_EVENT_DEFAULT)) ?:
		      CU(cuEventCreate(&e1, CU_EVENT_DEFAULT));
	for (i = -2; i < reps && !ret; i++) {
		if (i == 0)
			ret = CU(cuEventRecord(e0, b->d->stream));
		ret = ret   ?:
			      CUBLAS(cublasGemmEx(b->d->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k,
						  &one, (void *)a, t, k, (void *)bb, t, k, &zero,
						  (void *)c, t, m, CUBLAS_COMPUTE_32F,
						  CUBLAS_GEMM_DEFAULT));
	}
	ret = ret					  ?:
		      CU(cuEventRecord(e1, b->d->stream)) ?:
		      CU(cuEventSynchronize(e1))	  ?:
							    CU(cuEventElapsedTime(&ms, e0, e1));
	if (!ret)
		printf("GEMM %-4s %5d %5d %5d %9.4f ms %7.1f TFLOP/s\n", f16 ? "fp16" : "fp32", m,
		       n, k, ms / reps, 2.0 * m * n * k * reps / ((double)ms * 1e9));
	if (e0)
		CU(cuEventDestroy(e0));
	if (e1)
		CU(cuEventDestroy(e1));
	return ret;
}

static int gemms(struct bench *b)
{
	/* squares, then the linear layers: BERT/RoBERTa at 384 tokens (base,
	 * large), GPT-2 at 1024 (small, medium) */
	static const int shapes[][3] = {
		{8192, 8192, 8192}, {4096, 4096, 4096}, {2304, 384, 768},   {768, 384, 768},
		{3072, 384, 768},   {768, 384, 3072},	{3072, 384, 1024},  {1024, 384, 1024},
		{4096, 384, 1024},  {1024, 384, 4096},	{2304, 1024, 768},  {768, 1024, 768},
		{3072, 1024, 768},  {768, 1024, 3072},	{3072, 1024, 1024}, {1024, 1024, 1024},
		{4096, 1024, 1024}, {1024, 1024, 4096},
	};
	size_t i;
	int ret = 0;

	printf("# cuBLAS GEMMs (cublasGemmEx, CUBLAS_COMPUTE_32F: no TF32), random data\n");
	for (i = 0; i < ARRAY_SIZE(shapes) && !ret; i++)
		ret = gemm(b, shapes[i][0], shapes[i][1], shapes[i][2], false);
	for (i = 0; i < 2 && !ret; i++)
		ret = gemm(b, shapes[i][0], shapes[i][1], shapes[i][2], true);
	return check(ret, "gemm");
}

/* ---------------------------------------------------------------- main */

static int setup(struct bench *b)
{
	int ret;

	ret = cuda_device_open(0, &b->d);
	if (ret)
		return ret;
	ret = CU(cuModuleLoadData(&b->mod, bw_fatbin))			   ?:
		      CU(cuModuleGetFunction(&b->read, b->mod, "bw_read")) ?:
		      CU(cuModuleGetFunction(&b->fill, b->mod, "bw_fill")) ?:
		      CU(cuMemAlloc(&b->dev, GIB))			   ?:
		      CU(cuMemHostAlloc(&b->pinned, GIB, CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_PORTABLE)) ?:
		      CU(cuMemHostGetDevicePointer(&b->pinned_dev, b->pinned, 0));
	if (ret)
		return ret;
	b->pageable = malloc(GIB);
	if (!b->pageable)
		return -ENOMEM;
	memset(b->pageable, 1, GIB);
	memset(b->pinned, 2, GIB);
	return 0;
}

static void teardown(struct bench *b)
{
	free(b->pageable);
	if (b->pinned)
		CU(cuMemFreeHost(b->pinned));
	if (b->dev)
		CU(cuMemFree(b->dev));
	if (b->mod)
		CU(cuModuleUnload(b->mod));
	cuda_device_close(b->d);
}

int main(int argc, char **argv)
{
	struct bench b = {0};
	int ret;

	b.quick = argc > 1 && !strcmp(argv[1], "-q");
	ret = setup(&b);
	if (ret) {
		fprintf(stderr, "bandwidth: %s\n", err_msg(ret));
		teardown(&b);
		return 1;
	}
	printf("GPU 0: %s; %d GPU(s)\n", cuda_device_name(b.d), cuda_device_count());
	ret = copies(&b);
	ret = dha(&b) ?: ret;
	ret = d2d(&b) ?: ret;
	ret = peer(&b) ?: ret;
	ret = gemms(&b) ?: ret;
	teardown(&b);
	return ret ? 1 : 0;
}
