/* SPDX-License-Identifier: MIT */
/*
 * What a cold start no longer pays (src/exec/cuda): the device pool puts a
 * range back where it was (on the CPU, with a fake driver); the first cold
 * start after device open and model creation makes no shape program, no staging, no
 * heuristic query, no graph and grows no pool or arena; models of one
 * device share one activation arena (alternating runs right, less memory
 * than separate arenas); weights or arena that move get their graphs
 * updated in place, not remade, and the outputs stay bit-exact; a whole
 * model loads with one copy.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/cuda/cuda_priv.h"
#include "helpers.h"
#include "mem/cudrv.h"
#include "plan/plan.h"

#define MAX_IO 4

/* ------------------------------------------------- pool, fake driver */

#define FAKE_BASE 0x7f0000000000ull
static uint64_t fake_next = FAKE_BASE;
static int fake_live;

static CUresult fake_alloc(CUdeviceptr *p, size_t bytes)
{
	*p = (CUdeviceptr)fake_next;
	fake_next += ALIGN_UP(bytes, 1ull << 30) + (1ull << 30); /* chunks never touch */
	fake_live++;
	return CUDA_SUCCESS;
}

static CUresult fake_free(CUdeviceptr p)
{
	(void)p;
	fake_live--;
	return CUDA_SUCCESS;
}

static struct devpool *fake_pool(uint64_t chunk)
{
	struct devpool *p = NULL;

	cudrv_api.cuMemAlloc = fake_alloc;
	cudrv_api.cuMemFree = fake_free;
	cr_assert_eq(devpool_create(chunk, 0, 0, &p), 0);
	return p;
}

/* Each test runs in a process of its own: the fake table stays there. */
Test(cuda_pool, alloc_at_puts_ranges_back)
{
	struct devpool *p = fake_pool(4ull << 20);
	uint64_t a, b, c, x;

	cr_assert_eq(devpool_alloc(p, 4096, "a", &a), 0);
	cr_assert_eq(devpool_alloc(p, 8192, "b", &b), 0);
	cr_assert_eq(devpool_alloc(p, 4096, "c", &c), 0);
	cr_assert(a == FAKE_BASE && b == a + 4096 && c == b + 8192, "first fit");
	cr_assert_eq(devpool_grows(p), 1);
	/* taken: busy; freed: the same range again, nothing else moves */
	cr_assert_eq(devpool_alloc_at(p, b, 8192), -EBUSY);
	devpool_free(p, b);
	cr_assert_eq(devpool_alloc_at(p, b, 8192 + 1), -EBUSY, "larger than the hole");
	cr_assert_eq(devpool_alloc_at(p, b + 256, 4096), 0, "inside the hole");
	cr_assert_eq(devpool_used(p), 4096 + 4096 + 4096);
	/* the hole's front is still free and first-fit finds it */
	cr_assert_eq(devpool_alloc(p, 256, "front", &x), 0);
	cr_assert_eq(x, b);
	cr_assert_eq(devpool_alloc_at(p, b + 256, 256), -EBUSY);
	cr_assert_eq(devpool_alloc_at(p, 0, 256), -EINVAL);
	cr_assert_eq(devpool_alloc_at(p, b + 1, 256), -EINVAL);
	cr_assert_eq(devpool_alloc_at(p, FAKE_BASE - 4096, 256), -EBUSY, "outside the pool");
	devpool_free(p, x);
	devpool_free(p, b + 256);
	devpool_free(p, a);
	devpool_free(p, c);
	cr_assert_eq(devpool_used(p), 0);
	/* everything coalesced: the whole chunk is one block again */
	cr_assert_eq(devpool_alloc_at(p, FAKE_BASE, 4ull << 20), 0);
	cr_assert_eq(devpool_alloc(p, 256, "more", &x), 0);
	cr_assert_eq(devpool_grows(p), 2, "a full chunk grows the pool");
	devpool_destroy(p);
	cr_assert_eq(fake_live, 0);
}

Test(cuda_pool, reserve_up_front)
{
	struct devpool *p = fake_pool(4ull << 20);
	uint64_t a;
	int i;

	cr_assert_eq(devpool_reserve(p, 64ull << 20), 0);
	cr_assert_eq(devpool_reserved(p), 64ull << 20);
	cr_assert_eq(devpool_reserve(p, 32ull << 20), 0);
	cr_assert_eq(devpool_grows(p), 1);
	for (i = 0; i < 15; i++)
		cr_assert_eq(devpool_alloc(p, 4ull << 20, "x", &a), 0);
	cr_assert_eq(devpool_grows(p), 1, "allocations within the reserve grew the pool");
	devpool_destroy(p);
}

static CUresult fake_sync(CUstream s)
{
	(void)s;
	return CUDA_SUCCESS;
}

/* The shared arena grows by half again at least, in 2 MiB steps, taking
 * a new range each time (the old one given back), and never shrinks. */
Test(cuda_pool, arena_growth)
{
	struct cuda_dev d;
	uint64_t used;

	memset(&d, 0, sizeof(d));
	d.pool = fake_pool(64ull << 20);
	cudrv_api.cuStreamSynchronize = fake_sync;
	cr_assert_eq(cuda_arena_reserve(&d, 5ull << 20), 0);
	cr_assert(d.act.bytes == 6ull << 20 && d.act.gen == 1 && d.act.base, "%llu bytes, gen %llu",
		  (unsigned long long)d.act.bytes, (unsigned long long)d.act.gen);
	cr_assert_eq(devpool_used(d.pool), 6ull << 20);
	cr_assert_eq(cuda_arena_reserve(&d, 4ull << 20), 0);
	cr_assert(d.act.bytes == 6ull << 20 && d.act.gen == 1, "a smaller need changed it");
	cr_assert_eq(cuda_arena_reserve(&d, 7ull << 20), 0);
	cr_assert(d.act.bytes == 10ull << 20 && d.act.gen == 2, "%llu bytes, gen %llu",
		  (unsigned long long)d.act.bytes, (unsigned long long)d.act.gen);
	used = devpool_used(d.pool);
	cr_assert_eq(used, 10ull << 20, "the old range was not given back");
	cr_assert_eq(cuda_arena_reserve(&d, 30ull << 20), 0);
	cr_assert(d.act.bytes == 30ull << 20 && d.act.gen == 3 && d.cnt.arena_grows == 3);
	devpool_destroy(d.pool);
}

/* ------------------------------------------------------------ models */

/* CPU outputs of t for in, copied into ref. */
static void cpu_ref(const struct tmodel *t, const struct tview *in, struct tview *ref)
{
	struct exec_model *cm;
	struct tview out[MAX_IO];
	uint32_t o;
	int ret;

	ret = cpu_backend.model_create(NULL, t->g, t->page, &cm) ?:
								   cpu_backend.model_run(cm, in, out);
	cr_assert_eq(ret, 0, "%s on the CPU: %s", t->g->name, err_msg(ret));
	for (o = 0; o < t->g->n_outputs; o++) {
		ref[o] = out[o];
		ref[o].data = malloc(out[o].nbytes);
		cr_assert(ref[o].data);
		memcpy(ref[o].data, out[o].data, out[o].nbytes);
	}
	cpu_backend.model_destroy(cm);
}

static void keep(const struct graph *g, const struct tview *out, struct tview *copy)
{
	uint32_t o;

	for (o = 0; o < g->n_outputs; o++) {
		copy[o] = out[o];
		copy[o].data = malloc(out[o].nbytes);
		cr_assert(copy[o].data);
		memcpy(copy[o].data, out[o].data, out[o].nbytes);
	}
}

static void drop(const struct graph *g, struct tview *copy)
{
	uint32_t o;

	for (o = 0; o < g->n_outputs; o++)
		free(copy[o].data);
}

static void near(const struct graph *g, const struct tview *out, const struct tview *ref,
		 const char *what)
{
	uint32_t o;
	double e;

	for (o = 0; o < g->n_outputs; o++) {
		e = tnorm_err(&out[o], &ref[o]);
		cr_assert(e <= ttol((enum dtype)g->wdtype),
			  "%s: output %s: error %.3g against "
			  "the CPU",
			  what, g->outputs[o].name, e);
	}
}

static void same(const struct graph *g, const struct tview *a, const struct tview *b,
		 const char *what)
{
	uint32_t o;

	for (o = 0; o < g->n_outputs; o++)
		cr_assert(a[o].nbytes == b[o].nbytes && !memcmp(a[o].data, b[o].data, a[o].nbytes),
			  "%s: output %s differs", what, g->outputs[o].name);
}

/* The model's reference shape (cuda_model.c): batch 1, the default
 * sequence length, optional inputs omitted. */
static void ref_inputs(const struct graph *g, struct rng *r, struct tview *in)
{
	int64_t seq = g->def_seq ? g->def_seq : g->max_seq ? MIN(g->max_seq, 128) : 128;

	tin_make(g, 1, seq, 0, 0, true, r, in);
}

/* Every odd layer DHA, the rest LOAD on link 0. */
static struct plan *mixed_plan(const struct graph *g)
{
	struct plan_profile *pf;
	struct plan *p;
	uint32_t l, n = 0;
	int ret;

	ret = plan_profile_synthetic(g, 1, 1, &pf) ?: plan_build(pf, PLAN_PIPELINE, 1, &p);
	cr_assert_eq(ret, 0, "plan: %s", err_msg(ret));
	plan_profile_destroy(pf);
	p->width = 1;
	for (l = 0; l < p->prof.n_layers; l++) {
		p->rows[l].place = l % 2 ? PLAN_DHA : PLAN_LOAD;
		p->rows[l].link = 0;
		p->rows[l].order = l % 2 ? PLAN_NO_ORDER : n++;
	}
	return p;
}

struct snap {
	struct cuda_counters cnt;
	uint64_t grows, reserved;
};

static void snap_take(struct cuda_dev *d, struct snap *s)
{
	s->cnt = d->cnt;
	s->grows = devpool_grows(d->pool);
	s->reserved = cuda_device_reserved(d);
}

/* Nothing that costs a request time happened since s. */
static void snap_same(struct cuda_dev *d, const struct snap *s, const char *what)
{
	cr_assert_eq(d->cnt.progs, s->cnt.progs, "%s: a shape program was made", what);
	cr_assert_eq(d->cnt.stages, s->cnt.stages, "%s: pinned staging allocated", what);
	cr_assert_eq(d->cnt.heuristics, s->cnt.heuristics, "%s: cuBLASLt heuristics asked", what);
	cr_assert_eq(d->cnt.graphs_made, s->cnt.graphs_made, "%s: a graph instantiated", what);
	cr_assert_eq(d->cnt.arena_grows, s->cnt.arena_grows, "%s: the arena grew", what);
	cr_assert_eq(devpool_grows(d->pool), s->grows, "%s: the pool called cuMemAlloc", what);
	cr_assert_eq(cuda_device_reserved(d), s->reserved, "%s: the pool grew", what);
}

/* The first cold start after device open and model creation, at the
 * reference shape, with graphs: initialises nothing, makes nothing. */
static void first_cold(const char *model, bool mixed)
{
	struct cuda_dev *d = tgpu_open();
	struct tview in[MAX_IO], ref[MAX_IO], out[MAX_IO], cold[MAX_IO];
	struct cuda_cold_stats st;
	struct exec_model *m;
	struct tmodel t;
	struct plan_profile *pf;
	struct plan *p;
	struct snap s;
	struct rng r;
	int ret;

	cr_assert(d->cnt.warm_ns > 0, "no warm-up at device open");
	rng_seed(&r, tseed());
	tm_init_zoo(&t, model, DT_F32, rng_next(&r));
	ref_inputs(t.g, &r, in);
	cpu_ref(&t, in, ref);
	if (mixed) {
		p = mixed_plan(t.g);
	} else {
		ret = plan_profile_synthetic(t.g, 1, 1, &pf) ?:
							       plan_build(pf, PLAN_DEEPPLAN, 1, &p);
		cr_assert_eq(ret, 0, "plan: %s", err_msg(ret));
		plan_profile_destroy(pf);
	}
	setenv("DPRT_COLD_GRAPH", "1", 1);
	knobs_reload();
	ret = cuda_cold_model_create(d, t.g, hoststore_base(t.hs), p, NULL, 0, &m);
	cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
	snap_take(d, &s);
	ret = cuda_cold_run(m, in, out, &st);
	cr_assert_eq(ret, 0, "cold run: %s", err_msg(ret));
	cr_assert(st.cold && st.graph, "%s: cold %d graph %d", model, st.cold, st.graph);
	cr_assert(!st.moved && !st.progs_remade && !st.graphs_captured && !st.graphs_updated,
		  "%s: moved %d progs_remade %d captured %u updated %u", model, st.moved,
		  st.progs_remade, st.graphs_captured, st.graphs_updated);
	snap_same(d, &s, model);
	cr_assert_eq(d->cnt.graphs_updated, s.cnt.graphs_updated);
	near(t.g, out, ref, model);
	keep(t.g, out, cold);
	ret = cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0, "warm run: %s", err_msg(ret));
	snap_same(d, &s, "the first warm run");
	same(t.g, out, cold, "the first warm run");
	drop(t.g, cold);
	unsetenv("DPRT_COLD_GRAPH");
	knobs_reload();
	cuda_backend.model_destroy(m);
	plan_destroy(p);
	drop(t.g, ref);
	tin_free(t.g, in);
	tm_fini(&t);
	cuda_device_close(d);
}

Test(cuda_engine, first_cold_start_makes_nothing_bert)
{
	first_cold("bert-tiny", true);
}
Test(cuda_engine, first_cold_start_makes_nothing_gpt2)
{
	first_cold("gpt2-tiny", false);
}
Test(cuda_engine, first_cold_start_makes_nothing_resnet)
{
	first_cold("resnet-tiny", true);
}

/* Device memory a model takes beyond u0 once it has run in at batch,
 * seq; the model is destroyed again and the pool back at u0. */
static uint64_t alone(struct cuda_dev *d, const struct tmodel *t, const struct tview *in)
{
	uint64_t u0 = cuda_device_used(d), u;
	struct tview out[MAX_IO];
	struct exec_model *m;
	int ret;

	ret = tmodel_create_gpu(d, t, TP_LOAD_PINNED, &m) ?: cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0, "%s alone: %s", t->g->name, err_msg(ret));
	u = cuda_device_used(d) - u0;
	cuda_backend.model_destroy(m);
	cr_assert_eq(cuda_device_used(d), u0, "%s: the pool did not get its memory back",
		     t->g->name);
	return u;
}

/* Two models of one device, alternating at a large shape: right every
 * time (the other's run in between overwrote the shared arena), and
 * together they take less than each alone. */
Test(cuda_engine, shared_arena_two_models, .timeout = 120)
{
	static const char *const names[2] = {"bert-tiny", "gpt2-tiny"};
	struct tview in[2][MAX_IO], ref[2][MAX_IO], first[2][MAX_IO], out[MAX_IO];
	struct cuda_dev *d = tgpu_open();
	struct exec_model *m[2];
	struct tmodel t[2];
	uint64_t sep = 0, u0, both, weights = 0;
	uint32_t users;
	struct rng r;
	int i, k, ret;

	rng_seed(&r, tseed());
	for (k = 0; k < 2; k++) {
		tm_init_zoo(&t[k], names[k], DT_F32, rng_next(&r));
		tin_make(t[k].g, 128, 64, 0, 0, true, &r, in[k]);
		cpu_ref(&t[k], in[k], ref[k]);
	}
	u0 = cuda_device_used(d);
	for (k = 0; k < 2; k++)
		sep += alone(d, &t[k], in[k]);
	for (k = 0; k < 2; k++) {
		ret = tmodel_create_gpu(d, &t[k], TP_LOAD_PINNED, &m[k]);
		cr_assert_eq(ret, 0, "%s: %s", names[k], err_msg(ret));
	}
	for (i = 0; i < 6; i++) {
		k = i % 2;
		ret = cuda_backend.model_run(m[k], in[k], out);
		cr_assert_eq(ret, 0, "%s run %d: %s", names[k], i, err_msg(ret));
		near(t[k].g, out, ref[k], names[k]);
		if (i < 2)
			keep(t[k].g, out, first[k]);
		else
			same(t[k].g, out, first[k], names[k]);
	}
	/* every program lays out in the shared arena (those not run since it
	 * grew move there at their next use) */
	for (k = 0, users = 0; k < 2; k++) {
		for (i = 0; i < CUDA_PROGS; i++) {
			const struct cuda_prog *pl = m[k]->progs[i];

			if (!pl)
				continue;
			users++;
			cr_assert(pl->act_held && pl->arena_bytes <= d->act.bytes &&
					  (pl->act_gen != d->act.gen || pl->arena == d->act.base),
				  "%s: program %d outside the shared arena", names[k], i);
		}
		for (i = 0; i < (int)t[k].g->n_layers; i++)
			weights += t[k].g->layers[i].nbytes;
	}
	cr_assert_eq(d->act.users, users);
	both = cuda_device_used(d) - u0;
	fprintf(stderr, "shared arena %llu bytes; used together %llu, separately %llu\n",
		(unsigned long long)d->act.bytes, (unsigned long long)both,
		(unsigned long long)sep);
	cr_assert(both < sep, "together %llu bytes, separately %llu", (unsigned long long)both,
		  (unsigned long long)sep);
	cr_assert(both >= weights + d->act.bytes,
		  "the pool's count misses the weights or the arena");
	for (k = 0; k < 2; k++) {
		cuda_backend.model_destroy(m[k]);
		drop(t[k].g, first[k]);
		drop(t[k].g, ref[k]);
		tin_free(t[k].g, in[k]);
		tm_fini(&t[k]);
	}
	cr_assert_eq(cuda_device_used(d), u0, "the arena outlived its models");
	cr_assert_eq(d->act.users, 0);
	cuda_device_close(d);
}

/* First LOAD layer's device address of a resident model. */
static uint64_t first_load(const struct exec_model *m)
{
	uint32_t l;

	for (l = 0; l < m->g->n_layers; l++)
		if (m->place[l] == PLACE_LOAD && m->g->layers[l].nbytes)
			return m->layer_dev[l];
	cr_assert_fail("no LOAD layer");
	return 0;
}

/* Cold start, then warm runs; evict, block the weights' old place, cold
 * start elsewhere: the graphs are updated, not remade, and every output
 * equals the first warm one bit for bit. Then the arena moves under the
 * model (another model grows it past a filler): updated again. */
static void moves(bool graph)
{
	struct tview in[MAX_IO], in2[MAX_IO], ref[MAX_IO], warm[MAX_IO], out[MAX_IO];
	struct cuda_dev *d = tgpu_open();
	struct cuda_cold_stats st;
	struct exec_model *m, *big;
	struct tmodel t;
	struct plan *p;
	struct snap s;
	uint64_t old, base, made, upd;
	struct rng r;
	int ret;

	setenv("DPRT_COLD_GRAPH", graph ? "1" : "0", 1);
	setenv("DPRT_COLD_DEFER", "0", 1); /* updated before the run */
	knobs_reload();
	rng_seed(&r, tseed());
	tm_init_zoo(&t, "bert-tiny", DT_F32, rng_next(&r));
	tin_make(t.g, 1, 16, 0, 0, true, &r, in);
	cpu_ref(&t, in, ref);
	p = mixed_plan(t.g);
	ret = cuda_cold_model_create(d, t.g, hoststore_base(t.hs), p, NULL, 0, &m) ?:
		      cuda_cold_run(m, in, out, &st);
	cr_assert_eq(ret, 0, "create and cold run: %s", err_msg(ret));
	near(t.g, out, ref, "first cold start");
	ret = cuda_backend.model_run(m, in, out) ?: cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0, "warm: %s", err_msg(ret));
	keep(t.g, out, warm);
	snap_take(d, &s);

	/* the weights' old place taken: they land elsewhere */
	old = first_load(m);
	ret = cuda_cold_evict(m);
	cr_assert_eq(ret, 0);
	cr_assert_eq(devpool_alloc_at(d->pool, old, 4096), 0, "the old range is not free");
	ret = cuda_cold_run(m, in, out, &st);
	cr_assert_eq(ret, 0, "cold run elsewhere: %s", err_msg(ret));
	cr_assert(st.moved && !st.progs_remade && first_load(m) != old, "moved %d progs_remade %d",
		  st.moved, st.progs_remade);
	cr_assert_eq(st.graph, graph);
	cr_assert_eq(st.graphs_updated, graph ? 1u : 0u, "%u graphs updated", st.graphs_updated);
	cr_assert_eq(st.graphs_captured, 0u, "%u graphs captured", st.graphs_captured);
	same(t.g, out, warm, "cold start elsewhere");
	ret = cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0);
	same(t.g, out, warm, "warm run after the move");
	snap_same(d, &s, "after the move");
	cr_assert_eq(d->cnt.graphs_updated, s.cnt.graphs_updated + (graph ? 2 : 1),
		     "graphs updated %llu, %llu before", (unsigned long long)d->cnt.graphs_updated,
		     (unsigned long long)s.cnt.graphs_updated);
	devpool_free(d->pool, old);

	/* back where it was last time: nothing moves */
	ret = cuda_cold_evict(m) ?: cuda_cold_run(m, in, out, &st);
	cr_assert_eq(ret, 0);
	cr_assert(!st.moved && !st.graphs_updated && !st.graphs_captured, "moved %d", st.moved);
	same(t.g, out, warm, "cold start in place");

	/* the shared arena moves: a filler after it, a larger model grows it */
	base = d->act.base;
	ret = devpool_alloc_at(d->pool, d->act.base + d->act.bytes, 4096);
	old = ret ? 0 : d->act.base + d->act.bytes;
	err_clear();
	tin_make(t.g, 64, 64, 0, 0, true, &r, in2);
	ret = cuda_cold_evict(m)				     ?:
		      tmodel_create_gpu(d, &t, TP_LOAD_PINNED, &big) ?:
		      cuda_backend.model_run(big, in2, out);
	cr_assert_eq(ret, 0, "a larger run: %s", err_msg(ret));
	cr_assert(d->act.base != base, "the arena did not move");
	made = d->cnt.graphs_made;
	upd = d->cnt.graphs_updated;
	ret = cuda_cold_run(m, in, out, &st);
	cr_assert_eq(ret, 0, "cold run after the arena moved: %s", err_msg(ret));
	cr_assert(!st.progs_remade && st.graphs_updated == (graph ? 1u : 0u) && !st.graphs_captured,
		  "updated %u captured %u", st.graphs_updated, st.graphs_captured);
	cr_assert_eq(d->cnt.graphs_made, made);
	cr_assert_eq(d->cnt.graphs_updated, upd + (graph ? 1 : 0));
	same(t.g, out, warm, "cold start after the arena moved");
	ret = cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0);
	same(t.g, out, warm, "warm run after the arena moved");

	devpool_free(d->pool, old);
	cuda_backend.model_destroy(big);
	cuda_backend.model_destroy(m);
	unsetenv("DPRT_COLD_GRAPH");
	unsetenv("DPRT_COLD_DEFER");
	knobs_reload();
	plan_destroy(p);
	drop(t.g, warm);
	drop(t.g, ref);
	tin_free(t.g, in);
	tin_free(t.g, in2);
	tm_fini(&t);
	cuda_device_close(d);
}

Test(cuda_engine, moved_weights_update_graphs)
{
	moves(true);
}
Test(cuda_engine, moved_weights_eager)
{
	moves(false);
}

/* The default (DPRT_COLD_DEFER): weights that land elsewhere make the cold
 * start and the next warm run go eagerly, nothing re-recorded on them;
 * model_tidy then updates both graphs (not remade), after which a cold
 * start in place and a warm run replay them; outputs bit for bit. */
Test(cuda_engine, moved_weights_deferred)
{
	struct tview in[MAX_IO], ref[MAX_IO], warm[MAX_IO], out[MAX_IO];
	struct cuda_dev *d = tgpu_open();
	struct cuda_cold_stats st;
	struct exec_model *m;
	struct tmodel t;
	struct plan *p;
	uint64_t old, upd, made;
	struct rng r;
	int ret;

	knobs_reload();
	rng_seed(&r, tseed());
	tm_init_zoo(&t, "bert-tiny", DT_F32, rng_next(&r));
	tin_make(t.g, 1, 16, 0, 0, true, &r, in);
	cpu_ref(&t, in, ref);
	p = mixed_plan(t.g);
	ret = cuda_cold_model_create(d, t.g, hoststore_base(t.hs), p, NULL, 0, &m) ?:
		      cuda_cold_run(m, in, out, &st);
	cr_assert_eq(ret, 0, "create and cold run: %s", err_msg(ret));
	near(t.g, out, ref, "first cold start");
	ret = cuda_backend.model_run(m, in, out) ?: cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0, "warm: %s", err_msg(ret));
	keep(t.g, out, warm);

	old = first_load(m);
	ret = cuda_cold_evict(m);
	cr_assert_eq(ret, 0);
	cr_assert_eq(devpool_alloc_at(d->pool, old, 4096), 0, "the old range is not free");
	upd = d->cnt.graphs_updated;
	made = d->cnt.graphs_made;
	ret = cuda_cold_run(m, in, out, &st);
	cr_assert_eq(ret, 0, "cold run elsewhere: %s", err_msg(ret));
	cr_assert(st.moved && st.deferred && !st.graph, "moved %d deferred %d graph %d", st.moved,
		  st.deferred, st.graph);
	cr_assert(!st.graphs_updated && !st.graphs_captured, "re-recorded on the cold start");
	same(t.g, out, warm, "deferred cold start elsewhere");
	ret = cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0);
	same(t.g, out, warm, "eager warm run after the move");
	cr_assert_eq(d->cnt.graphs_updated, upd, "a run re-recorded its graph");
	cr_assert(cuda_model_tidy(m), "nothing to tidy");
	/* a warm and a cold graph per shape program with graphs (the
	 * creation's reference shape, this input's) */
	cr_assert(d->cnt.graphs_updated >= upd + 2 && (d->cnt.graphs_updated - upd) % 2 == 0,
		  "graphs updated %llu, %llu before", (unsigned long long)d->cnt.graphs_updated,
		  (unsigned long long)upd);
	cr_assert_eq(d->cnt.graphs_made, made, "a graph was made anew");
	cr_assert(!cuda_model_tidy(m), "tidy twice");
	ret = cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0);
	same(t.g, out, warm, "warm replay after tidy");
	devpool_free(d->pool, old);
	/* evicted and back in place: the tidied cold graph replays */
	ret = cuda_cold_evict(m) ?: cuda_cold_run(m, in, out, &st);
	cr_assert_eq(ret, 0);
	cr_assert(!st.moved && st.graph && !st.deferred && !st.graphs_updated, "moved %d graph %d",
		  st.moved, st.graph);
	same(t.g, out, warm, "cold replay in place after tidy");

	cuda_backend.model_destroy(m);
	plan_destroy(p);
	drop(t.g, warm);
	drop(t.g, ref);
	tin_free(t.g, in);
	tm_fini(&t);
	cuda_device_close(d);
}

/* A whole-model load is one range and one copy; a mixed one a copy per
 * run of LOAD layers; the outputs are the CPU's. */
Test(cuda_engine, whole_load_one_copy)
{
	static const enum tplace places[] = {TP_LOAD_PINNED, TP_LOAD_PAGEABLE, TP_MIXED};
	struct tview in[MAX_IO], ref[MAX_IO], out[MAX_IO];
	struct cuda_dev *d = tgpu_open();
	struct exec_model *m;
	struct tmodel t;
	struct rng r;
	uint32_t want, ranges, l;
	size_t i;
	int ret;

	rng_seed(&r, tseed());
	tm_init_zoo(&t, "gpt2-tiny", DT_F32, rng_next(&r));
	tin_make(t.g, 2, 16, 0, 0, true, &r, in);
	cpu_ref(&t, in, ref);
	for (i = 0; i < ARRAY_SIZE(places); i++) {
		ret = tmodel_create_gpu(d, &t, places[i], &m);
		cr_assert_eq(ret, 0, "%s: %s", tplace_name(places[i]), err_msg(ret));
		/* mixed: even layers LOAD, each between DHA ones: a range each,
		 * a copy each unless empty */
		ranges = places[i] == TP_MIXED ? (t.g->n_layers + 1) / 2 : 1;
		for (l = 0, want = 0; l < t.g->n_layers; l++)
			want += !(l % 2) && t.g->layers[l].nbytes;
		if (places[i] != TP_MIXED)
			want = 1;
		cr_assert_eq(m->load_copies, want, "%s: %u copies, %u wanted",
			     tplace_name(places[i]), m->load_copies, want);
		cr_assert_eq(m->n_wrange, ranges, "%s: %u ranges, %u wanted",
			     tplace_name(places[i]), m->n_wrange, ranges);
		ret = cuda_backend.model_run(m, in, out);
		cr_assert_eq(ret, 0, "%s run: %s", tplace_name(places[i]), err_msg(ret));
		near(t.g, out, ref, tplace_name(places[i]));
		cuda_backend.model_destroy(m);
	}
	drop(t.g, ref);
	tin_free(t.g, in);
	tm_fini(&t);
	cuda_device_close(d);
}

/* ------------------------------------------- spare pinned buffers */

static uint64_t spare_room_bytes;

static uint64_t test_room(void *arg)
{
	(void)arg;
	return spare_room_bytes;
}

/* A freed store's pinned buffer is kept while there is room and taken by
 * the next store of about its size (not one much smaller, not one larger);
 * with no room left it is freed. The recycled buffer is still mapped. */
Test(cuda_host, spare_pinned_buffers)
{
	struct cuda_dev *d = tgpu_open();
	struct hoststore *a, *b, *c;
	struct hoststore_info in;
	const uint64_t mb = 1ull << 20;
	uint64_t reuses = hoststore_spare_reuses();
	void *base;

	cr_assert_eq(hoststore_create(64 * mb, &a), 0, "%s", err_msg(0));
	hoststore_get_info(a, &in);
	cr_assert(in.mapped && !in.recycled);
	base = hoststore_base(a);
	spare_room_bytes = 256 * mb;
	hoststore_spare_room(test_room, NULL);
	hoststore_destroy(a); /* kept */
	cr_assert_eq(hoststore_create(16 * mb, &b), 0, "%s", err_msg(0));
	hoststore_get_info(b, &in);
	cr_assert(!in.recycled, "a 64 MiB spare must not serve 16 MiB");
	cr_assert_eq(hoststore_create(60 * mb, &c), 0, "%s", err_msg(0));
	hoststore_get_info(c, &in);
	cr_assert(in.recycled && in.mapped, "a 64 MiB spare serves 60 MiB");
	cr_assert_eq(hoststore_base(c), base);
	cr_assert_eq(hoststore_spare_reuses(), reuses + 1);
	memset(hoststore_base(c), 0x5a, 60 * mb); /* still writable */
	hoststore_destroy(c);			  /* kept */
	hoststore_destroy(b);			  /* kept */
	spare_room_bytes = 0;
	cr_assert_eq(hoststore_create(8 * mb, &b), 0, "%s", err_msg(0));
	hoststore_get_info(b, &in);
	cr_assert(!in.recycled); /* and with no room, both spares were freed */
	cr_assert_eq(hoststore_create(60 * mb, &c), 0, "%s", err_msg(0));
	hoststore_get_info(c, &in);
	cr_assert(!in.recycled, "no room: the spares were freed");
	hoststore_destroy(c);
	hoststore_destroy(b);
	hoststore_spare_room(NULL, NULL);
	cuda_device_close(d);
}
