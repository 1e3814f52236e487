/* SPDX-License-Identifier: MIT */
/* The embedding API (include/dprt.h) on the CPU backend: answers equal the
 * backend's own, errors name what is wrong, many threads at once, big
 * outputs, load and unload. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sched/helpers.h"
#include "dprt.h"
#include "exec/exec.h"
#include "model/model.h"

static char dir[256];

static void setup(void)
{
	trepo_make(dir, sizeof(dir));
	trepo_add(dir, "bert", 1, "bert-tiny", 3);
	trepo_add(dir, "resnet", 1, "resnet-tiny", 5);
}

static void teardown(void)
{
	trepo_rm(dir);
}

TestSuite(api, .init = setup, .fini = teardown, .timeout = 120);

static dprt *open_cpu(const char *devices)
{
	struct dprt_options o = {.models = dir, .devices = devices};
	dprt *d = NULL;
	int ret = dprt_open(&o, &d);

	cr_assert_eq(ret, 0, "dprt_open: %s", dprt_last_error());
	return d;
}

static void ids_of(int64_t *ids, int n, int seed)
{
	int i;

	for (i = 0; i < n; i++)
		ids[i] = (seed * 7919 + i * 104729) % 1000;
}

/* bert's pooler_output for ids[batch x seq] straight from the CPU backend. */
static void reference(const int64_t *ids, int64_t batch, int64_t seq, float *pooled)
{
	char path[512];
	struct tview in[8] = {0}, out[8] = {0};
	struct exec_model *m;
	const struct graph *g;
	struct pkg *p;
	void *w;

	snprintf(path, sizeof(path), "%s/bert/1/model.dpk", dir);
	cr_assert_eq(pkg_open(path, &p), 0);
	g = pkg_graph(p);
	w = aligned_alloc(LAYER_ALIGN, ALIGN_UP(g->weights_size, LAYER_ALIGN));
	cr_assert_eq(pkg_read_weights(p, w), 0);
	cr_assert_eq(cpu_backend.model_create(NULL, g, w, &m), 0);
	in[0] = (struct tview){.shape = {.dtype = DT_I64, .ndim = 2, .dims = {batch, seq}},
			       .data = (void *)ids,
			       .nbytes = (uint64_t)(batch * seq * 8)};
	cr_assert_eq(cpu_backend.model_run(m, in, out), 0, "%s", err_msg(0));
	cr_assert_eq(strcmp(g->outputs[1].name, "pooler_output"), 0);
	memcpy(pooled, out[1].data, out[1].nbytes);
	cpu_backend.model_destroy(m);
	free(w);
	pkg_close(p);
}

static int infer_bert(dprt *d, const int64_t *ids, int64_t batch, int64_t seq, float *pooled,
		      uint64_t room)
{
	struct dprt_tensor in = {"input_ids",  DPRT_INT64,  2,
				 {batch, seq}, (void *)ids, (uint64_t)(batch * seq * 8)};
	struct dprt_tensor out = {.name = "pooler_output", .data = pooled, .nbytes = room};
	int ret = dprt_infer(d, "bert", 0, &in, 1, &out, 1);

	if (!ret) {
		cr_assert_eq(out.dtype, DPRT_FP32);
		cr_assert(out.ndim == 2 && out.dims[0] == batch && out.dims[1] == 64);
		cr_assert_eq(out.nbytes, (uint64_t)batch * 64 * 4);
	}
	return ret;
}

static void expect_close(const float *a, const float *b, int n)
{
	int i;

	for (i = 0; i < n; i++)
		cr_assert(fabsf(a[i] - b[i]) <= 1e-5f * (1 + fabsf(b[i])), "[%d]: %g vs %g", i,
			  a[i], b[i]);
}

Test(api, infer_matches_the_backend)
{
	int64_t ids[2 * 16];
	float got[2 * 64], want[2 * 64];
	dprt *d = open_cpu("cpu");

	ids_of(ids, 32, 1);
	reference(ids, 2, 16, want);
	cr_assert_eq(infer_bert(d, ids, 2, 16, got, sizeof(got)), 0, "%s", dprt_last_error());
	expect_close(got, want, 128);
	dprt_close(d);
}

Test(api, errors_say_what_is_wrong)
{
	int64_t ids[16];
	float pooled[64], x[3 * 32 * 32];
	struct dprt_tensor in = {"input_ids", DPRT_INT64, 2, {1, 16}, ids, sizeof(ids)};
	struct dprt_tensor out = {
		.name = "pooler_output", .data = pooled, .nbytes = sizeof(pooled)};
	dprt *d = open_cpu("cpu");
	int ret;

	ids_of(ids, 16, 2);
	ret = dprt_infer(d, "no-such-model", 0, &in, 1, &out, 1);
	cr_assert_eq(ret, DPRT_ENOMODEL);
	cr_assert(strstr(dprt_last_error(), "no-such-model"), "%s", dprt_last_error());

	in.name = "ids";
	cr_assert_eq(dprt_infer(d, "bert", 0, &in, 1, &out, 1), -EINVAL);
	cr_assert(strstr(dprt_last_error(), "no input named 'ids'") &&
			  strstr(dprt_last_error(), "input_ids"),
		  "%s", dprt_last_error());
	in.name = "input_ids";

	out.name = "logits";
	cr_assert_eq(dprt_infer(d, "bert", 0, &in, 1, &out, 1), -EINVAL);
	cr_assert(strstr(dprt_last_error(), "pooler_output"), "%s", dprt_last_error());
	out.name = "pooler_output";

	in.dtype = DPRT_FP32;
	ret = dprt_infer(d, "bert", 0, &in, 1, &out, 1);
	cr_assert_neq(ret, 0, "FP32 ids accepted");
	cr_assert(strstr(dprt_last_error(), "input_ids"), "%s", dprt_last_error());
	in.dtype = DPRT_INT64;

	in.dims[1] = 15; /* 15 ids declared, 16 given */
	cr_assert_neq(dprt_infer(d, "bert", 0, &in, 1, &out, 1), 0);
	in.dims[1] = 16;

	out.nbytes = 100;
	cr_assert_eq(dprt_infer(d, "bert", 0, &in, 1, &out, 1), -ENOSPC);
	cr_assert_eq(out.nbytes, 256, "the bytes needed: %llu", (unsigned long long)out.nbytes);

	/* a wrong resnet input, then a right one: the server goes on */
	struct dprt_tensor img = {"input", DPRT_FP32, 4, {1, 3, 32, 31}, x, sizeof(x)};
	struct dprt_tensor logits = {.name = "logits", .data = pooled, .nbytes = sizeof(pooled)};

	memset(x, 0, sizeof(x));
	cr_assert_neq(dprt_infer(d, "resnet", 0, &img, 1, &logits, 1), 0);
	img.dims[3] = 32;
	ret = dprt_infer(d, "resnet", 0, &img, 1, &logits, 1);
	cr_assert_eq(ret, 0, "%s", dprt_last_error());
	cr_assert(logits.ndim == 2 && logits.dims[0] == 1, "logits [%lld,%lld]",
		  (long long)logits.dims[0], (long long)logits.dims[1]);
	dprt_close(d);
}

/* An answer bigger than a request record's own buffer (1 MiB). */
Test(api, big_outputs)
{
	enum { B = 80, S = 64 };
	int64_t *ids = malloc(sizeof(*ids) * B * S);
	float *hidden = malloc(sizeof(float) * B * S * 64);
	struct dprt_tensor in = {"input_ids", DPRT_INT64, 2, {B, S}, ids, sizeof(*ids) * B * S};
	struct dprt_tensor out = {
		.name = "last_hidden_state", .data = hidden, .nbytes = sizeof(float) * B * S * 64};
	dprt *d = open_cpu("cpu");
	int i;

	ids_of(ids, B * S, 4);
	for (i = 0; i < 2; i++) {
		cr_assert_eq(dprt_infer(d, "bert", 0, &in, 1, &out, 1), 0, "%s", dprt_last_error());
		cr_assert(out.ndim == 3 && out.dims[0] == B && out.dims[2] == 64);
		cr_assert_eq(out.nbytes, sizeof(float) * B * S * 64);
	}
	dprt_close(d);
	free(ids);
	free(hidden);
}

struct job {
	dprt *d;
	int seed, fails;
	float want[16][64];
};

static void *worker(void *arg)
{
	struct job *j = arg;
	int64_t ids[16];
	float got[64];
	int i, k;

	for (i = 0; i < 40; i++) {
		ids_of(ids, 16, j->seed * 100 + i % 16);
		if (infer_bert(j->d, ids, 1, 16, got, sizeof(got))) {
			j->fails++;
			continue;
		}
		for (k = 0; k < 64; k++)
			j->fails += fabsf(got[k] - j->want[i % 16][k]) >
				    1e-5f * (1 + fabsf(j->want[i % 16][k]));
	}
	return NULL;
}

Test(api, many_threads_at_once)
{
	struct job jobs[4];
	pthread_t t[4];
	int64_t ids[16];
	dprt *d = open_cpu("cpu:2");
	int i, k;

	for (i = 0; i < 4; i++) {
		jobs[i] = (struct job){.d = d, .seed = i + 1};
		for (k = 0; k < 16; k++) {
			ids_of(ids, 16, jobs[i].seed * 100 + k);
			reference(ids, 1, 16, jobs[i].want[k]);
		}
	}
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, &jobs[i]);
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(jobs[i].fails, 0, "thread %d: %d wrong or failed answers", i,
			     jobs[i].fails);
	}
	dprt_close(d);
}

Test(api, load_and_unload)
{
	int64_t ids[16];
	float pooled[64];
	dprt *d = open_cpu("cpu");

	ids_of(ids, 16, 9);
	cr_assert_eq(infer_bert(d, ids, 1, 16, pooled, sizeof(pooled)), 0);
	cr_assert_eq(dprt_unload(d, "bert", 0), 0, "%s", dprt_last_error());
	cr_assert_eq(infer_bert(d, ids, 1, 16, pooled, sizeof(pooled)), DPRT_ENOMODEL);
	cr_assert_eq(dprt_load(d, "bert", 0), 0, "%s", dprt_last_error());
	cr_assert_eq(infer_bert(d, ids, 1, 16, pooled, sizeof(pooled)), 0, "%s", dprt_last_error());
	dprt_close(d);
}

Test(api, open_refuses_bad_options)
{
	struct dprt_options o = {.models = NULL};
	dprt *d = (dprt *)1;

	cr_assert_neq(dprt_open(&o, &d), 0);
	cr_assert_null(d);
	o.models = dir;
	o.devices = "cpu:0";
	cr_assert_neq(dprt_open(&o, &d), 0);
	cr_assert(dprt_last_error()[0]);
	dprt_close(NULL);
}
