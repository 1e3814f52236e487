/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the GPU programs that are not criterion tests (bench_cuda,
 * fullsize_cuda): zoo models with seeded random weights in a host weight
 * store, inputs at a given batch and sequence length, FLOP counts, timing
 * statistics and the process's resident memory.
 */
#ifndef DPRT_TEST_CUDA_PROGS_H
#define DPRT_TEST_CUDA_PROGS_H

#include "exec/cuda/cuda.h"
#include "exec/exec.h"
#include "mem/mem.h"

#define PROG_MAX_IO 4

/* Build zoo model name in dtype dt with wsrc_random(seed) weights in a new
 * host weight store; a name ending in .dpk is a package file, read with its
 * own dtype and weights. 0 or an error with err_set. */
int prog_model(const char *name, enum dtype dt, uint64_t seed, struct graph **g,
	       struct hoststore **hs);

/*
 * Inputs for g at batch/seq (seq 0: the model's default). INT64 inputs:
 * ids below the smallest embedding table that reads them (masks: 1, but
 * for `pad` trailing zeros in every row after the first); floats uniform in
 * [-1, 1). Optional inputs are omitted when omit_optional. Returns 0 or
 * -ENOMEM; free with prog_free_inputs.
 */
int prog_inputs(const struct graph *g, int64_t batch, int64_t seq, int64_t pad, bool omit_optional,
		uint64_t seed, struct tview *in);
void prog_free_inputs(const struct graph *g, struct tview *in);

/* Floating-point operations of one run with inputs in (GEMMs, attention
 * and convolutions: 2 per multiply-add); 0 if the shapes do not fit. */
double prog_flops(const struct graph *g, const struct tview *in);

/* Sort t[n] and give mean, median and 99th percentile. */
struct prog_stats {
	double mean, p50, p99, min;
};
void prog_stats(double *t, int n, struct prog_stats *s);

/* The process's resident set in KiB (VmRSS), -1 if unknown. */
long prog_rss_kib(void);

#endif
