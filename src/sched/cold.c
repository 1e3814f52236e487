/* SPDX-License-Identifier: MIT */
/*
 * Cold starts by plan: a worker's model for a repository entry is its
 * backend's cold model (exec.h: cold_create) instead of a whole-model
 * load. Its plan comes from the plan repository (`dprt plan` stores plans
 * and the measured profile, keyed by package checksum, device model and
 * device count): the stored plan, else one made from the stored profile;
 * in a planning mode without either, the worker profiles the model on its
 * device and stores profile and plan for the next run. Plans are found
 * when a model is loaded, by the worker between requests (worker.c:
 * prepare), so no request waits for a profile of another model; a request
 * that arrives first finds the plan itself. A cold model that is evicted
 * keeps its shape plans and graphs (the worker charges that memory), so
 * the next cold start only moves weights.
 *
 * Serving plans for one device: parallel transmission needs links of other
 * workers' devices, which serving does not lend yet.
 */
#include "sched/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "plan/plan.h"

int sched_cold_mode_parse(const char *s, int *mode)
{
	int m;

	if (!s) {
		*mode = WCOLD_DEFAULT;
		return 0;
	}
	if (!strcmp(s, "auto")) {
		*mode = WCOLD_AUTO;
		return 0;
	}
	if (!strcmp(s, "load")) {
		*mode = WCOLD_LOAD;
		return 0;
	}
	m = plan_mode_parse(s);
	if (m == PLAN_PT || m == PLAN_PT_DHA)
		return err_set(-EINVAL,
			       "cold mode '%s': serving plans cold starts for one GPU; "
			       "parallel transmission runs in `dprt plan` and bench/coldstart",
			       s);
	if (m < 0)
		return err_set(-EINVAL,
			       "unknown cold mode '%s' (dprt, deepplan, deepplan-v1, "
			       "pipeline, demand, auto or load)",
			       s);
	*mode = m;
	return 0;
}

int sched_evict_parse(const char *s, uint8_t *out)
{
	if (s && !strcmp(s, "cost"))
		*out = SCHED_EVICT_COST;
	else if (s && !strcmp(s, "lru"))
		*out = SCHED_EVICT_LRU;
	else
		return err_set(-EINVAL, "unknown eviction policy '%s' (cost or lru)", s ? s : "");
	return 0;
}

int sched_cold_mode_resolve(int mode, const struct exec_ops *be, bool gpu)
{
	if (!exec_has_cold(be))
		return WCOLD_LOAD;
	if (mode == WCOLD_DEFAULT)
		return gpu ? (int)PLAN_DPRT : WCOLD_LOAD;
	return mode;
}

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

/* Profile g on w's device, plan it in mode, store both. */
static int make_plan(struct worker *w, const struct graph *g, uint64_t sum, const void *weights,
		     enum plan_mode mode, const char *dir, struct plan **out)
{
	struct plan_profile *pf = NULL;
	uint64_t t0 = clock_ns();
	int ret;

	ret = w->ops->profile(&w->devh, 1, g, weights, sum, &pf) ?: plan_build(pf, mode, 1, out);
	if (!ret) {
		log_info("%s: %s profiled and planned (%s) in %.1f s", w->name, g->name,
			 plan_mode_name(mode), (double)(clock_ns() - t0) / 1e9);
		store(w, dir, pf, *out);
	}
	plan_profile_destroy(pf);
	return ret;
}

int sched_find_plan(struct worker *w, struct repo_entry *e, const void *weights, struct plan **out)
{
	const struct graph *g = repo_entry_graph(e);
	enum plan_mode mode = w->cold_mode == WCOLD_AUTO ? PLAN_DPRT : (enum plan_mode)w->cold_mode;
	uint64_t sum = pkg_checksum(e->pkg);
	char dir[4096];
	int ret;

	ret = plan_repo_dir(w->s->o.plans_dir, e->path, g->name, sum, dir, sizeof(dir));
	if (ret)
		return ret;
	ret = plan_get(dir, sum, w->ops->dev_model(w->devh), 1, mode, true, out);
	if (!ret || w->cold_mode == WCOLD_AUTO)
		return ret;
	if (ret != -ENOENT) /* made for another package, or damaged */
		log_warn("%s: %s: the stored plan is of no use, planning anew: %s", w->name,
			 g->name, err_msg(ret));
	err_clear();
	return make_plan(w, g, sum, weights, mode, dir, out);
}
