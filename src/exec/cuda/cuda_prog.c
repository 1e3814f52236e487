/* SPDX-License-Identifier: MIT */
/*
 * Shape programs (struct cuda_prog): what one set of input shapes needs on
 * the GPU, made at the first run of those shapes and kept until evicted.
 * Not to be confused with the cold-start plans of src/plan. The activation
 * arena is laid out from tensor lifetimes (greedy by size, first gap that no tensor of an
 * overlapping lifetime uses) and taken from the device pool in one piece;
 * inputs and outputs travel through one pinned staging buffer; cuDNN
 * descriptors and algorithms are set up here, never during a run.
 */
#include "cuda_priv.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ELEM_LIMIT ((int64_t)1 << 31) /* int sizes of kernels and libraries */
#define STAGE_ALIGN 64u
/* Largest unfused-attention scratch worth allocating only to time it */
#define ATTN_SCRATCH_TUNE (256ull << 20)

/* One block of the arena: bytes needed while nodes [first, last] run;
 * -1 is before the first node (input copies), n_nodes after the last
 * (output copies). */
struct item {
	uint64_t size, off;
	int64_t first, last;
	uint64_t *addr; /* where to write the device address */
};

static bool dt_is_float(uint8_t dt)
{
	return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16;
}

static uint64_t tensor_bytes(const struct shape *s)
{
	return (uint64_t)shape_numel(s) * dtype_size((enum dtype)s->dtype);
}

/* ------------------------------------------------------------ arena */

static int cmp_size_desc(const void *a, const void *b)
{
	const struct item *x = *(const struct item *const *)a;
	const struct item *y = *(const struct item *const *)b;

	if (x->size != y->size)
		return x->size < y->size ? 1 : -1;
	return x->first < y->first ? -1 : x->first > y->first;
}

static int cmp_off(const void *a, const void *b)
{
	const struct item *x = *(const struct item *const *)a;
	const struct item *y = *(const struct item *const *)b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* The lowest offset where item k fits between the items placed before it
 * whose lifetimes overlap k's. */
static uint64_t first_gap(struct item *k, struct item **placed, uint32_t n, struct item **busy)
{
	uint64_t off = 0;
	uint32_t i, nb = 0;

	for (i = 0; i < n; i++)
		if (placed[i]->first <= k->last && k->first <= placed[i]->last)
			busy[nb++] = placed[i];
	qsort(busy, nb, sizeof(*busy), cmp_off);
	for (i = 0; i < nb; i++) {
		if (busy[i]->off >= off + k->size)
			break;
		off = MAX(off, busy[i]->off + busy[i]->size);
	}
	return off;
}

/* Lay out items; returns the arena bytes. */
static int layout(struct item *it, uint32_t n, uint64_t *bytes)
{
	struct item **order = calloc(n ? n : 1, sizeof(*order));
	struct item **busy = calloc(n ? n : 1, sizeof(*busy));
	uint64_t end = 0;
	uint32_t i;

	if (!order || !busy) {
		free(order);
		free(busy);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		it[i].size = ALIGN_UP(it[i].size ? it[i].size : 1, DEVPOOL_ALIGN);
		order[i] = &it[i];
	}
	qsort(order, n, sizeof(*order), cmp_size_desc);
	for (i = 0; i < n; i++) {
		order[i]->off = first_gap(order[i], order, i, busy);
		end = MAX(end, order[i]->off + order[i]->size);
	}
	free(order);
	free(busy);
	*bytes = end;
	return 0;
}

/* ----------------------------------------------------- shared arena */

/* The arena grows by half again at least, so that models of a few sizes
 * make it grow a few times, not once per model. */
#define ARENA_ROUND (2ull << 20)

int cuda_arena_reserve(struct cuda_dev *d, uint64_t bytes)
{
	struct cuda_arena *a = &d->act;
	uint64_t want = ALIGN_UP(MAX(bytes, a->bytes + a->bytes / 2), ARENA_ROUND), addr;
	int ret;

	if (bytes <= a->bytes)
		return 0;
	/* nothing may still use the old range: runs end synchronised, but a
	 * program being made has run its tuning on it */
	ret = CU(cuStreamSynchronize(d->stream));
	if (ret)
		return ret;
	devpool_free(d->pool, a->base);
	a->base = a->bytes = 0;
	a->gen++;
	ret = devpool_alloc(d->pool, want, "activation arena", &addr);
	if (ret == -ENOMEM && want > bytes) {
		err_clear();
		want = ALIGN_UP(bytes, DEVPOOL_ALIGN);
		ret = devpool_alloc(d->pool, want, "activation arena", &addr);
	}
	if (ret)
		return ret;
	a->base = addr;
	a->bytes = want;
	d->cnt.arena_grows++;
	return 0;
}

/* A program no longer lays out in the arena; the last one gives it back
 * (unless reserved at device open). */
static void arena_put(struct cuda_dev *d)
{
	struct cuda_arena *a = &d->act;

	if (--a->users || a->keep)
		return;
	devpool_free(d->pool, a->base);
	a->base = a->bytes = 0;
	a->gen++;
}

/* Every activation address of pl (not the weights') from base from to
 * base to. */
static void rebase(struct exec_model *m, struct cuda_prog *pl, uint64_t from, uint64_t to)
{
	const struct graph *g = m->g;
	uint32_t i;

#define MOVE(a) ((a) = (a) ? (a)-from + to : 0)
	for (i = 0; i < g->n_tensors; i++)
		if (g->tensors[i].kind != TK_WEIGHT)
			MOVE(pl->addr[i]);
	for (i = 0; i < g->n_inputs; i++)
		MOVE(pl->raw[i]);
	for (i = 0; i < g->n_nodes; i++)
		MOVE(pl->rt[i].scratch);
	MOVE(pl->err_dev);
#undef MOVE
}

int cuda_prog_refresh(struct exec_model *m, struct cuda_prog *pl)
{
	struct cuda_arena *a = &m->d->act;
	int ret;

	if (pl->act_gen == a->gen)
		return 0;
	ret = cuda_arena_reserve(m->d, pl->arena_bytes);
	if (ret)
		return ret;
	if (a->base != pl->arena) {
		rebase(m, pl, pl->arena, a->base);
		pl->arena = a->base;
		pl->gexec_stale = pl->cold_stale = true;
		m->d->cnt.rebases++;
	}
	pl->act_gen = a->gen;
	return 0;
}

/* ---------------------------------------------------------- cuDNN setup */

#if HAVE_CUDNN
static cudnnDataType_t dnn_dtype(uint8_t dt)
{
	return dt == DT_F16  ? CUDNN_DATA_HALF :
	       dt == DT_BF16 ? CUDNN_DATA_BFLOAT16 :
			       CUDNN_DATA_FLOAT;
}

static int set_4d(cudnnTensorDescriptor_t *td, const struct shape *s, uint8_t dt)
{
	int ret = CUDNN(cudnnCreateTensorDescriptor(td));

	if (ret)
		return ret;
	return CUDNN(cudnnSetTensor4dDescriptor(*td, CUDNN_TENSOR_NCHW, dnn_dtype(dt),
						(int)s->dims[0], (int)s->dims[1], (int)s->dims[2],
						(int)s->dims[3]));
}

static int setup_conv(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct node *nd = &m->g->nodes[i];
	const struct shape *w = &pl->shapes[nd->in[1]];
	struct node_rt *rt = &pl->rt[i];
	uint8_t dt = m->g->wdtype;
	int ret;

	ret = set_4d(&rt->xd, &pl->shapes[nd->in[0]], dt)	  ?:
		      set_4d(&rt->yd, &pl->shapes[nd->out], dt)	  ?:
		      CUDNN(cudnnCreateFilterDescriptor(&rt->wd)) ?:
		      CUDNN(cudnnSetFilter4dDescriptor(rt->wd, dnn_dtype(dt), CUDNN_TENSOR_NCHW, (int)w->dims[0], (int)w->dims[1], (int)w->dims[2], (int)w->dims[3])) ?:
		      CUDNN(cudnnCreateConvolutionDescriptor(&rt->cd));
	if (ret)
		return ret;
	/* fp32 accumulation whatever the data type */
	ret = CUDNN(cudnnSetConvolution2dDescriptor(rt->cd, (int)nd->ia[2], (int)nd->ia[3], (int)nd->ia[0], (int)nd->ia[1], (int)nd->ia[4], (int)nd->ia[5], CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT)) ?:
		      CUDNN(cudnnSetConvolutionGroupCount(rt->cd, (int)nd->ia[6]));
	if (ret)
		return ret;
	ret = cuda_conv_choose(m, i, &pl->shapes[nd->in[0]], rt);
	if (ret)
		return ret;
	rt->scratch_bytes = rt->ws_bytes;
	return 0;
}

static int setup_pool(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct node *nd = &m->g->nodes[i];
	struct node_rt *rt = &pl->rt[i];
	cudnnPoolingMode_t mode = CUDNN_POOLING_MAX;
	int ret;

	if (nd->op == OP_AVGPOOL)
		mode = nd->ia[6] ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING :
				   CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
	ret = set_4d(&rt->xd, &pl->shapes[nd->in[0]], m->g->wdtype)	  ?:
		      set_4d(&rt->yd, &pl->shapes[nd->out], m->g->wdtype) ?:
		      CUDNN(cudnnCreatePoolingDescriptor(&rt->pd));
	if (ret)
		return ret;
	return CUDNN(cudnnSetPooling2dDescriptor(rt->pd, mode, CUDNN_PROPAGATE_NAN, (int)nd->ia[0],
						 (int)nd->ia[1], (int)nd->ia[4], (int)nd->ia[5],
						 (int)nd->ia[2], (int)nd->ia[3]));
}
#else
/* Not reached: check_node refuses these nodes without cuDNN. */
static int setup_conv(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	(void)pl;
	return cuda_dnn_check(m->d, m->g, i);
}
#define setup_pool setup_conv
#endif

/* Attention: fp32 scores and the probabilities in the activation dtype,
 * both [n, heads, s, s]. */
static void setup_attention(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct node *nd = &m->g->nodes[i];
	const struct shape *x = &pl->shapes[nd->in[0]];
	uint64_t cells = (uint64_t)x->dims[0] * (uint64_t)nd->ia[0] * (uint64_t)x->dims[1] *
			 (uint64_t)x->dims[1];
	int64_t h = x->dims[2] / 3, dh = h / nd->ia[0];
	uint64_t scratch = ALIGN_UP(cells * sizeof(float), DEVPOOL_ALIGN) +
			   cells * dtype_size((enum dtype)m->g->wdtype);
	struct node_rt *rt = &pl->rt[i];
	/* The fused kernels: 16-bit activations, head sizes 16, 32 or 64. */
	bool fused = m->use_flash && m->g->wdtype != DT_F32 && h % nd->ia[0] == 0 &&
		     (dh == 16 || dh == 32 || dh == 64);

	rt->flash = 0;
	if (fused && m->attn_force > 0) {
		rt->flash = m->attn_force;
		return;
	}
	/* Timed after the arena is laid out (cuda_attn_tune), the unfused
	 * path among the candidates unless its scratch would be large. */
	rt->attn_tune = fused && !m->attn_force;
	if (!rt->attn_tune || scratch <= ATTN_SCRATCH_TUNE)
		rt->scratch_bytes = scratch;
}

static int check_node(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct graph *g = m->g;
	const struct node *nd = &g->nodes[i];
	const struct shape *x = &pl->shapes[nd->in[0]];

	if (shape_numel(&pl->shapes[nd->out]) >= ELEM_LIMIT || shape_numel(x) >= ELEM_LIMIT)
		return err_set(DPRT_EUNSUP,
			       "%s: node %u (%s): tensors of 2^31 elements or more "
			       "are not supported",
			       g->name, i, op_name((enum op)nd->op));
	if (nd->op == OP_ATTENTION &&
	    (x->dims[0] > 65535 || nd->ia[0] > 65535 ||
	     (uint64_t)x->dims[0] * nd->ia[0] * x->dims[1] * x->dims[1] >= (uint64_t)ELEM_LIMIT))
		return err_set(DPRT_EUNSUP,
			       "%s: node %u (attention): batch %lld x heads %lld "
			       "x seq %lld^2 is too large",
			       g->name, i, (long long)x->dims[0], (long long)nd->ia[0],
			       (long long)x->dims[1]);
	return cuda_dnn_check(m->d, g, i);
}

static int setup_nodes(struct exec_model *m, struct cuda_prog *pl)
{
	uint32_t i;
	int ret;

	for (i = 0; i < m->g->n_nodes; i++) {
		const struct node *nd = &m->g->nodes[i];

		ret = check_node(m, pl, i);
		if (!ret && nd->op == OP_CONV2D)
			ret = setup_conv(m, pl, i);
		else if (!ret && (nd->op == OP_MAXPOOL || nd->op == OP_AVGPOOL))
			ret = setup_pool(m, pl, i);
		else if (!ret && nd->op == OP_ATTENTION)
			setup_attention(m, pl, i);
		else if (!ret && nd->op == OP_LINEAR && m->use_lt)
			ret = cuda_gemm_setup(m, pl, i);
		if (ret)
			return ret;
	}
	return 0;
}

/* --------------------------------------------------------------- memory */

/* Input i is converted on the GPU when it is float and not in the
 * activation dtype. */
static bool needs_convert(const struct graph *g, uint32_t i)
{
	return dt_is_float(g->inputs[i].dtype) && g->inputs[i].dtype != g->wdtype;
}

/* last[t]: the last node that reads tensor t (n_nodes for outputs). */
static void last_uses(const struct graph *g, int64_t *last)
{
	uint32_t i, k;

	for (i = 0; i < g->n_tensors; i++)
		last[i] = -1;
	for (i = 0; i < g->n_nodes; i++) {
		const struct node *nd = &g->nodes[i];

		last[nd->out] = MAX(last[nd->out], (int64_t)i);
		for (k = 0; k < nd->n_in; k++)
			if (nd->in[k] != NO_TENSOR)
				last[nd->in[k]] = i;
	}
	for (i = 0; i < g->n_outputs; i++)
		last[g->outputs[i].tensor] = g->n_nodes;
}

static struct item *add(struct item *it, uint32_t *n, uint64_t size, int64_t first, int64_t last,
			uint64_t *addr)
{
	struct item *x = &it[(*n)++];

	x->size = size;
	x->first = first;
	x->last = last;
	x->addr = addr;
	return x;
}

static uint32_t collect(struct exec_model *m, struct cuda_prog *pl, const int64_t *last,
			struct item *it)
{
	const struct graph *g = m->g;
	uint32_t n = 0, i;

	add(it, &n, sizeof(struct cuda_errrec), -1, g->n_nodes, &pl->err_dev);
	for (i = 0; i < g->n_inputs; i++) {
		uint32_t t = g->inputs[i].tensor;
		struct shape s = pl->shapes[t];

		add(it, &n, tensor_bytes(&s), -1, g->n_nodes, &pl->raw[i]);
		if (!needs_convert(g, i))
			continue;
		s.dtype = g->wdtype;
		add(it, &n, tensor_bytes(&s), -1, last[t], &pl->addr[t]);
	}
	for (i = 0; i < g->n_nodes; i++) {
		const struct node *nd = &g->nodes[i];

		/* a node done by an earlier GEMM's epilogue: written there */
		int64_t first = pl->rt[i].skip ? pl->rt[i].first : (int64_t)i;

		add(it, &n, tensor_bytes(&pl->shapes[nd->out]), first,
		    MAX(last[nd->out], (int64_t)i), &pl->addr[nd->out]);
		if (pl->rt[i].scratch_bytes)
			add(it, &n, pl->rt[i].scratch_bytes, i, i, &pl->rt[i].scratch);
	}
	return n;
}

static int make_arena(struct exec_model *m, struct cuda_prog *pl)
{
	const struct graph *g = m->g;
	uint32_t cap = 1 + 2 * g->n_inputs + 2 * g->n_nodes, n, i, t;
	struct item *it = calloc(cap, sizeof(*it));
	int64_t *last = calloc(g->n_tensors, sizeof(*last));
	int ret = -ENOMEM;

	if (!it || !last)
		goto out_free;
	last_uses(g, last);
	n = collect(m, pl, last, it);
	ret = layout(it, n, &pl->arena_bytes);
	if (!ret)
		ret = cuda_arena_reserve(m->d, pl->arena_bytes);
	if (ret)
		goto out_free;
	if (!pl->act_held)
		m->d->act.users++;
	pl->act_held = true;
	pl->act_gen = m->d->act.gen;
	pl->arena = m->d->act.base;
	for (i = 0; i < n; i++)
		*it[i].addr = pl->arena + it[i].off;
	for (i = 0; i < g->n_inputs; i++)
		if (!needs_convert(g, i))
			pl->addr[g->inputs[i].tensor] = pl->raw[i];
	for (t = 0; t < g->n_tensors; t++)
		if (g->tensors[t].kind == TK_WEIGHT)
			pl->addr[t] = m->waddr[t];
out_free:
	free(it);
	free(last);
	return ret;
}

static void fill_value(const struct io_desc *io, char *dst, int64_t n)
{
	uint16_t h = io->dtype == DT_F16 ? f32_to_f16((float)io->fill) :
					   f32_to_bf16((float)io->fill);
	int64_t i;

	for (i = 0; i < n; i++) {
		switch (io->dtype) {
		case DT_F32:
			((float *)(void *)dst)[i] = (float)io->fill;
			break;
		case DT_F16:
		case DT_BF16:
			((uint16_t *)(void *)dst)[i] = h;
			break;
		case DT_I64:
			((int64_t *)(void *)dst)[i] = (int64_t)io->fill;
			break;
		case DT_I32:
			((int32_t *)(void *)dst)[i] = (int32_t)io->fill;
			break;
		default:
			dst[i] = (char)(int)io->fill;
			break;
		}
	}
}

/* Pinned staging: every input, every output, the error record. Omitted
 * optional inputs are filled here once. */
static int make_stage(struct exec_model *m, struct cuda_prog *pl)
{
	const struct graph *g = m->g;
	uint64_t off = 0;
	uint32_t i;
	int ret;

	for (i = 0; i < g->n_inputs; i++) {
		pl->in_off[i] = off;
		off = ALIGN_UP(off + tensor_bytes(&pl->shapes[g->inputs[i].tensor]), STAGE_ALIGN);
	}
	for (i = 0; i < g->n_outputs; i++) {
		pl->out_off[i] = off;
		off = ALIGN_UP(off + tensor_bytes(&pl->shapes[g->outputs[i].tensor]), STAGE_ALIGN);
	}
	pl->err_off = off;
	pl->stage_bytes = off + sizeof(struct cuda_errrec);
	ret = CU(cuMemHostAlloc((void **)&pl->stage, pl->stage_bytes, 0));
	if (ret)
		return ret;
	m->d->cnt.stages++;
	for (i = 0; i < g->n_inputs; i++)
		if (!pl->key[i].ndim)
			fill_value(&g->inputs[i], pl->stage + pl->in_off[i],
				   shape_numel(&pl->shapes[g->inputs[i].tensor]));
	return 0;
}

/* Choose the attention paths by timing; lay the arena out again without
 * the scratch of the nodes that take a fused kernel. */
static int tune_attention(struct exec_model *m, struct cuda_prog *pl)
{
	bool relayout = false;
	int ret;

	ret = cuda_attn_tune(m, pl, &relayout);
	if (ret || !relayout)
		return ret;
	return make_arena(m, pl);
}

/* ------------------------------------------------------------ lifecycle */

static int alloc_arrays(const struct graph *g, struct cuda_prog *pl)
{
	pl->key = calloc(g->n_inputs, sizeof(*pl->key));
	pl->shapes = calloc(g->n_tensors, sizeof(*pl->shapes));
	pl->addr = calloc(g->n_tensors, sizeof(*pl->addr));
	pl->raw = calloc(g->n_inputs, sizeof(*pl->raw));
	pl->in_off = calloc(g->n_inputs, sizeof(*pl->in_off));
	pl->out_off = calloc(g->n_outputs, sizeof(*pl->out_off));
	pl->rt = calloc(g->n_nodes, sizeof(*pl->rt));
	if (!pl->key || !pl->shapes || !pl->addr || !pl->raw || !pl->in_off || !pl->out_off ||
	    !pl->rt)
		return -ENOMEM;
	return 0;
}

int cuda_prog_create(struct exec_model *m, struct cuda_prog **out)
{
	const struct graph *g = m->g;
	struct cuda_prog *pl = calloc(1, sizeof(*pl));
	char why[512];
	int ret;

	if (!pl)
		return -ENOMEM;
	m->d->cnt.progs++;
	ret = alloc_arrays(g, pl);
	if (ret)
		goto out_destroy;
	memcpy(pl->key, m->given, sizeof(*pl->key) * g->n_inputs);
	ret = graph_infer_shapes(g, m->given, pl->shapes);
	if (!ret)
		ret = setup_nodes(m, pl);
	if (!ret)
		ret = make_arena(m, pl);
	if (!ret)
		ret = tune_attention(m, pl);
	if (!ret)
		ret = cuda_gemm_tune(m, pl);
	if (!ret)
		ret = make_stage(m, pl);
	if (ret)
		goto out_destroy;
	*out = pl;
	return 0;
out_destroy:
	snprintf(why, sizeof(why), "%s", err_msg(ret));
	cuda_prog_destroy(m, pl);
	return err_set(ret, "%s", why);
}

static void destroy_rt(struct node_rt *rt)
{
#if HAVE_CUDNN
	if (rt->xd)
		CUDNN(cudnnDestroyTensorDescriptor(rt->xd));
	if (rt->yd)
		CUDNN(cudnnDestroyTensorDescriptor(rt->yd));
	if (rt->wd)
		CUDNN(cudnnDestroyFilterDescriptor(rt->wd));
	if (rt->cd)
		CUDNN(cudnnDestroyConvolutionDescriptor(rt->cd));
	if (rt->pd)
		CUDNN(cudnnDestroyPoolingDescriptor(rt->pd));
#endif
	cuda_gemm_release(rt);
}

void cuda_prog_destroy(struct exec_model *m, struct cuda_prog *pl)
{
	uint32_t i;

	if (!pl)
		return;
	if (pl->gexec)
		CU(cuGraphExecDestroy(pl->gexec));
	if (pl->cold_gexec)
		CU(cuGraphExecDestroy(pl->cold_gexec));
	for (i = 0; pl->rt && i < m->g->n_nodes; i++)
		destroy_rt(&pl->rt[i]);
	if (pl->act_held)
		arena_put(m->d);
	if (pl->stage)
		CU(cuMemFreeHost(pl->stage));
	free(pl->key);
	free(pl->shapes);
	free(pl->addr);
	free(pl->raw);
	free(pl->in_off);
	free(pl->out_off);
	free(pl->rt);
	free(pl);
}
