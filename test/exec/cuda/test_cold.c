/* SPDX-License-Identifier: MIT */
/*
 * Cold starts (src/exec/cuda/cold.c) and the GPU profiler (profile.c): in
 * every mode, eager and as a graph, a cold run's outputs equal the warm
 * run's of the same model bit for bit and the CPU reference within
 * tolerance; the warm path keeps working after cold runs; modes change on
 * one model; helper slots fall back to the target's link when no link is
 * free, and with two GPUs a helper really carries layers; bad plans and
 * bad inputs fail cleanly; 1,000 cold/evict cycles leak no device or host
 * memory; a measured profile plans and runs. Promotion of the DHA layers
 * into device memory: the promoted model's outputs equal an all-LOAD
 * model's, an eviction brings the plan's cold start back bit for bit,
 * promote/evict cycles (explicit and by DPRT_COLD_PROMOTE=1) leak nothing,
 * promoting an evicted, a promoted or an all-LOAD model does nothing, and
 * with the pool full it fails cleanly, the model still serving by its plan.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec/cuda/cuda_priv.h"
#include "helpers.h"
#include "mem/cudrv.h"
#include "plan/plan.h"

#define MAX_IO 4

/* Every odd layer DHA, the rest LOAD on link 0 in layer order. */
#define FORCE_MIXED (-1)
/* Width 2: LOAD layers alternate between the target's link and helper 1,
 * every third layer DHA. */
#define FORCE_PT2 (-2)

struct cold_case {
	struct tmodel t;
	struct tview in[MAX_IO];
	struct tview ref[MAX_IO]; /* CPU reference outputs (copies) */
	struct plan_profile *pf;
};

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

static void case_init(struct cold_case *k, const char *model, uint32_t n_gpus)
{
	struct exec_model *cm;
	struct tview out[MAX_IO];
	struct rng r;
	int ret;

	memset(k, 0, sizeof(*k));
	rng_seed(&r, tseed());
	tm_init_zoo(&k->t, model, DT_F32, rng_next(&r));
	cr_assert(k->t.g->n_inputs <= MAX_IO && k->t.g->n_outputs <= MAX_IO);
	tin_make(k->t.g, 1, 16, 0, 0, true, &r, k->in);
	ret = cpu_backend.model_create(NULL, k->t.g, k->t.page, &cm) ?:
		      cpu_backend.model_run(cm, k->in, out);
	cr_assert_eq(ret, 0, "%s on the CPU: %s", model, err_msg(ret));
	keep(k->t.g, out, k->ref);
	cpu_backend.model_destroy(cm);
	ret = plan_profile_synthetic(k->t.g, 1, n_gpus, &k->pf);
	cr_assert_eq(ret, 0, "synthetic profile: %s", err_msg(ret));
}

static void case_fini(struct cold_case *k)
{
	drop(k->t.g, k->ref);
	tin_free(k->t.g, k->in);
	plan_profile_destroy(k->pf);
	tm_fini(&k->t);
}

/* Rows of p rewritten by pattern (FORCE_*), orders renumbered. */
static void force(struct plan *p, int pattern)
{
	uint32_t cnt[2] = {0, 0}, l;

	p->width = pattern == FORCE_PT2 ? 2 : 1;
	for (l = 0; l < p->prof.n_layers; l++) {
		struct plan_row *r = &p->rows[l];
		bool dha = pattern == FORCE_MIXED ? l % 2 : l % 3 == 2;

		r->place = dha ? PLAN_DHA : PLAN_LOAD;
		r->link = dha || pattern == FORCE_MIXED ? 0 : l % 2;
		r->order = dha ? PLAN_NO_ORDER : cnt[r->link]++;
	}
}

/* Plan of mode m (>= 0) or forced pattern (< 0) for k on n_gpus. */
static struct plan *make_plan(struct cold_case *k, int m, uint32_t n_gpus)
{
	struct plan *p = NULL;
	int ret;

	ret = plan_build(k->pf, m >= 0 ? (enum plan_mode)m : PLAN_PIPELINE, n_gpus, &p);
	cr_assert_eq(ret, 0, "plan_build: %s", err_msg(ret));
	if (m < 0)
		force(p, m);
	return p;
}

static const char *mode_label(int m)
{
	return m == FORCE_MIXED ? "mixed" : m == FORCE_PT2 ? "pt2" : plan_mode_name(m);
}

/* One cold run, then a warm one: equal bit for bit, near the CPU. */
static void cold_then_warm(struct cold_case *k, struct exec_model *m, const char *what,
			   struct cuda_cold_stats *st)
{
	const struct graph *g = k->t.g;
	struct tview out[MAX_IO], cold[MAX_IO];
	uint32_t o;
	double e;
	int ret;

	cr_assert(!cuda_cold_resident(m), "%s: model resident before its cold start", what);
	ret = cuda_cold_run(m, k->in, out, st);
	cr_assert_eq(ret, 0, "%s: cold run: %s", what, err_msg(ret));
	cr_assert(st->cold && cuda_cold_resident(m), "%s: not a cold start", what);
	keep(g, out, cold);
	for (o = 0; o < g->n_outputs; o++) {
		e = tnorm_err(&cold[o], &k->ref[o]);
		cr_assert(e <= ttol(DT_F32), "%s: output %s: error %.3g against the CPU", what,
			  g->outputs[o].name, e);
		memset(out[o].data, 0xff, out[o].nbytes);
	}
	ret = cuda_backend.model_run(m, k->in, out);
	cr_assert_eq(ret, 0, "%s: warm run: %s", what, err_msg(ret));
	for (o = 0; o < g->n_outputs; o++)
		cr_assert(!memcmp(cold[o].data, out[o].data, out[o].nbytes),
			  "%s: output %s of the cold run differs from the warm run's", what,
			  g->outputs[o].name);
	drop(g, cold);
}

static uint64_t dha_bytes_of(const struct plan *p)
{
	struct plan_stats s;

	plan_get_stats(p, &s);
	return s.dha_bytes;
}

static void check_modes(const char *model)
{
	static const int modes[] = {PLAN_DEMAND, PLAN_PIPELINE, PLAN_DEEPPLAN, PLAN_DEEPPLAN_V1,
				    PLAN_PT,	 PLAN_PT_DHA,	PLAN_DPRT,     FORCE_MIXED};
	struct cuda_dev *d = tgpu_open();
	struct cuda_cold_stats st;
	struct cold_case k;
	struct exec_model *m;
	struct plan *p;
	char what[128];
	size_t i;
	int graph, ret;

	case_init(&k, model, 1);
	for (graph = 0; graph < 2; graph++) {
		setenv("DPRT_COLD_GRAPH", graph ? "1" : "0", 1);
		knobs_reload();
		for (i = 0; i < ARRAY_SIZE(modes); i++) {
			snprintf(what, sizeof(what), "%s %s (%s)", model, mode_label(modes[i]),
				 graph ? "graph" : "eager");
			p = make_plan(&k, modes[i], 1);
			ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, NULL, 0,
						     &m);
			cr_assert_eq(ret, 0, "%s: create: %s", what, err_msg(ret));
			cold_then_warm(&k, m, what, &st);
			cr_assert_eq(st.graph, graph == 1, "%s: graph %d", what, st.graph);
			cr_assert_eq(st.bytes_dha, dha_bytes_of(p), "%s: DHA bytes", what);
			cr_assert(st.bytes_loaded + st.bytes_dha >= k.t.g->weights_size / 2 &&
					  st.bytes_link[0] == st.bytes_loaded,
				  "%s: %llu bytes loaded", what,
				  (unsigned long long)st.bytes_loaded);
			/* again after an eviction: same ranges, no remade programs */
			ret = cuda_cold_evict(m);
			cr_assert_eq(ret, 0, "%s: evict: %s", what, err_msg(ret));
			cold_then_warm(&k, m, what, &st);
			cuda_backend.model_destroy(m);
			plan_destroy(p);
		}
	}
	unsetenv("DPRT_COLD_GRAPH");
	knobs_reload();
	case_fini(&k);
	cuda_device_close(d);
}

Test(cuda_cold, modes_bert_tiny)
{
	check_modes("bert-tiny");
}
Test(cuda_cold, modes_gpt2_tiny)
{
	check_modes("gpt2-tiny");
}
Test(cuda_cold, modes_roberta_tiny)
{
	check_modes("roberta-tiny");
}
Test(cuda_cold, modes_resnet_tiny)
{
	check_modes("resnet-tiny");
}

/* One model through several plans; model_run of an evicted model is a
 * cold start. */
Test(cuda_cold, set_plan)
{
	static const int modes[] = {PLAN_PIPELINE, FORCE_MIXED, PLAN_DEMAND, FORCE_MIXED};
	struct cuda_dev *d = tgpu_open();
	struct cuda_cold_stats st;
	struct tview out[MAX_IO];
	struct cold_case k;
	struct exec_model *m;
	struct plan *p;
	size_t i;
	int ret;

	case_init(&k, "gpt2-tiny", 1);
	p = make_plan(&k, PLAN_DEEPPLAN, 1);
	ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, NULL, 0, &m);
	cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
	plan_destroy(p);
	for (i = 0; i < ARRAY_SIZE(modes); i++) {
		p = make_plan(&k, modes[i], 1);
		ret = cuda_cold_set_plan(m, p);
		cr_assert_eq(ret, 0, "set_plan %s: %s", mode_label(modes[i]), err_msg(ret));
		plan_destroy(p);
		cold_then_warm(&k, m, mode_label(modes[i]), &st);
	}
	cuda_cold_evict(m);
	ret = cuda_backend.model_run(m, k.in, out);
	cr_assert(!ret && cuda_cold_resident(m), "model_run when evicted: %s", err_msg(ret));
	cr_assert(tnorm_err(&out[0], &k.ref[0]) <= ttol(DT_F32));
	cuda_backend.model_destroy(m);
	case_fini(&k);
	cuda_device_close(d);
}

/* A width-2 plan with no link to lend: the helper's layers go over the
 * target's link, counted as a fallback; with a claimed link too. */
Test(cuda_cold, helper_fallback)
{
	struct cuda_dev *d = tgpu_open();
	struct cuda_link *lk = NULL;
	struct cuda_cold_stats st;
	struct cold_case k;
	struct exec_model *m;
	struct plan *p;
	int ret;

	case_init(&k, "bert-tiny", 2);
	p = make_plan(&k, FORCE_PT2, 2);
	ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, NULL, 0, &m);
	cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
	cold_then_warm(&k, m, "no helper", &st);
	cr_assert(st.fallbacks == 1 && st.links == 1, "fallbacks %u links %u", st.fallbacks,
		  st.links);
	cuda_backend.model_destroy(m);
	if (cuda_device_count() > 1) {
		struct cuda_dev *h;

		ret = cuda_device_open(1, &h) ?: cuda_link_create(h, &lk);
		cr_assert_eq(ret, 0, "GPU 1: %s", err_msg(ret));
		ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, &lk, 1, &m);
		cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
		cr_assert(cuda_link_claim(lk));
		cold_then_warm(&k, m, "helper busy", &st);
		cr_assert(st.fallbacks == 1 && st.links == 1);
		cuda_link_release(lk);
		cuda_cold_evict(m);
		cold_then_warm(&k, m, "helper free", &st);
		cr_assert(st.fallbacks == 0 && st.links == 2 && st.bytes_link[1] > 0,
			  "fallbacks %u links %u", st.fallbacks, st.links);
		cuda_backend.model_destroy(m);
		cuda_link_destroy(lk);
		cuda_device_close(h);
	}
	plan_destroy(p);
	case_fini(&k);
	cuda_device_close(d);
}

/* Parallel transmission through GPU 1, staged and direct, captured as a
 * graph and eager: many groups on the helper, both staging slots in turn. */
Test(cuda_cold, pt_two_gpus)
{
	static const char *const models[] = {"gpt2-tiny", "resnet-tiny"};
	struct cuda_dev *d, *h;
	struct cuda_link *lk;
	struct cuda_cold_stats st;
	struct cold_case k;
	struct exec_model *m;
	struct plan *p;
	size_t i;
	int ret, rep, graphs;

	if (cuda_device_count() < 2 && !getenv("DPRT_REQUIRE_GPUS2"))
		cr_skip_test("one GPU here: the helper path needs two");
	d = tgpu_open();
	ret = cuda_device_open(1, &h) ?: cuda_link_create(h, &lk);
	cr_assert_eq(ret, 0, "GPU 1: %s", err_msg(ret));
	for (i = 0; i < 4 * ARRAY_SIZE(models); i++) {
		setenv("DPRT_PT_DIRECT", i % 2 ? "1" : "0", 1);
		setenv("DPRT_COLD_GRAPH", i / 2 % 2 ? "1" : "0", 1);
		knobs_reload();
		case_init(&k, models[i / 4], 2);
		p = make_plan(&k, FORCE_PT2, 2);
		ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, &lk, 1, &m);
		cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
		/* with graphs: eager first, then captured, then the faster */
		for (rep = 0, graphs = 0; rep < 20; rep++) {
			cold_then_warm(&k, m, models[i / 4], &st);
			cr_assert(st.links == 2 && st.bytes_link[1] > 0);
			cr_assert(!st.graph || i / 2 % 2, "%s: a graph with DPRT_COLD_GRAPH=0",
				  models[i / 4]);
			graphs += st.graph;
			cuda_cold_evict(m);
		}
		cr_assert(graphs >= (i / 2 % 2 ? 1 : 0), "%s: %d graph runs", models[i / 4],
			  graphs);
		cuda_backend.model_destroy(m);
		plan_destroy(p);
		case_fini(&k);
	}
	unsetenv("DPRT_PT_DIRECT");
	unsetenv("DPRT_COLD_GRAPH");
	knobs_reload();
	cuda_link_destroy(lk);
	cuda_device_close(h);
	cuda_device_close(d);
}

/* Wrong plans, wrong inputs, a model without cold state. */
Test(cuda_cold, errors)
{
	struct cuda_dev *d = tgpu_open();
	struct cuda_cold_stats st;
	struct cold_case k, other;
	struct tview out[MAX_IO], bad[MAX_IO];
	struct exec_model *m, *plain;
	struct plan *p, *q;
	int ret;

	case_init(&k, "bert-tiny", 1);
	case_init(&other, "gpt2-tiny", 1);
	q = make_plan(&other, PLAN_PIPELINE, 1);
	ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), q, NULL, 0, &m);
	cr_assert_eq(ret, DPRT_EBADPLAN, "a plan for another model: %d", ret);
	p = make_plan(&k, FORCE_MIXED, 1);
	ret = cuda_cold_model_create(d, k.t.g, k.t.page, p, NULL, 0, &m);
	cr_assert_neq(ret, 0, "DHA from pageable memory was accepted");
	ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, NULL, 0, &m);
	cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
	ret = cuda_cold_set_plan(m, q);
	cr_assert_eq(ret, DPRT_EBADPLAN);
	memcpy(bad, k.in, sizeof(bad));
	bad[0].shape.dims[1] = k.t.g->max_seq + 1;
	ret = cuda_cold_run(m, bad, out, &st);
	cr_assert_neq(ret, 0, "a too long sequence was accepted");
	cr_assert(!cuda_cold_resident(m), "a failed cold start left the model resident");
	cold_then_warm(&k, m, "after a failed cold start", &st);
	ret = tmodel_create_gpu(d, &k.t, TP_LOAD_PINNED, &plain);
	cr_assert_eq(ret, 0);
	cr_assert_eq(cuda_cold_run(plain, k.in, out, &st), -EINVAL);
	cr_assert_eq(cuda_cold_evict(plain), -EINVAL);
	cuda_backend.model_destroy(plain);
	cuda_backend.model_destroy(m);
	plan_destroy(p);
	plan_destroy(q);
	case_fini(&other);
	case_fini(&k);
	cuda_device_close(d);
}

static size_t free_mem(void)
{
	size_t f = 0, t = 0;

	cr_assert_eq(CU(cuMemGetInfo(&f, &t)), 0);
	return f;
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	cr_assert(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = strtol(line + 6, NULL, 10);
	fclose(f);
	return kib;
}

/* Where the device pool, the GPU's free memory and the process's RSS
 * stand; mark_check: back where they stood (RSS within slack KiB). */
struct mem_mark {
	uint64_t used, reserved;
	size_t free;
	long rss;
};

static void mark_take(struct cuda_dev *d, struct mem_mark *mk)
{
	mk->used = cuda_device_used(d);
	mk->reserved = cuda_device_reserved(d);
	mk->free = free_mem();
	mk->rss = rss_kib();
}

static void mark_check(struct cuda_dev *d, const struct mem_mark *mk, long slack)
{
	cr_assert_eq(cuda_device_used(d), mk->used, "pool: %llu bytes in use, %llu before",
		     (unsigned long long)cuda_device_used(d), (unsigned long long)mk->used);
	cr_assert_eq(cuda_device_reserved(d), mk->reserved);
	cr_assert_eq(free_mem(), mk->free, "GPU free memory %zu, %zu before", free_mem(), mk->free);
	cr_assert(rss_kib() <= mk->rss + slack, "resident memory %ld KiB, %ld before", rss_kib(),
		  mk->rss);
}

/* 20 warm-up and n measured cold/evict cycles of a mixed plan: the pool,
 * the GPU's free memory and the process's resident memory end where they
 * began, every output equals the first, and nothing is progs_remade. */
static void cycles(struct cuda_dev *d, struct cold_case *k, bool graph, int n)
{
	struct cuda_cold_stats st;
	struct tview out[MAX_IO], first[MAX_IO];
	struct exec_model *m;
	struct plan *p;
	struct mem_mark mk = {0};
	int i, ret, replans = 0;

	setenv("DPRT_COLD_GRAPH", graph ? "1" : "0", 1);
	knobs_reload();
	p = make_plan(k, FORCE_MIXED, 1);
	ret = cuda_cold_model_create(d, k->t.g, hoststore_base(k->t.hs), p, NULL, 0, &m);
	cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
	for (i = 0; i < 20 + n; i++) {
		if (i == 20)
			mark_take(d, &mk);
		ret = cuda_cold_run(m, k->in, out, &st) ?: cuda_cold_evict(m);
		cr_assert_eq(ret, 0, "cycle %d: %s", i, err_msg(ret));
		cr_assert_eq(st.graph, graph);
		replans += i >= 20 && st.progs_remade;
		if (i == 0)
			keep(k->t.g, out, first);
		else
			cr_assert(!memcmp(first[0].data, out[0].data, out[0].nbytes),
				  "cycle %d: output differs from the first cycle's", i);
	}
	mark_check(d, &mk, 1024);
	cr_assert_eq(replans, 0, "%d cycles had to remake their programs", replans);
	unsetenv("DPRT_COLD_GRAPH");
	knobs_reload();
	drop(k->t.g, first);
	cuda_backend.model_destroy(m);
	plan_destroy(p);
}

Test(cuda_cold, cycles_leak_nothing, .timeout = 240)
{
	struct cuda_dev *d = tgpu_open();
	struct cold_case k;

	case_init(&k, "bert-tiny", 1);
	cycles(d, &k, true, 500);
	cycles(d, &k, false, 500);
	case_fini(&k);
	cuda_device_close(d);
}

/* ------------------------------------------------------------ promotion */

/* Every output of a equals b's bit for bit. */
static void same_bits(const struct graph *g, const struct tview *a, const struct tview *b,
		      const char *what, const char *against)
{
	uint32_t o;

	for (o = 0; o < g->n_outputs; o++)
		cr_assert(a[o].nbytes == b[o].nbytes && !memcmp(a[o].data, b[o].data, a[o].nbytes),
			  "%s: output %s differs from %s", what, g->outputs[o].name, against);
}

/* Wait (polling, 1 ms apart, up to 5 s) until m's promotion has switched:
 * by warm runs (by_run; the run that switches says how many bytes) or by
 * cuda_cold_promoted. Then one run on the promoted layers into out. */
static void run_promoted(struct cold_case *k, struct exec_model *m, bool by_run, uint64_t dha_bytes,
			 struct tview *out, const char *what)
{
	struct cuda_cold_stats st;
	uint64_t switched = 0;
	int i, ret;

	for (i = 0; i < 5000 && !switched; i++) {
		if (by_run) {
			ret = cuda_cold_run(m, k->in, out, &st);
			cr_assert_eq(ret, 0, "%s: run while promoting: %s", what, err_msg(ret));
			cr_assert(!st.cold, "%s: a cold start while resident", what);
			switched = st.bytes_promoted;
		} else {
			switched = cuda_cold_promoted(m);
		}
		if (!switched)
			usleep(1000);
	}
	cr_assert(switched, "%s: promotion not done after 5 s", what);
	if (by_run)
		cr_assert_eq(switched, dha_bytes, "%s: %llu bytes promoted, %llu DHA", what,
			     (unsigned long long)switched, (unsigned long long)dha_bytes);
	cr_assert(cuda_cold_promoted(m) && cuda_cold_resident(m), "%s: not promoted", what);
	ret = cuda_cold_run(m, k->in, out, &st);
	cr_assert_eq(ret, 0, "%s: promoted run: %s", what, err_msg(ret));
	cr_assert(!st.cold && !st.bytes_promoted, "%s: promoted run cold %d, %llu bytes", what,
		  st.cold, (unsigned long long)st.bytes_promoted);
}

/*
 * Cold (DHA) run, promotion, run on the promoted layers, eviction, cold run.
 * The promoted model's GEMMs read every weight from device memory, which
 * selects other cuBLASLt algorithms than host reads may (gemm_key.host_a):
 * its outputs are compared bit for bit with an all-LOAD model's on the same
 * device (same algorithm cache) and with the CPU within tolerance, not with
 * the DHA run's. The cold run after the eviction equals the first.
 */
static void check_promote(const char *model)
{
	static const int modes[] = {FORCE_MIXED, PLAN_DEEPPLAN};
	struct cuda_dev *d = tgpu_open();
	struct tview out[MAX_IO], load[MAX_IO], cold[MAX_IO];
	struct cuda_cold_stats st;
	struct exec_model *m, *all;
	struct cold_case k;
	struct plan *p;
	uint64_t dha, used;
	char what[128];
	uint32_t o;
	size_t i;
	int graph, ret;

	case_init(&k, model, 1);
	ret = tmodel_create_gpu(d, &k.t, TP_LOAD_PINNED, &all) ?:
		      cuda_backend.model_run(all, k.in, out);
	cr_assert_eq(ret, 0, "%s all LOAD: %s", model, err_msg(ret));
	keep(k.t.g, out, load);
	for (graph = 0; graph < 2; graph++) {
		setenv("DPRT_COLD_GRAPH", graph ? "1" : "0", 1);
		knobs_reload();
		for (i = 0; i < ARRAY_SIZE(modes); i++) {
			snprintf(what, sizeof(what), "%s %s (%s)", model, mode_label(modes[i]),
				 graph ? "graph" : "eager");
			p = make_plan(&k, modes[i], 1);
			dha = dha_bytes_of(p);
			if (!dha && modes[i] != FORCE_MIXED) {
				fprintf(stderr, "%s: no DHA layers, nothing to promote\n", what);
				plan_destroy(p);
				continue;
			}
			cr_assert(dha > 0, "%s: no DHA layers", what);
			ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, NULL, 0,
						     &m);
			cr_assert_eq(ret, 0, "%s: create: %s", what, err_msg(ret));
			ret = cuda_cold_run(m, k.in, out, &st);
			cr_assert(!ret && st.cold && st.bytes_dha == dha, "%s: cold run: %s", what,
				  err_msg(ret));
			keep(k.t.g, out, cold);
			cr_assert(!cuda_cold_promoted(m), "%s: promoted before promoting", what);
			used = cuda_device_used(d);
			ret = cuda_cold_promote(m);
			cr_assert_eq(ret, 0, "%s: promote: %s", what, err_msg(ret));
			cr_assert(cuda_device_used(d) >= used + dha,
				  "%s: promotion took %llu bytes "
				  "for %llu DHA",
				  what, (unsigned long long)(cuda_device_used(d) - used),
				  (unsigned long long)dha);
			run_promoted(&k, m, i == 0, dha, out, what);
			same_bits(k.t.g, out, load, what, "the all-LOAD model's");
			for (o = 0; o < k.t.g->n_outputs; o++)
				cr_assert(tnorm_err(&out[o], &k.ref[o]) <= ttol(DT_F32),
					  "%s: promoted output %s off the CPU's", what,
					  k.t.g->outputs[o].name);
			ret = cuda_cold_evict(m);
			cr_assert_eq(ret, 0, "%s: evict: %s", what, err_msg(ret));
			cr_assert(!cuda_cold_promoted(m) && !cuda_cold_resident(m));
			ret = cuda_cold_run(m, k.in, out, &st);
			cr_assert(!ret && st.cold && st.bytes_dha == dha && st.progs_remade,
				  "%s: cold run after the promotion: %s (progs_remade %d)", what,
				  err_msg(ret), st.progs_remade);
			same_bits(k.t.g, out, cold, what, "the first cold run's");
			drop(k.t.g, cold);
			cuda_backend.model_destroy(m);
			plan_destroy(p);
		}
	}
	unsetenv("DPRT_COLD_GRAPH");
	knobs_reload();
	drop(k.t.g, load);
	cuda_backend.model_destroy(all);
	case_fini(&k);
	cuda_device_close(d);
}

Test(cuda_cold, promote_matches_bert_tiny)
{
	check_promote("bert-tiny");
}
Test(cuda_cold, promote_matches_gpt2_tiny)
{
	check_promote("gpt2-tiny");
}

/* 20 warm-up and n measured cycles of cold run, promotion (by a call, or
 * by DPRT_COLD_PROMOTE=1), wait, run, eviction: pool, GPU free memory
 * and resident memory end where they began; every cold output equals the
 * first cold one and every promoted output the first promoted one. */
static void promote_cycles(struct cuda_dev *d, struct cold_case *k, bool by_env, int n)
{
	struct tview out[MAX_IO], first[MAX_IO], prom[MAX_IO];
	struct cuda_cold_stats st;
	struct exec_model *m;
	struct plan *p;
	struct mem_mark mk = {0};
	uint64_t dha;
	int i, ret;

	if (by_env) {
		setenv("DPRT_COLD_PROMOTE", "1", 1);
		knobs_reload();
	}
	p = make_plan(k, FORCE_MIXED, 1);
	dha = dha_bytes_of(p);
	ret = cuda_cold_model_create(d, k->t.g, hoststore_base(k->t.hs), p, NULL, 0, &m);
	unsetenv("DPRT_COLD_PROMOTE");
	knobs_reload();
	cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
	for (i = 0; i < 20 + n; i++) {
		if (i == 20)
			mark_take(d, &mk);
		ret = cuda_cold_run(m, k->in, out, &st);
		cr_assert(!ret && st.cold, "cycle %d: cold run: %s", i, err_msg(ret));
		if (i == 0)
			keep(k->t.g, out, first);
		else
			same_bits(k->t.g, out, first, "cold run", "the first cycle's");
		if (!by_env) {
			ret = cuda_cold_promote(m);
			cr_assert_eq(ret, 0, "cycle %d: promote: %s", i, err_msg(ret));
		}
		run_promoted(k, m, i % 2, dha, out, by_env ? "DPRT_COLD_PROMOTE" : "promote");
		if (i == 0)
			keep(k->t.g, out, prom);
		else
			same_bits(k->t.g, out, prom, "promoted run", "the first cycle's");
		ret = cuda_cold_evict(m);
		cr_assert_eq(ret, 0, "cycle %d: evict: %s", i, err_msg(ret));
	}
	mark_check(d, &mk, 2048);
	drop(k->t.g, first);
	drop(k->t.g, prom);
	cuda_backend.model_destroy(m);
	plan_destroy(p);
}

Test(cuda_cold, promote_cycles_leak_nothing, .timeout = 240)
{
	struct cuda_dev *d = tgpu_open();
	struct cold_case k;

	case_init(&k, "bert-tiny", 1);
	promote_cycles(d, &k, false, 200);
	promote_cycles(d, &k, true, 100);
	case_fini(&k);
	cuda_device_close(d);
}

/* On evicted m: cold run, promotion, promotion again (nothing more taken),
 * eviction before anything polled: the pool is back where it was and the
 * next cold run is unchanged (not progs_remade). Leaves m evicted. */
static void promote_evict_early(struct cold_case *k, struct cuda_dev *d, struct exec_model *m,
				const struct tview *cold)
{
	struct tview out[MAX_IO];
	struct cuda_cold_stats st;
	uint64_t used_evicted = cuda_device_used(d), used;
	int ret;

	ret = cuda_cold_run(m, k->in, out, &st);
	cr_assert(!ret && st.cold, "cold run: %s", err_msg(ret));
	ret = cuda_cold_promote(m);
	cr_assert_eq(ret, 0, "promote: %s", err_msg(ret));
	used = cuda_device_used(d);
	ret = cuda_cold_promote(m);
	cr_assert_eq(ret, 0, "promote twice: %s", err_msg(ret));
	cr_assert_eq(cuda_device_used(d), used, "a second promotion took memory");
	ret = cuda_cold_evict(m);
	cr_assert_eq(ret, 0, "evict while promoting: %s", err_msg(ret));
	cr_assert_eq(cuda_device_used(d), used_evicted,
		     "pool: %llu bytes after the eviction, "
		     "%llu before the cold run",
		     (unsigned long long)cuda_device_used(d), (unsigned long long)used_evicted);
	cr_assert(!cuda_cold_promoted(m));
	ret = cuda_cold_run(m, k->in, out, &st);
	cr_assert(!ret && st.cold && !st.progs_remade, "cold run after: %s (progs_remade %d)",
		  err_msg(ret), st.progs_remade);
	same_bits(k->t.g, out, cold, "after an early eviction", "the first cold run's");
	ret = cuda_cold_evict(m);
	cr_assert_eq(ret, 0, "evict: %s", err_msg(ret));
}

/* Promotion does nothing on an evicted model, an all-LOAD one or one
 * already promoted; fails on a model without cold state; an eviction
 * while the copies may be in flight, a plan change and a destruction of
 * a promoted or promoting model give everything back. */
Test(cuda_cold, promote_edges)
{
	struct cuda_dev *d = tgpu_open();
	struct tview out[MAX_IO], cold[MAX_IO];
	struct exec_model *m, *plain;
	struct cuda_cold_stats st;
	struct cold_case k;
	struct plan *p, *all;
	uint64_t base, used;
	int ret, rep;

	case_init(&k, "gpt2-tiny", 1);
	ret = tmodel_create_gpu(d, &k.t, TP_LOAD_PINNED, &plain);
	cr_assert_eq(ret, 0);
	cr_assert_eq(cuda_cold_promote(plain), -EINVAL);
	cr_assert(!cuda_cold_promoted(plain));
	cuda_backend.model_destroy(plain);

	/* all LOAD: nothing to promote */
	all = make_plan(&k, PLAN_PIPELINE, 1);
	cr_assert_eq(dha_bytes_of(all), 0);
	ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), all, NULL, 0, &m);
	cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
	ret = cuda_cold_run(m, k.in, out, &st);
	cr_assert_eq(ret, 0, "all LOAD cold run: %s", err_msg(ret));
	used = cuda_device_used(d);
	cr_assert_eq(cuda_cold_promote(m), 0);
	cr_assert(cuda_device_used(d) == used && !cuda_cold_promoted(m),
		  "an all-LOAD model was promoted");
	cuda_backend.model_destroy(m);

	base = cuda_device_used(d);
	p = make_plan(&k, FORCE_MIXED, 1);
	ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, NULL, 0, &m);
	cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
	/* evicted: nothing */
	used = cuda_device_used(d);
	cr_assert_eq(cuda_cold_promote(m), 0);
	cr_assert(cuda_device_used(d) == used && !cuda_cold_promoted(m) && !cuda_cold_resident(m),
		  "an evicted model was promoted");
	ret = cuda_cold_run(m, k.in, out, &st) ?: cuda_cold_evict(m);
	cr_assert_eq(ret, 0, "cold/evict: %s", err_msg(ret));
	ret = cuda_cold_run(m, k.in, out, &st);
	cr_assert(!ret && st.cold && !cuda_cold_promoted(m), "cold run: %s", err_msg(ret));
	keep(k.t.g, out, cold);
	cr_assert_eq(cuda_cold_evict(m), 0);
	for (rep = 0; rep < 3; rep++)
		promote_evict_early(&k, d, m, cold);

	/* promoted, promoted again, then a plan change (which evicts) */
	ret = cuda_cold_run(m, k.in, out, &st) ?: cuda_cold_promote(m);
	cr_assert_eq(ret, 0, "cold run and promote: %s", err_msg(ret));
	run_promoted(&k, m, false, dha_bytes_of(p), out, "before set_plan");
	used = cuda_device_used(d);
	cr_assert_eq(cuda_cold_promote(m), 0);
	cr_assert(cuda_device_used(d) == used && cuda_cold_promoted(m));
	ret = cuda_cold_set_plan(m, p);
	cr_assert_eq(ret, 0, "set_plan: %s", err_msg(ret));
	cr_assert(!cuda_cold_promoted(m) && !cuda_cold_resident(m));
	ret = cuda_cold_run(m, k.in, out, &st);
	cr_assert(!ret && st.cold && st.bytes_dha == dha_bytes_of(p), "cold run after set_plan: %s",
		  err_msg(ret));
	same_bits(k.t.g, out, cold, "after set_plan", "the first cold run's");

	/* destroyed while promoted, and while promoting */
	ret = cuda_cold_promote(m);
	cr_assert_eq(ret, 0, "promote: %s", err_msg(ret));
	run_promoted(&k, m, true, dha_bytes_of(p), out, "before destroy");
	cuda_backend.model_destroy(m);
	cr_assert_eq(cuda_device_used(d), base,
		     "pool: %llu bytes after destroying a promoted "
		     "model, %llu before",
		     (unsigned long long)cuda_device_used(d), (unsigned long long)base);
	ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, NULL, 0, &m) ?:
		      cuda_cold_run(m, k.in, out, &st)				       ?:
		      cuda_cold_promote(m);
	cr_assert_eq(ret, 0, "create, cold run and promote: %s", err_msg(ret));
	cuda_backend.model_destroy(m);
	cr_assert_eq(cuda_device_used(d), base,
		     "pool: %llu bytes after destroying a promoting "
		     "model, %llu before",
		     (unsigned long long)cuda_device_used(d), (unsigned long long)base);
	drop(k.t.g, cold);
	plan_destroy(p);
	plan_destroy(all);
	case_fini(&k);
	cuda_device_close(d);
}

#define FILL_MAX 4096

/* Take everything d's pool can still give (down to DEVPOOL_ALIGN bytes)
 * into fill[]; returns how many allocations that took. */
static uint32_t fill_pool(struct cuda_dev *d, uint64_t *fill)
{
	static const uint64_t sizes[] = {1ull << 30,  64ull << 20, 4ull << 20,	 256ull << 10,
					 16ull << 10, 1ull << 10,  DEVPOOL_ALIGN};
	uint32_t n = 0;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++)
		while (n < FILL_MAX && !devpool_alloc(d->pool, sizes[i], "filler", &fill[n]))
			n++;
	err_clear();
	cr_assert(n < FILL_MAX, "the pool took more than %u fillers", FILL_MAX);
	return n;
}

/* A promotion that finds the pool full fails with the model named, takes
 * nothing and leaves the model running by its plan; once there is room
 * it works. */
Test(cuda_cold, promote_pool_full, .timeout = 120)
{
	struct cuda_dev *d = tgpu_open();
	struct tview out[MAX_IO], cold[MAX_IO];
	struct cuda_cold_stats st;
	struct exec_model *m;
	struct cold_case k;
	struct plan *p;
	uint64_t *fill, used;
	uint32_t n, i;
	int ret;

	case_init(&k, "gpt2-tiny", 1);
	p = make_plan(&k, FORCE_MIXED, 1);
	ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, NULL, 0, &m) ?:
		      cuda_cold_run(m, k.in, out, &st);
	cr_assert_eq(ret, 0, "create and cold run: %s", err_msg(ret));
	keep(k.t.g, out, cold);
	fill = calloc(FILL_MAX, sizeof(*fill));
	cr_assert(fill);
	n = fill_pool(d, fill);
	used = cuda_device_used(d);
	ret = cuda_cold_promote(m);
	cr_assert_eq(ret, -ENOMEM, "promote with the pool full: %d %s", ret, err_msg(ret));
	cr_assert(strstr(err_msg(ret), k.t.g->name), "error without the model's name: %s",
		  err_msg(ret));
	cr_assert_eq(cuda_device_used(d), used, "a failed promotion kept memory");
	cr_assert(!cuda_cold_promoted(m) && cuda_cold_resident(m));
	ret = cuda_cold_run(m, k.in, out, &st);
	cr_assert(!ret && !st.cold && !st.bytes_promoted, "run after: %s", err_msg(ret));
	same_bits(k.t.g, out, cold, "after a failed promotion", "the cold run's");
	for (i = 0; i < n; i++)
		devpool_free(d->pool, fill[i]);
	free(fill);
	ret = cuda_cold_promote(m);
	cr_assert_eq(ret, 0, "promote with room: %s", err_msg(ret));
	run_promoted(&k, m, true, dha_bytes_of(p), out, "with room");
	drop(k.t.g, cold);
	cuda_backend.model_destroy(m);
	plan_destroy(p);
	case_fini(&k);
	cuda_device_close(d);
}

/* A measured profile: sane numbers, and a plan from it runs. */
Test(cuda_cold, profile)
{
	struct cuda_dev *d = tgpu_open();
	struct cuda_cold_stats st;
	struct plan_profile *pf;
	struct cold_case k;
	struct exec_model *m;
	struct plan *p;
	uint64_t exec = 0;
	uint32_t l;
	int ret;

	case_init(&k, "bert-tiny", 1);
	ret = cuda_profile(&d, 1, k.t.g, hoststore_base(k.t.hs), 7, &pf);
	cr_assert_eq(ret, 0, "profile: %s", err_msg(ret));
	cr_assert(pf->pkg_checksum == 7 && pf->link.n_gpus == 1 && !(pf->flags & PLAN_F_SYNTHETIC));
	cr_assert(strstr(cuda_device_name(d), pf->gpu) == cuda_device_name(d), "GPU %s", pf->gpu);
	cr_assert(pf->link.h2d_bw > 1e9 && pf->link.h2d_bw < 1e12, "h2d %g", pf->link.h2d_bw);
	for (l = 0; l < pf->n_layers; l++) {
		cr_assert(pf->layers[l].load_ns > 0 && pf->layers[l].load_ns < 10000000,
			  "layer %u load %llu ns", l, (unsigned long long)pf->layers[l].load_ns);
		exec += pf->layers[l].exec_ns;
	}
	cr_assert(exec > 1000 && exec < 50000000, "exec %llu ns", (unsigned long long)exec);
	fprintf(stderr,
		"profile of %s on %s: h2d %.1f GB/s, ovh %llu ns, d2d %.1f GB/s, dha "
		"shares read %.2f copy %.2f, exec %.1f us\n",
		k.t.g->name, pf->gpu, pf->link.h2d_bw / 1e9,
		(unsigned long long)pf->link.xfer_ovh_ns, pf->link.peer_bw / 1e9,
		pf->link.dha_read_share, pf->link.dha_copy_share, (double)exec / 1e3);
	ret = plan_build(pf, PLAN_DPRT, 1, &p);
	cr_assert_eq(ret, 0, "plan: %s", err_msg(ret));
	ret = cuda_cold_model_create(d, k.t.g, hoststore_base(k.t.hs), p, NULL, 0, &m);
	cr_assert_eq(ret, 0, "create: %s", err_msg(ret));
	cold_then_warm(&k, m, "measured plan", &st);
	cuda_backend.model_destroy(m);
	plan_destroy(p);
	plan_profile_destroy(pf);
	case_fini(&k);
	cuda_device_close(d);
}
