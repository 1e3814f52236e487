/* SPDX-License-Identifier: MIT */
/*
 * Transfer links of the cold-start engine: a GPU's host-to-device and peer
 * copy streams, its two staging slots and its group events, claimed for
 * one cold start through an atomic.
 *
 * Link 0 is the target's own copy stream (d->copy, used only by its owner
 * thread). Helper slot k of the plan is lent, for one cold start, by the
 * first free link in the model's helper list: its host-to-device stream
 * fills one of two staging slots on the helper GPU, its peer stream
 * forwards the slot into the target's range with cuMemcpyPeerAsync and
 * records the slot free; the next fill of that slot waits for that event,
 * so a fill overlaps the previous forward and a slot is never overwritten
 * before its forward is done (cold_copy.c). With DPRT_PT_DIRECT=1 and peer
 * access, the helper copies host memory straight into the target's range
 * instead. Helper events belong to the link (a claim makes them the
 * claimer's); the target's group events belong to the model. Nothing is
 * made per run.
 */
#include "cold_priv.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- links */

/* Take lk for one cold start; false if another holds it. Any thread. */
bool cuda_link_claim(struct cuda_link *lk)
{
	int zero = 0;

	/* acquire: pairs with the release in cuda_link_release, so the
	 * previous claimer's use of slot and events happens before ours */
	return atomic_compare_exchange_strong_explicit(&lk->claimed, &zero, 1, memory_order_acquire,
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
	ret = cuda_dev_enter(d)								 ?:
		      CU(cuStreamCreate(&lk->h2d, CU_STREAM_NON_BLOCKING))		 ?:
		      CU(cuStreamCreate(&lk->peer, CU_STREAM_NON_BLOCKING))		 ?:
		      devpool_alloc(d->pool, STAGE_BYTES, "link staging", &lk->stage[0]) ?:
		      devpool_alloc(d->pool, STAGE_BYTES, "link staging", &lk->stage[1]) ?:
		      link_events(lk);
	if (ret) {
		snprintf(why, sizeof(why), "%s", err_msg(ret));
		cuda_link_destroy(lk);
		return err_set(ret, "cuda: GPU %d: cannot make its transfer link: %s", d->ordinal,
			       why);
	}
	*out = lk;
	return 0;
}

void cold_event_destroy(CUevent e)
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
		cold_event_destroy(lk->staged[i]);
		cold_event_destroy(lk->freed[i]);
		devpool_free(lk->d->pool, lk->stage[i]);
	}
	for (i = 0; i < LINK_EVENTS; i++)
		cold_event_destroy(lk->ev[i]);
	if (lk->h2d)
		CU(cuStreamDestroy(lk->h2d));
	if (lk->peer)
		CU(cuStreamDestroy(lk->peer));
	free(lk);
}

/* Lend helper slots 1..width-1 the first free links of the model's list. */
void cold_claim_links(struct cuda_cold *c, struct cuda_cold_stats *st)
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

void cold_release_links(struct cuda_cold *c)
{
	uint32_t k;

	for (k = 1; k < CUDA_COLD_LINKS; k++) {
		if (c->slot[k])
			cuda_link_release(c->slot[k]);
		c->slot[k] = NULL;
	}
}

/* After a failure: let every stream that took work finish. */
void cold_quiesce(struct cuda_cold *c)
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
