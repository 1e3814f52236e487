/* SPDX-License-Identifier: MIT */
/* Plan and profile files: round trips, refusal of corrupt or foreign
 * files, and the plan repository. */
#define _GNU_SOURCE /* nftw */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Offsets documented at the top of src/plan/file.c. */
#define H_VERSION 8
#define H_CRC 24
#define H_N_LAYERS 28
#define H_N_GPUS 44
#define H_MODE 384
#define H_WIDTH 388
#define HDR 512
#define ROW 176
#define ROW_PLACE 136
#define ROW_LINK 140
#define ROW_ORDER 144

static char dir[64], path[400];
static struct plan_profile *pf;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void setup(void)
{
	struct graph *g;

	strcpy(dir, "/tmp/dprt-plan-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/x.dpp", dir);
	cr_assert_eq(zoo_build("bert-tiny", DT_F32, &g), 0);
	cr_assert_eq(plan_profile_synthetic(g, 0xfeedull, 3, &pf), 0);
	graph_destroy(g);
}

static void teardown(void)
{
	plan_profile_destroy(pf);
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(file, .init = setup, .fini = teardown);

/* ------------------------------------------------------------ bytes */

static uint8_t *slurp(const char *p, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(p, O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	cr_assert_eq(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void spill(const char *p, const uint8_t *b, size_t len)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, b, len), (ssize_t)len);
	close(fd);
}

/* Overwrite one byte in place (no truncation: ext4 flushes a file that
 * is truncated and rewritten, which made these tests slow). */
static void poke(const char *p, size_t off, uint8_t v)
{
	int fd = open(p, O_WRONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, &v, 1, (off_t)off), 1);
	close(fd);
}

static void put32(uint8_t *b, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the CRC after an edit, so only the readers' other checks can
 * refuse the file. */
static void reseal(uint8_t *b, size_t len)
{
	put32(b + H_CRC, 0);
	put32(b + H_CRC, crc32c(0, b, len));
}

static struct plan *build(enum plan_mode m, uint32_t n)
{
	struct plan *p;

	cr_assert_eq(plan_build(pf, m, n, &p), 0, "%s", err_msg(-1));
	return p;
}

static void expect_refused(const char *what, int want)
{
	struct plan *p = (struct plan *)1;
	int ret = plan_read(path, &p);

	cr_expect_eq(ret, want, "%s: got %d (%s)", what, ret, err_msg(ret));
	cr_expect_null(p, "%s", what);
	cr_expect_neq(strstr(err_msg(ret), path), NULL, "%s: message '%s' names no file", what,
		      err_msg(ret));
}

/* ------------------------------------------------------------ plans */

static void expect_same_plan(const struct plan *a, const struct plan *b)
{
	struct plan_profile x = a->prof, y = b->prof;

	cr_expect_eq(a->mode, b->mode);
	cr_expect_eq(a->width, b->width);
	cr_expect_eq(a->total_ns, b->total_ns);
	cr_expect_eq(a->stall_ns, b->stall_ns);
	cr_expect_eq(memcmp(a->rows, b->rows, a->prof.n_layers * sizeof(*a->rows)), 0);
	cr_expect_eq(memcmp(x.layers, y.layers, x.n_layers * sizeof(*x.layers)), 0);
	x.layers = y.layers = NULL;
	cr_expect_eq(memcmp(&x, &y, sizeof(x)), 0);
}

Test(file, plan_round_trip)
{
	int m;

	for (m = 0; m < PLAN_MODE_COUNT; m++) {
		struct plan *p = build((enum plan_mode)m, 3), *q;

		cr_assert_eq(plan_write(path, p), 0, "%s", err_msg(-1));
		cr_assert_eq(plan_read(path, &q), 0, "%s", err_msg(-1));
		expect_same_plan(p, q);
		plan_destroy(p);
		plan_destroy(q);
	}
}

Test(file, plan_truncated_or_extended)
{
	struct plan *p = build(PLAN_DPRT, 3);
	size_t len, cut[] = {0, 5, 8, 31, 100, HDR - 1, HDR, HDR + 1, 0};
	uint8_t *b;
	size_t i;

	cr_assert_eq(plan_write(path, p), 0);
	b = slurp(path, &len);
	cut[ARRAY_SIZE(cut) - 1] = len - 1;
	for (i = 0; i < ARRAY_SIZE(cut); i++) {
		spill(path, b, cut[i]);
		expect_refused("truncated", DPRT_EBADPLAN);
	}
	b = realloc(b, len + 1);
	b[len] = 0;
	spill(path, b, len + 1);
	expect_refused("trailing byte", DPRT_EBADPLAN);
	free(b);
	plan_destroy(p);
}

Test(file, plan_bit_flips)
{
	struct plan *p = build(PLAN_DPRT, 3);
	size_t len, i;
	uint8_t *b;

	cr_assert_eq(plan_write(path, p), 0);
	b = slurp(path, &len);
	for (i = 0; i < len; i += i < HDR ? 1 : 13) {
		struct plan *q = NULL;
		int ret;

		poke(path, i, b[i] ^ (uint8_t)(1u << (i % 8)));
		ret = plan_read(path, &q);
		cr_expect(ret == DPRT_EBADPLAN ||
				  (ret == DPRT_EVERSION && i >= H_VERSION && i < H_VERSION + 4),
			  "flip at %zu: %d %s", i, ret, err_msg(ret));
		cr_expect_null(q);
		poke(path, i, b[i]);
	}
	free(b);
	plan_destroy(p);
}

/* Sealed with a valid CRC, yet wrong: the validation refuses it and says
 * what is wrong. */
static void expect_invalid(const uint8_t *orig, size_t len, size_t off, uint32_t v,
			   const char *words)
{
	uint8_t *b = malloc(len);

	memcpy(b, orig, len);
	put32(b + off, v);
	reseal(b, len);
	spill(path, b, len);
	expect_refused(words, DPRT_EBADPLAN);
	cr_expect_neq(strstr(err_msg(DPRT_EBADPLAN), words), NULL, "'%s' lacks '%s'",
		      err_msg(DPRT_EBADPLAN), words);
	free(b);
}

Test(file, plan_invalid_but_sealed)
{
	struct plan *p = build(PLAN_PT, 3);
	size_t len, row1 = HDR + ROW;
	uint8_t *b;

	cr_assert_eq(plan_write(path, p), 0);
	b = slurp(path, &len);
	expect_invalid(b, len, H_MODE, 77, "unknown mode");
	expect_invalid(b, len, H_WIDTH, 9, "width 9");
	expect_invalid(b, len, H_N_GPUS, 0, "GPUs");
	expect_invalid(b, len, row1 + ROW_PLACE, 1, "DHA in a mode without DHA");
	expect_invalid(b, len, row1 + ROW_PLACE, 5, "unknown placement");
	expect_invalid(b, len, row1 + ROW_LINK, 7, "link out of range");
	expect_invalid(b, len, row1 + ROW_ORDER, 999, "order");
	expect_invalid(b, len, row1 + ROW_PLACE + 1, 0x100, "nonzero reserved");
	expect_invalid(b, len, 500, 1, "nonzero reserved");
	free(b);
	plan_destroy(p);
}

Test(file, plan_version_and_magic)
{
	struct plan *p = build(PLAN_PIPELINE, 1);
	size_t len;
	uint8_t *b;

	cr_assert_eq(plan_write(path, p), 0);
	b = slurp(path, &len);
	put32(b + H_VERSION, 2);
	reseal(b, len);
	spill(path, b, len);
	expect_refused("version 2", DPRT_EVERSION);
	cr_expect_neq(strstr(err_msg(DPRT_EVERSION), "version 2"), NULL);
	cr_assert_eq(plan_profile_write(path, pf), 0);
	expect_refused("a profile read as a plan", DPRT_EBADPLAN);
	cr_expect_neq(strstr(err_msg(DPRT_EBADPLAN), "not a dprt plan"), NULL);
	free(b);
	plan_destroy(p);
}

Test(file, write_refuses_invalid_plan)
{
	struct plan *p = build(PLAN_PIPELINE, 2);

	p->rows[2].place = PLAN_DHA;
	cr_expect_eq(plan_write(path, p), DPRT_EBADPLAN);
	cr_expect_neq(access(path, F_OK), 0, "an invalid plan was written");
	plan_destroy(p);
}

Test(file, key_mismatch_refused)
{
	struct plan *p = build(PLAN_DPRT, 2);
	const char *m;

	cr_expect_eq(plan_check_key(p, "x.dpp", 0xfeed, pf->gpu, 2), 0);
	cr_expect_eq(plan_check_key(p, "x.dpp", 0xbeef, pf->gpu, 2), DPRT_EBADPLAN);
	m = err_msg(DPRT_EBADPLAN);
	cr_expect_neq(strstr(m, "plan x.dpp was made for package 000000000000feed"), NULL, "%s", m);
	cr_expect_neq(strstr(m, "this is 000000000000beef"), NULL, "%s", m);
	cr_expect_eq(plan_check_key(p, "x.dpp", 0xfeed, "NVIDIA H100 80GB HBM3", 2), DPRT_EBADPLAN);
	cr_expect_neq(strstr(err_msg(DPRT_EBADPLAN), "made for GPU"), NULL);
	cr_expect_eq(plan_check_key(p, "x.dpp", 0xfeed, pf->gpu, 4), DPRT_EBADPLAN);
	cr_expect_neq(strstr(err_msg(DPRT_EBADPLAN), "made for 2 GPUs, this is 4"), NULL);
	plan_destroy(p);
}

/* ---------------------------------------------------------- profiles */

Test(file, profile_round_trip)
{
	struct plan_profile *q, a, b;

	cr_assert_eq(plan_profile_write(path, pf), 0, "%s", err_msg(-1));
	cr_assert_eq(plan_profile_read(path, &q), 0, "%s", err_msg(-1));
	cr_expect_eq(memcmp(pf->layers, q->layers, pf->n_layers * sizeof(*q->layers)), 0);
	a = *pf;
	b = *q;
	a.layers = b.layers = NULL;
	cr_expect_eq(memcmp(&a, &b, sizeof(a)), 0);
	plan_profile_destroy(q);
}

Test(file, profile_corruption_refused)
{
	struct plan_profile *q = NULL;
	size_t len, i;
	uint8_t *b;
	int ret;

	cr_assert_eq(plan_profile_write(path, pf), 0);
	b = slurp(path, &len);
	for (i = 0; i < len; i += i < HDR ? 3 : 11) {
		poke(path, i, b[i] ^ 0x10);
		ret = plan_profile_read(path, &q);
		cr_expect(ret == DPRT_EBADPLAN || ret == DPRT_EVERSION, "flip at %zu: %d", i, ret);
		cr_expect_null(q);
		poke(path, i, b[i]);
	}
	spill(path, b, len - 3);
	cr_expect_eq(plan_profile_read(path, &q), DPRT_EBADPLAN);
	cr_expect_neq(strstr(err_msg(DPRT_EBADPLAN), "truncated"), NULL);
	put32(b + H_N_GPUS, 0);
	reseal(b, len);
	spill(path, b, len);
	cr_expect_eq(plan_profile_read(path, &q), DPRT_EBADPLAN);
	cr_expect_neq(strstr(err_msg(DPRT_EBADPLAN), path), NULL);
	cr_expect_eq(plan_profile_read("/nonexistent/p.dpprof", &q), -ENOENT);
	free(b);
}

Test(file, profile_for_another_package)
{
	struct graph *g;

	cr_assert_eq(zoo_build("bert-tiny", DT_F32, &g), 0);
	cr_expect_eq(plan_profile_match(pf, "p.dpprof", 0xfeed, g), 0);
	cr_expect_eq(plan_profile_match(pf, "p.dpprof", 0x1234, g), DPRT_EBADPLAN);
	cr_expect_neq(strstr(err_msg(DPRT_EBADPLAN), "profile p.dpprof was made for package"),
		      NULL);
	pf->layers[3].bytes++;
	cr_expect_eq(plan_profile_match(pf, "p.dpprof", 0xfeed, g), DPRT_EBADPLAN);
	cr_expect_neq(strstr(err_msg(DPRT_EBADPLAN), "layer 3"), NULL);
	graph_destroy(g);
}

Test(file, profile_validation)
{
	cr_expect_eq(plan_profile_validate(pf, "p"), 0);
	pf->link.dha_read_share = 0;
	cr_expect_eq(plan_profile_validate(pf, "p"), DPRT_EBADPLAN);
	pf->link.dha_read_share = 1;
	pf->link.agg_bw[5] = 1e9; /* past n_gpus */
	cr_expect_eq(plan_profile_validate(pf, "p"), DPRT_EBADPLAN);
	pf->link.agg_bw[5] = 0;
	pf->link.h2d_bw = NAN;
	cr_expect_eq(plan_profile_validate(pf, "p"), DPRT_EBADPLAN);
	pf->link.h2d_bw = 1e9;
	pf->layers[0].op = OP_COUNT;
	cr_expect_eq(plan_profile_validate(pf, "p"), DPRT_EBADPLAN);
	pf->layers[0].op = OP_LINEAR;
	pf->gpu[0] = 0;
	cr_expect_eq(plan_profile_validate(pf, "p"), DPRT_EBADPLAN);
}

/* -------------------------------------------------------- repository */

Test(file, names_and_directories)
{
	char b[256];

	cr_assert_eq(plan_file_name("NVIDIA H100 80GB HBM3", 4, PLAN_PT_DHA, b, sizeof(b)), 0);
	cr_expect_str_eq(b, "nvidia-h100-80gb-hbm3-4gpu-pt-dha.dpp");
	cr_assert_eq(plan_file_name(" H200 ", 1, PLAN_DEEPPLAN_V1, b, sizeof(b)), 0);
	cr_expect_str_eq(b, "h200-1gpu-deepplan-v1.dpp");
	cr_expect_eq(plan_file_name("H200", 1, PLAN_DPRT, b, 8), -ENAMETOOLONG);

	unsetenv("PLAN_REPO");
	knobs_reload();
	cr_assert_eq(plan_repo_dir(NULL, "models/bert/1/model.dpk", "bert", 1, b, sizeof(b)), 0);
	cr_expect_str_eq(b, "models/bert/1/plans");
	cr_assert_eq(plan_repo_dir(NULL, "model.dpk", "bert", 1, b, sizeof(b)), 0);
	cr_expect_str_eq(b, "plans");
	cr_assert_eq(plan_repo_dir("/p", "models/bert/1/model.dpk", "bert", 1, b, sizeof(b)), 0);
	cr_expect_str_eq(b, "/p");
	setenv("PLAN_REPO", "/repo", 1);
	knobs_reload();
	cr_assert_eq(plan_repo_dir(NULL, "m/model.dpk", "BERT base", 0x89abcdef01234567ull, b,
				   sizeof(b)),
		     0);
	cr_expect_str_eq(b, "/repo/bert-base-89abcdef");
	cr_assert_eq(plan_repo_dir("/p", "m/model.dpk", "bert", 1, b, sizeof(b)), 0);
	cr_expect_str_eq(b, "/p");
	unsetenv("PLAN_REPO");
	knobs_reload();
}

Test(file, find_in_repository)
{
	struct plan *p = build(PLAN_DEEPPLAN, 3), *q = NULL;
	char name[256], other[400];

	cr_assert_eq(plan_file_name(pf->gpu, 3, PLAN_DEEPPLAN, name, sizeof(name)), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_eq(plan_write(path, p), 0);
	cr_assert_eq(plan_find(dir, 0xfeed, pf->gpu, 3, PLAN_DEEPPLAN, &q), 0, "%s", err_msg(-1));
	expect_same_plan(p, q);
	plan_destroy(q);
	cr_expect_eq(plan_find(dir, 0xfeed, pf->gpu, 3, PLAN_PT, &q), -ENOENT);
	cr_expect_neq(strstr(err_msg(-ENOENT), "dprt plan"), NULL);
	cr_expect_eq(plan_find(dir, 0xbad, pf->gpu, 3, PLAN_DEEPPLAN, &q), DPRT_EBADPLAN);
	cr_expect_null(q);
	/* a plan of another mode under this mode's name */
	cr_assert_eq(plan_file_name(pf->gpu, 3, PLAN_PT, name, sizeof(name)), 0);
	snprintf(other, sizeof(other), "%s/%s", dir, name);
	cr_assert_eq(plan_write(other, p), 0);
	cr_expect_eq(plan_find(dir, 0xfeed, pf->gpu, 3, PLAN_PT, &q), DPRT_EBADPLAN);
	cr_expect_neq(strstr(err_msg(DPRT_EBADPLAN), "holds mode deepplan"), NULL);
	plan_destroy(p);
}

/* plan_get: the stored plan, else one made from the stored profile of as
 * many GPUs or more (and stored), else -ENOENT. */
Test(file, plan_get_from_stored_profile)
{
	char name[256], ppath[600], sub[300];
	struct plan *p, *q;

	snprintf(sub, sizeof(sub), "%s/repo", dir);
	cr_assert_eq(plan_get(sub, 0xfeed, pf->gpu, 1, PLAN_DEEPPLAN, true, &p), -ENOENT);
	cr_assert_neq(strstr(err_msg(0), "dprt plan"), NULL, "%s", err_msg(0));
	/* the 3-GPU profile, stored as `dprt plan` stores it */
	cr_assert_eq(mkdir(sub, 0755), 0);
	cr_assert_eq(plan_profile_file_name(pf->gpu, 3, name, sizeof(name)), 0);
	snprintf(ppath, sizeof(ppath), "%s/%s", sub, name);
	cr_assert_eq(plan_profile_write(ppath, pf), 0);
	cr_assert_eq(plan_get(sub, 0xfeed, pf->gpu, 4, PLAN_PT, true, &p), -ENOENT,
		     "a 3-GPU profile cannot plan 4 GPUs");
	cr_assert_eq(plan_get(sub, 0xfeed, pf->gpu, 1, PLAN_DEEPPLAN, true, &p), 0, "%s",
		     err_msg(0));
	q = build(PLAN_DEEPPLAN, 1);
	expect_same_plan(p, q);
	plan_destroy(q);
	plan_destroy(p);
	/* now stored: plan_find finds it */
	cr_assert_eq(plan_find(sub, 0xfeed, pf->gpu, 1, PLAN_DEEPPLAN, &q), 0, "%s", err_msg(0));
	plan_destroy(q);
	/* two GPUs from the same profile, not stored */
	cr_assert_eq(plan_get(sub, 0xfeed, pf->gpu, 2, PLAN_PT_DHA, false, &p), 0, "%s",
		     err_msg(0));
	cr_assert_eq(p->prof.link.n_gpus, 2);
	plan_destroy(p);
	cr_assert_eq(plan_find(sub, 0xfeed, pf->gpu, 2, PLAN_PT_DHA, &q), -ENOENT);
	/* another package's profile is refused, not used */
	cr_assert_eq(plan_get(sub, 0xbad, pf->gpu, 1, PLAN_DPRT, true, &p), DPRT_EBADPLAN);
	cr_assert_neq(strstr(err_msg(0), name), NULL, "%s", err_msg(0));
}
