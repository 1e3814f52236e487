/* SPDX-License-Identifier: MIT */
/*
 * A program that knows dprt only through include/dprt.h, for
 * test/cli/shlib.sh: linked once against build/libdprt.so and once
 * against the archives, it must print the same answer.
 *
 * Usage: so_user REPO  (REPO/bert/1/model.dpk is a bert-tiny package)
 * Prints the pooler output of bert-tiny on 16 fixed token ids, one value
 * per line, and "unknown: <message>" for a model that does not exist.
 */
#include <stdint.h>
#include <stdio.h>

#include "dprt.h"

int main(int argc, char **argv)
{
	struct dprt_options o = {.models = argc > 1 ? argv[1] : NULL, .devices = "cpu"};
	int64_t ids[16];
	float pooled[4096];
	struct dprt_tensor in = {"input_ids", DPRT_INT64, 2, {1, 16}, ids, sizeof(ids)};
	struct dprt_tensor out = {
		.name = "pooler_output", .data = pooled, .nbytes = sizeof(pooled)};
	dprt *d;
	uint64_t i;
	int ret;

	for (i = 0; i < 16; i++)
		ids[i] = (int64_t)(i * 37 % 100 + 1);
	if (dprt_open(&o, &d)) {
		fprintf(stderr, "dprt_open: %s\n", dprt_last_error());
		return 1;
	}
	ret = dprt_infer(d, "bert", 0, &in, 1, &out, 1);
	if (ret) {
		fprintf(stderr, "dprt_infer: %s\n", dprt_last_error());
		dprt_close(d);
		return 1;
	}
	for (i = 0; i < out.nbytes / sizeof(float); i++)
		printf("%.9g\n", pooled[i]);
	out.nbytes = sizeof(pooled);
	ret = dprt_infer(d, "nope", 0, &in, 1, &out, 1);
	printf("unknown: %d %s\n", ret != 0, dprt_last_error());
	dprt_close(d);
	return 0;
}
