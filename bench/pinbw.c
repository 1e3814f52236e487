/* SPDX-License-Identifier: MIT */
/*
 * pinbw: how fast host memory becomes pinned, device-mapped memory, by
 * method, on this machine's GPU 0. Each method makes SIZE bytes usable
 * as a copy source (and a DHA source), then one host-to-device copy of
 * the whole buffer is timed to show that it is really pinned (a pageable
 * copy runs at a fraction of the link):
 *
 *   hostalloc     cuMemHostAlloc(DEVICEMAP | PORTABLE): the driver
 *                 faults, zeroes and locks every page on one thread
 *   reg4k-T       mmap, pages touched by T threads, cuMemHostRegister
 *   regthp-T      the same with madvise(MADV_HUGEPAGE) (2 MiB pages)
 *   segs-T        mmap + THP, registered as SEG-byte segments, T threads
 *                 touching and registering segments at once; the copy
 *                 crosses every segment boundary
 *
 *   pinbw [-s SIZE_MIB] [-t THREADS] [-g SEG_MIB] [-r REPEATS]
 *
 * Prints one line per method and repeat: GB/s of making the memory
 * (touch + pin), and of the copy.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "mem/cudrv.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct job {
	char *base;
	uint64_t size, seg;
	unsigned nthreads, idx;
	int reg; /* register each segment after touching it */
	int failed;
	CUcontext ctx;
};

static void *touch_main(void *arg)
{
	struct job *j = arg;
	uint64_t nseg = (j->size + j->seg - 1) / j->seg;
	CUcontext prev;

	if (j->reg && CU(cuCtxPushCurrent(j->ctx))) {
		j->failed = 1;
		return NULL;
	}
	for (uint64_t s = j->idx; s < nseg; s += j->nthreads) {
		uint64_t off = s * j->seg;
		uint64_t n = off + j->seg > j->size ? j->size - off : j->seg;

		for (uint64_t o = 0; o < n; o += 4096)
			j->base[off + o] = 1;
		if (j->reg && CU(cuMemHostRegister(j->base + off, n,
						   CU_MEMHOSTREGISTER_DEVICEMAP |
							   CU_MEMHOSTREGISTER_PORTABLE)))
			j->failed = 1;
	}
	if (j->reg)
		CU(cuCtxPopCurrent(&prev));
	return NULL;
}

/* touch (and with reg, register) [base, base + size) in seg-byte pieces on nthreads threads */
static int touch(CUcontext ctx, char *base, uint64_t size, uint64_t seg, unsigned nthreads, int reg)
{
	pthread_t th[64];
	struct job jobs[64];
	int failed = 0;

	for (unsigned i = 0; i < nthreads; i++) {
		jobs[i] = (struct job){.base = base,
				       .size = size,
				       .seg = seg,
				       .nthreads = nthreads,
				       .idx = i,
				       .reg = reg,
				       .ctx = ctx};
		pthread_create(&th[i], NULL, touch_main, &jobs[i]);
	}
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		failed |= jobs[i].failed;
	}
	return failed ? -1 : 0;
}

static double copy_gbs(void *host, uint64_t size, CUdeviceptr dev)
{
	double t = now();

	if (CU(cuMemcpyHtoD(dev, host, size)))
		return -1;
	return (double)size / (now() - t) / 1e9;
}

static void report(const char *name, uint64_t size, double make_s, double touch_s, double cp)
{
	printf("%-12s %7.0f MiB  make %7.3f GB/s (%8.1f ms, touch %7.1f ms)  copy %6.2f GB/s\n",
	       name, (double)size / (1 << 20), (double)size / make_s / 1e9, make_s * 1e3,
	       touch_s * 1e3, cp);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	uint64_t size = 1024ull << 20, seg = 64ull << 20;
	unsigned threads = 8, repeats = 2;
	CUdevice dev;
	CUcontext ctx;
	CUdeviceptr d;
	int c;

	while ((c = getopt(argc, argv, "s:t:g:r:")) != -1) {
		switch (c) {
		case 's':
			size = strtoull(optarg, NULL, 0) << 20;
			break;
		case 't':
			threads = (unsigned)atoi(optarg);
			break;
		case 'g':
			seg = strtoull(optarg, NULL, 0) << 20;
			break;
		case 'r':
			repeats = (unsigned)atoi(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: pinbw [-s MiB] [-t threads] [-g seg MiB] [-r repeats]\n");
			return 2;
		}
	}
	if (threads < 1 || threads > 64 || !size || !seg)
		return 2;
	if (cudrv_load() || CU(cuDeviceGet(&dev, 0)) || CU(cuDevicePrimaryCtxRetain(&ctx, dev)) ||
	    CU(cuCtxSetCurrent(ctx)) || CU(cuMemAlloc(&d, size))) {
		fprintf(stderr, "pinbw: %s\n", err_msg(-1));
		return 1;
	}
	{
		void *p = malloc(size);

		memset(p, 1, size);
		printf("pageable copy %6.2f GB/s\n", copy_gbs(p, size, d));
		free(p);
	}
	for (unsigned r = 0; r < repeats; r++) {
		unsigned tlist[2] = {1, threads};
		void *h;
		double t;

		t = now();
		if (!CU(cuMemHostAlloc(&h, size,
				       CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_PORTABLE))) {
			report("hostalloc", size, now() - t, 0, copy_gbs(h, size, d));
			CU(cuMemFreeHost(h));
		}
		for (int thp = 0; thp < 2; thp++) {
			for (int ti = 0; ti < 2; ti++) {
				char name[32];
				double t1;
				void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
					       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

				if (m == MAP_FAILED)
					return 1;
				if (thp)
					madvise(m, size, MADV_HUGEPAGE);
				t = now();
				touch(ctx, m, size, 2u << 20, tlist[ti], 0);
				t1 = now();
				if (CU(cuMemHostRegister(m, size,
							 CU_MEMHOSTREGISTER_DEVICEMAP |
								 CU_MEMHOSTREGISTER_PORTABLE))) {
					fprintf(stderr, "pinbw: %s\n", err_msg(-1));
					munmap(m, size);
					continue;
				}
				snprintf(name, sizeof(name), "%s-%u", thp ? "regthp" : "reg4k",
					 tlist[ti]);
				{
					double mk = now() - t;
					CUdeviceptr dp = 0;

					CU(cuMemHostGetDevicePointer(&dp, m, 0));
					report(name, size, mk, t1 - t, copy_gbs(m, size, d));
					if (dp != (CUdeviceptr)(uintptr_t)m)
						printf("  device pointer %#llx != host %p\n",
						       (unsigned long long)dp, m);
				}
				CU(cuMemHostUnregister(m));
				munmap(m, size);
			}
		}
		for (int ti = 0; ti < 2; ti++) {
			char name[32];
			char *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			int bad;

			if (m == MAP_FAILED)
				return 1;
			madvise(m, size, MADV_HUGEPAGE);
			t = now();
			bad = touch(ctx, m, size, seg, tlist[ti], 1);
			snprintf(name, sizeof(name), "segs-%u", tlist[ti]);
			if (bad) {
				fprintf(stderr, "pinbw: %s: %s\n", name, err_msg(-1));
			} else {
				double mk = now() - t;
				char *back = malloc(size);
				uint64_t wrong = 0;

				for (uint64_t o = 0; o < size; o += 4096)
					m[o] = (char)(o >> 12);
				report(name, size, mk, 0, copy_gbs(m, size, d));
				/* the copy crossed segments: check it landed */
				if (back && !CU(cuMemcpyDtoH(back, d, size)))
					for (uint64_t o = 0; o < size; o += 4096)
						wrong += back[o] != (char)(o >> 12);
				printf("  segments %llu of %llu MiB, copy across them: %llu pages wrong\n",
				       (unsigned long long)((size + seg - 1) / seg),
				       (unsigned long long)(seg >> 20), (unsigned long long)wrong);
				free(back);
			}
			for (uint64_t off = 0; off < size; off += seg)
				CU(cuMemHostUnregister(m + off));
			munmap(m, size);
		}
	}
	return 0;
}
