/* SPDX-License-Identifier: MIT */
/*
 * Threaded mode: worker threads (pinned, sleeping when idle), two poster
 * threads with their own completion channels, every request completed
 * exactly once; idle workers burn no CPU; shutdown drains.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include "sched/internal.h"

#define PER_THREAD 300
#define N_POSTERS 2

static char dir[256];

static void setup(void)
{
	trepo_make(dir, sizeof(dir));
	trepo_add(dir, "bert", 1, "bert-tiny", 1);
	trepo_add(dir, "resnet", 1, "resnet-tiny", 2);
}

static void teardown(void)
{
	trepo_rm(dir);
}

TestSuite(threads, .init = setup, .fini = teardown);

struct poster {
	struct sched *s;
	struct sched_chan *ch;
	uint32_t id;
	uint8_t seen[PER_THREAD];
	uint32_t failures, overloads, cold;
};

/* Inputs shared by every request of a poster (read-only). */
struct inputs {
	struct repo_entry *e;
	struct tview in[SCHED_MAX_IO];
};

static void make_inputs(struct sched *s, struct inputs *x, const char *name, uint64_t seed)
{
	struct sched_chan *ch = NULL;
	struct sched_req *req = treq(s, ch, name, 0, 1, 8, seed);

	x->e = req->model;
	memcpy(x->in, req->in, sizeof(x->in));
	memset(req->in, 0, sizeof(req->in));
	sched_req_put(s, req);
}

static void free_inputs(struct inputs *x)
{
	uint32_t i;

	for (i = 0; i < SCHED_MAX_IO; i++)
		free(x->in[i].data);
}

static uint32_t drain_chan(struct poster *p, bool wait)
{
	struct sched_req *done[32];
	uint32_t n, i;

	if (wait)
		sched_chan_wait(p->ch, 1000);
	n = sched_complete_poll(p->ch, done, ARRAY_SIZE(done));
	for (i = 0; i < n; i++) {
		uintptr_t k = (uintptr_t)done[i]->ctx;

		p->seen[k]++;
		if (done[i]->status)
			p->failures++;
		if (done[i]->flags & SCHED_F_COLD)
			p->cold++;
		sched_req_put(p->s, done[i]);
	}
	return n;
}

static void *poster_main(void *arg)
{
	struct poster *p = arg;
	struct inputs x[2];
	uint32_t k = 0, outstanding = 0;
	int ret;

	make_inputs(p->s, &x[0], "bert", 10 + p->id);
	make_inputs(p->s, &x[1], "resnet", 20 + p->id);
	while (k < PER_THREAD) {
		struct sched_req *req = sched_req_get(p->s);

		if (!req) {
			outstanding -= drain_chan(p, true);
			continue;
		}
		req->model = x[k % 2].e;
		req->chan = p->ch;
		req->ctx = (void *)(uintptr_t)k;
		memcpy(req->in, x[k % 2].in, sizeof(req->in));
		ret = sched_submit(p->s, req);
		if (ret == DPRT_EOVERLOAD) {
			p->overloads++;
			sched_req_put(p->s, req);
			outstanding -= drain_chan(p, true);
			continue;
		}
		if (ret)
			break;
		k++;
		outstanding++;
		outstanding -= drain_chan(p, false);
	}
	while (outstanding)
		outstanding -= drain_chan(p, true);
	free_inputs(&x[0]);
	free_inputs(&x[1]);
	return (void *)(uintptr_t)k;
}

Test(threads, two_posters_every_request_once)
{
	struct poster p[N_POSTERS];
	pthread_t t[N_POSTERS];
	struct sched_opts o;
	struct sched *s;
	struct sched_stats *st;
	uint32_t i, k;
	void *res;

	o = topts(dir, "cpu:2");
	o.no_threads = false;
	o.n_reqs = 48;
	o.queue_depth = 16;
	s = tsched(&o);
	for (i = 0; i < N_POSTERS; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].s = s;
		p[i].id = i;
		cr_assert_eq(sched_chan_create(s, &p[i].ch), 0);
		cr_assert_eq(pthread_create(&t[i], NULL, poster_main, &p[i]), 0);
	}
	for (i = 0; i < N_POSTERS; i++) {
		pthread_join(t[i], &res);
		cr_assert_eq((uintptr_t)res, PER_THREAD, "poster %u stopped early", i);
		for (k = 0; k < PER_THREAD; k++)
			cr_assert_eq(p[i].seen[k], 1, "poster %u request %u completed %u times", i,
				     k, p[i].seen[k]);
		cr_assert_eq(p[i].failures, 0);
		/* Nothing arrives after the last completion. */
		cr_assert_eq(drain_chan(&p[i], false), 0);
	}
	st = malloc(sizeof(*st));
	cr_assert(st);
	sched_stats(s, st);
	cr_assert_eq(st->workers[0].requests + st->workers[1].requests, N_POSTERS * PER_THREAD);
	cr_assert_eq(st->in_flight, 0);
	free(st);
	sched_stop(s);
	for (i = 0; i < N_POSTERS; i++)
		sched_chan_destroy(p[i].ch);
	sched_destroy(s);
}

/* CPU time of the worker threads (not the BLAS library's own threads). */
static double worker_cpu_seconds(struct sched *s)
{
	struct timespec ts;
	clockid_t cid;
	double sum = 0;
	uint32_t i;

	for (i = 0; i < sched_n_workers(s); i++) {
		cr_assert_eq(pthread_getcpuclockid(sched_worker(s, i)->thread, &cid), 0);
		cr_assert_eq(clock_gettime(cid, &ts), 0);
		sum += (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	}
	return sum;
}

Test(threads, idle_workers_sleep_and_wake)
{
	struct timespec nap = {0, 300 * 1000 * 1000};
	struct sched_req *req, *done;
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	double c0, used;
	int round;

	o = topts(dir, "cpu:4");
	o.no_threads = false;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	for (round = 0; round < 3; round++) {
		/* Four idle workers for 300 ms: far less than one core-second
		 * each would take if they spun. */
		c0 = worker_cpu_seconds(s);
		nanosleep(&nap, NULL);
		used = worker_cpu_seconds(s) - c0;
		cr_assert_lt(used, 0.05, "idle workers used %.3f s of CPU in 0.3 s", used);
		/* A sleeping worker wakes for a request. */
		req = treq(s, ch, round % 2 ? "bert" : "resnet", 0, 1, 8, (uint64_t)round);
		cr_assert_eq(sched_submit(s, req), 0, "%s", req->msg);
		sched_chan_wait(ch, 5000);
		cr_assert_eq(sched_complete_poll(ch, &done, 1), 1, "no completion in 5 s");
		cr_assert_eq(done, req);
		cr_assert_eq(done->status, 0, "%s", done->msg);
		treq_put(s, done);
	}
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

Test(threads, shutdown_drains)
{
	struct sched_req *r[40], *done[41], *late;
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	uint32_t i, n = 0, got;
	int ret;

	o = topts(dir, "cpu:2");
	o.no_threads = false;
	o.queue_depth = 64;
	o.max_batch = 4;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	for (i = 0; i < ARRAY_SIZE(r); i++) {
		r[i] = treq(s, ch, i % 3 ? "bert" : "resnet", 0, 1, 8, i);
		cr_assert_eq(sched_submit(s, r[i]), 0, "%s", r[i]->msg);
	}
	/* Stop at once: whatever is queued still runs and completes. */
	sched_stop(s);
	got = sched_complete_poll(ch, done, ARRAY_SIZE(done));
	cr_assert_eq(got, ARRAY_SIZE(r), "%u of %zu completed", got, ARRAY_SIZE(r));
	for (i = 0; i < got; i++) {
		cr_assert_eq(done[i]->status, 0, "%s", done[i]->msg);
		n++;
	}
	cr_assert_eq(n, ARRAY_SIZE(r));
	late = treq(s, ch, "bert", 0, 1, 8, 99);
	ret = sched_submit(s, late);
	cr_assert_eq(ret, -ESHUTDOWN);
	cr_assert(strstr(late->msg, "shutting down"), "%s", late->msg);
	treq_put(s, late);
	for (i = 0; i < ARRAY_SIZE(r); i++)
		treq_put(s, r[i]);
	sched_stop(s); /* idempotent */
	sched_chan_destroy(ch);
	sched_destroy(s);
}
