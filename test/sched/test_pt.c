/* SPDX-License-Identifier: MIT */
/*
 * Parallel transmission in serving, on virtual CPU devices (cpu:4 with
 * --cold-mode pt): plans are made for four devices; a cold start moves
 * layers over idle helpers' links (counted as lent), falls back to the
 * target's own link when the helpers want theirs, and answers exactly as
 * whole-model loads do (the CPU backend computes from the transferred
 * device copy); concurrent cold starts on every device, with paced links,
 * lose and corrupt nothing.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "plan/plan.h"
#include "sched/internal.h"

static char dir[256];

static void setup(void)
{
	trepo_make(dir, sizeof(dir));
	trepo_add(dir, "bert", 1, "bert-tiny", 1);
	trepo_add(dir, "gpt", 1, "gpt2-tiny", 2);
	trepo_add(dir, "resnet", 1, "resnet-tiny", 3);
}

static void teardown(void)
{
	trepo_rm(dir);
}

TestSuite(pt, .init = setup, .fini = teardown);

static const char *const models[] = {"bert", "gpt", "resnet"};
#define N_MODELS 12 /* the concurrent test's: c0..c11 */
static char cname[N_MODELS][8];

/* A scheduler on cpu:4 in cold mode mode, its models planned and warmed
 * up (evicted into standby) on every worker. */
static struct sched *pt_sched(const char *mode, uint64_t mem_limit, bool threads)
{
	struct sched_opts o = topts(dir, "cpu:4");
	struct sched *s;
	uint32_t i;

	o.cold_mode = mode;
	o.gpu_mem_limit = mem_limit;
	o.no_threads = !threads;
	o.n_reqs = 256;
	o.queue_depth = 64;
	s = tsched(&o);
	cr_assert_eq(sched_n_workers(s), 4);
	if (!threads)
		for (i = 0; i < 4; i++) {
			worker_poll(sched_worker(s, i), 4, clock_ns()); /* takes the kick */
			while (worker_prepare(sched_worker(s, i)))
				;
		}
	return s;
}

/* What one model answered: its outputs' bytes, concatenated. */
struct answer {
	uint8_t *bytes;
	uint64_t n;
	uint32_t flags, worker;
};

static void keep(const struct sched_req *done, struct answer *a)
{
	uint64_t n = 0;
	uint32_t i;

	for (i = 0; i < SCHED_MAX_IO; i++)
		n += done->out[i].data ? done->out[i].nbytes : 0;
	a->bytes = malloc(n ? n : 1);
	cr_assert(a->bytes);
	a->n = 0;
	for (i = 0; i < SCHED_MAX_IO; i++) {
		if (!done->out[i].data)
			continue;
		memcpy(a->bytes + a->n, done->out[i].data, done->out[i].nbytes);
		a->n += done->out[i].nbytes;
	}
	a->flags = done->flags;
	a->worker = done->worker;
}

static bool same(const struct answer *a, const struct answer *b)
{
	return a->n == b->n && !memcmp(a->bytes, b->bytes, a->n);
}

/* One request for name (fixed inputs of seed 7); its answer. */
static void infer(struct sched *s, struct sched_chan *ch, const char *name, struct answer *a)
{
	struct sched_req *req = treq(s, ch, name, 0, 1, 0, 7), *done;

	cr_assert_eq(sched_submit(s, req), 0, "submit %s: %s", name, req->msg);
	tcollect(s, ch, &done, 1);
	cr_assert_eq(done->status, 0, "%s: %s", name, done->msg);
	keep(done, a);
	treq_put(s, req);
}

static uint64_t lent_xfers(const struct sched *s, uint32_t i)
{
	return atomic_load(&s->links.link[i].lent_xfers);
}

static uint64_t all_lent(const struct sched *s)
{
	uint64_t n = 0;
	uint32_t i;

	for (i = 0; i < s->links.n; i++)
		n += lent_xfers(s, i);
	return n;
}

/* Plans are for the four devices served and use helpers. */
Test(pt, plans_are_for_every_device_and_use_helpers)
{
	struct sched *s = pt_sched("pt", 0, false);
	struct worker *w = sched_worker(s, 0);
	struct repo_entry *e;
	struct wslot *sl;

	cr_assert_eq(w->cold_mode, PLAN_PT);
	cr_assert_eq(s->links.n, 4);
	cr_assert(atomic_load(&s->links.link[3].up), "device 3 lends no link");
	cr_assert_eq(repo_lookup(sched_repo(s), "resnet", 0, &e), 0);
	sl = &e->ws[0];
	cr_assert(sl->plan, "no plan on worker 0");
	cr_assert_eq(sl->plan->prof.link.n_gpus, 4);
	cr_assert_gt(sl->plan->width, 1, "the plan uses no helper");
	sched_destroy(s);
}

/* Idle helpers: a cold start borrows their links, never its own. */
Test(pt, cold_start_uses_idle_helpers)
{
	struct sched *s = pt_sched("pt", 0, false);
	struct sched_chan *ch = NULL;
	struct sched_pt_stats a, b;
	uint64_t before[4], others = 0;
	struct answer r;
	uint32_t i;

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	sched_pt_stats(s, &a);
	for (i = 0; i < 4; i++)
		before[i] = lent_xfers(s, i);
	infer(s, ch, "resnet", &r);
	cr_assert(r.flags & SCHED_F_COLD, "not a cold start");
	sched_pt_stats(s, &b);
	cr_assert_eq(b.pt_cold_starts, a.pt_cold_starts + 1);
	cr_assert_eq(b.pt_fallbacks, a.pt_fallbacks, "idle helpers, yet a fallback");
	cr_assert_eq(lent_xfers(s, r.worker), before[r.worker], "the target lent to itself");
	for (i = 0; i < 4; i++)
		others += lent_xfers(s, i) - before[i];
	cr_assert_gt(others, 0, "no helper link carried a layer");
	free(r.bytes);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* Helpers that want their links (their own cold starts): the transfers
 * go over the target's link, the cold start completes, counted as a
 * fallback; nothing is lent. */
Test(pt, falls_back_when_helpers_are_busy)
{
	struct sched *s = pt_sched("pt", 0, false);
	struct sched_chan *ch = NULL;
	struct sched_pt_stats a, b;
	struct answer r;
	uint64_t lent0;
	uint32_t i;

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	sched_pt_stats(s, &a);
	lent0 = all_lent(s);
	for (i = 0; i < 4; i++)
		link_want(&s->links, i, true);
	infer(s, ch, "resnet", &r);
	cr_assert(r.flags & SCHED_F_COLD, "not a cold start");
	sched_pt_stats(s, &b);
	cr_assert_eq(b.pt_fallbacks, a.pt_fallbacks + 1);
	cr_assert_eq(b.pt_cold_starts, a.pt_cold_starts, "a busy helper was used");
	cr_assert_eq(all_lent(s), lent0, "a wanted link was lent");
	free(r.bytes);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* Every link borrowed (other devices' transfers in flight, ending in
 * 50 ms): the target's own cold start waits out the borrowed transfer on
 * its link, then takes it back and completes; its helper transfers fall
 * back. */
static void *release_later(void *arg)
{
	struct link_table *t = arg;
	uint32_t i;

	link_pause(50000000);
	for (i = 0; i < 4; i++)
		link_release(t, i, (i + 1) % 4, 0);
	return NULL;
}

Test(pt, owner_takes_its_link_back_after_a_borrowed_transfer)
{
	struct sched *s = pt_sched("pt", 0, false);
	struct sched_chan *ch = NULL;
	struct sched_pt_stats a, b;
	struct answer r;
	pthread_t th;
	uint64_t t0, ns;
	uint32_t i;

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	sched_pt_stats(s, &a);
	for (i = 0; i < 4; i++)
		cr_assert(link_lend(&s->links, i, (i + 1) % 4, clock_ns() + 50000000));
	cr_assert_eq(pthread_create(&th, NULL, release_later, &s->links), 0);
	t0 = clock_ns();
	infer(s, ch, "resnet", &r);
	ns = clock_ns() - t0;
	pthread_join(th, NULL);
	cr_assert(r.flags & SCHED_F_COLD, "not a cold start");
	cr_assert_geq(ns, 40000000ull, "the cold start did not wait for its link (%llu ns)",
		      (unsigned long long)ns);
	sched_pt_stats(s, &b);
	cr_assert_eq(b.pt_fallbacks, a.pt_fallbacks + 1);
	free(r.bytes);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* The same inputs answer byte for byte alike: whole loads, PT with idle
 * helpers, PT fallen back. */
Test(pt, results_identical_to_non_pt)
{
	static const char *const modes[] = {"load", "pipeline", "pt", "pt+dha", "pt"};
	struct answer ref[3], r;
	uint32_t m, k, i;

	for (m = 0; m < ARRAY_SIZE(modes); m++) {
		struct sched *s = pt_sched(modes[m], 0, false);
		struct sched_chan *ch = NULL;

		cr_assert_eq(sched_chan_create(s, &ch), 0);
		if (m == ARRAY_SIZE(modes) - 1) /* every helper busy */
			for (i = 0; i < 4; i++)
				link_want(&s->links, i, true);
		for (k = 0; k < 3; k++) {
			infer(s, ch, models[k], m ? &r : &ref[k]);
			if (!m)
				continue;
			cr_assert(r.flags & SCHED_F_COLD, "%s %s: not a cold start", modes[m],
				  models[k]);
			cr_assert(same(&r, &ref[k]), "%s in mode %s answered otherwise", models[k],
				  modes[m]);
			free(r.bytes);
		}
		sched_chan_destroy(ch);
		sched_destroy(s);
	}
	for (k = 0; k < 3; k++)
		free(ref[k].bytes);
}

/* ---- concurrent cold starts on every device ---- */

#define POSTERS 2
#define PER_POSTER 120

struct poster {
	struct sched *s;
	struct sched_chan *ch;
	const struct answer *ref; /* [N_MODELS] */
	uint8_t seen[PER_POSTER];
	uint32_t failures, wrong, cold, overloads;
	uint32_t retry[PER_POSTER], n_retry; /* refused for room: sent again */
	char why[256];			     /* the first failure's message */
	struct sched_req *tmpl[N_MODELS];    /* inputs per model (owned) */
};

static void drain(struct poster *p, uint32_t *outstanding, bool wait)
{
	struct sched_req *done[16];
	struct answer a;
	uint32_t n, i, k;

	if (wait)
		sched_chan_wait(p->ch, 1000);
	n = sched_complete_poll(p->ch, done, ARRAY_SIZE(done));
	for (i = 0; i < n; i++) {
		k = (uint32_t)(uintptr_t)done[i]->ctx;
		if (done[i]->status == DPRT_EOVERLOAD) {
			/* every model of the device in use: refused, sent again */
			p->overloads++;
			p->retry[p->n_retry++] = k;
		} else if (done[i]->status) {
			p->seen[k]++;
			if (!p->failures++)
				snprintf(p->why, sizeof(p->why), "%s", done[i]->msg);
		} else {
			p->seen[k]++;
			keep(done[i], &a);
			p->wrong += !same(&a, &p->ref[k % N_MODELS]);
			p->cold += (a.flags & SCHED_F_COLD) != 0;
			free(a.bytes);
		}
		memset(done[i]->in, 0, sizeof(done[i]->in)); /* the templates' */
		sched_req_put(p->s, done[i]);
	}
	*outstanding -= n;
}

static void *poster_main(void *arg)
{
	struct poster *p = arg;
	uint32_t k = 0, outstanding = 0, j;
	int ret;

	while (k < PER_POSTER || p->n_retry || outstanding) {
		struct sched_req *req;

		if (k == PER_POSTER && !p->n_retry) {
			drain(p, &outstanding, true);
			continue;
		}
		req = sched_req_get(p->s);
		if (!req) {
			drain(p, &outstanding, true);
			continue;
		}
		j = p->n_retry ? p->retry[--p->n_retry] : k;
		req->model = p->tmpl[j % N_MODELS]->model;
		req->chan = p->ch;
		req->ctx = (void *)(uintptr_t)j;
		memcpy(req->in, p->tmpl[j % N_MODELS]->in, sizeof(req->in));
		ret = sched_submit(p->s, req);
		if (ret == DPRT_EOVERLOAD) {
			memset(req->in, 0, sizeof(req->in));
			sched_req_put(p->s, req);
			if (j != k)
				p->retry[p->n_retry++] = j;
			drain(p, &outstanding, true);
			continue;
		}
		if (ret)
			break;
		k += j == k;
		outstanding++;
		drain(p, &outstanding, false);
	}
	return NULL;
}

/* Twelve models, room for one per device: most requests are cold starts, on
 * all four devices at once, each borrowing the others' paced links while
 * they cold-start too. Every request completes once, correctly. */
Test(pt, concurrent_cold_starts_lose_nothing, .timeout = 120)
{
	struct answer ref[N_MODELS];
	struct poster p[POSTERS];
	pthread_t th[POSTERS];
	struct sched_pt_stats st;
	struct sched *s;
	uint64_t most = 0;
	uint32_t i, k, busy = 0, cold = 0;

	for (k = 0; k < N_MODELS; k++) {
		snprintf(cname[k], sizeof(cname[k]), "c%u", k);
		trepo_add(dir, cname[k], 1, k % 2 ? "bert-tiny" : "gpt2-tiny", 10 + k);
	}
	s = pt_sched("load", 0, false);
	for (k = 0; k < N_MODELS; k++) {
		struct sched_chan *ch = NULL;

		cr_assert_eq(sched_chan_create(s, &ch), 0);
		infer(s, ch, cname[k], &ref[k]);
		sched_chan_destroy(ch);
		most = MAX(most, trepo_wsize(dir, cname[k], 1));
	}
	sched_destroy(s);
	setenv("DPRT_CPU_LINK_MBS", "200", 1);
	knobs_reload();
	s = pt_sched("pt", most + N_MODELS * CPU_COLD_KEEP, true);
	for (i = 0; i < POSTERS; i++) {
		p[i] = (struct poster){.s = s, .ref = ref};
		cr_assert_eq(sched_chan_create(s, &p[i].ch), 0);
		for (k = 0; k < N_MODELS; k++)
			p[i].tmpl[k] = treq(s, NULL, cname[k], 0, 1, 0, 7);
	}
	for (i = 0; i < POSTERS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, poster_main, &p[i]), 0);
	for (i = 0; i < POSTERS; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < POSTERS; i++) {
		for (k = 0; k < PER_POSTER; k++)
			cr_assert_eq(p[i].seen[k], 1, "poster %u request %u seen %u times", i, k,
				     p[i].seen[k]);
		cr_assert_eq(p[i].failures, 0, "poster %u: %u failures, the first: %s", i,
			     p[i].failures, p[i].why);
		cr_assert_eq(p[i].wrong, 0, "poster %u: %u wrong answers", i, p[i].wrong);
		cold += p[i].cold;
	}
	sched_pt_stats(s, &st);
	for (i = 0; i < 4; i++)
		busy += st.lent_ns[i] > 0;
	cr_assert_gt(cold, 10, "only %u cold starts", cold);
	cr_assert_gt(st.pt_cold_starts, 0, "no cold start used a helper");
	cr_assert_geq(busy, 2, "only %u devices lent their link", busy);
	for (i = 0; i < POSTERS; i++) {
		for (k = 0; k < N_MODELS; k++)
			treq_put(s, p[i].tmpl[k]);
		sched_chan_destroy(p[i].ch);
	}
	sched_destroy(s);
	for (k = 0; k < N_MODELS; k++)
		free(ref[k].bytes);
	unsetenv("DPRT_CPU_LINK_MBS");
	knobs_reload();
}
