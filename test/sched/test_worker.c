/* SPDX-License-Identifier: MIT */
/*
 * Workers stepped by hand (worker_poll on the test thread): completion,
 * placement, eviction under a memory limit, one host copy per model,
 * overload, results against a direct CPU backend run, device load
 * failures, batching and statistics.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "sched/internal.h"

static char dir[256];

static void setup(void)
{
	trepo_make(dir, sizeof(dir));
}

static void teardown(void)
{
	trepo_rm(dir);
}

TestSuite(worker, .init = setup, .fini = teardown);

static struct repo_entry *find(struct sched *s, const char *name)
{
	struct repo_entry *e = NULL;

	cr_assert_eq(repo_lookup(sched_repo(s), name, 0, &e), 0, "%s", name);
	return e;
}

static struct sched_req *post(struct sched *s, struct sched_chan *ch, const char *name,
			      uint64_t seed)
{
	struct sched_req *req = treq(s, ch, name, 0, 1, 0, seed);
	int ret = sched_submit(s, req);

	cr_assert_eq(ret, 0, "submit %s: %s", name, req->msg);
	return req;
}

/* Submit one request for name and step the workers until it completes. */
static struct sched_req *run(struct sched *s, struct sched_chan *ch, const char *name)
{
	struct sched_req *req = post(s, ch, name, 1), *done;

	tcollect(s, ch, &done, 1);
	cr_assert_eq(done, req);
	cr_assert_eq(done->status, 0, "%s: %s", name, done->msg);
	return done;
}

static void run_put(struct sched *s, struct sched_chan *ch, const char *name, uint32_t *worker,
		    bool *cold)
{
	struct sched_req *req = run(s, ch, name);

	if (worker)
		*worker = req->worker;
	if (cold)
		*cold = req->flags & SCHED_F_COLD;
	treq_put(s, req);
}

Test(worker, poll_steps_deterministically)
{
	struct sched_req *r[3], *done[4];
	struct sched_chan *ch;
	struct sched_opts o;
	struct worker *w;
	struct sched *s;

	trepo_add(dir, "bert", 1, "bert-tiny", 1);
	o = topts(dir, "cpu");
	s = tsched(&o);
	w = sched_worker(s, 0);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	r[0] = post(s, ch, "bert", 1);
	r[1] = post(s, ch, "bert", 2);
	r[2] = post(s, ch, "bert", 3);
	cr_assert_eq(worker_queue_depth(w), 3);
	cr_assert_eq(worker_poll(w, 0, 1000), 0);
	cr_assert_eq(sched_complete_poll(ch, done, 4), 0);

	cr_assert_eq(worker_poll(w, 1, 2000), 1);
	cr_assert_eq(sched_complete_poll(ch, done, 4), 1);
	cr_assert_eq(done[0], r[0]);
	cr_assert(r[0]->flags & SCHED_F_COLD);
	cr_assert_eq(worker_queue_depth(w), 2);

	cr_assert_eq(worker_poll(w, 5, 3000), 2);
	cr_assert_eq(sched_complete_poll(ch, done, 4), 2);
	cr_assert_eq(done[0], r[1]);
	cr_assert_eq(done[1], r[2]);
	cr_assert_not(r[1]->flags & SCHED_F_COLD, "second request was cold");
	cr_assert_eq(r[2]->status, 0, "%s", r[2]->msg);
	cr_assert_gt(r[2]->t_exec, 0);
	cr_assert_eq(worker_poll(w, 5, 4000), 0);
	cr_assert_eq(worker_queue_depth(w), 0);
	treq_put(s, r[0]);
	treq_put(s, r[1]);
	treq_put(s, r[2]);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

Test(worker, placement_resident_and_cold)
{
	struct sched_req *a, *b, *x;
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	uint32_t wa, wb, wc, wx;
	bool cold;

	trepo_add(dir, "a", 1, "bert-tiny", 1);
	trepo_add(dir, "b", 1, "gpt2-tiny", 2);
	trepo_add(dir, "c", 1, "resnet-tiny", 3);
	trepo_add(dir, "d", 1, "resnet-tiny", 4);
	o = topts(dir, "cpu:4");
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	/* Cold starts go to the emptiest device. */
	run_put(s, ch, "a", &wa, &cold);
	cr_assert(cold);
	run_put(s, ch, "b", &wb, &cold);
	cr_assert(cold);
	cr_assert_neq(wb, wa);
	run_put(s, ch, "c", &wc, &cold);
	cr_assert(wc != wa && wc != wb);
	/* A resident model goes to its device, not to the empty one. */
	run_put(s, ch, "a", &wx, &cold);
	cr_assert_eq(wx, wa);
	cr_assert_not(cold);
	run_put(s, ch, "b", &wx, &cold);
	cr_assert_eq(wx, wb);
	cr_assert_not(cold);

	/* Queued but not yet resident counts as headed there: a burst for
	 * a cold model does not start it on every device. */
	a = post(s, ch, "d", 1);
	b = post(s, ch, "d", 2);
	tcollect(s, ch, &x, 1);
	tcollect(s, ch, &x, 1);
	cr_assert_eq(a->worker, b->worker);
	cr_assert(a->worker != wa && a->worker != wb && a->worker != wc);
	cr_assert(a->flags & SCHED_F_COLD);
	cr_assert_not(b->flags & SCHED_F_COLD);
	treq_put(s, a);
	treq_put(s, b);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

Test(worker, one_host_copy_for_all_devices)
{
	struct sched_req *r[4], *done[4];
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	struct repo_entry *e;
	struct sched_stats *st;
	const void *host;
	uint32_t users, i, seen = 0;
	uint64_t sz;

	trepo_add(dir, "a", 1, "bert-tiny", 1);
	sz = trepo_wsize(dir, "a", 1);
	o = topts(dir, "cpu:4");
	o.spill_depth = 1;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	e = find(s, "a");
	host = repo_entry_host(e, &users);
	cr_assert_not_null(host);
	cr_assert_eq(users, 0);
	/* Busy model: each request spills to the next idle device. */
	for (i = 0; i < 4; i++)
		r[i] = post(s, ch, "a", i);
	tcollect(s, ch, done, 4);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(r[i]->status, 0, "%s", r[i]->msg);
		cr_assert(r[i]->flags & SCHED_F_COLD);
		seen |= 1u << r[i]->worker;
		cr_assert(worker_has_model(sched_worker(s, i), e));
		treq_put(s, r[i]);
	}
	cr_assert_eq(seen, 0xf, "devices used: %x", seen);
	/* Four instances, one host copy, read once. */
	cr_assert_eq(repo_entry_host(e, &users), host);
	cr_assert_eq(users, 4);
	cr_assert_eq(repo_host_used(sched_repo(s)), sz);

	st = malloc(sizeof(*st));
	cr_assert(st);
	sched_stats(s, st);
	cr_assert_eq(st->n_workers, 4);
	cr_assert_eq(st->n_models, 1);
	cr_assert_eq(st->models[0].requests, 4);
	cr_assert_eq(st->models[0].cold_starts, 4);
	cr_assert_eq(st->models[0].resident_on, 4);
	cr_assert_eq(st->models[0].lat_count, 4);
	cr_assert_eq(st->models[0].bytes_loaded, 4 * sz);
	cr_assert_eq(st->models[0].host_bytes, sz);
	cr_assert_eq(st->models[0].in_flight, 0);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(st->workers[i].requests, 1);
		cr_assert_eq(st->workers[i].resident_bytes, sz);
		cr_assert_eq(st->workers[i].resident_models, 1);
	}
	cr_assert_eq(st->host_used, sz);
	free(st);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
	/* Dropping the last instance left the host copy; destroy freed it. */
}

Test(worker, least_loaded_replica)
{
	struct sched_req *r[4], *x, *y, *done[4];
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	uint32_t i;

	trepo_add(dir, "a", 1, "bert-tiny", 1);
	o = topts(dir, "cpu:2");
	o.spill_depth = 1;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	r[0] = post(s, ch, "a", 0);
	r[1] = post(s, ch, "a", 1);
	tcollect(s, ch, done, 2);
	cr_assert_neq(r[0]->worker, r[1]->worker);
	treq_put(s, r[0]);
	treq_put(s, r[1]);
	/* Resident on both, neither spills: the shorter queue wins. */
	s->o.spill_depth = 100;
	x = post(s, ch, "a", 2);
	y = post(s, ch, "a", 3);
	r[2] = post(s, ch, "a", 4);
	r[3] = post(s, ch, "a", 5);
	tcollect(s, ch, done, 4);
	cr_assert_neq(x->worker, y->worker);
	cr_assert_neq(r[2]->worker, r[3]->worker);
	for (i = 0; i < 4; i++) {
		cr_assert_not(done[i]->flags & SCHED_F_COLD);
		treq_put(s, done[i]);
	}
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

static void check_lru(struct worker *w, struct sched *s, const char *const *names, uint32_t n)
{
	struct repo_entry *lru[8];
	uint32_t k, i;

	k = worker_lru(w, lru, ARRAY_SIZE(lru));
	cr_assert_eq(k, n, "%u models resident, %u expected", k, n);
	for (i = 0; i < n; i++)
		cr_assert_eq(lru[i], find(s, names[i]), "LRU position %u: %s, expected %s", i,
			     repo_entry_name(lru[i]), names[i]);
}

/*
 * cpu:4, each device holds three small models (resnet-tiny, size S) and a
 * little more. The incoming gpt2-tiny is larger than S plus the slack, so
 * it needs two evictions at once.
 */
Test(worker, eviction_lru_in_use_and_size)
{
	static const char *const r[] = {"r1", "r2", "r3", "r4",	 "r5",	"r6",
					"r7", "r8", "r9", "r10", "r11", "r12"};
	struct sched_req *g, *busy, *done[2];
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	struct worker *w0;
	uint64_t small;
	uint32_t i, wi;

	for (i = 0; i < 12; i++)
		trepo_add(dir, r[i], 1, "resnet-tiny", i);
	trepo_add(dir, "g", 1, "gpt2-tiny", 99);
	small = trepo_wsize(dir, "r1", 1);
	cr_assert_gt(trepo_wsize(dir, "g", 1), small + 4096);
	o = topts(dir, "cpu:4");
	o.gpu_mem_limit = 3 * small + 4096;
	s = tsched(&o);
	w0 = sched_worker(s, 0);
	cr_assert_eq(sched_chan_create(s, &ch), 0);

	/* Fill: emptiest first, so r1, r5, r9 land on device 0. */
	for (i = 0; i < 12; i++) {
		run_put(s, ch, r[i], &wi, NULL);
		cr_assert_eq(wi, i % 4, "%s went to %u", r[i], wi);
	}
	check_lru(w0, s, (const char *const[]){"r9", "r5", "r1"}, 3);
	/* Using r1 makes it the most recent. */
	run_put(s, ch, "r1", &wi, NULL);
	cr_assert_eq(wi, 0);
	check_lru(w0, s, (const char *const[]){"r1", "r9", "r5"}, 3);

	/* g goes to device 0 (all equally full, equal queues); r5, least
	 * recent, has a request queued behind g, so it must stay: g evicts
	 * r9 and r1 instead, both needed for its size. */
	g = post(s, ch, "g", 1);
	cr_assert_eq(worker_queue_depth(w0), 1);
	busy = post(s, ch, "r5", 2);
	cr_assert_eq(worker_poll(w0, 1, clock_ns()), 1);
	cr_assert_eq(sched_complete_poll(ch, done, 2), 1);
	cr_assert_eq(done[0], g);
	cr_assert_eq(g->status, 0, "%s", g->msg);
	cr_assert_eq(g->worker, 0);
	check_lru(w0, s, (const char *const[]){"g", "r5"}, 2);
	cr_assert_eq(ctr_get(&w0->evictions), 2);
	cr_assert_leq(worker_resident_bytes(w0), o.gpu_mem_limit);
	/* The queued request then runs warm. */
	cr_assert_eq(worker_poll(w0, 1, clock_ns()), 1);
	cr_assert_eq(sched_complete_poll(ch, done, 2), 1);
	cr_assert_eq(done[0], busy);
	cr_assert_eq(busy->status, 0, "%s", busy->msg);
	cr_assert_not(busy->flags & SCHED_F_COLD, "r5 was evicted while queued");
	treq_put(s, g);
	treq_put(s, busy);
	cr_assert(worker_has_model(sched_worker(s, 1), find(s, "r2")));
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* Three small models fill the device; g needs the room of two. */
static struct sched *room_sched(struct sched_chan **ch, uint32_t max_batch)
{
	struct sched_opts o;
	struct sched *s;
	uint64_t small;

	trepo_add(dir, "r1", 1, "resnet-tiny", 1);
	trepo_add(dir, "r2", 1, "resnet-tiny", 2);
	trepo_add(dir, "r3", 1, "resnet-tiny", 3);
	trepo_add(dir, "g", 1, "gpt2-tiny", 4);
	small = trepo_wsize(dir, "r1", 1);
	o = topts(dir, "cpu");
	o.gpu_mem_limit = 3 * small + 4096;
	o.max_batch = max_batch;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, ch), 0);
	run_put(s, *ch, "r1", NULL, NULL);
	run_put(s, *ch, "r2", NULL, NULL);
	run_put(s, *ch, "r3", NULL, NULL);
	return s;
}

static void room_end(struct sched *s, struct sched_chan *ch, struct sched_req **r, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		treq_put(s, r[i]);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

Test(worker, waits_for_room_held_by_models_in_use)
{
	struct sched_req *q[3], *done[4];
	struct sched_chan *ch;
	struct sched *s = room_sched(&ch, 1);
	struct worker *w = sched_worker(s, 0);
	uint32_t i;

	/* r1 and r2 queued behind g; evicting r3 alone would not make room,
	 * so g waits (nothing is evicted in vain, nothing fails) ... */
	q[0] = post(s, ch, "g", 1);
	q[1] = post(s, ch, "r1", 2);
	q[2] = post(s, ch, "r2", 3);
	cr_assert_eq(worker_poll(w, 1, clock_ns()), 1);
	cr_assert_eq(sched_complete_poll(ch, done, 4), 0);
	cr_assert_eq(worker_lru(w, NULL, 0), 3);
	cr_assert_eq(ctr_get(&w->evictions), 0);
	cr_assert_eq(ctr_get(&w->room_waits), 1);
	cr_assert_eq(worker_queue_depth(w), 3, "g counts as queued");
	/* ... while r1 runs warm; then r1 and r3 are idle and make room, and
	 * g runs before r2 (still resident). */
	tcollect(s, ch, done, 3);
	cr_assert_eq(done[0], q[1]);
	cr_assert_eq(done[1], q[0]);
	cr_assert_eq(done[2], q[2]);
	for (i = 0; i < 3; i++)
		cr_assert_eq(q[i]->status, 0, "%u: %s", i, q[i]->msg);
	cr_assert_not(q[1]->flags & SCHED_F_COLD);
	cr_assert_not(q[2]->flags & SCHED_F_COLD);
	cr_assert(q[0]->flags & SCHED_F_COLD);
	cr_assert_eq(worker_lru(w, NULL, 0), 2);
	cr_assert_eq(ctr_get(&w->evictions), 2);
	cr_assert_eq(ctr_get(&w->room_forced), 0);
	cr_assert_eq(worker_queue_depth(w), 0);
	room_end(s, ch, q, 3);
}

Test(worker, room_wait_is_bounded)
{
	struct sched_req *q[5], *done[8];
	struct sched_chan *ch;
	struct sched *s = room_sched(&ch, 1);
	struct worker *w = sched_worker(s, 0);
	uint32_t i;

	q[0] = post(s, ch, "g", 1);
	q[1] = post(s, ch, "r1", 2);
	q[2] = post(s, ch, "r2", 3);
	cr_assert_eq(worker_poll(w, 1, clock_ns()), 1); /* g waits */
	/* Requests for r1 and r2 keep coming: once those queued when g began
	 * to wait have run, g evicts them although they are in use. */
	q[3] = post(s, ch, "r1", 4);
	q[4] = post(s, ch, "r2", 5);
	tcollect(s, ch, done, 5);
	cr_assert_eq(done[0], q[1]);
	cr_assert_eq(done[1], q[2]);
	cr_assert_eq(done[2], q[0], "g runs before the later requests");
	for (i = 0; i < 5; i++)
		cr_assert_eq(q[i]->status, 0, "%u: %s", i, q[i]->msg);
	cr_assert(q[0]->flags & SCHED_F_COLD);
	cr_assert(ctr_get(&w->room_forced) >= 1);
	cr_assert((q[3]->flags & SCHED_F_COLD) || (q[4]->flags & SCHED_F_COLD));
	room_end(s, ch, q, 5);
}

Test(worker, batch_waits_for_room)
{
	struct sched_req *q[4], *done[4];
	struct sched_chan *ch;
	struct sched *s = room_sched(&ch, 4);
	struct worker *w = sched_worker(s, 0);
	uint32_t i;

	q[0] = post(s, ch, "g", 1);
	q[1] = post(s, ch, "g", 2);
	q[2] = post(s, ch, "r1", 3);
	q[3] = post(s, ch, "r2", 4);
	tcollect(s, ch, done, 4);
	for (i = 0; i < 4; i++)
		cr_assert_eq(q[i]->status, 0, "%u: %s", i, q[i]->msg);
	cr_assert_eq(ctr_get(&w->room_waits), 2, "both requests of g's batch waited");
	cr_assert_eq(worker_queue_depth(w), 0);
	room_end(s, ch, q, 4);
}

Test(worker, overload_when_queue_full)
{
	struct sched_req *r[16], *x, *done[16];
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	uint32_t i;
	int ret;

	trepo_add(dir, "a", 1, "resnet-tiny", 1);
	o = topts(dir, "cpu");
	o.queue_depth = 16;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	/* A ring of 16 takes 15 requests. */
	for (i = 0; i < 15; i++)
		r[i] = post(s, ch, "a", i);
	x = treq(s, ch, "a", 0, 1, 0, 99);
	ret = sched_submit(s, x);
	cr_assert_eq(ret, DPRT_EOVERLOAD);
	cr_assert_eq(x->status, DPRT_EOVERLOAD);
	cr_assert(strstr(x->msg, "queue full"), "%s", x->msg);
	tcollect(s, ch, done, 15);
	/* The refused one never comes back; the others all do, once. */
	for (i = 0; i < 50; i++)
		worker_poll(sched_worker(s, 0), 16, clock_ns());
	cr_assert_eq(sched_complete_poll(ch, done, 16), 0);
	for (i = 0; i < 15; i++) {
		cr_assert_eq(r[i]->status, 0);
		treq_put(s, r[i]);
	}
	treq_put(s, x);
	/* Empty pool: sched_req_get says so. */
	for (i = 0; i < 64; i++)
		cr_assert_not_null(done[i % 16] = sched_req_get(s));
	cr_assert_null(sched_req_get(s));
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* Run the same inputs straight on the CPU backend and compare. */
static void check_direct(const char *name, const struct sched_req *req)
{
	char path[PATH_MAX];
	struct tview out[SCHED_MAX_IO];
	struct exec_model *m;
	const struct graph *g;
	struct pkg *p;
	void *w;
	uint32_t i;
	int64_t k, n;

	snprintf(path, sizeof(path), "%s/%s/1/model.dpk", dir, name);
	cr_assert_eq(pkg_open(path, &p), 0);
	g = pkg_graph(p);
	w = aligned_alloc(LAYER_ALIGN, ALIGN_UP(g->weights_size, LAYER_ALIGN));
	cr_assert_eq(pkg_read_weights(p, w), 0);
	cr_assert_eq(cpu_backend.model_create(NULL, g, w, &m), 0);
	memset(out, 0, sizeof(out));
	cr_assert_eq(cpu_backend.model_run(m, req->in, out), 0);
	for (i = 0; i < g->n_outputs; i++) {
		const float *a = out[i].data, *b = req->out[i].data;

		if (!(req->out_mask >> i & 1)) {
			cr_assert_eq(req->out[i].shape.ndim, 0);
			continue;
		}
		cr_assert_eq(out[i].nbytes, req->out[i].nbytes);
		cr_assert_eq(out[i].shape.ndim, req->out[i].shape.ndim);
		n = shape_numel(&out[i].shape);
		for (k = 0; k < n; k++)
			cr_assert(fabsf(a[k] - b[k]) <= 1e-5f * (1 + fabsf(a[k])),
				  "%s output %u [%lld]: %g vs %g", name, i, (long long)k, a[k],
				  b[k]);
	}
	cpu_backend.model_destroy(m);
	free(w);
	pkg_close(p);
}

Test(worker, results_equal_direct_run)
{
	static const char *const names[] = {"bert", "gpt", "resnet"};
	struct sched_req *req, *done;
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	size_t i;

	trepo_add(dir, "bert", 1, "bert-tiny", 11);
	trepo_add(dir, "gpt", 1, "gpt2-tiny", 12);
	trepo_add(dir, "resnet", 1, "resnet-tiny", 13);
	o = topts(dir, "cpu:2");
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		req = treq(s, ch, names[i], 0, 2, 0, 40 + i);
		cr_assert_eq(sched_submit(s, req), 0, "%s", req->msg);
		tcollect(s, ch, &done, 1);
		cr_assert_eq(done->status, 0, "%s", done->msg);
		check_direct(names[i], done);
		treq_put(s, done);
	}
	/* Only the second output of BERT (pooler_output). */
	req = treq(s, ch, "bert", 0, 1, 0, 50);
	req->out_mask = 2;
	cr_assert_eq(sched_submit(s, req), 0, "%s", req->msg);
	cr_assert_eq(req->out_need, ALIGN_UP(req->out[1].nbytes, 64));
	tcollect(s, ch, &done, 1);
	cr_assert_eq(done->status, 0, "%s", done->msg);
	check_direct("bert", done);
	treq_put(s, done);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

Test(worker, bad_requests_fail_synchronously)
{
	struct sched_req *req, *done[1];
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	static float big[4];
	int ret;

	trepo_add(dir, "bert", 1, "bert-tiny", 1);
	o = topts(dir, "cpu");
	o.req_out_bytes = 4096;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);

	req = treq(s, ch, "bert", 0, 1, 8, 1);
	req->in[0].shape.dims[1] = 9; /* bytes no longer match the shape */
	ret = sched_submit(s, req);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert(strstr(req->msg, "input 'input_ids'"), "%s", req->msg);
	treq_put(s, req);

	req = treq(s, ch, "bert", 0, 1, 8, 1);
	req->in[1].shape.dims[1] = 4; /* mask seq differs from ids */
	req->in[1].nbytes = 4 * 8;
	ret = sched_req_prepare(req);
	cr_assert_eq(ret, DPRT_ESHAPE, "%s", req->msg);
	cr_assert_eq(sched_submit(s, req), DPRT_ESHAPE);
	treq_put(s, req);

	req = treq(s, ch, "bert", 0, 1, 8, 1);
	req->out_mask = 1u << 5;
	cr_assert_eq(sched_submit(s, req), DPRT_EINPUT);
	cr_assert(strstr(req->msg, "output #5"), "%s", req->msg);
	treq_put(s, req);

	/* Outputs larger than the record's buffer, then a buffer of our own. */
	req = treq(s, ch, "bert", 0, 4, 32, 1);
	cr_assert_eq(sched_submit(s, req), DPRT_EOUTBUF);
	cr_assert(strstr(req->msg, "output"), "%s", req->msg);
	cr_assert_gt(req->out_need, 4096);
	sched_req_set_output(req, aligned_alloc(64, ALIGN_UP(req->out_need, 64)), req->out_need);
	cr_assert_eq(sched_submit(s, req), 0, "%s", req->msg);
	tcollect(s, ch, done, 1);
	cr_assert_eq(done[0]->status, 0, "%s", done[0]->msg);
	free(req->obuf);
	treq_put(s, req);

	/* A token id out of range fails in the backend: the request fails,
	 * the model keeps serving. */
	req = treq(s, ch, "bert", 0, 1, 8, 1);
	((int64_t *)req->in[0].data)[3] = 5000;
	cr_assert_eq(sched_submit(s, req), 0, "%s", req->msg);
	tcollect(s, ch, done, 1);
	cr_assert_eq(done[0]->status, DPRT_EINPUT, "%d %s", done[0]->status, done[0]->msg);
	treq_put(s, req);
	req = treq(s, ch, "bert", 0, 1, 8, 1);
	cr_assert_eq(sched_submit(s, req), 0, "%s", req->msg);
	tcollect(s, ch, done, 1);
	cr_assert_eq(done[0]->status, 0, "%s", done[0]->msg);
	treq_put(s, req);

	req = sched_req_get(s);
	req->model = find(s, "bert");
	cr_assert_eq(sched_submit(s, req), -EINVAL); /* no channel */
	req->chan = ch;
	req->in[0] = (struct tview){.shape = {.dtype = DT_F32, .ndim = 1, .dims = {4}},
				    .data = big,
				    .nbytes = sizeof(big)};
	cr_assert_eq(sched_submit(s, req), DPRT_EDTYPE, "%s", req->msg);
	sched_req_put(s, req);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* A backend whose model_create fails for GPT-2 models. */
static int flaky_create(void *dev, const struct graph *g, const void *w, struct exec_model **out)
{
	if (!strcmp(g->arch, "gpt2"))
		return err_set(-ENOMEM, "simulated: out of device memory");
	return cpu_backend.model_create(dev, g, w, out);
}

static struct exec_ops flaky;

Test(worker, device_load_failure_fails_requests_only)
{
	struct sched_req *req, *done;
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	uint32_t users;

	trepo_add(dir, "bert", 1, "bert-tiny", 1);
	trepo_add(dir, "gpt", 1, "gpt2-tiny", 2);
	o = topts(dir, "cpu");
	s = tsched(&o);
	flaky = cpu_backend;
	flaky.model_create = flaky_create;
	sched_worker(s, 0)->ops = &flaky;
	cr_assert_eq(sched_chan_create(s, &ch), 0);

	req = post(s, ch, "gpt", 1);
	tcollect(s, ch, &done, 1);
	cr_assert_eq(done->status, DPRT_EDEVICE);
	cr_assert(strstr(done->msg, "device cpu0: cannot load model 'gpt' version 1: "
				    "simulated"),
		  "%s", done->msg);
	treq_put(s, req);
	/* The model stays READY (a device problem, not the package's) and
	 * its host copy is not held by the failed instance. */
	cr_assert_eq(repo_entry_state(find(s, "gpt")), REPO_READY);
	repo_entry_host(find(s, "gpt"), &users);
	cr_assert_eq(users, 0);
	run_put(s, ch, "bert", NULL, NULL);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

Test(worker, batching_fuses_and_isolates)
{
	struct sched_req *r[5], *done[5];
	struct sched_chan *ch;
	struct sched_opts o;
	struct worker *w;
	struct sched *s;
	uint32_t i;

	trepo_add(dir, "bert", 1, "bert-tiny", 21);
	o = topts(dir, "cpu");
	o.max_batch = 4;
	o.batch_delay_us = 1000;
	s = tsched(&o);
	w = sched_worker(s, 0);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	/* Three of one shape, then one of another. */
	for (i = 0; i < 3; i++) {
		r[i] = treq(s, ch, "bert", 0, 1 + i % 2, 16, 60 + i);
		cr_assert_eq(sched_submit(s, r[i]), 0);
	}
	r[3] = treq(s, ch, "bert", 0, 1, 8, 63);
	cr_assert_eq(sched_submit(s, r[3]), 0);
	/* The first batch is cut short by the misfit and runs now. */
	cr_assert_eq(worker_poll(w, 16, 0), 3);
	cr_assert_eq(sched_complete_poll(ch, done, 5), 3);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(r[i]->status, 0, "%s", r[i]->msg);
		cr_assert(r[i]->flags & SCHED_F_BATCHED);
		cr_assert(r[i]->flags & SCHED_F_COLD);
		check_direct("bert", r[i]);
	}
	/* The last one waits for its window (virtual clock), then runs. */
	cr_assert_eq(worker_poll(w, 16, 10000), 0);
	cr_assert_eq(worker_poll(w, 16, 10000 + 1000 * 1000), 1);
	cr_assert_eq(sched_complete_poll(ch, done, 5), 1);
	cr_assert_eq(r[3]->status, 0);
	cr_assert_not(r[3]->flags & SCHED_F_BATCHED);
	check_direct("bert", r[3]);
	for (i = 0; i < 4; i++)
		treq_put(s, r[i]);

	/* A bad token id in a batch fails only its own request. */
	for (i = 0; i < 4; i++) {
		r[i] = treq(s, ch, "bert", 0, 1, 8, 70 + i);
		if (i == 2)
			((int64_t *)r[i]->in[0].data)[0] = -3;
		cr_assert_eq(sched_submit(s, r[i]), 0);
	}
	cr_assert_eq(worker_poll(w, 16, 0), 4);
	cr_assert_eq(sched_complete_poll(ch, done, 5), 4);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(r[i]->status, i == 2 ? DPRT_EINPUT : 0, "%u: %s", i, r[i]->msg);
		if (i != 2)
			check_direct("bert", r[i]);
		treq_put(s, r[i]);
	}
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* A request's queue time runs until its worker starts it: of requests
 * taken in one poll, each waited at least as long as the ones run before
 * it took to run. */
Test(worker, queue_time_counts_waiting_behind_earlier_requests)
{
	struct sched_req *r[4], *done[4];
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	uint64_t ran = 0;
	uint32_t i, k;

	trepo_add(dir, "a", 1, "resnet-tiny", 1);
	o = topts(dir, "cpu");
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	for (i = 0; i < 4; i++)
		r[i] = post(s, ch, "a", i);
	cr_assert_eq(worker_poll(sched_worker(s, 0), 4, clock_ns()), 4);
	cr_assert_eq(sched_complete_poll(ch, done, 4), 4);
	for (i = 0; i < 4; i++) {
		for (k = 0; k < 4 && done[k] != r[i]; k++)
			;
		cr_assert_lt(k, 4);
		cr_assert_eq(r[i]->status, 0, "%s", r[i]->msg);
		cr_assert_geq(r[i]->t_queue, ran,
			      "request %u waited %llu ns, the ones before "
			      "it ran %llu ns",
			      i, (unsigned long long)r[i]->t_queue, (unsigned long long)ran);
		ran += r[i]->t_load + r[i]->t_exec;
	}
	for (i = 0; i < 4; i++)
		treq_put(s, r[i]);
	sched_chan_destroy(ch);
	sched_destroy(s);
}
