/* SPDX-License-Identifier: MIT */
/*
 * Groups and copies of the cold-start engine.
 *
 * Groups: each link copies its layers in layer order; adjacent layers of
 * one link are copied as one group (one copy, one event) up to GROUP_BYTES,
 * so small layers (biases, norms) cost no copy each; in demand mode, where
 * nothing runs before the last group, up to DEMAND_GROUP_BYTES, so a whole
 * load is a few copies at link speed. A group gets one
 * device range from the pool, laid out like its host range, so every layer
 * of it sits at the same offset as in the weight region. The exec stream
 * waits on a group's event before the first node that reads a weight of
 * it (demand mode: on every link's last group before the first node).
 *
 * Order: the target's copies are queued once the run's inputs are on the
 * GPU (an event after the input copies), helpers' after them; an input
 * copy queued behind the weights on the host-to-device engine would hold
 * the whole run back until every weight had arrived.
 */
#include "cold_priv.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
 * open's last layer and the span stays within limit, else opens
 * grp[(*n)++] on link k. Returns l's group. */
struct cold_group *cold_add_layer(const struct graph *g, struct cold_group *grp, uint32_t *n,
				  struct cold_group *open, uint32_t l, uint32_t k, uint64_t limit)
{
	if (open && open->first + open->n == l && span(g, open->first, l) <= limit) {
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
		open = cold_add_layer(c->m->g, c->grp, &c->n_grp, open, l, k,
				      c->demand ? DEMAND_GROUP_BYTES : GROUP_BYTES);
		c->lgrp[l] = (uint32_t)(open - c->grp);
	}
	c->tail[k] = open ? (uint32_t)(open - c->grp) + 1 : 0;
}

void cold_make_groups(struct cuda_cold *c)
{
	uint32_t k;

	c->n_grp = 0;
	memset(c->tail, 0, sizeof(c->tail));
	for (k = 0; k < c->width; k++)
		if (!k || c->slot[k])
			group_link(c, k);
}

/* gr's range where its first layer was before the last eviction, if
 * that is free (nothing moves, the shape programs and graphs stay right),
 * else wherever the pool has room. */
static int take_range(struct cuda_cold *c, struct cold_group *gr)
{
	struct devpool *pool = c->m->d->pool;
	uint64_t at = c->last[gr->first];

	if (at && !devpool_alloc_at(pool, at, gr->bytes)) {
		gr->dev = at;
		return 0;
	}
	return devpool_alloc(pool, gr->bytes, c->m->g->layers[gr->first].name, &gr->dev);
}

/* Take a range per group; lay the layers out in it; say whether any layer
 * landed elsewhere than before the last eviction. */
int cold_alloc_groups(struct cuda_cold *c, bool *moved)
{
	struct exec_model *m = c->m;
	const struct graph *g = m->g;
	uint32_t i, l;
	int ret;

	*moved = false;
	for (i = 0; i < c->n_grp; i++) {
		struct cold_group *gr = &c->grp[i];

		ret = take_range(c, gr);
		if (ret) {
			while (i--)
				devpool_free(m->d->pool, c->grp[i].dev);
			memset(m->layer_dev, 0, sizeof(*m->layer_dev) * c->n_layers);
			c->n_grp = 0;
			return ret;
		}
		for (l = gr->first; l < gr->first + gr->n; l++) {
			m->layer_dev[l] =
				gr->dev + (g->layers[l].offset - g->layers[gr->first].offset);
			*moved |= m->layer_dev[l] != c->last[l];
		}
	}
	return 0;
}

/* Give every LOAD range back; remember where the layers were. */
void cold_free_ranges(struct cuda_cold *c)
{
	struct exec_model *m = c->m;
	uint32_t i;

	if (c->per_layer) {
		for (i = 0; i < m->n_wrange; i++)
			devpool_free(m->d->pool, m->wrange[i]);
		m->n_wrange = 0;
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
		ret = cold_wait_layers(c, m->d->copy, gr->first + gr->n);
		if (!ret && gr->bytes)
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
		ret = CU(cuStreamWaitEvent(lk->h2d, lk->freed[s], 0))			 ?:
			      CU(cuMemcpyHtoDAsync(lk->stage[s], src + off, n, lk->h2d)) ?:
			      CU(cuEventRecord(lk->staged[s], lk->h2d))			 ?:
			      CU(cuStreamWaitEvent(lk->peer, lk->staged[s], 0))		 ?:
			      CU(cuMemcpyPeerAsync(gr->dev + off, m->d->ctx, lk->stage[s], lk->d->ctx, n, lk->peer)) ?:
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
		ret = cold_wait_layers(c, lk->h2d, gr->first + gr->n);
		if (ret)
			break;
		if (c->direct && gr->bytes)
			ret = CU(cuMemcpyHtoDAsync(gr->dev, m->host + m->g->layers[gr->first].offset, gr->bytes, lk->h2d)) ?:
				      CU(cuEventRecord(gr->ev, lk->h2d));
		else
			ret = copy_staged(c, lk, gr) ?: CU(cuEventRecord(gr->ev, lk->peer));
	}
	return cuda_dev_enter(m->d) ?: ret;
}

int cold_copy_helpers(struct cuda_cold *c)
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
int cold_copy_own_after_inputs(struct cuda_cold *c)
{
	struct cuda_dev *d = c->m->d;

	return CU(cuEventRecord(c->fork, d->stream))		  ?:
		       CU(cuStreamWaitEvent(d->copy, c->fork, 0)) ?:
								    copy_own(c);
}
