/* SPDX-License-Identifier: MIT */
/*
 * Cold starts by plan on GPU workers: the worker's model for a repository
 * entry is the cold engine's (exec.h, cold.c) instead of a whole-model
 * load. Its plan comes from the plan repository (`dprt plan` stores plans
 * and the measured profile, keyed by package checksum, GPU model and GPU
 * count): the stored plan, else one made from the stored profile; in an
 * explicit mode without either, the worker profiles the model on its GPU
 * at the first cold start, plans it and stores both for the next run. A cold
 * model that is evicted keeps its shape plans and graphs (the worker
 * charges that memory), so the next cold start only moves weights.
 *
 * Serving plans for one GPU: parallel transmission needs links of other
 * workers' GPUs, which serving does not lend yet. Off unless --cold-mode
 * names auto or a mode (the default, load, loads models whole).
 */
#include "sched/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "plan/plan.h"

int sched_cold_mode_parse(const char *s, int *mode)
{
	int m;

	if (s && !strcmp(s, "auto")) {
		*mode = WCOLD_AUTO;
		return 0;
	}
	if (!s || !strcmp(s, "load")) {
		*mode = WCOLD_LOAD;
		return 0;
	}
	m = plan_mode_parse(s);
	if (m == PLAN_PT || m == PLAN_PT_DHA)
		return err_set(-EINVAL, "cold mode '%s': serving plans cold starts for one GPU; "
			       "parallel transmission runs in `dprt plan` and bench/coldstart", s);
	if (m < 0)
		return err_set(-EINVAL, "unknown cold mode '%s' (auto, load, demand, pipeline, "
			       "deepplan, deepplan-v1 or dprt)", s);
	*mode = m;
	return 0;
}

#if HAVE_CUDA
/* Store what was measured and planned here for the next run (best effort:
 * it only saves profiling again). */
static void store(const struct worker *w, const char *dir, const struct plan_profile *pf,
		  const struct plan *p)
{
	char path[4096];

	if (plan_profile_store(dir, pf, path, sizeof(path)) ||
	    plan_store(dir, p, path, sizeof(path))) {
		log_warn("%s: cannot store the profile and plan in %s: %s", w->name, dir,
			 err_msg(0));
		err_clear();
		return;
	}
	log_info("%s: profile and plan stored in %s", w->name, dir);
}

/* Profile g on w's GPU, plan it in mode, store both. */
static int make_plan(struct worker *w, const struct graph *g, uint64_t sum, const void *weights,
		     enum plan_mode mode, const char *dir, struct plan **out)
{
	struct cuda_dev *d = w->devh;
	struct plan_profile *pf = NULL;
	uint64_t t0 = clock_ns();
	int ret;

	ret = cuda_profile(&d, 1, g, weights, sum, &pf) ?: plan_build(pf, mode, 1, out);
	if (!ret) {
		log_info("%s: %s profiled and planned (%s) in %.1f s", w->name, g->name,
			 plan_mode_name(mode), (double)(clock_ns() - t0) / 1e9);
		store(w, dir, pf, *out);
	}
	plan_profile_destroy(pf);
	return ret;
}

/* The stored plan, or one made from the stored profile (plan_get); in an
 * explicit mode without either, one made from a profile measured now. */
static int find_plan(struct worker *w, struct repo_entry *e, const void *weights,
		     struct plan **out)
{
	const struct graph *g = repo_entry_graph(e);
	enum plan_mode mode = w->cold_mode == WCOLD_AUTO ? PLAN_DPRT : (enum plan_mode)w->cold_mode;
	uint64_t sum = pkg_checksum(e->pkg);
	char dir[4096];
	int ret;

	ret = plan_repo_dir(w->s->o.plans_dir, e->path, g->name, sum, dir, sizeof(dir));
	if (ret)
		return ret;
	ret = plan_get(dir, sum, cuda_device_model(w->devh), 1, mode, true, out);
	if (!ret || w->cold_mode == WCOLD_AUTO)
		return ret;
	if (ret != -ENOENT) /* made for another package, or damaged */
		log_warn("%s: %s: the stored plan is of no use, planning anew: %s", w->name,
			 g->name, err_msg(ret));
	err_clear();
	return make_plan(w, g, sum, weights, mode, dir, out);
}

static int wcold_create(struct worker *w, struct repo_entry *e, const void *weights,
			struct exec_model **out)
{
	struct plan *p = NULL;
	int ret;

	ret = find_plan(w, e, weights, &p);
	if (ret)
		return ret;
	ret = cuda_cold_model_create(w->devh, repo_entry_graph(e), weights, p, NULL, 0, out);
	plan_destroy(p);
	return ret;
}

static int wcold_evict(struct exec_model *m)
{
	return cuda_cold_evict(m);
}

static bool wcold_resident(const struct exec_model *m)
{
	return cuda_cold_resident(m);
}

static uint64_t wcold_used(struct worker *w)
{
	return w->devh ? cuda_device_used(w->devh) : 0;
}
#else
static int wcold_create(struct worker *w, struct repo_entry *e, const void *weights,
			struct exec_model **out)
{
	UNUSED(w);
	UNUSED(weights);
	UNUSED(out);
	return err_set(DPRT_EUNSUP, "%s: cold starts by plan need the CUDA backend", e->name);
}

static int wcold_evict(struct exec_model *m)
{
	UNUSED(m);
	return err_set(DPRT_EUNSUP, "cold starts by plan need the CUDA backend");
}

static bool wcold_resident(const struct exec_model *m)
{
	UNUSED(m);
	return true;
}

static uint64_t wcold_used(struct worker *w)
{
	UNUSED(w);
	return 0;
}
#endif

const struct wcold_ops wcold_cuda = {wcold_create, wcold_evict, wcold_resident, wcold_used};
