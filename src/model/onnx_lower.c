/* SPDX-License-Identifier: MIT */
/*
 * Lowering ONNX nodes to dprt's fused IR, from the graph outputs back: the
 * producer of a value is matched against the patterns that end at it (the
 * pattern's last node), its inputs are lowered first, then its dprt node is
 * added. Shape-only subgraphs that no pattern reads are never visited.
 *
 *   MatMul(x, W) [+ Add b]             -> LINEAR (w = W^T)
 *   Gemm(x, B, C) (transB 0/1)         -> LINEAR
 *   LayerNormalization, and ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/
 *   Mul/Add                            -> LAYERNORM
 *   x*0.5*(1+Erf(x/sqrt2)), tanh form  -> GELU (ia0 0 / 1)
 *   BERT self-attention (onnx_attn.c)  -> LINEAR (fused qkv) + ATTENTION
 *   Gather(table, ids)                 -> EMBEDDING (positions: POSITION_IDS)
 *   Gather(x, i, axis 1)               -> TAKE_ROW
 *   Conv [+ BatchNormalization]        -> CONV2D (batch norm folded)
 *   BatchNormalization                 -> BATCHNORM; Relu(Add) -> ADD+relu
 *   Reshape(Gemm(Reshape(x, [-1, K])), [N, S, M]) (torch's 3-D addmm,
 *   GPT-2's Conv1D)                    -> LINEAR
 *   Gather(table, position ids) where the ids, evaluated on probe token
 *   ids, are arange(S) or RoBERTa's    -> POSITION_IDS + EMBEDDING
 *   Add(Concat([Expand(cls), Transpose(Reshape/Flatten(Conv))], 1), pos)
 *                                      -> CLS_POS (ViT)
 *   Reshape to its input's own shape (evaluated for two probe sizes),
 *   Cast between float types           -> nothing
 *   Relu, MaxPool, AveragePool, GlobalAveragePool + Flatten, Softmax
 *   (last axis), Tanh, Add (same shapes), Identity, Dropout
 */
#include "onnx_imp.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 20000

/* The producer of value name if its op is op, else NULL. */
const onode *ox_prod(struct ox *x, const char *name, const char *op)
{
	struct oval *v = ox_val(x, name);

	if (!v || !v->prod || !v->prod->op_type || strcmp(v->prod->op_type, op))
		return NULL;
	return v->prod;
}

static bool is_op(const onode *n, const char *op)
{
	return n->op_type && !strcmp(n->op_type, op);
}

static const char *in_name(const onode *n, size_t k)
{
	return k < n->n_input ? n->input[k] : "";
}

static float *fdup(const struct cval *c)
{
	float *f = malloc(sizeof(float) * (size_t)(c->n + 1));

	if (f && c->f)
		memcpy(f, c->f, sizeof(float) * (size_t)c->n);
	return f;
}

/* src [rows, cols] -> [cols, rows]. */
static float *transposed(const float *src, int64_t rows, int64_t cols)
{
	float *f = malloc(sizeof(float) * (size_t)(rows * cols + 1));
	int64_t r, c;

	for (r = 0; f && r < rows; r++)
		for (c = 0; c < cols; c++)
			f[c * rows + r] = src[r * cols + c];
	return f;
}

static void layer_name(char *dst, const char *wname, const onode *n)
{
	size_t l = strlen(wname);

	if (l > 7 && !strcmp(wname + l - 7, ".weight"))
		snprintf(dst, NAME_LEN, "%.*s", (int)(l - 7), wname);
	else
		snprintf(dst, NAME_LEN, "%s", n->name && *n->name ? n->name : wname);
}

static int oom(struct ox *x)
{
	return err_set(-ENOMEM, "ONNX import: %s: out of memory", x->path);
}

/* ---------------------------------------------------------------- linear */

/* A float constant of rank 1 with m elements ([1, m] too). */
static struct cval *bias_of(struct ox *x, const char *name, int64_t m)
{
	struct cval *c = ox_const(x, name);

	if (!c || c->is_int || c->n != m || c->ndim < 1 || c->dims[c->ndim - 1] != m)
		return NULL;
	return c;
}

/*
 * Match a linear layer ending at value name: MatMul(in, W) + b, or a bare
 * MatMul; W [K, M] constant. 0 if matched (*b NULL when no bias).
 */
int ox_match_linear(struct ox *x, const char *name, const char **in, struct cval **w,
		    struct cval **b, const onode **last)
{
	const onode *add = ox_prod(x, name, "Add"), *mm = ox_prod(x, name, "MatMul");
	int k;

	*b = NULL;
	for (k = 0; add && k < 2 && !mm; k++) {
		mm = ox_prod(x, in_name(add, (size_t)k), "MatMul");
		if (mm && !(*w = ox_const(x, in_name(mm, 1))))
			mm = NULL;
		if (mm && (*w)->ndim == 2 && !(*w)->is_int)
			*b = bias_of(x, in_name(add, (size_t)(1 - k)), (*w)->dims[1]);
		if (!*b)
			mm = NULL;
	}
	if (!mm || !(*w = ox_const(x, in_name(mm, 1))) || (*w)->ndim != 2 || (*w)->is_int ||
	    ox_const(x, in_name(mm, 0)))
		return 1;
	*in = in_name(mm, 0);
	*last = mm;
	return 0;
}

/* A LINEAR node: w [M, K] (taken over), b [M] (taken over) or NULL. */
int ox_emit_linear(struct ox *x, const char *lname, const char *wname, uint32_t in_t, float *w,
		   int64_t m, int64_t k, float *b, uint32_t *out)
{
	int64_t wd[2] = {m, k};
	char bname[NAME_LEN];
	uint32_t in[3] = {in_t, NO_TENSOR, NO_TENSOR};

	graph_layer_begin(x->g, lname);
	in[1] = ox_weight(x, wname, 2, wd, w);
	if (in[1] == NO_TENSOR) {
		free(b);
		return -ENOMEM;
	}
	if (b) {
		snprintf(bname, sizeof(bname), "%s.bias", lname);
		in[2] = ox_weight(x, bname, 1, &m, b);
		if (in[2] == NO_TENSOR)
			return -ENOMEM;
	}
	*out = graph_node(x->g, OP_LINEAR, in, b ? 3 : 2, NULL, 0, NULL, 0);
	return 0;
}

/* Unsqueeze(Gather(Shape(v), k)): dim k of v. */
static bool is_dim_of(struct ox *x, const char *name, const char *v, int64_t k)
{
	const onode *u = ox_prod(x, name, "Unsqueeze"), *g, *sh;
	double c;

	return u && (g = ox_prod(x, in_name(u, 0), "Gather")) &&
	       (sh = ox_prod(x, in_name(g, 0), "Shape")) && !strcmp(in_name(sh, 0), v) &&
	       !ox_scalar(x, in_name(g, 1), &c) && c == (double)k && !ox_attr(sh, "start");
}

/*
 * torch's addmm on a 3-D input: Reshape(Gemm(Reshape(v, [-1, K]), W, b),
 * Concat(dim 0 of v, dim 1 of v, [M])) ending at value name. The Gemm n,
 * v in *in; 0 if matched.
 */
static int match_gemm3d(struct ox *x, const char *name, const onode **gm, const char **in)
{
	const onode *r = ox_prod(x, name, "Reshape"), *r0, *cc, *c0;
	struct cval *last, *first;
	size_t k;

	if (!r || !(*gm = ox_prod(x, in_name(r, 0), "Gemm")) ||
	    !(r0 = ox_prod(x, in_name(*gm, 0), "Reshape")) ||
	    !(cc = ox_prod(x, in_name(r, 1), "Concat")) || cc->n_input < 2)
		return 1;
	*in = in_name(r0, 0);
	last = ox_const(x, cc->input[cc->n_input - 1]);
	if (!last || !last->is_int || last->n != 1)
		return 1;
	for (k = 0; k + 1 < cc->n_input; k++)
		if (!is_dim_of(x, cc->input[k], *in, (int64_t)k))
			return 1;
	first = ox_const(x, in_name(r0, 1));
	c0 = ox_prod(x, in_name(r0, 1), "Concat");
	if (first)
		return first->is_int && first->n == 2 && first->i[0] == -1 ? 0 : 1;
	first = c0 ? ox_const(x, in_name(c0, 0)) : NULL;
	return first && first->is_int && first->n == 1 && first->i[0] == -1 ? 0 : 1;
}

/* Gemm gm's weight as [M, K] (new), bias [M] (new) or NULL; 0 if dprt can
 * run it, else 1. */
static int gemm_weights(struct ox *x, const onode *gm, float **w, int64_t *m, int64_t *k, float **b)
{
	struct cval *c = ox_const(x, in_name(gm, 1)), *cb = NULL;
	bool tb = ox_attr_i(gm, "transB", 0);

	if (!c || c->is_int || c->ndim != 2 || ox_attr_i(gm, "transA", 0) ||
	    ox_attr_f(gm, "alpha", 1) != 1 || ox_attr_f(gm, "beta", 1) != 1)
		return 1;
	*m = tb ? c->dims[0] : c->dims[1];
	*k = tb ? c->dims[1] : c->dims[0];
	if (gm->n_input > 2 && *gm->input[2] && !(cb = bias_of(x, gm->input[2], *m)))
		return 1;
	*w = tb ? fdup(c) : transposed(c->f, c->dims[0], c->dims[1]);
	*b = cb ? fdup(cb) : NULL;
	if (!*w || (cb && !*b)) {
		free(*w);
		free(*b);
		return 1;
	}
	return 0;
}

/*
 * Any linear layer ending at value name: MatMul [+ Add] or torch's 3-D
 * addmm (match_gemm3d). Its input, weight name, weight [m, k] and bias [m]
 * (both new, bias NULL if none); 0 if matched, 1 if not.
 */
int ox_match_any_linear(struct ox *x, const char *name, const char **in, const char **wname,
			float **w, int64_t *m, int64_t *k, float **b)
{
	struct cval *cw, *cb;
	const onode *last;

	if (!ox_match_linear(x, name, in, &cw, &cb, &last)) {
		*wname = in_name(last, 1);
		*m = cw->dims[1];
		*k = cw->dims[0];
		*w = transposed(cw->f, cw->dims[0], cw->dims[1]);
		*b = cb ? fdup(cb) : NULL;
		return *w ? 0 : 1;
	}
	if (match_gemm3d(x, name, &last, in))
		return 1;
	*wname = in_name(last, 1);
	return gemm_weights(x, last, w, m, k, b);
}

static int lower_gemm3d(struct ox *x, const char *name, uint32_t *out)
{
	const char *in, *wname;
	char lname[NAME_LEN];
	int64_t m, k;
	float *w, *b;
	const onode *gm;
	uint32_t t;
	int ret;

	if (match_gemm3d(x, name, &gm, &in) ||
	    ox_match_any_linear(x, name, &in, &wname, &w, &m, &k, &b))
		return 1;
	ret = ox_lower(x, in, &t);
	if (ret) {
		free(w);
		free(b);
		return ret;
	}
	layer_name(lname, wname, gm);
	return ox_emit_linear(x, lname, wname, t, w, m, k, b, out);
}

static int lower_linear(struct ox *x, const char *name, uint32_t *out)
{
	struct cval *w, *b;
	const onode *mm;
	const char *in;
	char lname[NAME_LEN];
	uint32_t t;
	int ret;

	if (ox_match_linear(x, name, &in, &w, &b, &mm))
		return 1;
	ret = ox_lower(x, in, &t);
	if (ret)
		return ret;
	layer_name(lname, in_name(mm, 1), mm);
	return ox_emit_linear(x, lname, in_name(mm, 1), t, transposed(w->f, w->dims[0], w->dims[1]),
			      w->dims[1], w->dims[0], b ? fdup(b) : NULL, out);
}

static int lower_gemm(struct ox *x, const onode *n, uint32_t *out)
{
	struct cval *w = ox_const(x, in_name(n, 1)), *b = NULL;
	bool tb = ox_attr_i(n, "transB", 0);
	char lname[NAME_LEN];
	int64_t m, k;
	uint32_t t;
	int ret;

	if (!w || w->is_int || w->ndim != 2 || ox_attr_i(n, "transA", 0) ||
	    ox_attr_f(n, "alpha", 1) != 1 || ox_attr_f(n, "beta", 1) != 1)
		return ox_bad(x, n, "only alpha = beta = 1, transA = 0 and a constant B are");
	m = tb ? w->dims[0] : w->dims[1];
	k = tb ? w->dims[1] : w->dims[0];
	if (n->n_input > 2 && *n->input[2] && !(b = bias_of(x, n->input[2], m)))
		return ox_bad(x, n, "C must be a constant of M elements");
	ret = ox_lower(x, in_name(n, 0), &t);
	if (ret)
		return ret;
	layer_name(lname, in_name(n, 1), n);
	return ox_emit_linear(x, lname, in_name(n, 1), t,
			      tb ? fdup(w) : transposed(w->f, w->dims[0], w->dims[1]), m, k,
			      b ? fdup(b) : NULL, out);
}

/* ------------------------------------------------------------- layernorm */

static int emit_layernorm(struct ox *x, const char *lname, uint32_t in_t, const struct cval *ga,
			  const struct cval *be, float eps, uint32_t *out)
{
	char wn[NAME_LEN], bn[NAME_LEN];
	int64_t h = ga->n;
	uint32_t in[3] = {in_t};

	snprintf(wn, sizeof(wn), "%.*s.weight", NAME_LEN - 8, lname);
	snprintf(bn, sizeof(bn), "%.*s.bias", NAME_LEN - 8, lname);
	graph_layer_begin(x->g, lname);
	in[1] = ox_weight(x, wn, 1, &h, fdup(ga));
	in[2] = in[1] == NO_TENSOR ? NO_TENSOR : ox_weight(x, bn, 1, &h, fdup(be));
	if (in[2] == NO_TENSOR)
		return -ENOMEM;
	*out = graph_node(x->g, OP_LAYERNORM, in, 3, NULL, 0, &eps, 1);
	return 0;
}

static int lower_layernorm_op(struct ox *x, const onode *n, uint32_t *out)
{
	struct cval *ga = ox_const(x, in_name(n, 1)), *be = ox_const(x, in_name(n, 2));
	char lname[NAME_LEN];
	uint32_t t;
	int ret;

	if (ox_attr_i(n, "axis", -1) != -1 || !ga || ga->is_int || ga->ndim != 1 || !be ||
	    be->n != ga->n || be->is_int || n->n_output > 1)
		return ox_bad(x, n, "only axis -1 with constant 1-D scale and bias is");
	ret = ox_lower(x, in_name(n, 0), &t);
	if (ret)
		return ret;
	layer_name(lname, in_name(n, 1), n);
	return emit_layernorm(x, lname, t, ga, be, ox_attr_f(n, "epsilon", 1e-5f), out);
}

/* ReduceMean over the last axis only (attribute, or input from opset 18). */
static const onode *mean_last(struct ox *x, const char *name)
{
	const onode *r = ox_prod(x, name, "ReduceMean");
	const Onnx__AttributeProto *a;
	struct cval *c;

	if (!r || !ox_attr_i(r, "keepdims", 1))
		return NULL;
	if ((a = ox_attr(r, "axes")))
		return a->n_ints == 1 && a->ints[0] == -1 ? r : NULL;
	c = ox_const(x, in_name(r, 1));
	return c && c->is_int && c->n == 1 && c->i[0] == -1 ? r : NULL;
}

/* One input of binary node n is a constant: *c it, *other the other name. */
static int split_const(struct ox *x, const onode *n, struct cval **c, const char **other)
{
	int k;

	for (k = 0; k < 2 && n->n_input == 2; k++) {
		*c = ox_const(x, n->input[k]);
		if (*c && !ox_const(x, n->input[1 - k])) {
			*other = n->input[1 - k];
			return 0;
		}
	}
	return -1;
}

/* Add(Mul(Div(Sub(X, mean(X)), Sqrt(mean(Pow(Sub, 2)) + eps)), gamma), beta). */
static int try_layernorm(struct ox *x, const onode *add, uint32_t *out)
{
	const onode *mul, *div, *sub, *sq, *ae, *pw, *m2;
	struct cval *be, *ga;
	const char *a, *m, *xin;
	double eps;
	char lname[NAME_LEN];
	uint32_t t;
	int ret;

	if (split_const(x, add, &be, &a) || !(mul = ox_prod(x, a, "Mul")) ||
	    split_const(x, mul, &ga, &m) || !(div = ox_prod(x, m, "Div")) ||
	    !(sub = ox_prod(x, in_name(div, 0), "Sub")) ||
	    !(sq = ox_prod(x, in_name(div, 1), "Sqrt")) ||
	    !(ae = ox_prod(x, in_name(sq, 0), "Add")))
		return 1;
	xin = in_name(sub, 0);
	if (!mean_last(x, in_name(sub, 1)) ||
	    strcmp(in_name(mean_last(x, in_name(sub, 1)), 0), xin) ||
	    ox_scalar(x, in_name(ae, 1), &eps) || !(m2 = mean_last(x, in_name(ae, 0))) ||
	    !(pw = ox_prod(x, in_name(m2, 0), "Pow")) || strcmp(in_name(pw, 0), in_name(div, 0)) ||
	    !ox_is_scalar(x, in_name(pw, 1), 2.0) || ga->is_int || be->is_int || ga->n != be->n ||
	    ga->ndim != 1)
		return 1;
	ret = ox_lower(x, xin, &t);
	if (ret)
		return ret;
	layer_name(lname, in_name(mul, ga == ox_const(x, in_name(mul, 0)) ? 0 : 1), mul);
	return emit_layernorm(x, lname, t, ga, be, (float)eps, out);
}

/* ------------------------------------------------------------------ GELU */

/* The leaves of a product of up to three factors (Mul of Mul). */
static int mul_leaves(struct ox *x, const onode *n, const char **lv)
{
	int k, cnt = 0;

	for (k = 0; k < 2; k++) {
		const onode *m = ox_prod(x, in_name(n, (size_t)k), "Mul");
		struct oval *v = ox_val(x, in_name(n, (size_t)k));

		if (m && v->uses == 1 && cnt == k) {
			lv[cnt++] = in_name(m, 0);
			lv[cnt++] = in_name(m, 1);
		} else {
			lv[cnt++] = in_name(n, (size_t)k);
		}
	}
	return cnt;
}

/* a is Add(inner, 1) (either order): the inner value's name, or NULL. */
static const char *plus_one(struct ox *x, const char *a)
{
	const onode *n = ox_prod(x, a, "Add");

	if (!n)
		return NULL;
	if (ox_is_scalar(x, in_name(n, 1), 1.0))
		return in_name(n, 0);
	return ox_is_scalar(x, in_name(n, 0), 1.0) ? in_name(n, 1) : NULL;
}

/* Mul(v, c) or Mul(c, v) with scalar c ~ s (Div(v, 1/s) too): v, or NULL. */
static const char *scaled(struct ox *x, const char *name, double s)
{
	const onode *n = ox_prod(x, name, "Mul"), *d = ox_prod(x, name, "Div");

	if (d && ox_is_scalar(x, in_name(d, 1), 1.0 / s))
		return in_name(d, 0);
	if (!n)
		return NULL;
	if (ox_is_scalar(x, in_name(n, 1), s))
		return in_name(n, 0);
	return ox_is_scalar(x, in_name(n, 0), s) ? in_name(n, 1) : NULL;
}

/* Erf(X / sqrt 2) or Tanh(sqrt(2/pi) * (X + 0.044715 X^3)): X and the form. */
static const char *gelu_core(struct ox *x, const char *inner, int *form)
{
	const onode *e = ox_prod(x, inner, "Erf"), *t = ox_prod(x, inner, "Tanh"), *a, *p;
	const char *s, *cube;

	if (e) {
		*form = 0;
		return scaled(x, in_name(e, 0), M_SQRT1_2);
	}
	if (!t || !(s = scaled(x, in_name(t, 0), sqrt(2.0 / M_PI))) || !(a = ox_prod(x, s, "Add")))
		return NULL;
	*form = 1;
	cube = scaled(x, in_name(a, 1), 0.044715);
	if (cube && (p = ox_prod(x, cube, "Pow")) && ox_is_scalar(x, in_name(p, 1), 3.0) &&
	    !strcmp(in_name(p, 0), in_name(a, 0)))
		return in_name(a, 0);
	cube = scaled(x, in_name(a, 0), 0.044715);
	if (cube && (p = ox_prod(x, cube, "Pow")) && ox_is_scalar(x, in_name(p, 1), 3.0) &&
	    !strcmp(in_name(p, 0), in_name(a, 1)))
		return in_name(a, 1);
	return NULL;
}

static int try_gelu(struct ox *x, const onode *n, uint32_t *out)
{
	const char *lv[4], *xin = NULL, *core = NULL, *inner;
	int cnt = mul_leaves(x, n, lv), k, j, half = -1, form = 0;
	int64_t ia;
	uint32_t t;
	int ret;

	if (cnt != 3)
		return 1;
	for (k = 0; k < 3; k++)
		if (ox_is_scalar(x, lv[k], 0.5))
			half = k;
	for (k = 0; k < 3 && half >= 0 && !xin; k++) {
		if (k == half || !(inner = plus_one(x, lv[k])) ||
		    !(core = gelu_core(x, inner, &form)))
			continue;
		j = 3 - half - k;
		if (!strcmp(lv[j], core))
			xin = core;
	}
	if (!xin)
		return 1;
	ret = ox_lower(x, xin, &t);
	if (ret)
		return ret;
	ia = form;
	*out = graph_node(x->g, OP_GELU, &t, 1, &ia, 1, NULL, 0);
	return 0;
}

/* ------------------------------------------------------------- embedding */

/* Slice(arange constant, start 0) on the last axis: position ids. */
static bool is_positions(struct ox *x, const char *ids, int64_t *count)
{
	const onode *s = ox_prod(x, ids, "Slice");
	struct cval *c, *st;
	int64_t k;

	if (!s || !(c = ox_const(x, in_name(s, 0))) || !c->is_int ||
	    !(st = ox_const(x, in_name(s, 1))) || st->n != 1 || st->i[0] != 0)
		return false;
	for (k = 0; k < c->n; k++)
		if (c->i[k] != k)
			return false;
	*count = c->n;
	return c->ndim >= 1 && c->dims[c->ndim - 1] == c->n;
}

/* Gather(x, scalar i, axis 1) of an activation: TAKE_ROW (BERT's pooler). */
static int lower_take_row(struct ox *x, const onode *n, uint32_t *out)
{
	struct cval *ix = ox_const(x, in_name(n, 1));
	uint32_t t;
	int64_t row;
	int ret;

	if (!ix || !ix->is_int || ix->ndim != 0 || ix->i[0] < 0 || ox_attr_i(n, "axis", 0) != 1)
		return ox_bad(x, n,
			      "only a lookup in a constant table, or of one token "
			      "(scalar index >= 0, axis 1), is");
	row = ix->i[0];
	ret = ox_lower(x, in_name(n, 0), &t);
	if (ret)
		return ret;
	*out = graph_node(x->g, OP_TAKE_ROW, &t, 1, &row, 1, NULL, 0);
	return 0;
}

/* Whether c, for probe (n, s) with token ids ids, holds position ids of
 * mode 0 (arange) or mode 1 with pad (RoBERTa). */
static bool positions_are(const struct cval *c, int64_t n, int64_t s, const int64_t *ids, int mode,
			  int64_t pad)
{
	int64_t b, j, cum;

	if (!c || !c->is_int || c->ndim != 2 || (c->dims[0] != n && c->dims[0] != 1) ||
	    c->dims[1] != s || (mode && c->dims[0] != n))
		return false;
	for (b = 0; b < c->dims[0]; b++)
		for (j = 0, cum = 0; j < s; j++) {
			bool tok = ids[b * s + j] != pad;

			cum += tok;
			if (c->i[b * s + j] != (mode ? cum * tok + pad : j))
				return false;
		}
	return true;
}

/* Evaluate index name for probe (n, s), ids with pad at the end of row 1;
 * 1 if it is position ids of the given mode, 0 if not, < 0 on error. */
static int probe_positions(struct ox *x, const char *name, int64_t n, int64_t s, int mode,
			   int64_t pad, uint32_t *ids_t)
{
	int64_t ids[32], k;
	struct probe p;
	int yes;

	for (k = 0; k < n * s; k++)
		ids[k] = k >= s && k % s >= s - 2 ? pad : 4 + k % 7 + (pad >= 4 + k % 7);
	if (ox_probe_init(x, &p, n, s, ids))
		return -ENOMEM;
	yes = positions_are(ox_probe(&p, name), n, s, ids, mode, pad);
	*ids_t = p.mask_in ? p.mask_t : x->first_ids;
	ox_probe_fini(&p);
	return yes;
}

/* The index of a lookup, if it is position ids computed from the token
 * ids (or the sequence length): POSITION_IDS's mode and offset in ia. */
static int find_positions(struct ox *x, const char *name, int64_t *ia, uint32_t *ids_t)
{
	int mode, r1, r2;
	int64_t pad;

	if (ox_val(x, name) && !ox_val(x, name)->prod)
		return 0;
	for (mode = 0; mode < 2; mode++)
		for (pad = 0; pad < (mode ? 4 : 1); pad++) {
			r1 = probe_positions(x, name, 2, 5, mode, pad, ids_t);
			r2 = r1 > 0 ? probe_positions(x, name, 3, 7, mode, pad, ids_t) : r1;
			if (r2 < 0)
				return r2;
			if (r2 && *ids_t != NO_TENSOR) {
				ia[0] = mode;
				ia[1] = pad;
				return 1;
			}
		}
	return 0;
}

static int lower_gather(struct ox *x, const onode *n, uint32_t *out)
{
	struct cval *tb = ox_const(x, in_name(n, 0));
	int64_t ia[2] = {0, 0}, npos = 0;
	char lname[NAME_LEN];
	uint32_t in[2];
	int ret;

	if (!tb)
		return lower_take_row(x, n, out);
	if (tb->is_int || tb->ndim != 2 || ox_attr_i(n, "axis", 0) != 0)
		return ox_bad(x, n, "only a lookup in a constant 2-D float table (axis 0) is");
	if (is_positions(x, in_name(n, 1), &npos)) {
		if (x->first_ids == NO_TENSOR)
			return ox_bad(x, n, "position ids need an INT64 input of token ids");
		in[0] = graph_node(x->g, OP_POSITION_IDS, &x->first_ids, 1, ia, 2, NULL, 0);
		x->g->max_seq = MIN(npos, tb->dims[0]);
	} else if ((ret = find_positions(x, in_name(n, 1), ia, &in[1])) > 0) {
		in[0] = graph_node(x->g, OP_POSITION_IDS, &in[1], 1, ia, 2, NULL, 0);
		x->g->max_seq = ia[0] ? tb->dims[0] - ia[1] - 1 : tb->dims[0];
	} else {
		ret = ret ? ret : ox_lower(x, in_name(n, 1), &in[0]);
		if (ret)
			return ret;
	}
	layer_name(lname, in_name(n, 0), n);
	graph_layer_begin(x->g, lname);
	in[1] = ox_weight(x, in_name(n, 0), 2, tb->dims, fdup(tb));
	if (in[1] == NO_TENSOR)
		return -ENOMEM;
	*out = graph_node(x->g, OP_EMBEDDING, in, 2, NULL, 0, NULL, 0);
	return 0;
}

/* ------------------------------------------------------------------ conv */

/* ints attribute name of n as 2 values (default def), pads as 4. */
static int ints2(const onode *n, const char *name, int64_t def, int64_t *v, size_t want)
{
	const Onnx__AttributeProto *a = ox_attr(n, name);
	size_t k;

	for (k = 0; k < want; k++)
		v[k] = def;
	if (!a)
		return 0;
	if (a->n_ints != want)
		return -1;
	for (k = 0; k < want; k++)
		v[k] = a->ints[k];
	return 0;
}

static bool plain_pad(const onode *n)
{
	const Onnx__AttributeProto *a = ox_attr(n, "auto_pad");

	return !a || !a->has_s || !strncmp((const char *)a->s.data, "NOTSET", a->s.len);
}

/* Conv attributes as CONV2D's ia; -1 if dprt cannot run them. */
static int conv_ia(const onode *n, int64_t *ia)
{
	int64_t st[2], pd[4], dl[2];

	if (ints2(n, "strides", 1, st, 2) || ints2(n, "pads", 0, pd, 4) ||
	    ints2(n, "dilations", 1, dl, 2) || pd[0] != pd[2] || pd[1] != pd[3] || !plain_pad(n))
		return -1;
	ia[0] = st[0];
	ia[1] = st[1];
	ia[2] = pd[0];
	ia[3] = pd[1];
	ia[4] = dl[0];
	ia[5] = dl[1];
	ia[6] = ox_attr_i(n, "group", 1);
	return 0;
}

/* BatchNormalization bn as scale/shift per channel (FP32, c of them). */
static int bn_affine(struct ox *x, const onode *bn, int64_t c, float **sc, float **sh)
{
	struct cval *p[4];
	double eps = ox_attr_f(bn, "epsilon", 1e-5f);
	int64_t k;
	int i;

	for (i = 0; i < 4; i++)
		if (!(p[i] = ox_const(x, in_name(bn, (size_t)i + 1))) || p[i]->is_int ||
		    p[i]->n != c)
			return ox_bad(x, bn,
				      "scale, B, mean and var must be constants of C elements");
	*sc = malloc(sizeof(float) * (size_t)c);
	*sh = malloc(sizeof(float) * (size_t)c);
	if (!*sc || !*sh) {
		free(*sc);
		free(*sh);
		return oom(x);
	}
	for (k = 0; k < c; k++) {
		double s = p[0]->f[k] / sqrt((double)p[3]->f[k] + eps);

		(*sc)[k] = (float)s;
		(*sh)[k] = (float)(p[1]->f[k] - p[2]->f[k] * s);
	}
	return 0;
}

/* Fold the affine (sc, sh) into conv weight w [K, per] and bias b [K]. */
static void fold_bn(float *w, float *b, const float *sc, const float *sh, int64_t k, int64_t per)
{
	int64_t i, j;

	for (i = 0; i < k; i++) {
		for (j = 0; j < per; j++)
			w[i * per + j] = (float)((double)w[i * per + j] * sc[i]);
		b[i] = (float)((double)b[i] * sc[i] + sh[i]);
	}
}

/* Conv n, with batch norm bn (or NULL) folded into it. */
static int lower_conv(struct ox *x, const onode *n, const onode *bn, uint32_t *out)
{
	struct cval *w = ox_const(x, in_name(n, 1)), *b = NULL;
	float *wf, *bf, *sc = NULL, *sh = NULL;
	char lname[NAME_LEN], bname[NAME_LEN];
	int64_t ia[7], k;
	uint32_t in[3];
	int ret;

	if (!w || w->is_int || w->ndim != 4 || conv_ia(n, ia))
		return ox_bad(x, n,
			      "only 2-D convolutions with a constant weight, symmetric "
			      "pads and auto_pad NOTSET are");
	k = w->dims[0];
	if (n->n_input > 2 && *n->input[2] && !(b = bias_of(x, n->input[2], k)))
		return ox_bad(x, n, "the bias must be a constant of K elements");
	if (bn && (ret = bn_affine(x, bn, k, &sc, &sh)))
		return ret;
	ret = ox_lower(x, in_name(n, 0), &in[0]);
	wf = fdup(w);
	bf = calloc((size_t)k, sizeof(float));
	if (!ret && (!wf || !bf))
		ret = oom(x);
	if (!ret && b)
		memcpy(bf, b->f, sizeof(float) * (size_t)k);
	if (!ret && bn)
		fold_bn(wf, bf, sc, sh, k, w->n / k);
	free(sc);
	free(sh);
	if (ret || (!bn && !b)) {
		free(bf);
		bf = NULL;
	}
	if (ret) {
		free(wf);
		return ret;
	}
	layer_name(lname, in_name(n, 1), n);
	snprintf(bname, sizeof(bname), "%.*s.bias", NAME_LEN - 6, lname);
	graph_layer_begin(x->g, lname);
	in[1] = ox_weight(x, in_name(n, 1), 4, w->dims, wf);
	in[2] = !bf || in[1] == NO_TENSOR ? NO_TENSOR : ox_weight(x, bname, 1, &k, bf);
	if (in[1] == NO_TENSOR || (bf && in[2] == NO_TENSOR))
		return -ENOMEM;
	*out = graph_node(x->g, OP_CONV2D, in, bf ? 3 : 2, ia, 7, NULL, 0);
	return 0;
}

static int lower_bn(struct ox *x, const onode *n, uint32_t *out)
{
	const onode *cv = ox_prod(x, in_name(n, 0), "Conv");
	struct cval *sc0 = ox_const(x, in_name(n, 1));
	char lname[NAME_LEN], nm[NAME_LEN];
	float *sc, *sh;
	int64_t c, ia = 0;
	uint32_t in[3];
	int ret;

	if (n->n_output > 1 && *n->output[1])
		return ox_bad(x, n, "training mode outputs are not");
	if (cv && ox_val(x, in_name(n, 0))->uses == 1)
		return lower_conv(x, cv, n, out);
	if (!sc0)
		return ox_bad(x, n, "the scale must be a constant");
	c = sc0->n;
	ret = bn_affine(x, n, c, &sc, &sh);
	if (ret)
		return ret;
	ret = ox_lower(x, in_name(n, 0), &in[0]);
	if (ret) {
		free(sc);
		free(sh);
		return ret;
	}
	layer_name(lname, in_name(n, 1), n);
	graph_layer_begin(x->g, lname);
	snprintf(nm, sizeof(nm), "%.*s#scale", NAME_LEN - 8, lname);
	in[1] = ox_weight(x, nm, 1, &c, sc);
	snprintf(nm, sizeof(nm), "%.*s#shift", NAME_LEN - 8, lname);
	in[2] = ox_weight(x, nm, 1, &c, sh);
	if (in[1] == NO_TENSOR || in[2] == NO_TENSOR)
		return -ENOMEM;
	*out = graph_node(x->g, OP_BATCHNORM, in, 3, &ia, 1, NULL, 0);
	return 0;
}

static int lower_pool(struct ox *x, const onode *n, bool avg, uint32_t *out)
{
	int64_t k[2], st[2], pd[4], dl[2], ia[7];
	uint32_t t;
	int ret;

	if (ints2(n, "kernel_shape", 0, k, 2) || ints2(n, "strides", 1, st, 2) ||
	    ints2(n, "pads", 0, pd, 4) || ints2(n, "dilations", 1, dl, 2) || k[0] <= 0 ||
	    pd[0] != pd[2] || pd[1] != pd[3] || dl[0] != 1 || dl[1] != 1 || !plain_pad(n) ||
	    ox_attr_i(n, "ceil_mode", 0) || (n->n_output > 1 && *n->output[1]))
		return ox_bad(x, n,
			      "only 2-D pools with symmetric pads, no dilation, "
			      "floor mode and no indices are");
	if (pd[0] > k[0] / 2 || pd[1] > k[1] / 2)
		return ox_bad(x, n, "pads larger than half the kernel are not");
	ret = ox_lower(x, in_name(n, 0), &t);
	if (ret)
		return ret;
	ia[0] = k[0];
	ia[1] = k[1];
	ia[2] = st[0];
	ia[3] = st[1];
	ia[4] = pd[0];
	ia[5] = pd[1];
	ia[6] = ox_attr_i(n, "count_include_pad", 0);
	*out = graph_node(x->g, avg ? OP_AVGPOOL : OP_MAXPOOL, &t, 1, ia, avg ? 7 : 6, NULL, 0);
	return 0;
}

/* ------------------------------------------------------- element-wise */

static int lower_unary(struct ox *x, const onode *n, enum op op, uint32_t *out)
{
	uint32_t t;
	int ret = ox_lower(x, in_name(n, 0), &t);

	if (ret)
		return ret;
	*out = op == OP_NONE ? t : graph_node(x->g, op, &t, 1, NULL, 0, NULL, 0);
	return 0;
}

/* 0 if tensors a and b have the same shape for two probe sizes, 1 if not
 * (or unknown), < 0 on error. */
static int same_shape(struct ox *x, uint32_t a, uint32_t b)
{
	static const int64_t ones[21] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
					 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
	struct probe p;
	int k, same = 1;

	for (k = 0; k < 2 && same; k++) {
		if (ox_probe_init(x, &p, 2 + k, 5 + 2 * k, ones))
			return -ENOMEM;
		same = p.shapes && p.shapes[a].ndim == p.shapes[b].ndim &&
		       !memcmp(p.shapes[a].dims, p.shapes[b].dims,
			       sizeof(int64_t) * p.shapes[a].ndim);
		ox_probe_fini(&p);
	}
	return same ? 0 : 1;
}

static int lower_add(struct ox *x, const onode *n, int64_t relu, uint32_t *out)
{
	uint32_t in[2];
	int ret;

	if (ox_const(x, in_name(n, 0)) || ox_const(x, in_name(n, 1)))
		return ox_bad(x, n, "an Add of a constant outside a matched pattern is not");
	ret = ox_lower(x, in_name(n, 0), &in[0]);
	if (!ret)
		ret = ox_lower(x, in_name(n, 1), &in[1]);
	if (!ret && (ret = same_shape(x, in[0], in[1])) > 0)
		ret = ox_bad(x, n, "only an Add of two same-shaped operands (no broadcasting) is");
	if (ret)
		return ret;
	*out = graph_node(x->g, OP_ADD, in, 2, &relu, 1, NULL, 0);
	return 0;
}

static int lower_relu(struct ox *x, const onode *n, uint32_t *out)
{
	const onode *add = ox_prod(x, in_name(n, 0), "Add");
	uint32_t t;
	int ret;

	if (add && ox_val(x, in_name(n, 0))->uses == 1 && !ox_const(x, in_name(add, 0)) &&
	    !ox_const(x, in_name(add, 1)))
		return lower_add(x, add, 1, out);
	ret = ox_lower(x, in_name(n, 0), &t);
	if (ret)
		return ret;
	*out = graph_node(x->g, OP_RELU, &t, 1, NULL, 0, NULL, 0);
	return 0;
}

static int lower_flatten(struct ox *x, const onode *n, uint32_t *out)
{
	const onode *gap = ox_prod(x, in_name(n, 0), "GlobalAveragePool");

	if (ox_attr_i(n, "axis", 1) != 1 || !gap)
		return ox_bad(x, n, "only Flatten(axis 1) of a GlobalAveragePool is");
	return lower_unary(x, gap, OP_GLOBAL_AVGPOOL, out); /* [N, C] */
}

static int lower_softmax(struct ox *x, const onode *n, uint32_t *out)
{
	if (ox_attr_i(n, "axis", -1) != -1)
		return ox_bad(x, n, "only the last axis is");
	return lower_unary(x, n, OP_SOFTMAX, out);
}

/* ------------------------------------------------------------- ViT */

/* Reshape target t of v is [N, C, -1]: Concat(Slice(Shape(v), 0, 2), [-1])
 * or the constant [0, 0, -1]. */
static bool flattens2(struct ox *x, const char *t, const char *v)
{
	const onode *cc = ox_prod(x, t, "Concat"), *sl, *sh;
	struct cval *c = ox_const(x, t), *a, *b;

	if (c)
		return c->is_int && c->n == 3 && c->i[0] == 0 && c->i[1] == 0 && c->i[2] == -1;
	if (!cc || cc->n_input != 2 || !ox_is_scalar(x, cc->input[1], -1.0) ||
	    !(sl = ox_prod(x, cc->input[0], "Slice")) ||
	    !(sh = ox_prod(x, in_name(sl, 0), "Shape")) || strcmp(in_name(sh, 0), v) ||
	    !(a = ox_const(x, in_name(sl, 1))) || !(b = ox_const(x, in_name(sl, 2))))
		return false;
	return a->n == 1 && b->n == 1 && a->i && b->i && a->i[0] == 0 && b->i[0] == 2 &&
	       (sl->n_input < 4 || ox_is_scalar(x, in_name(sl, 3), 0.0));
}

/* Transpose(Reshape(conv, [N, H, -1]) or Flatten(conv, 2), perm 0,2,1). */
static const char *patches_of(struct ox *x, const char *name)
{
	const onode *t = ox_prod(x, name, "Transpose"), *r, *f;
	const Onnx__AttributeProto *p = t ? ox_attr(t, "perm") : NULL;
	if (!p || p->n_ints != 3 || p->ints[0] != 0 || p->ints[1] != 2 || p->ints[2] != 1)
		return NULL;
	if ((f = ox_prod(x, in_name(t, 0), "Flatten")) && ox_attr_i(f, "axis", 1) == 2 &&
	    ox_prod(x, in_name(f, 0), "Conv"))
		return in_name(f, 0);
	r = ox_prod(x, in_name(t, 0), "Reshape");
	if (!r || !ox_prod(x, in_name(r, 0), "Conv"))
		return NULL;
	return flattens2(x, in_name(r, 1), in_name(r, 0)) ? in_name(r, 0) : NULL;
}

/* Add(Concat([Expand(cls), patches], axis 1), pos): CLS_POS. 0, 1 if not
 * the pattern, or an error. */
static int try_cls_pos(struct ox *x, const onode *add, uint32_t *out)
{
	struct cval *pos, *cls;
	const onode *cc, *ex;
	const char *other, *conv;
	char lname[NAME_LEN];
	uint32_t in[3];
	int ret;

	if (split_const(x, add, &pos, &other) || pos->is_int || pos->ndim != 3 ||
	    !(cc = ox_prod(x, other, "Concat")) || cc->n_input != 2 ||
	    ox_attr_i(cc, "axis", 0) != 1 || !(ex = ox_prod(x, cc->input[0], "Expand")) ||
	    !(cls = ox_const(x, in_name(ex, 0))) || cls->is_int || cls->ndim != 3 ||
	    cls->dims[0] != 1 || cls->dims[1] != 1 || cls->dims[2] != pos->dims[2] ||
	    !(conv = patches_of(x, cc->input[1])))
		return 1;
	ret = ox_lower(x, conv, &in[0]);
	if (ret)
		return ret;
	layer_name(lname, in_name(ex, 0), add);
	graph_layer_begin(x->g, "embeddings");
	in[1] = ox_weight(x, in_name(ex, 0), 3, cls->dims, fdup(cls));
	in[2] = in[1] == NO_TENSOR ?
			NO_TENSOR :
			ox_weight(x, in_name(add, 0) == other ? in_name(add, 1) : in_name(add, 0),
				  3, pos->dims, fdup(pos));
	if (in[2] == NO_TENSOR)
		return -ENOMEM;
	*out = graph_node(x->g, OP_CLS_POS, in, 3, NULL, 0, NULL, 0);
	return 0;
}

/* ---------------------------------------------------- no-op reshapes */

/* Reshape(v, t) where t, evaluated for two probe sizes, is v's own
 * shape (as GPT-2's output view): v. 0, 1 if not, or an error. */
static int try_same_shape(struct ox *x, const onode *r, uint32_t *out)
{
	static const int64_t sz[2][2] = {{2, 5}, {3, 7}};
	static const int64_t ones[21] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
					 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
	struct probe p;
	uint32_t t;
	int ret, k, d, same = 1;

	ret = ox_lower(x, in_name(r, 0), &t);
	if (ret)
		return ret;
	for (k = 0; k < 2 && same; k++) {
		const struct shape *s;
		struct cval *c;
		int64_t known = 1, numel;
		int neg = -1;

		if (ox_probe_init(x, &p, sz[k][0], sz[k][1], ones))
			return -ENOMEM;
		s = p.shapes ? &p.shapes[t] : NULL;
		c = s ? ox_probe(&p, in_name(r, 1)) : NULL;
		same = c && c->is_int && c->n == s->ndim;
		numel = s ? shape_numel(s) : 0;
		for (d = 0; same && d < c->n; d++) {
			int64_t v = c->i[d] == 0 ? s->dims[d] : c->i[d];

			if (v == -1)
				neg = d;
			else
				known *= v;
			same = v == -1 || v == s->dims[d];
		}
		if (same && neg >= 0)
			same = known && numel / known == s->dims[neg];
		ox_probe_fini(&p);
	}
	if (!same)
		return 1;
	*out = t;
	return 0;
}

/* ------------------------------------------------------------ dispatch */

static int lower_binary(struct ox *x, const onode *n, uint32_t *out)
{
	int ret;

	if (is_op(n, "Add")) {
		ret = try_layernorm(x, n, out);
		if (ret <= 0)
			return ret;
		ret = try_cls_pos(x, n, out);
		if (ret <= 0)
			return ret;
		ret = lower_linear(x, n->output[0], out);
		return ret <= 0 ? ret : lower_add(x, n, 0, out);
	}
	if (is_op(n, "MatMul")) {
		ret = lower_linear(x, n->output[0], out);
		return ret <= 0 ? ret :
				  ox_bad(x, n,
					 "only a MatMul by a constant 2-D weight, "
					 "or inside self-attention, is");
	}
	ret = try_gelu(x, n, out);
	return ret <= 0 ? ret : ox_unsup(x, n);
}

static int lower_node(struct ox *x, const onode *n, uint32_t *out)
{
	if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx"))
		return ox_unsup(x, n);
	if (is_op(n, "Add") || is_op(n, "MatMul") || is_op(n, "Mul"))
		return lower_binary(x, n, out);
	if (is_op(n, "Gemm"))
		return lower_gemm(x, n, out);
	if (is_op(n, "LayerNormalization"))
		return lower_layernorm_op(x, n, out);
	if (is_op(n, "Gather"))
		return lower_gather(x, n, out);
	if (is_op(n, "Reshape")) {
		int ret = ox_try_attention(x, n, out);

		if (ret > 0)
			ret = lower_gemm3d(x, n->output[0], out);
		if (ret > 0)
			ret = try_same_shape(x, n, out);
		return ret <= 0 ? ret :
				  ox_bad(x, n,
					 "only the reshapes ending self-attention or a 3-D "
					 "Gemm are");
	}
	if (is_op(n, "Conv"))
		return lower_conv(x, n, NULL, out);
	if (is_op(n, "BatchNormalization"))
		return lower_bn(x, n, out);
	if (is_op(n, "Relu"))
		return lower_relu(x, n, out);
	if (is_op(n, "MaxPool") || is_op(n, "AveragePool"))
		return lower_pool(x, n, is_op(n, "AveragePool"), out);
	if (is_op(n, "GlobalAveragePool"))
		return ox_bad(x, n, "only a GlobalAveragePool flattened after is");
	if (is_op(n, "Flatten"))
		return lower_flatten(x, n, out);
	if (is_op(n, "Softmax"))
		return lower_softmax(x, n, out);
	if (is_op(n, "Tanh"))
		return lower_unary(x, n, OP_TANH, out);
	if (is_op(n, "Cast") && !ox_const(x, in_name(n, 0))) {
		int64_t to = ox_attr_i(n, "to", 0);

		if (to != 1 && to != 10 && to != 16)
			return ox_bad(x, n, "only casts between float types are");
		return lower_unary(x, n, OP_NONE, out);
	}
	if (is_op(n, "Identity") || is_op(n, "Dropout"))
		return lower_unary(x, n, OP_NONE, out);
	return ox_unsup(x, n);
}

/*
 * The dprt tensor of ONNX value name: lowered once (memoized), producers
 * first, so nodes are added in an execution order. 0 or an error naming
 * the node and the file.
 */
int ox_lower(struct ox *x, const char *name, uint32_t *out)
{
	struct oval *v = ox_val(x, name);
	int ret;

	if (!v)
		return err_set(DPRT_EUNSUP, "ONNX import: %s: value '%s' is not defined", x->path,
			       name);
	if (v->tensor != NO_TENSOR) {
		*out = v->tensor;
		return 0;
	}
	if (ox_const(x, name) || !v->prod)
		return err_set(DPRT_EUNSUP,
			       "ONNX import: %s: constant '%s' used as an "
			       "activation is not supported",
			       x->path, name);
	if (++x->depth > MAX_DEPTH)
		return err_set(DPRT_EUNSUP, "ONNX import: %s: graph too deep", x->path);
	ret = lower_node(x, v->prod, out);
	x->depth--;
	if (ret)
		return ret > 0 ? ox_unsup(x, v->prod) : ret;
	v->tensor = *out;
	return 0;
}
