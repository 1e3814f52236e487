/* SPDX-License-Identifier: MIT */
/* The planner: DeepPlan's algorithms on hand-traced cases, dprt's search
 * against them on random and zoo profiles, and the modes' rules. */
#include "helpers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define D PLAN_ASG_DHA

static const char *const paper_models[] = {
	"resnet50",	"resnet101",	 "bert-base", "bert-large",
	"roberta-base", "roberta-large", "gpt2",      "gpt2-medium",
};

static struct plan *build(const struct plan_profile *pf, enum plan_mode m, uint32_t n)
{
	struct plan *p = NULL;
	int ret = plan_build(pf, m, n, &p);

	cr_assert_eq(ret, 0, "plan_build %s on %u: %s", plan_mode_name(m), n, err_msg(ret));
	cr_assert_eq(plan_validate(p, "built plan"), 0, "%s", err_msg(DPRT_EBADPLAN));
	return p;
}

static double total_of(const struct plan_profile *pf, enum plan_mode m, uint32_t n)
{
	struct plan *p = build(pf, m, n);
	double t = p->total_ns;

	plan_destroy(p);
	return t;
}

static struct plan_profile *zoo_profile(const char *name, uint32_t n_gpus)
{
	struct plan_profile *pf;
	struct graph *g;
	int ret;

	cr_assert_eq(zoo_build(name, DT_F32, &g), 0, "%s", name);
	ret = plan_profile_synthetic(g, 42, n_gpus, &pf);
	cr_assert_eq(ret, 0, "%s: %s", name, err_msg(ret));
	graph_destroy(g);
	return pf;
}

/* ------------------------------------------------------- deepplan-v1 */

/*
 * Hand trace of plan.py's dynamic plan (load, exec, dha):
 *   0: (100, 5, 10)  1: (20, 10, 40)  2: (50, 10, 80)  3: (10, 30, 100)
 * All LOAD: stalls 100, 15, 40, 0. By penalty: 0 (5), 1 (30), 2 (70, load
 * 50), 3 (70, load 10).
 * Stall of 0 (100): candidate 0 itself qualifies (10 <= 5 + 150, 5 <= 100):
 *   DHA; 100 - 100 - 5 < 0: re-trace: stalls 0, 10, 40, 0.
 * Stall of 1 (10): 1 is not overloaded (40 <= 10 + 30) but its penalty 30
 *   exceeds 10: stop; no re-trace.
 * Stall of 2 (40): 1 qualifies (30 <= 40): DHA; 40 - 20 - 30 < 0: re-trace:
 *   no stall left. Result: 0 and 1 by DHA.
 */
Test(v1, hand_traced)
{
	const struct tl ls[] = {
		{100, 100, 5, 10}, {20, 20, 10, 40}, {50, 50, 10, 80}, {10, 10, 30, 100}};
	struct plan_profile *pf = mk_profile(ls, 4, 1);
	const uint8_t want[] = {D, D, 0, 0};
	uint8_t asg[4];
	struct plan *p;

	cr_assert_eq(plan_v1_dha(pf, asg), 0);
	cr_expect_arr_eq(asg, want, 4);
	/* the plan predicts: 0 DHA 0..10, 1 DHA 10..50, 2 arrives 50: 50..60,
	 * 3 arrives 60: 60..90 */
	p = build(pf, PLAN_DEEPPLAN_V1, 1);
	cr_expect_eq(p->rows[0].place, PLAN_DHA);
	cr_expect_eq(p->rows[1].place, PLAN_DHA);
	cr_expect_eq(p->rows[2].place, PLAN_LOAD);
	cr_expect_float_eq(p->total_ns, 90, 1e-9);
	cr_expect_float_eq(p->rows[2].start_ns, 50, 1e-9);
	plan_destroy(p);
	plan_profile_destroy(pf);
}

/*
 * Equal penalties: the larger load goes first. Layers (load, exec, dha):
 *   0: (1, 60, 10000) overloaded  1: (30, 1, 6)  2: (20, 1, 6)
 *   3: (32, 1, 10000) overloaded
 * All LOAD: stalls 1, 0, 0, 20. Stall of 0: only 0 is a candidate,
 * overloaded: stop. Stall of 3 (20): 1 first (load 30 > 20): DHA, 20 - 30
 * - 5 < 0: done. Layer 2 stays (it would have been taken first with the
 * opposite order).
 */
Test(v1, ties_take_larger_load_first)
{
	const struct tl ls[] = {
		{1, 1, 60, 10000}, {30, 30, 1, 6}, {20, 20, 1, 6}, {32, 32, 1, 10000}};
	struct plan_profile *pf = mk_profile(ls, 4, 1);
	const uint8_t want[] = {0, D, 0, 0};
	uint8_t asg[4];

	cr_assert_eq(plan_v1_dha(pf, asg), 0);
	cr_expect_arr_eq(asg, want, 4);
	plan_profile_destroy(pf);
}

/* A layer without bytes is DHA from the start (the original's naive plan);
 * an overloaded candidate (10000 > 5 + 1.5 * 10) ends the search. */
Test(v1, zero_byte_layers_are_dha)
{
	const struct tl ls[] = {{0, 0, 5, 5}, {10, 10, 5, 10000}};
	struct plan_profile *pf = mk_profile(ls, 2, 1);
	uint8_t asg[2];

	cr_assert_eq(plan_v1_dha(pf, asg), 0);
	cr_expect_eq(asg[0], D);
	cr_expect_eq(asg[1], 0);
	plan_profile_destroy(pf);
}

/* The original's split: device d takes layers while the running sum stays
 * within total / n (integer division); the last takes the rest. */
Test(v1, equal_size_split)
{
	const struct tl ls[] = {
		{10, 10, 1, 1}, {10, 10, 1, 1}, {10, 10, 1, 1}, {10, 10, 1, 1}, {10, 10, 1, 1}};
	struct plan_profile *pf = mk_profile(ls, 5, 3);
	uint8_t asg[5] = {0};
	const uint8_t two[] = {0, 0, 1, 1, 1}, three[] = {0, 1, 2, 2, 2};
	const uint8_t with_dha[] = {0, D, 0, 1, 1};

	plan_v1_split(pf, 2, asg); /* block 25: 10, 20 | rest */
	cr_expect_arr_eq(asg, two, 5);
	memset(asg, 0, sizeof(asg));
	plan_v1_split(pf, 3, asg); /* block 16: 10 | 10 | rest */
	cr_expect_arr_eq(asg, three, 5);
	memset(asg, 0, sizeof(asg));
	asg[1] = D; /* 40 bytes of LOAD, block 20: 0, 2 | 3, 4 */
	plan_v1_split(pf, 2, asg);
	cr_expect_arr_eq(asg, with_dha, 5);
	plan_profile_destroy(pf);
}

/* A first layer larger than the block leaves the target's chunk empty, as
 * in the original; the plan still validates (helper renumbered). */
Test(v1, empty_front_chunk)
{
	const struct tl ls[] = {{100, 100, 1, 10000}, {10, 10, 1, 10000}, {10, 10, 1, 10000}};
	struct plan_profile *pf = mk_profile(ls, 3, 2);
	uint8_t asg[3] = {0, 0, 0};
	struct plan *p;

	plan_v1_split(pf, 2, asg);
	cr_expect(asg[0] == 1 && asg[1] == 1 && asg[2] == 1);
	p = build(pf, PLAN_DEEPPLAN_V1, 2);
	cr_expect_eq(p->width, 2);
	cr_expect_eq(p->rows[0].link, 1);
	plan_destroy(p);
	plan_profile_destroy(pf);
}

/* ------------------------------------------------------------- dprt */

/* dprt is never worse than DeepPlan (with its split on n GPUs), deepplan,
 * pipeline and demand; pt+dha is dprt; more links never predict slower pt
 * or dprt. */
static void check_dominance(const struct plan_profile *pf, uint32_t n, const char *what)
{
	double dprt = total_of(pf, PLAN_DPRT, n), v1 = total_of(pf, PLAN_DEEPPLAN_V1, n);
	double pipe = total_of(pf, PLAN_PIPELINE, n), dp = total_of(pf, PLAN_DEEPPLAN, n);

	cr_expect_leq(dprt, v1, "%s on %u GPUs: dprt %.0f > deepplan-v1 %.0f", what, n, dprt, v1);
	cr_expect_leq(dprt, dp, "%s on %u GPUs: dprt %.0f > deepplan %.0f", what, n, dprt, dp);
	cr_expect_leq(dp, pipe, "%s: deepplan %.0f > pipeline %.0f", what, dp, pipe);
	cr_expect_leq(pipe, total_of(pf, PLAN_DEMAND, n), "%s: pipeline > demand", what);
	cr_expect_eq(dprt, total_of(pf, PLAN_PT_DHA, n), "%s: pt+dha differs from dprt", what);
	if (n > 1) {
		cr_expect_leq(total_of(pf, PLAN_PT, n), total_of(pf, PLAN_PT, n - 1),
			      "%s: pt on %u GPUs slower than on %u", what, n, n - 1);
		cr_expect_leq(dprt, total_of(pf, PLAN_DPRT, n - 1),
			      "%s: dprt on %u GPUs slower than on %u", what, n, n - 1);
	}
}

Test(dprt, never_worse_on_random_profiles, .timeout = 120)
{
	struct rng r;
	uint32_t k, n, gpus;
	char what[32];

	rng_seed(&r, 2024);
	for (k = 0; k < 300; k++) {
		struct plan_profile *pf;

		n = 2 + (uint32_t)(rng_next(&r) % 40);
		gpus = 1 + (uint32_t)(rng_next(&r) % 4);
		pf = random_profile(&r, n, gpus);
		snprintf(what, sizeof(what), "random profile %u", k);
		check_dominance(pf, gpus, what);
		plan_profile_destroy(pf);
	}
}

Test(dprt, never_worse_on_zoo_models, .timeout = 120)
{
	size_t m;
	uint32_t n;

	for (m = 0; m < ARRAY_SIZE(paper_models); m++) {
		struct plan_profile *pf = zoo_profile(paper_models[m], 4);

		for (n = 1; n <= 4; n += n == 1 ? 1 : 2)
			check_dominance(pf, n, paper_models[m]);
		plan_profile_destroy(pf);
	}
}

/* On 4 GPUs the dprt plan of a load-bound model beats DeepPlan's equal
 * split clearly. */
Test(dprt, better_than_equal_split)
{
	size_t m;

	for (m = 0; m < ARRAY_SIZE(paper_models); m++) {
		struct plan_profile *pf = zoo_profile(paper_models[m], 4);
		double dprt = total_of(pf, PLAN_DPRT, 4), v1 = total_of(pf, PLAN_DEEPPLAN_V1, 4);

		if (strncmp(paper_models[m], "gpt2", 4)) /* GPT-2: compute-bound */
			cr_expect_lt(dprt, 0.95 * v1, "%s: dprt %.0f, deepplan-v1 %.0f",
				     paper_models[m], dprt, v1);
		plan_profile_destroy(pf);
	}
}

/* When the target's link keeps up with the exec stream, dprt lends no
 * helper link (equal totals prefer the target's link) and predicts what
 * pipelining does; the first layer waits for its own copy only. */
Test(dprt, no_helpers_when_they_do_not_help)
{
	const struct tl ls[] = {{10, 10, 100, 500},
				{10, 10, 100, 500},
				{10, 10, 100, 500},
				{10, 10, 100, 500},
				{10, 10, 100, 500}};
	struct plan_profile *pf = mk_profile(ls, 5, 4);
	struct plan *p = build(pf, PLAN_DPRT, 4);
	uint32_t i;

	cr_expect_eq(p->width, 1);
	for (i = 0; i < 5; i++)
		cr_expect_eq(p->rows[i].place, PLAN_LOAD);
	cr_expect_float_eq(p->total_ns, 510, 1e-9);
	cr_expect_float_eq(p->total_ns, total_of(pf, PLAN_PIPELINE, 4), 1e-9);
	plan_destroy(p);
	plan_profile_destroy(pf);
}

/* When loading dominates, dprt spreads the bytes over every link, and the
 * layers needed first (here: all equal) come over the target's link. */
Test(dprt, spreads_load_bound_models)
{
	const struct tl ls[] = {{100, 100, 1, 1000}, {100, 100, 1, 1000}, {100, 100, 1, 1000},
				{100, 100, 1, 1000}, {100, 100, 1, 1000}, {100, 100, 1, 1000},
				{100, 100, 1, 1000}, {100, 100, 1, 1000}};
	struct plan_profile *pf = mk_profile(ls, 8, 4);
	struct plan *p;
	struct plan_stats st;

	pf->link.peer_bw = 1e12; /* 0.1 ns per layer */
	p = build(pf, PLAN_DPRT, 4);
	plan_get_stats(p, &st);
	cr_expect_eq(p->width, 4);
	cr_expect_eq(st.link_layers[0], 2);
	cr_expect_eq(p->rows[0].link, 0);
	/* two rounds of 100 ns copies on every link; the four layers of the
	 * second round arrive at 200 and run one after the other */
	cr_expect_float_eq(p->total_ns, 204, 1e-9, "total %f", p->total_ns);
	plan_destroy(p);
	plan_profile_destroy(pf);
}

/* Like the paper's result: the transformers' word embedding goes to DHA,
 * the ResNets keep almost every byte LOAD. */
Test(dprt, paper_like_dha_choices)
{
	size_t m;

	for (m = 0; m < ARRAY_SIZE(paper_models); m++) {
		struct plan_profile *pf = zoo_profile(paper_models[m], 1);
		struct plan *p = build(pf, PLAN_DPRT, 1);
		struct plan_stats st;
		double frac;

		plan_get_stats(p, &st);
		frac = (double)st.dha_bytes / (double)st.total_bytes;
		if (paper_models[m][0] == 'r' && paper_models[m][1] == 'e')
			cr_expect_lt(frac, 0.05, "%s: %.1f%% DHA", paper_models[m], 100 * frac);
		else
			cr_expect_eq(p->rows[0].place, PLAN_DHA, "%s: word embedding LOAD",
				     paper_models[m]);
		plan_destroy(p);
		plan_profile_destroy(pf);
	}
}

Test(dprt, deterministic)
{
	struct plan_profile *pf = zoo_profile("bert-tiny", 3);
	struct plan *a = build(pf, PLAN_DPRT, 3), *b = build(pf, PLAN_DPRT, 3);

	cr_expect_eq(memcmp(a->rows, b->rows, pf->n_layers * sizeof(*a->rows)), 0);
	plan_destroy(a);
	plan_destroy(b);
	plan_profile_destroy(pf);
}

/* ------------------------------------------------------------- modes */

static bool any_dha(const struct plan *p)
{
	uint32_t i;

	for (i = 0; i < p->prof.n_layers; i++)
		if (p->rows[i].place == PLAN_DHA)
			return true;
	return false;
}

Test(modes, follow_their_rules)
{
	struct plan_profile *pf = zoo_profile("bert-base", 4);
	struct plan *p;
	uint32_t i;

	p = build(pf, PLAN_PIPELINE, 4);
	cr_expect(!any_dha(p) && p->width == 1);
	for (i = 0; i < pf->n_layers; i++)
		cr_expect_eq(p->rows[i].order, i);
	plan_destroy(p);
	p = build(pf, PLAN_DEMAND, 4);
	cr_expect(!any_dha(p) && p->width == 1);
	cr_expect_geq(p->rows[0].start_ns, p->rows[pf->n_layers - 1].arrival_ns);
	plan_destroy(p);
	p = build(pf, PLAN_PT, 4);
	cr_expect(!any_dha(p) && p->width > 1);
	plan_destroy(p);
	p = build(pf, PLAN_DEEPPLAN, 4);
	cr_expect(any_dha(p) && p->width == 1);
	plan_destroy(p);
	p = build(pf, PLAN_DEEPPLAN_V1, 4);
	cr_expect_eq(p->width, 4);
	plan_destroy(p);
	p = build(pf, PLAN_DPRT, 2);
	cr_expect_eq(p->prof.link.n_gpus, 2);
	cr_expect_eq(p->prof.link.agg_bw[2], 0);
	plan_destroy(p);
	plan_profile_destroy(pf);
}

Test(modes, names)
{
	int m;

	for (m = 0; m < PLAN_MODE_COUNT; m++)
		cr_expect_eq(plan_mode_parse(plan_mode_name((enum plan_mode)m)), m);
	cr_expect_eq(plan_mode_parse("pt+dha"), PLAN_PT_DHA);
	cr_expect_eq(plan_mode_parse("fast"), -1);
}

Test(modes, refuses_more_gpus_than_profiled)
{
	struct plan_profile *pf = zoo_profile("resnet-tiny", 2);
	struct plan *p = NULL;

	cr_expect_eq(plan_build(pf, PLAN_DPRT, 3, &p), -EINVAL);
	cr_expect_null(p);
	cr_expect_neq(strstr(err_msg(-EINVAL), "2 GPUs"), NULL, "%s", err_msg(-EINVAL));
	cr_expect_eq(plan_build(pf, PLAN_DPRT, 0, &p), -EINVAL);
	plan_profile_destroy(pf);
}

Test(modes, optimize_refuses_bad_start)
{
	struct plan_profile *pf = zoo_profile("gpt2-tiny", 2);
	uint8_t *asg = calloc(pf->n_layers, 1);
	double t;

	asg[1] = D;
	cr_expect_eq(plan_optimize(pf, 2, false, asg, &t), -EINVAL);
	asg[1] = 2;
	cr_expect_eq(plan_optimize(pf, 2, true, asg, &t), -EINVAL);
	asg[1] = 1;
	cr_expect_eq(plan_optimize(pf, 2, true, asg, &t), 0);
	free(asg);
	plan_profile_destroy(pf);
}

/* -------------------------------------------------- synthetic profile */

Test(synthetic, follows_the_package)
{
	struct plan_profile *pf;
	struct graph *g;
	uint32_t l;

	cr_assert_eq(zoo_build("bert-base", DT_F32, &g), 0);
	cr_assert_eq(plan_profile_synthetic(g, 99, 4, &pf), 0);
	cr_expect_eq(pf->flags, PLAN_F_SYNTHETIC);
	cr_expect_neq(strstr(pf->gpu, "synthetic"), NULL);
	cr_expect_eq(plan_profile_match(pf, "p", 99, g), 0);
	cr_expect_eq(plan_profile_validate(pf, "p"), 0);
	for (l = 0; l < g->n_layers; l++) {
		cr_expect_eq(pf->layers[l].bytes, g->layers[l].nbytes);
		cr_expect_gt(pf->layers[l].load_ns, 5000);
		cr_expect_geq(pf->layers[l].dha_ns, pf->layers[l].exec_ns);
	}
	/* word embedding: 93.8 MB at 54.7 GB/s plus 5 us; its DHA reads only
	 * 384 rows */
	cr_expect_float_eq((double)pf->layers[0].load_ns, 5000 + 93763584 / 54.7, 1);
	cr_expect_lt(pf->layers[0].dha_ns, 100000);
	/* the first qkv GEMM (1.36 GFLOP) and the attention after it (0.45
	 * GFLOP) at 19 TFLOP/s, two kernels of 2 us: about 99 us */
	cr_expect_float_eq((double)pf->layers[4].exec_ns,
			   (2 * 384.0 * 768 * 2304 + 4 * 384.0 * 384 * 768) / 19e3 + 4000, 1000);
	plan_profile_destroy(pf);
	cr_expect_eq(plan_profile_synthetic(g, 99, 9, &pf), -EINVAL);
	graph_destroy(g);
}
