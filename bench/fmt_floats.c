/* SPDX-License-Identifier: MIT */
/*
 * fmt_floats: how fast JSON responses print tensors. fmt_g (src/base/util.c,
 * what the KServe encoder uses) against snprintf("%.*g"), its baseline, in
 * the same run: gpt2's last_hidden_state (786,432 floats) at precision 9
 * (fp32) and 5 (fp16), for three kinds of values; best of 5 each.
 *
 *   build/bench/fmt_floats
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define N 786432
#define REPS 5

static char sink[64];

static double time_printf(const float *f, int prec, size_t *bytes)
{
	uint64_t t0 = clock_ns();
	size_t n = 0;
	int i;

	for (i = 0; i < N; i++)
		n += (size_t)snprintf(sink, sizeof(sink), "%.*g", prec, (double)f[i]);
	*bytes = n;
	return (double)(clock_ns() - t0) / 1e6;
}

static double time_fmt_g(const float *f, int prec, size_t *bytes)
{
	uint64_t t0 = clock_ns();
	size_t n = 0;
	int i;

	for (i = 0; i < N; i++)
		n += fmt_g(sink, (double)f[i], prec);
	*bytes = n;
	return (double)(clock_ns() - t0) / 1e6;
}

static void fill(float *f, int kind, struct rng *r)
{
	union {
		uint32_t u;
		float f;
	} x;
	int i;

	for (i = 0; i < N; i++) {
		if (kind == 0) { /* activations: uniform in [-4, 4] */
			f[i] = (float)((double)(rng_next(r) >> 11) / 9007199254740992.0 * 8 - 4);
		} else if (kind == 1) { /* every finite fp32 magnitude */
			do
				x.u = (uint32_t)rng_next(r);
			while (x.f != x.f || x.f - x.f != 0);
			f[i] = x.f;
		} else { /* fp16 values */
			f[i] = f16_to_f32((uint16_t)(0x3c00 ^ (rng_next(r) & 0x83ff)));
		}
	}
}

int main(void)
{
	static const char *const kinds[] = {"activations [-4,4]", "any finite fp32", "fp16 values"};
	float *f = malloc(sizeof(float) * N);
	double tp, tf, best_p, best_f;
	size_t bp = 0, bf = 0;
	struct rng r;
	int k, prec, i;

	if (!f)
		return 1;
	rng_seed(&r, 5);
	printf("%-20s %4s %12s %12s %8s %12s\n", "values", "prec", "printf ms", "fmt_g ms", "ratio",
	       "bytes");
	for (k = 0; k < 3; k++) {
		fill(f, k, &r);
		for (prec = 9; prec >= 5; prec -= 4) {
			best_p = best_f = 1e30;
			for (i = 0; i < REPS; i++) {
				tp = time_printf(f, prec, &bp);
				tf = time_fmt_g(f, prec, &bf);
				best_p = tp < best_p ? tp : best_p;
				best_f = tf < best_f ? tf : best_f;
			}
			printf("%-20s %4d %12.1f %12.1f %7.2fx %12zu%s\n", kinds[k], prec, best_p,
			       best_f, best_p / best_f, bf, bp == bf ? "" : " (bytes differ!)");
		}
	}
	free(f);
	return 0;
}
