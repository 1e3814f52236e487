/* SPDX-License-Identifier: MIT */
/* --gpus and --cpus parsing, default core choice. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "helpers.h"
#include "plan/plan.h"
#include "sched/internal.h"

Test(parse, cpu_devices)
{
	struct sched_dev d[SCHED_MAX_WORKERS];
	uint32_t n = 0;

	cr_assert_eq(sched_parse_devices("cpu", d, SCHED_MAX_WORKERS, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(d[0].kind, SCHED_DEV_CPU);
	cr_assert_eq(sched_parse_devices("cpu:4", d, SCHED_MAX_WORKERS, &n), 0);
	cr_assert_eq(n, 4);
	cr_assert_eq(d[3].kind, SCHED_DEV_CPU);
	cr_assert_eq(d[3].id, 3);
}

Test(parse, gpu_devices)
{
	struct sched_dev d[SCHED_MAX_WORKERS];
	uint32_t n = 0;

	cr_assert_eq(sched_parse_devices("0-3", d, SCHED_MAX_WORKERS, &n), 0);
	cr_assert_eq(n, 4);
	cr_assert_eq(d[0].kind, SCHED_DEV_GPU);
	cr_assert_eq(d[2].id, 2);
	cr_assert_eq(sched_parse_devices("0,2", d, SCHED_MAX_WORKERS, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(d[1].id, 2);
	cr_assert_eq(sched_parse_devices("0-1,3", d, SCHED_MAX_WORKERS, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(d[2].id, 3);
}

Test(parse, bad_devices)
{
	static const char *const bad[] = {"",	 "cpu:", "cpu:0", "cpu:65", "cpux", "gpu", "0-",
					  "3-1", "1,1",	 "2,1",	  "0,,1",   "0,",   "-1",  "1x"};
	struct sched_dev d[SCHED_MAX_WORKERS];
	uint32_t n;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		int ret = sched_parse_devices(bad[i], d, SCHED_MAX_WORKERS, &n);

		cr_assert_eq(ret, DPRT_EUSAGE, "'%s' accepted", bad[i]);
		cr_assert(strstr(err_msg(ret), "--gpus"), "%s", err_msg(ret));
	}
	cr_assert_eq(sched_parse_devices("cpu:3", d, 2, &n), DPRT_EUSAGE);
}

Test(parse, cpus)
{
	int c[SCHED_MAX_WORKERS];
	uint32_t n = 0;

	cr_assert_eq(sched_parse_cpus("2,3", c, SCHED_MAX_WORKERS, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(c[1], 3);
	cr_assert_eq(sched_parse_cpus("4-7", c, SCHED_MAX_WORKERS, &n), 0);
	cr_assert_eq(n, 4);
	cr_assert_eq(c[0], 4);
	cr_assert_eq(c[3], 7);
	cr_assert_eq(sched_parse_cpus("a", c, SCHED_MAX_WORKERS, &n), DPRT_EUSAGE);
	cr_assert_eq(sched_parse_cpus("3,2", c, SCHED_MAX_WORKERS, &n), DPRT_EUSAGE);
}

Test(parse, default_cpus)
{
	int c[8];

	/* Enough cores: the last ones, core 0 skipped. */
	sched_default_cpus(4, 16, c);
	cr_assert_eq(c[0], 12);
	cr_assert_eq(c[3], 15);
	sched_default_cpus(1, 2, c);
	cr_assert_eq(c[0], 1);
	/* Fewer cores than workers: shared round-robin. */
	sched_default_cpus(4, 2, c);
	cr_assert_eq(c[0], 0);
	cr_assert_eq(c[1], 1);
	cr_assert_eq(c[2], 0);
	cr_assert_eq(c[3], 1);
}

/* Asking for GPUs where there are none (no CUDA in the build, or no driver
 * or GPU on the machine: CI) fails cleanly with a message that says why. */
Test(parse, gpu_without_gpus)
{
	char dir[256];
	struct sched_opts o;
	struct sched *s = NULL;
	int ret;

	trepo_make(dir, sizeof(dir));
	o = topts(dir, "0-1");
	ret = sched_create(&o, &s);
	cr_assert_eq(ret, DPRT_ENODEV);
	cr_assert(strstr(err_msg(ret), "without CUDA") || strstr(err_msg(ret), "no such GPU"), "%s",
		  err_msg(ret));
	cr_assert_null(s);
	trepo_rm(dir);
}

/* --cold-mode: the default resolves per device (dprt's planner on GPUs),
 * pt modes are refused with a reason. */
Test(parse, cold_modes)
{
	static const char *const good[] = {"load",	  "auto",     "dprt",  "deepplan",
					   "deepplan-v1", "pipeline", "demand"};
	int mode = 7;
	size_t i;

	cr_assert_eq(sched_cold_mode_parse(NULL, &mode), 0);
	cr_assert_eq(mode, -3, "NULL: the default");
	cr_assert_eq(sched_cold_mode_resolve(mode, &cpu_backend, true), PLAN_DPRT);
	cr_assert_eq(sched_cold_mode_resolve(mode, &cpu_backend, false), -1, "CPU: whole");
	cr_assert_eq(sched_cold_mode_resolve(PLAN_DEEPPLAN, &cpu_backend, false), PLAN_DEEPPLAN);
	cr_assert_eq(sched_cold_mode_resolve(-1, &cpu_backend, true), PLAN_DEMAND,
		     "load on a GPU: the engine's whole load (demand)");
	cr_assert_eq(sched_cold_mode_resolve(-1, &cpu_backend, false), -1, "load on CPU: whole");
	cr_assert_eq(sched_cold_mode_parse("load", &mode), 0);
	cr_assert_eq(mode, -1);
	cr_assert_eq(sched_cold_mode_parse("auto", &mode), 0);
	cr_assert_eq(mode, -2);
	for (i = 2; i < sizeof(good) / sizeof(good[0]); i++) {
		cr_assert_eq(sched_cold_mode_parse(good[i], &mode), 0, "%s", good[i]);
		cr_assert(mode >= 0, "%s: a plan mode", good[i]);
	}
	/* parallel transmission serves (helpers' links, mem/link.h) */
	cr_assert_eq(sched_cold_mode_parse("pt", &mode), 0, "%s", err_msg(0));
	cr_assert_eq(mode, PLAN_PT);
	cr_assert_eq(sched_cold_mode_resolve(mode, &cpu_backend, false), PLAN_PT);
	cr_assert_eq(sched_cold_mode_parse("pt+dha", &mode), 0, "%s", err_msg(0));
	cr_assert_eq(mode, PLAN_PT_DHA);
	cr_assert_eq(sched_cold_mode_parse("fast", &mode), -EINVAL);
	cr_assert(strstr(err_msg(0), "'fast'"), "%s", err_msg(0));
	cr_assert(strstr(err_msg(0), "pt, pt+dha"), "%s", err_msg(0));
}
