/* SPDX-License-Identifier: MIT */
/*
 * net/ep_models: health, server metadata, model readiness, model metadata
 * and Triton's model configuration, and the model lookup the inference
 * endpoint shares. Model metadata and readiness also say which version
 * answers, its state and reason, and every version's ("version_states"),
 * so a failed newest version and the one serving instead are visible.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"

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

/* {"live":true} or {"ready":true}, as KServe's and Triton's clients read. */
void ep_health(struct conn *c, bool ready)
{
	char why[SCHED_MSG_LEN];
	int n;

	if (ready && c->srv->stopping) {
		conn_error(c, 503, "the server is shutting down", false);
		return;
	}
	if (ready && !sched_ready(c->srv->s, why, sizeof(why))) {
		conn_error(c, 503, why, false);
		return;
	}
	if (buf_grow(&c->wbuf, &c->wcap, 64)) {
		conn_fail(c, -ENOMEM, "out of memory");
		return;
	}
	n = kserve_encode_flag(c->wbuf, c->wcap, ready ? "ready" : "live", true);
	conn_reply(c, 200, "application/json", NULL, n < 0 ? 0 : (size_t)n);
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

/* ------------------------------------------------------------ versions */

/* [{"version", "state", "reason"}...]: every indexed version of name. */
static json_t *version_states(struct server *srv, const char *name)
{
	json_t *a = json_array(), *o;
	uint32_t n = 0, i;
	char v[12];

	if (index_fetch(srv, &n))
		n = MIN(n, srv->index_cap);
	for (i = 0; a && i < n; i++) {
		const struct repo_info *ri = &srv->index[i];

		if (strcmp(ri->name, name))
			continue;
		snprintf(v, sizeof(v), "%u", ri->version);
		o = json_pack("{s:s,s:s}", "version", v, "state",
			      repo_state_name((enum repo_state)ri->state));
		if (o && ri->reason[0])
			json_object_set_new(o, "reason", json_string(ri->reason));
		json_array_append_new(a, o);
	}
	return a;
}

/* {"version", "state", "reason", "version_states"} of the entry answering. */
static json_t *entry_status(struct server *srv, const struct repo_entry *e)
{
	char why[SCHED_MSG_LEN], v[12];
	json_t *o;

	repo_entry_reason(e, why, sizeof(why));
	snprintf(v, sizeof(v), "%u", repo_entry_version(e));
	o = json_pack("{s:s,s:s,s:o*}", "version", v, "state", repo_state_name(repo_entry_state(e)),
		      "version_states", version_states(srv, repo_entry_name(e)));
	if (o && why[0])
		json_object_set_new(o, "reason", json_string(why));
	return o;
}

static int enc_text(char *buf, size_t cap, const void *arg)
{
	size_t n = strlen(arg);

	if (n + 1 > cap)
		return -ENOSPC;
	memcpy(buf, arg, n + 1);
	return (int)n;
}

/* Reply status with o (and name, "error": msg when msg) as the body. */
static void reply_status(struct conn *c, int status, json_t *o, const char *msg)
{
	char *text;
	int n = -ENOMEM;

	if (o) {
		json_object_set_new(o, "name", json_string(c->tgt.model));
		if (msg)
			json_object_set_new(o, "error", json_string(msg));
	}
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (text)
		n = conn_body(c, enc_text, text);
	if (n < 0)
		conn_fail(c, n, "cannot encode the model's state");
	else
		conn_reply(c, status, "application/json",
			   status == 503 ? "Retry-After: 1\r\n" : NULL, (size_t)n);
	free(text);
	json_decref(o);
}

/* The entry exists but has no signature: 503 with its state and reason. */
static void meta_not_ready(struct conn *c, struct repo_entry *e)
{
	char why[SCHED_MSG_LEN], msg[SCHED_MSG_LEN + NAME_LEN + 96];

	repo_entry_reason(e, why, sizeof(why));
	snprintf(msg, sizeof(msg),
		 "model '%s' version %u is not loaded yet, so its signature "
		 "is not known (%s%s%s)",
		 repo_entry_name(e), repo_entry_version(e), repo_state_name(repo_entry_state(e)),
		 why[0] ? ": " : "", why);
	reply_status(c, 503, entry_status(c->srv, e), msg);
}

void ep_model_ready(struct conn *c)
{
	struct repo_entry *e;
	json_t *o;
	int ret = ep_lookup(c, &e);

	if (ret) {
		conn_fail(c, ret, err_msg(ret));
	} else if (repo_entry_state(e) != REPO_READY) {
		conn_not_ready(c, e, "not ready");
	} else {
		o = entry_status(c->srv, e);
		if (o)
			json_object_set_new(o, "ready", json_true());
		reply_status(c, 200, o, NULL);
	}
}

struct meta_ctx {
	struct kserve_model_meta m;
	int64_t max_batch; /* for the config */
	const char **vptr;
	char (*vstr)[12];
	char *ext; /* entry_status as JSON, appended to the object */
	size_t ext_len;
};

static int enc_model_meta(char *buf, size_t cap, const void *arg)
{
	const struct meta_ctx *mc = arg;
	int n = kserve_encode_model_meta(buf, cap, &mc->m);

	if (n < 2 || !mc->ext || mc->ext_len < 3 || buf[n - 1] != '}')
		return n;
	if ((size_t)n + mc->ext_len > cap)
		return -ENOSPC;
	buf[n - 1] = ',';
	memcpy(buf + n, mc->ext + 1, mc->ext_len - 1);
	return n + (int)mc->ext_len - 1;
}

static int enc_model_config(char *buf, size_t cap, const void *arg)
{
	const struct meta_ctx *mc = arg;

	return kserve_encode_model_config(buf, cap, &mc->m, mc->max_batch);
}

static void meta_versions(struct server *srv, const char *name, struct meta_ctx *mc)
{
	uint32_t n = 0, i;

	if (index_fetch(srv, &n))
		n = MIN(n, srv->index_cap);
	mc->vptr = calloc(n + 1, sizeof(*mc->vptr));
	mc->vstr = calloc(n + 1, sizeof(*mc->vstr));
	if (!mc->vptr || !mc->vstr)
		return;
	for (i = 0; i < n; i++) {
		if (strcmp(srv->index[i].name, name))
			continue;
		snprintf(mc->vstr[mc->m.n_versions], sizeof(mc->vstr[0]), "%u",
			 srv->index[i].version);
		mc->vptr[mc->m.n_versions] = mc->vstr[mc->m.n_versions];
		mc->m.n_versions++;
	}
}

/* Append e's state, reason and version states to the metadata. */
static void meta_status(struct server *srv, const struct repo_entry *e, struct meta_ctx *mc)
{
	json_t *o = entry_status(srv, e);

	mc->ext = o ? json_dumps(o, JSON_COMPACT) : NULL;
	mc->ext_len = mc->ext ? strlen(mc->ext) : 0;
	json_decref(o);
}

void ep_model_meta(struct conn *c, bool config)
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
		meta_not_ready(c, e);
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
					   .n_inputs = g->n_inputs,
					   .n_outputs = g->n_outputs,
					   .inputs = g->inputs,
					   .outputs = outs};
	mc->max_batch = g->max_batch;
	meta_versions(c->srv, repo_entry_name(e), mc);
	mc->m.versions = mc->vptr;
	if (!config)
		meta_status(c->srv, e, mc);
	ret = conn_body(c, config ? enc_model_config : enc_model_meta, mc);
	if (ret < 0)
		conn_fail(c, ret, "cannot encode the model metadata");
	else
		conn_reply(c, 200, "application/json", NULL, (size_t)ret);
out_free:
	if (mc) {
		free(mc->vptr);
		free(mc->vstr);
		free(mc->ext);
	}
	free(outs);
	free(mc);
}
