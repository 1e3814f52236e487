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
#include <unistd.h>
#include <stdio.h>

#include "helpers.h"
#include "plan/plan.h"
#include "sched/internal.h"

#define KEEP CPU_COLD_KEEP

static char dir[256];
static struct worker *wk; /* the worker of the scheduler under test */

/* What the worker did, from its counters and its device. */
static int n_created(void)
{
	return (int)(ctr_get(&wk->creations) + ctr_get(&wk->recreations));
}

static int n_destroyed(void)
{
	return (int)ctr_get(&wk->destroys);
}

static int n_cold(void)
{
	return (int)ctr_get(&wk->cold);
}

static uint64_t dev_used(void)
{
	return wk->devh ? wk->ops->dev_used(wk->devh) : 0;
}

static void setup(void)
{
	trepo_make(dir, sizeof(dir));
	trepo_add(dir, "bert", 1, "bert-tiny", 1);
	trepo_add(dir, "gpt", 1, "gpt2-tiny", 2);
}

static void teardown(void)
{
	trepo_rm(dir);
}

TestSuite(standby, .init = setup, .fini = teardown);

/* A scheduler with one virtual CPU device whose models are cold models by
 * pipeline plans (every layer loaded: the device holds whole weights),
 * under a memory limit, on a device of capacity dev_cap (0: none). */
static struct sched *cold_sched2(uint64_t mem_limit, uint64_t dev_cap)
{
	struct sched_opts o = topts(dir, "cpu");
	struct sched *s;

	o.gpu_mem_limit = mem_limit;
	o.cold_mode = "pipeline";
	o.cpu_dev_capacity = dev_cap;
	s = tsched(&o);
	wk = sched_worker(s, 0);
	cr_assert_eq(wk->cold_mode, PLAN_PIPELINE);
	return s;
}

static struct sched *cold_sched(uint64_t mem_limit)
{
	return cold_sched2(mem_limit, 0);
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
		cr_assert_eq(w->used, dev_used(), "request %d: charged %llu, the device holds %llu",
			     i, (unsigned long long)w->used, (unsigned long long)dev_used());
	}
	cr_assert_eq(n_created(), 2, "models made %d times (kept ones come back)", n_created());
	cr_assert_eq(n_cold(), 6);
	cr_assert_eq(n_destroyed(), 0);
	/* warm while resident */
	cr_assert_eq(infer(s, ch, "gpt", 9) & SCHED_F_COLD, 0);
	cr_assert_eq(n_cold(), 6);
	sched_stop(s);
	sched_chan_destroy(ch);
	cr_assert_eq(wk->used, dev_used());
	sched_destroy(s);
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
		cr_assert_eq(w->used, dev_used());
	}
	/* the bigger model's weights and the other's kept bytes do not fit
	 * together: kept models were n_destroyed() and made again */
	cr_assert_geq(n_destroyed(), 1, "no kept model was destroyed to make room");
	cr_assert_geq(n_created(), 3, "made %d times", n_created());
	cr_assert(n_created() - n_destroyed() >= 1 && n_created() - n_destroyed() <= 2,
		  "%d made, %d destroyed", n_created(), n_destroyed());
	sched_stop(s);
	sched_chan_destroy(ch);
	cr_assert_eq(wk->used, dev_used(), "charged %llu, the device holds %llu",
		     (unsigned long long)wk->used, (unsigned long long)dev_used());
	sched_destroy(s);
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
	cr_assert_eq(n_destroyed(), 0);
	cr_assert_eq(sched_unload(s, "bert", 0), 0, "%s", err_msg(0));
	worker_poll(sched_worker(s, 0), 1, clock_ns());
	cr_assert_eq(n_destroyed(), 1, "the kept bert was not dropped");
	cr_assert_eq(repo_lookup(sched_repo(s), "bert", 1, &e), 0);
	repo_entry_host(e, &users);
	cr_assert_eq(users, 0, "bert's host copy still has %u users", users);
	sched_stop(s);
	sched_chan_destroy(ch);
	cr_assert_eq(wk->used, dev_used(), "charged %llu, the device holds %llu",
		     (unsigned long long)wk->used, (unsigned long long)dev_used());
	sched_destroy(s);
}

/* No limit configured, a device that runs out: a cold start that finds no
 * room evicts the other model and tries again. */
Test(standby, device_oom_on_cold_start_evicts_and_retries)
{
	uint64_t wb = trepo_wsize(dir, "bert", 1), wg = trepo_wsize(dir, "gpt", 1);
	struct sched *s = cold_sched2(0, (wb > wg ? wb : wg) + 2 * KEEP);
	struct sched_chan *ch;
	int i;

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	for (i = 0; i < 4; i++)
		infer(s, ch, i % 2 ? "gpt" : "bert", i);
	cr_assert_eq(n_created(), 2);
	cr_assert_eq(n_cold(), 4);
	sched_stop(s);
	sched_chan_destroy(ch);
	cr_assert_eq(wk->used, dev_used(), "charged %llu, the device holds %llu",
		     (unsigned long long)wk->used, (unsigned long long)dev_used());
	sched_destroy(s);
}

/* Step the worker's background work until it has none left. */
static int prepare_all(struct worker *w)
{
	int steps = 0;

	while (worker_prepare(w))
		cr_assert_lt(++steps, 1000, "background work does not end");
	return steps;
}

/* Models loaded at start are planned and warmed up between requests: the
 * first request for each finds it kept and moves only its weights. */
Test(standby, loaded_models_are_planned_and_warmed_up)
{
	struct sched *s = cold_sched(0);
	struct sched_chan *ch;
	char path[512];

	cr_assert_eq(worker_poll(wk, 1, clock_ns()), 0); /* takes the kick */
	cr_assert_eq(prepare_all(wk), 2);
	cr_assert_eq(ctr_get(&wk->plans_made), 2);
	cr_assert_eq(n_created(), 2);
	cr_assert_eq(n_cold(), 0, "warm-ups count as cold starts");
	cr_assert_eq(worker_lru(wk, NULL, 0), 0, "warmed-up models stay resident");
	cr_assert_eq(dev_used(), 2 * KEEP, "kept models hold %llu bytes",
		     (unsigned long long)dev_used());
	cr_assert_eq(wk->used, dev_used());
	/* the synthetic profile and the plan were stored beside the package */
	snprintf(path, sizeof(path), "%s/bert/1/plans", dir);
	cr_assert(access(path, F_OK) == 0, "nothing stored in %s", path);

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	cr_assert(infer(s, ch, "bert", 1) & SCHED_F_COLD);
	cr_assert_eq(ctr_get(&wk->standby_hits), 1, "the first request made the model again");
	cr_assert_eq(n_created(), 2);
	cr_assert(!(infer(s, ch, "bert", 2) & SCHED_F_COLD));
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* The warm-up run feeds every input, the optional ones too (clients send
 * attention_mask and token_type_ids; a first request with them must not
 * make its programs). */
static uint32_t warm_given, warm_fewest = UINT32_MAX;

static int run_counting(struct exec_model *m, const struct tview *in, struct tview *out,
			struct exec_cold_info *info)
{
	uint32_t i, n = 0;

	for (i = 0; i < SCHED_MAX_IO; i++)
		n += in[i].data != NULL;
	warm_fewest = n < warm_fewest ? n : warm_fewest;
	warm_given++;
	return cpu_backend.cold_run(m, in, out, info);
}

Test(standby, warm_up_feeds_the_optional_inputs_too)
{
	static struct exec_ops ops;
	struct sched *s = cold_sched(0);

	ops = cpu_backend;
	ops.cold_run = run_counting;
	wk->ops = &ops;
	cr_assert_eq(worker_poll(wk, 1, clock_ns()), 0);
	prepare_all(wk);
	cr_assert_eq(warm_given, 2, "two models, %u warm-up runs", warm_given);
	/* bert-tiny: input_ids, attention_mask, token_type_ids; gpt2-tiny:
	 * input_ids, attention_mask; without the optional ones, one each */
	cr_assert_geq(warm_fewest, 2, "a warm-up run had only %u inputs", warm_fewest);
	sched_stop(s);
	wk->ops = &cpu_backend;
	sched_destroy(s);
}

/* auto mode with nothing stored: no plan, models load whole, no warm-up. */
Test(standby, auto_without_stored_plans_loads_whole)
{
	struct sched_opts o = topts(dir, "cpu");
	struct sched *s;

	o.cold_mode = "auto";
	s = tsched(&o);
	wk = sched_worker(s, 0);
	worker_poll(wk, 1, clock_ns());
	prepare_all(wk);
	cr_assert_eq(ctr_get(&wk->plans_made), 0);
	cr_assert_eq(n_created(), 0);
	sched_destroy(s);
}

/* Under a limit of many models, an idle worker keeps room for one more
 * free, so the next cold start evicts nothing on its way. */
Test(standby, idle_worker_keeps_room_for_a_cold_start)
{
	uint64_t wb = trepo_wsize(dir, "bert", 1);
	struct sched_opts o;
	struct sched_chan *ch;
	struct sched *s;
	uint64_t ev;
	char name[16];
	int i;

	for (i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "b%d", i);
		trepo_add(dir, name, 1, "bert-tiny", (uint64_t)(10 + i));
	}
	o = topts(dir, "cpu");
	o.gpu_mem_limit = 4 * wb + wb / 2;
	o.no_prewarm = true;
	s = tsched(&o);
	wk = sched_worker(s, 0);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	for (i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "b%d", i);
		infer(s, ch, name, i);
	}
	cr_assert_eq(worker_lru(wk, NULL, 0), 4);
	cr_assert_lt(wk->mem_limit - wk->used, wb, "the test needs a full device");
	prepare_all(wk);
	cr_assert_geq(wk->mem_limit - wk->used, wb, "no room kept while idle");
	cr_assert_eq(worker_lru(wk, NULL, 0), 3);
	ev = ctr_get(&wk->evictions);
	infer(s, ch, "b4", 9);
	cr_assert_eq(ctr_get(&wk->evictions), ev, "the cold start evicted");
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* A host limit below both models: a kept or resident cold model reads its
 * host copy in place (DHA layers), so it gives the copy back by leaving the
 * device (destroyed) when the other model needs the room; both serve in
 * turn and the device accounting stays exact. */
Test(standby, host_limit_drops_cold_models_for_the_other)
{
	uint64_t wb = trepo_wsize(dir, "bert", 1), wg = trepo_wsize(dir, "gpt", 1);
	struct sched_opts o = topts(dir, "cpu");
	struct sched_chan *ch;
	struct repo_entry *bert, *gpt;
	struct sched *s;
	int i;

	o.cold_mode = "pipeline";
	o.host_mem_limit = wb + wg - 1;
	s = tsched(&o);
	wk = sched_worker(s, 0);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	cr_assert_eq(repo_lookup(sched_repo(s), "bert", 0, &bert), 0);
	cr_assert_eq(repo_lookup(sched_repo(s), "gpt", 0, &gpt), 0);
	for (i = 0; i < 4; i++) {
		struct repo_entry *e = i % 2 ? gpt : bert, *other = i % 2 ? bert : gpt;

		cr_assert(infer(s, ch, i % 2 ? "gpt" : "bert", i) & SCHED_F_COLD, "request %d", i);
		cr_assert_not_null(repo_entry_host(e, NULL));
		cr_assert_leq(repo_host_used(sched_repo(s)), o.host_mem_limit);
		if (i) {
			cr_assert_null(repo_entry_host(other, NULL), "request %d", i);
			cr_assert_null(other->ws[0].em, "request %d: the other is kept", i);
		}
		cr_assert_eq(wk->used, dev_used());
	}
	cr_assert_eq(n_destroyed(), 3);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}
