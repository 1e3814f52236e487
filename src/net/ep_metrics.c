/* SPDX-License-Identifier: MIT */
/*
 * net/ep_metrics: Prometheus /metrics (rendered by metrics.c).
 */
#include <errno.h>
#include <stdlib.h>

#include "net/internal.h"

/* Parallel transmission's counters (sched_pt_stats), after the others;
 * device labels are the workers' names of st. */
static void render_pt(struct sbuf *b, const struct sched *s, const struct sched_stats *st)
{
	struct sched_pt_stats pt;
	uint32_t i;

	sched_pt_stats(s, &pt);
	sbuf_printf(b,
		    "# HELP dprt_pt_cold_starts_total Cold starts that moved layers over other "
		    "devices' links (parallel transmission).\n"
		    "# TYPE dprt_pt_cold_starts_total counter\n"
		    "dprt_pt_cold_starts_total %llu\n",
		    (unsigned long long)pt.pt_cold_starts);
	sbuf_printf(b,
		    "# HELP dprt_pt_fallbacks_total Cold starts by plans with helpers in which "
		    "some transfer went over fewer links (no helper link idle).\n"
		    "# TYPE dprt_pt_fallbacks_total counter\n"
		    "dprt_pt_fallbacks_total %llu\n",
		    (unsigned long long)pt.pt_fallbacks);
	sbuf_printf(b, "# HELP dprt_link_lent_seconds_total Time a device's transfer link was "
		       "lent to other devices' cold starts.\n"
		       "# TYPE dprt_link_lent_seconds_total counter\n");
	for (i = 0; i < st->n_workers && i < pt.n_workers; i++) {
		sbuf_printf(b, "dprt_link_lent_seconds_total{device=\"");
		sbuf_label(b, st->workers[i].name);
		sbuf_printf(b, "\"} %.9f\n", (double)pt.lent_ns[i] / 1e9);
	}
}

void ep_metrics(struct conn *c)
{
	struct server *srv = c->srv;
	struct sbuf b = {0};
	struct repo_entry *e;
	uint32_t m, w, nw;
	int ret;

	sched_stats(srv->s, srv->stats);
	nw = srv->stats->n_workers;
	for (m = 0; m < srv->stats->n_models; m++) {
		const struct sched_model_stats *ms = &srv->stats->models[m];
		bool found = !repo_lookup(sched_repo(srv->s), ms->name, ms->version, &e);

		for (w = 0; w < nw; w++)
			srv->resident[m * nw + w] = found &&
						    worker_has_model(sched_worker(srv->s, w), e);
	}
	ret = metrics_render(&b, srv->stats, srv->resident, &srv->cnt);
	if (!ret)
		render_pt(&b, srv->s, srv->stats);
	if (ret || b.oom || stats_render_triton(&b, srv)) {
		sbuf_free(&b);
		conn_fail(c, -ENOMEM, "out of memory");
		return;
	}
	free(c->wbuf);
	c->wbuf = b.p;
	c->wcap = b.cap;
	conn_reply(c, 200, METRICS_CONTENT_TYPE, NULL, b.len);
}
