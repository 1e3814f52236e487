/* SPDX-License-Identifier: MIT */
/*
 * CPU backend on whole zoo models (tiny variants, seeded random weights):
 * determinism, batching, BERT padding, GPT-2 causality, FP16 weights and
 * refusal of bad inputs.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exec/exec.h"

#define TOL 1e-5

struct zm {
	struct graph *g;
	void *w;
	struct exec_model *m;
};

static void zm_open(struct zm *z, const char *name, enum dtype dt, uint64_t seed)
{
	struct weight_source *ws = wsrc_random(seed);
	uint32_t t;
	int ret;

	cr_assert(ws);
	ret = zoo_build(name, dt, &z->g);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	z->w = aligned_alloc(LAYER_ALIGN, MAX(z->g->weights_size, LAYER_ALIGN));
	cr_assert(z->w);
	memset(z->w, 0, z->g->weights_size);
	for (t = 0; t < z->g->n_tensors; t++) {
		if (z->g->tensors[t].kind != TK_WEIGHT)
			continue;
		ret = wsrc_fill(ws, z->g, t, (char *)z->w + z->g->tensors[t].offset);
		cr_assert_eq(ret, 0, "%s", err_msg(ret));
	}
	wsrc_destroy(ws);
	ret = cpu_backend.model_create(NULL, z->g, z->w, &z->m);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
}

static void zm_close(struct zm *z)
{
	cpu_backend.model_destroy(z->m);
	free(z->w);
	graph_destroy(z->g);
}

/* A copy of an output as fp32 (outputs live only until the next run). */
static float *grab(const struct tview *v)
{
	int64_t n = shape_numel(&v->shape), i;
	float *f = malloc(sizeof(float) * (size_t)n);
	const uint16_t *h = v->data;

	cr_assert(f);
	for (i = 0; i < n; i++) {
		if (v->shape.dtype == DT_F32)
			f[i] = ((const float *)v->data)[i];
		else if (v->shape.dtype == DT_F16)
			f[i] = f16_to_f32(h[i]);
		else
			f[i] = bf16_to_f32(h[i]);
	}
	return f;
}

/* max|a - b| / max|b|; infinite if a holds a NaN or an infinity. */
static double rel_err(const float *a, const float *b, int64_t n)
{
	double num = 0.0, den = 0.0;
	int64_t i;

	for (i = 0; i < n; i++) {
		if (!isfinite(a[i]) || !isfinite(b[i]))
			return INFINITY;
		num = fmax(num, fabs((double)a[i] - b[i]));
		den = fmax(den, fabs((double)b[i]));
	}
	return num / (den > 0.0 ? den : 1.0);
}

static void expect_rel(const float *a, const float *b, int64_t n, double tol, const char *what)
{
	double e = rel_err(a, b, n);

	cr_expect_leq(e, tol, "%s: relative error %g > %g", what, e, tol);
}

static bool all_finite(const float *a, int64_t n)
{
	int64_t i;

	for (i = 0; i < n; i++)
		if (!isfinite(a[i]))
			return false;
	return true;
}

/* Token ids in [2, 1000): never RoBERTa's pad (1) nor BERT's [PAD] (0). */
static int64_t *tokens(int64_t n, uint64_t seed)
{
	int64_t *ids = malloc(sizeof(int64_t) * (size_t)n), i;
	struct rng r;

	cr_assert(ids);
	rng_seed(&r, seed);
	for (i = 0; i < n; i++)
		ids[i] = 2 + (int64_t)(rng_next(&r) % 998);
	return ids;
}

/* Run a transformer on ids[n,s] (+ mask[n,s] when not NULL); other optional
 * inputs omitted. Returns the code; out[] is filled on success. */
static int run_tokens(struct zm *z, const int64_t *ids, const int64_t *mask, int64_t n, int64_t s,
		      struct tview *out)
{
	struct tview in[4];
	uint32_t i;

	cr_assert_leq(z->g->n_inputs, 4);
	memset(in, 0, sizeof(in));
	for (i = 0; i < z->g->n_inputs; i++) {
		const void *data = NULL;

		if (!strcmp(z->g->inputs[i].name, "input_ids"))
			data = ids;
		else if (!strcmp(z->g->inputs[i].name, "attention_mask"))
			data = mask;
		if (!data)
			continue;
		in[i].shape = (struct shape){.dtype = DT_I64, .ndim = 2, .dims = {n, s}};
		in[i].data = (void *)data;
		in[i].nbytes = sizeof(int64_t) * (uint64_t)(n * s);
	}
	return cpu_backend.model_run(z->m, in, out);
}

static void run_tokens_ok(struct zm *z, const int64_t *ids, const int64_t *mask, int64_t n,
			  int64_t s, struct tview *out)
{
	int ret = run_tokens(z, ids, mask, n, s, out);

	cr_assert_eq(ret, 0, "%s: %s", z->g->name, err_msg(ret));
}

static int run_image(struct zm *z, const void *x, enum dtype dt, int64_t n, int64_t hw,
		     struct tview *out)
{
	struct tview in = {
		.shape = {.dtype = (uint8_t)dt, .ndim = 4, .dims = {n, 3, hw, hw}},
		.data = (void *)x,
		.nbytes = dtype_size(dt) * (uint64_t)(n * 3 * hw * hw),
	};

	return cpu_backend.model_run(z->m, &in, out);
}

static float *image(int64_t n, uint64_t seed)
{
	float *x = malloc(sizeof(float) * (size_t)n);
	struct rng r;
	int64_t i;

	cr_assert(x);
	rng_seed(&r, seed);
	for (i = 0; i < n; i++)
		x[i] = rng_unit(&r) * 2.0f;
	return x;
}

/* ------------------------------------------------------------ determinism */

/* All outputs of one run, copied. */
struct outs {
	uint32_t n;
	float *v[2];
	int64_t numel[2];
};

static void keep(struct outs *o, const struct graph *g, const struct tview *out)
{
	uint32_t i;

	o->n = g->n_outputs;
	for (i = 0; i < o->n; i++) {
		o->v[i] = grab(&out[i]);
		o->numel[i] = shape_numel(&out[i].shape);
	}
}

static void drop(struct outs *o)
{
	uint32_t i;

	for (i = 0; i < o->n; i++)
		free(o->v[i]);
}

static void run_model_input(struct zm *z, uint64_t seed, struct outs *o)
{
	struct tview out[2];

	if (!strcmp(z->g->arch, "resnet")) {
		float *x = image(3 * 32 * 32, seed);

		cr_assert_eq(run_image(z, x, DT_F32, 1, 32, out), 0, "%s", err_msg(0));
		free(x);
	} else {
		int64_t *ids = tokens(9, seed);

		run_tokens_ok(z, ids, NULL, 1, 9, out);
		free(ids);
	}
	keep(o, z->g, out);
}

static void check_deterministic(const char *name)
{
	struct outs a, b, c, d;
	struct zm z1, z2;
	uint32_t i;

	zm_open(&z1, name, DT_F32, 42);
	zm_open(&z2, name, DT_F32, 42);
	run_model_input(&z1, 1, &a);
	run_model_input(&z1, 1, &b);
	run_model_input(&z2, 1, &c);
	run_model_input(&z1, 2, &d);
	cr_assert_eq(a.n, z1.g->n_outputs);
	for (i = 0; i < a.n; i++) {
		cr_expect(all_finite(a.v[i], a.numel[i]), "%s: output %u not finite", name, i);
		cr_expect(!memcmp(a.v[i], b.v[i], sizeof(float) * (size_t)a.numel[i]),
			  "%s: output %u differs between runs", name, i);
		cr_expect(!memcmp(a.v[i], c.v[i], sizeof(float) * (size_t)a.numel[i]),
			  "%s: output %u differs between model instances", name, i);
		/* A different input must give a different output. */
		cr_expect_gt(rel_err(a.v[i], d.v[i], a.numel[i]), 1e-3,
			     "%s: output %u ignores the input", name, i);
	}
	drop(&a);
	drop(&b);
	drop(&c);
	drop(&d);
	zm_close(&z1);
	zm_close(&z2);
}

Test(cpu_models, deterministic_and_finite_resnet)
{
	check_deterministic("resnet-tiny");
}

Test(cpu_models, deterministic_and_finite_bert)
{
	check_deterministic("bert-tiny");
}

Test(cpu_models, deterministic_and_finite_roberta)
{
	check_deterministic("roberta-tiny");
}

Test(cpu_models, deterministic_and_finite_gpt2)
{
	check_deterministic("gpt2-tiny");
}

/* --------------------------------------------------------------- batching */

static void check_batch_tokens(const char *name)
{
	const int64_t s = 11;
	int64_t *ids = tokens(2 * s, 7);
	struct outs both, one[2];
	struct tview out[2];
	struct zm z;
	uint32_t i;
	int b;

	zm_open(&z, name, DT_F32, 3);
	run_tokens_ok(&z, ids, NULL, 2, s, out);
	keep(&both, z.g, out);
	for (b = 0; b < 2; b++) {
		run_tokens_ok(&z, ids + b * s, NULL, 1, s, out);
		keep(&one[b], z.g, out);
	}
	for (i = 0; i < both.n; i++) {
		int64_t half = both.numel[i] / 2;

		expect_rel(both.v[i], one[0].v[i], half, TOL, name);
		expect_rel(both.v[i] + half, one[1].v[i], half, TOL, name);
	}
	drop(&both);
	drop(&one[0]);
	drop(&one[1]);
	free(ids);
	zm_close(&z);
}

Test(cpu_models, batch2_equals_two_batch1_transformers)
{
	check_batch_tokens("bert-tiny");
	check_batch_tokens("roberta-tiny");
	check_batch_tokens("gpt2-tiny");
}

Test(cpu_models, batch2_equals_two_batch1_resnet)
{
	float *x = image(2 * 3 * 32 * 32, 5), *both, *one[2];
	struct tview out;
	struct zm z;
	int b;

	zm_open(&z, "resnet-tiny", DT_F32, 3);
	cr_assert_eq(run_image(&z, x, DT_F32, 2, 32, &out), 0, "%s", err_msg(0));
	cr_assert_eq(out.shape.dims[0], 2);
	cr_assert_eq(out.shape.dims[1], 10);
	both = grab(&out);
	for (b = 0; b < 2; b++) {
		cr_assert_eq(run_image(&z, x + b * 3 * 32 * 32, DT_F32, 1, 32, &out), 0, "%s",
			     err_msg(0));
		one[b] = grab(&out);
		expect_rel(both + b * 10, one[b], 10, TOL, "resnet-tiny");
		free(one[b]);
	}
	free(both);
	free(x);
	zm_close(&z);
}

/* ------------------------------------------------------ padding, causality */

/* Padding the last k tokens (mask 0, and RoBERTa's pad id) must leave the
 * other tokens' outputs as on the unpadded shorter sequence. */
static void check_padding(const char *name, int64_t pad_id)
{
	const int64_t s = 13, k = 4;
	int64_t *ids = tokens(s, 11), mask[13];
	struct outs full, part;
	struct tview out[2];
	struct zm z;
	int64_t i, h;

	zm_open(&z, name, DT_F32, 5);
	for (i = 0; i < s; i++)
		mask[i] = i < s - k;
	run_tokens_ok(&z, ids, NULL, 1, s - k, out);
	keep(&part, z.g, out);
	for (i = s - k; i < s; i++)
		ids[i] = pad_id;
	run_tokens_ok(&z, ids, mask, 1, s, out);
	keep(&full, z.g, out);
	h = part.numel[0] / (s - k);
	expect_rel(full.v[0], part.v[0], (s - k) * h, TOL, name);
	if (full.n > 1) /* pooler_output: the first token's */
		expect_rel(full.v[1], part.v[1], part.numel[1], TOL, name);
	/* Without the mask the padding changes the first tokens, unless the
	 * model is causal (GPT-2: later tokens are never seen anyway). */
	run_tokens_ok(&z, ids, NULL, 1, s, out);
	if (strcmp(z.g->arch, "gpt2"))
		cr_expect_gt(rel_err(out[0].data, part.v[0], (s - k) * h), 1e-4,
			     "%s: the mask makes no difference", name);
	drop(&full);
	drop(&part);
	free(ids);
	zm_close(&z);
}

Test(cpu_models, bert_padding_mask)
{
	check_padding("bert-tiny", 0);
}

Test(cpu_models, roberta_padding_mask)
{
	check_padding("roberta-tiny", 1);
}

Test(cpu_models, gpt2_right_padding_mask)
{
	check_padding("gpt2-tiny", 0);
}

Test(cpu_models, gpt2_causal_prefix)
{
	const int64_t s = 16, p = 5;
	int64_t *ids = tokens(s, 3);
	struct outs full, pre;
	struct tview out[1];
	struct zm z;
	int64_t h;

	zm_open(&z, "gpt2-tiny", DT_F32, 9);
	run_tokens_ok(&z, ids, NULL, 1, s, out);
	keep(&full, z.g, out);
	run_tokens_ok(&z, ids, NULL, 1, p, out);
	keep(&pre, z.g, out);
	h = pre.numel[0] / p;
	expect_rel(full.v[0], pre.v[0], p * h, TOL, "gpt2-tiny prefix");
	/* and the last token does see the whole prefix */
	ids[0] = ids[0] == 2 ? 3 : 2;
	run_tokens_ok(&z, ids, NULL, 1, s, out);
	cr_expect_gt(rel_err((float *)out[0].data + (s - 1) * h, full.v[0] + (s - 1) * h, h), 1e-4);
	drop(&full);
	drop(&pre);
	free(ids);
	zm_close(&z);
}

/* ------------------------------------------------------------ fp16 weights */

Test(cpu_models, fp16_weights_close_to_fp32_bert)
{
	int64_t *ids = tokens(2 * 10, 4);
	struct outs a, b;
	struct tview out[2];
	struct zm z32, z16;
	uint32_t i;

	zm_open(&z32, "bert-tiny", DT_F32, 8);
	zm_open(&z16, "bert-tiny", DT_F16, 8);
	run_tokens_ok(&z32, ids, NULL, 2, 10, out);
	keep(&a, z32.g, out);
	run_tokens_ok(&z16, ids, NULL, 2, 10, out);
	cr_expect_eq(out[0].shape.dtype, DT_F16);
	keep(&b, z16.g, out);
	for (i = 0; i < a.n; i++)
		expect_rel(b.v[i], a.v[i], a.numel[i], 1e-2, "bert-tiny fp16");
	drop(&a);
	drop(&b);
	free(ids);
	zm_close(&z32);
	zm_close(&z16);
}

Test(cpu_models, fp16_weights_close_to_fp32_resnet_gpt2)
{
	float *x = image(3 * 32 * 32, 6), *a, *b;
	uint16_t xh[3 * 32 * 32];
	int64_t *ids = tokens(12, 4), i;
	struct tview out;
	struct zm z32, z16;

	for (i = 0; i < 3 * 32 * 32; i++)
		xh[i] = f32_to_f16(x[i]), x[i] = f16_to_f32(xh[i]);
	zm_open(&z32, "resnet-tiny", DT_F32, 8);
	zm_open(&z16, "resnet-tiny", DT_F16, 8);
	cr_assert_eq(run_image(&z32, x, DT_F32, 1, 32, &out), 0, "%s", err_msg(0));
	a = grab(&out);
	cr_assert_eq(run_image(&z16, xh, DT_F16, 1, 32, &out), 0, "%s", err_msg(0));
	b = grab(&out);
	expect_rel(b, a, 10, 1e-2, "resnet-tiny fp16");
	free(a);
	free(b);
	zm_close(&z32);
	zm_close(&z16);
	zm_open(&z32, "gpt2-tiny", DT_F32, 8);
	zm_open(&z16, "gpt2-tiny", DT_F16, 8);
	run_tokens_ok(&z32, ids, NULL, 1, 12, &out);
	a = grab(&out);
	run_tokens_ok(&z16, ids, NULL, 1, 12, &out);
	b = grab(&out);
	expect_rel(b, a, 12 * 64, 1e-2, "gpt2-tiny fp16");
	free(a);
	free(b);
	zm_close(&z32);
	zm_close(&z16);
	free(ids);
	free(x);
}

/* ------------------------------------------------------------ bad inputs */

static void expect_refused(int ret, int code, const char *needle)
{
	cr_expect_eq(ret, code, "code %d, expected %d: %s", ret, code, err_msg(ret));
	cr_expect(strstr(err_msg(ret), needle), "message \"%s\" lacks \"%s\"", err_msg(ret),
		  needle);
}

Test(cpu_models, bad_token_inputs_refused_model_still_runs)
{
	int64_t *ids = tokens(2 * 65, 1), mask[2 * 65];
	float fids[8] = {0};
	struct tview out[2], in[3];
	struct outs before, after;
	struct zm z;
	int64_t i;

	for (i = 0; i < 2 * 65; i++)
		mask[i] = 1;
	zm_open(&z, "bert-tiny", DT_F32, 2);
	run_tokens_ok(&z, ids, NULL, 1, 8, out);
	keep(&before, z.g, out);
	expect_refused(run_tokens(&z, ids, NULL, 1, 65, out), DPRT_ESHAPE, "seq 65 > max 64");
	memset(in, 0, sizeof(in));
	in[0].shape = (struct shape){.dtype = DT_F32, .ndim = 2, .dims = {1, 8}};
	in[0].data = fids;
	in[0].nbytes = sizeof(fids);
	expect_refused(cpu_backend.model_run(z.m, in, out), DPRT_EDTYPE,
		       "input_ids: expected INT64 [batch, seq<=64], got FP32 [1,8]");
	in[0].shape = (struct shape){.dtype = DT_I64, .ndim = 2, .dims = {2, 8}};
	in[0].data = ids;
	in[0].nbytes = 16 * sizeof(int64_t);
	in[1].shape = (struct shape){.dtype = DT_I64, .ndim = 2, .dims = {1, 8}};
	in[1].data = mask;
	in[1].nbytes = 8 * sizeof(int64_t);
	expect_refused(cpu_backend.model_run(z.m, in, out), DPRT_ESHAPE,
		       "batch 1, but input_ids gives 2");
	ids[3] = 1000;
	expect_refused(run_tokens(&z, ids, NULL, 1, 8, out), DPRT_EINPUT, "1000");
	ids[3] = -7;
	expect_refused(run_tokens(&z, ids, NULL, 1, 8, out), DPRT_EINPUT, "input_ids");
	free(ids);
	ids = tokens(2 * 65, 1);
	run_tokens_ok(&z, ids, NULL, 1, 8, out);
	keep(&after, z.g, out);
	for (i = 0; i < before.n; i++)
		cr_expect(!memcmp(before.v[i], after.v[i], sizeof(float) * (size_t)before.numel[i]),
			  "output %lld changed after refused requests", (long long)i);
	drop(&before);
	drop(&after);
	free(ids);
	zm_close(&z);
}

Test(cpu_models, bad_image_inputs_refused_model_still_runs)
{
	float *x = image(2 * 3 * 33 * 33, 1), *a, *b;
	struct tview out;
	struct zm z;

	zm_open(&z, "resnet-tiny", DT_F32, 2);
	cr_assert_eq(run_image(&z, x, DT_F32, 1, 32, &out), 0, "%s", err_msg(0));
	a = grab(&out);
	expect_refused(run_image(&z, x, DT_F32, 1, 33, &out), DPRT_ESHAPE,
		       "input: expected FP32 [batch, 3, 32, 32], got FP32 [1,3,33,33]");
	expect_refused(run_image(&z, x, DT_F16, 1, 32, &out), DPRT_EDTYPE, "got FP16");
	cr_assert_eq(run_image(&z, x, DT_F32, 1, 32, &out), 0, "%s", err_msg(0));
	b = grab(&out);
	cr_expect(!memcmp(a, b, sizeof(float) * 10));
	free(a);
	free(b);
	free(x);
	zm_close(&z);
}
