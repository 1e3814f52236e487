/* SPDX-License-Identifier: MIT */
/*
 * Shape inference: check the given input shapes against the IO signature,
 * then derive every activation's shape node by node.
 */
#include "model.h"

#include <stdio.h>
#include <string.h>

/* Bounds that keep every element count and byte count far from overflow. */
#define DIM_LIMIT (1ll << 31)
#define NUMEL_LIMIT (1ll << 40)

/* Batch and seq values fixed by the inputs seen so far (0 = not yet). */
struct sym {
	int64_t batch, seq;
	uint32_t batch_from, seq_from; /* input that fixed them */
};

static bool dt_is_float(uint8_t dt)
{
	return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16;
}

static const char *fmt_dims(const int64_t *dims, int ndim, char *buf, size_t len)
{
	size_t n;
	int i;

	n = (size_t)snprintf(buf, len, "[");
	for (i = 0; i < ndim && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? "," : "", (long long)dims[i]);
	if (n < len)
		snprintf(buf + n, len - n, "]");
	return buf;
}

static const char *fmt_shape(const struct shape *s, char *buf, size_t len)
{
	char dims[96];

	snprintf(buf, len, "%s %s", dtype_name((enum dtype)s->dtype),
		 fmt_dims(s->dims, s->ndim, dims, sizeof(dims)));
	return buf;
}

/* "INT64 [batch, seq<=512]" */
static const char *fmt_sig(const struct graph *g, const struct io_desc *io, char *buf, size_t len)
{
	size_t n;
	int i;

	n = (size_t)snprintf(buf, len, "%s [", dtype_name((enum dtype)io->dtype));
	for (i = 0; i < io->ndim && n < len; i++) {
		const char *sep = i ? ", " : "";
		int64_t d = io->dims[i];

		if (d == DIM_BATCH && g->max_batch > 0)
			n += (size_t)snprintf(buf + n, len - n, "%sbatch<=%lld", sep,
					      (long long)g->max_batch);
		else if (d == DIM_BATCH)
			n += (size_t)snprintf(buf + n, len - n, "%sbatch", sep);
		else if (d == DIM_SEQ && g->max_seq > 0)
			n += (size_t)snprintf(buf + n, len - n, "%sseq<=%lld", sep,
					      (long long)g->max_seq);
		else if (d == DIM_SEQ)
			n += (size_t)snprintf(buf + n, len - n, "%sseq", sep);
		else
			n += (size_t)snprintf(buf + n, len - n, "%s%lld", sep, (long long)d);
	}
	if (n < len)
		snprintf(buf + n, len - n, "]");
	return buf;
}

/* Report a mismatch of input i: "name: expected SIG, got SHAPE (why)". */
static int bad_input(int code, const struct graph *g, uint32_t i, const struct shape *got,
		     const char *why)
{
	const struct io_desc *io = &g->inputs[i];
	char sig[160], sh[128];

	return err_set(code, "%s: expected %s, got %s%s%s%s", io->name,
		       fmt_sig(g, io, sig, sizeof(sig)), fmt_shape(got, sh, sizeof(sh)),
		       why[0] ? " (" : "", why, why[0] ? ")" : "");
}

static int check_sym(const struct graph *g, uint32_t i, const struct shape *s, int d,
		     struct sym *sy)
{
	bool is_batch = g->inputs[i].dims[d] == DIM_BATCH;
	int64_t *val = is_batch ? &sy->batch : &sy->seq;
	uint32_t *from = is_batch ? &sy->batch_from : &sy->seq_from;
	int64_t v = s->dims[d], lim = is_batch ? g->max_batch : g->max_seq;
	char why[160];

	if (lim > 0 && v > lim) {
		snprintf(why, sizeof(why), "%s %lld > max %lld", is_batch ? "batch" : "seq",
			 (long long)v, (long long)lim);
		return bad_input(DPRT_ESHAPE, g, i, s, why);
	}
	if (*val && *val != v) {
		snprintf(why, sizeof(why), "%s %lld, but %s gives %lld", is_batch ? "batch" : "seq",
			 (long long)v, g->inputs[*from].name, (long long)*val);
		return bad_input(DPRT_ESHAPE, g, i, s, why);
	}
	*val = v;
	*from = i;
	return 0;
}

static int check_input(const struct graph *g, uint32_t i, const struct shape *s, struct sym *sy)
{
	const struct io_desc *io = &g->inputs[i];
	char why[96];
	int d, ret;

	if (s->ndim > MAX_DIMS)
		return err_set(DPRT_ESHAPE, "%s: %u dims given, at most %d allowed", io->name,
			       s->ndim, MAX_DIMS);
	if (s->dtype != io->dtype)
		return bad_input(DPRT_EDTYPE, g, i, s, "");
	if (s->ndim != io->ndim) {
		snprintf(why, sizeof(why), "rank %u, expected %u", s->ndim, io->ndim);
		return bad_input(DPRT_ESHAPE, g, i, s, why);
	}
	for (d = 0; d < s->ndim; d++) {
		if (s->dims[d] < 1 || s->dims[d] >= DIM_LIMIT) {
			snprintf(why, sizeof(why), "dim %d is %lld", d, (long long)s->dims[d]);
			return bad_input(DPRT_ESHAPE, g, i, s, why);
		}
		if (io->dims[d] > 0 && s->dims[d] != io->dims[d]) {
			snprintf(why, sizeof(why), "dim %d is %lld, expected %lld", d,
				 (long long)s->dims[d], (long long)io->dims[d]);
			return bad_input(DPRT_ESHAPE, g, i, s, why);
		}
		if (io->dims[d] < 0) {
			ret = check_sym(g, i, s, d, sy);
			if (ret)
				return ret;
		}
	}
	if (shape_numel(s) > NUMEL_LIMIT)
		return bad_input(DPRT_ESHAPE, g, i, s, "too many elements");
	return 0;
}

/* An omitted optional input takes the batch/seq of the others. */
static int fill_omitted(const struct graph *g, uint32_t i, const struct sym *sy, struct shape *s)
{
	const struct io_desc *io = &g->inputs[i];
	char sig[160];
	int d;

	s->dtype = io->dtype;
	s->ndim = io->ndim;
	for (d = 0; d < io->ndim; d++) {
		int64_t v = io->dims[d];

		if (v == DIM_BATCH)
			v = sy->batch;
		else if (v == DIM_SEQ)
			v = sy->seq;
		if (v <= 0)
			return err_set(DPRT_ESHAPE,
				       "%s: omitted, and no given input fixes its shape %s",
				       io->name, fmt_sig(g, io, sig, sizeof(sig)));
		s->dims[d] = v;
	}
	return 0;
}

static int check_inputs(const struct graph *g, const struct shape *in, struct shape *shapes)
{
	struct sym sy = {0, 0, 0, 0};
	uint32_t i;
	char sig[160];
	int ret;

	for (i = 0; i < g->n_inputs; i++) {
		if (in[i].ndim == 0 && !(g->inputs[i].flags & IO_OPTIONAL))
			return err_set(DPRT_ESHAPE, "%s: required input missing (expected %s)",
				       g->inputs[i].name,
				       fmt_sig(g, &g->inputs[i], sig, sizeof(sig)));
		if (in[i].ndim == 0)
			continue;
		ret = check_input(g, i, &in[i], &sy);
		if (ret)
			return ret;
		shapes[g->inputs[i].tensor] = in[i];
	}
	for (i = 0; i < g->n_inputs; i++) {
		if (in[i].ndim)
			continue;
		ret = fill_omitted(g, i, &sy, &shapes[g->inputs[i].tensor]);
		if (ret)
			return ret;
	}
	return 0;
}

/* ----------------------------------------------------------------- nodes */

/* Context for one node's inference: inputs' shapes and the output. */
struct nctx {
	const struct graph *g;
	uint32_t idx;
	const struct node *nd;
	const struct shape *x[NODE_MAX_IN]; /* NULL for an absent optional input */
	struct shape *y;
};

static int bad_node(const struct nctx *c, int code, const char *why)
{
	const struct node *nd = c->nd;
	char sh[NODE_MAX_IN][128], one[64];
	int k;

	for (k = 0; k < NODE_MAX_IN; k++) {
		sh[k][0] = 0;
		if (k < nd->n_in && c->x[k])
			snprintf(sh[k], sizeof(sh[k]), " %s=%s", c->g->tensors[nd->in[k]].name,
				 fmt_shape(c->x[k], one, sizeof(one)));
	}
	return err_set(code, "%s: node %u (%s): %s; inputs%s%s%s%s", c->g->name, c->idx,
		       op_name((enum op)nd->op), why, sh[0], sh[1], sh[2], sh[3]);
}

static int need_rank(const struct nctx *c, int k, int lo, int hi)
{
	char why[64];

	if (c->x[k]->ndim >= lo && c->x[k]->ndim <= hi)
		return 0;
	snprintf(why, sizeof(why), "input %d has rank %u", k, c->x[k]->ndim);
	return bad_node(c, DPRT_ESHAPE, why);
}

static int need_float(const struct nctx *c, int k)
{
	char why[64];

	if (dt_is_float(c->x[k]->dtype))
		return 0;
	snprintf(why, sizeof(why), "input %d must be a float tensor", k);
	return bad_node(c, DPRT_EDTYPE, why);
}

static int need_i64(const struct nctx *c, int k)
{
	char why[64];

	if (c->x[k]->dtype == DT_I64)
		return 0;
	snprintf(why, sizeof(why), "input %d must be INT64", k);
	return bad_node(c, DPRT_EDTYPE, why);
}

/* Optional per-channel vector input k: absent, or [n]. */
static int need_vec(const struct nctx *c, int k, int64_t n)
{
	char why[80];

	if (k >= c->nd->n_in || !c->x[k])
		return 0;
	if (c->x[k]->ndim == 1 && c->x[k]->dims[0] == n && dt_is_float(c->x[k]->dtype))
		return 0;
	snprintf(why, sizeof(why), "input %d must be [%lld]", k, (long long)n);
	return bad_node(c, DPRT_ESHAPE, why);
}

/* floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1, or <= 0 if it does
 * not fit. */
static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t dil)
{
	int64_t span = in + 2 * p - dil * (k - 1) - 1;

	return span < 0 ? 0 : span / s + 1;
}

static int infer_conv(const struct nctx *c)
{
	const struct shape *x = c->x[0], *w = c->x[1];
	const int64_t *ia = c->nd->ia;
	int64_t grp = ia[6];
	int ret;

	ret = need_rank(c, 0, 4, 4) ?: need_rank(c, 1, 4, 4) ?: need_float(c, 0);
	if (ret)
		return ret;
	if (ia[0] < 1 || ia[1] < 1 || ia[2] < 0 || ia[3] < 0 || ia[4] < 1 || ia[5] < 1 || grp < 1 ||
	    w->dims[0] % grp)
		return bad_node(c, DPRT_ESHAPE, "bad stride, padding, dilation or groups");
	if (x->dims[1] != w->dims[1] * grp)
		return bad_node(c, DPRT_ESHAPE, "input channels do not match the weight");
	ret = need_vec(c, 2, w->dims[0]);
	if (ret)
		return ret;
	c->y->ndim = 4;
	c->y->dims[0] = x->dims[0];
	c->y->dims[1] = w->dims[0];
	c->y->dims[2] = out_size(x->dims[2], w->dims[2], ia[0], ia[2], ia[4]);
	c->y->dims[3] = out_size(x->dims[3], w->dims[3], ia[1], ia[3], ia[5]);
	if (c->y->dims[2] < 1 || c->y->dims[3] < 1)
		return bad_node(c, DPRT_ESHAPE, "kernel larger than the padded input");
	return 0;
}

static int infer_pool(const struct nctx *c)
{
	const struct shape *x = c->x[0];
	const int64_t *ia = c->nd->ia;
	int ret;

	ret = need_rank(c, 0, 4, 4) ?: need_float(c, 0);
	if (ret)
		return ret;
	if (ia[0] < 1 || ia[1] < 1 || ia[2] < 1 || ia[3] < 1 || ia[4] < 0 || ia[5] < 0 ||
	    ia[4] > ia[0] / 2 || ia[5] > ia[1] / 2)
		return bad_node(c, DPRT_ESHAPE, "bad kernel, stride or padding");
	*c->y = *x;
	c->y->dims[2] = out_size(x->dims[2], ia[0], ia[2], ia[4], 1);
	c->y->dims[3] = out_size(x->dims[3], ia[1], ia[3], ia[5], 1);
	if (c->y->dims[2] < 1 || c->y->dims[3] < 1)
		return bad_node(c, DPRT_ESHAPE, "kernel larger than the padded input");
	return 0;
}

static int infer_batchnorm(const struct nctx *c)
{
	int ret;

	ret = need_rank(c, 0, 2, MAX_DIMS) ?: need_float(c, 0);
	if (ret)
		return ret;
	ret = need_vec(c, 1, c->x[0]->dims[1]) ?: need_vec(c, 2, c->x[0]->dims[1]);
	if (ret)
		return ret;
	*c->y = *c->x[0];
	return 0;
}

static int infer_unary(const struct nctx *c)
{
	int ret;

	ret = need_rank(c, 0, 1, MAX_DIMS) ?: need_float(c, 0);
	if (ret)
		return ret;
	*c->y = *c->x[0];
	return 0;
}

static int infer_gap(const struct nctx *c)
{
	int ret;

	ret = need_rank(c, 0, 4, 4) ?: need_float(c, 0);
	if (ret)
		return ret;
	c->y->ndim = 2;
	c->y->dims[0] = c->x[0]->dims[0];
	c->y->dims[1] = c->x[0]->dims[1];
	return 0;
}

static int infer_add(const struct nctx *c)
{
	const struct shape *a = c->x[0], *b = c->x[1];
	int ret;

	ret = need_rank(c, 0, 1, MAX_DIMS) ?: need_float(c, 0) ?: need_float(c, 1);
	if (ret)
		return ret;
	if (a->ndim != b->ndim || memcmp(a->dims, b->dims, sizeof(int64_t) * a->ndim))
		return bad_node(c, DPRT_ESHAPE, "operands differ in shape");
	*c->y = *a;
	return 0;
}

static int infer_linear(const struct nctx *c)
{
	const struct shape *x = c->x[0], *w = c->x[1];
	int ret;

	ret = need_rank(c, 0, 1, MAX_DIMS) ?: need_rank(c, 1, 2, 2) ?: need_float(c, 0);
	if (ret)
		return ret;
	if (x->dims[x->ndim - 1] != w->dims[1])
		return bad_node(c, DPRT_ESHAPE, "last dim of x differs from the weight's K");
	ret = need_vec(c, 2, w->dims[0]);
	if (ret)
		return ret;
	*c->y = *x;
	c->y->dims[x->ndim - 1] = w->dims[0];
	return 0;
}

static int infer_embedding(const struct nctx *c)
{
	const struct shape *ids = c->x[0];
	int ret;

	ret = need_rank(c, 0, 1, MAX_DIMS - 1) ?: need_rank(c, 1, 2, 2) ?: need_i64(c, 0);
	if (ret)
		return ret;
	*c->y = *ids;
	c->y->ndim = (uint8_t)(ids->ndim + 1);
	c->y->dims[ids->ndim] = c->x[1]->dims[1];
	return 0;
}

static int infer_position_ids(const struct nctx *c)
{
	int ret;

	ret = need_rank(c, 0, 2, 2) ?: need_i64(c, 0);
	if (ret)
		return ret;
	if (c->nd->ia[0] != 0 && c->nd->ia[0] != 1)
		return bad_node(c, DPRT_ESHAPE, "unknown position ids mode");
	*c->y = *c->x[0];
	return 0;
}

static int infer_layernorm(const struct nctx *c)
{
	const struct shape *x = c->x[0];
	int ret;

	ret = need_rank(c, 0, 1, MAX_DIMS) ?: need_float(c, 0);
	if (ret)
		return ret;
	ret = need_vec(c, 1, x->dims[x->ndim - 1]) ?: need_vec(c, 2, x->dims[x->ndim - 1]);
	if (ret)
		return ret;
	*c->y = *x;
	return 0;
}

static int infer_attention(const struct nctx *c)
{
	const struct shape *qkv = c->x[0], *mask = c->x[1];
	int64_t heads = c->nd->ia[0];
	int ret;

	ret = need_rank(c, 0, 3, 3) ?: need_float(c, 0);
	if (ret)
		return ret;
	if (heads < 1 || qkv->dims[2] % (3 * heads))
		return bad_node(c, DPRT_ESHAPE, "last dim is not 3 x heads x head size");
	if (mask) {
		ret = need_i64(c, 1);
		if (ret)
			return ret;
		if (mask->ndim != 2 || mask->dims[0] != qkv->dims[0] ||
		    mask->dims[1] != qkv->dims[1])
			return bad_node(c, DPRT_ESHAPE, "mask must be [N,S] of qkv");
	}
	*c->y = *qkv;
	c->y->dims[2] = qkv->dims[2] / 3;
	return 0;
}

static int infer_take_row(const struct nctx *c)
{
	const struct shape *x = c->x[0];
	int ret;

	ret = need_rank(c, 0, 3, 3) ?: need_float(c, 0);
	if (ret)
		return ret;
	if (c->nd->ia[0] < 0 || c->nd->ia[0] >= x->dims[1])
		return bad_node(c, DPRT_ESHAPE, "row index outside the sequence");
	c->y->ndim = 2;
	c->y->dims[0] = x->dims[0];
	c->y->dims[1] = x->dims[2];
	return 0;
}

static int infer_cls_pos(const struct nctx *c)
{
	const struct shape *x = c->x[0], *cls = c->x[1], *pos = c->x[2];
	int64_t h, p;
	int ret;

	ret = need_rank(c, 0, 4, 4) ?: need_float(c, 0);
	if (!ret)
		ret = need_rank(c, 1, 3, 3) ?: need_rank(c, 2, 3, 3);
	if (ret)
		return ret;
	h = x->dims[1];
	p = x->dims[2] * x->dims[3];
	if (cls->dims[0] != 1 || cls->dims[1] != 1 || cls->dims[2] != h)
		return bad_node(c, DPRT_ESHAPE, "class token must be [1,1,H] of x[N,H,GH,GW]");
	if (pos->dims[0] != 1 || pos->dims[1] != 1 + p || pos->dims[2] != h)
		return bad_node(c, DPRT_ESHAPE,
				"position embeddings must be [1,1+GH*GW,H] of x[N,H,GH,GW]");
	c->y->ndim = 3;
	c->y->dims[0] = x->dims[0];
	c->y->dims[1] = 1 + p;
	c->y->dims[2] = h;
	return 0;
}

static int infer_op(const struct nctx *c)
{
	switch (c->nd->op) {
	case OP_CONV2D:
		return infer_conv(c);
	case OP_BATCHNORM:
		return infer_batchnorm(c);
	case OP_RELU:
	case OP_GELU:
	case OP_TANH:
	case OP_SOFTMAX:
		return infer_unary(c);
	case OP_MAXPOOL:
	case OP_AVGPOOL:
		return infer_pool(c);
	case OP_GLOBAL_AVGPOOL:
		return infer_gap(c);
	case OP_ADD:
		return infer_add(c);
	case OP_LINEAR:
		return infer_linear(c);
	case OP_EMBEDDING:
		return infer_embedding(c);
	case OP_POSITION_IDS:
		return infer_position_ids(c);
	case OP_LAYERNORM:
		return infer_layernorm(c);
	case OP_ATTENTION:
		return infer_attention(c);
	case OP_TAKE_ROW:
		return infer_take_row(c);
	case OP_CLS_POS:
		return infer_cls_pos(c);
	default:
		return bad_node(c, DPRT_EUNSUP, "unknown op");
	}
}

static int infer_node(const struct graph *g, uint32_t i, struct shape *shapes)
{
	struct nctx c = {.g = g, .idx = i, .nd = &g->nodes[i]};
	int k, ret;

	for (k = 0; k < c.nd->n_in; k++)
		c.x[k] = c.nd->in[k] == NO_TENSOR ? NULL : &shapes[c.nd->in[k]];
	c.y = &shapes[c.nd->out];
	memset(c.y, 0, sizeof(*c.y));
	ret = infer_op(&c);
	if (ret)
		return ret;
	c.y->dtype = g->tensors[c.nd->out].dtype;
	if (shape_numel(c.y) > NUMEL_LIMIT)
		return bad_node(&c, DPRT_ESHAPE, "output too large");
	return 0;
}

int graph_infer_shapes(const struct graph *g, const struct shape *in, struct shape *shapes)
{
	uint32_t t, i;
	int ret;

	memset(shapes, 0, sizeof(*shapes) * g->n_tensors);
	for (t = 0; t < g->n_tensors; t++) {
		const struct tensor *w = &g->tensors[t];

		if (w->kind != TK_WEIGHT)
			continue;
		shapes[t].dtype = w->dtype;
		shapes[t].ndim = w->ndim;
		memcpy(shapes[t].dims, w->dims, sizeof(w->dims));
	}
	ret = check_inputs(g, in, shapes);
	for (i = 0; i < g->n_nodes && !ret; i++)
		ret = infer_node(g, i, shapes);
	return ret;
}

/* ------------------------------------------------------ activation peak */

static uint64_t act_bytes(const struct shape *s)
{
	size_t el = dt_is_float(s->dtype) ? sizeof(float) : dtype_size(s->dtype);

	return ALIGN_UP((uint64_t)shape_numel(s) * el, 64);
}

/* Scratch bytes of node nd beside its inputs and output. */
static uint64_t node_scratch_bytes(const struct node *nd, const struct shape *shapes)
{
	const struct shape *x = &shapes[nd->in[0]], *y = &shapes[nd->out];
	const struct shape *w;

	if (nd->op == OP_ATTENTION) /* scores of one sequence, every head */
		return (uint64_t)nd->ia[0] * x->dims[1] * x->dims[1] * sizeof(float);
	if (nd->op == OP_CONV2D) { /* im2col of one image */
		w = &shapes[nd->in[1]];
		return (uint64_t)w->dims[1] * w->dims[2] * w->dims[3] * y->dims[2] * y->dims[3] *
		       sizeof(float);
	}
	return 0;
}

/* Whether input k of nd is also an earlier input of it. */
static bool read_before(const struct node *nd, int k)
{
	int j;

	for (j = 0; j < k; j++)
		if (nd->in[j] == nd->in[k])
			return true;
	return false;
}

uint64_t graph_act_peak(const struct graph *g, const struct shape *shapes, uint32_t *last)
{
	uint64_t live = 0, peak = 0, at;
	uint32_t i, k, t;

	memset(last, 0, sizeof(*last) * g->n_tensors);
	for (i = 0; i < g->n_nodes; i++) {
		for (k = 0; k < g->nodes[i].n_in; k++)
			if (g->nodes[i].in[k] != NO_TENSOR)
				last[g->nodes[i].in[k]] = i;
		last[g->nodes[i].out] = i;
	}
	for (i = 0; i < g->n_outputs; i++)
		last[g->outputs[i].tensor] = UINT32_MAX;
	for (i = 0; i < g->n_inputs; i++)
		live += act_bytes(&shapes[g->inputs[i].tensor]);
	peak = live;
	for (i = 0; i < g->n_nodes; i++) {
		const struct node *nd = &g->nodes[i];

		live += act_bytes(&shapes[nd->out]);
		at = live + node_scratch_bytes(nd, shapes);
		peak = MAX(peak, at);
		for (k = 0; k < nd->n_in; k++) {
			t = nd->in[k];
			if (t == NO_TENSOR || g->tensors[t].kind == TK_WEIGHT || last[t] != i)
				continue;
			if (read_before(nd, k))
				continue;
			live -= act_bytes(&shapes[t]);
		}
		if (last[nd->out] == i) /* produced and never read */
			live -= act_bytes(&shapes[nd->out]);
	}
	return peak;
}
