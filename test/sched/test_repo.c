/* SPDX-License-Identifier: MIT */
/*
 * Repository: scan layout, versions, lookup, explicit load/unload, corrupt
 * packages, the host weight store and its LRU under --host-mem-limit.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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

TestSuite(repo, .init = setup, .fini = teardown);

static struct repo_entry *find(struct sched *s, const char *name, uint32_t version)
{
	struct repo_entry *e = NULL;
	int ret;

	ret = repo_lookup(sched_repo(s), name, version, &e);
	cr_assert_eq(ret, 0, "lookup %s/%u: %s", name, version, err_msg(ret));
	return e;
}

/* Run one request for e on the scheduler's workers; returns its status. */
static int run(struct sched *s, struct sched_chan *ch, const char *name, uint32_t version)
{
	struct sched_req *req = treq(s, ch, name, version, 1, 0, 7), *done;
	int ret;

	ret = sched_submit(s, req);
	if (ret) {
		treq_put(s, req);
		return ret;
	}
	tcollect(s, ch, &done, 1);
	cr_assert_eq(done, req);
	ret = done->status;
	treq_put(s, done);
	return ret;
}

Test(repo, scan_layout_and_versions)
{
	struct repo_info info[8];
	struct sched_opts o;
	struct sched *s;
	struct repo_entry *e;
	char path[PATH_MAX];
	uint32_t n;

	trepo_add(dir, "bert", 1, "bert-tiny", 1);
	trepo_add(dir, "bert", 2, "bert-tiny", 2);
	trepo_add(dir, "gpt", 3, "gpt2-tiny", 3);
	/* not models: a non-numeric version, a leading zero, no package,
	 * a hidden directory */
	snprintf(path, sizeof(path), "%s/bert/latest", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/bert/07", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/empty", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/empty/1", dir);
	mkdir(path, 0755);
	trepo_add(dir, ".hidden", 1, "bert-tiny", 1);

	o = topts(dir, "cpu");
	o.explicit_load = true;
	s = tsched(&o);
	repo_index(sched_repo(s), info, ARRAY_SIZE(info), &n);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(info[0].name, "bert");
	cr_assert_eq(info[0].version, 1);
	cr_assert_eq(info[1].version, 2);
	cr_assert_str_eq(info[2].name, "gpt");
	cr_assert_eq(info[2].state, REPO_UNAVAILABLE);

	/* Nothing READY: the default is the highest version. */
	e = find(s, "bert", 0);
	cr_assert_eq(repo_entry_version(e), 2);
	cr_assert_eq(repo_entry_state(e), REPO_UNAVAILABLE);
	cr_assert_eq(repo_lookup(sched_repo(s), "bert", 5, &e), DPRT_ENOMODEL);
	cr_assert(strstr(err_msg(DPRT_ENOMODEL), "no version 5"), "%s", err_msg(DPRT_ENOMODEL));
	cr_assert_eq(repo_lookup(sched_repo(s), "nope", 0, &e), DPRT_ENOMODEL);
	cr_assert(strstr(err_msg(DPRT_ENOMODEL), "unknown model 'nope'"));

	/* Load version 1 explicitly: now it is the default. */
	cr_assert_eq(sched_load(s, "bert", 1), 0, "%s", err_msg(-1));
	e = find(s, "bert", 0);
	cr_assert_eq(repo_entry_version(e), 1);
	cr_assert_eq(repo_entry_state(e), REPO_READY);
	cr_assert_not_null(repo_entry_host(e, NULL));
	cr_assert_eq(repo_host_used(sched_repo(s)), trepo_wsize(dir, "bert", 1));
	/* Load without a version takes the highest. */
	cr_assert_eq(sched_load(s, "bert", 0), 0);
	cr_assert_eq(repo_entry_version(find(s, "bert", 0)), 2);
	cr_assert_eq(sched_load(s, "nope", 0), DPRT_ENOMODEL);

	/* Rescan finds a model added later. */
	trepo_add(dir, "resnet", 1, "resnet-tiny", 4);
	cr_assert_eq(repo_lookup(sched_repo(s), "resnet", 0, &e), DPRT_ENOMODEL);
	cr_assert_eq(repo_scan(sched_repo(s)), 0);
	e = find(s, "resnet", 0);
	cr_assert_eq(repo_entry_state(e), REPO_UNAVAILABLE);
	sched_destroy(s);
}

Test(repo, load_all_at_start_and_serve)
{
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;

	trepo_add(dir, "bert", 1, "bert-tiny", 1);
	trepo_add(dir, "gpt", 1, "gpt2-tiny", 2);
	trepo_add(dir, "resnet", 1, "resnet-tiny", 3);
	o = topts(dir, "cpu");
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	cr_assert_eq(repo_entry_state(find(s, "bert", 0)), REPO_READY);
	cr_assert_eq(repo_entry_state(find(s, "gpt", 0)), REPO_READY);
	cr_assert_eq(run(s, ch, "bert", 0), 0);
	cr_assert_eq(run(s, ch, "gpt", 1), 0);
	cr_assert_eq(run(s, ch, "resnet", 0), 0);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

static uint64_t first_weight_byte(const char *name)
{
	char path[PATH_MAX];
	struct pkg *p;
	uint64_t off;

	snprintf(path, sizeof(path), "%s/%s/1/model.dpk", dir, name);
	cr_assert_eq(pkg_open(path, &p), 0);
	off = pkg_weights_offset(p) + pkg_graph(p)->layers[0].offset + 8;
	pkg_close(p);
	return off;
}

Test(repo, corrupt_packages_fail_others_serve)
{
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	struct repo_entry *e;
	char why[SCHED_MSG_LEN];
	struct sched_req *req;
	int ret;

	trepo_add(dir, "good", 1, "bert-tiny", 1);
	trepo_add(dir, "badhdr", 1, "bert-tiny", 2);
	trepo_add(dir, "badw", 1, "gpt2-tiny", 3);
	trepo_corrupt(dir, "badhdr", 1, 0);
	trepo_corrupt(dir, "badw", 1, (long)first_weight_byte("badw"));
	o = topts(dir, "cpu");
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);

	e = find(s, "badhdr", 0);
	cr_assert_eq(repo_entry_state(e), REPO_FAILED);
	repo_entry_reason(e, why, sizeof(why));
	cr_assert(strstr(why, "badhdr/1/model.dpk"), "reason: %s", why);
	cr_assert(strstr(why, "not a dprt package"), "reason: %s", why);

	e = find(s, "badw", 0);
	cr_assert_eq(repo_entry_state(e), REPO_FAILED);
	repo_entry_reason(e, why, sizeof(why));
	cr_assert(strstr(why, "badw/1/model.dpk"), "reason: %s", why);
	cr_assert(strstr(why, "corrupt"), "reason: %s", why);
	cr_assert_null(repo_entry_host(e, NULL));

	/* A request for a failed model is refused at once, with the reason. */
	req = sched_req_get(s);
	req->model = e;
	req->chan = ch;
	ret = sched_submit(s, req);
	cr_assert_eq(ret, DPRT_ENOMODEL);
	cr_assert_eq(req->status, DPRT_ENOMODEL);
	cr_assert(strstr(req->msg, "not ready (FAILED: "), "%s", req->msg);
	sched_req_put(s, req);

	cr_assert_eq(run(s, ch, "good", 0), 0);
	cr_assert_eq(repo_host_used(sched_repo(s)), trepo_wsize(dir, "good", 1));
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

Test(repo, unload_drops_from_devices_and_host)
{
	struct sched_req *req, *done[2];
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	struct repo_entry *e;
	uint32_t users;
	int ret;

	trepo_add(dir, "bert", 1, "bert-tiny", 1);
	trepo_add(dir, "gpt", 1, "gpt2-tiny", 2);
	o = topts(dir, "cpu");
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	e = find(s, "bert", 0);
	cr_assert_eq(run(s, ch, "bert", 0), 0);
	cr_assert(worker_has_model(sched_worker(s, 0), e));
	cr_assert_not_null(repo_entry_host(e, &users));
	cr_assert_eq(users, 1);

	/* A request queued before the unload still runs. */
	req = treq(s, ch, "bert", 0, 1, 0, 3);
	cr_assert_eq(sched_submit(s, req), 0);
	cr_assert_eq(sched_unload(s, "bert", 0), 0);
	cr_assert_eq(repo_entry_state(e), REPO_UNAVAILABLE);
	/* ...but new ones are refused. */
	done[1] = treq(s, ch, "bert", 1, 1, 0, 4);
	ret = sched_submit(s, done[1]);
	cr_assert_eq(ret, DPRT_ENOMODEL);
	cr_assert(strstr(done[1]->msg, "not ready (UNAVAILABLE: unloaded)"), "%s", done[1]->msg);
	treq_put(s, done[1]);

	tcollect(s, ch, done, 1);
	cr_assert_eq(done[0]->status, 0, "%s", done[0]->msg);
	treq_put(s, done[0]);
	/* Idle now: dropped from the device, host memory freed. */
	worker_poll(sched_worker(s, 0), 1, clock_ns());
	cr_assert_not(worker_has_model(sched_worker(s, 0), e));
	cr_assert_eq(worker_resident_bytes(sched_worker(s, 0)), 0);
	cr_assert_null(repo_entry_host(e, &users));
	cr_assert_eq(users, 0);
	cr_assert_eq(repo_host_used(sched_repo(s)), trepo_wsize(dir, "gpt", 1));
	cr_assert_eq(sched_unload(s, "nope", 0), DPRT_ENOMODEL);

	/* Load again: serves again. */
	cr_assert_eq(sched_load(s, "bert", 1), 0);
	cr_assert_eq(run(s, ch, "bert", 1), 0);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

Test(repo, host_lru_under_limit)
{
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	struct repo_entry *a, *b, *c;
	uint64_t sz, reuses;
	char why[SCHED_MSG_LEN];

	trepo_add(dir, "a", 1, "bert-tiny", 1);
	trepo_add(dir, "b", 1, "bert-tiny", 2);
	trepo_add(dir, "c", 1, "bert-tiny", 3);
	sz = trepo_wsize(dir, "a", 1);
	o = topts(dir, "cpu");
	o.explicit_load = true;
	o.host_mem_limit = 2 * sz + sz / 2;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	a = find(s, "a", 0);
	b = find(s, "b", 0);
	c = find(s, "c", 0);
	cr_assert_eq(sched_load(s, "a", 0), 0);
	cr_assert_eq(sched_load(s, "b", 0), 0);
	reuses = hoststore_spare_reuses();
	/* c needs room: a's copy (least recent, unused) goes; a stays READY.
	 * c's copy is made in a's buffer (same size), not allocated anew. */
	cr_assert_eq(sched_load(s, "c", 0), 0);
	cr_assert_eq(hoststore_spare_reuses(), reuses + 1);
	cr_assert_null(repo_entry_host(a, NULL));
	cr_assert_not_null(repo_entry_host(b, NULL));
	cr_assert_not_null(repo_entry_host(c, NULL));
	cr_assert_eq(repo_entry_state(a), REPO_READY);
	cr_assert_eq(repo_host_used(sched_repo(s)), 2 * sz);

	/* A request for a reads it again (dropping b, now least recent),
	 * into b's buffer. */
	cr_assert_eq(run(s, ch, "a", 0), 0);
	cr_assert_eq(hoststore_spare_reuses(), reuses + 2);
	cr_assert_not_null(repo_entry_host(a, NULL));
	cr_assert_null(repo_entry_host(b, NULL));
	cr_assert_eq(repo_host_used(sched_repo(s)), 2 * sz);

	/* a is in use on the device and c is cached: b can take c's place
	 * only; with a limit of one copy, nothing can be dropped. */
	cr_assert_eq(run(s, ch, "b", 0), 0);
	cr_assert_null(repo_entry_host(c, NULL));
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);

	/* Host limit below two models, one of them in use: the load fails. */
	o.host_mem_limit = sz + sz / 2;
	o.explicit_load = false;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	a = find(s, "a", 0);
	/* Loaded in parallel, each read made room by dropping another. */
	cr_assert_eq(repo_entry_state(a), REPO_READY);
	cr_assert_eq(repo_entry_state(find(s, "b", 0)), REPO_READY);
	cr_assert_eq(repo_entry_state(find(s, "c", 0)), REPO_READY);
	cr_assert_eq(repo_acquire(sched_repo(s), a, &(const void *){NULL}), 0);
	c = find(s, "c", 0);
	cr_assert_eq(sched_unload(s, "c", 0), 0);
	cr_assert_eq(sched_load(s, "c", 0), DPRT_EOVERLOAD);
	repo_entry_reason(c, why, sizeof(why));
	cr_assert(strstr(why, "host memory full"), "%s", why);
	cr_assert_eq(repo_entry_state(c), REPO_FAILED);
	repo_release(sched_repo(s), a);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/*
 * Host limit of one model, every model READY: a model resident on its
 * device but idle does not lock the others out of host memory. Each
 * request drops the idle one's device model and host copy (least recently
 * used first) and runs.
 */
Test(repo, idle_resident_models_give_host_memory_back)
{
	static const char *const order[] = {"a", "b", "c", "a", "c", "b"};
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	uint64_t sz, hits, misses, drops;
	unsigned i;

	trepo_add(dir, "a", 1, "bert-tiny", 1);
	trepo_add(dir, "b", 1, "bert-tiny", 2);
	trepo_add(dir, "c", 1, "bert-tiny", 3);
	sz = trepo_wsize(dir, "a", 1);
	o = topts(dir, "cpu");
	o.host_mem_limit = sz + sz / 2;
	o.explicit_load = true;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	cr_assert_eq(sched_load(s, "a", 0), 0);
	cr_assert_eq(sched_load(s, "b", 0), 0);
	cr_assert_eq(sched_load(s, "c", 0), 0);
	/* c, read last, is still in host memory: a hit. */
	cr_assert_eq(run(s, ch, "c", 0), 0);
	for (i = 0; i < ARRAY_SIZE(order); i++) {
		struct repo_entry *e = find(s, order[i], 0);
		int ret = run(s, ch, order[i], 0);

		cr_assert_eq(ret, 0, "request %u for %s: %s", i, order[i], dprt_strerror(ret));
		cr_assert_not_null(repo_entry_host(e, NULL));
		cr_assert_eq(repo_entry_state(e), REPO_READY);
		cr_assert_leq(repo_host_used(sched_repo(s)), o.host_mem_limit);
	}
	/* Loads read a, b (dropping a), c (dropping b); then each request
	 * read its model again and dropped the one before. */
	repo_host_counts(sched_repo(s), &hits, &misses, &drops);
	cr_assert_eq(misses, 3 + ARRAY_SIZE(order), "misses %llu", (unsigned long long)misses);
	cr_assert_eq(drops, 2 + ARRAY_SIZE(order), "drops %llu", (unsigned long long)drops);
	cr_assert_eq(hits, 1);
	/* b again: resident, nothing is read or dropped. */
	cr_assert_eq(run(s, ch, "b", 0), 0);
	repo_host_counts(sched_repo(s), &hits, &misses, &drops);
	cr_assert_eq(misses, 3 + ARRAY_SIZE(order));
	cr_assert_eq(drops, 2 + ARRAY_SIZE(order));
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* No fixed cap on how many models load at start: 300 entries (links to one
 * package directory) all come up READY. */
Test(repo, load_all_has_no_cap)
{
	struct sched_opts o = topts(dir, "cpu");
	char link[512], target[512];
	struct sched *s;
	int i;

	trepo_add(dir, "m0", 1, "bert-tiny", 1);
	snprintf(target, sizeof(target), "%s/m0", dir);
	for (i = 1; i < 300; i++) {
		snprintf(link, sizeof(link), "%s/m%d", dir, i);
		cr_assert_eq(symlink(target, link), 0, "symlink %s", link);
	}
	s = tsched(&o);
	for (i = 0; i < 300; i += 37) {
		char name[16];

		snprintf(name, sizeof(name), "m%d", i);
		cr_assert_eq(repo_entry_state(find(s, name, 1)), REPO_READY, "%s", name);
	}
	cr_assert_eq(repo_entry_state(find(s, "m299", 1)), REPO_READY);
	sched_destroy(s);
}

/* One package file under two names (a hard link) has one host copy,
 * counted once; the copy lives until the last of them lets it go. A copy
 * of the file (c: same bytes) is read and checked on its own. */
Test(repo, same_package_shares_one_host_copy)
{
	struct sched_opts o = topts(dir, "cpu");
	struct repo_entry *a, *b, *c;
	char from[512], to[512];
	struct sched_chan *ch;
	struct sched *s;
	uint64_t sz;

	trepo_add(dir, "a", 1, "bert-tiny", 7);
	trepo_add(dir, "c", 1, "bert-tiny", 7);
	snprintf(to, sizeof(to), "%s/b", dir);
	cr_assert_eq(mkdir(to, 0755), 0);
	snprintf(to, sizeof(to), "%s/b/1", dir);
	cr_assert_eq(mkdir(to, 0755), 0);
	snprintf(from, sizeof(from), "%s/a/1/model.dpk", dir);
	snprintf(to, sizeof(to), "%s/b/1/model.dpk", dir);
	cr_assert_eq(link(from, to), 0, "link %s", to);
	sz = trepo_wsize(dir, "a", 1);
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	a = find(s, "a", 1);
	b = find(s, "b", 1);
	c = find(s, "c", 1);
	cr_assert_eq(repo_entry_state(b), REPO_READY);
	cr_assert_eq(repo_entry_host(a, NULL), repo_entry_host(b, NULL));
	cr_assert_neq(repo_entry_host(a, NULL), repo_entry_host(c, NULL));
	cr_assert_eq(repo_host_used(sched_repo(s)), 2 * sz, "used %llu, one copy %llu",
		     (unsigned long long)repo_host_used(sched_repo(s)), (unsigned long long)sz);
	cr_assert_eq(sched_unload(s, "a", 0), 0);
	cr_assert_eq(run(s, ch, "b", 0), 0);
	cr_assert_eq(repo_host_used(sched_repo(s)), 2 * sz);
	cr_assert_eq(sched_unload(s, "b", 0), 0);
	worker_poll(sched_worker(s, 0), 1, clock_ns()); /* drops b's model */
	cr_assert_eq(repo_host_used(sched_repo(s)), sz);
	cr_assert_eq(sched_load(s, "a", 0), 0);
	cr_assert_eq(run(s, ch, "a", 0), 0);
	cr_assert_eq(repo_host_used(sched_repo(s)), 2 * sz);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

Test(repo, register_outside_the_directory)
{
	struct repo_info info[8];
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	struct repo_entry *e;
	char side[256], pa[PATH_MAX], pb[PATH_MAX], own[PATH_MAX];
	struct repo *r;
	uint32_t n, users;

	trepo_make(side, sizeof(side));
	trepo_add(side, "bert", 1, "bert-tiny", 1);
	trepo_add(side, "gpt", 1, "gpt2-tiny", 2);
	snprintf(pa, sizeof(pa), "%s/bert/1/model.dpk", side);
	snprintf(pb, sizeof(pb), "%s/gpt/1/model.dpk", side);
	trepo_add(dir, "own", 1, "bert-tiny", 3);
	snprintf(own, sizeof(own), "%s/own/1/model.dpk", dir);
	o = topts(dir, "cpu");
	o.explicit_load = true;
	s = tsched(&o);
	r = sched_repo(s);
	cr_assert_eq(sched_chan_create(s, &ch), 0);

	cr_assert_eq(repo_register(r, "ext__isvc-1", pa), 0, "%s", err_msg(-1));
	e = find(s, "ext__isvc-1", 1);
	cr_assert_eq(repo_entry_state(e), REPO_UNAVAILABLE);
	/* a rescan keeps it: it is not the directory's */
	cr_assert_eq(repo_scan(r), 0);
	repo_index(r, info, ARRAY_SIZE(info), &n);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(info[0].name, "ext__isvc-1");
	cr_assert_str_eq(info[0].reason, "not loaded");
	cr_assert(info[0].registered);
	cr_assert_not(info[1].registered);
	cr_assert_eq(find(s, "ext__isvc-1", 1), e);

	cr_assert_eq(sched_load(s, "ext__isvc-1", 1), 0, "%s", err_msg(-1));
	cr_assert_eq(repo_entry_state(e), REPO_READY);
	cr_assert_eq(repo_entry_graph(e)->weights_size, trepo_wsize(side, "bert", 1));
	cr_assert_eq(run(s, ch, "ext__isvc-1", 0), 0);
	cr_assert_eq(repo_register(r, "ext__isvc-1", pa), 0, "the same path again");
	cr_assert_eq(repo_register(r, "ext__isvc-1", pb), -EBUSY);
	cr_assert(strstr(err_msg(-EBUSY), "is loaded from"), "%s", err_msg(-EBUSY));
	cr_assert_eq(repo_register(r, "own", pb), -EEXIST);
	cr_assert_eq(repo_register(r, "own", own), 0, "its own package");
	cr_assert_eq(repo_register(r, "a/b", pa), -EINVAL);
	cr_assert_eq(repo_register(r, "", pa), -EINVAL);

	/* unloaded and dropped: repointed, it loads the other package */
	cr_assert_eq(sched_unload(s, "ext__isvc-1", 1), 0);
	worker_poll(sched_worker(s, 0), 1, clock_ns());
	cr_assert_null(repo_entry_host(e, &users));
	cr_assert_eq(repo_register(r, "ext__isvc-1", pb), 0, "%s", err_msg(-1));
	cr_assert_eq(sched_load(s, "ext__isvc-1", 1), 0, "%s", err_msg(-1));
	cr_assert_eq(repo_entry_graph(e)->weights_size, trepo_wsize(side, "gpt", 1));
	cr_assert_eq(run(s, ch, "ext__isvc-1", 1), 0);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
	trepo_rm(side);
}

/* The same on two devices: an idle model on the other device gives its
 * copy back too (its worker is asked to drop it while the read waits). */
Test(repo, idle_models_of_other_devices_give_host_memory_back)
{
	static const char *const order[] = {"a", "b", "c", "a", "b", "c", "b", "a"};
	uint32_t on[ARRAY_SIZE(order)], i, moved = 0;
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	uint64_t sz;

	trepo_add(dir, "a", 1, "bert-tiny", 1);
	trepo_add(dir, "b", 1, "bert-tiny", 2);
	trepo_add(dir, "c", 1, "bert-tiny", 3);
	sz = trepo_wsize(dir, "a", 1);
	o = topts(dir, "cpu:2");
	o.host_mem_limit = sz + sz / 2;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	for (i = 0; i < ARRAY_SIZE(order); i++) {
		struct sched_req *req = treq(s, ch, order[i], 0, 1, 0, i), *done;

		cr_assert_eq(sched_submit(s, req), 0);
		tcollect(s, ch, &done, 1);
		cr_assert_eq(done->status, 0, "request %u for %s: %s", i, order[i], done->msg);
		on[i] = done->worker;
		moved += i && on[i] != on[i - 1];
		treq_put(s, done);
	}
	cr_assert_gt(moved, 0, "every model ran on one device; the test needs two");
	cr_assert_leq(repo_host_used(sched_repo(s)), o.host_mem_limit);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/* ---- loading at start on loader threads ---- */

static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hook_cond = PTHREAD_COND_INITIALIZER;
static bool hook_open;	    /* reads of "slow" may go on */
static unsigned hook_reads; /* reads begun of models other than "slow" */

/* Reads of model "slow" wait (up to 10 s) until the test opens the gate. */
static void gate_hook(const struct repo_entry *e)
{
	struct timespec ts;

	pthread_mutex_lock(&hook_lock);
	if (strcmp(repo_entry_name(e), "slow")) {
		hook_reads++;
		pthread_cond_broadcast(&hook_cond);
		pthread_mutex_unlock(&hook_lock);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	while (!hook_open && pthread_cond_timedwait(&hook_cond, &hook_lock, &ts) == 0)
		;
	pthread_mutex_unlock(&hook_lock);
}

static void gate_open(void)
{
	pthread_mutex_lock(&hook_lock);
	hook_open = true;
	pthread_cond_broadcast(&hook_cond);
	pthread_mutex_unlock(&hook_lock);
}

/* Wait (up to 10 s) until e is in state st. */
static void wait_state(struct repo_entry *e, enum repo_state st)
{
	int i;

	for (i = 0; i < 10000 && repo_entry_state(e) != st; i++)
		usleep(1000);
	cr_assert_eq(repo_entry_state(e), st, "%s is %s", repo_entry_name(e),
		     repo_state_name(repo_entry_state(e)));
}

/*
 * With load_async, sched_create returns at once; models go READY one by
 * one while a slow one still reads: readiness says "loading N of M", a
 * request for the slow one fails with "loading", the others serve. Two
 * links of one package are one job, read once.
 */
Test(repo, async_load_serves_while_the_rest_loads)
{
	struct sched_opts o = topts(dir, "cpu");
	char why[SCHED_MSG_LEN], target[512], link[512];
	struct repo_entry *slow, *fast, *twin;
	struct sched_chan *ch;
	struct sched_req *req;
	struct sched *s;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		cr_skip_test("one loader thread on one core");
	trepo_add(dir, "slow", 1, "bert-tiny", 1);
	trepo_add(dir, "fast", 1, "bert-tiny", 2);
	snprintf(target, sizeof(target), "%s/fast", dir);
	snprintf(link, sizeof(link), "%s/twin", dir);
	cr_assert_eq(symlink(target, link), 0);
	hook_open = false;
	hook_reads = 0;
	atomic_store(&repo_read_hook, gate_hook);
	o.load_async = true;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	slow = find(s, "slow", 1);
	fast = find(s, "fast", 1);
	twin = find(s, "twin", 1);
	wait_state(fast, REPO_READY);
	wait_state(twin, REPO_READY);
	cr_assert_eq(repo_entry_state(slow), REPO_LOADING);
	cr_assert_not(sched_ready(s, why, sizeof(why)));
	cr_assert(strstr(why, "loading the repository: 2 of 3 models loaded"), "%s", why);
	cr_assert_eq(run(s, ch, "fast", 0), 0);
	cr_assert_eq(run(s, ch, "twin", 0), 0);
	req = treq(s, ch, "fast", 0, 1, 0, 1); /* slow's signature is the same */
	req->model = slow;
	cr_assert_eq(sched_submit(s, req), DPRT_ENOMODEL);
	cr_assert(strstr(err_msg(DPRT_ENOMODEL), "loading"), "%s", err_msg(DPRT_ENOMODEL));
	treq_put(s, req);
	cr_assert_eq(hook_reads, 1, "the linked package was read %u times", hook_reads);
	gate_open();
	wait_state(slow, REPO_READY);
	cr_assert(sched_ready(s, why, sizeof(why)), "%s", why);
	cr_assert_eq(run(s, ch, "slow", 0), 0);
	atomic_store(&repo_read_hook, NULL);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

/*
 * A request for a model whose host copy was dropped does not hold up the
 * device: its copy is read on a reader thread (here held at the gate)
 * while a request for a resident model, posted right after it, runs and
 * completes first; the parked one runs when its copy is in.
 */
static void check_read_off_the_worker(uint32_t max_batch)
{
	struct sched_req *cold, *warm, *done[2];
	struct sched_chan *ch;
	struct sched_opts o;
	struct sched *s;
	uint64_t sz;

	trepo_add(dir, "slow", 1, "bert-tiny", 1);
	trepo_add(dir, "res", 1, "bert-tiny", 2);
	trepo_add(dir, "x", 1, "bert-tiny", 3);
	sz = trepo_wsize(dir, "slow", 1);
	o = topts(dir, "cpu:1");
	o.explicit_load = true;
	o.max_batch = max_batch;
	o.host_mem_limit = 2 * sz + sz / 2;
	s = tsched(&o);
	cr_assert_eq(sched_chan_create(s, &ch), 0);
	cr_assert_eq(sched_load(s, "slow", 0), 0);
	cr_assert_eq(sched_load(s, "res", 0), 0);
	cr_assert_eq(sched_load(s, "x", 0), 0); /* drops slow's copy */
	cr_assert_eq(run(s, ch, "res", 0), 0);	/* resident now */
	cr_assert_null(repo_entry_host(find(s, "slow", 1), NULL));

	hook_open = false;
	atomic_store(&repo_read_hook, gate_hook);
	cold = treq(s, ch, "slow", 0, 1, 0, 1);
	warm = treq(s, ch, "res", 0, 1, 0, 2);
	cr_assert_eq(sched_submit(s, cold), 0);
	cr_assert_eq(sched_submit(s, warm), 0);
	tcollect(s, ch, done, 1);
	cr_assert_eq(done[0], warm, "the resident model's request came second");
	cr_assert_eq(warm->status, 0, "%s", warm->msg);
	gate_open();
	tcollect(s, ch, done + 1, 1);
	cr_assert_eq(done[1], cold);
	cr_assert_eq(cold->status, 0, "%s", cold->msg);
	cr_assert(cold->flags & SCHED_F_COLD);
	cr_assert_not_null(repo_entry_host(find(s, "slow", 1), NULL));
	atomic_store(&repo_read_hook, NULL);
	treq_put(s, cold);
	treq_put(s, warm);
	sched_stop(s);
	sched_chan_destroy(ch);
	sched_destroy(s);
}

Test(repo, reading_a_dropped_model_does_not_block_its_device)
{
	check_read_off_the_worker(1);
}

Test(repo, reading_a_dropped_model_does_not_block_its_batching_device)
{
	check_read_off_the_worker(4);
}
