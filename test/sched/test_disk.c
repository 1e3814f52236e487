/* SPDX-License-Identifier: MIT */
/*
 * Streamed disk cold starts: a model whose host copy was dropped is read
 * again from its package while its cold start runs (worker.c, "parking").
 * Real package files, a scheduler with its worker thread, reads slowed or
 * held at a layer by the host store's test hook.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "sched/internal.h"

static char dir[256];

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open_;		    /* held reads may go on */
static uint32_t gate_layer;	    /* reads wait before checking this layer */
static _Atomic uint32_t gate_waits; /* reads that reached the gate */
static uint32_t slow_us;	    /* each layer before the gate takes this long */

static pthread_t owner; /* the first read after gate_arm: the only one held */
static _Atomic bool owned;

/* In the first read after gate_arm, layers before gate_layer take slow_us
 * each; from gate_layer on they wait (up to 10 s) until the gate opens.
 * Other reads (of copies dropped to make room for it) go on. */
static void gate_hook(uint32_t layer)
{
	struct timespec ts;
	bool no = false;

	if (atomic_compare_exchange_strong(&owned, &no, true))
		owner = pthread_self();
	else if (!pthread_equal(owner, pthread_self()))
		return;
	if (layer < gate_layer) {
		usleep(slow_us);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&gate_lock);
	if (layer == gate_layer)
		gate_waits++;
	while (!gate_open_ && pthread_cond_timedwait(&gate_cond, &gate_lock, &ts) == 0)
		;
	pthread_mutex_unlock(&gate_lock);
}

static void gate_arm(uint32_t layer, uint32_t us)
{
	slow_us = us;
	atomic_store(&owned, false);
	gate_open_ = false;
	gate_layer = layer;
	gate_waits = 0;
	atomic_store(&hoststore_layer_hook, gate_hook);
}

static void gate_open(void)
{
	pthread_mutex_lock(&gate_lock);
	gate_open_ = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

static void setup(void)
{
	trepo_make(dir, sizeof(dir));
}

static void teardown(void)
{
	gate_open();
	atomic_store(&hoststore_layer_hook, NULL);
	trepo_rm(dir);
}

TestSuite(disk, .init = setup, .fini = teardown);

static struct repo_entry *find(struct sched *s, const char *name)
{
	struct repo_entry *e = NULL;

	cr_assert_eq(repo_lookup(sched_repo(s), name, 1, &e), 0, "%s", err_msg(0));
	return e;
}

/* Wait (up to 10 s) for n completions on ch; the worker runs on its own
 * thread. */
static void collect(struct sched_chan *ch, struct sched_req **out, unsigned n)
{
	unsigned got = 0, i;

	for (i = 0; got < n && i < 10000; i++) {
		got += sched_complete_poll(ch, out + got, n - got);
		if (got < n)
			sched_chan_wait(ch, 1);
	}
	cr_assert_eq(got, n, "only %u of %u completions came", got, n);
}

static uint64_t plans_made(struct sched *s)
{
	static struct sched_stats st;

	sched_stats(s, &st);
	return st.workers[0].plans;
}

static void disk_counts(struct sched *s, uint64_t *cold, uint64_t *streamed, uint64_t *bytes)
{
	repo_disk_counts(sched_repo(s), cold, streamed, bytes);
}

/* Wait (up to 10 s) until cond(s) holds. */
#define WAIT_FOR(cond)                                                                             \
	do {                                                                                       \
		int i_;                                                                            \
		for (i_ = 0; i_ < 10000 && !(cond); i_++)                                          \
			usleep(1000);                                                              \
		cr_assert(cond, "timed out waiting for " #cond);                                   \
	} while (0)

/*
 * "s" is planned (cold mode dprt on cpu:1) and loaded, then "a" and "b"
 * take the host memory, which drops s's copy: s's next request reads it
 * from disk, dropping a's (the least recently used) to make room; b's
 * stays. lead_us: the reader's minimum lead (disk_lead_us).
 */
/* trepo_add in fp16 */
static void add_f16(const char *name, uint64_t seed)
{
	char path[PATH_MAX];
	struct weight_source *ws;
	struct graph *g;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/1", dir, name);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/1/model.dpk", dir, name);
	cr_assert_eq(zoo_build("bert-tiny", DT_F16, &g), 0, "%s", err_msg(0));
	ws = wsrc_random(seed);
	cr_assert_eq(pkg_write(path, g, wsrc_fill, ws), 0, "%s", err_msg(0));
	wsrc_destroy(ws);
	graph_destroy(g);
}

static struct sched *disk_sched_of(uint32_t lead_us, bool f16)
{
	struct sched_opts o = topts(dir, "cpu:1");
	const char *names[] = {"s", "a", "b"};
	uint64_t sz;
	struct sched *s;
	unsigned i;

	for (i = 0; i < 3; i++)
		if (f16)
			add_f16(names[i], i + 1);
		else
			trepo_add(dir, names[i], 1, "bert-tiny", i + 1);
	sz = trepo_wsize(dir, "s", 1);
	o.explicit_load = true;
	o.no_threads = false;
	o.no_pin = true;
	o.no_prewarm = true;
	o.cold_mode = "dprt";
	o.host_mem_limit = 2 * sz + sz / 2;
	o.disk_lead_us = lead_us;
	s = tsched(&o);
	cr_assert_eq(sched_load(s, "s", 0), 0, "%s", err_msg(0));
	WAIT_FOR(plans_made(s) >= 1);
	cr_assert_eq(sched_load(s, "a", 0), 0, "%s", err_msg(0));
	cr_assert_eq(sched_load(s, "b", 0), 0, "%s", err_msg(0)); /* drops s's copy */
	WAIT_FOR(plans_made(s) >= 3);
	cr_assert_null(repo_entry_host(find(s, "s"), NULL), "s's copy was not dropped");
	cr_assert_leq(repo_host_used(sched_repo(s)), o.host_mem_limit,
		      "host copies over the limit (a dropped copy was taken back uncharged)");
	return s;
}

static struct sched *disk_sched(uint32_t lead_us)
{
	return disk_sched_of(lead_us, false);
}

static void stop(struct sched *s, struct sched_chan *ch)
{
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

static void assert_same_outputs(const struct sched_req *a, const struct sched_req *b)
{
	uint32_t i;

	cr_assert_eq(a->n_out, b->n_out);
	for (i = 0; i < a->n_out; i++) {
		cr_assert_eq(a->out[i].nbytes, b->out[i].nbytes);
		cr_assert_eq(memcmp(a->out[i].data, b->out[i].data, a->out[i].nbytes), 0,
			     "output %u of the streamed cold start differs from a warm run", i);
	}
}

/*
 * The cold start begins while the read is held at layer 2 (the worker
 * was kicked at once: lead 10 s), the copy is not READY meanwhile, and
 * once the read goes on, the four concurrent requests are all answered
 * with what a warm run of the same input answers.
 */
Test(disk, streamed_cold_start_begins_before_the_read_ends)
{
	struct sched_req *req[4], *done[4], *warm;
	uint64_t cold, streamed, bytes, sz;
	struct sched_chan *ch;
	struct sched *s = disk_sched(10000000);
	unsigned i;

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	sz = trepo_wsize(dir, "s", 1);
	gate_arm(2, 0);
	for (i = 0; i < 4; i++) {
		req[i] = treq(s, ch, "s", 0, 1, 0, 7);
		cr_assert_eq(sched_submit(s, req[i]), 0, "%s", err_msg(0));
	}
	WAIT_FOR((disk_counts(s, &cold, &streamed, &bytes), streamed == 1));
	WAIT_FOR(gate_waits == 1); /* the read is held at layer 2 */
	cr_assert_null(repo_entry_host(find(s, "s"), NULL), "a half-read copy is the entry's");
	cr_assert_eq(sched_complete_poll(ch, done, 4), 0, "answered before its weights were read");
	gate_open();
	collect(ch, done, 4);
	for (i = 0; i < 4; i++)
		cr_assert_eq(done[i]->status, 0, "%s", done[i]->msg);
	cr_assert(req[0]->flags & SCHED_F_COLD);
	cr_assert_not_null(repo_entry_host(find(s, "s"), NULL));
	warm = treq(s, ch, "s", 0, 1, 0, 7);
	cr_assert_eq(sched_submit(s, warm), 0);
	collect(ch, done, 1);
	cr_assert_eq(warm->status, 0, "%s", warm->msg);
	cr_assert_not(warm->flags & SCHED_F_COLD);
	for (i = 0; i < 4; i++)
		assert_same_outputs(req[i], warm);
	disk_counts(s, &cold, &streamed, &bytes);
	cr_assert_eq(cold, 1);
	cr_assert_eq(streamed, 1);
	cr_assert_eq(bytes, 4 * sz, "read %llu bytes", (unsigned long long)bytes);
	for (i = 0; i < 4; i++)
		treq_put(s, req[i]);
	treq_put(s, warm);
	stop(s, ch);
}

/*
 * A slow read (its first layer takes 50 ms, then it is held): with the
 * default lead the worker is not kicked while the rest would take long at
 * that rate, so the device serves another model meanwhile, and the held
 * model's request is answered after.
 */
Test(disk, other_models_are_served_during_the_read)
{
	struct sched_req *cold_req, *other, *done[2];
	uint64_t cold, streamed, bytes;
	struct sched_chan *ch;
	struct sched *s = disk_sched(0);

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	gate_arm(1, 50000);
	cold_req = treq(s, ch, "s", 0, 1, 0, 1);
	cr_assert_eq(sched_submit(s, cold_req), 0);
	WAIT_FOR(gate_waits == 1);
	other = treq(s, ch, "b", 0, 1, 0, 2);
	cr_assert_eq(sched_submit(s, other), 0);
	collect(ch, done, 1);
	cr_assert_eq(done[0], other, "the other model waited for the read");
	cr_assert_eq(other->status, 0, "%s", other->msg);
	disk_counts(s, &cold, &streamed, &bytes);
	cr_assert_eq(streamed, 0, "kicked while the read was held");
	gate_open();
	collect(ch, done, 1);
	cr_assert_eq(done[0], cold_req);
	cr_assert_eq(cold_req->status, 0, "%s", cold_req->msg);
	disk_counts(s, &cold, &streamed, &bytes);
	cr_assert_eq(cold, 1);
	treq_put(s, cold_req);
	treq_put(s, other);
	stop(s, ch);
}

/*
 * A layer corrupted on disk after the load: the streamed cold start
 * (begun at layer 1) fails at that layer's check, every request for the
 * model fails naming the layer, no copy is kept as good, the model is
 * FAILED, and the device serves the other models.
 */
Test(disk, corrupt_layer_mid_stream_fails_the_requests)
{
	struct sched_req *req[3], *done[3], *other;
	uint64_t cold, streamed, bytes, off;
	struct repo_entry *e;
	struct sched_chan *ch;
	struct sched *s = disk_sched(10000000);
	const struct graph *g;
	uint32_t mid;
	unsigned i;

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	e = find(s, "s");
	g = repo_entry_graph(e);
	mid = g->n_layers / 2;
	cr_assert_gt(mid, 1);
	off = pkg_weights_offset(e->pkg) + g->layers[mid].offset;
	trepo_corrupt(dir, "s", 1, (long)off);
	gate_arm(mid, 0); /* held until the worker began */
	for (i = 0; i < 3; i++) {
		req[i] = treq(s, ch, "s", 0, 1, 0, 3 + i);
		cr_assert_eq(sched_submit(s, req[i]), 0);
	}
	WAIT_FOR((disk_counts(s, &cold, &streamed, &bytes), streamed == 1));
	gate_open();
	collect(ch, done, 3);
	for (i = 0; i < 3; i++) {
		cr_assert_neq(done[i]->status, 0, "a request for a corrupt model succeeded");
		cr_assert(strstr(done[i]->msg, "is corrupt: checksum mismatch"), "%s",
			  done[i]->msg);
		cr_assert(strstr(done[i]->msg, g->layers[mid].name), "%s", done[i]->msg);
	}
	cr_assert_null(repo_entry_host(e, NULL), "the corrupt copy was kept");
	cr_assert_eq(repo_entry_state(e), REPO_FAILED);
	other = treq(s, ch, "a", 0, 1, 0, 9);
	cr_assert_eq(sched_submit(s, other), 0);
	collect(ch, done, 1);
	cr_assert_eq(other->status, 0, "%s", other->msg);
	for (i = 0; i < 3; i++)
		treq_put(s, req[i]);
	treq_put(s, other);
	stop(s, ch);
}

/*
 * A CPU model in fp16 converts its weights when made, so its cold start
 * cannot stream: kicked early (lead 10 s) while the read is held, the
 * worker parks the requests again instead of waiting, serves another
 * model meanwhile, and answers them once the read is done.
 */
Test(disk, a_model_that_cannot_stream_waits_for_the_read)
{
	struct sched_req *req[2], *other, *done[2];
	uint64_t cold, streamed, bytes;
	struct sched_chan *ch;
	struct sched *s = disk_sched_of(10000000, true);
	unsigned i;

	cr_assert_eq(sched_chan_create(s, &ch), 0);
	gate_arm(2, 0);
	for (i = 0; i < 2; i++) {
		req[i] = treq(s, ch, "s", 0, 1, 0, 5);
		cr_assert_eq(sched_submit(s, req[i]), 0);
	}
	WAIT_FOR(gate_waits == 1);
	other = treq(s, ch, "b", 0, 1, 0, 6);
	cr_assert_eq(sched_submit(s, other), 0);
	collect(ch, done, 1);
	cr_assert_eq(done[0], other, "the device waited for the read");
	cr_assert_eq(other->status, 0, "%s", other->msg);
	gate_open();
	collect(ch, done, 2);
	for (i = 0; i < 2; i++)
		cr_assert_eq(done[i]->status, 0, "%s", done[i]->msg);
	assert_same_outputs(req[0], req[1]);
	disk_counts(s, &cold, &streamed, &bytes);
	cr_assert_eq(cold, 1);
	cr_assert_eq(streamed, 0);
	treq_put(s, req[0]);
	treq_put(s, req[1]);
	treq_put(s, other);
	stop(s, ch);
}
