/* SPDX-License-Identifier: MIT */
#include "progs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A package file (its own dtype and weights) instead of a zoo model. */
static int pkg_model(const char *path, struct graph **g, struct hoststore **hs)
{
	struct pkg *p;
	int ret;

	*g = NULL;
	ret = pkg_open(path, &p);
	if (ret)
		return ret;
	ret = hoststore_create(pkg_graph(p)->weights_size, hs);
	if (!ret)
		ret = pkg_read_weights(p, hoststore_base(*hs));
	if (!ret)
		*g = pkg_take_graph(p);
	pkg_close(p);
	if (ret) {
		hoststore_destroy(*hs);
		*hs = NULL;
	}
	return ret;
}

int prog_model(const char *name, enum dtype dt, uint64_t seed, struct graph **g,
	       struct hoststore **hs)
{
	struct weight_source *ws;
	size_t len = strlen(name);
	uint32_t t;
	int ret;

	*hs = NULL;
	if (len > 4 && !strcmp(name + len - 4, ".dpk"))
		return pkg_model(name, g, hs);
	ret = zoo_build(name, dt, g);
	if (ret)
		return ret;
	ws = wsrc_random(seed);
	if (!ws)
		return -ENOMEM;
	ret = hoststore_create((*g)->weights_size, hs);
	if (!ret)
		memset(hoststore_base(*hs), 0, (*g)->weights_size);
	for (t = 0; !ret && t < (*g)->n_tensors; t++)
		if ((*g)->tensors[t].kind == TK_WEIGHT)
			ret = wsrc_fill(ws, *g, t,
					(char *)hoststore_base(*hs) + (*g)->tensors[t].offset);
	wsrc_destroy(ws);
	return ret;
}

static void fill(const struct graph *g, const struct io_desc *io, struct tview *tv, int64_t pad,
		 struct rng *r)
{
	int64_t n = shape_numel(&tv->shape), s = tv->shape.dims[tv->shape.ndim - 1], i;
	int64_t bound = graph_id_bound(g, io->tensor);
	bool mask = strstr(io->name, "mask") != NULL;

	if (!bound)
		bound = 2;
	for (i = 0; i < n; i++) {
		float v = rng_unit(r);

		if (io->dtype == DT_I64 && mask)
			((int64_t *)tv->data)[i] = i >= s && i % s >= s - pad ? 0 : 1;
		else if (io->dtype == DT_I64)
			((int64_t *)tv->data)[i] = (int64_t)(rng_next(r) % (uint64_t)bound);
		else if (io->dtype == DT_F32)
			((float *)tv->data)[i] = v;
		else if (io->dtype == DT_F16)
			((uint16_t *)tv->data)[i] = f32_to_f16(v);
		else
			((uint16_t *)tv->data)[i] = f32_to_bf16(v);
	}
}

int prog_inputs(const struct graph *g, int64_t batch, int64_t seq, int64_t pad, bool omit_optional,
		uint64_t seed, struct tview *in)
{
	struct rng r;
	uint32_t i;

	if (!seq)
		seq = g->def_seq ? g->def_seq : 128;
	rng_seed(&r, seed);
	memset(in, 0, sizeof(*in) * g->n_inputs);
	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];
		struct tview *tv = &in[i];

		if (omit_optional && (io->flags & IO_OPTIONAL))
			continue;
		tv->nbytes = io_shape(io, batch, seq, &tv->shape);
		tv->data = malloc(tv->nbytes);
		if (!tv->data)
			return -ENOMEM;
		fill(g, io, tv, pad, &r);
	}
	return 0;
}

void prog_free_inputs(const struct graph *g, struct tview *in)
{
	uint32_t i;

	for (i = 0; i < g->n_inputs; i++)
		free(in[i].data);
}

static double node_flops(const struct graph *g, const struct node *nd, const struct shape *sh)
{
	const struct shape *x = &sh[nd->in[0]], *y = &sh[nd->out];
	const struct tensor *w = nd->n_in > 1 ? &g->tensors[nd->in[1]] : NULL;

	switch (nd->op) {
	case OP_LINEAR:
		return 2.0 * (double)shape_numel(y) * (double)w->dims[1];
	case OP_ATTENTION: /* q.k^T and p.v over every (query, key) pair */
		return 4.0 * (double)x->dims[0] * (double)x->dims[1] * (double)x->dims[1] *
		       (double)(x->dims[2] / 3);
	case OP_CONV2D:
		return 2.0 * (double)shape_numel(y) * (double)w->dims[1] * (double)w->dims[2] *
		       (double)w->dims[3];
	default:
		return 0;
	}
}

double prog_flops(const struct graph *g, const struct tview *in)
{
	struct shape *given = calloc(g->n_inputs, sizeof(*given));
	struct shape *sh = calloc(g->n_tensors, sizeof(*sh));
	double f = 0;
	uint32_t i;

	if (!given || !sh)
		goto out;
	for (i = 0; i < g->n_inputs; i++)
		given[i] = in[i].shape;
	if (graph_infer_shapes(g, given, sh)) {
		err_clear();
		goto out;
	}
	for (i = 0; i < g->n_nodes; i++)
		f += node_flops(g, &g->nodes[i], sh);
out:
	free(given);
	free(sh);
	return f;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void prog_stats(double *t, int n, struct prog_stats *s)
{
	double sum = 0;
	int i;

	memset(s, 0, sizeof(*s));
	if (n < 1)
		return;
	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	for (i = 0; i < n; i++)
		sum += t[i];
	s->mean = sum / n;
	s->p50 = t[n / 2];
	s->p99 = t[MIN(n - 1, (int)((double)n * 0.99))];
	s->min = t[0];
}

long prog_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = strtol(line + 6, NULL, 10);
	fclose(f);
	return kib;
}
