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
 * Parallel transmission: every worker's device joins the scheduler's link
 * table (mem/link.h) when it is opened, and plans are made for the number
 * of devices served (plans are keyed by it), so a plan with helpers moves
 * some layers over other devices' links. The backend claims an idle
 * helper's link per transfer and falls back to the target's own link when
 * none is idle; the helper's worker keeps serving meanwhile. With one
 * device, pt and pt+dha plan for that one (logged, not refused). A GPU's
 * profile measured while serving knows only its own link, so on GPUs a plan
 * for several devices comes from a stored plan or profile (`dprt plan
 * --gpus N`); without one the worker plans for its device alone (logged).
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
	if (m < 0)
		return err_set(-EINVAL,
			       "unknown cold mode '%s' (dprt, deepplan, deepplan-v1, "
			       "pipeline, pt, pt+dha, demand, auto or load)",
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

/* On GPUs a whole-model load is the engine's demand plan: every weight in
 * a few large copies at link speed, then the run, and an evicted model
 * keeps its shape programs and graphs like a planned one, instead of being
 * made anew (descriptors, programs, graphs) on every cold start. */
int sched_cold_mode_resolve(int mode, const struct exec_ops *be, bool gpu)
{
	if (!exec_has_cold(be))
		return WCOLD_LOAD;
	if (mode == WCOLD_DEFAULT)
		return gpu ? (int)PLAN_DPRT : WCOLD_LOAD;
	if (mode == WCOLD_LOAD && gpu)
		return (int)PLAN_DEMAND;
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

/* Whether mode's plans may use helpers' links. */
static bool mode_has_pt(int mode)
{
	return mode == PLAN_DPRT || mode == PLAN_PT || mode == PLAN_PT_DHA ||
	       mode == PLAN_DEEPPLAN_V1 || mode == WCOLD_AUTO;
}

/* Devices w's plans are made for: every device served when its backend
 * lends links and the mode can use them, else 1. */
static uint32_t plan_devices(const struct worker *w)
{
	uint32_t n = MIN(w->s->n_workers, MIN((uint32_t)PLAN_MAX_GPUS, (uint32_t)LINK_MAX));

	if (!w->ops->dev_join_links || !mode_has_pt(w->cold_mode))
		return 1;
	/* synthetic profiles (virtual CPU devices) cover up to 8 devices */
	return w->dev.kind == SCHED_DEV_CPU ? MIN(n, 8u) : n;
}

/* Profile g on w's device for n devices, plan it in mode, store both. A
 * profile on a virtual CPU device is synthetic and covers any count; a
 * GPU's, measured while serving, covers its own link only. */
static int make_plan(struct worker *w, const struct graph *g, uint64_t sum, const void *weights,
		     enum plan_mode mode, uint32_t n, const char *dir, struct plan **out)
{
	void *devs[PLAN_MAX_GPUS];
	struct plan_profile *pf = NULL;
	uint64_t t0 = clock_ns();
	uint32_t i;
	int ret;

	if (w->dev.kind != SCHED_DEV_CPU)
		n = 1;
	for (i = 0; i < n; i++)
		devs[i] = w->devh;
	ret = w->ops->profile(devs, n, g, weights, sum, &pf) ?: plan_build(pf, mode, n, out);
	if (!ret) {
		log_info("%s: %s profiled and planned (%s, %u device%s, %u link%s) in %.1f s",
			 w->name, g->name, plan_mode_name(mode), n, n > 1 ? "s" : "", (*out)->width,
			 (*out)->width > 1 ? "s" : "", (double)(clock_ns() - t0) / 1e9);
		store(w, dir, pf, *out);
	}
	plan_profile_destroy(pf);
	return ret;
}

/* The stored plan for n devices, else (n > 1) the one for the device
 * alone, logged: a GPU serving without a stored profile for n. */
static int get_plan(struct worker *w, const char *dir, uint64_t sum, enum plan_mode mode,
		    uint32_t n, const char *name, struct plan **out)
{
	const char *gpu = w->ops->dev_model(w->devh);
	int ret;

	ret = plan_get(dir, sum, gpu, n, mode, true, out);
	if (ret != -ENOENT || n == 1 || w->dev.kind == SCHED_DEV_CPU)
		return ret;
	log_info(
		"%s: %s: no stored plan or profile for %u devices (dprt plan PATH --gpus 0,1,...): "
		"planning for its own link only",
		w->name, name, n);
	err_clear();
	return plan_get(dir, sum, gpu, 1, mode, true, out);
}

int sched_find_plan(struct worker *w, struct repo_entry *e, const void *weights, struct plan **out)
{
	const struct graph *g = repo_entry_graph(e);
	enum plan_mode mode = w->cold_mode == WCOLD_AUTO ? PLAN_DPRT : (enum plan_mode)w->cold_mode;
	uint64_t sum = pkg_checksum(e->pkg);
	char dir[4096];
	int ret;

	/* a demand plan takes no timing: made from the layers, nothing to
	 * measure or store */
	if (mode == PLAN_DEMAND) {
		struct plan_profile *pf;

		ret = plan_profile_synthetic(g, sum, 1, &pf) ?: plan_build(pf, mode, 1, out);
		plan_profile_destroy(pf);
		return ret;
	}
	ret = plan_repo_dir(w->s->o.plans_dir, e->path, g->name, sum, dir, sizeof(dir));
	if (ret)
		return ret;
	ret = get_plan(w, dir, sum, mode, plan_devices(w), g->name, out);
	if (!ret || w->cold_mode == WCOLD_AUTO)
		return ret;
	if (ret != -ENOENT) /* made for another package, or damaged */
		log_warn("%s: %s: the stored plan is of no use, planning anew: %s", w->name,
			 g->name, err_msg(ret));
	err_clear();
	return make_plan(w, g, sum, weights, mode, plan_devices(w), dir, out);
}

void sched_cold_join(struct worker *w)
{
	int ret;

	if (w->cold_mode == WCOLD_LOAD || !w->ops->dev_join_links)
		return;
	if (w->s->n_workers < 2) {
		if (w->cold_mode == PLAN_PT || w->cold_mode == PLAN_PT_DHA)
			log_info("%s: cold mode %s with one device: no helper links, cold "
				 "starts load over its own link only",
				 w->name, plan_mode_name((enum plan_mode)w->cold_mode));
		return;
	}
	if (w->id >= w->s->links.n) {
		log_warn("%s: beyond the %u devices that lend links: its cold starts use "
			 "its own link only",
			 w->name, w->s->links.n);
		return;
	}
	ret = w->ops->dev_join_links(w->devh, &w->s->links, w->id);
	if (ret) {
		log_warn("%s: lends no link (its cold starts use its own only): %s", w->name,
			 err_msg(ret));
		err_clear();
	}
}

void sched_cold_count(struct worker *w, const struct plan *p, const struct exec_cold_info *info)
{
	if (!p || p->width < 2 || !info->cold)
		return;
	link_count_pt(&w->s->links, info->links > 1, info->fallbacks > 0);
}

void sched_pt_stats(const struct sched *s, struct sched_pt_stats *st)
{
	const struct link_table *t = &s->links;
	uint32_t i;

	memset(st, 0, sizeof(*st));
	st->n_workers = s->n_workers;
	st->pt_cold_starts = atomic_load_explicit(&t->pt_cold, memory_order_relaxed);
	st->pt_fallbacks = atomic_load_explicit(&t->pt_fallbacks, memory_order_relaxed);
	for (i = 0; i < t->n && i < SCHED_MAX_WORKERS; i++) {
		st->lent_ns[i] = atomic_load_explicit(&t->link[i].lent_ns, memory_order_relaxed);
		st->lent_bytes[i] =
			atomic_load_explicit(&t->link[i].lent_bytes, memory_order_relaxed);
	}
}
