/* SPDX-License-Identifier: MIT */
/*
 * Cold starts by plan (exec.h): the model's LOAD layers come into device
 * memory while its first inference runs. This file: the run, eviction and
 * the model's lifecycle; links, copies and promotion are cold_link.c,
 * cold_copy.c and cold_promote.c (cold_priv.h says what they share).
 *
 * Graphs: a cold start (the run with its waits, the copy stream forked
 * from it after the input copies and joined at the end) is captured once
 * per shape program and replayed, which removes the launch gaps of an eager
 * run. With helpers, their copies stay outside the graph: they are queued
 * just before each launch, and the graph waits on their group events as
 * external events; a graph is kept only while the same links are lent
 * (the events and the fallen-back groups are the links'). Whether a cold
 * start with helpers replays its graph or runs eagerly is measured per
 * model: the faster of the two is kept (see pt_graph).
 *
 * Addresses: a group is put where its layers were before the last
 * eviction when that range is free (devpool_alloc_at), so the captured
 * graphs stay right; the first cold start's groups land where model
 * creation put the layers, and creation captures the reference program's
 * cold start and warm run, so the first request instantiates nothing.
 * When weights do land elsewhere (the pool gave their old range to another
 * model), the shape programs take the new addresses (cuda_model_rebind: the
 * tensors' and the cuBLASLt bias pointers) and each graph is recorded
 * again and put into its executable graph with cuGraphExecUpdate before
 * its next launch (cuda_graph.c), which costs a capture, not an
 * instantiation; the same happens when the device's shared activation
 * arena has moved (cuda_prog_refresh). Programs are remade only when the
 * places change (promotion undone, another plan).
 */
#include "cold_priv.h"
#include "mem/link.h"
#include "plan/plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------- plans, programs */

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
			return err_set(DPRT_EBADPLAN,
				       "plan for %s: layer %u (%s) has %llu bytes, "
				       "the model %llu",
				       g->name, l, g->layers[l].name,
				       (unsigned long long)p->prof.layers[l].bytes,
				       (unsigned long long)g->layers[l].nbytes);
		if (r->place == PLAN_DHA)
			continue;
		if (r->place != PLAN_LOAD || r->link >= p->width)
			return err_set(DPRT_EBADPLAN,
				       "plan for %s: layer %u has placement %u on "
				       "link %u of %u",
				       g->name, l, r->place, r->link, p->width);
		if (r->order != cnt[r->link]++)
			return err_set(DPRT_EBADPLAN,
				       "plan for %s: layer %u is copied out of layer "
				       "order on link %u, which the engine does not do",
				       g->name, l, r->link);
		if (r->link && cnt[r->link] > LINK_EVENTS)
			return err_set(DPRT_EBADPLAN,
				       "plan for %s: more than %u layers on helper "
				       "link %u",
				       g->name, LINK_EVENTS, r->link);
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

void cold_drop_progs(struct exec_model *m)
{
	int i;

	for (i = 0; i < CUDA_PROGS; i++) {
		cuda_prog_destroy(m, m->progs[i]);
		m->progs[i] = NULL;
	}
}

void cold_drop_graphs(struct exec_model *m)
{
	int i;

	for (i = 0; i < CUDA_PROGS; i++) {
		if (!m->progs[i] || !m->progs[i]->cold_gexec)
			continue;
		CU(cuGraphExecDestroy(m->progs[i]->cold_gexec));
		m->progs[i]->cold_gexec = NULL;
	}
}

/* --------------------------------------------------------------- run */

struct cold_run {
	struct cuda_cold *c;
	struct cuda_prog *pl;
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

int cold_wait_layers(struct cuda_cold *c, CUstream s, uint32_t n)
{
	if (!c->wm)
		return 0;
	return CU(cuStreamWaitValue32(s, c->wm, n, CU_STREAM_WAIT_VALUE_GEQ));
}

static int wait_inputs(struct cuda_cold *c, const struct node *nd)
{
	const struct exec_model *m = c->m;
	uint32_t k, t, l;
	int ret = 0;

	for (k = 0; k < nd->n_in && !ret; k++) {
		t = nd->in[k];
		if (t == NO_TENSOR || m->g->tensors[t].kind != TK_WEIGHT)
			continue;
		l = m->g->tensors[t].layer;
		/* streaming: a DHA kernel reads the layer in host memory */
		if (m->place[l] != PLACE_LOAD)
			ret = cold_wait_layers(c, m->d->stream, l + 1);
		else
			ret = wait_group(c, c->lgrp[l]);
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
		ret = cold_copy_own_after_inputs(c) ?:
						      (c->helpers_queued ? 0 : cold_copy_helpers(c));
	/* demand: everything before the first node; all: everything before
	 * the outputs, so no copy outlives the run */
	if (!ret && (i >= g->n_nodes || (c->demand && !i))) {
		for (k = 0; k < c->width && !ret; k++)
			if (c->tail[k])
				ret = wait_group(c, c->tail[k] - 1);
		return ret;
	}
	if (!ret && c->demand && !i) /* streaming: the DHA layers too */
		ret = cold_wait_layers(c, c->m->d->stream, c->n_layers);
	if (ret || c->demand)
		return ret;
	ret = wait_inputs(c, &g->nodes[i]);
	f = r->pl->rt[i].fused;
	if (!ret && f)
		ret = wait_inputs(c, &g->nodes[f]);
	return ret;
}

static int enqueue_cold(struct cuda_cold *c, struct cuda_prog *pl)
{
	struct cold_run r = {c, pl};
	struct cuda_hook h = {cold_hook, &r};

	memset(c->waited, 0, c->n_layers);
	return cuda_model_enqueue(c->m, pl, &h);
}

/* Record copies and run as one graph: the copy stream forks from the exec
 * stream after the input copies (cold_hook) and joins it at the end. A
 * program with a graph already (its addresses changed: cold_stale) has it
 * updated in place when the driver can (st, may be NULL, counts which). */
static int capture_cold(struct cuda_cold *c, struct cuda_prog *pl, struct cuda_cold_stats *st)
{
	struct cuda_dev *d = c->m->d;
	CUgraph graph = NULL;
	bool updated = false;
	int ret, end;

	ret = CU(cuStreamBeginCapture(d->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	if (ret)
		return ret;
	c->capturing = true;
	ret = enqueue_cold(c, pl)			  ?:
		      CU(cuEventRecord(c->join, d->copy)) ?:
		      CU(cuStreamWaitEvent(d->stream, c->join, 0));
	c->capturing = false;
	end = CU(cuStreamEndCapture(d->stream, &graph));
	ret = ret ?: end;
	if (!ret)
		ret = cuda_graph_refresh(d, &pl->cold_gexec, graph, &updated);
	if (graph)
		CU(cuGraphDestroy(graph));
	pl->cold_stale = false;
	if (ret) {
		if (pl->cold_gexec)
			CU(cuGraphExecDestroy(pl->cold_gexec));
		pl->cold_gexec = NULL;
		return ret;
	}
	if (st) {
		st->graphs_updated += updated;
		st->graphs_captured += !updated;
	}
	return 0;
}

/* Streamed cold starts run eagerly: a captured graph has no waits. */
static bool graph_ok(const struct cuda_cold *c, const struct cuda_prog *pl)
{
	return c->use_graph && !c->graph_failed && !pl->no_graph && !c->m->no_graphs && !c->wm;
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
static bool pt_graph(struct cuda_cold *c, const struct cuda_prog *pl)
{
	if (memcmp(c->gslot, c->slot, sizeof(c->slot))) {
		cold_drop_graphs(c->m);
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

static int launch(struct cuda_cold *c, struct cuda_prog *pl, struct cuda_cold_stats *st)
{
	int ret;

	c->helpers_queued = false;
	c->pt_try = -1;
	if (graph_ok(c, pl) && c->width > 1) {
		if (!pt_graph(c, pl))
			return enqueue_cold(c, pl);
		ret = cold_copy_helpers(c);
		if (ret)
			return ret;
		c->helpers_queued = true;
	}
	/* Weights moved: the stale graph is re-recorded while the device is
	 * idle (cuda_cold_tidy), this run goes eagerly, no capture on it. */
	if (graph_ok(c, pl) && pl->cold_gexec && pl->cold_stale && c->m->defer && c->width == 1) {
		st->deferred = true;
		return enqueue_cold(c, pl);
	}
	if (graph_ok(c, pl) && (!pl->cold_gexec || pl->cold_stale)) {
		uint64_t t0 = clock_ns();
		bool stale = pl->cold_gexec != NULL;

		ret = capture_cold(c, pl, st);
		if (stale)
			st->fixup_ns += clock_ns() - t0;
		if (ret) {
			log_warn("cuda: %s: cannot capture the cold start, running it "
				 "eagerly: %s",
				 c->m->g->name, err_msg(ret));
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
static int cold_start(struct cuda_cold *c, const struct tview *in, struct cuda_prog **pl,
		      struct cuda_cold_stats *st)
{
	struct exec_model *m = c->m;
	uint64_t t0;
	bool moved;
	int ret;

	cold_make_groups(c);
	ret = cold_alloc_groups(c, &moved);
	if (ret)
		return ret;
	/* Elsewhere than last time: the shape programs take the new addresses
	 * and their graphs are updated before their next launch; remade
	 * only if that fails. */
	if (moved) {
		t0 = clock_ns();
		cuda_model_bind_weights(m);
		ret = cuda_model_rebind(m);
		if (ret) {
			log_warn("%s: remaking its shape programs: %s", m->g->name, err_msg(ret));
			err_clear();
			cold_drop_progs(m);
			c->remade = true;
		}
		st->fixup_ns += clock_ns() - t0;
	}
	st->moved = moved;
	st->progs_remade = c->remade;
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
		cold_quiesce(c);
		cold_free_ranges(c);
	}
	return ret;
}

/* A cold start of m by its plan (or a warm run); see exec.h. */
int cuda_cold_run(struct exec_model *m, const struct tview *in, struct tview *out,
		  struct cuda_cold_stats *st)
{
	struct cuda_cold *c = m->cold;
	struct cuda_cold_stats local;
	struct cuda_prog *pl = NULL;
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
		cold_poll_promoted(c, st);
	}
	if (c->resident)
		return cuda_backend.model_run(m, in, out);
	ret = cuda_dev_enter(m->d);
	if (ret)
		return ret;
	if (c->lt) { /* serving: no one borrows our link meanwhile */
		link_want(c->lt, c->lt_i, true);
		cold_claim_table(c, st);
	} else {
		cold_claim_links(c, st);
	}
	ret = cold_start(c, in, &pl, st);
	if (c->lt) {
		cold_release_table(c);
		link_want(c->lt, c->lt_i, false);
	} else {
		cold_release_links(c);
	}
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

/* Whether the driver and device take cuStreamWaitValue32 on mapped host
 * memory: one wait that is already met, on the idle copy stream. */
static bool wait_works(struct cuda_cold *c, CUdeviceptr wm)
{
	CUstream s = c->m->d->copy;
	int ret;

	if (!c->wait_ok) {
		ret = CU(cuStreamWaitValue32(s, wm, 0, CU_STREAM_WAIT_VALUE_GEQ)) ?:
			      CU(cuStreamSynchronize(s));
		c->wait_ok = ret ? -1 : 1;
		if (ret) {
			log_info("%s: no stream memory waits (%s): disk cold starts wait for "
				 "the whole read",
				 c->m->g->name, err_msg(0));
			err_clear();
		}
	}
	return c->wait_ok > 0;
}

int cuda_cold_stream(struct exec_model *m, const _Atomic uint32_t *ready)
{
	struct cuda_cold *c = m->cold;
	CUdeviceptr wm;
	int ret;

	if (!c)
		return err_set(-EINVAL, "%s: not a cold model", m->g->name);
	c->wm = 0;
	if (!ready)
		return 0;
	ret = cuda_dev_enter(m->d) ?:
				     CU(cuMemHostGetDevicePointer(&wm, (void *)(uintptr_t)ready, 0));
	if (ret)
		return ret;
	if (!wait_works(c, wm))
		return err_set(-EOPNOTSUPP, "%s: the device cannot wait on host memory",
			       m->g->name);
	c->wm = wm;
	return 0;
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
	ret = cuda_dev_enter(m->d)			    ?:
		      CU(cuStreamSynchronize(m->d->stream)) ?:
							      CU(cuStreamSynchronize(m->d->copy));
	if (ret)
		return ret;
	cold_unpromote(c, true);
	cold_free_ranges(c);
	return 0;
}

/* The spans of LOAD layers at addr[] (0: none), adjacent ones merged, at
 * most n of them (beyond that the last one grows to cover the rest). */
static uint32_t load_spans(const struct exec_model *m, const uint64_t *addr, uint64_t (*sp)[2],
			   uint32_t n)
{
	uint32_t l, k = 0;

	for (l = 0; l < m->g->n_layers; l++) {
		uint64_t lo = addr[l], hi = lo + m->g->layers[l].nbytes;

		if (m->place[l] != PLACE_LOAD || !lo)
			continue;
		if (k && (lo >= sp[k - 1][0] && lo <= ALIGN_UP(sp[k - 1][1], 4096))) {
			sp[k - 1][1] = MAX(sp[k - 1][1], hi);
			continue;
		}
		if (k == n) {
			sp[k - 1][0] = MIN(sp[k - 1][0], lo);
			sp[k - 1][1] = MAX(sp[k - 1][1], hi);
			continue;
		}
		sp[k][0] = lo;
		sp[k++][1] = hi;
	}
	return k;
}

#define OVERLAP_SPANS 16

bool cuda_cold_overlaps(const struct exec_model *m, const struct exec_model *other)
{
	uint64_t a[OVERLAP_SPANS][2], b[OVERLAP_SPANS][2];
	uint32_t na, nb, i, j;

	if (!m->cold || !other->cold || m->cold->resident || !other->cold->resident ||
	    m->d != other->d)
		return false;
	na = load_spans(m, m->cold->last, a, OVERLAP_SPANS);
	nb = load_spans(other, other->layer_dev, b, OVERLAP_SPANS);
	for (i = 0; i < na; i++)
		for (j = 0; j < nb; j++)
			if (a[i][0] < b[j][1] && b[j][0] < a[i][1])
				return true;
	return false;
}

bool cuda_cold_tidy(struct exec_model *m)
{
	struct cuda_cold *c = m->cold;
	bool did = false;
	int k;

	if (!c || !c->resident || c->width > 1)
		return false;
	for (k = 0; k < CUDA_PROGS; k++) {
		struct cuda_prog *pl = m->progs[k];

		if (!pl || !pl->cold_gexec || !pl->cold_stale || !graph_ok(c, pl))
			continue;
		if (capture_cold(c, pl, NULL)) {
			log_warn("cuda: %s: cannot capture the cold start, running it "
				 "eagerly: %s",
				 m->g->name, err_msg(0));
			err_clear();
			c->graph_failed = true;
			return did;
		}
		did = true;
	}
	return did;
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
	cold_unpromote(c, false);
	if (c->resident)
		cold_free_ranges(c);
	for (i = 0; c->ev && i < c->n_layers; i++)
		cold_event_destroy(c->ev[i]);
	cold_event_destroy(c->fork);
	cold_event_destroy(c->join);
	cold_event_destroy(c->promo_ev);
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
	return ret							    ?:
		       CU(cuEventCreate(&c->fork, CU_EVENT_DISABLE_TIMING)) ?:
		       CU(cuEventCreate(&c->join, CU_EVENT_DISABLE_TIMING)) ?:
		       CU(cuEventCreate(&c->promo_ev, CU_EVENT_DISABLE_TIMING));
}

/* Access from a's context to b's memory; already enabled is fine. */
int cold_enable_peer(struct cuda_dev *a, struct cuda_dev *b)
{
	CUresult r;
	int ret;

	ret = cuda_dev_enter(a);
	if (ret)
		return ret;
	r = cudrv_api.cuCtxEnablePeerAccess(b->ctx, 0);
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
			ret = cold_enable_peer(x, d) ?: cold_enable_peer(d, x);
		all &= can != 0;
	}
	c->direct = all && knobs_get()->pt_direct;
	return ret ?: cuda_dev_enter(d);
}

/* Whether this run's groups lie where model creation put their layers
 * (so a group's range is that of its layers at creation). */
static bool groups_at_creation(const struct cuda_cold *c)
{
	const struct exec_model *m = c->m;
	const struct graph *g = m->g;
	uint32_t i, l;

	for (i = 0; i < c->n_grp; i++) {
		const struct cold_group *gr = &c->grp[i];

		for (l = gr->first; l < gr->first + gr->n; l++)
			if (m->layer_dev[l] !=
			    m->layer_dev[gr->first] +
				    (g->layers[l].offset - g->layers[gr->first].offset))
				return false;
	}
	return true;
}

/*
 * At creation, with the weights where the first cold start will put them
 * again (take_range in cold_copy.c: each group lands where its layers
 * were, the ranges being free after the eviction), capture the cold start
 * of the reference shape program and its warm run, so that neither the first
 * request of that shape nor the next instantiates a graph. Target-only plans (helpers' graphs depend on
 * the links lent). A failure only leaves the capture to the first cold
 * start.
 */
static void capture_at_creation(struct cuda_cold *c)
{
	struct exec_model *m = c->m;
	struct cuda_prog *pl = NULL;
	uint32_t i;
	int k, ret;

	for (k = 0; k < CUDA_PROGS; k++)
		pl = m->progs[k] ? m->progs[k] : pl;
	if (c->width > 1 || !pl || !graph_ok(c, pl))
		return;
	memset(c->slot, 0, sizeof(c->slot));
	cold_make_groups(c);
	for (i = 0; i < c->n_grp; i++)
		c->grp[i].dev = m->layer_dev[c->grp[i].first];
	ret = groups_at_creation(c) ? cuda_prog_refresh(m, pl) ?: capture_cold(c, pl, NULL) : 0;
	c->n_grp = 0;
	if (!ret) {
		cuda_model_capture(m, pl); /* and its warm runs' */
		return;
	}
	log_warn("cuda: %s: cannot capture the cold start at creation: %s", m->g->name,
		 err_msg(ret));
	err_clear();
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
		ret = err_set(DPRT_EUNSUP,
			      "%s: cold starts need the weights in pinned, mapped "
			      "host memory (a host weight store)",
			      g->name);
		goto out_destroy;
	}
	ret = alloc_cold(m, helpers, n_helpers) ?: setup_peers(m->cold);
	if (ret)
		goto out_destroy;
	if (!n_helpers)
		cold_find_table(m->cold); /* serving: helpers from the link table */
	take_plan(m->cold, p);
	m->cold->use_graph = knobs_get()->cold_graph;
	m->cold->auto_promote = knobs_get()->cold_promote;
	m->cold->per_layer = true;
	m->cold->resident = true;
	capture_at_creation(m->cold);
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
		cold_drop_graphs(m);
	} else {
		/* GEMM algorithms and weight addresses depend on the places */
		for (l = 0; l < c->n_layers; l++) {
			m->place[l] = p->rows[l].place == PLAN_DHA ? PLACE_DHA : PLACE_LOAD;
			c->last[l] = 0;
		}
		cold_drop_progs(m);
		cuda_model_bind_weights(m);
	}
	take_plan(c, p);
	c->graph_failed = false;
	return 0;
}
