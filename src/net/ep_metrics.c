/* SPDX-License-Identifier: MIT */
/*
 * net/ep_metrics: Prometheus /metrics (rendered by metrics.c).
 */
#include <errno.h>
#include <stdlib.h>

#include "net/internal.h"

void ep_metrics(struct conn *c)
{
	struct server *srv = c->srv;
	struct sbuf b = {0};
	struct repo_entry *e;
	uint32_t m, w, nw;

	sched_stats(srv->s, srv->stats);
	nw = srv->stats->n_workers;
	for (m = 0; m < srv->stats->n_models; m++) {
		const struct sched_model_stats *ms = &srv->stats->models[m];
		bool found = !repo_lookup(sched_repo(srv->s), ms->name, ms->version, &e);

		for (w = 0; w < nw; w++)
			srv->resident[m * nw + w] = found &&
						    worker_has_model(sched_worker(srv->s, w), e);
	}
	if (metrics_render(&b, srv->stats, srv->resident, &srv->cnt) ||
	    stats_render_triton(&b, srv)) {
		sbuf_free(&b);
		conn_fail(c, -ENOMEM, "out of memory");
		return;
	}
	free(c->wbuf);
	c->wbuf = b.p;
	c->wcap = b.cap;
	conn_reply(c, 200, METRICS_CONTENT_TYPE, NULL, b.len);
}
