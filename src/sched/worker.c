/* SPDX-License-Identifier: MIT */
/*
 * Workers: one per device. A worker owns its device, the models resident
 * there (an LRU list) and the device memory accounting; it takes requests
 * from its MPSC ring, cold-starts models on demand (evicting unused ones
 * under the memory limit), runs them and completes the requests into their
 * posters' channels.
 */
#define _GNU_SOURCE
#include "sched/internal.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "plan/plan.h"

int worker_create(struct sched *s, uint32_t id, const struct sched_dev *dev, struct worker **out)
{
	struct worker *w;
	int ret = -ENOMEM;

	const struct exec_ops *be = dev->kind == SCHED_DEV_GPU ? exec_gpu_backend : &cpu_backend;

	if (!be)
		return err_set(DPRT_ENODEV,
			       "device gpu%d: this dprt was built without CUDA, so "
			       "it has no GPU backend (serve with --gpus cpu)",
			       dev->id);
	if (dev->id >= be->dev_count())
		return err_set(DPRT_ENODEV,
			       "device gpu%d: no such GPU (the driver sees %d; "
			       "serve with --gpus cpu on a machine without GPUs)",
			       dev->id, be->dev_count());
	w = aligned_alloc(CACHELINE, ALIGN_UP(sizeof(*w), CACHELINE));
	if (!w)
		return -ENOMEM;
	memset(w, 0, sizeof(*w));
	w->s = s;
	w->repo = s->repo;
	w->id = id;
	w->dev = *dev;
	w->ops = be;
	snprintf(w->name, sizeof(w->name), "%s%d", dev->kind == SCHED_DEV_GPU ? "gpu" : "cpu",
		 (int)dev->id);
	w->mem_limit = s->o.gpu_mem_limit ? s->o.gpu_mem_limit : UINT64_MAX;
	w->max_batch = s->o.max_batch > 1 ? s->o.max_batch : 1;
	w->batch_delay_ns = (uint64_t)s->o.batch_delay_us * 1000;
	w->spin_ns = (uint64_t)(s->o.spin_us ? s->o.spin_us : 50) * 1000;
	w->cpu = -1;
	lnode_init(&w->lru);
	lnode_init(&w->standby);
	lnode_init(&w->parked);
	w->evict_policy = s->o.evict_policy;
	w->evict_place = knobs_get()->evict_place && w->evict_policy == SCHED_EVICT_COST;
	ret = sched_cold_mode_parse(s->o.cold_mode, &w->cold_mode);
	if (ret)
		goto out_free;
	w->cold_mode = sched_cold_mode_resolve(w->cold_mode, be, dev->kind == SCHED_DEV_GPU);
	w->rbuf = calloc(s->o.queue_depth, sizeof(*w->rbuf));
	ret = -ENOMEM;
	if (!w->rbuf)
		goto out_free;
	ck_ring_init(&w->ring, s->o.queue_depth);
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		ret = err_set(-errno, "eventfd: %s", strerror(errno));
		goto out_free_ring;
	}
	*out = w;
	return 0;
out_free_ring:
	free(w->rbuf);
out_free:
	free(w);
	return ret;
}

/* ------------------------------------------------------------ residency */

static void publish_residency(struct worker *w, int64_t dmodels)
{
	ctr_add(&w->resident_models, (uint64_t)dmodels);
	atomic_store_explicit(&w->resident_bytes, w->used, memory_order_relaxed);
}

static bool slot_in_use(const struct wslot *sl)
{
	return atomic_load_explicit(&sl->wq, memory_order_acquire) > 0;
}

static void forget_untidy(struct worker *w, struct wslot *sl)
{
	if (sl->untidy) {
		sl->untidy = false;
		w->untidy--;
	}
}

/* Destroy a model that is not resident (kept evicted, or never run). */
static void destroy_model(struct worker *w, struct wslot *sl)
{
	ctr_add(&w->destroys, 1);
	forget_untidy(w, sl);
	lnode_del(&sl->lru);
	w->ops->model_destroy(sl->em);
	sl->em = NULL;
	sl->by_plan = false;
	w->used -= sl->bytes;
	sl->bytes = 0;
	atomic_store_explicit(&w->resident_bytes, w->used, memory_order_relaxed);
}

/* Destroy a model (resident or kept evicted) and drop its reference on
 * the host copy. */
static void destroy(struct worker *w, struct wslot *sl)
{
	destroy_model(w, sl);
	repo_release(w->repo, sl->e);
}

/*
 * Take a resident model off the device. A cold model of a loaded entry
 * only gives its weight ranges back and waits in the standby list (its
 * plans, graphs and the host copy stay), so its next cold start moves
 * nothing but weights; any other model is destroyed.
 */
static void evict(struct worker *w, struct wslot *sl)
{
	log_debug("%s: evicting '%s' v%u", w->name, sl->e->name, sl->e->version);
	forget_untidy(w, sl); /* its graphs wait for where it lands next */
	lnode_del(&sl->lru);
	atomic_store(&sl->resident, false);
	if (sl->by_plan && repo_entry_state(sl->e) == REPO_READY && !w->ops->cold_evict(sl->em)) {
		w->used -= sl->bytes - sl->keep;
		sl->bytes = sl->keep;
		lnode_add_head(&w->standby, &sl->lru);
		publish_residency(w, -1);
		return;
	}
	err_clear();
	destroy(w, sl);
	publish_residency(w, -1);
}

static void forget_plan(struct wslot *sl)
{
	plan_destroy(sl->plan);
	sl->plan = NULL;
	sl->prep = PREP_NONE;
}

/* An unloaded (or failed) model leaves the device once nothing queued here
 * needs it. */
static void maybe_drop(struct worker *w, struct wslot *sl)
{
	if (!sl->em || repo_entry_state(sl->e) == REPO_READY || slot_in_use(sl))
		return;
	if (atomic_load(&sl->resident))
		evict(w, sl);
	else
		destroy(w, sl);
	forget_plan(sl);
}

static void drop_list(struct worker *w, struct lnode *head)
{
	struct lnode *n, *prev;

	for (n = head->prev; n != head; n = prev) {
		prev = n->prev;
		maybe_drop(w, container_of(n, struct wslot, lru));
	}
}

static void drop_unloaded(struct worker *w)
{
	drop_list(w, &w->lru);
	drop_list(w, &w->standby);
}

static int no_room(struct worker *w, uint64_t busy)
{
	char a[32], b[32];

	w->room_short = true; /* the request may wait for room (defer_room) */
	return err_set(DPRT_EOVERLOAD, "no room on device %s: %s of %s held by models in use",
		       w->name, fmt_bytes(busy, a, sizeof(a)),
		       fmt_bytes(w->mem_limit, b, sizeof(b)));
}

/*
 * Make room for need bytes: first check that evicting every unused model
 * would be enough (so nothing is evicted in vain), then evict unused
 * models least recently used first until the incoming model fits. A model
 * with a request queued or running here is never evicted. (A poster may
 * pick this worker for a model just being evicted; its request then finds
 * the model gone and cold-starts it again: slower, still correct.)
 */
static void count_bytes(const struct worker *w, const struct lnode *head, const struct wslot *self,
			uint64_t *busy, uint64_t *freeable)
{
	const struct lnode *n;

	for (n = head->next; n != head; n = n->next) {
		const struct wslot *sl = container_of(n, struct wslot, lru);

		if (sl == self || (slot_in_use(sl) && !w->room_force))
			*busy += sl->bytes;
		else
			*freeable += sl->bytes;
	}
}

/* Decay of a model's request rate: requests further back than this count
 * for less than 1/e. */
#define RATE_TAU_NS (30 * 1000000000.0)
/* Reload speed assumed for a whole-model load without a plan. */
#define WHOLE_LOAD_BPS 25e9
/* A device idle this long after a run gives back large activation memory. */
#define SHRINK_IDLE_NS 1000000000ull

static double rate_at(const struct wslot *sl, uint64_t now)
{
	return now > sl->rate_t ? sl->rate * exp(-(double)(now - sl->rate_t) / RATE_TAU_NS) :
				  sl->rate;
}

/* A request for sl arrived at now: its decaying rate (per second). */
static void count_rate(struct wslot *sl, uint64_t now)
{
	sl->rate = rate_at(sl, now) + 1e9 / RATE_TAU_NS;
	sl->rate_t = MAX(sl->rate_t, now);
}

/* What evicting sl is expected to cost per second, per byte it frees:
 * the time of bringing it back times how often it is asked for. */
static double evict_cost(const struct wslot *sl, uint64_t now)
{
	const struct graph *g = repo_entry_graph(sl->e);
	uint64_t freed = sl->by_plan ? sl->bytes - sl->keep : sl->bytes;
	double reload_ns = sl->by_plan && sl->plan ? sl->plan->total_ns :
						     (double)g->weights_size / WHOLE_LOAD_BPS * 1e9;

	return rate_at(sl, now) * reload_ns / (double)(freed ? freed : 1);
}

/* The idle resident model to evict (never self): the least recently used,
 * or under the cost policy the cheapest to lose (ties: the least recently
 * used). NULL if none is idle. busy: pick among the models in use instead
 * (a forced wait for room, see defer_room). */
static struct wslot *pick_victim(struct worker *w, const struct wslot *self, bool busy)
{
	struct wslot *best = NULL;
	double best_cost = 0;
	uint64_t now = clock_ns();
	struct lnode *n;

	for (n = w->lru.prev; n != &w->lru; n = n->prev) {
		struct wslot *sl = container_of(n, struct wslot, lru);
		double c;

		if (sl == self || slot_in_use(sl) != busy)
			continue;
		if (w->evict_policy == SCHED_EVICT_LRU)
			return sl;
		c = evict_cost(sl, now);
		if (!best || c < best_cost) {
			best = sl;
			best_cost = c;
		}
	}
	return best;
}

static bool drop_among(struct worker *w, const struct wslot *self, bool count, bool busy)
{
	struct wslot *victim = pick_victim(w, self, busy);
	struct lnode *n;

	if (victim) {
		evict(w, victim);
		if (count)
			ctr_add(&w->evictions, 1);
		return true;
	}
	for (n = w->standby.prev; n != &w->standby; n = n->prev) {
		struct wslot *sl = container_of(n, struct wslot, lru);

		if (sl == self || slot_in_use(sl) != busy)
			continue;
		destroy(w, sl);
		return true;
	}
	return false;
}

/*
 * Free one idle model's device memory (never self's): evict the least
 * recently used resident one (a cold model goes to standby, freeing its
 * weights), else destroy the least recently used kept cold model. count:
 * an eviction counts as one (for /metrics). false if there is none. In a
 * forced wait for room, models in use go next, the same way (their queued
 * requests cold-start them again).
 */
static bool drop_one(struct worker *w, const struct wslot *self, bool count)
{
	if (drop_among(w, self, count, false))
		return true;
	if (!w->room_force || !drop_among(w, self, count, true))
		return false;
	ctr_add(&w->room_forced, 1);
	return true;
}

/*
 * Make room for need more bytes for self (a kept cold model coming back is
 * never dropped to make its own room): first check that evicting every
 * unused model would be enough (so nothing is evicted in vain), then evict
 * unused models least recently used first, then destroy kept cold models
 * (evicting a cold model frees its weights; destroying it, the rest).
 * When models in use hold the room, the request waits (defer_room).
 */
static int make_room(struct worker *w, const struct wslot *self, uint64_t need)
{
	const struct repo_entry *e = self->e;
	uint64_t freeable = 0, busy = 0;
	char a[32], b[32];

	if (need > w->mem_limit - (self->em ? self->bytes : 0))
		return err_set(DPRT_EDEVICE,
			       "device %s: model '%s' version %u needs %s, more than "
			       "the device memory limit of %s",
			       w->name, e->name, e->version, fmt_bytes(need, a, sizeof(a)),
			       fmt_bytes(w->mem_limit, b, sizeof(b)));
	if (need <= w->mem_limit - w->used)
		return 0;
	count_bytes(w, &w->lru, self, &busy, &freeable);
	count_bytes(w, &w->standby, self, &busy, &freeable);
	if (need > w->mem_limit - w->used + freeable)
		return no_room(w, busy);
	while (need > w->mem_limit - w->used && drop_one(w, self, true))
		;
	return need > w->mem_limit - w->used ? no_room(w, busy) : 0;
}

/* Whether sl's model here is one whose host copy an idle drop may free:
 * idle (or in a forced wait for room, any), not self, and (only) the only
 * device instance when sole. */
static bool host_holder(const struct worker *w, const struct wslot *sl, const struct wslot *self,
			bool sole)
{
	return sl != self && sl->em && (!slot_in_use(sl) || w->room_force) &&
	       (!sole || atomic_load(&sl->e->users) == 1);
}

static struct wslot *pick_holder(const struct worker *w, struct lnode *head,
				 const struct wslot *self, bool sole)
{
	struct lnode *n;

	for (n = head->prev; n != head; n = n->prev) {
		struct wslot *sl = container_of(n, struct wslot, lru);

		if (host_holder(w, sl, self, sole))
			return sl;
	}
	return NULL;
}

/*
 * Give one idle model's host copy back (never self's): a device model
 * uses its host copy while it exists (the CPU backend and DHA layers read
 * it in place), so the model leaves the device. Kept cold models go
 * before resident ones, the least recently used first, and models that
 * are the copy's only user before the others. false if there is none.
 */
static bool drop_host_holder(struct worker *w, const struct wslot *self)
{
	struct wslot *sl = NULL;
	int sole;

	for (sole = 1; sole >= 0 && !sl; sole--) {
		sl = pick_holder(w, &w->standby, self, sole);
		if (!sl)
			sl = pick_holder(w, &w->lru, self, sole);
	}
	if (!sl)
		return false;
	log_debug("%s: '%s' v%u leaves the device for host memory", w->name, sl->e->name,
		  sl->e->version);
	if (atomic_load(&sl->resident)) {
		evict(w, sl);
		ctr_add(&w->evictions, 1);
	}
	if (sl->em)
		destroy(w, sl);
	return true;
}

/* KICK_HOST: idle models give their host copies back while host memory
 * is short. */
static void drop_for_host(struct worker *w)
{
	while (repo_host_short(w->repo) && drop_host_holder(w, NULL))
		;
}

/*
 * The host copy of sl's weights. When host memory is full of copies held
 * by device models, idle models here give theirs back until it fits; if
 * that is not enough, the other workers are asked to (their idle models
 * go, and a later request finds the room).
 */
static void kick_others(struct worker *w, bool self);

static int acquire_host(struct worker *w, struct wslot *sl, const void **weights)
{
	int ret;

	for (;;) {
		ret = repo_acquire(w->repo, sl->e, weights);
		if (ret != DPRT_EOVERLOAD || !drop_host_holder(w, sl))
			break;
		err_clear();
	}
	if (ret == DPRT_EOVERLOAD) {
		kick_others(w, false);
		w->room_short = true; /* it may wait for room (defer_room) */
	}
	return ret;
}

/* Cold start: bring req's model onto the device. */
/*
 * A GPU's context, streams and handles belong to the thread that opened
 * it, so the device is opened by the thread that polls the worker, when
 * its first model arrives, and closed by it (worker_release_device).
 */
static int worker_open_device(struct worker *w)
{
	int ret;

	if (w->devh)
		return 0;
	ret = w->ops->dev_open(w->dev.id, &w->devh);
	if (ret)
		return err_set(DPRT_EDEVICE, "device %s: %s", w->name, err_msg(ret));
	log_info("%s: %s", w->name, w->ops->dev_label(w->devh));
	if (w->dev.kind == SCHED_DEV_CPU && w->s->o.cpu_dev_capacity)
		cpu_dev_set_capacity(w->devh, w->s->o.cpu_dev_capacity);
	sched_cold_join(w);
	return 0;
}

/* Out of device memory below the configured limit (no --gpu-mem-limit,
 * or one above what the GPU has): free one idle model's memory. */
static bool free_one(struct worker *w, const struct wslot *self)
{
	if (!drop_one(w, self, false))
		return false;
	log_info("%s: out of device memory: freed the least recently used idle model", w->name);
	return true;
}

/* Back under the limit after a model turned out to hold more than was
 * charged before it was made (a cold model's plans, arenas and graphs are
 * only known once made). */
static void trim(struct worker *w, const struct wslot *self)
{
	while (w->used > w->mem_limit && drop_one(w, self, true))
		;
}

static bool out_of_memory(int ret)
{
	return ret == -ENOMEM || ret == DPRT_EOVERLOAD;
}

/*
 * Find sl's plan once (cold.c). Without one (auto mode and nothing
 * stored, or planning failed) the model is loaded whole: PREP_FAILED,
 * logged once.
 */
static void prepare_slot(struct worker *w, struct wslot *sl, const void *weights)
{
	int ret;

	if (sl->prep != PREP_NONE)
		return;
	ret = sched_find_plan(w, sl->e, weights, &sl->plan);
	/* out of memory while profiling: whole this time, try again later */
	sl->prep = !ret ? PREP_DONE : out_of_memory(ret) ? PREP_NONE : PREP_FAILED;
	if (!ret) {
		ctr_add(&w->plans_made, 1);
		return;
	}
	if (ret != -ENOENT)
		log_warn("%s: '%s' v%u: no plan, it is loaded whole: %s", w->name, sl->e->name,
			 sl->e->version, err_msg(ret));
	err_clear();
}

/* A cold model by plan if the worker's cold mode has one for e (see
 * cold.c); else the backend's whole-model load. */
static int create_model(struct worker *w, struct wslot *sl, const void *weights)
{
	const struct graph *g = repo_entry_graph(sl->e);
	int ret;

	sl->by_plan = false;
	ctr_add(sl->made_once ? &w->recreations : &w->creations, 1);
	sl->made_once = true;
	if (w->cold_mode != WCOLD_LOAD) {
		prepare_slot(w, sl, weights);
		if (sl->prep == PREP_DONE) {
			ret = w->ops->cold_create(w->devh, g, weights, sl->plan, &sl->em);
			sl->by_plan = !ret;
			return ret;
		}
	}
	return w->ops->model_create(w->devh, g, weights, &sl->em);
}

/* Make sl's model, evicting on device OOM; *held: the device bytes the
 * new model took. */
static int create_evicting(struct worker *w, struct wslot *sl, const void *weights, uint64_t *held)
{
	uint64_t used0;
	int ret;

	for (;;) {
		used0 = w->ops->dev_used(w->devh);
		ret = create_model(w, sl, weights);
		*held = ret ? 0 : w->ops->dev_used(w->devh) - used0;
		if (!out_of_memory(ret) || !free_one(w, sl))
			return ret;
	}
}

static void count_cold(struct worker *w, struct wslot *sl, struct sched_req *req, uint64_t t0,
		       uint64_t bytes)
{
	ctr_add(&w->cold, 1);
	ctr_add(&w->bytes_loaded, bytes);
	ctr_add(&sl->cold, 1);
	ctr_add(&sl->bytes_loaded, bytes);
	req->flags |= SCHED_F_COLD;
	req->t_load = clock_ns() - t0;
}

static void make_resident(struct worker *w, struct wslot *sl)
{
	lnode_del(&sl->lru);
	lnode_add_head(&w->lru, &sl->lru);
	atomic_store(&sl->resident, true);
	publish_residency(w, 1);
}

/* Device bytes free under the memory limit now (0 when over it). */
static uint64_t room_free(const struct worker *w)
{
	return w->mem_limit - MIN(w->used, w->mem_limit);
}

/* An idle model whose eviction costs more than this many times the
 * cheapest one's is not evicted to keep a cold model's addresses. */
#define PLACE_SLACK 4.0

/*
 * A kept cold model that needs room made comes back where its weights were
 * last time when the models now there are idle and not much dearer to lose
 * than the cheapest
 * (evict_cost, within PLACE_SLACK): then its graphs need no re-recording.
 * Evicts them (cheap: ranges go back to the pool, nothing is destroyed).
 * Under the LRU policy, or without addresses (CPU devices), nothing.
 */
static void make_place(struct worker *w, struct wslot *self)
{
	struct wslot *hit[8];
	double worst = 0, cheapest = 0;
	uint64_t now = clock_ns();
	struct lnode *n;
	uint32_t k = 0, i;
	bool any = false;

	if (!w->evict_place || !w->ops->cold_overlaps || !self->by_plan || !self->em)
		return;
	/* With room elsewhere it lands there (its run goes eagerly, the graphs
	 * are re-recorded when idle): evicting a model that fits would only
	 * cost that model a cold start. */
	if (w->mem_limit == UINT64_MAX || self->load <= room_free(w))
		return;
	for (n = w->lru.next; n != &w->lru; n = n->next) {
		struct wslot *sl = container_of(n, struct wslot, lru);
		bool busy = slot_in_use(sl);
		double c = 0;

		if (sl == self || !sl->by_plan || !sl->em)
			continue;
		if (!busy) {
			c = evict_cost(sl, now);
			cheapest = any ? MIN(cheapest, c) : c;
			any = true;
		}
		if (!w->ops->cold_overlaps(self->em, sl->em))
			continue;
		if (busy || k == ARRAY_SIZE(hit))
			return; /* it lands elsewhere */
		hit[k++] = sl;
		worst = MAX(worst, c);
	}
	if (!k || worst > PLACE_SLACK * cheapest + 1e-30)
		return;
	for (i = 0; i < k; i++) {
		evict(w, hit[i]);
		ctr_add(&w->evictions, 1);
		ctr_add(&w->place_evictions, 1);
	}
}

/* A kept cold model comes back: room for its weights, which its next run
 * brings in by its plan (the cold start proper runs in run_one). */
static int load_kept(struct worker *w, struct wslot *sl, struct sched_req *req)
{
	uint64_t t0 = clock_ns();
	int ret;

	make_place(w, sl);
	ret = make_room(w, sl, sl->load);
	if (ret)
		return ret;
	sl->bytes = sl->keep + sl->load;
	w->used += sl->load;
	make_resident(w, sl);
	count_cold(w, sl, req, t0, 0); /* bytes: counted by the cold start */
	return 0;
}

/*
 * Make sl's model (room made first) and make it resident: a cold model
 * comes evicted, holding what it keeps while evicted; its weights are
 * charged until its first cold start measures them. The host copy is
 * acquired by the caller; on failure the caller releases it.
 */
static int make_model(struct worker *w, struct wslot *sl, const void *weights)
{
	const struct repo_entry *e = sl->e;
	const struct graph *g = repo_entry_graph(e);
	char why[SCHED_MSG_LEN];
	uint64_t held, t0 = clock_ns();
	int ret;

	ret = make_room(w, sl, g->weights_size);
	if (ret)
		return ret;
	ret = create_evicting(w, sl, weights, &held);
	sl->make_ns = clock_ns() - t0;
	if (ret) {
		snprintf(why, sizeof(why), "%s", err_msg(ret));
		sl->em = NULL;
		sl->by_plan = false;
		return err_set(DPRT_EDEVICE, "device %s: cannot load model '%s' version %u: %s",
			       w->name, e->name, e->version, why);
	}
	sl->keep = sl->by_plan ? held : 0;
	sl->load = sl->by_plan ? g->weights_size : 0;
	sl->bytes = sl->by_plan ? sl->keep + sl->load : g->weights_size;
	w->used += sl->bytes;
	w->headroom = MAX(w->headroom, g->weights_size);
	make_resident(w, sl);
	trim(w, sl);
	return 0;
}

static int load_model(struct worker *w, struct wslot *sl, struct sched_req *req)
{
	struct repo_entry *e = sl->e;
	const void *weights;
	uint64_t t0 = clock_ns();
	int ret;

	if (sl->em) {
		ctr_add(&w->standby_hits, 1);
		return load_kept(w, sl, req);
	}
	ret = worker_open_device(w);
	if (ret)
		return ret;
	if (sl->held_ref) { /* the reader's reference becomes the model's */
		sl->held_ref = false;
		weights = repo_entry_host(e, NULL);
	} else {
		ret = acquire_host(w, sl, &weights);
		if (ret)
			return ret;
	}
	ret = make_model(w, sl, weights);
	if (ret) {
		repo_release(w->repo, e);
		return ret;
	}
	count_cold(w, sl, req, t0, sl->by_plan ? 0 : repo_entry_graph(e)->weights_size);
	return 0;
}

/* ------------------------------------------------------------ running */

static bool same_shape(const struct shape *a, const struct shape *b)
{
	return a->dtype == b->dtype && a->ndim == b->ndim &&
	       !memcmp(a->dims, b->dims, sizeof(a->dims[0]) * a->ndim);
}

static int copy_output(const struct graph *g, uint32_t i, struct tview *dst,
		       const struct tview *src, uint64_t row_off)
{
	if (!src->data || src->nbytes < dst->nbytes + row_off)
		return err_set(-EPROTO,
			       "output '%s': the backend returned %llu bytes, %llu "
			       "expected",
			       g->outputs[i].name, (unsigned long long)src->nbytes,
			       (unsigned long long)(dst->nbytes + row_off));
	memcpy(dst->data, (const char *)src->data + row_off, dst->nbytes);
	return 0;
}

static int copy_outputs(const struct graph *g, struct sched_req *req, const struct tview *out)
{
	uint32_t i;
	int ret;

	for (i = 0; i < req->n_out; i++) {
		if (!(req->out_mask >> i & 1))
			continue;
		if (!same_shape(&req->out[i].shape, &out[i].shape))
			return err_set(-EPROTO,
				       "output '%s': the backend's shape differs from "
				       "the inferred one",
				       g->outputs[i].name);
		ret = copy_output(g, i, &req->out[i], &out[i], 0);
		if (ret)
			return ret;
	}
	return 0;
}

/* A cold model's cold start measures what its weights take on the device. */
static void charge_load(struct worker *w, struct wslot *sl, uint64_t load)
{
	w->used = w->used - sl->load + load;
	sl->load = load;
	sl->bytes = sl->keep + load;
	atomic_store_explicit(&w->resident_bytes, w->used, memory_order_relaxed);
}

/* Run sl's model; a cold model's run may be its cold start, which takes
 * device memory: on OOM, evict another model and try again. */
static int run_model(struct worker *w, struct wslot *sl, const struct tview *in, struct tview *out)
{
	struct exec_cold_info info;
	uint64_t used0, t0;
	bool cold;
	int ret;

	if (!sl->by_plan)
		return w->ops->model_run(sl->em, in, out);
	for (;;) {
		cold = !w->ops->cold_resident(sl->em);
		used0 = w->ops->dev_used(w->devh);
		t0 = clock_ns();
		ret = w->ops->cold_run(sl->em, in, out, &info);
		if (!ret && cold) {
			log_debug("%s: '%s' v%u: cold run %.3f ms: %.1f MB loaded over %u link%s, "
				  "%.1f MB read in place%s%s, fix-up %.3f ms",
				  w->name, sl->e->name, sl->e->version, (clock_ns() - t0) / 1e6,
				  info.bytes_loaded / 1e6, info.links, info.links == 1 ? "" : "s",
				  info.bytes_dha / 1e6, info.moved ? ", moved" : "",
				  info.deferred ? ", eager (graphs re-recorded later)" : "",
				  info.fixup_ns / 1e6);
			sched_cold_count(w, sl->plan, &info);
			charge_load(w, sl, w->ops->dev_used(w->devh) - used0);
			ctr_add(&w->bytes_loaded, info.bytes_loaded);
			ctr_add(&sl->bytes_loaded, info.bytes_loaded);
			ctr_add(&w->cold_moved, info.moved);
			ctr_add(&w->cold_deferred, info.deferred);
			ctr_add(&w->fixup_ns, info.fixup_ns);
			if (info.deferred && w->ops->model_tidy && !sl->untidy) {
				sl->untidy = true;
				w->untidy++;
			}
			trim(w, sl);
		}
		if (!out_of_memory(ret) || !cold || !free_one(w, sl))
			return ret;
		err_clear();
	}
}

static int run_one(struct worker *w, struct wslot *sl, struct sched_req *req)
{
	const struct graph *g = repo_entry_graph(sl->e);
	struct tview out[SCHED_MAX_IO];
	uint64_t t0 = clock_ns(), t1;
	int ret;

	memset(out, 0, sizeof(out));
	ret = run_model(w, sl, req->in, out);
	t1 = clock_ns();
	if (!ret)
		ret = copy_outputs(g, req, out);
	req->t_exec = clock_ns() - t0;
	if (req->t_exec - (t1 - t0) > 100000) /* over 0.1 ms */
		log_debug("%s: '%s' v%u: outputs copied in %.3f ms", w->name, sl->e->name,
			  sl->e->version, (req->t_exec - (t1 - t0)) / 1e6);
	w->shrink_due = t0 + req->t_exec + SHRINK_IDLE_NS;
	return ret;
}

unsigned hist_bucket(uint64_t ns)
{
	unsigned i;

	for (i = 0; i < SCHED_HIST_BUCKETS - 1; i++)
		if (ns <= sched_hist_le_ns[i])
			return i;
	return SCHED_HIST_BUCKETS - 1;
}

static void count(struct worker *w, struct wslot *sl, const struct sched_req *req)
{
	uint64_t lat = req->t_queue + req->t_load + req->t_exec;

	ctr_add(&w->requests, 1);
	ctr_add(&sl->requests, 1);
	if (req->status) {
		ctr_add(&w->failures, 1);
		ctr_add(&sl->failures, 1);
	}
	ctr_add(&sl->lat_sum, lat);
	ctr_add(&sl->hist[hist_bucket(lat)], 1);
}

/* Finish a request: results, counters, then hand it back to its poster.
 * After chan_push the record belongs to the poster again. */
static void complete(struct worker *w, struct wslot *sl, struct sched_req *req, int ret)
{
	struct sched_chan *ch = req->chan;

	if (ret) {
		req_fail(req, ret);
	} else {
		req->status = 0;
		req->msg[0] = 0;
	}
	count(w, sl, req);
	/* Release: the worker is done with everything the request counted
	 * for before the model may be seen as unused. */
	atomic_fetch_sub_explicit(&sl->wq, 1, memory_order_release);
	/* Before the push, so a poster holding its completion never sees it
	 * counted in flight. sched_stop, which waits for 0, then joins this
	 * thread, so the push below still lands before it returns. */
	atomic_fetch_sub_explicit(&w->s->inflight, 1, memory_order_release);
	chan_push(ch, w->id, req);
	maybe_drop(w, sl);
}

static void touch(struct worker *w, struct wslot *sl)
{
	count_rate(sl, clock_ns());
	if (w->lru.next == &sl->lru)
		return;
	lnode_del(&sl->lru);
	lnode_add_head(&w->lru, &sl->lru);
}

static void set_busy(struct worker *w, uint64_t running)
{
	atomic_store_explicit(&w->busy, running + w->n_pending + (w->held ? 1 : 0),
			      memory_order_relaxed);
}

/* ------------------------------------------------------------ parking */

/*
 * A cold start whose weights are not in host memory does not read them on
 * the worker's thread: a reader thread takes the host copy (repo_acquire,
 * a reference held for the worker until the requests ran), the requests
 * wait in their slot's parked list, and the worker goes on with the
 * others. When the read is done the reader kicks the worker (KICK_HREAD),
 * which runs the parked requests. Should the read find host memory full
 * of copies held by models on this device, the requests run through the
 * worker's own path, which drops idle models first and reads here.
 *
 * Streamed: the read is the cold start's first stage. It fills the new
 * copy layer by layer, passing its watermark (mem.h) over each layer once
 * checked, and kicks the worker early, once the read's remaining time at
 * the rate so far is at most the model's predicted cold-start time (its
 * plan's, plus what making the model took last time; a quarter of the
 * read when the plan predicts nothing; at least disk_lead_us). The worker
 * then makes the cold model on the copy being filled, and its cold start
 * waits for the watermark before each layer (exec_ops.cold_stream), so
 * the device is taken for about the cold start, not the read. The copy becomes the entry's (READY) only once
 * wholly read and checked; a failed read fails the cold start and the
 * parked requests with the read's error.
 */
struct hread {
	struct worker *w;
	struct wslot *sl;
	int ret;
	_Atomic bool done;  /* ret and msg are written */
	_Atomic bool early; /* streamed: the cold start may begin */
	bool stream;	    /* the cold start can stream (set before the read) */
	bool kicked;	    /* reader: early was set */
	bool taken;	    /* worker: the model took the reader's reference */
	bool no_stream;	    /* worker: streaming failed, wait for done */
	uint64_t lead_ns;   /* predicted cold start, 0 = unknown */
	uint64_t min_lead_ns;
	uint64_t size;
	struct hoststore *hs; /* the copy being filled, a reference (reader) */
	char msg[SCHED_MSG_LEN];
};

#define HREAD_LEAD_NS 2000000ull
#define HREAD_UNKNOWN_FRACTION 0.25

/* How long a reader waits for idle models to give host memory back. */
#define HREAD_WAIT_NS 100000000ull
#define HREAD_TRIES 20

static void kick_others(struct worker *w, bool self)
{
	uint32_t i;

	for (i = 0; i < w->s->n_workers; i++)
		if (self || w->s->w[i] != w)
			worker_kick(w->s->w[i], KICK_HOST);
}

/*
 * The reader's watch (mem.h): keep a reference to the copy being filled,
 * and kick the worker once the rest of the read takes no longer than the
 * cold start that waits for it.
 */
static void hread_watch(void *arg, struct hoststore *hs, uint32_t layers, uint64_t bytes,
			uint64_t ns)
{
	struct hread *hr = arg;
	double left_ns, lead;

	if (!layers) {
		if (!hr->hs)
			hr->hs = hoststore_get(hs); /* published by early or done */
		return;
	}
	if (!hr->stream || hr->kicked || layers == HOSTSTORE_WM_FAILED || !bytes || hs != hr->hs)
		return;
	left_ns = (double)ns * (double)(hr->size - MIN(bytes, hr->size)) / (double)bytes;
	lead = hr->lead_ns ? (double)hr->lead_ns : HREAD_UNKNOWN_FRACTION * ((double)ns + left_ns);
	if (left_ns > MAX(lead, (double)hr->min_lead_ns))
		return;
	hr->kicked = true;
	/* Release: hr->hs before early; pairs with resume_parked's acquire. */
	atomic_store_explicit(&hr->early, true, memory_order_release);
	worker_kick(hr->w, KICK_HREAD);
}

/* The host copy of e, for a reader, its read watched: when host memory
 * is full of copies held by device models, every worker is asked to drop
 * its idle ones (KICK_HOST) and the read waits for them, a while. */
static int hread_acquire(struct hread *hr, const void **weights)
{
	struct hoststore_watch wt = {hread_watch, hr};
	struct worker *w = hr->w;
	int ret, i;

	for (i = 0;; i++) {
		ret = repo_acquire_watched(w->repo, hr->sl->e, &wt, weights);
		if (ret != DPRT_EOVERLOAD || i == HREAD_TRIES)
			return ret;
		err_clear();
		kick_others(w, true);
		repo_wait_room(w->repo, HREAD_WAIT_NS);
	}
}

static void *hread_main(void *arg)
{
	struct hread *hr = arg;
	struct worker *w = hr->w;
	const void *weights;
	struct sched *s = w->s;

	hr->ret = hread_acquire(hr, &weights);
	if (hr->hs) /* read from the package: before done (completions) */
		ctr_add(&w->repo->disk_colds, 1);
	if (hr->ret)
		snprintf(hr->msg, sizeof(hr->msg), "%s", err_msg(hr->ret));
	/* Release: ret and msg before done; pairs with resume's acquire. */
	atomic_store_explicit(&hr->done, true, memory_order_release);
	worker_kick(w, KICK_HREAD);
	/* Release: the last touch of w; sched_stop waits for 0 before it
	 * lets the workers go (acquire). */
	atomic_fetch_sub_explicit(&s->hreads, 1, memory_order_release);
	return NULL;
}

/* Start reading sl's host copy on a reader thread; false if none started. */
static bool hread_start(struct worker *w, struct wslot *sl)
{
	struct hread *hr = calloc(1, sizeof(*hr));
	pthread_attr_t at;
	pthread_t th;
	bool ok;

	if (!hr)
		return false;
	hr->w = w;
	hr->sl = sl;
	hr->size = repo_entry_graph(sl->e)->weights_size;
	/* a cold model by a plan found before, on a backend that streams */
	hr->stream = w->ops->cold_stream && w->cold_mode != WCOLD_LOAD && sl->prep == PREP_DONE &&
		     sl->plan;
	/* the cold start begins once the model is made (on the copy being
	 * filled), so the kick leads by both */
	hr->lead_ns = hr->stream && sl->plan->total_ns > 0 ?
			      (uint64_t)sl->plan->total_ns + sl->make_ns :
			      0;
	hr->min_lead_ns = w->s->o.disk_lead_us ? (uint64_t)w->s->o.disk_lead_us * 1000 :
						 HREAD_LEAD_NS;
	sl->hr = hr;
	atomic_fetch_add(&w->s->hreads, 1);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	ok = !pthread_create(&th, &at, hread_main, hr);
	pthread_attr_destroy(&at);
	if (!ok) {
		atomic_fetch_sub(&w->s->hreads, 1);
		sl->hr = NULL;
		free(hr);
	}
	return ok;
}

/* Whether head (a list for sl) waits for sl's host copy (parked). */
static bool park(struct worker *w, struct wslot *sl, struct sched_req *head, uint64_t now)
{
	struct sched_req *tail, *r;

	if (!sl->hr && (sl->sync_load || atomic_load(&sl->resident) || sl->em ||
			repo_entry_host(sl->e, NULL) || !hread_start(w, sl)))
		return false;
	for (tail = r = head; r; r = r->next) {
		r->worker = w->id;
		r->t_queue = now > r->t_post ? now - r->t_post : 0;
		tail = r;
	}
	if (sl->parked)
		sl->parked_tail->next = head;
	else
		sl->parked = head;
	sl->parked_tail = tail;
	if (!lnode_linked(&sl->park))
		lnode_add_head(&w->parked, &sl->park);
	return true;
}

static unsigned handle(struct worker *w, struct sched_req *req, uint64_t now);

/* Run the parked requests of sl, whose read ended (one by one). */
static unsigned resume(struct worker *w, struct wslot *sl, uint64_t now)
{
	struct hread *hr = sl->hr;
	struct sched_req *r = sl->parked, *next;
	unsigned n = 0;

	lnode_del(&sl->park);
	sl->parked = sl->parked_tail = NULL;
	sl->hr = NULL;
	sl->sync_load = hr->ret == DPRT_EOVERLOAD;
	sl->held_ref = !hr->ret && !hr->taken;
	for (; r; r = next, n++) {
		next = r->next;
		r->next = NULL;
		if (hr->ret && !sl->sync_load) {
			err_set(hr->ret, "%s", hr->msg);
			complete(w, sl, r, hr->ret);
			continue;
		}
		(void)handle(w, r, now); /* the wait for the read counts as queueing */
	}
	sl->sync_load = false;
	if (sl->held_ref) /* not taken by a model made here */
		repo_release(w->repo, sl->e);
	sl->held_ref = false;
	hoststore_put(hr->hs);
	free(hr);
	return n;
}

/* Wait for the reader's result (streamed: the watermark has passed every
 * layer, or failed, so what is left is bookkeeping). */
static void hread_wait(struct hread *hr)
{
	unsigned spins = 0;

	/* Acquire: pairs with the reader's release of done. */
	while (!atomic_load_explicit(&hr->done, memory_order_acquire))
		if (++spins > 64)
			usleep(20);
}

/* Take a model made on a copy that did not become the entry's off the
 * device (it holds no host reference). */
static void unmake(struct worker *w, struct wslot *sl)
{
	if (atomic_load(&sl->resident)) {
		lnode_del(&sl->lru);
		atomic_store(&sl->resident, false);
		publish_residency(w, -1);
	}
	destroy_model(w, sl);
}

/* The streamed cold start's end: the read's result decides the model's
 * fate. Its reference on the copy is the reader's. */
static int stream_end(struct worker *w, struct wslot *sl, int ret)
{
	struct hread *hr = sl->hr;

	w->ops->cold_stream(sl->em, NULL);
	hread_wait(hr);
	if (hr->ret) {
		unmake(w, sl);
		return err_set(hr->ret, "%s", hr->msg);
	}
	hr->taken = true;
	/* another entry's copy of the package was listed first: this model
	 * reads a copy about to go, so it goes (the next request makes one) */
	if (hoststore_base(hr->hs) != repo_entry_host(sl->e, NULL)) {
		if (atomic_load(&sl->resident))
			evict(w, sl);
		if (sl->em)
			destroy(w, sl);
	}
	return ret;
}

/* Cold-start req's model on the copy still being read (hr->hs). */
static int stream_cold(struct worker *w, struct wslot *sl, struct sched_req *req)
{
	struct hread *hr = sl->hr;
	const _Atomic uint32_t *wm = hoststore_watermark(hr->hs);
	uint64_t t0 = clock_ns();
	int ret;

	ret = worker_open_device(w);
	if (!ret)
		ret = make_model(w, sl, hoststore_base(hr->hs));
	if (ret)
		return ret;
	ret = sl->by_plan ? w->ops->cold_stream(sl->em, wm) : -EOPNOTSUPP;
	if (ret) { /* made from weights not read yet: made again later */
		log_debug("%s: '%s' v%u: the cold start waits for the whole read: %s", w->name,
			  sl->e->name, sl->e->version, err_msg(ret));
		unmake(w, sl);
		return -EOPNOTSUPP;
	}
	count_cold(w, sl, req, t0, 0);
	/* Acquire: pairs with the reader's release of the watermark. */
	if (atomic_load_explicit(wm, memory_order_acquire) < repo_entry_graph(sl->e)->n_layers)
		ctr_add(&w->repo->disk_streamed, 1);
	touch(w, sl);
	ret = run_one(w, sl, req);
	return stream_end(w, sl, ret);
}

/* Early kick: the first parked request of sl starts the cold start while
 * the read goes on; the others run once it is done. */
static unsigned resume_stream(struct worker *w, struct wslot *sl, uint64_t now)
{
	struct sched_req *r = sl->parked;
	int ret;

	sl->parked = r->next;
	r->next = NULL;
	if (!sl->parked)
		sl->parked_tail = NULL;
	set_busy(w, 1);
	now = MAX(now, clock_ns());
	r->t_queue = now > r->t_post ? now - r->t_post : 0;
	w->room_short = false;
	ret = stream_cold(w, sl, r);
	/* parked again: it waits for the read (and, with no room, goes on to
	 * wait for room once read) */
	if (ret == -EOPNOTSUPP || (ret == DPRT_EOVERLOAD && w->room_short)) {
		err_clear();
		r->next = sl->parked;
		sl->parked = r;
		if (!sl->parked_tail)
			sl->parked_tail = r;
		sl->hr->no_stream = true;
		set_busy(w, 0);
		return 0;
	}
	complete(w, sl, r, ret);
	hread_wait(sl->hr); /* done unless the model could not be made */
	set_busy(w, 0);
	return 1 + resume(w, sl, now);
}

/* KICK_HREAD: run the requests whose host copies were read. */
static unsigned resume_parked(struct worker *w, uint64_t now)
{
	struct lnode *n, *prev;
	unsigned done = 0;

	for (n = w->parked.prev; n != &w->parked; n = prev) {
		struct wslot *sl = container_of(n, struct wslot, park);

		prev = n->prev;
		/* Acquire: pairs with the reader's releases of done and early. */
		if (atomic_load_explicit(&sl->hr->done, memory_order_acquire))
			done += resume(w, sl, now);
		else if (!sl->hr->no_stream &&
			 atomic_load_explicit(&sl->hr->early, memory_order_acquire))
			done += resume_stream(w, sl, now);
	}
	return done;
}

/* ------------------------------------------------------------ room */

static uint32_t list_len(const struct sched_req *head)
{
	uint32_t n = 0;

	for (; head; head = head->next)
		n++;
	return n;
}

/*
 * A cold start found the device (no_room) or host memory (acquire_host)
 * full and the room held by models with requests queued: rather than fail,
 * the request (or batch,
 * head) waits in room_wait, oldest first, while those requests run; once
 * the models are idle the retry evicts them as usual. So that a stream of
 * requests for resident models cannot starve it, the wait is bounded: once
 * every request queued when it began has been dequeued (room_mark), the
 * retry may evict models in use too (room_force), whose requests then
 * cold-start them again. false (the caller completes head with ret) for
 * any other failure, or a forced retry that still found no room.
 */
static bool room_due(const struct worker *w, const struct sched_req *head)
{
	return w->taken + 1 >= head->room_mark;
}

static bool defer_room(struct worker *w, struct sched_req *head, int ret)
{
	bool again = head->room_mark != 0;
	uint32_t n = list_len(head);

	if (ret != DPRT_EOVERLOAD || !w->room_short || (again && room_due(w, head)))
		return false;
	err_clear();
	if (!again) {
		/* every request dequeued so far ran or is head's; those queued
		 * now are dequeued by the time taken reaches the mark */
		head->room_mark = w->taken + ck_ring_size(&w->ring) + 1;
		ctr_add(&w->room_waits, n);
		log_debug("%s: '%s' v%u waits for room held by models in use", w->name,
			  head->model->name, head->model->version);
	}
	head->wait = NULL;
	if (again) { /* retried from the front: it stays there */
		head->wait = w->room_wait;
		w->room_wait = head;
		if (!w->room_wait_tail)
			w->room_wait_tail = head;
	} else {
		if (w->room_wait_tail)
			w->room_wait_tail->wait = head;
		else
			w->room_wait = head;
		w->room_wait_tail = head;
	}
	atomic_fetch_add_explicit(&w->n_room_wait, n, memory_order_relaxed);
	return true;
}

static unsigned handle_batch(struct worker *w, struct sched_req *head, uint64_t now);

/* Retry the requests waiting for room, oldest first, until one waits on. */
static unsigned retry_room(struct worker *w, uint64_t now)
{
	struct sched_req *head;
	unsigned done = 0, n;

	while ((head = w->room_wait)) {
		w->room_wait = head->wait;
		if (!w->room_wait)
			w->room_wait_tail = NULL;
		head->wait = NULL;
		atomic_fetch_sub_explicit(&w->n_room_wait, list_len(head), memory_order_relaxed);
		w->room_force = room_due(w, head);
		n = head->next ? handle_batch(w, head, now) : handle(w, head, now);
		w->room_force = false;
		if (!n)
			break; /* waits on, at the front */
		done += n;
	}
	return done;
}

/* Run one request, cold-starting its model if it is not resident. now:
 * the poll's time; a request's wait ends when its handling starts, which
 * may be well after (earlier requests of the same poll ran). */
static unsigned handle(struct worker *w, struct sched_req *req, uint64_t now)
{
	struct wslot *sl = &req->model->ws[w->id];
	int ret = 0;

	now = MAX(now, clock_ns());
	req->next = NULL;
	if (park(w, sl, req, now))
		return 1;
	set_busy(w, 1);
	req->worker = w->id;
	req->t_queue = now > req->t_post ? now - req->t_post : 0;
	w->room_short = false;
	if (!atomic_load(&sl->resident))
		ret = load_model(w, sl, req);
	if (ret && defer_room(w, req, ret)) {
		set_busy(w, 0);
		return 0;
	}
	if (!ret) {
		touch(w, sl);
		ret = run_one(w, sl, req);
	}
	complete(w, sl, req, ret);
	set_busy(w, 0);
	return 1;
}

/* ------------------------------------------------------------ batching */

/*
 * Batching fuses requests for one model whose inputs differ only in dim 0,
 * the batch dim of every input of the signature: the inputs are
 * concatenated along dim 0, run once, and each output is cut back into
 * per-request rows along dim 0. Whatever fails in the fused run is retried
 * request by request, so a bad input fails only its own request.
 */
static bool batchable(const struct sched_req *a, const struct sched_req *b)
{
	const struct graph *g = repo_entry_graph(a->model);
	uint32_t i;

	if (a->model != b->model || a->out_mask != b->out_mask)
		return false;
	for (i = 0; i < g->n_inputs; i++) {
		const struct shape *x = &a->in[i].shape, *y = &b->in[i].shape;

		if (x->ndim != y->ndim || x->dtype != y->dtype)
			return false;
		if (x->ndim &&
		    (g->inputs[i].dims[0] != DIM_BATCH ||
		     memcmp(x->dims + 1, y->dims + 1, sizeof(x->dims[0]) * (x->ndim - 1))))
			return false;
	}
	return true;
}

static int64_t req_batch(const struct sched_req *req)
{
	uint32_t i;

	for (i = 0; i < req->n_in; i++)
		if (req->in[i].shape.ndim)
			return req->in[i].shape.dims[0];
	return 0;
}

/* Staging memory for fused inputs; grows only when a larger batch shape
 * first shows up, never per request. */
static int stage_reserve(struct worker *w, uint64_t need)
{
	void *p;

	if (need <= w->bbuf_cap)
		return 0;
	need = ALIGN_UP(need * 2, 4096);
	p = aligned_alloc(64, need);
	if (!p)
		return err_set(-ENOMEM, "device %s: cannot allocate %llu bytes to batch inputs",
			       w->name, (unsigned long long)need);
	free(w->bbuf);
	w->bbuf = p;
	w->bbuf_cap = need;
	return 0;
}

/* Concatenate input i of every request of the batch at w->bbuf + *off. */
static void stage_input(struct worker *w, struct sched_req *head, uint32_t i, struct tview *v,
			uint64_t *off)
{
	struct sched_req *r;

	v->shape = head->in[i].shape;
	v->shape.dims[0] = 0;
	v->data = (char *)w->bbuf + *off;
	v->nbytes = 0;
	for (r = head; r; r = r->next) {
		memcpy((char *)w->bbuf + *off, r->in[i].data, r->in[i].nbytes);
		*off += r->in[i].nbytes;
		v->nbytes += r->in[i].nbytes;
		v->shape.dims[0] += r->in[i].shape.dims[0];
	}
	*off = ALIGN_UP(*off, 64);
}

static int stage_inputs(struct worker *w, struct sched_req *head, struct tview *in)
{
	struct sched_req *r;
	uint64_t need = 0, off = 0;
	uint32_t i;
	int ret;

	for (r = head; r; r = r->next)
		for (i = 0; i < r->n_in; i++)
			need += ALIGN_UP(r->in[i].nbytes, 64);
	ret = stage_reserve(w, need);
	if (ret)
		return ret;
	memset(in, 0, sizeof(*in) * SCHED_MAX_IO);
	for (i = 0; i < head->n_in; i++)
		if (head->in[i].shape.ndim)
			stage_input(w, head, i, &in[i], &off);
	return 0;
}

/* Whether fused output i is every request's output i stacked along dim 0. */
static bool splits(const struct sched_req *head, uint32_t i, const struct tview *fused)
{
	const struct sched_req *r;
	int64_t rows = 0;

	for (r = head; r; r = r->next) {
		const struct shape *s = &r->out[i].shape;

		if (s->ndim < 1 || s->ndim != fused->shape.ndim || s->dtype != fused->shape.dtype ||
		    s->dims[0] != req_batch(r) ||
		    memcmp(s->dims + 1, fused->shape.dims + 1, sizeof(s->dims[0]) * (s->ndim - 1)))
			return false;
		rows += s->dims[0];
	}
	return rows == fused->shape.dims[0];
}

/* Cut a fused run's outputs into each request's buffer. */
static int split_outputs(const struct graph *g, struct sched_req *head, const struct tview *out)
{
	uint64_t off[SCHED_MAX_IO] = {0};
	struct sched_req *r;
	uint32_t i;
	int ret;

	for (i = 0; i < head->n_out; i++)
		if ((head->out_mask >> i & 1) && !splits(head, i, &out[i]))
			return err_set(-EPROTO, "output '%s' does not split along dim 0",
				       g->outputs[i].name);
	for (r = head; r; r = r->next) {
		for (i = 0; i < r->n_out; i++) {
			if (!(r->out_mask >> i & 1))
				continue;
			ret = copy_output(g, i, &r->out[i], &out[i], off[i]);
			if (ret)
				return ret;
			off[i] += r->out[i].nbytes;
		}
	}
	return 0;
}

static int run_fused(struct worker *w, struct wslot *sl, struct sched_req *head)
{
	const struct graph *g = repo_entry_graph(sl->e);
	struct tview in[SCHED_MAX_IO], out[SCHED_MAX_IO];
	struct sched_req *r;
	uint64_t t0 = clock_ns();
	int ret;

	ret = stage_inputs(w, head, in);
	if (ret)
		return ret;
	memset(out, 0, sizeof(out));
	ret = run_model(w, sl, in, out);
	if (!ret)
		ret = split_outputs(g, head, out);
	if (ret == -EPROTO)
		sl->no_fuse = true;
	for (r = head; r && !ret; r = r->next) {
		r->flags |= SCHED_F_BATCHED;
		r->t_exec = clock_ns() - t0;
	}
	return ret;
}

/* Complete every request of a list with ret (each gets its own status). */
static unsigned complete_list(struct worker *w, struct wslot *sl, struct sched_req *head, int ret)
{
	struct sched_req *r, *next;
	unsigned n = 0;

	for (r = head; r; r = next, n++) {
		next = r->next;
		r->next = NULL;
		complete(w, sl, r, ret);
	}
	return n;
}

/* Run each request of a list on its own. */
static unsigned run_each(struct worker *w, struct wslot *sl, struct sched_req *head)
{
	struct sched_req *r, *next;
	unsigned n = 0;

	for (r = head; r; r = next, n++) {
		next = r->next;
		r->next = NULL;
		complete(w, sl, r, run_one(w, sl, r));
	}
	return n;
}

/* Run a batch (a list through req->next, all for one model). */
static unsigned handle_batch(struct worker *w, struct sched_req *head, uint64_t now)
{
	struct wslot *sl = &head->model->ws[w->id];
	struct sched_req *r;
	unsigned n;
	int ret = 0;

	now = MAX(now, clock_ns()); /* as in handle() */
	if (park(w, sl, head, now)) {
		for (n = 0, r = head; r; r = r->next)
			n++;
		return n;
	}
	set_busy(w, 1);
	for (r = head; r; r = r->next) {
		r->worker = w->id;
		r->t_queue = now > r->t_post ? now - r->t_post : 0;
	}
	w->room_short = false;
	if (!atomic_load(&sl->resident))
		ret = load_model(w, sl, head);
	if (ret && defer_room(w, head, ret)) {
		set_busy(w, 0);
		return 0;
	}
	for (r = head->next; r && (head->flags & SCHED_F_COLD); r = r->next) {
		r->flags |= SCHED_F_COLD;
		r->t_load = head->t_load;
	}
	if (!ret)
		touch(w, sl);
	if (ret)
		n = complete_list(w, sl, head, ret);
	else if (head->next && !sl->no_fuse && !run_fused(w, sl, head))
		n = complete_list(w, sl, head, 0);
	else
		n = run_each(w, sl, head);
	set_busy(w, 0);
	return n;
}

/* ------------------------------------------------------------ polling */

static struct sched_req *take(struct worker *w)
{
	struct sched_req *req = NULL;

	if (w->held) {
		req = w->held;
		w->held = NULL;
		return req;
	}
	if (!ck_ring_dequeue_mpsc(&w->ring, w->rbuf, &req))
		return NULL;
	HANDOFF_ACQUIRE(req);
	w->taken++;
	return req;
}

/*
 * Add following requests that fit the pending batch, up to max_batch
 * requests and the model's batch limit. The first one that does not fit is
 * held for the next batch (FIFO order is kept). Returns whether the batch
 * should run now: full, cut short by a misfit, or its window closed.
 */
static bool gather(struct worker *w, uint64_t now)
{
	struct sched_req *head = w->pending, *tail = head, *r;
	const struct graph *g = repo_entry_graph(head->model);
	int64_t total = 0;

	for (r = head; r; r = r->next) {
		tail = r;
		total += req_batch(r);
	}
	while (w->n_pending < w->max_batch && (r = take(w))) {
		int64_t b = req_batch(r);

		if (!batchable(head, r) || (g->max_batch > 0 && total + b > g->max_batch)) {
			w->held = r;
			return true;
		}
		r->next = NULL;
		tail->next = r;
		tail = r;
		total += b;
		w->n_pending++;
	}
	return w->n_pending >= w->max_batch || now - w->pending_since >= w->batch_delay_ns;
}

static unsigned poll_batched(struct worker *w, unsigned budget, uint64_t now)
{
	struct sched_req *head;
	unsigned done = 0;

	while (done < budget) {
		if (!w->pending) {
			head = take(w);
			if (!head)
				break;
			head->next = NULL;
			w->pending = head;
			w->n_pending = 1;
			w->pending_since = now;
		}
		if (!gather(w, now))
			break;
		head = w->pending;
		w->pending = NULL;
		w->n_pending = 0;
		done += handle_batch(w, head, now);
		if (w->room_wait)
			done += retry_room(w, now);
	}
	set_busy(w, 0);
	return done;
}

unsigned worker_poll(struct worker *w, unsigned budget, uint64_t now)
{
	struct sched_req *req;
	unsigned done = 0;

	/* Acquire: pairs with the seq_cst kick in sched_unload, so the new
	 * model states are visible to drop_unloaded. */
	if (atomic_load_explicit(&w->kick, memory_order_acquire) & KICK_DROP) {
		atomic_fetch_and(&w->kick, ~(uint32_t)KICK_DROP);
		drop_unloaded(w);
	}
	if (atomic_load_explicit(&w->kick, memory_order_acquire) & KICK_HREAD) {
		atomic_fetch_and(&w->kick, ~(uint32_t)KICK_HREAD);
		done += resume_parked(w, now);
	}
	if (atomic_load_explicit(&w->kick, memory_order_acquire) & KICK_HOST) {
		atomic_fetch_and(&w->kick, ~(uint32_t)KICK_HOST);
		drop_for_host(w);
	}
	if (atomic_load_explicit(&w->kick, memory_order_acquire) & KICK_PREPARE) {
		atomic_fetch_and(&w->kick, ~(uint32_t)KICK_PREPARE);
		w->prep_pending = w->cold_mode != WCOLD_LOAD;
	}
	done += retry_room(w, now);
	if (w->max_batch > 1)
		return done + poll_batched(w, budget, now);
	while (done < budget && (req = take(w))) {
		(void)handle(w, req, now);
		done++;
		if (w->room_wait)
			done += retry_room(w, now);
	}
	return done;
}

/* ------------------------------------------------------------ preparing */

/* Every entry of the repository now (malloc'd, *n of them), or NULL when
 * there are none or no memory. Background work only. */
static struct repo_entry **all_entries(struct repo *r, uint32_t *n)
{
	struct repo_entry **ents;

	*n = repo_entries(r, NULL, 0);
	ents = *n ? malloc(*n * sizeof(*ents)) : NULL;
	if (ents)
		*n = MIN(*n, repo_entries(r, ents, *n));
	return ents;
}

/* The first READY entry whose slot here has no plan yet, or NULL. */
static struct repo_entry *next_unprepared(struct worker *w)
{
	struct repo_entry **ents, *found = NULL;
	uint32_t n, i;

	ents = all_entries(w->repo, &n);
	if (!ents)
		return NULL;
	for (i = 0; i < n && !found; i++)
		if (repo_entry_state(ents[i]) == REPO_READY &&
		    ents[i]->ws[w->id].prep == PREP_NONE && !ents[i]->ws[w->id].em)
			found = ents[i];
	free(ents);
	return found;
}

/* Zero inputs at g's default shape (batch 1), for a warm-up run: every
 * input, the optional ones too (attention_mask, token_type_ids), as most
 * clients send them; the program without them is made with the model. */
static int zero_inputs(const struct graph *g, struct tview *in)
{
	int64_t seq = graph_default_seq(g);
	uint32_t i;

	memset(in, 0, sizeof(*in) * SCHED_MAX_IO);
	for (i = 0; i < g->n_inputs && i < SCHED_MAX_IO; i++) {
		in[i].nbytes = io_shape(&g->inputs[i], 1, seq, &in[i].shape);
		in[i].data = calloc(1, in[i].nbytes ? in[i].nbytes : 1);
		if (!in[i].data)
			return -ENOMEM;
	}
	return 0;
}

/* Device bytes a warm-up run of g on inputs in needs: the weights, the
 * activations of that shape (graph_act_peak) and some slack for the
 * programs; twice the weights if the shapes cannot be inferred. */
static uint64_t warm_need(const struct graph *g, const struct tview *in)
{
	struct shape sin[SCHED_MAX_IO], *sh;
	uint64_t act = g->weights_size;
	uint32_t i;

	memset(sin, 0, sizeof(sin));
	for (i = 0; i < g->n_inputs && i < SCHED_MAX_IO; i++)
		sin[i] = in[i].shape;
	sh = calloc(g->n_tensors * 2u + 1u, sizeof(*sh));
	if (sh && !graph_infer_shapes(g, sin, sh))
		act = graph_act_peak(g, sh, (uint32_t *)(void *)(sh + g->n_tensors));
	err_clear();
	free(sh);
	return g->weights_size + act + (32ull << 20);
}

/*
 * A model planned here and not made yet is made and run once on zero
 * inputs (its first cold start: shape plans, arenas and graphs of the
 * default shape), then evicted into standby, so that the first request
 * for it pays only for moving its weights. Only while its weights and
 * the run's activations fit in the room free now: warming up never
 * evicts.
 */
static void prewarm(struct worker *w, struct wslot *sl)
{
	const void *weights;
	const struct graph *g = repo_entry_graph(sl->e);
	struct tview in[SCHED_MAX_IO], out[SCHED_MAX_IO];
	uint64_t t0 = clock_ns(), need, room;
	char a[32], b[32];
	uint32_t i;
	int ret;

	if (sl->prep != PREP_DONE || sl->em)
		return;
	ret = zero_inputs(g, in);
	if (ret)
		goto out_free;
	need = warm_need(g, in);
	room = room_free(w);
	if (need > room) {
		log_debug("%s: '%s' v%u: no warm-up run: it needs %s, %s free", w->name,
			  sl->e->name, sl->e->version, fmt_bytes(need, a, sizeof(a)),
			  fmt_bytes(room, b, sizeof(b)));
		goto out_free;
	}
	if (repo_acquire(w->repo, sl->e, &weights))
		goto out_free;
	if (make_model(w, sl, weights)) {
		repo_release(w->repo, sl->e);
		goto out_free;
	}
	memset(out, 0, sizeof(out));
	ret = run_model(w, sl, in, out);
	if (ret)
		log_debug("%s: '%s' v%u: warm-up run: %s", w->name, sl->e->name, sl->e->version,
			  err_msg(ret));
	evict(w, sl);
	log_debug("%s: '%s' v%u: made and run once in %.1f ms (warm-up)", w->name, sl->e->name,
		  sl->e->version, (clock_ns() - t0) / 1e6);
out_free:
	for (i = 0; i < SCHED_MAX_IO; i++)
		free(in[i].data);
	err_clear();
}

/* Under a memory limit that holds at least four of the largest model made
 * here, keep room for one free while idle, so a cold start finds it
 * without evicting: evict the model an eviction would pick next. Whether
 * it evicted one. */
static bool reclaim(struct worker *w)
{
	if (w->mem_limit == UINT64_MAX || w->mem_limit / 4 < w->headroom ||
	    room_free(w) >= w->headroom)
		return false;
	return drop_one(w, NULL, true);
}

/* Give back the activation memory of every model made here, beyond what
 * small runs need (exec_ops.model_shrink). */
static void shrink_all(struct worker *w)
{
	struct lnode *n;

	w->shrink_due = 0;
	if (!w->ops->model_shrink)
		return;
	for (n = w->lru.next; n != &w->lru; n = n->next)
		w->ops->model_shrink(container_of(n, struct wslot, lru)->em);
	for (n = w->standby.next; n != &w->standby; n = n->next)
		w->ops->model_shrink(container_of(n, struct wslot, lru)->em);
	malloc_trim(0); /* and what the C library kept of it */
	log_debug("%s: models shrank", w->name);
}

/* Re-record one model's graphs that a run left stale (model_tidy), the
 * most recently used first: it is the likeliest to run next. Whether one
 * was tidied. */
static bool tidy_one(struct worker *w)
{
	struct lnode *n;

	for (n = w->lru.next; n != &w->lru; n = n->next) {
		struct wslot *sl = container_of(n, struct wslot, lru);

		if (!sl->untidy)
			continue;
		sl->untidy = false;
		w->untidy--;
		w->ops->model_tidy(sl->em);
		return true;
	}
	return false;
}

bool worker_prepare(struct worker *w)
{
	struct repo_entry *e;
	const void *weights;

	if (w->untidy && tidy_one(w))
		return true;

	if (w->shrink_due && clock_ns() >= w->shrink_due) {
		shrink_all(w);
		return true;
	}
	if (reclaim(w))
		return true;
	if (!w->prep_pending)
		return false;
	if (worker_open_device(w)) {
		log_error("%s", err_msg(0));
		w->prep_pending = false;
		return false;
	}
	e = next_unprepared(w);
	if (!e) {
		w->prep_pending = false;
		return false;
	}
	if (repo_acquire(w->repo, e, &weights)) {
		log_warn("%s: '%s' v%u: cannot plan it now: %s", w->name, e->name, e->version,
			 err_msg(0));
		err_clear();
		e->ws[w->id].prep = PREP_FAILED;
		return true;
	}
	prepare_slot(w, &e->ws[w->id], weights);
	if (e->ws[w->id].prep == PREP_NONE) /* out of memory: whole loads for now */
		e->ws[w->id].prep = PREP_FAILED;
	if (!w->s->o.no_prewarm)
		prewarm(w, &e->ws[w->id]);
	repo_release(w->repo, e);
	return true;
}

/* ------------------------------------------------------------ posting */

/*
 * Wakeup protocol (Dekker style). The worker, before sleeping, stores
 * sleeping = 1, issues a full fence (A), then checks its ring and kicks. A
 * producer stores into the ring (or kick), issues a full fence (B), then
 * reads sleeping. Fences A and B pair: either the worker sees the new item,
 * or the producer sees sleeping == 1 and writes the eventfd. The exchange
 * lets one producer, not all, pay for the write.
 */
static void worker_wake(struct worker *w)
{
	uint64_t one = 1;

	atomic_thread_fence(memory_order_seq_cst); /* B, pairs with A */
	if (!atomic_load_explicit(&w->sleeping, memory_order_relaxed))
		return;
	if (atomic_exchange(&w->sleeping, 0) && write(w->efd, &one, sizeof(one)) < 0)
		log_error("%s: eventfd write: %s", w->name, strerror(errno));
}

bool worker_post(struct worker *w, struct sched_req *req)
{
	HANDOFF_RELEASE(req);
	if (!ck_ring_enqueue_mpsc(&w->ring, w->rbuf, req))
		return false;
	worker_wake(w);
	return true;
}

void worker_kick(struct worker *w, uint32_t what)
{
	atomic_fetch_or(&w->kick, what);
	worker_wake(w);
}

uint32_t worker_queue_depth(const struct worker *w)
{
	return ck_ring_size(&w->ring) +
	       (uint32_t)atomic_load_explicit(&w->busy, memory_order_relaxed) +
	       atomic_load_explicit(&w->n_room_wait, memory_order_relaxed);
}

bool worker_dev_tried(const struct worker *w)
{
	return atomic_load_explicit(&w->dev_tried, memory_order_acquire);
}

uint64_t worker_resident_bytes(const struct worker *w)
{
	return atomic_load_explicit(&w->resident_bytes, memory_order_relaxed);
}

bool worker_has_model(const struct worker *w, const struct repo_entry *e)
{
	return atomic_load(&e->ws[w->id].resident);
}

uint32_t worker_lru(const struct worker *w, struct repo_entry **out, uint32_t cap)
{
	const struct lnode *n;
	uint32_t k = 0;

	for (n = w->lru.next; n != &w->lru; n = n->next, k++)
		if (k < cap)
			out[k] = container_of(n, struct wslot, lru)->e;
	return k;
}

/* ------------------------------------------------------------ thread */

static bool has_work(struct worker *w)
{
	return ck_ring_size(&w->ring) || atomic_load(&w->kick) || w->room_wait;
}

/* Sleep until a producer writes the eventfd, or until the open batch
 * window closes. */
static void worker_idle(struct worker *w, uint64_t now)
{
	struct pollfd pfd = {.fd = w->efd, .events = POLLIN};
	struct timespec ts, *tsp = NULL;
	uint64_t v, left;

	if (w->pending || w->shrink_due) {
		left = w->pending ? w->pending_since + w->batch_delay_ns : UINT64_MAX;
		if (w->shrink_due)
			left = MIN(left, w->shrink_due);
		left = left > now ? left - now : 0;
		ts.tv_sec = (time_t)(left / 1000000000u);
		ts.tv_nsec = (long)(left % 1000000000u);
		tsp = &ts;
	}
	atomic_store_explicit(&w->sleeping, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst); /* A, pairs with B */
	if (!has_work(w))
		ppoll(&pfd, 1, tsp, NULL);
	if (read(w->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_error("%s: eventfd read: %s", w->name, strerror(errno));
	atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
}

static void pin(struct worker *w)
{
	cpu_set_t set;

	if (w->cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		log_warn("%s: cannot pin to core %d: %s", w->name, w->cpu, strerror(errno));
}

/* Evict every model and close the device: the thread that polls. */
static void worker_release_device(struct worker *w)
{
	while (lnode_linked(&w->lru))
		evict(w, container_of(w->lru.prev, struct wslot, lru));
	while (lnode_linked(&w->standby))
		destroy(w, container_of(w->standby.prev, struct wslot, lru));
	if (w->devh)
		w->ops->dev_close(w->devh);
	w->devh = NULL;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t now, idle_since = 0;

	pin(w);
	/* Open the GPU now rather than at the first cold start, which would
	 * otherwise pay for the context, cuBLAS and cuDNN handles. A failure
	 * is logged; requests then fail with it and the next one retries. */
	if (worker_open_device(w))
		log_error("%s", err_msg(0));
	/* Release: pairs with the acquire in worker_dev_tried (readiness). */
	atomic_store_explicit(&w->dev_tried, true, memory_order_release);
	while (!(atomic_load(&w->kick) & KICK_STOP)) {
		now = clock_ns();
		if (worker_poll(w, 64, now) || worker_prepare(w)) {
			idle_since = 0;
			continue;
		}
		if (!idle_since)
			idle_since = now;
		if (now - idle_since < w->spin_ns && !w->pending) {
			ck_pr_stall();
			continue;
		}
		worker_idle(w, now);
		idle_since = 0;
	}
	worker_release_device(w);
	return NULL;
}

int worker_start(struct worker *w, int cpu)
{
	char name[32];
	int ret;

	w->cpu = cpu;
	ret = pthread_create(&w->thread, NULL, worker_main, w);
	if (ret)
		return err_set(-ret, "%s: cannot start the worker thread: %s", w->name,
			       strerror(ret));
	snprintf(name, sizeof(name), "dprt-%s", w->name);
	name[15] = 0; /* the kernel's limit */
	pthread_setname_np(w->thread, name);
	w->started = true;
	return 0;
}

void worker_join(struct worker *w)
{
	if (!w->started)
		return;
	worker_kick(w, KICK_STOP);
	pthread_join(w->thread, NULL);
	w->started = false;
}

static void forget_plans(struct worker *w)
{
	struct repo_entry **ents;
	uint32_t n, i;

	ents = all_entries(w->repo, &n);
	for (i = 0; ents && i < n; i++)
		forget_plan(&ents[i]->ws[w->id]);
	free(ents);
}

void worker_destroy(struct worker *w)
{
	if (!w)
		return;
	worker_join(w);
	worker_release_device(w); /* no_threads: the caller polled it */
	forget_plans(w);
	free(w->bbuf);
	close(w->efd);
	free(w->rbuf);
	free(w);
}
