/* SPDX-License-Identifier: MIT */
/*
 * Promotion (cuda_cold_promote; after every cold start with
 * DPRT_COLD_PROMOTE=1, read at model creation, default off): a resident
 * model's DHA layers are copied into device ranges of their own on the
 * target's copy stream, grouped like LOAD layers (adjacent layers up to
 * GROUP_BYTES share a range laid out like the host range: small layers
 * cost no copy and no allocation each, and no range is much larger than
 * a big layer alone, so ranges still fit the pool's holes), with one event
 * after the last copy. Nothing waits on it: the next cuda_cold_run (or
 * cuda_cold_promoted) that finds the event done switches those layers to
 * LOAD and remakes the shape programs (GEMM algorithms and addresses depend
 * on the places); until then runs read them from host memory. An eviction
 * gives the ranges back and puts the layers back to DHA, so the next cold
 * start runs the plan as before (its shape programs remade).
 */
#include "cold_priv.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------- promotion */

/* The DHA layers' groups, by the LOAD groups' rule. */
static void make_promo_groups(struct cuda_cold *c)
{
	struct cold_group *open = NULL;
	uint32_t l;

	c->n_pgrp = 0;
	for (l = 0; l < c->n_layers; l++)
		if (c->m->place[l] == PLACE_DHA)
			open = cold_add_layer(c->m->g, c->pgrp, &c->n_pgrp, open, l, 0,
					      GROUP_BYTES);
}

/* A range per promoted group; on failure none is kept. */
static int alloc_promoted(struct cuda_cold *c)
{
	struct exec_model *m = c->m;
	uint32_t i;
	int ret;

	for (i = 0; i < c->n_pgrp; i++) {
		struct cold_group *gr = &c->pgrp[i];

		ret = devpool_alloc(m->d->pool, gr->bytes, m->g->layers[gr->first].name, &gr->dev);
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
			ret = CU(cuMemcpyHtoDAsync(gr->dev,
						   m->host + m->g->layers[gr->first].offset,
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
	return err_set(ret, "%s: cannot promote its DHA layers into device memory: %s", m->g->name,
		       why);
}

/* The copies are done: the promoted layers become LOAD in their ranges
 * and the shape programs are remade for them at the next run. */
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
			m->layer_dev[l] =
				gr->dev + (g->layers[l].offset - g->layers[gr->first].offset);
			c->bytes_promoted += g->layers[l].nbytes;
		}
	}
	cold_drop_progs(m);
	cuda_model_bind_weights(m);
	c->promo = PROMO_DONE;
}

/* Switch if the promotion's copies are done, never waiting; the device's
 * context is current. True once switched. A failed copy gives the ranges
 * back (logged): the layers stay DHA. */
bool cold_poll_promoted(struct cuda_cold *c, struct cuda_cold_stats *st)
{
	struct exec_model *m = c->m;
	CUresult r;

	if (c->promo != PROMO_COPYING)
		return c->promo == PROMO_DONE;
	r = cudrv_api.cuEventQuery(c->promo_ev);
	if (r == CUDA_ERROR_NOT_READY)
		return false;
	if (r != CUDA_SUCCESS) {
		log_warn("cuda: %s: promotion of its DHA layers failed, reading them from host "
			 "memory: %s",
			 m->g->name, err_msg(cudrv_check(r, "cuEventQuery")));
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
	return cold_poll_promoted(c, NULL);
}

/* Back to the plan's DHA layers, the promoted ranges given back; no copy
 * may still write them. remake: drop the shape programs and rebind the
 * weights if the layers had switched (not at model destruction). */
void cold_unpromote(struct cuda_cold *c, bool remake)
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
		cold_drop_progs(m);
		cuda_model_bind_weights(m);
		c->remade = true;
	}
}
