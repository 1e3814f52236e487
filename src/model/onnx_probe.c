/* SPDX-License-Identifier: MIT */
/*
 * Probing a subgraph of an ONNX model with concrete values: the attention
 * masks that exporters build from the INT64 attention mask input and the
 * shapes of activations (Range, comparisons, Where, Expand, ...) are
 * evaluated for a small batch and sequence with a known mask, and their
 * effect on the scores read off. Shapes of values already lowered come
 * from graph_infer_shapes on the graph built so far.
 */
#include "onnx_imp.h"

#include <stdlib.h>
#include <string.h>

#define PROBE_STEPS 2000

/* Prepare p for batch n, sequence s and mask [n*s] (kept by reference). */
int ox_probe_init(struct ox *x, struct probe *p, int64_t n, int64_t s, const int64_t *mask)
{
	struct shape in[16];
	uint32_t i;

	memset(p, 0, sizeof(*p));
	p->x = x;
	p->n = n;
	p->s = s;
	p->mask = mask;
	if (x->g->n_inputs > ARRAY_SIZE(in))
		return -1;
	for (i = 0; i < x->g->n_inputs; i++)
		io_shape(&x->g->inputs[i], n, s, &in[i]);
	p->shapes = calloc(x->g->n_tensors + 1, sizeof(*p->shapes));
	if (!p->shapes)
		return -1;
	if (graph_infer_shapes(x->g, in, p->shapes)) {
		free(p->shapes);
		p->shapes = NULL;
	}
	return 0;
}

void ox_probe_fini(struct probe *p)
{
	uint32_t i;

	for (i = 0; i < p->n_memo; i++)
		cval_free(p->own[i]);
	free(p->shapes);
}

static struct cval *memo(struct probe *p, const char *name, struct cval *c, bool own)
{
	if (!c || p->n_memo == PROBE_MEMO) {
		if (own)
			cval_free(c);
		return NULL;
	}
	p->name[p->n_memo] = name;
	p->val[p->n_memo] = c;
	p->own[p->n_memo++] = own ? c : NULL;
	return c;
}

/* A graph input: the probe mask if it is an INT64 [N, S] one. */
static struct cval *bind_input(struct probe *p, struct oval *v)
{
	struct cval *c;
	int64_t k;

	if (v->tensor == NO_TENSOR || p->x->g->tensors[v->tensor].dtype != DT_I64 || v->rank != 2 ||
	    (p->mask_in && strcmp(p->mask_in, v->name)))
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c)
		c->i = malloc(sizeof(int64_t) * (size_t)(p->n * p->s));
	if (!c || !c->i) {
		free(c);
		return NULL;
	}
	c->is_int = true;
	c->ndim = 2;
	c->dims[0] = p->n;
	c->dims[1] = p->s;
	c->n = p->n * p->s;
	for (k = 0; k < c->n; k++)
		c->i[k] = p->mask[k];
	p->mask_in = v->name;
	p->mask_t = v->tensor;
	return c;
}

/* Shape(name): from the graph built so far, else by evaluating name. */
static struct cval *shape_of(struct probe *p, const onode *n)
{
	struct oval *v = ox_val(p->x, n->input[0]);
	const struct cval *s = NULL;
	struct cval *c;
	int64_t nd, k, st = ox_attr_i(n, "start", 0), en;
	int64_t dims[MAX_DIMS];

	if (!v)
		return NULL;
	if (v->tensor != NO_TENSOR && p->shapes && p->shapes[v->tensor].ndim) {
		nd = p->shapes[v->tensor].ndim;
		memcpy(dims, p->shapes[v->tensor].dims, sizeof(dims));
	} else if ((s = ox_probe(p, n->input[0]))) {
		nd = s->ndim;
		memcpy(dims, s->dims, sizeof(dims));
	} else {
		return NULL;
	}
	en = ox_attr_i(n, "end", nd);
	st = st < 0 ? MAX(st + nd, 0) : MIN(st, nd);
	en = en < 0 ? MAX(en + nd, 0) : MIN(en, nd);
	k = MAX(en - st, 0);
	c = calloc(1, sizeof(*c));
	if (c)
		c->i = malloc(sizeof(int64_t) * (size_t)(k + 1));
	if (!c || !c->i) {
		free(c);
		return NULL;
	}
	c->is_int = true;
	c->ndim = 1;
	c->dims[0] = k;
	c->n = k;
	for (nd = 0; nd < k; nd++)
		c->i[nd] = dims[st + nd];
	return c;
}

/*
 * The value of name for the probe's batch, sequence and mask (owned by the
 * probe), or NULL if it depends on anything else.
 */
struct cval *ox_probe(struct probe *p, const char *name)
{
	struct cval *in[16] = {0}, *c = ox_const(p->x, name);
	struct oval *v = ox_val(p->x, name);
	const onode *n;
	uint32_t i;
	size_t k;

	if (c)
		return c;
	for (i = 0; i < p->n_memo; i++)
		if (!strcmp(p->name[i], name))
			return p->val[i];
	if (!v || ++p->steps > PROBE_STEPS)
		return NULL;
	if (!(n = v->prod))
		return memo(p, name, bind_input(p, v), true);
	if (n->domain && *n->domain)
		return NULL;
	if (!strcmp(n->op_type, "Shape"))
		return memo(p, name, shape_of(p, n), true);
	if (n->n_input > ARRAY_SIZE(in) || n->n_output != 1)
		return NULL;
	for (k = 0; k < n->n_input; k++)
		if (*n->input[k] && !(in[k] = ox_probe(p, n->input[k])))
			return NULL;
	c = ox_fold(p->x, n, in);
	return memo(p, name, c, true);
}

/* Element (b, h, i, j) of c broadcast to rank 4; c has rank <= 4. */
double ox_probe_at4(const struct cval *c, int64_t b, int64_t h, int64_t i, int64_t j)
{
	int64_t idx[4] = {b, h, i, j}, off = 0;
	int d, pad = 4 - c->ndim;

	for (d = 0; d < c->ndim; d++)
		off = off * c->dims[d] + (c->dims[d] == 1 ? 0 : idx[d + pad]);
	return c->is_int ? (double)c->i[off] : (double)c->f[off];
}
