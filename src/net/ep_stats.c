/* SPDX-License-Identifier: MIT */
/*
 * net/ep_stats: per-model statistics of the requests the server answered
 * (Triton's statistics extension, GET /v2/models[/{m}[/versions/{v}]]/stats)
 * and their Triton-named Prometheus series (nv_inference_*) for /metrics.
 *
 * The table lives in struct server and is touched by the loop thread only:
 * an infer request adds to its model's row where it completes, so there is
 * no lock and no atomic. A row is added (the only allocation) the first time
 * a model version answers; rows are never removed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/internal.h"

/* The row of model version e; NULL if memory is short. */
static struct net_stat *stat_row(struct server *srv, struct repo_entry *e)
{
	const char *name = repo_entry_name(e);
	uint32_t v = repo_entry_version(e), i;
	struct net_stat *p;

	for (i = 0; i < srv->n_mstats; i++)
		if (srv->mstats[i].version == v && !strcmp(srv->mstats[i].name, name))
			return &srv->mstats[i];
	if (srv->n_mstats == srv->cap_mstats) {
		p = realloc(srv->mstats, sizeof(*p) * (srv->cap_mstats * 2 + 8));
		if (!p)
			return NULL;
		srv->mstats = p;
		srv->cap_mstats = srv->cap_mstats * 2 + 8;
	}
	p = &srv->mstats[srv->n_mstats++];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->version = v;
	return p;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void stat_add(struct kserve_stat *s, uint64_t ns)
{
	s->count++;
	s->ns += ns;
}

/* Batch size of a request: the leading dim of its first batched input. */
static uint64_t batch_of(const struct sched_req *r, const struct graph *g)
{
	uint32_t i;

	for (i = 0; g && i < g->n_inputs; i++)
		if (g->inputs[i].ndim && g->inputs[i].dims[0] == DIM_BATCH && r->in[i].shape.ndim)
			return (uint64_t)MAX(r->in[i].shape.dims[0], 1);
	return 1;
}

void stats_success(struct conn *c, uint64_t t_out)
{
	const struct sched_req *r = c->sreq;
	struct net_stat *s = stat_row(c->srv, r->model);
	uint64_t now = clock_ns();

	if (!s)
		return;
	s->last_ms = now_ms();
	s->inferences += batch_of(r, repo_entry_graph(r->model));
	s->executions++;
	stat_add(&s->success, now - c->t_done);
	stat_add(&s->queue, r->t_queue);
	stat_add(&s->compute_input, c->t_submit > c->t_done ? c->t_submit - c->t_done : 0);
	stat_add(&s->compute_infer, r->t_load + r->t_exec);
	stat_add(&s->compute_output, now - t_out);
}

void stats_fail(struct conn *c)
{
	struct repo_entry *e = c->e;
	struct net_stat *s;

	if (!e && ep_lookup(c, &e)) /* refused before its lookup */
		return;
	s = stat_row(c->srv, e);

	if (!s)
		return;
	s->last_ms = now_ms();
	stat_add(&s->fail, clock_ns() - c->t_done);
}

/* ------------------------------------------------------------ the endpoint */

struct stats_ctx {
	struct kserve_model_stats *ks;
	char (*ver)[12];
	uint32_t n;
};

static int enc_stats(char *buf, size_t cap, const void *arg)
{
	const struct stats_ctx *sc = arg;

	return kserve_encode_model_stats(buf, cap, sc->ks, sc->n);
}

static void stats_fill(struct stats_ctx *sc, const struct net_stat *s)
{
	struct kserve_model_stats *k = &sc->ks[sc->n];

	snprintf(sc->ver[sc->n], sizeof(sc->ver[0]), "%u", s->version);
	*k = (struct kserve_model_stats){
		.name = s->name,
		.version = sc->ver[sc->n],
		.last_inference = s->last_ms,
		.inference_count = s->inferences,
		.execution_count = s->executions,
		.success = s->success,
		.fail = s->fail,
		.queue = s->queue,
		.compute_input = s->compute_input,
		.compute_infer = s->compute_infer,
		.compute_output = s->compute_output,
	};
	sc->n++;
}

/* One model version's row (zeros if it never answered), or every row. */
void ep_stats(struct conn *c, bool all)
{
	struct server *srv = c->srv;
	struct stats_ctx sc = {0};
	struct net_stat zero = {0}, *s;
	struct repo_entry *e;
	uint32_t i, cap = all ? srv->n_mstats : 1;
	int ret = 0;

	if (!all && (ret = ep_lookup(c, &e))) {
		conn_fail(c, ret, err_msg(ret));
		return;
	}
	sc.ks = calloc(cap + 1, sizeof(*sc.ks));
	sc.ver = calloc(cap + 1, sizeof(*sc.ver));
	if (!sc.ks || !sc.ver) {
		conn_fail(c, -ENOMEM, "out of memory");
		goto out_free;
	}
	for (i = 0; all && i < srv->n_mstats; i++)
		stats_fill(&sc, &srv->mstats[i]);
	if (!all) {
		s = stat_row(srv, e);
		if (!s) {
			snprintf(zero.name, sizeof(zero.name), "%s", repo_entry_name(e));
			zero.version = repo_entry_version(e);
			s = &zero;
		}
		stats_fill(&sc, s);
	}
	ret = conn_body(c, enc_stats, &sc);
	if (ret < 0)
		conn_fail(c, ret, "cannot encode the statistics");
	else
		conn_reply(c, 200, "application/json", NULL, (size_t)ret);
out_free:
	free(sc.ks);
	free(sc.ver);
}

/* ------------------------------------------------------------ /metrics */

static void triton_series(struct sbuf *b, const struct server *srv, const char *name,
			  const char *help, size_t off)
{
	uint32_t i;

	sbuf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (i = 0; i < srv->n_mstats; i++) {
		const struct net_stat *s = &srv->mstats[i];
		uint64_t v = *(const uint64_t *)((const char *)s + off);

		sbuf_printf(b, "%s{model=\"", name);
		sbuf_label(b, s->name);
		sbuf_printf(b, "\",version=\"%u\"} %llu\n", s->version,
			    (unsigned long long)(strstr(name, "_us") ? v / 1000u : v));
	}
}

#define NS_OFF(f) offsetof(struct net_stat, f)

int stats_render_triton(struct sbuf *b, const struct server *srv)
{
	triton_series(b, srv, "nv_inference_request_success",
		      "Number of successful inference requests, all batch sizes",
		      NS_OFF(success.count));
	triton_series(b, srv, "nv_inference_request_failure",
		      "Number of failed inference requests, all batch sizes", NS_OFF(fail.count));
	triton_series(b, srv, "nv_inference_count",
		      "Number of inferences performed (a batch of n counts n)", NS_OFF(inferences));
	triton_series(b, srv, "nv_inference_exec_count", "Number of model executions performed",
		      NS_OFF(executions));
	triton_series(b, srv, "nv_inference_request_duration_us",
		      "Cumulative inference request duration in microseconds (successes)",
		      NS_OFF(success.ns));
	triton_series(b, srv, "nv_inference_queue_duration_us",
		      "Cumulative inference queuing duration in microseconds", NS_OFF(queue.ns));
	triton_series(b, srv, "nv_inference_compute_infer_duration_us",
		      "Cumulative compute inference duration in microseconds (load included)",
		      NS_OFF(compute_infer.ns));
	return b->oom ? -ENOMEM : 0;
}
