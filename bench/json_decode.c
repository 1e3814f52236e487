/* SPDX-License-Identifier: MIT */
/*
 * json_decode: decoding KServe JSON infer requests, the numeric fast path
 * (net/jnum.h) against the JSON tree (jansson), its baseline, in the same
 * run: ResNet-50's input (150,528 floats), a BERT input (384 token ids)
 * and a batch of 8 GPT-2 inputs (8,192 ids); best of 7 each.
 *
 *   build/bench/json_decode
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "net/kserve.h"

#define REPS 7

static struct kserve_request req;

static size_t body_of(char *b, const char *name, const char *dt, const char *shape, int n,
		      bool floats, struct rng *r)
{
	size_t l = (size_t)sprintf(b,
				   "{\"id\":\"bench\",\"inputs\":[{\"name\":\"%s\","
				   "\"datatype\":\"%s\",\"shape\":%s,\"data\":[",
				   name, dt, shape);
	int i;

	for (i = 0; i < n; i++) {
		if (i)
			b[l++] = ',';
		if (floats)
			l += fmt_g(
				b + l,
				(float)((double)(rng_next(r) >> 11) / 9007199254740992.0 * 4 - 2),
				9);
		else
			l += (size_t)sprintf(b + l, "%u", (unsigned)(rng_next(r) % 50257));
	}
	return l + (size_t)sprintf(b + l, "]}],\"outputs\":[{\"name\":\"out\"}]}");
}

static double best_ms(const char *b, size_t l, struct arena *a, size_t fast_min)
{
	double best = 1e30, t;
	uint64_t t0;
	int i;

	kserve_set_fast_min(fast_min);
	for (i = 0; i < REPS; i++) {
		arena_reset(a);
		t0 = clock_ns();
		if (kserve_decode_request(b, l, -1, a, &req)) {
			fprintf(stderr, "json_decode: %s\n", err_msg(0));
			exit(1);
		}
		t = (double)(clock_ns() - t0) / 1e6;
		best = t < best ? t : best;
	}
	return best;
}

int main(void)
{
	static const struct {
		const char *what, *name, *dt, *shape;
		int n;
		bool floats;
	} cases[] = {
		{"resnet50 input", "input", "FP32", "[1,3,224,224]", 3 * 224 * 224, true},
		{"bert input_ids", "input_ids", "INT64", "[1,384]", 384, false},
		{"gpt2 input_ids x8", "input_ids", "INT64", "[8,1024]", 8 * 1024, false},
	};
	char *b = malloc(8u << 20);
	struct arena a;
	struct rng r;
	double tree, fast;
	size_t i, l;

	if (!b || arena_init(&a, 64u << 20))
		return 1;
	rng_seed(&r, 9);
	printf("%-20s %10s %10s %10s %8s\n", "request", "bytes", "tree ms", "fast ms", "ratio");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		l = body_of(b, cases[i].name, cases[i].dt, cases[i].shape, cases[i].n,
			    cases[i].floats, &r);
		tree = best_ms(b, l, &a, SIZE_MAX);
		fast = best_ms(b, l, &a, 0);
		printf("%-20s %10zu %10.3f %10.3f %7.2fx\n", cases[i].what, l, tree, fast,
		       tree / fast);
	}
	arena_fini(&a);
	free(b);
	return 0;
}
