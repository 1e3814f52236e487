/* SPDX-License-Identifier: MIT */
/* The cold-start simulator on small cases computed by hand (see plan.h for
 * the model; every expected number is worked out in the comments). */
#include "helpers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define D PLAN_ASG_DHA
#define EPS 1e-6

static struct plan_sim sim;

static void setup(void)
{
	cr_assert_eq(plan_sim_init(&sim, 64), 0);
}

static void teardown(void)
{
	plan_sim_fini(&sim);
}

TestSuite(sim, .init = setup, .fini = teardown);

static void run(const struct plan_profile *pf, uint32_t links, const uint8_t *asg,
		const uint32_t *order, bool demand)
{
	int ret = plan_sim_run(&sim, pf, links, asg, order, demand);

	cr_assert_eq(ret, 0, "plan_sim_run: %d", ret);
}

static void expect(uint32_t i, double arrival, double start, double end)
{
	cr_expect_float_eq(sim.arrival[i], arrival, EPS, "layer %u arrival %f, want %f", i,
			   sim.arrival[i], arrival);
	cr_expect_float_eq(sim.start[i], start, EPS, "layer %u start %f, want %f", i, sim.start[i],
			   start);
	cr_expect_float_eq(sim.end[i], end, EPS, "layer %u end %f, want %f", i, sim.end[i], end);
}

/* Three layers (load, exec): (10, 5), (20, 5), (5, 30) on one link.
 * Arrivals 10, 30, 35. Exec: 10..15, 30..35 (stall 15), 35..65.
 * Stalls 10 + 15 + 0 = 25. */
Test(sim, pipeline_stalls)
{
	const struct tl ls[] = {{10, 10, 5, 50}, {20, 20, 5, 50}, {5, 5, 30, 60}};
	struct plan_profile *pf = mk_profile(ls, 3, 1);
	const uint8_t asg[] = {0, 0, 0};

	run(pf, 1, asg, NULL, false);
	expect(0, 10, 10, 15);
	expect(1, 30, 30, 35);
	expect(2, 35, 35, 65);
	cr_expect_float_eq(sim.total_ns, 65, EPS);
	cr_expect_float_eq(sim.stall_ns, 25, EPS);
	cr_expect_float_eq(sim.links_done_ns, 35, EPS);
	plan_profile_destroy(pf);
}

/* Layer 1 by DHA (12 ns): the link copies layers 0 and 2 (arrive 10, 15).
 * Exec: 10..15, DHA 15..27 without waiting, 27..57. Stall 10. */
Test(sim, dha_never_waits)
{
	const struct tl ls[] = {{10, 10, 5, 50}, {20, 20, 5, 12}, {5, 5, 30, 60}};
	struct plan_profile *pf = mk_profile(ls, 3, 1);
	const uint8_t asg[] = {0, D, 0};

	run(pf, 1, asg, NULL, false);
	expect(0, 10, 10, 15);
	expect(1, 0, 15, 27);
	expect(2, 15, 27, 57);
	cr_expect_float_eq(sim.total_ns, 57, EPS);
	cr_expect_float_eq(sim.stall_ns, 10, EPS);
	plan_profile_destroy(pf);
}

/* A first layer by DHA starts at 0. */
Test(sim, dha_first)
{
	const struct tl ls[] = {{100, 100, 5, 7}, {10, 10, 5, 50}};
	struct plan_profile *pf = mk_profile(ls, 2, 1);
	const uint8_t asg[] = {D, 0};

	run(pf, 1, asg, NULL, false);
	expect(0, 0, 0, 7);
	expect(1, 10, 10, 15);
	cr_expect_float_eq(sim.stall_ns, 3, EPS);
	plan_profile_destroy(pf);
}

/*
 * DHA reads share the target's link with its copies (both at 0.5).
 * Layers: 0 (load 10, exec 5), 1 DHA (exec 2, dha 12: reads 10, then
 * computes 2), 2 (load 40, exec 1). Link: layer 0 over 0..10; layer 2 from
 * 10. Exec: layer 0 10..15. At 15 layer 1 reads at 0.5 while the copy of
 * layer 2 (35 left) slows to 0.5: the reads end at 35, the copy has 25
 * left; it then runs alone and ends at 60. Layer 1 computes 35..37.
 * Layer 2 runs 60..61. Stalls 10 + 23.
 */
Test(sim, dha_shares_the_link)
{
	const struct tl ls[] = {{10, 10, 5, 50}, {20, 20, 2, 12}, {40, 40, 1, 60}};
	struct plan_profile *pf = mk_profile(ls, 3, 1);
	const uint8_t asg[] = {0, D, 0};

	pf->link.dha_copy_share = 0.5;
	pf->link.dha_read_share = 0.5;
	run(pf, 1, asg, NULL, false);
	expect(0, 10, 10, 15);
	expect(1, 0, 15, 37);
	expect(2, 60, 60, 61);
	cr_expect_float_eq(sim.stall_ns, 33, EPS);
	/* without interference: layer 2 arrives at 50, layer 1 takes 12 */
	pf->link.dha_copy_share = 1;
	pf->link.dha_read_share = 1;
	run(pf, 1, asg, NULL, false);
	expect(1, 0, 15, 27);
	expect(2, 50, 50, 51);
	plan_profile_destroy(pf);
}

/* Reads at full speed once the target's link is done: layer 0 (load 10),
 * then DHA layer 1 (exec 0, dha 30) from 11: no copy left, 11..41. */
Test(sim, dha_after_link_done)
{
	const struct tl ls[] = {{10, 10, 1, 50}, {20, 20, 0, 30}};
	struct plan_profile *pf = mk_profile(ls, 2, 1);
	const uint8_t asg[] = {0, D};

	pf->link.dha_copy_share = 0.5;
	pf->link.dha_read_share = 0.25;
	run(pf, 1, asg, NULL, false);
	expect(1, 0, 11, 41);
	plan_profile_destroy(pf);
}

/*
 * Two links, a peer copy after the helper's H2D (1 ns per byte, latency 3).
 * Layer 0 on the target: arrives 10. Layer 1 (10 bytes) on the helper: H2D
 * done 10, peer 10..23. Layer 2 (4 bytes) on the helper: H2D done 14, waits
 * for the ingress until 23, peer 23..30. Exec 10..11, 23..24, 30..31.
 */
Test(sim, helper_and_peer_copy)
{
	const struct tl ls[] = {{10, 10, 1, 50}, {10, 10, 1, 50}, {4, 4, 1, 50}};
	struct plan_profile *pf = mk_profile(ls, 3, 2);
	const uint8_t asg[] = {0, 1, 1};

	pf->link.peer_lat_ns = 3;
	run(pf, 2, asg, NULL, false);
	expect(0, 10, 10, 11);
	expect(1, 23, 23, 24);
	expect(2, 30, 30, 31);
	cr_expect_float_eq(sim.total_ns, 31, EPS);
	cr_expect_float_eq(sim.links_done_ns, 30, EPS);
	plan_profile_destroy(pf);
}

/* Two helpers finish their H2D copies together at 10: their peer copies
 * into the target run one after the other, lower layer first: 10..20 and
 * 20..30. */
Test(sim, peer_copies_serialize)
{
	const struct tl ls[] = {{10, 10, 1, 50}, {10, 10, 1, 50}};
	struct plan_profile *pf = mk_profile(ls, 2, 3);
	const uint8_t asg[] = {2, 1};

	run(pf, 3, asg, NULL, false);
	expect(0, 20, 20, 21);
	expect(1, 30, 30, 31);
	plan_profile_destroy(pf);
}

/*
 * Two links that together get only one link's bandwidth (share 0.5).
 * Layer 0 (load 10) on the target, layer 1 (load 30) on the helper, a
 * free peer copy. Both at half speed until layer 0 is done at 20; layer 1
 * then has 20 left at full speed: done at 40.
 */
Test(sim, bandwidth_sharing)
{
	const struct tl ls[] = {{10, 10, 1, 50}, {30, 30, 1, 50}};
	struct plan_profile *pf = mk_profile(ls, 2, 2);
	const uint8_t asg[] = {0, 1};

	pf->link.agg_bw[1] = 1e9;
	pf->link.peer_bw = 1e18;
	cr_expect_float_eq(plan_link_share(&pf->link, 2), 0.5, EPS);
	cr_expect_float_eq(plan_link_share(&pf->link, 1), 1, EPS);
	run(pf, 2, asg, NULL, false);
	expect(0, 20, 20, 21);
	expect(1, 40, 40, 41);
	plan_profile_destroy(pf);
}

/* The fixed part of a transfer (4 ns) is not shared: both transfers take
 * 4 + 6 / 0.5 = 16. */
Test(sim, overhead_not_shared)
{
	const struct tl ls[] = {{10, 10, 1, 50}, {10, 10, 1, 50}};
	struct plan_profile *pf = mk_profile(ls, 2, 2);
	const uint8_t asg[] = {0, 1};

	pf->link.agg_bw[1] = 1e9;
	pf->link.peer_bw = 1e18;
	pf->link.xfer_ovh_ns = 4;
	run(pf, 2, asg, NULL, false);
	expect(0, 16, 16, 17);
	cr_expect_float_eq(sim.arrival[1], 16, EPS);
	plan_profile_destroy(pf);
}

/* A rate change during a transfer's fixed part: layer 0 (load 2, all of
 * it fixed) ends at 2 while layer 1 (fixed 4, then 6 of bandwidth) is still
 * in its fixed part, so layer 1 never shares: 4 + 6 = 10. */
Test(sim, retime_in_fixed_part)
{
	const struct tl ls[] = {{2, 2, 1, 50}, {10, 10, 1, 50}};
	struct plan_profile *pf = mk_profile(ls, 2, 2);
	const uint8_t asg[] = {0, 1};

	pf->link.agg_bw[1] = 1e9;
	pf->link.peer_bw = 1e18;
	pf->link.xfer_ovh_ns = 4;
	run(pf, 2, asg, NULL, false);
	expect(0, 2, 2, 3);
	cr_expect_float_eq(sim.arrival[1], 10, EPS, "arrival %f", sim.arrival[1]);
	plan_profile_destroy(pf);
}

/* Aggregate bandwidth above k links alone does not speed a link up. */
Test(sim, share_capped_at_one)
{
	const struct tl ls[] = {{10, 10, 1, 50}};
	struct plan_profile *pf = mk_profile(ls, 1, 3);

	pf->link.agg_bw[2] = 9e9;
	cr_expect_float_eq(plan_link_share(&pf->link, 3), 1, EPS);
	pf->link.agg_bw[2] = 1.5e9;
	cr_expect_float_eq(plan_link_share(&pf->link, 3), 0.5, EPS);
	plan_profile_destroy(pf);
}

/* Demand: run only after every layer arrived (10 + 20 = 30). */
Test(sim, demand_waits_for_all)
{
	const struct tl ls[] = {{10, 10, 5, 50}, {20, 20, 5, 50}};
	struct plan_profile *pf = mk_profile(ls, 2, 1);
	const uint8_t asg[] = {0, 0};

	run(pf, 1, asg, NULL, true);
	expect(0, 10, 30, 35);
	expect(1, 30, 35, 40);
	cr_expect_float_eq(sim.stall_ns, 30, EPS);
	plan_profile_destroy(pf);
}

/* An explicit queue order: layer 1 copied first (arrives 20), layer 0
 * second (arrives 30). */
Test(sim, queue_order)
{
	const struct tl ls[] = {{10, 10, 5, 50}, {20, 20, 5, 50}};
	struct plan_profile *pf = mk_profile(ls, 2, 1);
	const uint8_t asg[] = {0, 0};
	const uint32_t order[] = {1, 0};

	run(pf, 1, asg, order, false);
	expect(0, 30, 30, 35);
	expect(1, 20, 35, 40);
	plan_profile_destroy(pf);
}

Test(sim, refuses_bad_assignments)
{
	const struct tl ls[] = {{10, 10, 5, 50}, {20, 20, 5, 50}};
	struct plan_profile *pf = mk_profile(ls, 2, 2);
	const uint8_t far[] = {0, 2}, ok[] = {0, 1};
	const uint32_t dup[] = {0, 0}, big[] = {0, 1};
	const uint8_t same[] = {0, 0};

	cr_expect_eq(plan_sim_run(&sim, pf, 2, far, NULL, false), -EINVAL);
	cr_expect_eq(plan_sim_run(&sim, pf, 1, ok, NULL, false), -EINVAL);
	cr_expect_eq(plan_sim_run(&sim, pf, 3, ok, NULL, false), -EINVAL);
	cr_expect_eq(plan_sim_run(&sim, pf, 2, same, dup, false), -EINVAL);
	cr_expect_eq(plan_sim_run(&sim, pf, 2, ok, big, false), -EINVAL);
	cr_expect_eq(plan_sim_run(&sim, pf, 2, ok, dup, false), 0);
	plan_profile_destroy(pf);
}

/* A cutoff stops a run that cannot beat it, and only such a run. */
Test(sim, cutoff)
{
	const struct tl ls[] = {{10, 10, 5, 50}, {20, 20, 5, 50}, {5, 5, 30, 60}};
	struct plan_profile *pf = mk_profile(ls, 3, 1);
	const uint8_t asg[] = {0, 0, 0};

	sim.cutoff = 64.5;
	run(pf, 1, asg, NULL, false);
	cr_expect(isinf(sim.total_ns));
	sim.cutoff = 65;
	run(pf, 1, asg, NULL, false);
	cr_expect_float_eq(sim.total_ns, 65, EPS);
	plan_profile_destroy(pf);
}

/* Same input, same output; every layer starts after its bytes and the
 * previous layer, LOAD layers take exactly their exec time, DHA layers at
 * least their DHA time (random profiles, 1..4 links). */
Test(sim, invariants_on_random_profiles)
{
	struct plan_sim again;
	uint8_t asg[60];
	struct rng r;
	uint32_t k, i, n, links;

	rng_seed(&r, 7);
	cr_assert_eq(plan_sim_init(&again, 60), 0);
	for (k = 0; k < 200; k++) {
		struct plan_profile *pf;

		n = 1 + (uint32_t)(rng_next(&r) % 60);
		links = 1 + (uint32_t)(rng_next(&r) % 4);
		pf = random_profile(&r, n, links);
		for (i = 0; i < n; i++)
			asg[i] = rng_next(&r) % 4 ? (uint8_t)(rng_next(&r) % links) : D;
		run(pf, links, asg, NULL, k % 7 == 0);
		cr_assert_eq(plan_sim_run(&again, pf, links, asg, NULL, k % 7 == 0), 0);
		cr_expect_eq(memcmp(sim.end, again.end, n * sizeof(double)), 0);
		for (i = 0; i < n; i++) {
			double prev = i ? sim.end[i - 1] : 0;
			const struct plan_layer_prof *lp = &pf->layers[i];

			cr_expect_geq(sim.start[i], prev);
			if (asg[i] == D) {
				cr_expect_geq(sim.end[i] - sim.start[i],
					      (double)lp->dha_ns * (1 - 1e-12));
				continue;
			}
			cr_expect_geq(sim.start[i], sim.arrival[i]);
			cr_expect_eq(sim.end[i], sim.start[i] + (double)lp->exec_ns);
			cr_expect_geq(sim.arrival[i], (double)lp->load_ns * (1 - 1e-12));
		}
		cr_expect_eq(sim.total_ns, sim.end[n - 1]);
		plan_profile_destroy(pf);
	}
	plan_sim_fini(&again);
}
