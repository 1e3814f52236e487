/* SPDX-License-Identifier: MIT */
/*
 * The published repository index: lookups and the index never wait for
 * the writers' mutex and always see consistent entries while another
 * thread loads, unloads and rescans; versions without a cap; a failed
 * newest version leaves the previous one serving; models that fit no
 * device make the scheduler not ready.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

TestSuite(snap, .init = setup, .fini = teardown);

static struct repo_entry *find(struct sched *s, const char *name, uint32_t version)
{
	struct repo_entry *e = NULL;
	int ret;

	ret = repo_lookup(sched_repo(s), name, version, &e);
	cr_assert_eq(ret, 0, "lookup %s/%u: %s", name, version, err_msg(ret));
	return e;
}

/* Link dir/name/version to dir/name/1 (the same package, another version). */
static void link_version(const char *name, uint32_t version)
{
	char target[512], link[512];

	snprintf(target, sizeof(target), "%s/%s/1", dir, name);
	snprintf(link, sizeof(link), "%s/%s/%u", dir, name, version);
	cr_assert_eq(symlink(target, link), 0, "symlink %s: %s", link, strerror(errno));
}

/* ------------------------------------------------------------ readers vs writers */

struct churn {
	struct sched *s;
	_Atomic bool stop;
	_Atomic uint32_t rounds;
	int err;
};

/* The writer: unload, load and rescan (adding a model each time). */
static void *churn_main(void *arg)
{
	struct churn *c = arg;
	char target[512], link[512];
	uint32_t i;
	int ret;

	snprintf(target, sizeof(target), "%s/m", dir);
	for (i = 0; !atomic_load(&c->stop) && !c->err; i++) {
		ret = sched_unload(c->s, "m", 0);
		if (!ret)
			ret = sched_load(c->s, "m", 0);
		if (!ret && i < 200) {
			snprintf(link, sizeof(link), "%s/n%u", dir, i);
			ret = symlink(target, link) ? -errno : repo_scan(sched_repo(c->s));
		}
		c->err = ret;
		atomic_fetch_add(&c->rounds, 1);
	}
	return NULL;
}

/* A row is consistent when its reason belongs to its state. */
static void check_row(const struct repo_info *ri)
{
	cr_assert(ri->name[0]);
	cr_assert(ri->version >= 1 && ri->version <= 2, "version %u", ri->version);
	switch (ri->state) {
	case REPO_READY:
	case REPO_LOADING:
		cr_assert_str_empty(ri->reason, "%s: reason '%s'", repo_state_name(ri->state),
				    ri->reason);
		break;
	case REPO_UNAVAILABLE:
		cr_assert(!strcmp(ri->reason, "unloaded") || !strcmp(ri->reason, "not loaded"),
			  "UNAVAILABLE: reason '%s'", ri->reason);
		break;
	default:
		cr_assert_fail("state %u (%s) in the index", ri->state, ri->reason);
	}
}

static void read_once(struct sched *s, struct repo_info *info, uint32_t cap)
{
	struct repo_entry *e;
	char why[SCHED_MSG_LEN];
	uint32_t v, n, i;

	for (v = 0; v <= 2; v++) {
		e = find(s, "m", v);
		cr_assert_str_eq(repo_entry_name(e), "m");
		cr_assert_eq(repo_entry_version(e), v ? v : repo_entry_version(e));
		cr_assert(repo_entry_state(e) <= REPO_READY, "state %d", repo_entry_state(e));
		repo_entry_reason(e, why, sizeof(why));
	}
	repo_index(sched_repo(s), info, cap, &n);
	cr_assert(n >= 2);
	for (i = 0; i < n && i < cap; i++)
		check_row(&info[i]);
}

Test(snap, lookups_while_loading_unloading_rescanning, .timeout = 120)
{
	struct sched_opts o = topts(dir, "cpu");
	static struct repo_info info[512];
	struct churn c = {0};
	pthread_t t;
	uint64_t lookups = 0;

	trepo_add(dir, "m", 1, "bert-tiny", 1);
	link_version("m", 2);
	c.s = tsched(&o);
	cr_assert_eq(pthread_create(&t, NULL, churn_main, &c), 0);
	while (atomic_load(&c.rounds) < 300 && !c.err) {
		read_once(c.s, info, ARRAY_SIZE(info));
		lookups++;
	}
	atomic_store(&c.stop, true);
	pthread_join(t, NULL);
	cr_assert_eq(c.err, 0, "writer: %s", err_msg(c.err));
	cr_assert(lookups > 0);
	/* Every model the writer added is visible; nothing replaced is left
	 * unfreed once a writer runs with no reader inside. */
	find(c.s, "n199", 1);
	cr_assert_eq(repo_scan(sched_repo(c.s)), 0);
	cr_assert_null(sched_repo(c.s)->deferred);
	cr_assert_eq(repo_entry_state(find(c.s, "m", 0)), REPO_READY);
	sched_destroy(c.s);
}

struct reader {
	struct sched *s;
	struct sched_stats st;
	struct repo_info info[4];
	char why[SCHED_MSG_LEN];
	int ret;
	uint32_t n;
	bool ready;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	struct repo_entry *e;

	rd->ret = repo_lookup(sched_repo(rd->s), "m", 0, &e);
	if (rd->ret)
		return NULL;
	repo_entry_reason(e, rd->why, sizeof(rd->why));
	repo_index(sched_repo(rd->s), rd->info, ARRAY_SIZE(rd->info), &rd->n);
	sched_stats(rd->s, &rd->st);
	rd->ready = sched_ready(rd->s, rd->why, sizeof(rd->why));
	return NULL;
}

Test(snap, readers_do_not_wait_for_the_writer_lock, .timeout = 60)
{
	struct sched_opts o = topts(dir, "cpu");
	static struct reader rd;
	struct timespec ts;
	pthread_t t;
	int ret;

	trepo_add(dir, "m", 1, "bert-tiny", 1);
	rd.s = tsched(&o);
	pthread_mutex_lock(&sched_repo(rd.s)->lock);
	cr_assert_eq(pthread_create(&t, NULL, reader_main, &rd), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	ret = pthread_timedjoin_np(t, NULL, &ts);
	pthread_mutex_unlock(&sched_repo(rd.s)->lock);
	if (ret)
		pthread_join(t, NULL);
	cr_assert_eq(ret, 0, "the reader waited for the writers' lock");
	cr_assert_eq(rd.ret, 0);
	cr_assert_eq(rd.n, 1);
	cr_assert_eq(rd.info[0].state, REPO_READY);
	cr_assert_eq(rd.st.n_models, 1);
	cr_assert(rd.ready);
	sched_destroy(rd.s);
}

static void *rescan_main(void *arg)
{
	struct churn *c = arg;
	int i, ret = 0;

	for (i = 0; i < 300 && !ret; i++)
		ret = repo_scan(sched_repo(c->s));
	if (ret)
		c->err = ret;
	atomic_fetch_add(&c->rounds, 1);
	return NULL;
}

Test(snap, concurrent_scans_keep_entries_present, .timeout = 60)
{
	struct sched_opts o = topts(dir, "cpu");
	struct repo_info info[4];
	struct churn c = {0};
	pthread_t t[2];
	uint32_t n;

	trepo_add(dir, "m", 1, "bert-tiny", 1);
	o.explicit_load = true;
	c.s = tsched(&o);
	cr_assert_eq(pthread_create(&t[0], NULL, rescan_main, &c), 0);
	cr_assert_eq(pthread_create(&t[1], NULL, rescan_main, &c), 0);
	while (atomic_load(&c.rounds) < 2) {
		repo_index(sched_repo(c.s), info, ARRAY_SIZE(info), &n);
		cr_assert_eq(n, 1, "m missing from the index during a rescan");
		cr_assert_str_eq(info[0].reason, "not loaded");
	}
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	cr_assert_eq(c.err, 0, "%s", err_msg(c.err));
	sched_destroy(c.s);
}

/* ------------------------------------------------------------ versions */

Test(snap, seventy_versions_load_highest_unload_all)
{
	struct sched_opts o = topts(dir, "cpu");
	struct sched *s;
	uint32_t v;

	trepo_add(dir, "m", 1, "bert-tiny", 1);
	for (v = 2; v <= 70; v++)
		link_version("m", v);
	o.explicit_load = true;
	s = tsched(&o);
	cr_assert_eq(sched_load(s, "m", 0), 0, "%s", err_msg(-1));
	cr_assert_eq(repo_entry_state(find(s, "m", 70)), REPO_READY);
	cr_assert_eq(repo_entry_state(find(s, "m", 64)), REPO_UNAVAILABLE);
	cr_assert_eq(repo_entry_version(find(s, "m", 0)), 70);
	for (v = 1; v <= 69; v++)
		cr_assert_eq(sched_load(s, "m", v), 0);
	cr_assert_eq(sched_unload(s, "m", 0), 0);
	for (v = 1; v <= 70; v++)
		cr_assert_eq(repo_entry_state(find(s, "m", v)), REPO_UNAVAILABLE, "v%u", v);
	sched_destroy(s);
}

Test(snap, load_and_unload_one_version)
{
	struct sched_opts o = topts(dir, "cpu");
	struct sched *s;
	int ret;

	trepo_add(dir, "m", 1, "bert-tiny", 1);
	link_version("m", 2);
	link_version("m", 3);
	o.explicit_load = true;
	s = tsched(&o);
	cr_assert_eq(sched_load(s, "m", 2), 0);
	cr_assert_eq(repo_entry_state(find(s, "m", 2)), REPO_READY);
	cr_assert_eq(repo_entry_state(find(s, "m", 3)), REPO_UNAVAILABLE);
	cr_assert_eq(sched_load(s, "m", 3), 0);
	cr_assert_eq(sched_unload(s, "m", 3), 0);
	cr_assert_eq(repo_entry_state(find(s, "m", 3)), REPO_UNAVAILABLE);
	cr_assert_eq(repo_entry_state(find(s, "m", 2)), REPO_READY);
	ret = sched_load(s, "m", 9);
	cr_assert_eq(ret, DPRT_ENOMODEL);
	cr_assert(strstr(err_msg(ret), "no version 9"), "%s", err_msg(ret));
	cr_assert_eq(sched_unload(s, "m", 9), DPRT_ENOMODEL);
	sched_destroy(s);
}

/* ------------------------------------------------------------ fallback */

static void check_fallback(struct sched *s)
{
	char why[SCHED_MSG_LEN];

	cr_assert_eq(repo_entry_state(find(s, "m", 1)), REPO_READY);
	cr_assert_eq(repo_entry_state(find(s, "m", 2)), REPO_FAILED);
	cr_assert_eq(repo_entry_version(find(s, "m", 0)), 1);
	repo_entry_reason(find(s, "m", 2), why, sizeof(why));
	cr_assert(strstr(why, "model.dpk"), "reason of v2: '%s'", why);
}

Test(snap, failed_newest_version_leaves_previous_serving)
{
	struct sched_opts o = topts(dir, "cpu");
	struct sched *s;

	trepo_add(dir, "m", 1, "bert-tiny", 1);
	trepo_add(dir, "m", 2, "bert-tiny", 2);
	trepo_corrupt(dir, "m", 2, 100000);
	s = tsched(&o);
	check_fallback(s);
	cr_assert_eq(sched_unload(s, "m", 0), 0);
	cr_assert_eq(repo_entry_state(find(s, "m", 1)), REPO_UNAVAILABLE);
	cr_assert_eq(sched_load(s, "m", 0), 0, "%s", err_msg(-1));
	check_fallback(s);
	cr_assert_neq(sched_load(s, "m", 2), 0);
	sched_destroy(s);

	o.explicit_load = true;
	s = tsched(&o);
	cr_assert_eq(sched_load(s, "m", 0), 0);
	check_fallback(s);
	sched_destroy(s);
}

/* ------------------------------------------------------------ readiness */

Test(snap, model_that_fits_no_device_is_failed_and_not_ready)
{
	struct sched_opts o = topts(dir, "cpu:2");
	char why[SCHED_MSG_LEN];
	struct sched *s;

	trepo_add(dir, "m", 1, "bert-tiny", 1);
	o.gpu_mem_limit = trepo_wsize(dir, "m", 1) / 2;
	s = tsched(&o);
	cr_assert_eq(repo_entry_state(find(s, "m", 1)), REPO_FAILED);
	cr_assert_not(sched_ready(s, why, sizeof(why)));
	cr_assert(strstr(why, "model 'm' version 1") && strstr(why, "fit no device"), "%s", why);
	repo_entry_reason(find(s, "m", 1), why, sizeof(why));
	cr_assert(strstr(why, "fit no device"), "%s", why);
	cr_assert_eq(sched_unload(s, "m", 0), 0);
	cr_assert(sched_ready(s, why, sizeof(why)), "%s", why);
	cr_assert_eq(sched_load(s, "m", 0), DPRT_EDEVICE);
	cr_assert_not(sched_ready(s, why, sizeof(why)));
	sched_destroy(s);
}
