/* SPDX-License-Identifier: MIT */
/*
 * The cold-start simulator (model in plan.h): one event loop over the
 * links' copies and the exec stream, since they interact twice: a DHA layer
 * reading host memory shares the target's PCIe link with its copies, and a
 * link whose queue empties raises the others' share of the host bandwidth.
 * Between two events every rate is constant; an event is a transfer leaving
 * its fixed-overhead phase or finishing, a DHA layer finishing its reads,
 * a layer ending, or a waited-for layer arriving. A helper's finished H2D
 * copy is followed at once by its peer copy into the target, queued first
 * come first served on the target's NVLink ingress, which fixes its arrival.
 * No allocation: the workspace is made once by plan_sim_init.
 */
#include "plan.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* fmin/fmax without their NaN rules (no NaN arises here): inlined. */
static inline double dmin(double a, double b)
{
	return a < b ? a : b;
}

static inline double dmax(double a, double b)
{
	return a > b ? a : b;
}

/* Make a workspace for up to n layers. Any thread. */
int plan_sim_init(struct plan_sim *s, uint32_t n)
{
	size_t m = n ? n : 1;

	memset(s, 0, sizeof(*s));
	s->arrival = calloc(m, sizeof(double));
	s->start = calloc(m, sizeof(double));
	s->end = calloc(m, sizeof(double));
	s->rest = calloc(m + 1, sizeof(double));
	s->queue = calloc(m, sizeof(uint32_t));
	if (!s->arrival || !s->start || !s->end || !s->rest || !s->queue) {
		plan_sim_fini(s);
		return -ENOMEM;
	}
	s->cap = n;
	s->cutoff = INFINITY;
	return 0;
}

/* Free a workspace (safe on a zeroed or failed one). */
void plan_sim_fini(struct plan_sim *s)
{
	free(s->arrival);
	free(s->start);
	free(s->end);
	free(s->rest);
	free(s->queue);
	memset(s, 0, sizeof(*s));
}

/* Speed of each of k busy links relative to one link alone. Any thread. */
double plan_link_share(const struct plan_links *lk, uint32_t k)
{
	double r;

	if (k <= 1)
		return 1.0;
	r = lk->agg_bw[k - 1] / ((double)k * lk->h2d_bw);
	return r < 1.0 ? r : 1.0;
}

/* Group LOAD layers by link into s->queue (s->first[l] .. first[l + 1])
 * and sum the least time the layers from i on take into s->rest[i]. */
static int group(struct plan_sim *s, const struct plan_profile *pf, uint32_t n_links,
		 const uint8_t *asg, const uint32_t *order)
{
	uint32_t n = pf->n_layers;
	uint32_t cnt[PLAN_MAX_GPUS] = {0}, pos[PLAN_MAX_GPUS], i, l, slot;

	s->rest[n] = 0;
	for (i = n; i-- > 0;) {
		const struct plan_layer_prof *lp = &pf->layers[i];

		if (asg[i] == PLAN_ASG_DHA) {
			s->rest[i] = s->rest[i + 1] + (double)lp->dha_ns;
			continue;
		}
		if (asg[i] >= n_links)
			return -EINVAL;
		cnt[asg[i]]++;
		s->rest[i] = s->rest[i + 1] + (double)lp->exec_ns;
	}
	s->first[0] = 0;
	for (l = 0; l < n_links; l++) {
		s->first[l + 1] = s->first[l] + cnt[l];
		pos[l] = s->first[l];
	}
	if (order)
		memset(s->queue, 0xff, (size_t)n * sizeof(*s->queue));
	for (i = 0; i < n; i++) {
		l = asg[i];
		if (l == PLAN_ASG_DHA)
			continue;
		if (!order) {
			s->queue[pos[l]++] = i;
			continue;
		}
		if (order[i] >= cnt[l])
			return -EINVAL;
		slot = s->first[l] + order[i];
		if (s->queue[slot] != UINT32_MAX)
			return -EINVAL;
		s->queue[slot] = i;
	}
	return 0;
}

/*
 * One link's transfer in flight. At time t0 it had ovh (fixed part, at
 * alone speed) and work (the rest, at rate) left; both are consumed in that
 * order, so it ends at next unless its rate changes first (retime).
 */
struct xfer {
	uint32_t pos, end; /* into s->queue; pos == end: the link is done */
	double t0, ovh, work, rate, next;
};

enum ex_state {
	EX_WAIT, /* layer i waits for its bytes (or, in demand mode, for all) */
	EX_READ, /* DHA layer i reads host memory (its DHA penalty) */
	EX_RUN,	 /* layer i computes until run_end */
	EX_DONE,
};

/* One simulation's moving parts. */
struct run {
	struct plan_sim *s;
	const struct plan_profile *pf;
	const uint8_t *asg;
	uint32_t n_links, busy, unknown; /* busy links; arrivals not yet known */
	bool demand;
	double share[PLAN_MAX_GPUS + 1]; /* plan_link_share by busy links */
	struct xfer x[PLAN_MAX_GPUS];
	double ingress, last_arrival, prev_end;
	/* the exec stream: layer i; a read is timed like a transfer */
	uint32_t i;
	enum ex_state st;
	double t0, read_left, read_rate, read_end, run_end;
};

/* Bring x's state to time t and give it a new rate. */
static void xfer_retime(struct xfer *x, double t, double rate)
{
	double dt = t - x->t0;

	if (dt <= x->ovh) {
		x->ovh -= dt;
	} else {
		x->work = dmax(x->work - (dt - x->ovh) * x->rate, 0);
		x->ovh = 0;
	}
	x->t0 = t;
	x->rate = rate;
	x->next = t + x->ovh + x->work / rate;
}

static double link_rate(const struct run *r, uint32_t l)
{
	double f = l == 0 && r->st == EX_READ ? r->pf->link.dha_copy_share : 1.0;

	return r->share[r->busy] * f;
}

/* The read of the current DHA layer: bring it to t at its new rate. */
static void read_retime(struct run *r, double t)
{
	double rate = r->x[0].pos < r->x[0].end ? r->pf->link.dha_read_share : 1.0;

	if (r->st != EX_READ)
		return;
	r->read_left = dmax(r->read_left - (t - r->t0) * r->read_rate, 0);
	r->t0 = t;
	r->read_rate = rate;
	r->read_end = t + r->read_left / rate;
}

/* Link l starts its next transfer at t, or is done. */
static void xfer_begin(struct run *r, uint32_t l, double t)
{
	struct xfer *x = &r->x[l];
	double load;

	if (x->pos >= x->end) {
		x->next = INFINITY;
		return;
	}
	load = (double)r->pf->layers[r->s->queue[x->pos]].load_ns;
	x->ovh = dmin((double)r->pf->link.xfer_ovh_ns, load);
	x->work = load - x->ovh;
	x->t0 = t;
	x->rate = link_rate(r, l);
	x->next = t + x->ovh + x->work / x->rate;
}

/* Every busy link's rate may have changed at t. */
static void links_retime(struct run *r, double t)
{
	uint32_t l;

	for (l = 0; l < r->n_links; l++)
		if (r->x[l].pos < r->x[l].end)
			xfer_retime(&r->x[l], t, link_rate(r, l));
}

/* Absolute time of the exec stream's next event (INFINITY: it waits for
 * an arrival not known yet). */
static double exec_next(const struct run *r)
{
	switch (r->st) {
	case EX_WAIT:
		if (r->demand && r->i == 0)
			return r->unknown ? INFINITY : r->last_arrival;
		return r->s->arrival[r->i];
	case EX_READ:
		return r->read_end;
	case EX_RUN:
		return r->run_end;
	default:
		return INFINITY;
	}
}

/* Layer `layer` is usable on the target at time `at`. */
static void arrive(struct run *r, uint32_t layer, double at)
{
	r->s->arrival[layer] = at;
	r->last_arrival = dmax(r->last_arrival, at);
	r->unknown--;
}

/* A helper's H2D copy of `layer` finished at t: queue its peer copy. */
static void peer_copy(struct run *r, uint32_t layer, double t)
{
	const struct plan_links *lk = &r->pf->link;
	double st = dmax(t, r->ingress);

	r->ingress = st + (double)r->pf->layers[layer].bytes / lk->peer_bw * 1e9 +
		     (double)lk->peer_lat_ns;
	arrive(r, layer, r->ingress);
}

/* The links whose transfers end at t, ordered by layer (peer copies that
 * become ready together queue in layer order). Returns how many. */
static uint32_t links_due(const struct run *r, double t, uint32_t *due)
{
	uint32_t n = 0, l, j, tmp;

	for (l = 0; l < r->n_links; l++) {
		if (r->x[l].next > t)
			continue;
		due[n] = l;
		for (j = n++;
		     j > 0 && r->s->queue[r->x[due[j]].pos] < r->s->queue[r->x[due[j - 1]].pos];
		     j--) {
			tmp = due[j];
			due[j] = due[j - 1];
			due[j - 1] = tmp;
		}
	}
	return n;
}

/* Finish the transfers that end at t and start the next ones. */
static void links_advance(struct run *r, double t)
{
	uint32_t due[PLAN_MAX_GPUS], n, k, busy = r->busy;
	bool link0_was_busy = r->x[0].pos < r->x[0].end;

	n = links_due(r, t, due);
	for (k = 0; k < n; k++) {
		struct xfer *x = &r->x[due[k]];
		uint32_t layer = r->s->queue[x->pos++];

		if (due[k])
			peer_copy(r, layer, t);
		else
			arrive(r, layer, t);
		if (x->pos >= x->end)
			r->busy--;
	}
	for (k = 0; k < n; k++)
		xfer_begin(r, due[k], t);
	if (r->busy != busy)
		links_retime(r, t);
	if (link0_was_busy && r->x[0].pos >= r->x[0].end)
		read_retime(r, t);
}

/* Start the body of layer i at t: LOAD computes; DHA reads, then computes
 * what is left of its DHA time. */
static void exec_body(struct run *r, double t)
{
	const struct plan_layer_prof *lp = &r->pf->layers[r->i];
	double dha = (double)lp->dha_ns, exec = (double)lp->exec_ns;

	r->s->start[r->i] = t;
	if (r->asg[r->i] != PLAN_ASG_DHA) {
		r->st = EX_RUN;
		r->run_end = t + exec;
		return;
	}
	r->st = EX_READ;
	r->t0 = t;
	r->read_left = dmax(dha - exec, 0);
	r->read_rate = 1.0;
	r->read_end = t;
	r->run_end = dmin(exec, dha); /* relative until the reads end */
	read_retime(r, t);
	links_retime(r, t);
}

/* Let the exec stream do everything it can at time t. */
static void exec_advance(struct run *r, double t)
{
	for (;;) {
		switch (r->st) {
		case EX_WAIT:
			if (exec_next(r) > t)
				return;
			r->s->stall_ns += t - r->prev_end;
			exec_body(r, t);
			break;
		case EX_READ:
			if (r->read_end > t)
				return;
			r->st = EX_RUN;
			r->run_end += t;
			links_retime(r, t);
			break;
		case EX_RUN:
			if (r->run_end > t)
				return;
			r->s->end[r->i] = r->prev_end = r->run_end;
			if (++r->i == r->pf->n_layers ||
			    r->prev_end + r->s->rest[r->i] > r->s->cutoff) {
				r->st = EX_DONE;
				return;
			}
			if (r->asg[r->i] == PLAN_ASG_DHA)
				exec_body(r, t);
			else
				r->st = EX_WAIT;
			break;
		default:
			return;
		}
	}
}

static void run_init(struct run *r, struct plan_sim *s, const struct plan_profile *pf,
		     uint32_t n_links, const uint8_t *asg, bool demand)
{
	uint32_t l, i;

	memset(r, 0, sizeof(*r));
	r->s = s;
	r->pf = pf;
	r->asg = asg;
	r->n_links = n_links;
	r->demand = demand;
	for (l = 0; l <= n_links; l++)
		r->share[l] = plan_link_share(&pf->link, l);
	r->unknown = s->first[n_links];
	for (i = 0; i < pf->n_layers; i++)
		s->arrival[i] = asg[i] == PLAN_ASG_DHA ? 0 : INFINITY;
	for (l = 0; l < n_links; l++) {
		r->x[l].pos = s->first[l];
		r->x[l].end = s->first[l + 1];
		r->busy += r->x[l].pos < r->x[l].end;
	}
	r->st = EX_WAIT;
	for (l = 0; l < n_links; l++)
		xfer_begin(r, l, 0);
	s->stall_ns = 0;
	if (!demand && asg[0] == PLAN_ASG_DHA)
		exec_body(r, 0);
}

/* Simulate one cold start; see plan.h. Pure, deterministic. */
int plan_sim_run(struct plan_sim *s, const struct plan_profile *pf, uint32_t n_links,
		 const uint8_t *asg, const uint32_t *order, bool demand)
{
	struct run r;
	uint32_t l;
	double tn;
	int ret;

	if (!n_links || n_links > pf->link.n_gpus || !pf->n_layers || pf->n_layers > s->cap)
		return -EINVAL;
	ret = group(s, pf, n_links, asg, order);
	if (ret)
		return ret;
	run_init(&r, s, pf, n_links, asg, demand);
	exec_advance(&r, 0);
	while (r.st != EX_DONE) {
		tn = exec_next(&r);
		for (l = 0; l < n_links; l++)
			tn = dmin(tn, r.x[l].next);
		if (tn == INFINITY)
			return -EINVAL; /* cannot happen: every LOAD layer is queued */
		links_advance(&r, tn);
		exec_advance(&r, tn);
	}
	s->total_ns = r.i == pf->n_layers ? r.prev_end : INFINITY;
	s->links_done_ns = r.last_arrival;
	return 0;
}
