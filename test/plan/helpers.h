/* SPDX-License-Identifier: MIT */
/* Profiles for the planner tests. Included by each test file of test/plan. */
#ifndef DPRT_TEST_PLAN_HELPERS_H
#define DPRT_TEST_PLAN_HELPERS_H

#include "plan/plan.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

/* Layer facts of a hand-made profile: bytes, load, exec, DHA (ns). */
struct tl {
	uint64_t bytes, load, exec, dha;
};

/*
 * A profile of n layers on n_gpus GPUs where a byte takes 1 ns on a link
 * alone and on NVLink (h2d_bw = peer_bw = 1e9 B/s), k links together get
 * k times the bandwidth (no sharing), no fixed costs, no DHA interference.
 * Tests change what they need.
 */
static inline struct plan_profile *mk_profile(const struct tl *ls, uint32_t n, uint32_t n_gpus)
{
	struct plan_profile *pf;
	uint32_t i;

	cr_assert_eq(plan_profile_create(n, &pf), 0);
	pf->pkg_checksum = 0x1234abcd5678ef00ull;
	snprintf(pf->gpu, sizeof(pf->gpu), "Test GPU 80GB");
	snprintf(pf->model, sizeof(pf->model), "testmodel");
	pf->link.n_gpus = n_gpus;
	pf->link.h2d_bw = 1e9;
	pf->link.peer_bw = 1e9;
	pf->link.dha_copy_share = 1;
	pf->link.dha_read_share = 1;
	for (i = 0; i < n_gpus; i++)
		pf->link.agg_bw[i] = 1e9 * (i + 1);
	for (i = 0; i < n; i++) {
		snprintf(pf->layers[i].name, NAME_LEN, "layer%u", i);
		pf->layers[i].op = OP_LINEAR;
		pf->layers[i].bytes = ls[i].bytes;
		pf->layers[i].load_ns = ls[i].load;
		pf->layers[i].exec_ns = ls[i].exec;
		pf->layers[i].dha_ns = ls[i].dha;
	}
	return pf;
}

/* A random but plausible profile: layer sizes log-uniform over 1 KB..
 * 100 MB, exec log-uniform over 1 us..1 ms, DHA penalties from none to
 * several loads, random link facts with sharing and interference. */
static inline struct plan_profile *random_profile(struct rng *r, uint32_t n, uint32_t n_gpus)
{
	struct plan_profile *pf;
	double u, bw = 10e9 + (double)(rng_next(r) % 50) * 1e9;
	uint32_t i;

	cr_assert_eq(plan_profile_create(n, &pf), 0);
	pf->pkg_checksum = rng_next(r);
	snprintf(pf->gpu, sizeof(pf->gpu), "Random GPU");
	pf->link.n_gpus = n_gpus;
	pf->link.h2d_bw = bw;
	pf->link.peer_bw = bw * (2 + (double)(rng_next(r) % 10));
	pf->link.peer_lat_ns = rng_next(r) % 10000;
	pf->link.xfer_ovh_ns = rng_next(r) % 10000;
	pf->link.dha_copy_share = 0.3 + 0.7 * ((double)(rng_next(r) % 1000) / 1000.0);
	pf->link.dha_read_share = 0.3 + 0.7 * ((double)(rng_next(r) % 1000) / 1000.0);
	pf->link.agg_bw[0] = bw;
	for (i = 1; i < n_gpus; i++)
		pf->link.agg_bw[i] = pf->link.agg_bw[i - 1] +
				     bw * (0.2 + 0.8 * (double)(rng_next(r) % 1000) / 1000.0);
	for (i = 0; i < n; i++) {
		struct plan_layer_prof *lp = &pf->layers[i];

		snprintf(lp->name, NAME_LEN, "r%u", i);
		lp->op = 1 + rng_next(r) % (OP_COUNT - 1);
		u = (double)(rng_next(r) % 100000) / 100000.0;
		lp->bytes = (uint64_t)(1e3 * pow(1e5, u));
		lp->load_ns = pf->link.xfer_ovh_ns + (uint64_t)((double)lp->bytes / bw * 1e9);
		u = (double)(rng_next(r) % 100000) / 100000.0;
		lp->exec_ns = (uint64_t)(1e3 * pow(1e3, u));
		u = (double)(rng_next(r) % 100000) / 100000.0;
		lp->dha_ns = lp->exec_ns + (uint64_t)((double)lp->load_ns * 3 * u * u);
	}
	return pf;
}

#endif
