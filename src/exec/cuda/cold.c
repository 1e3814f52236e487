/* SPDX-License-Identifier: MIT */
/*
 * Cold starts by plan (exec.h): the model's LOAD layers come into device
 * memory while its first inference runs.
 *
 * Groups: each link copies its layers in layer order; adjacent layers of
 * one link are copied as one group (one copy, one event) up to GROUP_BYTES,
 * so small layers (biases, norms) cost no copy each. A group gets one
 * device range from the pool, laid out like its host range, so every layer
 * of it sits at the same offset as in the weight region. The exec stream
 * waits on a group's event before the first node that reads a weight of
 * it (demand mode: on every link's last group before the first node).
 *
 * Links: link 0 is the target's own copy stream (d->copy, used only by its
 * owner thread). Helper slot k of the plan is lent, for one cold start, by
 * the first free link in the model's helper list: its host-to-device
 * stream fills one of two staging slots on the helper GPU, its peer stream
 * forwards the slot into the target's range with cuMemcpyPeerAsync and
 * records the slot free; the next fill of that slot waits for that event,
 * so a fill overlaps the previous forward and a slot is never overwritten
 * before its forward is done. With DPRT_PT_DIRECT=1 and peer access, the
 * helper copies host memory straight into the target's range instead.
 * Helper events belong to the link (a claim makes them the claimer's);
 * the target's group events belong to the model. Nothing is made per run.
 *
 * Order: the target's copies are queued once the run's inputs are on the
 * GPU (an event after the input copies), helpers' after them; an input
 * copy queued behind the weights on the host-to-device engine would hold
 * the whole run back until every weight had arrived.
 *
 * Graphs: a cold start (the run with its waits, the copy stream forked
 * from it after the input copies and joined at the end) is captured once
 * per shape plan and replayed, which removes the launch gaps of an eager
 * run. With helpers, their copies stay outside the graph: they are queued
 * just before each launch, and the graph waits on their group events as
 * external events; a graph is kept only while the same links are lent
 * (the events and the fallen-back groups are the links'). Whether a cold
 * start with helpers replays its graph or runs eagerly is measured per
 * model: the faster of the two is kept (see pt_graph). The captured addresses stay right as long as the
 * groups land where they did before: the pool is first-fit and an eviction
 * gives back every range, so a model that is evicted and cold-started again
 * gets the same ranges. When they move, the shape plans (with their graphs
 * and the GEMM descriptors that hold bias pointers) are remade; activation
 * arenas stay with their plans across evictions.
 *
 * Promotion (cuda_cold_promote; after every cold start with
 * DPRT_COLD_PROMOTE=1, read at model creation, default off): a resident
 * model's DHA layers are copied into device ranges of their own on the
 * target's copy stream, grouped like LOAD layers (adjacent layers up to
 * GROUP_BYTES share a range laid out like the host range: small layers
 * cost no copy and no allocation each, and no range is much larger than
 * a big layer alone, so ranges still fit the pool's holes), with one event
 * after the last copy. Nothing waits on it: the next cuda_cold_run (or
 * cuda_cold_promoted) that finds the event done switches those layers to
 * LOAD and remakes the shape plans (GEMM algorithms and addresses depend
 * on the places); until then runs read them from host memory. An eviction
 * gives the ranges back and puts the layers back to DHA, so the next cold
 * start runs the plan as before (its shape plans remade).
 *
 * Threads: a cold model is its device's thread's, like every model; links
 * are shared and claimed (claim = acquire, release = release).
 */
#include "cuda_priv.h"
#include "plan/plan.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STAGE_BYTES (32ull << 20) /* one staging slot of a helper link */
#define LINK_EVENTS 1024u	  /* group events of one helper link */
#define GROUP_BYTES (2ull << 20)  /* adjacent layers copied as one, up to this */
#define PT_TRIALS 2u		  /* cold starts with helpers timed eager, and graph */

struct cuda_link {
	struct cuda_dev *d;
	CUstream h2d, peer;
	uint64_t stage[2];
	CUevent staged[2];	   /* slot filled (h2d stream) */
	CUevent freed[2];	   /* slot forwarded (peer stream) */
	CUevent ev[LINK_EVENTS];   /* group arrived on the target */
	uint32_t slot;		   /* next staging slot: the claimer's */
	atomic_int claimed;	   /* 1 while a cold start holds the link */
};

/* Adjacent layers first..first+n-1 copied over one link as one range. */
struct cold_group {
	uint32_t first, n;
	uint32_t link;	/* plan slot: 0 = the target's own link */
	uint64_t dev;	/* device range on the target */
	uint64_t bytes; /* span of the host range */
	CUevent ev;	/* recorded once the range is on the target */
};

/* Where a promotion of the DHA layers stands. */
enum promo_state {
	PROMO_NONE,    /* DHA layers read from host memory, no ranges */
	PROMO_COPYING, /* ranges taken, copies queued, layers still DHA */
	PROMO_DONE,    /* layers LOAD in the ranges, shape plans remade */
};

struct cuda_cold {
	struct exec_model *m;
	uint32_t n_layers, width;
	bool demand;
	bool resident;
	bool per_layer;	   /* ranges are model creation's, one per layer */
	bool use_graph;	   /* DPRT_COLD_GRAPH unless "0" */
	bool graph_failed; /* a capture failed: eager from then on */
	bool direct;	   /* DPRT_PT_DIRECT=1 and every helper peer-mapped */
	uint8_t *link;	   /* [n_layers]: plan slot of each LOAD layer */
	uint64_t *last;	   /* [n_layers]: layer addresses at the last eviction */
	uint32_t *lgrp;	   /* [n_layers]: this run's group of a LOAD layer */
	struct cold_group *grp; /* [n_layers]: this run's groups, by link */
	uint8_t *waited;	/* [n_layers]: exec stream waits on group */
	uint32_t n_grp;
	uint32_t tail[CUDA_COLD_LINKS]; /* last group of each link, + 1; 0: none */
	CUevent *ev;			/* [n_layers]: the target's group events */
	CUevent fork, join;		/* graph capture of the copy stream */
	struct cuda_link **helpers;
	uint32_t n_helpers;
	struct cuda_link *slot[CUDA_COLD_LINKS]; /* this run's lent links */
	struct cuda_link *gslot[CUDA_COLD_LINKS]; /* links of the captured graphs */
	uint64_t pt_ns[2]; /* with helpers: fastest cold start eager [0], graph [1] */
	uint32_t pt_n[2];  /* how many each of those measured */
	int pt_try;	   /* this run measures pt_ns[pt_try]; -1: none */
	bool capturing;	     /* a cold start is being captured */
	bool helpers_queued; /* this run's helper copies are queued already */
	uint64_t bytes_dha;
	bool auto_promote;	 /* DPRT_COLD_PROMOTE=1: promote after cold starts */
	bool remade;		 /* an unpromotion dropped the shape plans */
	enum promo_state promo;
	struct cold_group *pgrp; /* [n_layers]: promoted ranges of DHA layers */
	uint32_t n_pgrp;
	CUevent promo_ev;	 /* recorded after the promotion's copies */
	uint64_t bytes_promoted; /* DHA layers' bytes in the ranges */
};

/* --------------------------------------------------------------- links */

/* Take lk for one cold start; false if another holds it. Any thread. */
bool cuda_link_claim(struct cuda_link *lk)
{
	int zero = 0;

	/* acquire: pairs with the release in cuda_link_release, so the
	 * previous claimer's use of slot and events happens before ours */
	return atomic_compare_exchange_strong_explicit(&lk->claimed, &zero, 1,
						       memory_order_acquire,
						       memory_order_relaxed);
}

/* Give lk back after the cold start's last use of it. Any thread. */
void cuda_link_release(struct cuda_link *lk)
{
	atomic_store_explicit(&lk->claimed, 0, memory_order_release);
}

static int link_events(struct cuda_link *lk)
{
	uint32_t i;
	int ret = 0;

	for (i = 0; i < 2 && !ret; i++)
		ret = CU(cuEventCreate(&lk->staged[i], CU_EVENT_DISABLE_TIMING)) ?:
		      CU(cuEventCreate(&lk->freed[i], CU_EVENT_DISABLE_TIMING));
	for (i = 0; i < LINK_EVENTS && !ret; i++)
		ret = CU(cuEventCreate(&lk->ev[i], CU_EVENT_DISABLE_TIMING));
	return ret;
}

/* Make d's link (streams, staging, events). d's thread. 0 or err_set. */
int cuda_link_create(struct cuda_dev *d, struct cuda_link **out)
{
	struct cuda_link *lk = calloc(1, sizeof(*lk));
	char why[512];
	int ret;

	if (!lk)
		return err_set(-ENOMEM, "cuda: out of memory for a link");
	lk->d = d;
	atomic_init(&lk->claimed, 0);
	ret = cuda_dev_enter(d) ?: CU(cuStreamCreate(&lk->h2d, CU_STREAM_NON_BLOCKING)) ?:
	      CU(cuStreamCreate(&lk->peer, CU_STREAM_NON_BLOCKING)) ?:
	      devpool_alloc(d->pool, STAGE_BYTES, "link staging", &lk->stage[0]) ?:
	      devpool_alloc(d->pool, STAGE_BYTES, "link staging", &lk->stage[1]) ?:
	      link_events(lk);
	if (ret) {
		snprintf(why, sizeof(why), "%s", err_msg(ret));
		cuda_link_destroy(lk);
		return err_set(ret, "cuda: GPU %d: cannot make its transfer link: %s",
			       d->ordinal, why);
	}
	*out = lk;
	return 0;
}

static void destroy_event(CUevent e)
{
	if (e)
		CU(cuEventDestroy(e));
}

/* Free a link no cold start holds (NULL ignored). Its device's thread. */
void cuda_link_destroy(struct cuda_link *lk)
{
	uint32_t i;

	if (!lk)
		return;
	cuda_dev_enter(lk->d);
	if (lk->h2d)
		CU(cuStreamSynchronize(lk->h2d));
	if (lk->peer)
		CU(cuStreamSynchronize(lk->peer));
	for (i = 0; i < 2; i++) {
		destroy_event(lk->staged[i]);
		destroy_event(lk->freed[i]);
		devpool_free(lk->d->pool, lk->stage[i]);
	}
	for (i = 0; i < LINK_EVENTS; i++)
		destroy_event(lk->ev[i]);
	if (lk->h2d)
		CU(cuStreamDestroy(lk->h2d));
	if (lk->peer)
		CU(cuStreamDestroy(lk->peer));
	free(lk);
}

/* ------------------------------------------------------------ plans */

/* p fits g and the engine: same layers and bytes, valid rows, each link's
 * layers in layer order (as the planner makes them). */
static int check_plan(const struct graph *g, const struct plan *p)
{
	uint32_t cnt[CUDA_COLD_LINKS] = {0}, l;

	if (p->prof.n_layers != g->n_layers)
		return err_set(DPRT_EBADPLAN, "plan for %s (%u layers) does not fit %s (%u layers)",
			       p->prof.model, p->prof.n_layers, g->name, g->n_layers);
	if (!p->width || p->width > CUDA_COLD_LINKS)
		return err_set(DPRT_EBADPLAN, "plan for %s: width %u (1..%u supported)", g->name,
			       p->width, CUDA_COLD_LINKS);
	for (l = 0; l < g->n_layers; l++) {
		const struct plan_row *r = &p->rows[l];

		if (p->prof.layers[l].bytes != g->layers[l].nbytes)
			return err_set(DPRT_EBADPLAN, "plan for %s: layer %u (%s) has %llu bytes, "
				       "the model %llu", g->name, l, g->layers[l].name,
				       (unsigned long long)p->prof.layers[l].bytes,
				       (unsigned long long)g->layers[l].nbytes);
		if (r->place == PLAN_DHA)
			continue;
		if (r->place != PLAN_LOAD || r->link >= p->width)
			return err_set(DPRT_EBADPLAN, "plan for %s: layer %u has placement %u on "
				       "link %u of %u", g->name, l, r->place, r->link, p->width);
		if (r->order != cnt[r->link]++)
			return err_set(DPRT_EBADPLAN, "plan for %s: layer %u is copied out of layer "
				       "order on link %u, which the engine does not do", g->name,
				       l, r->link);
		if (r->link && cnt[r->link] > LINK_EVENTS)
			return err_set(DPRT_EBADPLAN, "plan for %s: more than %u layers on helper "
				       "link %u", g->name, LINK_EVENTS, r->link);
	}
	return 0;
}

static void take_plan(struct cuda_cold *c, const struct plan *p)
{
	const struct graph *g = c->m->g;
	uint32_t l;

	c->width = p->width;
	c->demand = p->mode == PLAN_DEMAND;
	memset(c->pt_ns, 0, sizeof(c->pt_ns));
	memset(c->pt_n, 0, sizeof(c->pt_n));
	c->bytes_dha = 0;
	for (l = 0; l < c->n_layers; l++) {
		c->link[l] = (uint8_t)(p->rows[l].place == PLAN_LOAD ? p->rows[l].link : 0);
		if (p->rows[l].place == PLAN_DHA)
			c->bytes_dha += g->layers[l].nbytes;
	}
}

static void drop_plans(struct exec_model *m)
{
	int i;

	for (i = 0; i < CUDA_PLANS; i++) {
		cuda_plan_destroy(m, m->plans[i]);
		m->plans[i] = NULL;
	}
}

static void drop_cold_graphs(struct exec_model *m)
{
	int i;

	for (i = 0; i < CUDA_PLANS; i++) {
		if (!m->plans[i] || !m->plans[i]->cold_gexec)
			continue;
		CU(cuGraphExecDestroy(m->plans[i]->cold_gexec));
		m->plans[i]->cold_gexec = NULL;
	}
}

/* ------------------------------------------------------------ groups */

static uint32_t eff_link(const struct cuda_cold *c, uint32_t l)
{
	uint32_t k = c->link[l];

	return k && !c->slot[k] ? 0 : k;
}

/* Span of layers first..last of the weight region. */
static uint64_t span(const struct graph *g, uint32_t first, uint32_t last)
{
	return g->layers[last].offset + g->layers[last].nbytes - g->layers[first].offset;
}

/* Layer l joins group open (the last of grp[*n], or NULL) if it follows
 * open's last layer and the span stays within GROUP_BYTES, else opens
 * grp[(*n)++] on link k. Returns l's group. */
static struct cold_group *add_layer(const struct graph *g, struct cold_group *grp, uint32_t *n,
				    struct cold_group *open, uint32_t l, uint32_t k)
{
	if (open && open->first + open->n == l && span(g, open->first, l) <= GROUP_BYTES) {
		open->n++;
		open->bytes = span(g, open->first, l);
		return open;
	}
	open = &grp[(*n)++];
	memset(open, 0, sizeof(*open));
	open->first = l;
	open->n = 1;
	open->link = k;
	open->bytes = g->layers[l].nbytes;
	return open;
}

static void group_link(struct cuda_cold *c, uint32_t k)
{
	struct cold_group *open = NULL;
	uint32_t l;

	for (l = 0; l < c->n_layers; l++) {
		if (c->m->place[l] != PLACE_LOAD || eff_link(c, l) != k)
			continue;
		open = add_layer(c->m->g, c->grp, &c->n_grp, open, l, k);
		c->lgrp[l] = (uint32_t)(open - c->grp);
	}
	c->tail[k] = open ? (uint32_t)(open - c->grp) + 1 : 0;
}

static void make_groups(struct cuda_cold *c)
{
	uint32_t k;

	c->n_grp = 0;
	memset(c->tail, 0, sizeof(c->tail));
	for (k = 0; k < c->width; k++)
		if (!k || c->slot[k])
			group_link(c, k);
}

/* Take a range per group; lay the layers out in it; say whether any layer
 * landed elsewhere than before the last eviction. */
static int alloc_groups(struct cuda_cold *c, bool *moved)
{
	struct exec_model *m = c->m;
	const struct graph *g = m->g;
	uint32_t i, l;
	int ret;

	*moved = false;
	for (i = 0; i < c->n_grp; i++) {
		struct cold_group *gr = &c->grp[i];

		ret = devpool_alloc(m->d->pool, gr->bytes, g->layers[gr->first].name, &gr->dev);
		if (ret) {
			while (i--)
				devpool_free(m->d->pool, c->grp[i].dev);
			memset(m->layer_dev, 0, sizeof(*m->layer_dev) * c->n_layers);
			c->n_grp = 0;
			return ret;
		}
		for (l = gr->first; l < gr->first + gr->n; l++) {
			m->layer_dev[l] = gr->dev + (g->layers[l].offset - g->layers[gr->first].offset);
			*moved |= m->layer_dev[l] != c->last[l];
		}
	}
	return 0;
}

/* Give every LOAD range back; remember where the layers were. */
static void free_ranges(struct cuda_cold *c)
{
	struct exec_model *m = c->m;
	uint32_t i;

	if (c->per_layer) {
		for (i = 0; i < c->n_layers; i++)
			devpool_free(m->d->pool, m->layer_dev[i]);
	} else {
		for (i = 0; i < c->n_grp; i++)
			devpool_free(m->d->pool, c->grp[i].dev);
	}
	for (i = 0; i < c->n_layers; i++) {
		if (m->place[i] == PLACE_LOAD)
			c->last[i] = m->layer_dev[i];
		m->layer_dev[i] = 0;
	}
	c->per_layer = false;
	c->n_grp = 0;
	c->resident = false;
}

/* ----------------------------------------------------------- copying */

static int copy_own(struct cuda_cold *c)
{
	struct exec_model *m = c->m;
	const struct graph *g = m->g;
	uint32_t i;
	int ret = 0;

	for (i = 0; i < c->n_grp && !ret; i++) {
		struct cold_group *gr = &c->grp[i];

		if (gr->link)
			continue;
		gr->ev = c->ev[i];
		if (gr->bytes)
			ret = CU(cuMemcpyHtoDAsync(gr->dev, m->host + g->layers[gr->first].offset,
						   gr->bytes, m->d->copy));
		if (!ret)
			ret = CU(cuEventRecord(gr->ev, m->d->copy));
	}
	return ret;
}

/* Through the two staging slots: fill (after the slot's last forward),
 * forward, mark the slot free. */
static int copy_staged(struct cuda_cold *c, struct cuda_link *lk, const struct cold_group *gr)
{
	struct exec_model *m = c->m;
	const char *src = m->host + m->g->layers[gr->first].offset;
	uint64_t off, n;
	int ret = 0;

	for (off = 0; off < gr->bytes && !ret; off += n) {
		uint32_t s = lk->slot;

		n = MIN(STAGE_BYTES, gr->bytes - off);
		lk->slot ^= 1;
		ret = CU(cuStreamWaitEvent(lk->h2d, lk->freed[s], 0)) ?:
		      CU(cuMemcpyHtoDAsync(lk->stage[s], src + off, n, lk->h2d)) ?:
		      CU(cuEventRecord(lk->staged[s], lk->h2d)) ?:
		      CU(cuStreamWaitEvent(lk->peer, lk->staged[s], 0)) ?:
		      CU(cuMemcpyPeerAsync(gr->dev + off, m->d->ctx, lk->stage[s], lk->d->ctx, n,
					   lk->peer)) ?:
		      CU(cuEventRecord(lk->freed[s], lk->peer));
	}
	return ret;
}

static int copy_helper(struct cuda_cold *c, uint32_t k)
{
	struct cuda_link *lk = c->slot[k];
	struct exec_model *m = c->m;
	uint32_t i, j = 0;
	int ret;

	ret = cuda_dev_enter(lk->d);
	for (i = 0; i < c->n_grp && !ret; i++) {
		struct cold_group *gr = &c->grp[i];

		if (gr->link != k)
			continue;
		gr->ev = lk->ev[j++];
		if (c->direct && gr->bytes)
			ret = CU(cuMemcpyHtoDAsync(gr->dev, m->host + m->g->layers[gr->first].offset,
						   gr->bytes, lk->h2d)) ?:
			      CU(cuEventRecord(gr->ev, lk->h2d));
		else
			ret = copy_staged(c, lk, gr) ?: CU(cuEventRecord(gr->ev, lk->peer));
	}
	return cuda_dev_enter(m->d) ?: ret;
}

static int copy_helpers(struct cuda_cold *c)
{
	uint32_t k;
	int ret = 0;

	for (k = 1; k < c->width && !ret; k++)
		if (c->slot[k] && c->tail[k])
			ret = copy_helper(c, k);
	return ret;
}

/* The target's own copies start once the run's inputs are on the GPU: an
 * input copy queued behind the weights would hold the whole run back (both
 * use the GPU's host-to-device engine). The fork also makes the copy
 * stream join a capture. */
static int copy_own_after_inputs(struct cuda_cold *c)
{
	struct cuda_dev *d = c->m->d;

	return CU(cuEventRecord(c->fork, d->stream)) ?: CU(cuStreamWaitEvent(d->copy, c->fork, 0)) ?:
	       copy_own(c);
}

/* --------------------------------------------------------- promotion */

/* The DHA layers' groups, by the LOAD groups' rule. */
static void make_promo_groups(struct cuda_cold *c)
{
	struct cold_group *open = NULL;
	uint32_t l;

	c->n_pgrp = 0;
	for (l = 0; l < c->n_layers; l++)
		if (c->m->place[l] == PLACE_DHA)
			open = add_layer(c->m->g, c->pgrp, &c->n_pgrp, open, l, 0);
}

/* A range per promoted group; on failure none is kept. */
static int alloc_promoted(struct cuda_cold *c)
{
	struct exec_model *m = c->m;
	uint32_t i;
	int ret;

	for (i = 0; i < c->n_pgrp; i++) {
		struct cold_group *gr = &c->pgrp[i];

		ret = devpool_alloc(m->d->pool, gr->bytes, m->g->layers[gr->first].name,
				    &gr->dev);
		if (ret) {
			while (i--)
				devpool_free(m->d->pool, c->pgrp[i].dev);
			c->n_pgrp = 0;
			return ret;
		}
	}
	return 0;
}

/* Give the promoted ranges back; no copy may still write them. */
static void free_promoted(struct cuda_cold *c)
{
	uint32_t i;

	for (i = 0; i < c->n_pgrp; i++)
		devpool_free(c->m->d->pool, c->pgrp[i].dev);
	c->n_pgrp = 0;
	c->promo = PROMO_NONE;
}

/* Queue the copies on the target's copy stream, then the event. */
static int copy_promoted(struct cuda_cold *c)
{
	struct exec_model *m = c->m;
	uint32_t i;
	int ret = 0;

	for (i = 0; i < c->n_pgrp && !ret; i++) {
		const struct cold_group *gr = &c->pgrp[i];

		if (gr->bytes)
			ret = CU(cuMemcpyHtoDAsync(gr->dev, m->host + m->g->layers[gr->first].offset,
						   gr->bytes, m->d->copy));
	}
	return ret ?: CU(cuEventRecord(c->promo_ev, m->d->copy));
}

/* Start copying m's DHA layers into device memory; see exec.h. */
int cuda_cold_promote(struct exec_model *m)
{
	struct cuda_cold *c = m->cold;
	char why[512];
	int ret;

	if (!c)
		return err_set(-EINVAL, "%s: not a cold model (see cuda_cold_model_create)",
			       m->g->name);
	if (!c->resident || c->promo != PROMO_NONE)
		return 0;
	ret = cuda_dev_enter(m->d);
	if (ret)
		return ret;
	make_promo_groups(c);
	if (!c->n_pgrp)
		return 0;
	ret = alloc_promoted(c);
	if (!ret)
		ret = copy_promoted(c);
	if (!ret) {
		c->promo = PROMO_COPYING;
		return 0;
	}
	snprintf(why, sizeof(why), "%s", err_msg(ret));
	if (c->n_pgrp) { /* a copy failed: let those queued finish first */
		CU(cuStreamSynchronize(m->d->copy));
		free_promoted(c);
	}
	return err_set(ret, "%s: cannot promote its DHA layers into device memory: %s",
		       m->g->name, why);
}

/* The copies are done: the promoted layers become LOAD in their ranges
 * and the shape plans are remade for them at the next run. */
static void switch_promoted(struct cuda_cold *c)
{
	struct exec_model *m = c->m;
	const struct graph *g = m->g;
	uint32_t i, l;

	c->bytes_promoted = 0;
	for (i = 0; i < c->n_pgrp; i++) {
		const struct cold_group *gr = &c->pgrp[i];

		for (l = gr->first; l < gr->first + gr->n; l++) {
			m->place[l] = PLACE_LOAD;
			m->layer_dev[l] = gr->dev + (g->layers[l].offset - g->layers[gr->first].offset);
			c->bytes_promoted += g->layers[l].nbytes;
		}
	}
	drop_plans(m);
	cuda_model_bind_weights(m);
	c->promo = PROMO_DONE;
}

/* Switch if the promotion's copies are done, never waiting; the device's
 * context is current. True once switched. A failed copy gives the ranges
 * back (logged): the layers stay DHA. */
static bool poll_promoted(struct cuda_cold *c, struct cuda_cold_stats *st)
{
	struct exec_model *m = c->m;
	CUresult r;

	if (c->promo != PROMO_COPYING)
		return c->promo == PROMO_DONE;
	r = cu.cuEventQuery(c->promo_ev);
	if (r == CUDA_ERROR_NOT_READY)
		return false;
	if (r != CUDA_SUCCESS) {
		log_warn("cuda: %s: promotion of its DHA layers failed, reading them from host "
			 "memory: %s", m->g->name, err_msg(cudrv_check(r, "cuEventQuery")));
		CU(cuStreamSynchronize(m->d->copy));
		err_clear();
		free_promoted(c);
		return false;
	}
	switch_promoted(c);
	if (st)
		st->bytes_promoted = c->bytes_promoted;
	return true;
}

/* Whether m's DHA layers now run from device memory; see exec.h. */
bool cuda_cold_promoted(struct exec_model *m)
{
	struct cuda_cold *c = m->cold;

	if (!c || c->promo == PROMO_NONE)
		return false;
	if (c->promo == PROMO_COPYING && cuda_dev_enter(m->d)) {
		err_clear();
		return false;
	}
	return poll_promoted(c, NULL);
}

/* Back to the plan's DHA layers, the promoted ranges given back; no copy
 * may still write them. remake: drop the shape plans and rebind the
 * weights if the layers had switched (not at model destruction). */
static void unpromote(struct cuda_cold *c, bool remake)
{
	struct exec_model *m = c->m;
	bool switched = c->promo == PROMO_DONE;
	uint32_t i, l;

	if (c->promo == PROMO_NONE)
		return;
	for (i = 0; switched && i < c->n_pgrp; i++) {
		const struct cold_group *gr = &c->pgrp[i];

		for (l = gr->first; l < gr->first + gr->n; l++) {
			m->place[l] = PLACE_DHA;
			m->layer_dev[l] = 0;
		}
	}
	free_promoted(c);
	c->bytes_promoted = 0;
	if (switched && remake) {
		drop_plans(m);
		cuda_model_bind_weights(m);
		c->remade = true;
	}
}

/* --------------------------------------------------------------- run */

struct cold_run {
	struct cuda_cold *c;
	struct cuda_plan *pl;
};

/* A helper's group is copied outside a captured graph (before its
 * launch), so the graph waits on its event as an external event. */
static int wait_group(struct cuda_cold *c, uint32_t gi)
{
	unsigned flags = c->capturing && c->grp[gi].link ? CU_EVENT_WAIT_EXTERNAL : 0;

	if (c->waited[gi])
		return 0;
	c->waited[gi] = 1;
	return CU(cuStreamWaitEvent(c->m->d->stream, c->grp[gi].ev, flags));
}

static int wait_inputs(struct cuda_cold *c, const struct node *nd)
{
	const struct exec_model *m = c->m;
	uint32_t k, t;
	int ret = 0;

	for (k = 0; k < nd->n_in && !ret; k++) {
		t = nd->in[k];
		if (t == NO_TENSOR || m->g->tensors[t].kind != TK_WEIGHT ||
		    m->place[m->g->tensors[t].layer] != PLACE_LOAD)
			continue;
		ret = wait_group(c, c->lgrp[m->g->tensors[t].layer]);
	}
	return ret;
}

/* The exec stream's waits: before a node, for the groups of the weights it
 * (and a node its epilogue does) reads; in demand mode, for every link's
 * last group before the first node; in any mode, for those before the
 * outputs are copied. A link's groups arrive in order, so its last
 * group's event covers them all. */
static int cold_hook(void *ctx, uint32_t i)
{
	struct cold_run *r = ctx;
	struct cuda_cold *c = r->c;
	const struct graph *g = c->m->g;
	uint32_t k, f;
	int ret = 0;

	if (!i)
		ret = copy_own_after_inputs(c) ?: (c->helpers_queued ? 0 : copy_helpers(c));
	/* demand: everything before the first node; all: everything before
	 * the outputs, so no copy outlives the run */
	if (!ret && (i >= g->n_nodes || (c->demand && !i))) {
		for (k = 0; k < c->width && !ret; k++)
			if (c->tail[k])
				ret = wait_group(c, c->tail[k] - 1);
		return ret;
	}
	if (ret || c->demand)
		return ret;
	ret = wait_inputs(c, &g->nodes[i]);
	f = r->pl->rt[i].fused;
	if (!ret && f)
		ret = wait_inputs(c, &g->nodes[f]);
	return ret;
}

static int enqueue_cold(struct cuda_cold *c, struct cuda_plan *pl)
{
	struct cold_run r = {c, pl};
	struct cuda_hook h = {cold_hook, &r};

	memset(c->waited, 0, c->n_layers);
	return cuda_model_enqueue(c->m, pl, &h);
}

/* Record copies and run as one graph: the copy stream forks from the exec
 * stream after the input copies (cold_hook) and joins it at the end. */
static int capture_cold(struct cuda_cold *c, struct cuda_plan *pl)
{
	struct cuda_dev *d = c->m->d;
	CUgraph graph = NULL;
	int ret, end;

	ret = CU(cuStreamBeginCapture(d->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	if (ret)
		return ret;
	c->capturing = true;
	ret = enqueue_cold(c, pl) ?: CU(cuEventRecord(c->join, d->copy)) ?:
	      CU(cuStreamWaitEvent(d->stream, c->join, 0));
	c->capturing = false;
	end = CU(cuStreamEndCapture(d->stream, &graph));
	ret = ret ?: end;
	if (!ret)
		ret = CU(cuGraphInstantiate(&pl->cold_gexec, graph, 0));
	if (graph)
		CU(cuGraphDestroy(graph));
	if (ret)
		pl->cold_gexec = NULL;
	return ret;
}

static bool graph_ok(const struct cuda_cold *c, const struct cuda_plan *pl)
{
	return c->use_graph && !c->graph_failed && !pl->no_graph && !c->m->no_graphs;
}

/*
 * With helpers, a graph holds the target's part (its copies and the run,
 * waiting on the helpers' group events as external events); the helpers'
 * copies are queued eagerly just before it is launched. The graph is right
 * only for the links it was captured with (their events, and the groups
 * that fell back to the target's link): other links, other graphs.
 *
 * Such a graph saves the run's launch gaps, but the target's first copy
 * and kernel now wait until every helper copy is queued; which costs less
 * depends on the model (ResNets launch many short kernels, BERTs have many
 * helper copies). So the first cold starts with these links measure both,
 * PT_TRIALS eager (the very first may pay for lazy loading), then as many
 * replays of the graph once captured, and the faster one is kept.
 */
static bool pt_graph(struct cuda_cold *c, const struct cuda_plan *pl)
{
	if (memcmp(c->gslot, c->slot, sizeof(c->slot))) {
		drop_cold_graphs(c->m);
		memcpy(c->gslot, c->slot, sizeof(c->slot));
		memset(c->pt_ns, 0, sizeof(c->pt_ns));
		memset(c->pt_n, 0, sizeof(c->pt_n));
	}
	if (c->pt_n[0] < PT_TRIALS) {
		c->pt_try = 0;
		return false;
	}
	if (c->pt_n[1] < PT_TRIALS) {
		c->pt_try = pl->cold_gexec ? 1 : -1; /* a capture's run is no measure */
		return true;
	}
	return c->pt_ns[1] < c->pt_ns[0];
}

static int launch(struct cuda_cold *c, struct cuda_plan *pl, struct cuda_cold_stats *st)
{
	int ret;

	c->helpers_queued = false;
	c->pt_try = -1;
	if (graph_ok(c, pl) && c->width > 1) {
		if (!pt_graph(c, pl))
			return enqueue_cold(c, pl);
		ret = copy_helpers(c);
		if (ret)
			return ret;
		c->helpers_queued = true;
	}
	if (graph_ok(c, pl) && !pl->cold_gexec) {
		ret = capture_cold(c, pl);
		if (ret) {
			log_warn("cuda: %s: cannot capture the cold start, running it "
				 "eagerly: %s", c->m->g->name, err_msg(ret));
			err_clear();
			c->graph_failed = true;
		}
	}
	if (graph_ok(c, pl) && pl->cold_gexec) {
		st->graph = true;
		return CU(cuGraphLaunch(pl->cold_gexec, c->m->d->stream));
	}
	return enqueue_cold(c, pl);
}

/* Lend helper slots 1..width-1 the first free links of the model's list. */
static void claim_links(struct cuda_cold *c, struct cuda_cold_stats *st)
{
	uint32_t k, h, used = 0;

	memset(c->slot, 0, sizeof(c->slot));
	for (k = 1; k < c->width; k++) {
		for (h = 0; h < c->n_helpers && !c->slot[k]; h++) {
			if ((used >> h) & 1 || !cuda_link_claim(c->helpers[h]))
				continue;
			c->slot[k] = c->helpers[h];
			used |= 1u << h;
		}
		st->fallbacks += !c->slot[k];
	}
}

static void release_links(struct cuda_cold *c)
{
	uint32_t k;

	for (k = 1; k < CUDA_COLD_LINKS; k++) {
		if (c->slot[k])
			cuda_link_release(c->slot[k]);
		c->slot[k] = NULL;
	}
}

/* After a failure: let every stream that took work finish. */
static void quiesce(struct cuda_cold *c)
{
	uint32_t k;

	for (k = 1; k < CUDA_COLD_LINKS; k++) {
		if (!c->slot[k] || cuda_dev_enter(c->slot[k]->d))
			continue;
		CU(cuStreamSynchronize(c->slot[k]->h2d));
		CU(cuStreamSynchronize(c->slot[k]->peer));
	}
	cuda_dev_enter(c->m->d);
	CU(cuStreamSynchronize(c->m->d->copy));
	CU(cuStreamSynchronize(c->m->d->stream));
}

static void fill_stats(const struct cuda_cold *c, struct cuda_cold_stats *st)
{
	uint32_t i, k;

	st->cold = true;
	st->copies = c->n_grp;
	st->bytes_dha = c->bytes_dha;
	for (i = 0; i < c->n_grp; i++) {
		st->bytes_link[c->grp[i].link] += c->grp[i].bytes;
		st->bytes_loaded += c->grp[i].bytes;
	}
	for (k = 0; k < CUDA_COLD_LINKS; k++)
		st->links += st->bytes_link[k] != 0;
}

/* Bring the weights in while running pl; the claims are held. */
static int cold_start(struct cuda_cold *c, const struct tview *in, struct cuda_plan **pl,
		      struct cuda_cold_stats *st)
{
	struct exec_model *m = c->m;
	uint64_t t0;
	bool moved;
	int ret;

	make_groups(c);
	ret = alloc_groups(c, &moved);
	if (ret)
		return ret;
	if (moved) {
		cuda_model_bind_weights(m);
		drop_plans(m);
	}
	st->replanned = moved || c->remade;
	c->remade = false;
	ret = cuda_model_prepare(m, in, pl);
	t0 = clock_ns();
	ret = ret ?: launch(c, *pl, st);
	if (!ret)
		ret = CU(cuStreamSynchronize(m->d->stream));
	if (!ret && c->pt_try >= 0) {
		uint64_t ns = clock_ns() - t0;

		if (!c->pt_n[c->pt_try]++ || ns < c->pt_ns[c->pt_try])
			c->pt_ns[c->pt_try] = ns;
	}
	if (ret) {
		quiesce(c);
		free_ranges(c);
	}
	return ret;
}

/* A cold start of m by its plan (or a warm run); see exec.h. */
int cuda_cold_run(struct exec_model *m, const struct tview *in, struct tview *out,
		  struct cuda_cold_stats *st)
{
	struct cuda_cold *c = m->cold;
	struct cuda_cold_stats local;
	struct cuda_plan *pl = NULL;
	char why[512];
	int ret;

	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	if (!c)
		return err_set(-EINVAL, "%s: not a cold model (see cuda_cold_model_create)",
			       m->g->name);
	if (c->resident && c->promo == PROMO_COPYING) {
		ret = cuda_dev_enter(m->d);
		if (ret)
			return ret;
		poll_promoted(c, st);
	}
	if (c->resident)
		return cuda_backend.model_run(m, in, out);
	ret = cuda_dev_enter(m->d);
	if (ret)
		return ret;
	claim_links(c, st);
	ret = cold_start(c, in, &pl, st);
	release_links(c);
	if (ret) {
		snprintf(why, sizeof(why), "%s", err_msg(ret));
		return err_set(ret, "%s: cold start failed: %s", m->g->name, why);
	}
	c->resident = true;
	fill_stats(c, st);
	if (c->auto_promote) {
		ret = cuda_cold_promote(m);
		if (ret) {
			log_warn("%s", err_msg(ret));
			err_clear();
		}
	}
	return cuda_model_finish(m, pl, in, out);
}

/* Give m's LOAD (and promoted) ranges back to the pool; see exec.h. */
int cuda_cold_evict(struct exec_model *m)
{
	struct cuda_cold *c = m->cold;
	int ret;

	if (!c)
		return err_set(-EINVAL, "%s: not a cold model (see cuda_cold_model_create)",
			       m->g->name);
	if (!c->resident)
		return 0;
	ret = cuda_dev_enter(m->d) ?: CU(cuStreamSynchronize(m->d->stream)) ?:
	      CU(cuStreamSynchronize(m->d->copy));
	if (ret)
		return ret;
	unpromote(c, true);
	free_ranges(c);
	return 0;
}

/* Whether m's LOAD layers are on the GPU (models without cold state: yes). */
bool cuda_cold_resident(const struct exec_model *m)
{
	return !m->cold || m->cold->resident;
}

/* ------------------------------------------------------------ lifecycle */

/* Free m's cold state at model destruction (stream idle). */
void cuda_cold_free(struct exec_model *m)
{
	struct cuda_cold *c = m->cold;
	uint32_t i;

	if (!c)
		return;
	if (c->promo == PROMO_COPYING)
		CU(cuEventSynchronize(c->promo_ev));
	unpromote(c, false);
	if (c->resident)
		free_ranges(c);
	for (i = 0; c->ev && i < c->n_layers; i++)
		destroy_event(c->ev[i]);
	destroy_event(c->fork);
	destroy_event(c->join);
	destroy_event(c->promo_ev);
	free(c->ev);
	free(c->link);
	free(c->last);
	free(c->lgrp);
	free(c->grp);
	free(c->pgrp);
	free(c->waited);
	free(c->helpers);
	free(c);
	m->cold = NULL;
}

static int alloc_cold(struct exec_model *m, struct cuda_link *const *helpers, uint32_t n_helpers)
{
	uint32_t n = m->g->n_layers + 1, i;
	struct cuda_cold *c = calloc(1, sizeof(*c));
	int ret = 0;

	if (!c)
		return err_set(-ENOMEM, "%s: out of memory", m->g->name);
	m->cold = c;
	c->m = m;
	c->n_layers = m->g->n_layers;
	c->link = calloc(n, sizeof(*c->link));
	c->last = calloc(n, sizeof(*c->last));
	c->lgrp = calloc(n, sizeof(*c->lgrp));
	c->grp = calloc(n, sizeof(*c->grp));
	c->pgrp = calloc(n, sizeof(*c->pgrp));
	c->waited = calloc(n, sizeof(*c->waited));
	c->ev = calloc(n, sizeof(*c->ev));
	c->helpers = calloc(n_helpers + 1, sizeof(*c->helpers));
	if (!c->link || !c->last || !c->lgrp || !c->grp || !c->pgrp || !c->waited || !c->ev ||
	    !c->helpers)
		return err_set(-ENOMEM, "%s: out of memory", m->g->name);
	for (i = 0; i < n_helpers; i++)
		if (helpers[i] && helpers[i]->d != m->d && c->n_helpers < 32)
			c->helpers[c->n_helpers++] = helpers[i];
	for (i = 0; i < c->n_layers && !ret; i++)
		ret = CU(cuEventCreate(&c->ev[i], CU_EVENT_DISABLE_TIMING));
	return ret ?: CU(cuEventCreate(&c->fork, CU_EVENT_DISABLE_TIMING)) ?:
		      CU(cuEventCreate(&c->join, CU_EVENT_DISABLE_TIMING)) ?:
		      CU(cuEventCreate(&c->promo_ev, CU_EVENT_DISABLE_TIMING));
}

/* Access from a's context to b's memory; already enabled is fine. */
static int enable_peer(struct cuda_dev *a, struct cuda_dev *b)
{
	CUresult r;
	int ret;

	ret = cuda_dev_enter(a);
	if (ret)
		return ret;
	r = cu.cuCtxEnablePeerAccess(b->ctx, 0);
	if (r == CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED)
		r = CUDA_SUCCESS;
	return cudrv_check(r, "cuCtxEnablePeerAccess");
}

/* Peer access both ways with every helper that can have it; direct
 * copies only if all can. */
static int setup_peers(struct cuda_cold *c)
{
	struct cuda_dev *d = c->m->d;
	bool all = true;
	uint32_t h;
	int can = 0, ret = 0;

	for (h = 0; h < c->n_helpers && !ret; h++) {
		struct cuda_dev *x = c->helpers[h]->d;

		ret = CU(cuDeviceCanAccessPeer(&can, x->dev, d->dev));
		if (!ret && can)
			ret = enable_peer(x, d) ?: enable_peer(d, x);
		all &= can != 0;
	}
	c->direct = all && getenv("DPRT_PT_DIRECT") && !strcmp(getenv("DPRT_PT_DIRECT"), "1");
	return ret ?: cuda_dev_enter(d);
}

static uint8_t *places_of(const struct plan *p)
{
	uint8_t *place = calloc(p->prof.n_layers + 1, 1);
	uint32_t l;

	for (l = 0; place && l < p->prof.n_layers; l++)
		place[l] = p->rows[l].place == PLAN_DHA ? PLACE_DHA : PLACE_LOAD;
	return place;
}

/* A model for cold starts by plan p, evicted; see exec.h. d's thread. */
int cuda_cold_model_create(struct cuda_dev *d, const struct graph *g, const void *weights,
			   const struct plan *p, struct cuda_link *const *helpers,
			   uint32_t n_helpers, struct exec_model **out)
{
	struct exec_model *m = NULL;
	uint8_t *place;
	char why[512];
	int ret;

	ret = check_plan(g, p);
	if (ret)
		return ret;
	place = places_of(p);
	if (!place)
		return err_set(-ENOMEM, "%s: out of memory", g->name);
	ret = cuda_backend.model_create_placed(d, g, weights, place, &m);
	free(place);
	if (ret)
		return ret;
	if (!m->host_dev && g->weights_size) {
		ret = err_set(DPRT_EUNSUP, "%s: cold starts need the weights in pinned, mapped "
			      "host memory (a host weight store)", g->name);
		goto out_destroy;
	}
	ret = alloc_cold(m, helpers, n_helpers) ?: setup_peers(m->cold);
	if (ret)
		goto out_destroy;
	take_plan(m->cold, p);
	m->cold->use_graph = cuda_env_on("DPRT_COLD_GRAPH");
	m->cold->auto_promote = getenv("DPRT_COLD_PROMOTE") &&
				!strcmp(getenv("DPRT_COLD_PROMOTE"), "1");
	m->cold->per_layer = true;
	m->cold->resident = true;
	ret = cuda_cold_evict(m);
	if (ret)
		goto out_destroy;
	*out = m;
	return 0;
out_destroy:
	snprintf(why, sizeof(why), "%s", err_msg(ret));
	cuda_backend.model_destroy(m);
	return err_set(ret, "%s", why);
}

/* Switch m to plan p (evicts it first); see exec.h. */
int cuda_cold_set_plan(struct exec_model *m, const struct plan *p)
{
	struct cuda_cold *c = m->cold;
	bool same = true;
	uint32_t l;
	int ret;

	if (!c)
		return err_set(-EINVAL, "%s: not a cold model (see cuda_cold_model_create)",
			       m->g->name);
	ret = check_plan(m->g, p) ?: cuda_cold_evict(m);
	if (ret)
		return ret;
	for (l = 0; l < c->n_layers; l++)
		same &= m->place[l] == (p->rows[l].place == PLAN_DHA ? PLACE_DHA : PLACE_LOAD);
	if (same) {
		drop_cold_graphs(m);
	} else {
		/* GEMM algorithms and weight addresses depend on the places */
		for (l = 0; l < c->n_layers; l++) {
			m->place[l] = p->rows[l].place == PLAN_DHA ? PLACE_DHA : PLACE_LOAD;
			c->last[l] = 0;
		}
		drop_plans(m);
		cuda_model_bind_weights(m);
	}
	take_plan(c, p);
	c->graph_failed = false;
	return 0;
}
