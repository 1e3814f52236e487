/* SPDX-License-Identifier: MIT */
/*
 * net/ep_models: health, server metadata, model readiness and model
 * metadata, and the model lookup the inference endpoint shares.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"

#define MAX_VERSIONS 64u

/* "" -> 0; a positive decimal -> it; anything else -> -EINVAL. */
static int parse_version(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	*out = 0;
	if (!*s)
		return 0;
	for (; *s >= '0' && *s <= '9' && v <= UINT32_MAX; s++)
		v = v * 10 + (uint64_t)(*s - '0');
	if (*s || !v || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* ------------------------------------------------------------ endpoints */

int ep_lookup(struct conn *c, struct repo_entry **e)
{
	uint32_t v;

	if (parse_version(c->tgt.version, &v))
		return err_set(DPRT_ENOMODEL, "model '%s' has no version '%s'", c->tgt.model,
			       c->tgt.version);
	return repo_lookup(sched_repo(c->srv->s), c->tgt.model, v, e);
}

/* The entry exists but does not serve: 503 with its state and reason. */
void conn_not_ready(struct conn *c, struct repo_entry *e, const char *what)
{
	char why[SCHED_MSG_LEN], msg[SCHED_MSG_LEN + NAME_LEN + 96];

	repo_entry_reason(e, why, sizeof(why));
	snprintf(msg, sizeof(msg), "model '%s' version %u is %s (%s%s%s)", repo_entry_name(e),
		 repo_entry_version(e), what, repo_state_name(repo_entry_state(e)),
		 why[0] ? ": " : "", why);
	conn_error(c, 503, msg, false);
}

void ep_health(struct conn *c, bool ready)
{
	if (ready && c->srv->stopping) {
		conn_error(c, 503, "the server is shutting down", false);
		return;
	}
	conn_reply(c, 200, NULL, NULL, 0);
}

static int enc_server_meta(char *buf, size_t cap, const void *arg)
{
	return kserve_encode_server_meta(buf, cap, arg);
}

void ep_server_meta(struct conn *c)
{
	int n = conn_body(c, enc_server_meta, c->srv->o.version);

	if (n < 0)
		conn_fail(c, n, "cannot encode the server metadata");
	else
		conn_reply(c, 200, "application/json", NULL, (size_t)n);
}

void ep_model_ready(struct conn *c)
{
	struct repo_entry *e;
	int ret = ep_lookup(c, &e);

	if (ret)
		conn_fail(c, ret, err_msg(ret));
	else if (repo_entry_state(e) != REPO_READY)
		conn_not_ready(c, e, "not ready");
	else
		conn_reply(c, 200, NULL, NULL, 0);
}

/* Fill the probe shapes of g's inputs for one batch and seq value. */
static void probe_inputs(const struct graph *g, int64_t batch, int64_t seq, struct shape *in)
{
	uint32_t i;
	int d;

	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];

		in[i].dtype = io->dtype;
		in[i].ndim = io->ndim;
		for (d = 0; d < io->ndim; d++)
			in[i].dims[d] = io->dims[d] == DIM_BATCH ? batch :
					io->dims[d] == DIM_SEQ	 ? seq :
								   io->dims[d];
	}
}

/*
 * Output dims for the metadata: infer the shapes at two probe points that
 * differ in batch and seq; a dim that differs between them follows from
 * batch or seq and is written as -1. 0 or an error (outputs left ndim 0).
 */
int meta_output_dims(const struct graph *g, struct io_desc *outs)
{
	int64_t b2 = g->max_batch && g->max_batch < 3 ? g->max_batch : 3;
	int64_t s2 = g->max_seq >= 7 ? 7 : g->max_seq, s1 = s2 > 5 ? 5 : MAX(s2 - 1, 1);
	struct shape *in = calloc(2 * (size_t)g->n_inputs + 1, sizeof(*in));
	struct shape *sh = calloc(2 * (size_t)g->n_tensors + 1, sizeof(*sh));
	uint32_t i;
	int d, ret = -ENOMEM;

	if (!in || !sh)
		goto out_free;
	probe_inputs(g, b2 > 1 ? b2 - 1 : 1, s1, in);
	probe_inputs(g, b2, s2, in + g->n_inputs);
	ret = graph_infer_shapes(g, in, sh);
	if (!ret)
		ret = graph_infer_shapes(g, in + g->n_inputs, sh + g->n_tensors);
	for (i = 0; !ret && i < g->n_outputs; i++) {
		const struct shape *a = &sh[g->outputs[i].tensor];
		const struct shape *b = &sh[g->n_tensors + g->outputs[i].tensor];

		outs[i].ndim = a->ndim;
		for (d = 0; d < a->ndim; d++)
			outs[i].dims[d] = a->dims[d] == b->dims[d] ? a->dims[d] : -1;
	}
out_free:
	free(in);
	free(sh);
	return ret;
}

/* Make sure srv->index holds every row of the repository index; *n rows. */
int index_fetch(struct server *srv, uint32_t *n)
{
	struct repo_info *p;

	for (;;) {
		repo_index(sched_repo(srv->s), srv->index, srv->index_cap, n);
		if (*n <= srv->index_cap)
			return 0;
		p = realloc(srv->index, sizeof(*p) * *n);
		if (!p)
			return -ENOMEM;
		srv->index = p;
		srv->index_cap = *n;
	}
}

struct meta_ctx {
	struct kserve_model_meta m;
	const char *vptr[MAX_VERSIONS];
	char vstr[MAX_VERSIONS][12];
};

static int enc_model_meta(char *buf, size_t cap, const void *arg)
{
	const struct meta_ctx *mc = arg;

	return kserve_encode_model_meta(buf, cap, &mc->m);
}

static void meta_versions(struct server *srv, const char *name, struct meta_ctx *mc)
{
	uint32_t n = 0, i;

	if (index_fetch(srv, &n))
		n = MIN(n, srv->index_cap);
	for (i = 0; i < n && mc->m.n_versions < MAX_VERSIONS; i++) {
		if (strcmp(srv->index[i].name, name))
			continue;
		snprintf(mc->vstr[mc->m.n_versions], sizeof(mc->vstr[0]), "%u",
			 srv->index[i].version);
		mc->vptr[mc->m.n_versions] = mc->vstr[mc->m.n_versions];
		mc->m.n_versions++;
	}
}

void ep_model_meta(struct conn *c)
{
	struct meta_ctx *mc = calloc(1, sizeof(*mc));
	const struct graph *g;
	struct io_desc *outs = NULL;
	struct repo_entry *e;
	int ret = mc ? ep_lookup(c, &e) : -ENOMEM;

	if (ret) {
		conn_fail(c, ret, err_msg(ret));
		goto out_free;
	}
	g = repo_entry_graph(e);
	if (!g) {
		conn_not_ready(c, e, "not loaded yet, so its signature is not known");
		goto out_free;
	}
	outs = malloc(sizeof(*outs) * (g->n_outputs + 1));
	if (!outs) {
		conn_fail(c, -ENOMEM, "out of memory");
		goto out_free;
	}
	memcpy(outs, g->outputs, sizeof(*outs) * g->n_outputs);
	ret = meta_output_dims(g, outs);
	if (ret)
		log_warn("model '%s': cannot infer its output shapes: %s", g->name, err_msg(ret));
	mc->m = (struct kserve_model_meta){.name = repo_entry_name(e),
					   .versions = mc->vptr,
					   .n_inputs = g->n_inputs,
					   .n_outputs = g->n_outputs,
					   .inputs = g->inputs,
					   .outputs = outs};
	meta_versions(c->srv, repo_entry_name(e), mc);
	ret = conn_body(c, enc_model_meta, mc);
	if (ret < 0)
		conn_fail(c, ret, "cannot encode the model metadata");
	else
		conn_reply(c, 200, "application/json", NULL, (size_t)ret);
out_free:
	free(outs);
	free(mc);
}
