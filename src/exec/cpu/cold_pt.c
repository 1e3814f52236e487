/* SPDX-License-Identifier: MIT */
/*
 * Simulated transfer links of the CPU backend's virtual devices, and the
 * cold start over them (parallel transmission without GPUs).
 *
 * Each virtual device has one link in the scheduler's link table
 * (mem/link.h). A cold model's transfer moves each LOAD layer as one
 * transfer on a lane: lane 0 is the target's own link, lane k (the plan's
 * helper link k) borrows, per transfer, the first idle link of the other
 * devices. A transfer copies the layer into the device copy at once and
 * holds its link until bytes / DPRT_CPU_LINK_MBS has passed since it began
 * (unpaced when 0), as a GPU's copy engine would be busy; the lanes run
 * side by side, the target's thread polling them and sleeping until the
 * next transfer ends. A helper lane that finds no idle link hands that
 * layer to lane 0 (a fallback) and tries again with its next layer. The
 * target's own link is marked wanted during the transfer, so nobody
 * borrows it then, and is taken back from a borrower as soon as that
 * borrower's transfer ends. Nothing here waits for another device's
 * worker: only for transfers, each bounded by its bytes.
 */
#include "cpu.h"

#include <string.h>

#include "mem/link.h"

#define POLL_NS 20000u /* a lane waiting for its link looks again after this */

/* One lane's transfer in flight. */
struct lane {
	uint32_t link;	/* table index held; LINK_NONE: none in flight */
	uint32_t layer; /* its layer */
	uint32_t next;	/* next layer of this lane to start */
	uint64_t until; /* clock_ns its transfer ends */
};

struct xfer {
	struct cpu_cold *c;
	struct link_table *t;
	uint32_t self;
	uint32_t used;	  /* helper links held now (bit per device) */
	uint32_t carried; /* helper links that carried bytes */
	bool own_carried; /* the target's link carried bytes */
	uint32_t fb_head, fb_tail;
	uint64_t wake; /* earliest end of a transfer in flight */
	bool started;
	struct exec_cold_info *info;
};

static struct link_table no_links; /* n = 0: every own claim succeeds */

int cpu_dev_join_links(void *dev, struct link_table *t, uint32_t i)
{
	struct cpu_dev *d = dev;

	if (!d || i >= t->n)
		return 0;
	d->lt = t;
	d->li = i;
	link_up(t, i);
	return 0;
}

void cpu_dev_leave_links(struct cpu_dev *d)
{
	if (d->lt)
		link_down(d->lt, d->li);
	d->lt = NULL;
}

static uint64_t xfer_ns(uint64_t bytes)
{
	uint64_t bw = knobs_get()->cpu_link_bw;

	return bw ? (uint64_t)((double)bytes * 1e9 / (double)bw) : 0;
}

/* The first LOAD layer >= from on plan link k; n_layers if none. */
static uint32_t next_on(const struct cpu_cold *c, uint32_t k, uint32_t from)
{
	while (from < c->g->n_layers && (!c->load[from] || c->slot[from] != k))
		from++;
	return from;
}

/* Copy layer l in over link i (held) and mark the lane busy. */
static void start(struct xfer *x, struct lane *ln, uint32_t i, uint32_t l, uint64_t t0)
{
	const struct layer *ly = &x->c->g->layers[l];
	uint64_t now;

	memcpy((char *)x->c->mem + x->c->off[l], x->c->weights + ly->offset, ly->nbytes);
	now = clock_ns();
	ln->link = i;
	ln->layer = l;
	ln->until = MAX(t0 + xfer_ns(ly->nbytes), now);
	x->started = true;
	x->wake = MIN(x->wake, ln->until);
}

/* Lane 0: the target's own plan layers and the fallen-back ones, lowest
 * layer first; waits (polling) while a borrower holds the link. */
static void step_own(struct xfer *x, struct lane *ln, uint64_t now)
{
	uint32_t fb = x->fb_head < x->fb_tail ? x->c->fbq[x->fb_head] : UINT32_MAX;
	uint32_t l = MIN(ln->next, fb);
	uint64_t until;

	if (l >= x->c->g->n_layers)
		return;
	if (!link_take_own(x->t, x->self, now + xfer_ns(x->c->g->layers[l].nbytes))) {
		/* a borrower's transfer: look again when it should end */
		until = link_busy_until(x->t, x->self);
		until = until > now ? MIN(until, now + POLL_NS) : now + POLL_NS;
		x->wake = MIN(x->wake, until);
		return;
	}
	if (l == fb)
		x->fb_head++;
	else
		ln->next = next_on(x->c, 0, l + 1);
	x->own_carried = true;
	start(x, ln, x->self, l, now);
}

/* Lane k > 0: borrow an idle helper's link for its next layer, else hand
 * the layer to lane 0. */
static void step_helper(struct xfer *x, struct lane *ln, uint32_t k, uint64_t now)
{
	uint32_t l = ln->next, i;

	if (l >= x->c->g->n_layers)
		return;
	ln->next = next_on(x->c, k, l + 1);
	i = link_lend_any(x->t, x->self, k, &x->used, now + xfer_ns(x->c->g->layers[l].nbytes));
	if (i == LINK_NONE) {
		x->c->fbq[x->fb_tail++] = l;
		x->info->fallbacks++;
		x->started = true; /* lane 0 has work now */
		return;
	}
	x->carried |= 1u << i;
	start(x, ln, i, l, now);
}

/* Give back the link of a lane whose transfer ended; true if one did. */
static bool finish(struct xfer *x, struct lane *ln, uint64_t now)
{
	if (ln->link == LINK_NONE)
		return false;
	if (now < ln->until) {
		x->wake = MIN(x->wake, ln->until);
		return false;
	}
	link_release(x->t, ln->link, x->self, x->c->g->layers[ln->layer].nbytes);
	if (ln->link != x->self)
		x->used &= ~(1u << ln->link);
	ln->link = LINK_NONE;
	return true;
}

static bool lanes_done(const struct xfer *x, const struct lane *ln, uint32_t w)
{
	uint32_t k;

	if (x->fb_head < x->fb_tail)
		return false;
	for (k = 0; k < w; k++)
		if (ln[k].link != LINK_NONE || ln[k].next < x->c->g->n_layers)
			return false;
	return true;
}

void cpu_cold_transfer(struct cpu_dev *d, struct cpu_cold *c, struct exec_cold_info *info)
{
	struct xfer x = {.c = c, .t = d && d->lt ? d->lt : &no_links, .info = info};
	struct lane ln[LINK_MAX];
	uint32_t w = MIN(c->width, LINK_MAX), k, l;
	uint64_t now;

	x.self = d && d->lt ? d->li : 0;
	if (x.t->n < 2)
		w = 1; /* no helpers: the plan's helper layers go over lane 0 */
	for (k = 0; k < w; k++)
		ln[k] = (struct lane){.link = LINK_NONE, .next = next_on(c, k, 0)};
	for (k = w; k < c->width; k++) /* slots beyond the devices: lane 0 */
		for (l = next_on(c, k, 0); l < c->g->n_layers; l = next_on(c, k, l + 1))
			c->fbq[x.fb_tail++] = l;
	link_want(x.t, x.self, true);
	while (!lanes_done(&x, ln, w)) {
		now = clock_ns();
		x.wake = UINT64_MAX;
		x.started = false;
		for (k = 0; k < w; k++) {
			finish(&x, &ln[k], now);
			if (ln[k].link != LINK_NONE)
				continue;
			if (k)
				step_helper(&x, &ln[k], k, now);
			else
				step_own(&x, &ln[k], now);
		}
		now = clock_ns();
		if (!x.started && x.wake != UINT64_MAX && x.wake > now)
			link_pause(MIN(x.wake - now, 1000000u));
	}
	link_want(x.t, x.self, false);
	info->links = (uint32_t)x.own_carried + (uint32_t)__builtin_popcount(x.carried);
}
