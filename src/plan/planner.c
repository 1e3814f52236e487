/* SPDX-License-Identifier: MIT */
/*
 * The planner: DeepPlan's own algorithms (for comparison and as a starting
 * point) and dprt's search.
 *
 * deepplan-v1 follows the original artifact (plan.py's
 * generate_dynamic_plan and the engine's device split in
 * src/deepplan/model.cpp), including its quirks: the stall trace is
 * recomputed only when a stall has been fully removed, candidates include
 * the stalled layer itself, a candidate is taken while its penalty is not
 * larger than the remaining stall, and the split gives device d the layers
 * while the running sum of its bytes stays within total / n (integer
 * division), the last device taking the rest.
 *
 * dprt's search for w links: the candidate assignments below are
 * simulated and the best one is improved by local search. Candidates: the
 * starting assignment, DeepPlan's plan split over w links, and list
 * schedules (each LOAD layer, in order, to the link where it would arrive
 * first, or start first) over the DHA choices of the start, of DeepPlan and
 * of none. Local search moves one layer at a time to DHA, to LOAD or to
 * another link and keeps a move when it strictly improves the predicted
 * total, or keeps the total and lowers a tie-break cost (the helpers'
 * transfer time plus the DHA penalties: equal totals prefer the target's
 * link, then LOAD). It passes over the layers while a pass shortens the
 * total by more than MIN_GAIN, at most MAX_PASSES times. The result is
 * never worse than any candidate, so never worse than DeepPlan's plan.
 * Widths are tried 1..n, each width starting from the best of the one
 * before, so more links never predict a slower plan (the search for n
 * links repeats the one for n - 1 first).
 *
 * Cost: a simulation is O(layers x links); most of the time goes to the
 * local search, whose simulations stop once they cannot win (cutoff).
 * Measured 2026-11-26 on an idle H200 host's CPU: resnet101 (209 layers)
 * on 4 GPUs in 28 ms; random 209-layer profiles 40-45 ms, 89 ms at worst.
 */
#include "plan.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define V1_LOAD_FACTOR 1.5 /* dha_exec <= exec + 1.5 * load */
#define MAX_PASSES 4	   /* local search passes over the layers, at most */
#define MIN_GAIN 1e-4	   /* a pass must gain this fraction to go on */
#define STEP_BUDGET 5e7	   /* simulated layers per width, for huge models */

static const char *const mode_names[PLAN_MODE_COUNT] = {
	[PLAN_DPRT] = "dprt",	      [PLAN_DEEPPLAN_V1] = "deepplan-v1",
	[PLAN_PIPELINE] = "pipeline", [PLAN_PT] = "pt",
	[PLAN_PT_DHA] = "pt+dha",     [PLAN_DEMAND] = "demand",
	[PLAN_DEEPPLAN] = "deepplan",
};

/* Name of a mode; "?" for a value out of range. Any thread. */
const char *plan_mode_name(enum plan_mode m)
{
	return (unsigned)m < PLAN_MODE_COUNT ? mode_names[m] : "?";
}

/* Mode of a name, or -1. Any thread. */
int plan_mode_parse(const char *s)
{
	int m;

	for (m = 0; m < PLAN_MODE_COUNT; m++)
		if (!strcmp(s, mode_names[m]))
			return m;
	return -1;
}

/* ------------------------------------------------------- deepplan-v1 */

/* plan.py's update_PEF: stall of each layer with one link, loads back to
 * back from time 0. */
static void v1_trace(const struct plan_profile *pf, const uint8_t *asg, double *stall)
{
	double ready = 0;
	uint32_t i;

	for (i = 0; i < pf->n_layers; i++) {
		const struct plan_layer_prof *lp = &pf->layers[i];

		stall[i] = 0;
		if (asg[i] == PLAN_ASG_DHA) {
			ready += (double)lp->dha_ns;
			continue;
		}
		ready -= (double)lp->load_ns;
		if (ready < 0) {
			stall[i] = -ready;
			ready = 0;
		}
		ready += (double)lp->exec_ns;
	}
}

static double gap_of(const struct plan_layer_prof *lp)
{
	return (double)lp->dha_ns - (double)lp->exec_ns;
}

/* A layer's sort key among DHA candidates. */
struct v1_key {
	double gap;
	uint64_t load;
	uint32_t layer;
};

/* Smallest DHA penalty first, then larger load, then layer order (the
 * original's stable sort). */
static int v1_cmp(const void *a, const void *b)
{
	const struct v1_key *x = a, *y = b;

	if (x->gap != y->gap)
		return x->gap < y->gap ? -1 : 1;
	if (x->load != y->load)
		return x->load > y->load ? -1 : 1;
	return x->layer < y->layer ? -1 : x->layer > y->layer;
}

/* Take candidates for the stall of layer t; asg and stall are updated. */
static void v1_fix_stall(const struct plan_profile *pf, const struct v1_key *by_gap, uint32_t t,
			 uint8_t *asg, double *stall)
{
	double st = stall[t];
	uint32_t k;

	for (k = 0; k < pf->n_layers; k++) {
		uint32_t c = by_gap[k].layer;
		const struct plan_layer_prof *lp = &pf->layers[c];
		double gap = gap_of(lp), load = (double)lp->load_ns;

		if (c > t || asg[c] == PLAN_ASG_DHA)
			continue;
		if ((double)lp->dha_ns > (double)lp->exec_ns + V1_LOAD_FACTOR * load)
			break;
		if (st < gap)
			break;
		asg[c] = PLAN_ASG_DHA;
		st -= load + gap;
		if (st <= 0) {
			v1_trace(pf, asg, stall);
			break;
		}
	}
}

/* DeepPlan's dynamic DHA plan on one link; see plan.h. 0 or -ENOMEM. */
int plan_v1_dha(const struct plan_profile *pf, uint8_t *asg)
{
	uint32_t n = pf->n_layers, i;
	struct v1_key *by_gap = malloc(n * sizeof(*by_gap));
	double *stall = malloc(n * sizeof(*stall));

	if (!by_gap || !stall) {
		free(by_gap);
		free(stall);
		return err_set(-ENOMEM, "planner: out of memory");
	}
	for (i = 0; i < n; i++) {
		asg[i] = pf->layers[i].bytes ? 0 : PLAN_ASG_DHA;
		by_gap[i].gap = gap_of(&pf->layers[i]);
		by_gap[i].load = pf->layers[i].load_ns;
		by_gap[i].layer = i;
	}
	qsort(by_gap, n, sizeof(*by_gap), v1_cmp);
	v1_trace(pf, asg, stall);
	for (i = 0; i < n; i++)
		if (stall[i] > 0)
			v1_fix_stall(pf, by_gap, i, asg, stall);
	free(by_gap);
	free(stall);
	return 0;
}

/* The original's equal-size contiguous split of the LOAD layers. */
void plan_v1_split(const struct plan_profile *pf, uint32_t n_links, uint8_t *asg)
{
	uint64_t total = 0, block, cumm;
	uint32_t n = pf->n_layers, i = 0, d;

	for (d = 0; d < n; d++)
		if (asg[d] != PLAN_ASG_DHA)
			total += pf->layers[d].bytes;
	block = total / n_links;
	for (d = 0; d < n_links; d++) {
		cumm = 0;
		for (; i < n; i++) {
			if (asg[i] == PLAN_ASG_DHA)
				continue;
			cumm += pf->layers[i].bytes;
			if (cumm > block && d < n_links - 1)
				break;
			asg[i] = (uint8_t)d;
		}
	}
}

/* ------------------------------------------------------------ search */

/* State of dprt's search over w links. cur is the best assignment so far,
 * with its predicted total and tie-break cost. */
struct search {
	const struct plan_profile *pf;
	uint32_t w;
	bool dha;
	struct plan_sim sim;
	uint8_t *cur, *cand;
	double total, tie;
	uint32_t evals;
};

enum ls_rule {
	LS_ARRIVAL, /* each layer to the link where it arrives first */
	LS_START,   /* ... where it can start first (ties: lower link) */
};

/* Tie-break cost: helpers' transfer time, then DHA penalties (at least
 * 1 ns each), so equal totals prefer the target's link and LOAD. */
static double tie_cost(const struct plan_profile *pf, const uint8_t *asg)
{
	double c = 0;
	uint32_t i;

	for (i = 0; i < pf->n_layers; i++) {
		if (asg[i] == PLAN_ASG_DHA)
			c += fmax(gap_of(&pf->layers[i]), 0) + 1;
		else if (asg[i])
			c += (double)pf->layers[i].load_ns;
	}
	return c;
}

static bool better(double total, double tie, double b_total, double b_tie)
{
	return total < b_total - 1e-6 || (total <= b_total && tie < b_tie);
}

/* Simulate asg; false if it is invalid. */
static bool eval(struct search *s, const uint8_t *asg, double *total, double *tie)
{
	s->evals++;
	s->sim.cutoff = s->total + 1e-3;
	if (plan_sim_run(&s->sim, s->pf, s->w, asg, NULL, false))
		return false;
	*total = s->sim.total_ns;
	*tie = tie_cost(s->pf, asg);
	return true;
}

/* Keep s->cand if it beats s->cur. */
static void consider(struct search *s)
{
	double t, c;

	if (eval(s, s->cand, &t, &c) && better(t, c, s->total, s->tie)) {
		memcpy(s->cur, s->cand, s->pf->n_layers);
		s->total = t;
		s->tie = c;
	}
}

static double xfer_ns(const struct plan_profile *pf, const struct plan_layer_prof *lp, double sh)
{
	double load = (double)lp->load_ns, ovh = fmin((double)pf->link.xfer_ovh_ns, load);

	return ovh + (load - ovh) / sh;
}

static double peer_ns(const struct plan_profile *pf, const struct plan_layer_prof *lp)
{
	return (double)lp->bytes / pf->link.peer_bw * 1e9 + (double)pf->link.peer_lat_ns;
}

/* Give every LOAD layer of asg a link by rule, estimating with all w links
 * busy; DHA layers stay. */
static void list_schedule(const struct plan_profile *pf, uint32_t w, enum ls_rule rule,
			  uint8_t *asg)
{
	double busy[PLAN_MAX_GPUS] = {0}, ingress = 0, prev = 0, sh = plan_link_share(&pf->link, w);
	double h, arr, key, b_key, b_h = 0, b_arr = 0;
	uint32_t i, l, b;

	for (i = 0; i < pf->n_layers; i++) {
		const struct plan_layer_prof *lp = &pf->layers[i];

		if (asg[i] == PLAN_ASG_DHA) {
			prev += (double)lp->dha_ns;
			continue;
		}
		b = 0;
		b_key = INFINITY;
		for (l = 0; l < w; l++) {
			h = busy[l] + xfer_ns(pf, lp, sh);
			arr = l ? fmax(h, ingress) + peer_ns(pf, lp) : h;
			key = rule == LS_ARRIVAL ? arr : fmax(arr, prev);
			if (key < b_key) {
				b = l;
				b_key = key;
				b_h = h;
				b_arr = arr;
			}
		}
		asg[i] = (uint8_t)b;
		busy[b] = b_h;
		if (b)
			ingress = b_arr;
		prev = fmax(prev, b_arr) + (double)lp->exec_ns;
	}
}

/* s->cand = the DHA choices of src (none if src is NULL), LOAD layers
 * scheduled by rule. */
static void consider_schedule(struct search *s, const uint8_t *src, enum ls_rule rule)
{
	uint32_t i;

	for (i = 0; i < s->pf->n_layers; i++)
		s->cand[i] = src && src[i] == PLAN_ASG_DHA ? PLAN_ASG_DHA : 0;
	list_schedule(s->pf, s->w, rule, s->cand);
	consider(s);
}

/* The candidates of the file comment. v1 is DeepPlan's DHA plan (one
 * link) or NULL; start is a copy of the starting assignment. */
static void seed(struct search *s, const uint8_t *v1, const uint8_t *start)
{
	if (v1) {
		memcpy(s->cand, v1, s->pf->n_layers);
		plan_v1_split(s->pf, s->w, s->cand);
		consider(s);
		consider_schedule(s, v1, LS_ARRIVAL);
		consider_schedule(s, v1, LS_START);
	}
	consider_schedule(s, start, LS_ARRIVAL);
	consider_schedule(s, start, LS_START);
	consider_schedule(s, NULL, LS_ARRIVAL);
	consider_schedule(s, NULL, LS_START);
}

/* Try the other placements of layer i; keep the first that improves. */
static bool improve_layer(struct search *s, uint32_t i)
{
	uint8_t orig = s->cur[i], alt;
	uint32_t l;
	double t, c;

	for (l = 0; l <= s->w; l++) {
		alt = l < s->w ? (uint8_t)l : PLAN_ASG_DHA;
		if (alt == orig || (alt == PLAN_ASG_DHA && !s->dha))
			continue;
		s->cur[i] = alt;
		if (eval(s, s->cur, &t, &c) && better(t, c, s->total, s->tie)) {
			s->total = t;
			s->tie = c;
			return true;
		}
		s->cur[i] = orig;
	}
	return false;
}

/* Passes over the layers while a pass still shortens the total by more
 * than MIN_GAIN (a pass that only improves the tie-break ends the search). */
static void local_search(struct search *s)
{
	uint32_t pass, i, n = s->pf->n_layers;
	double before, max_evals = STEP_BUDGET / n;

	for (pass = 0; pass < MAX_PASSES; pass++) {
		before = s->total;
		for (i = 0; i < n && s->evals < max_evals; i++)
			improve_layer(s, i);
		if (!(s->total < before * (1 - MIN_GAIN)))
			break;
	}
}

static bool asg_valid(const struct plan_profile *pf, uint32_t w, bool dha, const uint8_t *asg)
{
	uint32_t i;

	for (i = 0; i < pf->n_layers; i++)
		if (asg[i] == PLAN_ASG_DHA ? !dha : asg[i] >= w)
			return false;
	return true;
}

/* dprt's search over n_links links from asg; see plan.h. 0 or an error. */
int plan_optimize(const struct plan_profile *pf, uint32_t n_links, bool dha, uint8_t *asg,
		  double *total_ns)
{
	struct search s = {.pf = pf, .w = n_links, .dha = dha};
	uint32_t n = pf->n_layers;
	uint8_t *buf;
	int ret;

	if (!n_links || n_links > pf->link.n_gpus || !asg_valid(pf, n_links, dha, asg))
		return err_set(-EINVAL, "planner: invalid starting assignment for %u links",
			       n_links);
	buf = malloc(4 * (size_t)n); /* cur, cand, start, DeepPlan's */
	if (!buf || plan_sim_init(&s.sim, n)) {
		free(buf);
		return err_set(-ENOMEM, "planner: out of memory");
	}
	s.cur = buf;
	s.cand = buf + n;
	memcpy(s.cur, asg, n);
	memcpy(buf + 2 * n, asg, n);
	s.total = INFINITY;
	eval(&s, s.cur, &s.total, &s.tie);
	ret = dha ? plan_v1_dha(pf, buf + 3 * n) : 0;
	if (!ret) {
		seed(&s, dha ? buf + 3 * n : NULL, buf + 2 * n);
		local_search(&s);
		memcpy(asg, s.cur, n);
		*total_ns = s.total;
	}
	plan_sim_fini(&s.sim);
	free(buf);
	return ret;
}

/* ------------------------------------------------------------- plans */

/* An empty plan for pf on n_gpus GPUs; see plan.h. */
int plan_create(const struct plan_profile *pf, uint32_t n_gpus, struct plan **out)
{
	struct plan *p;
	uint32_t i, n = pf->n_layers;

	*out = NULL;
	if (!n_gpus || n_gpus > pf->link.n_gpus)
		return err_set(-EINVAL,
			       "the profile of %s has link facts for %u GPUs; cannot plan for %u",
			       pf->model, pf->link.n_gpus, n_gpus);
	p = calloc(1, sizeof(*p));
	if (!p)
		return err_set(-ENOMEM, "plan: out of memory");
	p->prof = *pf;
	p->prof.layers = malloc((size_t)n * sizeof(*pf->layers));
	p->rows = calloc(n, sizeof(*p->rows));
	if (!p->prof.layers || !p->rows) {
		plan_destroy(p);
		return err_set(-ENOMEM, "plan: out of memory for %u layers", n);
	}
	memcpy(p->prof.layers, pf->layers, (size_t)n * sizeof(*pf->layers));
	p->prof.link.n_gpus = n_gpus;
	for (i = n_gpus; i < PLAN_MAX_GPUS; i++)
		p->prof.link.agg_bw[i] = 0;
	for (i = 0; i < n; i++)
		p->rows[i].order = i;
	p->width = 1;
	*out = p;
	return 0;
}

/* Free a plan (NULL is ignored). */
void plan_destroy(struct plan *p)
{
	if (!p)
		return;
	free(p->prof.layers);
	free(p->rows);
	free(p);
}

/* Number the helpers in use 1, 2, ... in order of first use; returns the
 * width. Helpers are alike, so the prediction does not change. */
static uint32_t normalize(uint8_t *asg, uint32_t n)
{
	uint8_t map[PLAN_MAX_GPUS];
	uint32_t i, next = 1;

	memset(map, 0xff, sizeof(map));
	for (i = 0; i < n; i++) {
		if (asg[i] == PLAN_ASG_DHA || !asg[i])
			continue;
		if (map[asg[i]] == 0xff)
			map[asg[i]] = (uint8_t)next++;
		asg[i] = map[asg[i]];
	}
	return next;
}

/* Rows and predictions of p from asg (normalized). */
static int fill_rows(struct plan *p, const uint8_t *asg, bool demand)
{
	uint32_t cnt[PLAN_MAX_GPUS] = {0}, i, n = p->prof.n_layers;
	struct plan_sim sim;
	int ret;

	if (plan_sim_init(&sim, n))
		return err_set(-ENOMEM, "plan: out of memory");
	ret = plan_sim_run(&sim, &p->prof, p->prof.link.n_gpus, asg, NULL, demand);
	if (ret) {
		plan_sim_fini(&sim);
		return err_set(ret, "plan: the planner made an invalid assignment");
	}
	for (i = 0; i < n; i++) {
		struct plan_row *r = &p->rows[i];
		bool dha = asg[i] == PLAN_ASG_DHA;

		r->place = dha ? PLAN_DHA : PLAN_LOAD;
		r->link = dha ? 0 : asg[i];
		r->order = dha ? PLAN_NO_ORDER : cnt[asg[i]]++;
		r->arrival_ns = sim.arrival[i];
		r->start_ns = sim.start[i];
		r->end_ns = sim.end[i];
	}
	p->total_ns = sim.total_ns;
	p->stall_ns = sim.stall_ns;
	plan_sim_fini(&sim);
	return 0;
}

/* Best plan over widths 1..n, each width starting from the one before.
 * The search for n links thus begins with the search for n - 1. */
static int cascade(const struct plan_profile *pf, uint32_t n, bool dha, uint8_t *asg)
{
	double t;
	uint32_t w;
	int ret = 0;

	for (w = 1; w <= n && !ret; w++)
		ret = plan_optimize(pf, w, dha, asg, &t);
	return ret;
}

static int assign(const struct plan_profile *pf, enum plan_mode mode, uint8_t *asg)
{
	uint32_t n = pf->link.n_gpus;
	double t;
	int ret;

	memset(asg, 0, pf->n_layers);
	switch (mode) {
	case PLAN_PIPELINE:
	case PLAN_DEMAND:
		return 0;
	case PLAN_PT:
		return cascade(pf, n, false, asg);
	default:
		break;
	}
	ret = plan_v1_dha(pf, asg);
	if (ret)
		return ret;
	switch (mode) {
	case PLAN_DEEPPLAN_V1:
		plan_v1_split(pf, n, asg);
		return 0;
	case PLAN_DEEPPLAN:
		return plan_optimize(pf, 1, true, asg, &t);
	default:
		return cascade(pf, n, true, asg);
	}
}

/* Plan pf's package on n_gpus GPUs in mode; see plan.h. Any thread. */
int plan_build(const struct plan_profile *pf, enum plan_mode mode, uint32_t n_gpus,
	       struct plan **out)
{
	struct plan *p;
	uint8_t *asg;
	int ret;

	*out = NULL;
	if ((unsigned)mode >= PLAN_MODE_COUNT)
		return err_set(-EINVAL, "plan: unknown mode %d", (int)mode);
	ret = plan_profile_validate(pf, "profile");
	if (!ret)
		ret = plan_create(pf, n_gpus, &p);
	if (ret)
		return ret;
	asg = malloc(pf->n_layers);
	if (!asg) {
		plan_destroy(p);
		return err_set(-ENOMEM, "plan: out of memory");
	}
	p->mode = mode;
	ret = assign(&p->prof, mode, asg);
	if (!ret) {
		p->width = normalize(asg, pf->n_layers);
		ret = fill_rows(p, asg, mode == PLAN_DEMAND);
	}
	free(asg);
	if (ret) {
		plan_destroy(p);
		return ret;
	}
	*out = p;
	return 0;
}

/* Bytes and layers per link and by DHA. Any thread. */
void plan_get_stats(const struct plan *p, struct plan_stats *st)
{
	uint32_t i;

	memset(st, 0, sizeof(*st));
	for (i = 0; i < p->prof.n_layers; i++) {
		const struct plan_row *r = &p->rows[i];
		uint64_t b = p->prof.layers[i].bytes;

		st->total_bytes += b;
		if (r->place == PLAN_DHA) {
			st->dha_bytes += b;
			st->dha_layers++;
		} else if (r->link < PLAN_MAX_GPUS) {
			st->link_bytes[r->link] += b;
			st->link_layers[r->link]++;
		}
	}
}
