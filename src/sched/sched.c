/* SPDX-License-Identifier: MIT */
/*
 * The scheduler: devices and workers, placement of requests, explicit
 * load/unload, orderly shutdown and the statistics snapshot.
 */
#define _GNU_SOURCE
#include "sched/internal.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEF_QUEUE_DEPTH 256u
#define DEF_N_REQS 1024u
#define DEF_REQ_OUT (1ull << 20)
#define DEF_SPILL_DEPTH 4u

const uint64_t sched_hist_le_ns[SCHED_HIST_BUCKETS - 1] = {
	100000,	  250000,    500000,	1000000,   2500000,    5000000,	   10000000,   25000000,
	50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000,
};

/* ------------------------------------------------------------ parsing */

static int parse_uint(const char **p, uint32_t hi, uint32_t *out)
{
	uint64_t v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > hi)
			return -EINVAL;
	}
	*p = s;
	*out = (uint32_t)v;
	return 0;
}

/* "0-3,5": ascending values without repeats, each <= hi, into vals. */
static int parse_list(const char *spec, uint32_t hi, uint32_t *vals, uint32_t max, uint32_t *n)
{
	const char *p = spec;
	uint32_t a, b, k = 0;

	do {
		if (parse_uint(&p, hi, &a))
			return -EINVAL;
		b = a;
		if (*p == '-' && (p++, parse_uint(&p, hi, &b) || b < a))
			return -EINVAL;
		for (; a <= b; a++) {
			if (k == max || (k && a <= vals[k - 1]))
				return -EINVAL;
			vals[k++] = a;
		}
	} while (*p == ',' && *p++);
	if (*p)
		return -EINVAL;
	*n = k;
	return 0;
}

int sched_parse_devices(const char *spec, struct sched_dev *devs, uint32_t max, uint32_t *n)
{
	uint32_t vals[SCHED_MAX_WORKERS], k, i, cnt = 1;
	const char *p;

	if (!strncmp(spec, "cpu", 3)) {
		p = spec + 3;
		if (*p == ':' && (p++, parse_uint(&p, SCHED_MAX_WORKERS, &cnt) || !cnt))
			goto out_bad;
		if (*p || cnt > max)
			goto out_bad;
		for (i = 0; i < cnt; i++)
			devs[i] = (struct sched_dev){.kind = SCHED_DEV_CPU, .id = (int32_t)i};
		*n = cnt;
		return 0;
	}
	if (parse_list(spec, 1023, vals, MIN(max, SCHED_MAX_WORKERS), &k))
		goto out_bad;
	for (i = 0; i < k; i++)
		devs[i] = (struct sched_dev){.kind = SCHED_DEV_GPU, .id = (int32_t)vals[i]};
	*n = k;
	return 0;
out_bad:
	return err_set(DPRT_EUSAGE,
		       "--gpus '%s': expected cpu, cpu:N (1..%u), or GPU ids "
		       "like 0-3 or 0,2 (ascending, at most %u)",
		       spec, SCHED_MAX_WORKERS, MIN(max, SCHED_MAX_WORKERS));
}

int sched_parse_cpus(const char *spec, int *cpus, uint32_t max, uint32_t *n)
{
	uint32_t vals[SCHED_MAX_WORKERS], k, i;

	if (parse_list(spec, CPU_SETSIZE - 1, vals, MIN(max, SCHED_MAX_WORKERS), &k))
		return err_set(DPRT_EUSAGE,
			       "--cpus '%s': expected core numbers like 2,3 or 4-7 "
			       "(ascending, at most %u)",
			       spec, MIN(max, SCHED_MAX_WORKERS));
	for (i = 0; i < k; i++)
		cpus[i] = (int)vals[i];
	*n = k;
	return 0;
}

void sched_default_cpus(uint32_t n, uint32_t ncpu, int *cpus)
{
	uint32_t i;

	if (!ncpu)
		ncpu = 1;
	for (i = 0; i < n; i++)
		cpus[i] = ncpu > n ? (int)(ncpu - n + i) : (int)(i % ncpu);
}

/* ------------------------------------------------------------ setup */

static int setup_cpus(struct sched *s, uint32_t n_workers)
{
	uint32_t n, i;
	int list[SCHED_MAX_WORKERS];
	long ncpu;
	int ret;

	if (!s->o.cpus) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		sched_default_cpus(n_workers, ncpu > 0 ? (uint32_t)ncpu : 1, s->cpus);
		return 0;
	}
	ret = sched_parse_cpus(s->o.cpus, list, SCHED_MAX_WORKERS, &n);
	if (ret)
		return ret;
	for (i = 0; i < n_workers; i++)
		s->cpus[i] = list[i % n];
	return 0;
}

static bool is_pow2(uint32_t v)
{
	return v >= 2 && !(v & (v - 1));
}

static uint32_t next_pow2(uint32_t v)
{
	uint32_t p = 2;

	while (p < v)
		p <<= 1;
	return p;
}

static int check_opts(struct sched_opts *o)
{
	if (!o->models_dir)
		return err_set(DPRT_EUSAGE, "no model repository (--models DIR)");
	if (!o->gpus)
		o->gpus = "cpu";
	if (!o->queue_depth)
		o->queue_depth = DEF_QUEUE_DEPTH;
	if (!is_pow2(o->queue_depth) || o->queue_depth > (1u << 20))
		return err_set(DPRT_EUSAGE, "queue depth %u: must be a power of two in 2..%u",
			       o->queue_depth, 1u << 20);
	if (!o->n_reqs)
		o->n_reqs = DEF_N_REQS;
	if (o->n_reqs > (1u << 20))
		return err_set(DPRT_EUSAGE, "%u request records: at most %u", o->n_reqs, 1u << 20);
	if (!o->req_out_bytes)
		o->req_out_bytes = DEF_REQ_OUT;
	if (!o->spill_depth)
		o->spill_depth = DEF_SPILL_DEPTH;
	if (o->max_batch > 1024)
		return err_set(DPRT_EUSAGE, "--max-batch %u: at most 1024", o->max_batch);
	return 0;
}

static int pool_init(struct sched *s)
{
	uint64_t per = ALIGN_UP(s->o.req_out_bytes, 64);
	uint32_t i, cap = next_pow2(s->o.n_reqs + 1);

	s->n_reqs = s->o.n_reqs;
	s->req_out = per;
	s->reqs = calloc(s->n_reqs, sizeof(*s->reqs));
	s->obufs = aligned_alloc(64, per * s->n_reqs);
	s->pool_buf = calloc(cap, sizeof(*s->pool_buf));
	if (!s->reqs || !s->obufs || !s->pool_buf)
		return err_set(-ENOMEM, "cannot allocate %u request records", s->n_reqs);
	ck_ring_init(&s->pool, cap);
	for (i = 0; i < s->n_reqs; i++) {
		s->reqs[i].pool_buf = (char *)s->obufs + per * i;
		s->reqs[i].pool_cap = per;
		ck_ring_enqueue_mpmc(&s->pool, s->pool_buf, &s->reqs[i]);
	}
	s->chan_cap = cap;
	return 0;
}

static int make_workers(struct sched *s)
{
	struct sched_dev devs[SCHED_MAX_WORKERS];
	uint32_t n, i;
	int ret;

	ret = sched_parse_devices(s->o.gpus, devs, SCHED_MAX_WORKERS, &n);
	if (!ret)
		ret = setup_cpus(s, n);
	if (!ret)
		ret = repo_create(s->o.models_dir, n, s->o.host_mem_limit, &s->repo);
	link_table_init(&s->links, n);
	/* n_workers counts the workers made, for sched_destroy. */
	for (i = 0; !ret && i < n; i++) {
		ret = worker_create(s, i, &devs[i], &s->w[i]);
		if (!ret)
			s->n_workers++;
	}
	return ret;
}

/*
 * A READY model that fits no device's memory limit could never run: mark
 * it FAILED (unfit, which readiness reports) and return DPRT_EDEVICE.
 */
static int check_fit(struct sched *s, struct repo_entry *e)
{
	const struct graph *g = repo_entry_graph(e);
	uint64_t most = 0;
	char msg[SCHED_MSG_LEN], a[32], b[32];
	uint32_t i;

	for (i = 0; i < s->n_workers; i++) {
		if (g->weights_size <= s->w[i]->mem_limit)
			return 0;
		most = MAX(most, s->w[i]->mem_limit);
	}
	snprintf(msg, sizeof(msg),
		 "its %s of weights fit no device (the largest memory "
		 "limit is %s)",
		 fmt_bytes(g->weights_size, a, sizeof(a)), fmt_bytes(most, b, sizeof(b)));
	repo_fail_entry(s->repo, e, true, msg);
	return err_set(DPRT_EDEVICE, "model '%s' version %u: %s", e->name, e->version, msg);
}

static void kick_all(struct sched *s, uint32_t what)
{
	uint32_t i;

	for (i = 0; i < s->n_workers; i++)
		worker_kick(s->w[i], what);
}

/* Load one entry (READY) and check that some device can hold it. */
static int load_one(struct sched *s, struct repo_entry *e)
{
	int ret = repo_load_entry(s->repo, e);

	return ret ? ret : check_fit(s, e);
}

/* ------------------------------------------------------------ loaders */

/*
 * Loading at start runs on a few loader threads, each taking the next
 * package file (a file linked under many names is one job, read once) and
 * loading its entries, which go READY one by one and kick the workers to
 * prepare them. s->load: the queued entries grouped by file; done counts
 * the entries finished (READY or FAILED), read by sched_ready.
 */
static void load_job(struct sched *s, uint32_t j)
{
	struct sched_load *l = &s->load;
	uint32_t i;

	for (i = l->job[j]; i < l->job[j + 1]; i++) {
		struct repo_entry *e = l->ents[i];

		if (atomic_load(&s->stopping))
			repo_cancel_load(s->repo, e);
		else if (!repo_load_queued(s->repo, e) && !check_fit(s, e))
			log_info("model '%s' version %u: ready", e->name, e->version);
		err_clear();
		/* Release: pairs with the acquire in sched_ready. */
		atomic_fetch_add_explicit(&l->done, 1, memory_order_release);
		kick_all(s, KICK_PREPARE);
	}
}

static void *loader_main(void *arg)
{
	struct sched *s = arg;
	uint32_t j;

	while ((j = atomic_fetch_add(&s->load.next, 1)) < s->load.n_jobs)
		load_job(s, j);
	return NULL;
}

struct file_key {
	dev_t dev;
	ino_t ino;
	uint32_t i; /* index in the entries */
};

static int key_cmp(const void *a, const void *b)
{
	const struct file_key *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* Order the queued entries by package file and cut them into jobs. */
static int make_jobs(struct sched_load *l, struct repo_entry **ents)
{
	struct file_key *k = calloc(l->n ? l->n : 1, sizeof(*k));
	struct stat st;
	uint32_t i;

	l->job = calloc(l->n + 1u, sizeof(*l->job));
	if (!k || !l->job) {
		free(k);
		return -ENOMEM;
	}
	for (i = 0; i < l->n; i++) {
		k[i].i = i;
		if (!stat(ents[i]->path, &st)) {
			k[i].dev = st.st_dev;
			k[i].ino = st.st_ino;
		} else {
			k[i].ino = (ino_t)-1 - i; /* a job of its own */
		}
	}
	qsort(k, l->n, sizeof(*k), key_cmp);
	for (i = 0; i < l->n; i++) {
		l->ents[i] = ents[k[i].i];
		if (!i || k[i].dev != k[i - 1].dev || k[i].ino != k[i - 1].ino)
			l->job[l->n_jobs++] = i;
	}
	l->job[l->n_jobs] = l->n;
	free(k);
	return 0;
}

/* Queue every entry that is not loaded yet (LOADING, "queued"). */
static int queue_all(struct sched *s)
{
	struct sched_load *l = &s->load;
	struct repo_entry **ents;
	uint32_t n, i;
	int ret;

	n = repo_entries(s->repo, NULL, 0);
	ents = n ? malloc(n * sizeof(*ents)) : NULL;
	l->ents = n ? malloc(n * sizeof(*ents)) : NULL;
	if (n && (!ents || !l->ents)) {
		free(ents);
		return err_set(-ENOMEM, "%s: out of memory listing %u models", s->o.models_dir, n);
	}
	n = MIN(n, repo_entries(s->repo, ents, n));
	for (i = 0; i < n; i++)
		if (repo_queue_load(s->repo, ents[i]))
			ents[l->n++] = ents[i];
	ret = make_jobs(l, ents);
	if (ret) {
		for (i = 0; i < l->n; i++)
			repo_cancel_load(s->repo, ents[i]);
		l->n = 0;
		err_set(ret, "out of memory queueing the models");
	}
	free(ents);
	return ret;
}

static uint32_t n_loaders(uint32_t jobs)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	return MIN(MIN(SCHED_LOADERS, cores > 0 ? (uint32_t)cores : 1u), jobs);
}

/* Wait for the loader threads (each ends when no job is left). */
static void join_loaders(struct sched *s)
{
	uint32_t i;

	for (i = 0; i < s->load.n_th; i++)
		pthread_join(s->load.th[i], NULL);
	s->load.n_th = 0;
}

/*
 * Load every model on loader threads: at once (o.load_async: the caller
 * goes on, sched_ready says "loading" until all are done), else waiting
 * for them. Without threads (or memory for them) this thread loads.
 */
static void load_all(struct sched *s)
{
	struct sched_load *l = &s->load;
	uint32_t i, want;

	if (queue_all(s)) {
		log_error("%s", err_msg(0));
		return;
	}
	want = n_loaders(l->n_jobs);
	for (i = 0; i < want; i++) {
		if (pthread_create(&l->th[i], NULL, loader_main, s))
			break;
		l->n_th++;
	}
	if (!l->n_th)
		loader_main(s);
	if (!s->o.load_async)
		join_loaders(s);
}

static int start_workers(struct sched *s)
{
	uint32_t i;
	int ret;

	for (i = 0; i < s->n_workers; i++) {
		ret = worker_start(s->w[i], s->o.no_pin ? -1 : s->cpus[i]);
		if (ret)
			return ret;
	}
	return 0;
}

/* --max-activation's default (see sched_opts.max_activation). */
static uint64_t act_budget(const struct sched *s)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	uint64_t host = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 16ull << 30;
	uint64_t b = UINT64_MAX;
	uint32_t i;

	uint64_t gpu = s->o.gpu_mem_limit ? s->o.gpu_mem_limit / 2 : 16ull << 30;

	if (s->o.max_activation)
		return s->o.max_activation;
	for (i = 0; i < s->n_workers; i++)
		b = MIN(b, s->w[i]->ops == &cpu_backend ? host / 4 : gpu);
	return b == UINT64_MAX ? host / 4 : b;
}

int sched_create(const struct sched_opts *o, struct sched **out)
{
	struct sched *s;
	int ret;

	s = aligned_alloc(CACHELINE, ALIGN_UP(sizeof(*s), CACHELINE));
	if (!s)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	s->o = *o;
	ret = check_opts(&s->o);
	if (!ret)
		ret = make_workers(s);
	if (!ret)
		ret = pool_init(s);
	if (ret)
		goto out_destroy;
	s->act_budget = act_budget(s);
	if (!s->o.explicit_load)
		load_all(s);
	kick_all(s, KICK_PREPARE);
	if (!s->o.no_threads) {
		ret = start_workers(s);
		if (ret)
			goto out_destroy;
	}
	*out = s;
	return 0;
out_destroy:
	sched_destroy(s);
	return ret;
}

/* ------------------------------------------------------------ shutdown */

static void drain(struct sched *s)
{
	struct timespec ts = {0, 50000};
	uint32_t i;

	/* Acquire: pairs with the release decrement in the workers'
	 * complete(). A worker thread may still be pushing its last
	 * completion when this reads 0; sched_stop joins it next. */
	while (atomic_load_explicit(&s->inflight, memory_order_acquire)) {
		bool polled = false;

		for (i = 0; i < s->n_workers; i++) {
			if (s->w[i]->started)
				continue;
			worker_poll(s->w[i], UINT32_MAX, clock_ns());
			polled = true;
		}
		if (!polled)
			nanosleep(&ts, NULL);
	}
}

void sched_stop(struct sched *s)
{
	uint32_t i;

	if (s->stopped)
		return;
	/* seq_cst: pairs with sched_submit's increment of inflight before
	 * its check of stopping; a submit either sees stopping or is counted
	 * and waited for. */
	atomic_store(&s->stopping, 1);
	join_loaders(s);
	if (s->repo)
		drain(s);
	/* Acquire: pairs with the release decrement ending a host read. */
	while (atomic_load_explicit(&s->hreads, memory_order_acquire))
		sched_yield();
	for (i = 0; i < s->n_workers; i++)
		worker_join(s->w[i]);
	s->stopped = true;
}

void sched_destroy(struct sched *s)
{
	uint32_t i;

	if (!s)
		return;
	sched_stop(s);
	for (i = 0; i < s->n_workers; i++)
		worker_destroy(s->w[i]);
	repo_destroy(s->repo);
	free(s->load.ents);
	free(s->load.job);
	free(s->pool_buf);
	free(s->obufs);
	free(s->reqs);
	free(s);
}

struct repo *sched_repo(struct sched *s)
{
	return s->repo;
}

uint32_t sched_n_workers(const struct sched *s)
{
	return s->n_workers;
}

struct worker *sched_worker(struct sched *s, uint32_t i)
{
	return i < s->n_workers ? s->w[i] : NULL;
}

/* ------------------------------------------------------------ load/unload */

/*
 * Every version of name, in ascending order, in a new array (*n of them;
 * NULL with *n 0 when there is none). -ENOMEM with err_set.
 */
static int versions_of(struct sched *s, const char *name, struct repo_entry ***out, uint32_t *n)
{
	const struct repo_snap *sn = repo_snap_enter(s->repo);
	uint32_t first = repo_snap_first(sn, name), end = first, i;
	int ret = 0;

	while (end < sn->n && !strcmp(sn->ents[end]->name, name))
		end++;
	*n = end - first;
	*out = *n ? malloc(sizeof(**out) * *n) : NULL;
	if (*n && !*out)
		ret = err_set(-ENOMEM, "out of memory listing the versions of '%s'", name);
	for (i = 0; !ret && i < *n; i++)
		(*out)[i] = sn->ents[first + i];
	repo_snap_exit(s->repo);
	return ret;
}

/* Load the highest version that loads; the highest one's error if none. */
static int load_newest(struct sched *s, struct repo_entry **ents, uint32_t n)
{
	char msg[SCHED_MSG_LEN] = "";
	uint32_t i = n;
	int first = 0, ret = 0;

	while (i-- > 0) {
		ret = load_one(s, ents[i]);
		if (!ret)
			break;
		if (!first) {
			first = ret;
			snprintf(msg, sizeof(msg), "%s", err_msg(ret));
		}
	}
	if (ret)
		return err_set(first, "%s", msg);
	if (first)
		log_warn("model '%s': serving version %u, version %u failed: %s", ents[i]->name,
			 ents[i]->version, ents[n - 1]->version, msg);
	return 0;
}

int sched_load(struct sched *s, const char *name, uint32_t version)
{
	struct repo_entry **ents = NULL, *e;
	uint32_t n;
	int ret;

	if (version) {
		ret = repo_lookup(s->repo, name, version, &e);
		if (!ret)
			ret = load_one(s, e);
	} else {
		ret = versions_of(s, name, &ents, &n);
		if (!ret && !n)
			ret = repo_lookup(s->repo, name, 0, &e);
		else if (!ret)
			ret = load_newest(s, ents, n);
	}
	free(ents);
	if (!ret)
		kick_all(s, KICK_PREPARE);
	return ret;
}

int sched_unload(struct sched *s, const char *name, uint32_t version)
{
	struct repo_entry **ents = NULL, *e;
	uint32_t n = 0, i;
	int ret;

	if (version) {
		ret = repo_lookup(s->repo, name, version, &e);
		if (!ret)
			repo_unload_entry(s->repo, e);
	} else {
		ret = versions_of(s, name, &ents, &n);
		if (!ret && !n)
			ret = repo_lookup(s->repo, name, 0, &e);
		for (i = 0; !ret && i < n; i++)
			repo_unload_entry(s->repo, ents[i]);
	}
	free(ents);
	if (ret)
		return ret;
	/* The workers drop the models once nothing queued needs them. */
	kick_all(s, KICK_DROP);
	return 0;
}

bool sched_ready(struct sched *s, char *why, size_t len)
{
	/* Acquire: pairs with the release increment in load_job. */
	uint32_t done = atomic_load_explicit(&s->load.done, memory_order_acquire);
	uint32_t i;

	if (done < s->load.n) {
		snprintf(why, len, "loading the repository: %u of %u models loaded", done,
			 s->load.n);
		return false;
	}
	/* A first request must not pay for initialising a GPU (tests that
	 * step the workers themselves open the devices on their thread). */
	for (i = 0; i < s->n_workers && !s->o.no_threads; i++)
		if (!worker_dev_tried(s->w[i])) {
			snprintf(why, len, "initialising device %s", s->w[i]->name);
			return false;
		}
	return repo_unfit(s->repo, why, len) == NULL;
}

/* ------------------------------------------------------------ placement */

/* The least loaded worker among those where e is resident or headed. */
static int place_warm(struct sched *s, const struct repo_entry *e, uint32_t *best_load)
{
	uint32_t i, load;
	int best = -1;

	*best_load = UINT32_MAX;
	for (i = 0; i < s->n_workers; i++) {
		const struct wslot *sl = &e->ws[i];

		if (!atomic_load_explicit(&sl->resident, memory_order_relaxed) &&
		    !atomic_load_explicit(&sl->wq, memory_order_relaxed))
			continue;
		load = worker_queue_depth(s->w[i]);
		if (load < *best_load) {
			best = (int)i;
			*best_load = load;
		}
	}
	return best;
}

/*
 * For a cold start: the most free device memory, then the shortest queue,
 * among the workers whose limit can hold the model at all. spill: only
 * idle workers with room for the model without evicting.
 */
static int place_cold(struct sched *s, uint64_t need, bool spill)
{
	uint64_t free_b, best_free = 0;
	uint32_t i, load, best_load = UINT32_MAX;
	int best = -1;

	for (i = 0; i < s->n_workers; i++) {
		const struct worker *w = s->w[i];
		uint64_t used = worker_resident_bytes(w);

		if (need > w->mem_limit)
			continue;
		free_b = used < w->mem_limit ? w->mem_limit - used : 0;
		load = worker_queue_depth(w);
		if (spill && (load || free_b < need))
			continue;
		if (best < 0 || free_b > best_free || (free_b == best_free && load < best_load)) {
			best = (int)i;
			best_free = free_b;
			best_load = load;
		}
	}
	return best;
}

static int place(struct sched *s, const struct sched_req *req, uint32_t *out)
{
	const struct graph *g = repo_entry_graph(req->model);
	uint32_t load;
	char a[32];
	int w, c;

	w = place_warm(s, req->model, &load);
	if (w >= 0 && load < s->o.spill_depth) {
		*out = (uint32_t)w;
		return 0;
	}
	c = place_cold(s, g->weights_size, w >= 0);
	if (c < 0 && w < 0)
		return err_set(DPRT_EDEVICE,
			       "model '%s' version %u (%s) fits no device's "
			       "memory limit",
			       repo_entry_name(req->model), repo_entry_version(req->model),
			       fmt_bytes(g->weights_size, a, sizeof(a)));
	*out = (uint32_t)(c >= 0 ? c : w);
	return 0;
}

static int submit_check(const struct sched *s, struct sched_req *req)
{
	char a[32], b[32];
	int ret;

	if (!req->chan)
		return err_set(-EINVAL, "request without a completion channel");
	if (!(req->flags & SCHED_F_PREPARED)) {
		ret = sched_req_prepare(req);
		if (ret)
			return ret;
	}
	if (repo_entry_state(req->model) != REPO_READY) {
		ret = sched_req_prepare(req); /* says why it is not ready */
		if (ret)
			return ret;
	}
	if (s->o.max_batch_tokens && req->tokens > s->o.max_batch_tokens)
		return err_set(DPRT_EACTMEM,
			       "model '%s': the request has %llu tokens (batch x "
			       "sequence); this server allows %llu a request (--max-batch-tokens)",
			       repo_entry_name(req->model), (unsigned long long)req->tokens,
			       (unsigned long long)s->o.max_batch_tokens);
	if (req->act_need > s->act_budget)
		return err_set(DPRT_EACTMEM,
			       "model '%s': inputs of these shapes need %s of "
			       "activation memory; this server allows %s a request "
			       "(--max-activation)",
			       repo_entry_name(req->model), fmt_bytes(req->act_need, a, sizeof(a)),
			       fmt_bytes(s->act_budget, b, sizeof(b)));
	return req_bind_outputs(req);
}

int sched_submit(struct sched *s, struct sched_req *req)
{
	struct wslot *sl;
	uint32_t wi = 0;
	int ret;

	ret = submit_check(s, req);
	if (ret)
		goto out_fail;
	if (!req->t_post)
		req->t_post = clock_ns();
	req->flags &= SCHED_F_PREPARED;
	req->status = 0;
	req->msg[0] = 0;
	req->t_queue = req->t_load = req->t_exec = 0;
	/* seq_cst: pairs with sched_stop's store of stopping. */
	atomic_fetch_add(&s->inflight, 1);
	if (atomic_load(&s->stopping)) {
		ret = err_set(-ESHUTDOWN, "the server is shutting down");
		goto out_dec;
	}
	ret = place(s, req, &wi);
	if (ret)
		goto out_dec;
	sl = &req->model->ws[wi];
	atomic_fetch_add(&sl->wq, 1);
	if (!worker_post(s->w[wi], req)) {
		atomic_fetch_sub(&sl->wq, 1);
		ret = err_set(DPRT_EOVERLOAD, "device %s: request queue full (%u requests)",
			      s->w[wi]->name, s->o.queue_depth - 1);
		goto out_dec;
	}
	return 0;
out_dec:
	atomic_fetch_sub(&s->inflight, 1);
out_fail:
	req_fail(req, ret);
	return ret;
}

/* ------------------------------------------------------------ statistics */

static void worker_stats(const struct sched *s, uint32_t i, struct sched_worker_stats *ws)
{
	const struct worker *w = s->w[i];

	snprintf(ws->name, sizeof(ws->name), "%s", w->name);
	ws->kind = w->dev.kind;
	ws->dev_id = w->dev.id;
	ws->cpu = w->started ? w->cpu : -1;
	ws->queue_depth = worker_queue_depth(w);
	ws->resident_models = ctr_get(&w->resident_models);
	ws->resident_bytes = ctr_get(&w->resident_bytes);
	ws->mem_limit = w->mem_limit == UINT64_MAX ? 0 : w->mem_limit;
	ws->requests = ctr_get(&w->requests);
	ws->failures = ctr_get(&w->failures);
	ws->cold_starts = ctr_get(&w->cold);
	ws->bytes_loaded = ctr_get(&w->bytes_loaded);
	ws->evictions = ctr_get(&w->evictions);
	ws->standby_hits = ctr_get(&w->standby_hits);
	ws->creations = ctr_get(&w->creations);
	ws->recreations = ctr_get(&w->recreations);
	ws->destroys = ctr_get(&w->destroys);
	ws->plans = ctr_get(&w->plans_made);
	ws->cold_moved = ctr_get(&w->cold_moved);
	ws->cold_deferred = ctr_get(&w->cold_deferred);
	ws->fixup_ns = ctr_get(&w->fixup_ns);
	ws->place_evictions = ctr_get(&w->place_evictions);
	ws->room_waits = ctr_get(&w->room_waits);
	ws->room_forced = ctr_get(&w->room_forced);
	ws->cold_mode = w->cold_mode;
}

static void model_stats(const struct sched *s, const struct repo_entry *e,
			struct sched_model_stats *ms)
{
	const struct graph *g = repo_entry_graph(e);
	uint32_t i, b;

	snprintf(ms->name, sizeof(ms->name), "%s", e->name);
	ms->version = e->version;
	ms->state = (uint8_t)repo_entry_state(e);
	ms->host_bytes = repo_entry_host(e, NULL) && g ? g->weights_size : 0;
	for (i = 0; i < s->n_workers; i++) {
		const struct wslot *sl = &e->ws[i];

		ms->requests += ctr_get(&sl->requests);
		ms->failures += ctr_get(&sl->failures);
		ms->cold_starts += ctr_get(&sl->cold);
		ms->bytes_loaded += ctr_get(&sl->bytes_loaded);
		ms->lat_sum_ns += ctr_get(&sl->lat_sum);
		ms->in_flight += atomic_load_explicit(&sl->wq, memory_order_relaxed);
		ms->resident_on += atomic_load_explicit(&sl->resident, memory_order_relaxed);
		for (b = 0; b < SCHED_HIST_BUCKETS; b++)
			ms->hist[b] += ctr_get(&sl->hist[b]);
	}
	for (b = 0; b < SCHED_HIST_BUCKETS; b++)
		ms->lat_count += ms->hist[b];
}

void sched_stats(struct sched *s, struct sched_stats *st)
{
	struct repo_entry *ents[SCHED_STATS_MAX_MODELS];
	uint32_t i, n;

	memset(st, 0, sizeof(*st));
	st->n_workers = s->n_workers;
	for (i = 0; i < s->n_workers; i++)
		worker_stats(s, i, &st->workers[i]);
	n = repo_entries(s->repo, ents, SCHED_STATS_MAX_MODELS);
	st->n_models_total = n;
	st->n_models = MIN(n, SCHED_STATS_MAX_MODELS);
	for (i = 0; i < st->n_models; i++)
		model_stats(s, ents[i], &st->models[i]);
	st->in_flight = atomic_load(&s->inflight);
	st->host_used = repo_host_used(s->repo);
	st->host_limit = s->o.host_mem_limit;
	repo_host_counts(s->repo, &st->host_hits, &st->host_misses, &st->host_drops);
	repo_disk_counts(s->repo, &st->disk_cold_starts, &st->disk_streamed, &st->disk_read_bytes);
	st->host_recycled = hoststore_spare_reuses();
}
