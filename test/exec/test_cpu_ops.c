/* SPDX-License-Identifier: MIT */
/*
 * CPU backend, one op at a time: one-op graphs run through cpu_backend and
 * compared with straightforward references written here (double
 * accumulation). Error measure: max|a - ref| / max|ref| <= 1e-5.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exec/exec.h"

#define TOL 1e-5

/* ------------------------------------------------------------- harness */

/* A graph under test, its weight region and the CPU model. */
struct og {
	struct graph *g;
	char *w;
	float **wf; /* [n_tensors]: fp32 values of each weight (reference) */
	struct exec_model *m;
};

static struct og og_new(enum dtype wdt)
{
	struct og o = {.g = graph_create("op", "test", wdt)};

	cr_assert(o.g);
	return o;
}

static uint32_t og_input(struct og *o, const char *name, enum dtype dt, int ndim,
			 const int64_t *dims)
{
	return graph_input(o->g, name, dt, ndim, dims, 0, 0);
}

static void fill_weight(struct og *o, uint32_t t, struct rng *r)
{
	const struct tensor *w = &o->g->tensors[t];
	int64_t n = (int64_t)(w->nbytes / dtype_size((enum dtype)w->dtype)), i;
	uint16_t *h = (uint16_t *)(o->w + w->offset);
	float *f = (float *)(o->w + w->offset);

	o->wf[t] = malloc(sizeof(float) * (size_t)n);
	cr_assert(o->wf[t]);
	for (i = 0; i < n; i++) {
		float v = rng_unit(r);

		if (w->dtype == DT_F16)
			h[i] = f32_to_f16(v), v = f16_to_f32(h[i]);
		else if (w->dtype == DT_BF16)
			h[i] = f32_to_bf16(v), v = bf16_to_f32(h[i]);
		else
			f[i] = v;
		o->wf[t][i] = v;
	}
}

/* Finalize, fill every weight with seeded values, create the model. */
static void og_ready(struct og *o, uint64_t seed)
{
	struct rng r;
	uint32_t t;
	int ret;

	cr_assert_eq(graph_finalize(o->g), 0, "%s", err_msg(0));
	o->w = aligned_alloc(LAYER_ALIGN, MAX(o->g->weights_size, LAYER_ALIGN));
	o->wf = calloc(o->g->n_tensors, sizeof(*o->wf));
	cr_assert(o->w && o->wf);
	rng_seed(&r, seed);
	for (t = 0; t < o->g->n_tensors; t++)
		if (o->g->tensors[t].kind == TK_WEIGHT)
			fill_weight(o, t, &r);
	ret = cpu_backend.model_create(NULL, o->g, o->w, &o->m);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
}

static void og_free(struct og *o)
{
	uint32_t t;

	cpu_backend.model_destroy(o->m);
	for (t = 0; o->wf && t < o->g->n_tensors; t++)
		free(o->wf[t]);
	free(o->wf);
	free(o->w);
	graph_destroy(o->g);
}

static struct tview tv(enum dtype dt, int ndim, const int64_t *dims, const void *data)
{
	struct tview v = {.shape = {.dtype = (uint8_t)dt, .ndim = (uint8_t)ndim},
			  .data = (void *)data};

	memcpy(v.shape.dims, dims, sizeof(int64_t) * (size_t)ndim);
	v.nbytes = (uint64_t)shape_numel(&v.shape) * dtype_size(dt);
	return v;
}

static void og_run(struct og *o, const struct tview *in, struct tview *out)
{
	int ret = cpu_backend.model_run(o->m, in, out);

	cr_assert_eq(ret, 0, "%s", err_msg(ret));
}

static float *rnd(int64_t n, uint64_t seed, float scale, float offset)
{
	float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
	struct rng r;
	int64_t i;

	cr_assert(x);
	rng_seed(&r, seed);
	for (i = 0; i < n; i++)
		x[i] = rng_unit(&r) * scale + offset;
	return x;
}

static double *dalloc(int64_t n)
{
	double *d = calloc((size_t)(n ? n : 1), sizeof(double));

	cr_assert(d);
	return d;
}

/* max|a - ref| / max|ref|; infinite when a holds a NaN or an infinity. */
static double nerr(const float *a, const double *ref, int64_t n)
{
	double num = 0.0, den = 0.0;
	int64_t i;

	for (i = 0; i < n; i++) {
		if (!isfinite(a[i]))
			return INFINITY;
		num = fmax(num, fabs(a[i] - ref[i]));
		den = fmax(den, fabs(ref[i]));
	}
	return num / (den > 0.0 ? den : 1.0);
}

static void expect_close_tol(const struct tview *out, const double *ref, int64_t n, double tol)
{
	double e;

	cr_assert_eq(out->shape.dtype, DT_F32);
	cr_assert_eq(shape_numel(&out->shape), n, "output has %lld elements, expected %lld",
		     (long long)shape_numel(&out->shape), (long long)n);
	e = nerr(out->data, ref, n);
	cr_expect_leq(e, tol, "normalised error %g > %g", e, tol);
}

static void expect_close(const struct tview *out, const double *ref, int64_t n)
{
	expect_close_tol(out, ref, n, TOL);
}

static void expect_dims(const struct tview *v, int ndim, const int64_t *dims)
{
	int i;

	cr_assert_eq(v->shape.ndim, ndim, "rank %d, expected %d", v->shape.ndim, ndim);
	for (i = 0; i < ndim; i++)
		cr_expect_eq(v->shape.dims[i], dims[i], "dim %d is %lld, expected %lld", i,
			     (long long)v->shape.dims[i], (long long)dims[i]);
}

/* ---------------------------------------------------------------- conv */

struct cv {
	int64_t n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, g;
	bool bias;
};

static double conv_at(const struct cv *p, const float *x, const float *w, const float *b, int64_t n,
		      int64_t k, int64_t oh, int64_t ow)
{
	int64_t cg = p->c / p->g, g = k / (p->k / p->g), r;
	double s = b ? b[k] : 0.0;

	for (r = 0; r < cg * p->kh * p->kw; r++) {
		int64_t c = r / (p->kh * p->kw), ki = r / p->kw % p->kh, kj = r % p->kw;
		int64_t ih = oh * p->sh - p->ph + ki * p->dh;
		int64_t iw = ow * p->sw - p->pw + kj * p->dw;

		if (ih < 0 || ih >= p->h || iw < 0 || iw >= p->w)
			continue;
		s += (double)x[((n * p->c + g * cg + c) * p->h + ih) * p->w + iw] *
		     w[((k * cg + c) * p->kh + ki) * p->kw + kj];
	}
	return s;
}

static void check_conv(struct cv p)
{
	int64_t xd[4] = {p.n, p.c, p.h, p.w}, wd[4] = {p.k, p.c / p.g, p.kh, p.kw};
	int64_t ia[7] = {p.sh, p.sw, p.ph, p.pw, p.dh, p.dw, p.g}, bd[1] = {p.k};
	int64_t oh = (p.h + 2 * p.ph - p.dh * (p.kh - 1) - 1) / p.sh + 1;
	int64_t ow = (p.w + 2 * p.pw - p.dw * (p.kw - 1) - 1) / p.sw + 1;
	int64_t yd[4] = {p.n, p.k, oh, ow}, i;
	struct og o = og_new(DT_F32);
	struct tview in, out;
	uint32_t t[3];
	float *x = rnd(p.n * p.c * p.h * p.w, 7, 1.0f, 0.0f);
	double *ref = dalloc(p.n * p.k * oh * ow);

	t[0] = og_input(&o, "x", DT_F32, 4, xd);
	graph_layer_begin(o.g, "conv");
	t[1] = graph_weight(o.g, "conv.weight", 4, wd);
	if (p.bias)
		t[2] = graph_weight(o.g, "conv.bias", 1, bd);
	graph_output(o.g, "y", graph_node(o.g, OP_CONV2D, t, p.bias ? 3 : 2, ia, 7, NULL, 0));
	og_ready(&o, 1);
	in = tv(DT_F32, 4, xd, x);
	og_run(&o, &in, &out);
	expect_dims(&out, 4, yd);
	for (i = 0; i < p.n * p.k * oh * ow; i++)
		ref[i] = conv_at(&p, x, o.wf[t[1]], p.bias ? o.wf[t[2]] : NULL, i / (p.k * oh * ow),
				 i / (oh * ow) % p.k, i / ow % oh, i % ow);
	expect_close(&out, ref, p.n * p.k * oh * ow);
	free(ref);
	free(x);
	og_free(&o);
}

Test(cpu_ops, conv_3x3_padded)
{
	check_conv((struct cv){2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, true});
}

Test(cpu_ops, conv_stride2_odd_sizes_no_bias)
{
	check_conv((struct cv){1, 3, 11, 13, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, false});
	check_conv((struct cv){2, 3, 15, 10, 8, 7, 7, 2, 2, 3, 3, 1, 1, 1, false});
}

Test(cpu_ops, conv_dilation2)
{
	check_conv((struct cv){1, 2, 9, 8, 3, 3, 3, 1, 1, 2, 2, 2, 2, 1, true});
	check_conv((struct cv){1, 2, 9, 8, 3, 3, 2, 2, 1, 0, 1, 2, 3, 1, true});
}

Test(cpu_ops, conv_groups2_and_depthwise)
{
	check_conv((struct cv){2, 4, 6, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, true});
	check_conv((struct cv){2, 5, 8, 6, 5, 3, 3, 2, 2, 1, 1, 1, 1, 5, true});
	check_conv((struct cv){1, 6, 5, 5, 12, 3, 3, 1, 1, 1, 1, 1, 1, 6, false});
}

Test(cpu_ops, conv_1x1)
{
	check_conv((struct cv){2, 8, 5, 3, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1, true});
	check_conv((struct cv){1, 8, 5, 3, 6, 1, 1, 1, 1, 0, 0, 1, 1, 2, false});
	check_conv((struct cv){2, 8, 7, 5, 4, 1, 1, 2, 2, 0, 0, 1, 1, 1, true});
}

Test(cpu_ops, conv_rectangular_kernel_and_padding)
{
	check_conv((struct cv){1, 3, 10, 7, 4, 3, 2, 1, 2, 1, 0, 1, 1, 1, true});
}

/* ---------------------------------------------------------------- pool */

struct pl {
	int64_t n, c, h, w, kh, kw, sh, sw, ph, pw;
	bool avg, incl;
};

static double pool_at(const struct pl *p, const float *x, int64_t plane, int64_t oh, int64_t ow)
{
	double best = -INFINITY, sum = 0.0;
	int64_t r, cnt = 0;

	for (r = 0; r < p->kh * p->kw; r++) {
		int64_t ih = oh * p->sh - p->ph + r / p->kw, iw = ow * p->sw - p->pw + r % p->kw;
		double v;

		if (ih < 0 || ih >= p->h || iw < 0 || iw >= p->w)
			continue;
		v = x[(plane * p->h + ih) * p->w + iw];
		best = fmax(best, v);
		sum += v;
		cnt++;
	}
	if (!p->avg)
		return best;
	return sum / (double)(p->incl ? p->kh * p->kw : cnt);
}

static void check_pool(struct pl p, float offset)
{
	int64_t xd[4] = {p.n, p.c, p.h, p.w};
	int64_t ia[7] = {p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.incl};
	int64_t oh = (p.h + 2 * p.ph - p.kh) / p.sh + 1, ow = (p.w + 2 * p.pw - p.kw) / p.sw + 1;
	int64_t yd[4] = {p.n, p.c, oh, ow}, ny = p.n * p.c * oh * ow, i;
	struct og o = og_new(DT_F32);
	struct tview in, out;
	uint32_t t;
	float *x = rnd(p.n * p.c * p.h * p.w, 3, 1.0f, offset);
	double *ref = dalloc(ny);

	t = og_input(&o, "x", DT_F32, 4, xd);
	graph_output(o.g, "y",
		     graph_node(o.g, p.avg ? OP_AVGPOOL : OP_MAXPOOL, &t, 1, ia, 7, NULL, 0));
	og_ready(&o, 1);
	in = tv(DT_F32, 4, xd, x);
	og_run(&o, &in, &out);
	expect_dims(&out, 4, yd);
	for (i = 0; i < ny; i++)
		ref[i] = pool_at(&p, x, i / (oh * ow), i / ow % oh, i % ow);
	expect_close(&out, ref, ny);
	free(ref);
	free(x);
	og_free(&o);
}

Test(cpu_ops, maxpool_padding_is_minus_infinity)
{
	/* All inputs negative: a zero-padded max would return 0 at borders. */
	check_pool((struct pl){2, 3, 7, 9, 3, 3, 2, 2, 1, 1, false, false}, -5.0f);
	check_pool((struct pl){1, 2, 8, 8, 2, 2, 2, 2, 0, 0, false, false}, 0.0f);
	check_pool((struct pl){1, 2, 9, 6, 3, 2, 1, 2, 1, 1, false, false}, -2.0f);
}

Test(cpu_ops, avgpool_count_include_pad)
{
	check_pool((struct pl){2, 3, 7, 9, 3, 3, 2, 2, 1, 1, true, true}, 2.0f);
	check_pool((struct pl){2, 3, 7, 9, 3, 3, 2, 2, 1, 1, true, false}, 2.0f);
	check_pool((struct pl){1, 4, 6, 6, 2, 2, 2, 2, 0, 0, true, true}, 0.0f);
}

Test(cpu_ops, global_avgpool)
{
	int64_t xd[4] = {2, 3, 5, 7}, yd[2] = {2, 3}, i, j;
	struct og o = og_new(DT_F32);
	struct tview in, out;
	uint32_t t = og_input(&o, "x", DT_F32, 4, xd);
	float *x = rnd(2 * 3 * 35, 5, 1.0f, 0.5f);
	double ref[6] = {0};

	graph_output(o.g, "y", graph_node(o.g, OP_GLOBAL_AVGPOOL, &t, 1, NULL, 0, NULL, 0));
	og_ready(&o, 1);
	in = tv(DT_F32, 4, xd, x);
	og_run(&o, &in, &out);
	expect_dims(&out, 2, yd);
	for (i = 0; i < 6; i++)
		for (j = 0; j < 35; j++)
			ref[i] += x[i * 35 + j] / 35.0;
	expect_close(&out, ref, 6);
	free(x);
	og_free(&o);
}

/* ------------------------------------------------- elementwise and affine */

static void check_batchnorm(int ndim, const int64_t *xd, bool relu)
{
	int64_t vd[1] = {xd[1]}, n = 1, inner = 1, i, ia[1] = {relu};
	struct og o = og_new(DT_F32);
	struct tview in, out;
	uint32_t t[3];
	float *x;
	double *ref;
	int d;

	for (d = 0; d < ndim; d++)
		n *= xd[d];
	for (d = 2; d < ndim; d++)
		inner *= xd[d];
	x = rnd(n, 9, 2.0f, 0.0f);
	ref = dalloc(n);
	t[0] = og_input(&o, "x", DT_F32, ndim, xd);
	graph_layer_begin(o.g, "bn");
	t[1] = graph_weight(o.g, "bn.scale", 1, vd);
	t[2] = graph_weight(o.g, "bn.shift", 1, vd);
	graph_output(o.g, "y", graph_node(o.g, OP_BATCHNORM, t, 3, ia, 1, NULL, 0));
	og_ready(&o, 2);
	in = tv(DT_F32, ndim, xd, x);
	og_run(&o, &in, &out);
	expect_dims(&out, ndim, xd);
	for (i = 0; i < n; i++) {
		int64_t c = i / inner % xd[1];

		ref[i] = (double)x[i] * o.wf[t[1]][c] + o.wf[t[2]][c];
		if (relu)
			ref[i] = fmax(ref[i], 0.0);
	}
	expect_close(&out, ref, n);
	free(ref);
	free(x);
	og_free(&o);
}

Test(cpu_ops, batchnorm)
{
	const int64_t d4[4] = {2, 3, 4, 5}, d2[2] = {4, 3};

	check_batchnorm(4, d4, false);
	check_batchnorm(4, d4, true);
	check_batchnorm(2, d2, true);
}

static void check_add(bool relu)
{
	int64_t d[2] = {3, 7}, ia[1] = {relu}, i;
	struct og o = og_new(DT_F32);
	struct tview in[2], out;
	uint32_t t[2];
	float *a = rnd(21, 1, 1.0f, 0.0f), *b = rnd(21, 2, 1.0f, 0.0f);
	double ref[21];

	t[0] = og_input(&o, "a", DT_F32, 2, d);
	t[1] = og_input(&o, "b", DT_F32, 2, d);
	graph_output(o.g, "y", graph_node(o.g, OP_ADD, t, 2, ia, 1, NULL, 0));
	og_ready(&o, 1);
	in[0] = tv(DT_F32, 2, d, a);
	in[1] = tv(DT_F32, 2, d, b);
	og_run(&o, in, &out);
	for (i = 0; i < 21; i++)
		ref[i] = relu ? fmax((double)a[i] + b[i], 0.0) : (double)a[i] + b[i];
	expect_close(&out, ref, 21);
	free(a);
	free(b);
	og_free(&o);
}

Test(cpu_ops, add_and_add_relu)
{
	check_add(false);
	check_add(true);
}

/* Unary ops: y = f(x) elementwise (or row-wise for softmax). */
static void run_unary(enum op op, int64_t ia0, int ndim, const int64_t *d, const float *x,
		      struct og *o, struct tview *out)
{
	struct tview in;
	uint32_t t;

	*o = og_new(DT_F32);
	t = og_input(o, "x", DT_F32, ndim, d);
	graph_output(o->g, "y", graph_node(o->g, op, &t, 1, &ia0, 1, NULL, 0));
	og_ready(o, 1);
	in = tv(DT_F32, ndim, d, x);
	og_run(o, &in, out);
	expect_dims(out, ndim, d);
}

static double gelu_ref(double x, bool tanh_form)
{
	if (tanh_form)
		return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
	return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

static void check_unary(enum op op, int64_t ia0)
{
	int64_t d[3] = {2, 3, 17}, i;
	float *x = rnd(102, 4, 6.0f, 0.0f);
	double ref[102];
	struct og o;
	struct tview out;

	run_unary(op, ia0, 3, d, x, &o, &out);
	for (i = 0; i < 102; i++) {
		if (op == OP_GELU)
			ref[i] = gelu_ref(x[i], ia0);
		else if (op == OP_TANH)
			ref[i] = tanh(x[i]);
		else
			ref[i] = fmax(x[i], 0.0);
	}
	expect_close(&out, ref, 102);
	free(x);
	og_free(&o);
}

Test(cpu_ops, gelu_erf_and_tanh_forms)
{
	check_unary(OP_GELU, 0);
	check_unary(OP_GELU, 1);
}

Test(cpu_ops, gelu_forms_differ)
{
	/* The two forms differ by ~1e-4 near |x| = 2: the op must honour ia0. */
	cr_expect_gt(fabs(gelu_ref(-2.0, true) - gelu_ref(-2.0, false)), 1e-5);
}

Test(cpu_ops, tanh_and_relu)
{
	check_unary(OP_TANH, 0);
	check_unary(OP_RELU, 0);
}

static void softmax_ref(const float *x, double *y, int64_t cols)
{
	double max = -INFINITY, sum = 0.0;
	int64_t j;

	for (j = 0; j < cols; j++)
		max = fmax(max, x[j]);
	for (j = 0; j < cols; j++)
		sum += exp((double)x[j] - max);
	for (j = 0; j < cols; j++)
		y[j] = exp((double)x[j] - max) / sum;
}

Test(cpu_ops, softmax_large_values)
{
	int64_t d[2] = {5, 37}, i;
	float *x = rnd(5 * 37, 8, 100.0f, 0.0f);
	double ref[5 * 37];
	struct og o;
	struct tview out;

	for (i = 0; i < 37; i++)
		x[37 + i] = 1e4f + x[37 + i]; /* large offset */
	for (i = 0; i < 37; i++)
		x[74 + i] = i % 2 ? FLT_MAX : -FLT_MAX; /* extremes */
	x[111] = 88.0f;					/* exp overflows without the max */
	run_unary(OP_SOFTMAX, 0, 2, d, x, &o, &out);
	for (i = 0; i < 5; i++)
		softmax_ref(x + i * 37, ref + i * 37, 37);
	expect_close(&out, ref, 5 * 37);
	free(x);
	og_free(&o);
}

/* ------------------------------------------------------------- linear */

static void check_linear(int ndim, const int64_t *xd, int64_t m, bool bias)
{
	int64_t k = xd[ndim - 1], rows = 1, wd[2] = {m, k}, bd[1] = {m}, yd[MAX_DIMS], i, j, c;
	struct og o = og_new(DT_F32);
	struct tview in, out;
	uint32_t t[3];
	float *x;
	double *ref;
	int d;

	for (d = 0; d < ndim - 1; d++)
		rows *= xd[d];
	memcpy(yd, xd, sizeof(int64_t) * (size_t)ndim);
	yd[ndim - 1] = m;
	x = rnd(rows * k, 6, 1.0f, 0.0f);
	ref = dalloc(rows * m);
	t[0] = og_input(&o, "x", DT_F32, ndim, xd);
	graph_layer_begin(o.g, "fc");
	t[1] = graph_weight(o.g, "fc.weight", 2, wd);
	if (bias)
		t[2] = graph_weight(o.g, "fc.bias", 1, bd);
	graph_output(o.g, "y", graph_node(o.g, OP_LINEAR, t, bias ? 3 : 2, NULL, 0, NULL, 0));
	og_ready(&o, 3);
	in = tv(DT_F32, ndim, xd, x);
	og_run(&o, &in, &out);
	expect_dims(&out, ndim, yd);
	for (i = 0; i < rows; i++) {
		for (j = 0; j < m; j++) {
			ref[i * m + j] = bias ? o.wf[t[2]][j] : 0.0;
			for (c = 0; c < k; c++)
				ref[i * m + j] += (double)x[i * k + c] * o.wf[t[1]][j * k + c];
		}
	}
	expect_close(&out, ref, rows * m);
	free(ref);
	free(x);
	og_free(&o);
}

Test(cpu_ops, linear_any_leading_dims)
{
	const int64_t d3[3] = {2, 3, 7}, d1[1] = {13}, d4[4] = {2, 1, 3, 33};

	check_linear(3, d3, 5, true);
	check_linear(3, d3, 5, false);
	check_linear(1, d1, 9, true);
	check_linear(4, d4, 17, true);
}

/* ---------------------------------------------------- ids and embeddings */

static void build_embedding(struct og *o, int64_t v, int64_t h)
{
	const int64_t d[2] = {DIM_BATCH, DIM_SEQ}, td[2] = {v, h};
	uint32_t t[2];

	*o = og_new(DT_F32);
	t[0] = og_input(o, "input_ids", DT_I64, 2, d);
	graph_layer_begin(o->g, "word");
	t[1] = graph_weight(o->g, "word.weight", 2, td);
	graph_output(o->g, "y", graph_node(o->g, OP_EMBEDDING, t, 2, NULL, 0, NULL, 0));
	og_ready(o, 5);
}

Test(cpu_ops, embedding_gather)
{
	int64_t ids[10] = {0, 10, 3, 3, 7, 1, 2, 9, 10, 0}, d[2] = {2, 5}, yd[3] = {2, 5, 6};
	double ref[60];
	struct og o;
	struct tview in, out;
	int64_t i, j;

	build_embedding(&o, 11, 6);
	in = tv(DT_I64, 2, d, ids);
	og_run(&o, &in, &out);
	expect_dims(&out, 3, yd);
	for (i = 0; i < 10; i++)
		for (j = 0; j < 6; j++)
			ref[i * 6 + j] = o.wf[1][ids[i] * 6 + j];
	expect_close_tol(&out, ref, 60, 0.0);
	og_free(&o);
}

Test(cpu_ops, embedding_id_out_of_range_refused)
{
	int64_t ids[4] = {1, 2, 11, 0}, d[2] = {1, 4};
	struct og o;
	struct tview in, out;
	int ret;

	build_embedding(&o, 11, 6);
	in = tv(DT_I64, 2, d, ids);
	ret = cpu_backend.model_run(o.m, &in, &out);
	cr_expect_eq(ret, DPRT_EINPUT, "%d: %s", ret, err_msg(ret));
	cr_expect(strstr(err_msg(ret), "input_ids") && strstr(err_msg(ret), "11") &&
			  strstr(err_msg(ret), "[0, 11)"),
		  "message: %s", err_msg(ret));
	ids[2] = -1;
	ret = cpu_backend.model_run(o.m, &in, &out);
	cr_expect_eq(ret, DPRT_EINPUT, "%d: %s", ret, err_msg(ret));
	cr_expect(strstr(err_msg(ret), "-1"), "message: %s", err_msg(ret));
	ids[2] = 10;
	og_run(&o, &in, &out);
	cr_expect_eq(((float *)out.data)[2 * 6], o.wf[1][10 * 6]);
	og_free(&o);
}

static void check_position_ids(int64_t mode, int64_t arg, const int64_t *ids, const int64_t *expect)
{
	const int64_t d[2] = {DIM_BATCH, DIM_SEQ}, g[2] = {2, 5}, ia[2] = {mode, arg};
	struct og o = og_new(DT_F32);
	struct tview in, out;
	uint32_t t;
	int i;

	t = og_input(&o, "input_ids", DT_I64, 2, d);
	graph_output(o.g, "pos", graph_node(o.g, OP_POSITION_IDS, &t, 1, ia, 2, NULL, 0));
	og_ready(&o, 1);
	in = tv(DT_I64, 2, g, ids);
	og_run(&o, &in, &out);
	cr_assert_eq(out.shape.dtype, DT_I64);
	expect_dims(&out, 2, g);
	for (i = 0; i < 10; i++)
		cr_expect_eq(((int64_t *)out.data)[i], expect[i], "pos[%d] = %lld, expected %lld",
			     i, (long long)((int64_t *)out.data)[i], (long long)expect[i]);
	og_free(&o);
}

Test(cpu_ops, position_ids_arange)
{
	const int64_t ids[10] = {5, 1, 1, 7, 8, 1, 1, 1, 1, 1};
	const int64_t expect[10] = {2, 3, 4, 5, 6, 2, 3, 4, 5, 6};

	check_position_ids(0, 2, ids, expect);
}

Test(cpu_ops, position_ids_roberta)
{
	/* HF: mask = ids != pad; (cumsum(mask) * mask) + pad, pad = 1 */
	const int64_t ids[10] = {0, 5, 7, 1, 1, 1, 3, 1, 4, 9};
	const int64_t expect[10] = {2, 3, 4, 1, 1, 1, 2, 1, 3, 4};

	check_position_ids(1, 1, ids, expect);
}

Test(cpu_ops, take_row)
{
	int64_t d[3] = {2, 4, 3}, yd[2] = {2, 3}, ia[1] = {2}, i;
	struct og o = og_new(DT_F32);
	struct tview in, out;
	uint32_t t = og_input(&o, "x", DT_F32, 3, d);
	float *x = rnd(24, 2, 1.0f, 0.0f);
	double ref[6];

	graph_output(o.g, "y", graph_node(o.g, OP_TAKE_ROW, &t, 1, ia, 1, NULL, 0));
	og_ready(&o, 1);
	in = tv(DT_F32, 3, d, x);
	og_run(&o, &in, &out);
	expect_dims(&out, 2, yd);
	for (i = 0; i < 6; i++)
		ref[i] = x[(i / 3 * 4 + 2) * 3 + i % 3];
	expect_close_tol(&out, ref, 6, 0.0);
	free(x);
	og_free(&o);
}

/* ViT's embeddings: patch features [N,H,GH,GW] -> [N,1+GH*GW,H] with the
 * class token first and position embeddings added; rectangular grid so a
 * swapped GH/GW or a transposed read shows. */
Test(cpu_ops, cls_pos)
{
	int64_t xd[4] = {2, 5, 2, 3}, cd[3] = {1, 1, 5}, pd[3] = {1, 7, 5}, yd[3] = {2, 7, 5};
	int64_t b, r, c;
	struct og o = og_new(DT_F32);
	struct tview in, out;
	uint32_t in3[3];
	float *x = rnd(2 * 5 * 6, 4, 1.0f, 0.0f);
	double ref[2 * 7 * 5];
	const float *cls, *pos;

	in3[0] = og_input(&o, "x", DT_F32, 4, xd);
	graph_layer_begin(o.g, "embeddings");
	in3[1] = graph_weight(o.g, "cls", 3, cd);
	in3[2] = graph_weight(o.g, "pos", 3, pd);
	graph_output(o.g, "y", graph_node(o.g, OP_CLS_POS, in3, 3, NULL, 0, NULL, 0));
	og_ready(&o, 3);
	cls = o.wf[in3[1]];
	pos = o.wf[in3[2]];
	in = tv(DT_F32, 4, xd, x);
	og_run(&o, &in, &out);
	expect_dims(&out, 3, yd);
	for (b = 0; b < 2; b++)
		for (r = 0; r < 7; r++)
			for (c = 0; c < 5; c++)
				ref[(b * 7 + r) * 5 + c] =
					(double)(r ? x[(b * 5 + c) * 6 + r - 1] : cls[c]) +
					pos[r * 5 + c];
	expect_close(&out, ref, 2 * 7 * 5);
	free(x);
	og_free(&o);
}

/* A position table of the wrong length is refused by shape inference. */
Test(cpu_ops, cls_pos_bad_positions)
{
	int64_t xd[4] = {1, 4, 2, 2}, cd[3] = {1, 1, 4}, pd[3] = {1, 4, 4};
	struct shape in = {.dtype = DT_F32, .ndim = 4, .dims = {1, 4, 2, 2}};
	struct graph *g = graph_create("op", "test", DT_F32);
	struct shape *sh;
	uint32_t in3[3];

	in3[0] = graph_input(g, "x", DT_F32, 4, xd, 0, 0);
	graph_layer_begin(g, "embeddings");
	in3[1] = graph_weight(g, "cls", 3, cd);
	in3[2] = graph_weight(g, "pos", 3, pd);
	graph_output(g, "y", graph_node(g, OP_CLS_POS, in3, 3, NULL, 0, NULL, 0));
	cr_assert_eq(graph_finalize(g), 0, "%s", err_msg(0));
	sh = calloc(g->n_tensors, sizeof(*sh));
	cr_assert(sh);
	cr_expect_eq(graph_infer_shapes(g, &in, sh), DPRT_ESHAPE);
	cr_expect(strstr(err_msg(0), "position embeddings"), "%s", err_msg(0));
	free(sh);
	graph_destroy(g);
}

/* ---------------------------------------------------------- layernorm */

static void check_layernorm(float offset, float eps)
{
	int64_t d[3] = {3, 5, 33}, vd[1] = {33}, r, j;
	struct og o = og_new(DT_F32);
	struct tview in, out;
	uint32_t t[3];
	float *x = rnd(3 * 5 * 33, 11, 1.0f, offset);
	double *ref = dalloc(3 * 5 * 33);

	t[0] = og_input(&o, "x", DT_F32, 3, d);
	graph_layer_begin(o.g, "ln");
	t[1] = graph_weight(o.g, "ln.weight", 1, vd);
	t[2] = graph_weight(o.g, "ln.bias", 1, vd);
	graph_output(o.g, "y", graph_node(o.g, OP_LAYERNORM, t, 3, NULL, 0, &eps, 1));
	og_ready(&o, 4);
	in = tv(DT_F32, 3, d, x);
	og_run(&o, &in, &out);
	for (r = 0; r < 15; r++) {
		const float *xr = x + r * 33;
		double mean = 0.0, var = 0.0;

		for (j = 0; j < 33; j++)
			mean += xr[j] / 33.0;
		for (j = 0; j < 33; j++)
			var += (xr[j] - mean) * (xr[j] - mean) / 33.0;
		for (j = 0; j < 33; j++)
			ref[r * 33 + j] =
				(xr[j] - mean) / sqrt(var + eps) * o.wf[t[1]][j] + o.wf[t[2]][j];
	}
	expect_close(&out, ref, 15 * 33);
	free(ref);
	free(x);
	og_free(&o);
}

Test(cpu_ops, layernorm)
{
	check_layernorm(0.0f, 1e-5f);
	check_layernorm(0.0f, 1e-12f);
}

Test(cpu_ops, layernorm_large_offset)
{
	/* One-pass E[x^2] - E[x]^2 in fp32 loses everything here. */
	check_layernorm(1000.0f, 1e-5f);
	check_layernorm(-3e4f, 1e-12f);
}

/* ----------------------------------------------------------- attention */

struct at {
	int64_t n, s, heads, d;
	bool causal, use_mask;
};

static double score_ref(const struct at *p, const float *qkv, int64_t b, int64_t h, int64_t i,
			int64_t j)
{
	int64_t hid = p->heads * p->d, ld = 3 * hid, c;
	const float *q = qkv + (b * p->s + i) * ld + h * p->d;
	const float *k = qkv + (b * p->s + j) * ld + hid + h * p->d;
	double s = 0.0;

	for (c = 0; c < p->d; c++)
		s += (double)q[c] * k[c];
	return s / sqrt((double)p->d);
}

/* Reference for query i of head h of batch b: softmax over the keys it may
 * see (masked keys get weight exactly zero), in double. */
static void attention_row_ref(const struct at *p, const float *qkv, const int64_t *mask, int64_t b,
			      int64_t h, int64_t i, double *w, double *y)
{
	int64_t hid = p->heads * p->d, ld = 3 * hid, j, c;
	const float *v = qkv + b * p->s * ld + 2 * hid + h * p->d;
	double max = -INFINITY, sum = 0.0;

	for (j = 0; j < p->s; j++) {
		bool hide = (p->causal && j > i) || (mask && !mask[b * p->s + j]);

		w[j] = hide ? -INFINITY : score_ref(p, qkv, b, h, i, j);
		max = fmax(max, w[j]);
	}
	for (j = 0; j < p->s; j++) {
		w[j] = exp(w[j] - max);
		sum += w[j];
	}
	for (c = 0; c < p->d; c++) {
		double acc = 0.0;

		for (j = 0; j < p->s; j++)
			acc += w[j] / sum * v[j * ld + c];
		y[(b * p->s + i) * hid + h * p->d + c] = acc;
	}
}

static void attention_ref(const struct at *p, const float *qkv, const int64_t *mask, double *y)
{
	double *w = dalloc(p->s);
	int64_t r;

	for (r = 0; r < p->n * p->heads * p->s; r++)
		attention_row_ref(p, qkv, mask, r / (p->heads * p->s), r / p->s % p->heads,
				  r % p->s, w, y);
	free(w);
}

static void build_attention(struct og *o, const struct at *p)
{
	const int64_t d[3] = {p->n, p->s, 3 * p->heads * p->d}, md[2] = {p->n, p->s};
	const int64_t ia[2] = {p->heads, p->causal};
	uint32_t t[2];

	*o = og_new(DT_F32);
	t[0] = og_input(o, "qkv", DT_F32, 3, d);
	if (p->use_mask)
		t[1] = og_input(o, "attention_mask", DT_I64, 2, md);
	graph_output(o->g, "y",
		     graph_node(o->g, OP_ATTENTION, t, p->use_mask ? 2 : 1, ia, 2, NULL, 0));
	og_ready(o, 1);
}

/* Run attention on qkv (and mask); compare with the reference. */
static void check_attention(struct at p, const int64_t *mask)
{
	const int64_t d[3] = {p.n, p.s, 3 * p.heads * p.d}, md[2] = {p.n, p.s};
	const int64_t yd[3] = {p.n, p.s, p.heads * p.d};
	int64_t ny = p.n * p.s * p.heads * p.d;
	float *qkv = rnd(3 * ny, 13, 2.0f, 0.0f);
	double *ref = dalloc(ny);
	struct tview in[2], out;
	struct og o;

	build_attention(&o, &p);
	in[0] = tv(DT_F32, 3, d, qkv);
	in[1] = tv(DT_I64, 2, md, mask);
	og_run(&o, in, &out);
	expect_dims(&out, 3, yd);
	attention_ref(&p, qkv, p.use_mask ? mask : NULL, ref);
	expect_close(&out, ref, ny);
	free(ref);
	free(qkv);
	og_free(&o);
}

Test(cpu_ops, attention_plain_heads)
{
	check_attention((struct at){2, 5, 2, 4, false, false}, NULL);
	check_attention((struct at){1, 7, 1, 6, false, false}, NULL);
	check_attention((struct at){1, 9, 4, 3, false, false}, NULL);
}

Test(cpu_ops, attention_padding_mask)
{
	const int64_t mask[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
	const int64_t mid[6] = {1, 0, 1, 1, 0, 1};

	check_attention((struct at){2, 5, 2, 4, false, true}, mask);
	check_attention((struct at){1, 6, 3, 2, false, true}, mid);
}

Test(cpu_ops, attention_causal)
{
	const int64_t mask[10] = {1, 1, 1, 1, 0, 1, 1, 1, 1, 1};

	check_attention((struct at){2, 5, 2, 4, true, false}, NULL);
	check_attention((struct at){2, 5, 2, 4, true, true}, mask);
}

Test(cpu_ops, attention_seq1)
{
	const int64_t mask[2] = {1, 1};

	check_attention((struct at){2, 1, 3, 4, false, false}, NULL);
	check_attention((struct at){2, 1, 3, 4, true, true}, mask);
}

Test(cpu_ops, attention_masked_keys_get_zero_weight)
{
	/* Changing the keys and values of masked tokens must not change what
	 * unmasked queries see. */
	const struct at p = {1, 6, 2, 4, false, true};
	const int64_t d[3] = {1, 6, 24}, md[2] = {1, 6}, mask[6] = {1, 1, 1, 1, 0, 0};
	float *qkv = rnd(6 * 24, 21, 2.0f, 0.0f), *first = malloc(sizeof(float) * 6 * 8);
	struct tview in[2], out;
	struct og o;
	int64_t i;

	build_attention(&o, &p);
	in[0] = tv(DT_F32, 3, d, qkv);
	in[1] = tv(DT_I64, 2, md, mask);
	og_run(&o, in, &out);
	memcpy(first, out.data, sizeof(float) * 6 * 8);
	for (i = 4 * 24 + 8; i < 6 * 24; i++)
		qkv[i] = i % 24 >= 8 ? 1e3f : qkv[i]; /* k and v of tokens 4, 5 */
	og_run(&o, in, &out);
	for (i = 0; i < 4 * 8; i++)
		cr_expect_eq(((float *)out.data)[i], first[i], "y[%lld] changed", (long long)i);
	free(first);
	free(qkv);
	og_free(&o);
}

/* --------------------------------------------- dtypes, programs, checks */

static void check_half_linear(enum dtype dt, double tol)
{
	const int64_t xd[2] = {DIM_BATCH, 19}, wd[2] = {11, 19}, bd[1] = {11};
	const int64_t gd[2] = {3, 19};
	struct og o = og_new(dt);
	struct tview in, out;
	uint16_t x[57];
	float xf[57];
	double ref[33];
	uint32_t t[3];
	int64_t i, j;

	t[0] = og_input(&o, "x", dt, 2, xd);
	graph_layer_begin(o.g, "fc");
	t[1] = graph_weight(o.g, "fc.weight", 2, wd);
	t[2] = graph_weight(o.g, "fc.bias", 1, bd);
	graph_output(o.g, "y", graph_node(o.g, OP_LINEAR, t, 3, NULL, 0, NULL, 0));
	og_ready(&o, 9);
	for (i = 0; i < 57; i++) {
		x[i] = dt == DT_F16 ? f32_to_f16((float)i / 19.0f - 1.5f) :
				      f32_to_bf16((float)i / 19.0f - 1.5f);
		xf[i] = dt == DT_F16 ? f16_to_f32(x[i]) : bf16_to_f32(x[i]);
	}
	in = tv(dt, 2, gd, x);
	og_run(&o, &in, &out);
	cr_assert_eq(out.shape.dtype, dt);
	cr_assert_eq(out.nbytes, 33 * 2);
	for (i = 0; i < 33; i++) {
		ref[i] = o.wf[t[2]][i % 11];
		for (j = 0; j < 19; j++)
			ref[i] += (double)xf[i / 11 * 19 + j] * o.wf[t[1]][i % 11 * 19 + j];
	}
	for (i = 0; i < 33; i++) {
		uint16_t h = ((uint16_t *)out.data)[i];

		xf[i] = dt == DT_F16 ? f16_to_f32(h) : bf16_to_f32(h);
	}
	out.shape.dtype = DT_F32;
	out.data = xf;
	expect_close_tol(&out, ref, 33, tol);
	og_free(&o);
}

Test(cpu_ops, fp16_weights_inputs_and_outputs)
{
	check_half_linear(DT_F16, 1e-3);
}

Test(cpu_ops, bf16_weights_inputs_and_outputs)
{
	check_half_linear(DT_BF16, 8e-3);
}

/* FP32 weights are read in place; FP16 ones are converted once at create. */
static void check_weights_in_place(enum dtype dt, bool in_place)
{
	const int64_t xd[2] = {1, 4}, wd[2] = {2, 4};
	float x[4] = {1, 2, 3, 4}, before[2];
	struct og o = og_new(dt);
	struct tview in, out;
	uint32_t t[2];

	t[0] = og_input(&o, "x", DT_F32, 2, xd);
	graph_layer_begin(o.g, "fc");
	t[1] = graph_weight(o.g, "fc.weight", 2, wd);
	graph_output(o.g, "y", graph_node(o.g, OP_LINEAR, t, 2, NULL, 0, NULL, 0));
	og_ready(&o, 1);
	in = tv(DT_F32, 2, xd, x);
	og_run(&o, &in, &out);
	memcpy(before, out.data, dtype_size(dt) * 2);
	memset(o.w + o.g->tensors[t[1]].offset, 0, o.g->tensors[t[1]].nbytes);
	og_run(&o, &in, &out);
	if (in_place)
		cr_expect(((float *)out.data)[0] == 0.0f && ((float *)out.data)[1] == 0.0f,
			  "FP32 weights were copied");
	else
		cr_expect(!memcmp(before, out.data, dtype_size(dt) * 2),
			  "the model reads the weight region after create");
	og_free(&o);
}

Test(cpu_ops, fp32_weights_in_place_fp16_converted_once)
{
	check_weights_in_place(DT_F32, true);
	check_weights_in_place(DT_F16, false);
	check_weights_in_place(DT_BF16, false);
}

static void lin_ref(const double *x, const float *w, int64_t rows, int64_t k, int64_t m, double *y)
{
	int64_t r, j, c;

	for (r = 0; r < rows; r++) {
		for (j = 0; j < m; j++) {
			y[r * m + j] = 0.0;
			for (c = 0; c < k; c++)
				y[r * m + j] += x[r * k + c] * w[j * k + c];
		}
	}
}

/* a = fc1(x); b = tanh(a); c = fc2(b); d = c + a; e = fc3(d); y = e + x.
 * Lifetimes overlap in several ways and GEMMs break if a live tensor
 * shares memory with their output. Run over many shapes so programs are
 * built, evicted and reused. */
struct chain {
	struct og o;
	uint32_t w[3];
};

static uint32_t chain_fc(struct chain *c, const char *name, uint32_t x, int i)
{
	const int64_t wd[2] = {8, 8};
	uint32_t in[2] = {x};

	graph_layer_begin(c->o.g, name);
	in[1] = c->w[i] = graph_weight(c->o.g, name, 2, wd);
	return graph_node(c->o.g, OP_LINEAR, in, 2, NULL, 0, NULL, 0);
}

static void build_chain(struct chain *c)
{
	const int64_t d[3] = {DIM_BATCH, DIM_SEQ, 8};
	uint32_t x, a, b, in[2];

	c->o = og_new(DT_F32);
	c->o.g->max_seq = 8;
	x = og_input(&c->o, "x", DT_F32, 3, d);
	a = chain_fc(c, "fc1", x, 0);
	b = graph_node(c->o.g, OP_TANH, &a, 1, NULL, 0, NULL, 0);
	in[0] = chain_fc(c, "fc2", b, 1);
	in[1] = a;
	in[0] = graph_node(c->o.g, OP_ADD, in, 2, NULL, 0, NULL, 0);
	in[0] = chain_fc(c, "fc3", in[0], 2);
	in[1] = x;
	graph_output(c->o.g, "y", graph_node(c->o.g, OP_ADD, in, 2, NULL, 0, NULL, 0));
	graph_output(c->o.g, "b", b);
	og_ready(&c->o, 1);
}

static void chain_ref(const struct chain *c, const float *x, int64_t rows, double *y, double *b)
{
	double *xd = dalloc(rows * 8), *a = dalloc(rows * 8), *t = dalloc(rows * 8);
	int64_t i;

	for (i = 0; i < rows * 8; i++)
		xd[i] = x[i];
	lin_ref(xd, c->o.wf[c->w[0]], rows, 8, 8, a);
	for (i = 0; i < rows * 8; i++)
		b[i] = tanh(a[i]);
	lin_ref(b, c->o.wf[c->w[1]], rows, 8, 8, t);
	for (i = 0; i < rows * 8; i++)
		t[i] += a[i];
	lin_ref(t, c->o.wf[c->w[2]], rows, 8, 8, y);
	for (i = 0; i < rows * 8; i++)
		y[i] += xd[i];
	free(xd);
	free(a);
	free(t);
}

Test(cpu_ops, activation_layouts_across_shapes)
{
	const int64_t shapes[][3] = {{1, 1, 8}, {2, 3, 8}, {1, 5, 8}, {3, 2, 8},
				     {2, 7, 8}, {1, 1, 8}, {2, 3, 8}, {4, 8, 8},
				     {1, 5, 8}, {2, 3, 8}, {3, 3, 8}, {1, 1, 8}};
	struct chain c;
	size_t k;

	build_chain(&c);
	for (k = 0; k < ARRAY_SIZE(shapes); k++) {
		int64_t rows = shapes[k][0] * shapes[k][1];
		float *x = rnd(rows * 8, k, 1.0f, 0.0f);
		double *ry = dalloc(rows * 8), *rb = dalloc(rows * 8);
		struct tview in = tv(DT_F32, 3, shapes[k], x), out[2];

		og_run(&c.o, &in, out);
		chain_ref(&c, x, rows, ry, rb);
		expect_dims(&out[0], 3, shapes[k]);
		expect_close(&out[0], ry, rows * 8);
		expect_close(&out[1], rb, rows * 8);
		free(ry);
		free(rb);
		free(x);
	}
	og_free(&c.o);
}

Test(cpu_ops, input_data_too_small_refused)
{
	const int64_t d[2] = {2, 8};
	float x[16] = {0};
	struct og o;
	struct tview in, out;
	int ret;

	run_unary(OP_RELU, 0, 2, d, x, &o, &out);
	in = tv(DT_F32, 2, d, x);
	in.nbytes = 60;
	ret = cpu_backend.model_run(o.m, &in, &out);
	cr_expect_eq(ret, DPRT_EINPUT, "%s", err_msg(ret));
	cr_expect(strstr(err_msg(ret), "x: 60 bytes"), "%s", err_msg(ret));
	in.nbytes = 64;
	in.data = NULL;
	ret = cpu_backend.model_run(o.m, &in, &out);
	cr_expect_eq(ret, DPRT_EINPUT, "%s", err_msg(ret));
	in.data = x;
	og_run(&o, &in, &out);
	og_free(&o);
}

Test(cpu_ops, omitted_optional_input_is_filled)
{
	const int64_t d[2] = {DIM_BATCH, DIM_SEQ}, g[2] = {2, 3};
	const int64_t ids[6] = {0, 1, 2, 3, 4, 5};
	float a[6] = {1, 2, 3, 4, 5, 6};
	struct tview in[4] = {
		tv(DT_F32, 2, g, a), {.data = NULL}, tv(DT_I64, 2, g, ids), {.data = NULL}};
	struct og o = og_new(DT_F32);
	struct tview out[2];
	uint32_t t[2];
	int i;

	t[0] = og_input(&o, "a", DT_F32, 2, d);
	t[1] = graph_input(o.g, "b", DT_F32, 2, d, IO_OPTIONAL, 2.5);
	graph_output(o.g, "y", graph_node(o.g, OP_ADD, t, 2, NULL, 0, NULL, 0));
	t[0] = og_input(&o, "ids", DT_I64, 2, d);
	t[1] = graph_input(o.g, "pad", DT_I64, 2, d, IO_OPTIONAL, 4);
	graph_output(o.g, "z",
		     graph_node(o.g, OP_POSITION_IDS, &t[1], 1, (int64_t[2]){1, 4}, 2, NULL, 0));
	og_ready(&o, 1);
	og_run(&o, in, out);
	for (i = 0; i < 6; i++) {
		cr_expect_eq(((float *)out[0].data)[i], (float)(i + 1) + 2.5f);
		cr_expect_eq(((int64_t *)out[1].data)[i], 4); /* all pad -> pad */
	}
	og_free(&o);
}
