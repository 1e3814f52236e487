/* SPDX-License-Identifier: MIT */
/* Tests of src/base/knobs.c: parsing through a stand-in environment,
 * defaults, invalid values (warned and defaulted), the --help text. */
#include "base/base.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The stand-in environment: NULL-terminated name, value pairs. */
static const char *const *env;

static const char *fake_get(const char *name)
{
	size_t i;

	for (i = 0; env && env[i]; i += 2)
		if (!strcmp(env[i], name))
			return env[i + 1];
	return NULL;
}

static int parse(const char *const *vars, struct dprt_knobs *k)
{
	env = vars;
	memset(k, 0x5a, sizeof(*k)); /* every field must be written */
	return knobs_parse(k, fake_get);
}

static void assert_defaults(const struct dprt_knobs *k)
{
	cr_assert(k->cuda_graphs && k->cuda_lt && k->cuda_lt_gelu && k->cuda_flash);
	cr_assert(k->cold_graph);
	cr_assert(!k->cudnn_find && !k->cold_promote && !k->pt_direct);
	cr_assert_eq(k->cuda_attn, 0);
	cr_assert_eq(k->cuda_pool_bytes, 0);
	cr_assert_eq(k->cuda_arena_bytes, 0);
	cr_assert_str_empty(k->plan_repo);
	cr_assert_str_empty(k->cache);
}

Test(knobs, unset_and_empty_take_the_defaults)
{
	static const char *const empty[] = {"DPRT_CUDA_GRAPHS",
					    "",
					    "DPRT_CUDNN_FIND",
					    "",
					    "DPRT_CUDA_ATTN",
					    "",
					    "DPRT_CUDA_POOL_MB",
					    "",
					    "PLAN_REPO",
					    "",
					    NULL};
	struct dprt_knobs k;

	cr_assert_eq(parse(NULL, &k), 0);
	assert_defaults(&k);
	cr_assert_eq(parse(empty, &k), 0);
	assert_defaults(&k);
}

Test(knobs, valid_values)
{
	static const char *const vars[] = {"DPRT_CUDA_GRAPHS",
					   "0",
					   "DPRT_CUDA_LT",
					   "0",
					   "DPRT_CUDA_LT_GELU",
					   "0",
					   "DPRT_CUDA_FLASH",
					   "0",
					   "DPRT_CUDA_ATTN",
					   "unfused",
					   "DPRT_CUDNN_FIND",
					   "1",
					   "DPRT_COLD_GRAPH",
					   "0",
					   "DPRT_COLD_PROMOTE",
					   "1",
					   "DPRT_PT_DIRECT",
					   "1",
					   "DPRT_CUDA_POOL_MB",
					   "1536",
					   "DPRT_CUDA_ARENA_MB",
					   "64",
					   "PLAN_REPO",
					   "/srv/plans",
					   "DPRT_CACHE",
					   "/var/cache/x",
					   NULL};
	struct dprt_knobs k;

	cr_assert_eq(parse(vars, &k), 0);
	cr_assert(!k.cuda_graphs && !k.cuda_lt && !k.cuda_lt_gelu && !k.cuda_flash);
	cr_assert(!k.cold_graph && k.cudnn_find && k.cold_promote && k.pt_direct);
	cr_assert_eq(k.cuda_attn, -1);
	cr_assert_eq(k.cuda_pool_bytes, 1536ull << 20);
	cr_assert_eq(k.cuda_arena_bytes, 64ull << 20);
	cr_assert_str_eq(k.plan_repo, "/srv/plans");
	cr_assert_str_eq(k.cache, "/var/cache/x");
}

Test(knobs, attention_widths)
{
	static const char *const w[] = {"1", "2", "4"};
	const char *vars[] = {"DPRT_CUDA_ATTN", NULL, NULL};
	struct dprt_knobs k;
	size_t i;

	for (i = 0; i < 3; i++) {
		vars[1] = w[i];
		cr_assert_eq(parse(vars, &k), 0);
		cr_assert_eq(k.cuda_attn, w[i][0] - '0');
	}
}

/* Each bad value: warned once with the variable and the default, and the
 * default taken, the good ones beside it kept. */
Test(knobs, invalid_values_warn_and_default, .init = cr_redirect_stderr)
{
	static const char *const vars[] = {"DPRT_CUDA_GRAPHS",
					   "yes",
					   "DPRT_CUDNN_FIND",
					   "2",
					   "DPRT_CUDA_ATTN",
					   "3",
					   "DPRT_CUDA_POOL_MB",
					   "12abc",
					   "DPRT_CUDA_ARENA_MB",
					   "-5",
					   "DPRT_CUDA_LT",
					   "0",
					   "DPRT_COLD_PROMOTE",
					   "1",
					   NULL};
	char out[8192];
	struct dprt_knobs k;
	size_t n;

	log_set_level(LOG_WARN);
	cr_assert_eq(parse(vars, &k), 5);
	cr_assert(k.cuda_graphs && !k.cudnn_find && !k.cuda_lt && k.cold_promote);
	cr_assert_eq(k.cuda_attn, 0);
	cr_assert_eq(k.cuda_pool_bytes, 0);
	cr_assert_eq(k.cuda_arena_bytes, 0);
	fflush(stderr);
	n = fread(out, 1, sizeof(out) - 1, cr_get_redirected_stderr());
	out[n] = 0;
	cr_assert_not_null(strstr(out, "DPRT_CUDA_GRAPHS: invalid value 'yes' ignored, using the "
				       "default (1)"),
			   "%s", out);
	cr_assert_not_null(strstr(out, "DPRT_CUDNN_FIND: invalid value '2'"), "%s", out);
	cr_assert_not_null(strstr(out, "DPRT_CUDA_ATTN: invalid value '3'"), "%s", out);
	cr_assert_not_null(strstr(out, "DPRT_CUDA_POOL_MB: invalid value '12abc'"), "%s", out);
	cr_assert_not_null(strstr(out, "DPRT_CUDA_ARENA_MB: invalid value '-5'"), "%s", out);
	cr_assert_null(strstr(out, "DPRT_CUDA_LT:"), "%s", out);
	log_set_level(LOG_INFO);
}

Test(knobs, overflow_and_long_paths_are_invalid)
{
	static char path[KNOBS_PATH_LEN + 1];
	const char *vars[] = {"DPRT_CUDA_POOL_MB", "99999999999999999999", "PLAN_REPO", path, NULL};
	struct dprt_knobs k;

	memset(path, 'a', KNOBS_PATH_LEN);
	log_set_level(LOG_ERROR);
	cr_assert_eq(parse(vars, &k), 2);
	log_set_level(LOG_INFO);
	cr_assert_eq(k.cuda_pool_bytes, 0);
	cr_assert_str_empty(k.plan_repo);
	path[KNOBS_PATH_LEN - 1] = 0; /* the longest that fits */
	cr_assert_eq(parse(vars + 2, &k), 0);
	cr_assert_eq(strlen(k.plan_repo), KNOBS_PATH_LEN - 1);
}

/* knobs_get: the process environment, parsed once; knobs_reload re-reads. */
Test(knobs, get_reads_the_environment_once)
{
	const struct dprt_knobs *k;

	setenv("DPRT_CUDA_ARENA_MB", "3", 1);
	k = knobs_get();
	cr_assert_eq(k->cuda_arena_bytes, 3ull << 20);
	setenv("DPRT_CUDA_ARENA_MB", "5", 1);
	cr_assert_eq(knobs_get(), k);
	cr_assert_eq(k->cuda_arena_bytes, 3ull << 20, "read again without knobs_reload");
	knobs_reload();
	cr_assert_eq(k->cuda_arena_bytes, 5ull << 20);
	unsetenv("DPRT_CUDA_ARENA_MB");
	knobs_reload();
}

Test(knobs, help_lists_every_variable_with_its_default)
{
	static const char *const names[] = {
		"DPRT_CUDA_GRAPHS", "DPRT_CUDA_LT",	 "DPRT_CUDA_LT_GELU",  "DPRT_CUDA_FLASH",
		"DPRT_CUDA_ATTN",   "DPRT_CUDNN_FIND",	 "DPRT_COLD_GRAPH",    "DPRT_COLD_PROMOTE",
		"DPRT_PT_DIRECT",   "DPRT_CUDA_POOL_MB", "DPRT_CUDA_ARENA_MB", "PLAN_REPO",
		"DPRT_CACHE"};
	char out[16384], want[64], *p, *nl;
	FILE *f = tmpfile();
	size_t i, n;

	cr_assert_not_null(f);
	knobs_help(f);
	rewind(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = 0;
	fclose(f);
	cr_assert_eq(strncmp(out, "Environment:\n", 13), 0, "%s", out);
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(want, sizeof(want), "\n  %-26s (default ", names[i]);
		cr_assert_not_null(strstr(out, want), "%s missing in:\n%s", names[i], out);
	}
	cr_assert_not_null(strstr(out, "  DPRT_CUDA_GRAPHS           (default 1)\n"), "%s", out);
	cr_assert_not_null(strstr(out, "  DPRT_PT_DIRECT             (default 0)\n"), "%s", out);
	for (p = out; (nl = strchr(p, '\n')); p = nl + 1) /* as narrow as the usage text */
		cr_assert_leq(nl - p, 80, "too wide: %.*s", (int)(nl - p), p);
}
