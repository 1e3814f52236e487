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

/* Make a workspace for up to n layers. Any thread. */
int plan_sim_init(struct plan_sim *s, uint32_t n)
{
	size_t m = n ? n : 1;

	memset(s, 0, sizeof(*s));
	s->arrival = calloc(m, sizeof(double));
	s->start = calloc(m, sizeof(double));
	s->end = calloc(m, sizeof(double));
	s->queue = calloc(m, sizeof(uint32_t));
	if (!s->arrival || !s->start || !s->end || !s->queue) {
		plan_sim_fini(s);
		return -ENOMEM;
	}
	s->cap = n;
	return 0;
}

/* Free a workspace (safe on a zeroed or failed one). */
void plan_sim_fini(struct plan_sim *s)
{
	free(s->arrival);
	free(s->start);
	free(s->end);
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

/* Group LOAD layers by link into s->queue; s->first[l] .. first[l + 1]. */
static int group(struct plan_sim *s, uint32_t n, uint32_t n_links, const uint8_t *asg,
		 const uint32_t *order)
{
	uint32_t cnt[PLAN_MAX_GPUS] = {0}, pos[PLAN_MAX_GPUS], i, l, slot;

	for (i = 0; i < n; i++) {
		if (asg[i] == PLAN_ASG_DHA)
			continue;
		if (asg[i] >= n_links)
			return -EINVAL;
		cnt[asg[i]]++;
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

/* One link's transfer in flight. */
struct xfer {
	uint32_t pos, end; /* into s->queue; pos == end: the link is done */
	double ovh, work;  /* left: fixed part (alone speed), the rest */
	double rate;	   /* of work, during the current interval */
	double next;	   /* absolute time of its next event */
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
	struct xfer x[PLAN_MAX_GPUS];
	double t, ingress, last_arrival, prev_end;
	uint32_t i; /* the exec stream's layer */
	enum ex_state st;
	double read_left, read_rate, run_end;
};

static void xfer_begin(struct run *r, uint32_t l)
{
	struct xfer *x = &r->x[l];
	double load;

	if (x->pos >= x->end) {
		r->busy--;
		return;
	}
	load = (double)r->pf->layers[r->s->queue[x->pos]].load_ns;
	x->ovh = fmin((double)r->pf->link.xfer_ovh_ns, load);
	x->work = load - x->ovh;
}

static bool copying(const struct xfer *x)
{
	return x->pos < x->end && x->ovh <= 0;
}

/* Absolute time the exec stream's next event happens (INFINITY: waits
 * for an arrival not known yet). Sets r->read_rate for the interval. */
static double exec_next(struct run *r)
{
	switch (r->st) {
	case EX_WAIT:
		if (r->demand && r->i == 0)
			return r->unknown ? INFINITY : r->last_arrival;
		return r->s->arrival[r->i];
	case EX_READ:
		r->read_rate = copying(&r->x[0]) ? r->pf->link.dha_read_share : 1.0;
		return r->t + r->read_left / r->read_rate;
	case EX_RUN: return r->run_end;
	default: return INFINITY;
	}
}

/* Next event time of every busy link, at the rates of this interval. */
static double links_next(struct run *r)
{
	double sh = plan_link_share(&r->pf->link, r->busy), tn = INFINITY;
	uint32_t l;

	for (l = 0; l < r->n_links; l++) {
		struct xfer *x = &r->x[l];

		if (x->pos >= x->end)
			continue;
		x->rate = sh * (l == 0 && r->st == EX_READ ? r->pf->link.dha_copy_share : 1.0);
		x->next = r->t + (x->ovh > 0 ? x->ovh : x->work / x->rate);
		tn = fmin(tn, x->next);
	}
	return tn;
}

/* Layer `layer` is usable on the target at time `at`. */
static void arrive(struct run *r, uint32_t layer, double at)
{
	r->s->arrival[layer] = at;
	r->last_arrival = fmax(r->last_arrival, at);
	r->unknown--;
}

/* A helper's H2D copy of `layer` finished now: queue its peer copy. */
static void peer_copy(struct run *r, uint32_t layer)
{
	const struct plan_links *lk = &r->pf->link;
	double st = fmax(r->t, r->ingress);

	r->ingress = st + (double)r->pf->layers[layer].bytes / lk->peer_bw * 1e9 +
		     (double)lk->peer_lat_ns;
	arrive(r, layer, r->ingress);
}

/* Move every link to time tn (dt after r->t); handle finished copies. */
static void links_advance(struct run *r, double tn)
{
	uint32_t done[PLAN_MAX_GPUS], n_done = 0, l, k, j;
	double dt = tn - r->t;

	for (l = 0; l < r->n_links; l++) {
		struct xfer *x = &r->x[l];
		bool fired = x->pos < x->end && x->next <= tn;

		if (x->pos >= x->end)
			continue;
		if (x->ovh > 0) {
			x->ovh = fired ? 0 : x->ovh - dt;
			if (!fired || x->work > 0)
				continue;
		} else {
			x->work = fired ? 0 : x->work - dt * x->rate;
			if (!fired)
				continue;
		}
		done[n_done++] = l;
	}
	r->t = tn;
	/* Peer copies queue in layer order when H2D copies end together. */
	for (k = 1; k < n_done; k++)
		for (j = k; j > 0 && r->s->queue[r->x[done[j]].pos] <
					     r->s->queue[r->x[done[j - 1]].pos]; j--) {
			l = done[j];
			done[j] = done[j - 1];
			done[j - 1] = l;
		}
	for (k = 0; k < n_done; k++) {
		struct xfer *x = &r->x[done[k]];
		uint32_t layer = r->s->queue[x->pos++];

		if (done[k])
			peer_copy(r, layer);
		else
			arrive(r, layer, r->t);
		xfer_begin(r, done[k]);
	}
}

/* Start the body of layer i at r->t: LOAD computes; DHA reads, then
 * computes what is left of its DHA time. */
static void exec_body(struct run *r)
{
	const struct plan_layer_prof *lp = &r->pf->layers[r->i];
	double dha = (double)lp->dha_ns, exec = (double)lp->exec_ns;

	r->s->start[r->i] = r->t;
	if (r->asg[r->i] != PLAN_ASG_DHA) {
		r->st = EX_RUN;
		r->run_end = r->t + exec;
		return;
	}
	r->read_left = fmax(dha - exec, 0);
	r->run_end = fmin(exec, dha); /* relative until the reads end */
	r->st = EX_READ;
}

/* Let the exec stream do everything it can at time r->t. */
static void exec_advance(struct run *r)
{
	for (;;) {
		switch (r->st) {
		case EX_WAIT:
			if (exec_next(r) > r->t)
				return;
			r->s->stall_ns += r->t - r->prev_end;
			exec_body(r);
			break;
		case EX_READ:
			if (r->read_left > 0)
				return;
			r->st = EX_RUN;
			r->run_end += r->t;
			break;
		case EX_RUN:
			if (r->run_end > r->t)
				return;
			r->s->end[r->i] = r->prev_end = r->run_end;
			if (++r->i == r->pf->n_layers) {
				r->st = EX_DONE;
				return;
			}
			if (r->asg[r->i] == PLAN_ASG_DHA)
				exec_body(r);
			else
				r->st = EX_WAIT;
			break;
		default: return;
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
	r->busy = n_links;
	r->unknown = s->first[n_links];
	for (i = 0; i < pf->n_layers; i++)
		s->arrival[i] = asg[i] == PLAN_ASG_DHA ? 0 : INFINITY;
	for (l = 0; l < n_links; l++) {
		r->x[l].pos = s->first[l];
		r->x[l].end = s->first[l + 1];
		xfer_begin(r, l);
	}
	s->stall_ns = 0;
	if (demand || asg[0] != PLAN_ASG_DHA)
		r->st = EX_WAIT;
	else
		exec_body(r);
}

/* Simulate one cold start; see plan.h. Pure, deterministic. */
int plan_sim_run(struct plan_sim *s, const struct plan_profile *pf, uint32_t n_links,
		 const uint8_t *asg, const uint32_t *order, bool demand)
{
	struct run r;
	double tn, ex;
	int ret;

	if (!n_links || n_links > pf->link.n_gpus || !pf->n_layers || pf->n_layers > s->cap)
		return -EINVAL;
	ret = group(s, pf->n_layers, n_links, asg, order);
	if (ret)
		return ret;
	run_init(&r, s, pf, n_links, asg, demand);
	exec_advance(&r);
	while (r.st != EX_DONE) {
		ex = exec_next(&r);
		tn = fmin(ex, links_next(&r));
		if (tn == INFINITY)
			return -EINVAL; /* cannot happen: every LOAD layer is queued */
		if (r.st == EX_READ)
			r.read_left = tn >= ex ? 0 : r.read_left - (tn - r.t) * r.read_rate;
		links_advance(&r, tn);
		exec_advance(&r);
	}
	s->total_ns = r.prev_end;
	s->links_done_ns = r.last_arrival;
	return 0;
}
