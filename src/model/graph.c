/* SPDX-License-Identifier: MIT */
/* Graph IR: building, layout of the weight region, validation, shapes. */
#include "model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	size_t size;
} dtypes[DT_COUNT] = {
	[DT_NONE] = {"NONE", 0}, [DT_F32] = {"FP32", 4},  [DT_F16] = {"FP16", 2},
	[DT_BF16] = {"BF16", 2}, [DT_I64] = {"INT64", 8}, [DT_I32] = {"INT32", 4},
	[DT_U8] = {"UINT8", 1},	 [DT_BOOL] = {"BOOL", 1},
};

size_t dtype_size(enum dtype dt)
{
	return (unsigned)dt < DT_COUNT ? dtypes[dt].size : 0;
}

const char *dtype_name(enum dtype dt)
{
	return (unsigned)dt < DT_COUNT ? dtypes[dt].name : "NONE";
}

enum dtype dtype_parse(const char *s)
{
	int i;

	for (i = 1; i < DT_COUNT; i++)
		if (!strcasecmp(s, dtypes[i].name))
			return (enum dtype)i;
	if (!strcasecmp(s, "float32") || !strcasecmp(s, "f32"))
		return DT_F32;
	if (!strcasecmp(s, "float16") || !strcasecmp(s, "f16") || !strcasecmp(s, "half"))
		return DT_F16;
	if (!strcasecmp(s, "bfloat16"))
		return DT_BF16;
	return DT_NONE;
}

static const char *const op_names[OP_COUNT] = {
	[OP_NONE] = "none",
	[OP_CONV2D] = "conv2d",
	[OP_BATCHNORM] = "batchnorm",
	[OP_RELU] = "relu",
	[OP_MAXPOOL] = "maxpool",
	[OP_AVGPOOL] = "avgpool",
	[OP_GLOBAL_AVGPOOL] = "global_avgpool",
	[OP_ADD] = "add",
	[OP_LINEAR] = "linear",
	[OP_EMBEDDING] = "embedding",
	[OP_POSITION_IDS] = "position_ids",
	[OP_LAYERNORM] = "layernorm",
	[OP_GELU] = "gelu",
	[OP_TANH] = "tanh",
	[OP_SOFTMAX] = "softmax",
	[OP_ATTENTION] = "attention",
	[OP_TAKE_ROW] = "take_row",
	[OP_CLS_POS] = "cls_pos",
};

const char *op_name(enum op op)
{
	return (unsigned)op < OP_COUNT && op_names[op] ? op_names[op] : "?";
}

bool op_has_weights(enum op op)
{
	switch (op) {
	case OP_CONV2D:
	case OP_BATCHNORM:
	case OP_LINEAR:
	case OP_EMBEDDING:
	case OP_LAYERNORM:
	case OP_CLS_POS:
		return true;
	default:
		return false;
	}
}

/* Number of inputs each op takes: [min, max]. */
static const uint8_t op_arity[OP_COUNT][2] = {
	[OP_CONV2D] = {2, 3},	    [OP_BATCHNORM] = {3, 3}, [OP_RELU] = {1, 1},
	[OP_MAXPOOL] = {1, 1},	    [OP_AVGPOOL] = {1, 1},   [OP_GLOBAL_AVGPOOL] = {1, 1},
	[OP_ADD] = {2, 2},	    [OP_LINEAR] = {2, 3},    [OP_EMBEDDING] = {2, 2},
	[OP_POSITION_IDS] = {1, 1}, [OP_LAYERNORM] = {3, 3}, [OP_GELU] = {1, 1},
	[OP_TANH] = {1, 1},	    [OP_SOFTMAX] = {1, 1},   [OP_ATTENTION] = {1, 2},
	[OP_TAKE_ROW] = {1, 1},	    [OP_CLS_POS] = {3, 3},
};

/* ---------------------------------------------------------------- build */

static void *grow(void *p, uint32_t *cap, uint32_t need, size_t elem)
{
	uint32_t n = *cap ? *cap : 16;

	if (need <= *cap)
		return p;
	while (n < need)
		n *= 2;
	p = realloc(p, (size_t)n * elem);
	if (!p) {
		fprintf(stderr, "dprt: out of memory building a graph\n");
		abort();
	}
	memset((char *)p + (size_t)*cap * elem, 0, (size_t)(n - *cap) * elem);
	*cap = n;
	return p;
}

struct graph *graph_create(const char *name, const char *arch, enum dtype wdtype)
{
	struct graph *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	snprintf(g->name, sizeof(g->name), "%s", name);
	snprintf(g->arch, sizeof(g->arch), "%s", arch);
	g->wdtype = (uint8_t)wdtype;
	g->open_layer = NO_TENSOR;
	return g;
}

void graph_destroy(struct graph *g)
{
	if (!g)
		return;
	free(g->tensors);
	free(g->nodes);
	free(g->layers);
	free(g->inputs);
	free(g->outputs);
	free(g);
}

static void builder_bug(const struct graph *g, const char *what)
{
	fprintf(stderr, "dprt: building graph %s: %s\n", g->name, what);
	abort();
}

static uint32_t new_tensor(struct graph *g, const char *name, enum tensor_kind kind, enum dtype dt)
{
	struct tensor *t;

	g->tensors = grow(g->tensors, &g->cap_tensors, g->n_tensors + 1, sizeof(*t));
	t = &g->tensors[g->n_tensors];
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->kind = (uint8_t)kind;
	t->dtype = (uint8_t)dt;
	t->layer = NO_TENSOR;
	return g->n_tensors++;
}

uint32_t graph_input(struct graph *g, const char *name, enum dtype dt, int ndim,
		     const int64_t *dims, unsigned flags, double fill)
{
	uint32_t id;
	struct io_desc *io;

	if (ndim < 1 || ndim > MAX_DIMS)
		builder_bug(g, "input rank out of range");
	id = new_tensor(g, name, TK_INPUT, dt);
	g->inputs = grow(g->inputs, &g->cap_io_in, g->n_inputs + 1, sizeof(*io));
	io = &g->inputs[g->n_inputs++];
	snprintf(io->name, sizeof(io->name), "%s", name);
	io->tensor = id;
	io->dtype = (uint8_t)dt;
	io->ndim = (uint8_t)ndim;
	io->flags = (uint8_t)flags;
	io->fill = fill;
	memcpy(io->dims, dims, sizeof(int64_t) * (size_t)ndim);
	return id;
}

void graph_layer_begin(struct graph *g, const char *name)
{
	struct layer *l;

	g->layers = grow(g->layers, &g->cap_layers, g->n_layers + 1, sizeof(*l));
	l = &g->layers[g->n_layers];
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->node = NO_TENSOR;
	g->open_layer = g->n_layers++;
}

uint32_t graph_weight(struct graph *g, const char *name, int ndim, const int64_t *dims)
{
	struct tensor *t;
	uint64_t n = 1;
	uint32_t id;
	int i;

	if (g->open_layer == NO_TENSOR)
		builder_bug(g, "weight added outside a layer");
	if (ndim < 0 || ndim > MAX_DIMS)
		builder_bug(g, "weight rank out of range");
	id = new_tensor(g, name, TK_WEIGHT, (enum dtype)g->wdtype);
	t = &g->tensors[id];
	t->ndim = (uint8_t)ndim;
	for (i = 0; i < ndim; i++) {
		t->dims[i] = dims[i];
		n *= (uint64_t)dims[i];
	}
	t->layer = g->open_layer;
	t->nbytes = n * dtype_size((enum dtype)g->wdtype);
	return id;
}

uint32_t graph_node(struct graph *g, enum op op, const uint32_t *in, int n_in, const int64_t *ia,
		    int n_ia, const float *fa, int n_fa)
{
	struct node *nd;
	enum dtype odt = (enum dtype)g->wdtype;
	char name[NAME_LEN];
	uint32_t id;

	if (n_in < 0 || n_in > NODE_MAX_IN || n_ia < 0 || n_ia > NODE_MAX_IA || n_fa < 0 ||
	    n_fa > NODE_MAX_FA)
		builder_bug(g, "node has too many inputs or attributes");
	if (op == OP_POSITION_IDS)
		odt = DT_I64;
	snprintf(name, sizeof(name), "%s.%u", op_name(op), g->n_nodes);
	id = new_tensor(g, name, TK_ACT, odt);
	g->nodes = grow(g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof(*nd));
	nd = &g->nodes[g->n_nodes];
	nd->op = (uint16_t)op;
	nd->n_in = (uint8_t)n_in;
	memcpy(nd->in, in, sizeof(uint32_t) * (size_t)n_in);
	nd->out = id;
	if (n_ia)
		memcpy(nd->ia, ia, sizeof(int64_t) * (size_t)n_ia);
	if (n_fa)
		memcpy(nd->fa, fa, sizeof(float) * (size_t)n_fa);
	nd->layer = NO_TENSOR;
	if (g->open_layer != NO_TENSOR) {
		nd->layer = g->open_layer;
		g->layers[g->open_layer].node = g->n_nodes;
		g->open_layer = NO_TENSOR;
	}
	g->n_nodes++;
	return id;
}

void graph_output(struct graph *g, const char *name, uint32_t tensor)
{
	struct io_desc *io;

	if (tensor >= g->n_tensors)
		builder_bug(g, "output names a tensor that does not exist");
	g->outputs = grow(g->outputs, &g->cap_io_out, g->n_outputs + 1, sizeof(*io));
	io = &g->outputs[g->n_outputs++];
	snprintf(io->name, sizeof(io->name), "%s", name);
	io->tensor = tensor;
	io->dtype = g->tensors[tensor].dtype;
}

int64_t graph_default_seq(const struct graph *g)
{
	return g->def_seq ? g->def_seq : g->max_seq ? MIN(g->max_seq, 128) : 128;
}

uint64_t io_shape(const struct io_desc *io, int64_t batch, int64_t seq, struct shape *out)
{
	int d;

	out->dtype = io->dtype;
	out->ndim = io->ndim;
	for (d = 0; d < io->ndim; d++)
		out->dims[d] = io->dims[d] == DIM_BATCH ? batch :
			       io->dims[d] == DIM_SEQ	? seq :
							  io->dims[d];
	return (uint64_t)shape_numel(out) * dtype_size((enum dtype)io->dtype);
}

int64_t graph_id_bound(const struct graph *g, uint32_t t)
{
	int64_t bound = 0, v;
	uint32_t i;

	for (i = 0; i < g->n_nodes; i++) {
		const struct node *nd = &g->nodes[i];

		if (nd->op != OP_EMBEDDING || nd->in[0] != t)
			continue;
		v = g->tensors[nd->in[1]].dims[0];
		if (!bound || v < bound)
			bound = v;
	}
	return bound;
}

int graph_finalize(struct graph *g)
{
	uint64_t off = 0;
	uint32_t l, t;

	if (!dtype_size((enum dtype)g->wdtype))
		return graph_validate(g, g->name);
	g->n_params = 0;
	for (l = 0; l < g->n_layers; l++) {
		struct layer *ly = &g->layers[l];
		uint64_t used = 0;

		ly->offset = off;
		ly->params = 0;
		for (t = 0; t < g->n_tensors; t++) {
			struct tensor *w = &g->tensors[t];

			if (w->kind != TK_WEIGHT || w->layer != l)
				continue;
			used = ALIGN_UP(used, TENSOR_ALIGN);
			w->offset = off + used;
			used += w->nbytes;
			ly->params += w->nbytes / dtype_size((enum dtype)w->dtype);
		}
		ly->nbytes = used;
		g->n_params += ly->params;
		off += ALIGN_UP(used, LAYER_ALIGN);
	}
	g->weights_size = off;
	for (t = 0; t < g->n_outputs; t++)
		g->outputs[t].dtype = g->tensors[g->outputs[t].tensor].dtype;
	return graph_validate(g, g->name);
}

/* ------------------------------------------------------------- validate */

static int bad(const char *what, const char *fmt, uint32_t a, uint32_t b)
{
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, a, b);
	return err_set(DPRT_EBADPKG, "%s: invalid graph: %s", what, msg);
}

static int validate_node(const struct graph *g, uint32_t i, char *defined, const char *what)
{
	const struct node *nd = &g->nodes[i];
	unsigned k;

	if (nd->op == OP_NONE || nd->op >= OP_COUNT)
		return bad(what, "node %u has unknown op %u", i, nd->op);
	if (nd->n_in < op_arity[nd->op][0] || nd->n_in > op_arity[nd->op][1])
		return bad(what, "node %u has %u inputs", i, nd->n_in);
	for (k = 0; k < nd->n_in; k++) {
		uint32_t t = nd->in[k];

		if (t == NO_TENSOR && k >= op_arity[nd->op][0])
			continue;
		if (t >= g->n_tensors || !defined[t])
			return bad(what, "node %u reads tensor %u before it exists", i, t);
	}
	if (nd->out >= g->n_tensors || g->tensors[nd->out].kind != TK_ACT || defined[nd->out])
		return bad(what, "node %u writes an invalid tensor %u", i, nd->out);
	if ((nd->layer != NO_TENSOR) != op_has_weights((enum op)nd->op))
		return bad(what, "node %u: layer %u does not fit its op", i, nd->layer);
	if (nd->layer != NO_TENSOR && (nd->layer >= g->n_layers || g->layers[nd->layer].node != i))
		return bad(what, "node %u claims layer %u", i, nd->layer);
	defined[nd->out] = 1;
	return 0;
}

static int validate_weights(const struct graph *g, const char *what)
{
	uint64_t prev_end = 0;
	uint32_t l, t;

	for (l = 0; l < g->n_layers; l++) {
		const struct layer *ly = &g->layers[l];

		if (ly->offset % LAYER_ALIGN || ly->offset < prev_end ||
		    ly->nbytes > g->weights_size || ly->offset > g->weights_size - ly->nbytes)
			return bad(what, "layer %u has a bad byte range%.0u", l, 0);
		if (ly->node >= g->n_nodes || g->nodes[ly->node].layer != l)
			return bad(what, "layer %u is not owned by its node %u", l, ly->node);
		if (l && ly->node <= g->layers[l - 1].node)
			return bad(what, "layer %u is out of node order (node %u)", l, ly->node);
		prev_end = ly->offset + ly->nbytes;
	}
	for (t = 0; t < g->n_tensors; t++) {
		const struct tensor *w = &g->tensors[t];
		const struct layer *ly;
		uint64_t n = 1;
		int d;

		if (w->kind != TK_WEIGHT)
			continue;
		if (w->layer >= g->n_layers || w->ndim > MAX_DIMS || w->dtype != g->wdtype)
			return bad(what, "weight %u is malformed%.0u", t, 0);
		for (d = 0; d < w->ndim; d++) {
			if (w->dims[d] <= 0 || (uint64_t)w->dims[d] > (1ull << 40) / n)
				return bad(what, "weight %u has a bad dim %u", t, (uint32_t)d);
			n *= (uint64_t)w->dims[d];
		}
		ly = &g->layers[w->layer];
		if (w->offset % TENSOR_ALIGN)
			return bad(what, "weight %u is not %u-byte aligned", t, TENSOR_ALIGN);
		if (w->nbytes != n * dtype_size((enum dtype)w->dtype) || w->offset < ly->offset ||
		    w->nbytes > ly->nbytes || w->offset - ly->offset > ly->nbytes - w->nbytes)
			return bad(what, "weight %u lies outside layer %u", t, w->layer);
	}
	return 0;
}

static int validate_io(const struct graph *g, const char *what)
{
	uint32_t i;
	int d;

	if (!g->n_inputs || !g->n_outputs)
		return bad(what, "no inputs or outputs%.0u%.0u", 0, 0);
	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];

		if (io->tensor >= g->n_tensors || g->tensors[io->tensor].kind != TK_INPUT ||
		    io->ndim == 0 || io->ndim > MAX_DIMS || !dtype_size((enum dtype)io->dtype) ||
		    io->dtype != g->tensors[io->tensor].dtype)
			return bad(what, "input %u is malformed%.0u", i, 0);
		for (d = 0; d < io->ndim; d++)
			if (io->dims[d] == 0 || io->dims[d] < DIM_SEQ)
				return bad(what, "input %u has a bad dim %u", i, (uint32_t)d);
	}
	for (i = 0; i < g->n_outputs; i++)
		if (g->outputs[i].tensor >= g->n_tensors ||
		    g->tensors[g->outputs[i].tensor].kind != TK_ACT ||
		    g->outputs[i].dtype != g->tensors[g->outputs[i].tensor].dtype)
			return bad(what, "output %u is malformed%.0u", i, 0);
	return 0;
}

int graph_validate(const struct graph *g, const char *what)
{
	char *defined;
	uint32_t i;
	int ret;

	if (g->wdtype != DT_F32 && g->wdtype != DT_F16 && g->wdtype != DT_BF16)
		return bad(what, "weight dtype %u is not FP32, FP16 or BF16%.0u", g->wdtype, 0);
	if (g->n_tensors > (1u << 24) || g->n_nodes > (1u << 24))
		return bad(what, "too many tensors (%u) or nodes (%u)", g->n_tensors, g->n_nodes);
	ret = validate_io(g, what);
	if (!ret)
		ret = validate_weights(g, what);
	if (ret)
		return ret;
	defined = calloc(g->n_tensors ? g->n_tensors : 1, 1);
	if (!defined)
		return -ENOMEM;
	for (i = 0; i < g->n_tensors; i++)
		defined[i] = g->tensors[i].kind == TK_WEIGHT || g->tensors[i].kind == TK_INPUT;
	for (i = 0; i < g->n_nodes && !ret; i++)
		ret = validate_node(g, i, defined, what);
	for (i = 0; i < g->n_outputs && !ret; i++)
		if (!defined[g->outputs[i].tensor])
			ret = bad(what, "output %u (tensor %u) is never computed", i,
				  g->outputs[i].tensor);
	free(defined);
	return ret;
}
