/* SPDX-License-Identifier: MIT */
/*
 * Workers with cold models (serve --cold-mode): an evicted cold model is
 * kept in standby with what it holds charged, comes back by a cold start
 * of its weights only, and is destroyed when room is needed, when its
 * model is unloaded, or at shutdown. The device is simulated over the CPU
 * backend (the CUDA cold engine needs a GPU; its own tests are in
 * test/exec/cuda): a model holds KEEP bytes while it exists and its
 * weights while resident; a run of an evicted model brings them in.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "helpers.h"
#include "sched/internal.h"

#define KEEP 4096u
#define MAX_MODELS 8

static char dir[256];

static struct fake {
	struct exec_model *m;
	uint64_t wbytes;
	bool resident;
} fm[MAX_MODELS];
static uint64_t used, cap;
static int created, destroyed, cold_runs;

static struct fake *of(const struct exec_model *m)
{
	int i;

	for (i = 0; i < MAX_MODELS; i++)
		if (fm[i].m == m)
			return &fm[i];
	cr_assert_fail("a model the fake device did not make");
	return NULL;
}

static int f_create(struct worker *w, struct repo_entry *e, const void *weights,
		    struct exec_model **out)
{
	const struct graph *g = repo_entry_graph(e);
	struct fake *f = of(NULL);
	int ret;

	(void)w;
	if (used + KEEP > cap)
		return err_set(-ENOMEM, "fake device: out of memory");
	ret = cpu_backend.model_create(NULL, g, weights, out);
	if (ret)
		return ret;
	*f = (struct fake){.m = *out, .wbytes = g->weights_size};
	used += KEEP;
	created++;
	return 0;
}

static int f_evict(struct exec_model *m)
{
	struct fake *f = of(m);

	if (f->resident)
		used -= f->wbytes;
	f->resident = false;
	return 0;
}

static bool f_resident(const struct exec_model *m)
{
	return of(m)->resident;
}

static uint64_t f_used(struct worker *w)
{
	(void)w;
	return used;
}

static const struct wcold_ops fake_cold = {f_create, f_evict, f_resident, f_used};

/* A run of an evicted model is its cold start. */
static int f_run(struct exec_model *m, const struct tview *in, struct tview *out)
{
	struct fake *f = of(m);

	if (!f->resident) {
		if (used + f->wbytes > cap)
			return err_set(-ENOMEM, "fake device: out of memory for weights");
		used += f->wbytes;
		f->resident = true;
		cold_runs++;
	}
	return cpu_backend.model_run(m, in, out);
}

static void f_destroy(struct exec_model *m)
{
	struct fake *f = of(m);

	used -= KEEP + (f->resident ? f->wbytes : 0);
	f->m = NULL;
	destroyed++;
	cpu_backend.model_destroy(m);
}

static struct exec_ops fake_ops;

static void setup(void)
{
	trepo_make(dir, sizeof(dir));
	trepo_add(dir, "bert", 1, "bert-tiny", 1);
	trepo_add(dir, "gpt", 1, "gpt2-tiny", 2);
	memset(fm, 0, sizeof(fm));
	used = 0;
	cap = UINT64_MAX;
	created = destroyed = cold_runs = 0;
	fake_ops = cpu_backend;
	fake_ops.model_run = f_run;
	fake_ops.model_destroy = f_destroy;
}

static void teardown(void)
{
	trepo_rm(dir);
}

TestSuite(standby, .init = setup, .fini = teardown);

/* A scheduler with one worker whose models are cold models by plan. */
static struct sched *cold_sched(uint64_t mem_limit)
{
	struct sched_opts o = topts(dir, "cpu");
	struct sched *s;
	struct worker *w;

	o.gpu_mem_limit = mem_limit;
	s = tsched(&o);
	w = sched_worker(s, 0);
	w->ops = &fake_ops;
	w->cops = &fake_cold;
	w->cold_mode = 0; /* a plan mode */
	return s;
}

/* One request for name; its flags. */
static uint32_t infer(struct sched *s, struct sched_chan *ch, const char *name, int seed)
{
	struct sched_req *req = treq(s, ch, name, 0, 1, 0, (uint64_t)seed), *done;
	uint32_t flags;

	cr_assert_eq(sched_submit(s, req), 0, "submit %s: %s", name, req->msg);
	tcollect(s, ch, &done, 1);
	cr_assert_eq(done->status, 0, "%s: %s", name, done->msg);
	flags = done->flags;
	treq_put(s, req);
	return flags;
}

/* Room for one model's weights (and both models' kept bytes): every
 * switch evicts the other into standby; each model is made once. */
Test(standby, evicted_models_come_back_by_cold_start)
{
	uint64_t wb = trepo_wsize(dir, "bert", 1), wg = trepo_wsize(dir, "gpt", 1);
	struct sched *s = cold_sched((wb > wg ? wb : wg) + 2 * KEEP);
	struct worker *w = sched_worker(s, 0);
	struct sched_chan *ch;
	int i;

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	for (i = 0; i < 6; i++) {
		uint32_t f = infer(s, ch, i % 2 ? "gpt" : "bert", i);

		cr_assert(f & SCHED_F_COLD, "request %d: not a cold start", i);
		cr_assert_leq(w->used, w->mem_limit, "request %d: %llu bytes charged", i,
			      (unsigned long long)w->used);
		cr_assert_eq(w->used, used, "request %d: charged %llu, the device holds %llu", i,
			     (unsigned long long)w->used, (unsigned long long)used);
	}
	cr_assert_eq(created, 2, "models made %d times (kept ones come back)", created);
	cr_assert_eq(cold_runs, 6);
	cr_assert_eq(destroyed, 0);
	/* warm while resident */
	cr_assert_eq(infer(s, ch, "gpt", 9) & SCHED_F_COLD, 0);
	cr_assert_eq(cold_runs, 6);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
	cr_assert_eq(destroyed, created, "%d made, %d destroyed", created, destroyed);
	cr_assert_eq(used, 0);
}

/* No room for a kept model beside the other's weights: it is destroyed,
 * and made again when it is next needed. */
Test(standby, kept_models_make_room)
{
	uint64_t wb = trepo_wsize(dir, "bert", 1), wg = trepo_wsize(dir, "gpt", 1);
	struct sched *s = cold_sched((wb > wg ? wb : wg) + KEEP);
	struct worker *w = sched_worker(s, 0);
	struct sched_chan *ch;
	int i;

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	for (i = 0; i < 4; i++) {
		infer(s, ch, i % 2 ? "gpt" : "bert", i);
		cr_assert_leq(w->used, w->mem_limit);
		cr_assert_eq(w->used, used);
	}
	/* the bigger model's weights and the other's kept bytes do not fit
	 * together: kept models were destroyed and made again */
	cr_assert_geq(destroyed, 1, "no kept model was destroyed to make room");
	cr_assert_geq(created, 3, "made %d times", created);
	cr_assert(created - destroyed >= 1 && created - destroyed <= 2, "%d made, %d destroyed",
		  created, destroyed);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
	cr_assert_eq(destroyed, created);
	cr_assert_eq(used, 0);
}

/* Unloading a model destroys its kept instance and lets go of its host copy. */
Test(standby, unload_drops_the_kept_model)
{
	uint64_t wb = trepo_wsize(dir, "bert", 1), wg = trepo_wsize(dir, "gpt", 1);
	struct sched *s = cold_sched((wb > wg ? wb : wg) + 2 * KEEP);
	struct sched_chan *ch;
	struct repo_entry *e = NULL;
	uint32_t users = 9;

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	infer(s, ch, "bert", 1);
	infer(s, ch, "gpt", 2); /* bert goes to standby */
	cr_assert_eq(destroyed, 0);
	cr_assert_eq(sched_unload(s, "bert", 0), 0, "%s", err_msg(0));
	worker_poll(sched_worker(s, 0), 1, clock_ns());
	cr_assert_eq(destroyed, 1, "the kept bert was not dropped");
	cr_assert_eq(repo_lookup(sched_repo(s), "bert", 1, &e), 0);
	repo_entry_host(e, &users);
	cr_assert_eq(users, 0, "bert's host copy still has %u users", users);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
	cr_assert_eq(destroyed, created);
}

/* No limit configured, a device that runs out: a cold start that finds no
 * room evicts the other model and tries again. */
Test(standby, device_oom_on_cold_start_evicts_and_retries)
{
	uint64_t wb = trepo_wsize(dir, "bert", 1), wg = trepo_wsize(dir, "gpt", 1);
	struct sched *s = cold_sched(0);
	struct sched_chan *ch;
	int i;

	cap = (wb > wg ? wb : wg) + 2 * KEEP;
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	for (i = 0; i < 4; i++)
		infer(s, ch, i % 2 ? "gpt" : "bert", i);
	cr_assert_eq(created, 2);
	cr_assert_eq(cold_runs, 4);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
	cr_assert_eq(used, 0);
}
