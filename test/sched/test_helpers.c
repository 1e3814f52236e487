/* SPDX-License-Identifier: MIT */
/* Helpers of the sched tests (no tests here): zoo repositories, requests. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

void trepo_make(char *dir, size_t len)
{
	snprintf(dir, len, "/tmp/dprt-sched-XXXXXX");
	cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

void trepo_add(const char *dir, const char *name, uint32_t version, const char *zoo, uint64_t seed)
{
	char path[PATH_MAX];
	struct weight_source *ws;
	struct graph *g;
	int ret;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%u", dir, name, version);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%u/model.dpk", dir, name, version);
	ret = zoo_build(zoo, DT_F32, &g);
	cr_assert_eq(ret, 0, "zoo_build %s: %s", zoo, err_msg(ret));
	ws = wsrc_random(seed);
	cr_assert(ws);
	ret = pkg_write(path, g, wsrc_fill, ws);
	cr_assert_eq(ret, 0, "pkg_write %s: %s", path, err_msg(ret));
	wsrc_destroy(ws);
	graph_destroy(g);
}

void trepo_corrupt(const char *dir, const char *name, uint32_t version, long off)
{
	char path[PATH_MAX];
	unsigned char b[16];
	struct stat st;
	size_t i;
	int fd;

	snprintf(path, sizeof(path), "%s/%s/%u/model.dpk", dir, name, version);
	fd = open(path, O_RDWR);
	cr_assert(fd >= 0);
	cr_assert_eq(fstat(fd, &st), 0);
	if (off < 0)
		off += st.st_size;
	cr_assert_eq(pread(fd, b, sizeof(b), off), (ssize_t)sizeof(b));
	for (i = 0; i < sizeof(b); i++)
		b[i] ^= 0x5a;
	cr_assert_eq(pwrite(fd, b, sizeof(b), off), (ssize_t)sizeof(b));
	close(fd);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void trepo_rm(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t trepo_wsize(const char *dir, const char *name, uint32_t version)
{
	char path[PATH_MAX];
	struct pkg *p;
	uint64_t n;
	int ret;

	snprintf(path, sizeof(path), "%s/%s/%u/model.dpk", dir, name, version);
	ret = pkg_open(path, &p);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	n = pkg_graph(p)->weights_size;
	pkg_close(p);
	return n;
}

struct sched_opts topts(const char *dir, const char *gpus)
{
	struct sched_opts o = {
		.models_dir = dir,
		.gpus = gpus,
		.queue_depth = 16,
		.n_reqs = 64,
		.no_threads = true,
	};

	return o;
}

struct sched *tsched(const struct sched_opts *o)
{
	struct sched *s = NULL;
	int ret;

	log_set_level(LOG_WARN); /* no "model ready" lines in test output */
	ret = sched_create(o, &s);
	cr_assert_eq(ret, 0, "sched_create: %s", err_msg(ret));
	return s;
}

static void fill_input(const struct io_desc *io, struct tview *v, int64_t batch, int64_t seq,
		       struct rng *r)
{
	int64_t n, k;

	v->nbytes = io_shape(io, batch, seq, &v->shape);
	n = shape_numel(&v->shape);
	v->data = malloc(v->nbytes ? v->nbytes : 1);
	cr_assert(v->data);
	for (k = 0; k < n; k++) {
		if (io->dtype == DT_I64)
			((int64_t *)v->data)[k] =
				strstr(io->name, "mask") ? 1 : (int64_t)(rng_next(r) % 2);
		else
			((float *)v->data)[k] = rng_unit(r);
	}
}

struct sched_req *treq(struct sched *s, struct sched_chan *ch, const char *name, uint32_t version,
		       int64_t batch, int64_t seq, uint64_t seed)
{
	struct repo_entry *e;
	const struct graph *g;
	struct sched_req *req;
	struct rng r;
	uint32_t i;
	int ret;

	ret = repo_lookup(sched_repo(s), name, version, &e);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	g = repo_entry_graph(e);
	cr_assert(g, "model %s has no graph (state %s)", name,
		  repo_state_name(repo_entry_state(e)));
	req = sched_req_get(s);
	cr_assert(req, "request pool empty");
	req->model = e;
	req->chan = ch;
	rng_seed(&r, seed);
	for (i = 0; i < g->n_inputs; i++)
		fill_input(&g->inputs[i], &req->in[i], batch, seq ? seq : g->def_seq, &r);
	req->ctx = req; /* marks the inputs as ours */
	return req;
}

void treq_put(struct sched *s, struct sched_req *req)
{
	uint32_t i;

	for (i = 0; i < SCHED_MAX_IO; i++)
		free(req->in[i].data);
	sched_req_put(s, req);
}

void tcollect(struct sched *s, struct sched_chan *ch, struct sched_req **out, unsigned n)
{
	unsigned got = 0, spins = 0, i;

	while (got < n) {
		for (i = 0; i < sched_n_workers(s); i++)
			worker_poll(sched_worker(s, i), 4, clock_ns());
		got += sched_complete_poll(ch, out + got, n - got);
		cr_assert(++spins < 100000, "only %u of %u completions came", got, n);
	}
}
