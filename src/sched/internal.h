/* SPDX-License-Identifier: MIT */
/*
 * sched internals shared by repo.c, worker.c, req.c and sched.c.
 * Not part of the module's face (sched.h).
 */
#ifndef DPRT_SCHED_INTERNAL_H
#define DPRT_SCHED_INTERNAL_H

#include <ck_ring.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "mem/link.h"
#include "mem/mem.h"
#include "sched/sched.h"

#define CACHELINE 64

/*
 * ck_ring hands records between threads with volatile accesses and
 * fences, which ThreadSanitizer does not model; in a TSan build each
 * handoff is announced (release before the enqueue, acquire after the
 * dequeue), so TSan checks our own code instead of flagging every record.
 */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define HANDOFF_RELEASE(p) __tsan_release(p)
#define HANDOFF_ACQUIRE(p) __tsan_acquire(p)
#else
#define HANDOFF_RELEASE(p) ((void)(p))
#define HANDOFF_ACQUIRE(p) ((void)(p))
#endif

/* ---- intrusive doubly linked list ---- */
struct lnode {
	struct lnode *prev, *next;
};

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

static inline void lnode_init(struct lnode *n)
{
	n->prev = n;
	n->next = n;
}

static inline bool lnode_linked(const struct lnode *n)
{
	return n->next != n;
}

static inline void lnode_del(struct lnode *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	lnode_init(n);
}

/* Insert n right after head (head->next is the most recent). */
static inline void lnode_add_head(struct lnode *head, struct lnode *n)
{
	n->next = head->next;
	n->prev = head;
	head->next->prev = n;
	head->next = n;
}

/* Relaxed counters: one writer (the owner), any reader. */
static inline void ctr_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

static inline uint64_t ctr_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/*
 * Entry e as seen by worker w. Everything but wq is written by worker w
 * only; wq is incremented by posters (sched_submit) and decremented by the
 * worker when the request completes, so "wq > 0" means a request for e is
 * queued on or running in w: the model must not be evicted from w.
 */
struct wslot {
	_Atomic uint32_t wq;
	_Atomic bool resident;
	struct repo_entry *e; /* back pointer, constant */
	struct exec_model *em;
	struct lnode lru;  /* in the worker's resident list */
	uint64_t bytes;	   /* device bytes charged */
	bool no_fuse;	   /* a fused run's outputs did not split by batch */
	bool by_plan;	   /* em is the cold engine's: kept when evicted */
	uint64_t keep;	   /* cold: device bytes em holds while evicted */
	uint64_t load;	   /* cold: device bytes its weights take when in */
	struct plan *plan; /* cold: its plan, found once (prepare or first use) */
	uint8_t prep;	   /* enum slot_prep */
	bool made_once;	   /* a model was made here before (re-creations) */
	uint64_t make_ns;  /* how long making its model took last time */
	/* requests waiting for the host copy (worker.c, "parking") */
	struct sched_req *parked, *parked_tail;
	struct lnode park; /* in the worker's parked list while reading */
	struct hread *hr;  /* the read in progress, NULL when none */
	bool sync_load;	   /* resuming parked requests: read here if need be */
	bool held_ref;	   /* resuming: the reader's host reference is ours */
	bool untidy;	   /* a run left work for model_tidy (idle time) */
	double rate;	   /* requests per second, decaying (cost policy) */
	uint64_t rate_t;   /* when rate was last updated */
	_Atomic uint64_t requests, failures, cold, bytes_loaded, lat_sum;
	_Atomic uint64_t hist[SCHED_HIST_BUCKETS];
} __attribute__((aligned(CACHELINE)));

/* Where a slot stands with its plan. */
enum slot_prep { PREP_NONE = 0, PREP_DONE = 1, PREP_FAILED = 2 };

enum host_state { HOST_NONE = 0, HOST_READING = 1, HOST_READY = 2 };

/*
 * Read-mostly repository state is published RCU-like (see repo.c, "The
 * published index"): objects a reader may hold start with a repo_defer
 * header and, once replaced, wait on r->deferred until no reader is inside.
 */
struct repo_defer {
	struct repo_defer *next;
};

/* An entry's state and its reason, immutable once published. */
struct repo_status {
	struct repo_defer d;
	int state;  /* enum repo_state */
	bool unfit; /* FAILED because it fits no device's memory limit */
	char reason[];
};

/* The index as readers see it: entries sorted by name, then version. */
struct repo_snap {
	struct repo_defer d;
	uint32_t n;
	struct repo_entry *ents[];
};

/*
 * A model version of the repository. name, version, path, r and ws are
 * constant; state, st, present and g are published atomics any thread may
 * read; the rest is under r->lock. The graph stays valid until
 * repo_destroy (a package replaced on reload is retired, not closed).
 */
struct repo_entry {
	char name[NAME_LEN];
	uint32_t version;
	uint64_t hash; /* of name, for lookups */
	char path[PATH_MAX];
	struct repo *r;
	_Atomic int state;
	_Atomic(struct repo_status *) st; /* state and reason, read in a snap section */
	_Atomic(const struct graph *) g;
	_Atomic bool present; /* model.dpk seen by the last scan */

	bool seen;	 /* seen by the scan in progress (r->lock) */
	bool registered; /* added by repo_register: scans keep it present */
	bool queued;	 /* LOADING, waiting for a loader (r->lock) */
	struct pkg *pkg;
	dev_t st_dev;
	ino_t st_ino;
	off_t st_size;
	struct timespec st_mtim;

	struct hoststore *hs;
	_Atomic(const void *) host; /* base of hs, for snapshots */
	uint64_t host_size;
	uint8_t hstate;		/* enum host_state */
	_Atomic uint32_t users; /* device instances using the host copy */
	struct lnode host_lru;	/* in r->host_lru while users == 0 */

	struct wslot *ws; /* [r->n_workers] */
};

/* A host copy taken off its entry under r->lock, freed after unlocking. */
struct repo_dead {
	struct repo_dead *next;
	struct hoststore *hs;
	uint64_t size; /* charged to host_used until it was dropped */
};

struct repo {
	char dir[PATH_MAX];
	pthread_mutex_t lock;	   /* the writers' lock */
	pthread_mutex_t scan_lock; /* one scan at a time (its seen flags) */
	pthread_cond_t cond;	   /* LOADING / HOST_READING finished */
	struct repo_entry **ents;  /* the writers' sorted array (r->lock) */
	uint32_t n, cap;
	uint32_t n_workers;
	uint64_t host_limit; /* 0 = none */
	_Atomic uint64_t host_used;
	uint32_t host_reads;	      /* host copies being read (r->lock) */
	_Atomic uint64_t host_wanted; /* bytes a read found no room for, 0 = none */
	_Atomic uint64_t host_hits, host_misses, host_drops;	/* see sched.h */
	_Atomic uint64_t disk_colds, disk_streamed, disk_bytes; /* see sched.h */
	struct lnode host_lru; /* unreferenced host copies, most recent first */
	struct pkg **retired;
	uint32_t n_retired, cap_retired;

	_Atomic(struct repo_snap *) snap __attribute__((aligned(CACHELINE)));
	_Atomic uint32_t readers;    /* threads inside a snap section */
	struct repo_defer *deferred; /* replaced objects (r->lock) */
	_Atomic bool has_deferred;   /* deferred != NULL, for readers */
	struct repo_dead *dead;	     /* host copies to free (r->lock) */
};

/*
 * Enter a read section: the published index, valid (with every status
 * loaded inside) until repo_snap_exit. Never blocks; sections do not nest.
 * Any thread.
 */
const struct repo_snap *repo_snap_enter(struct repo *r);
void repo_snap_exit(struct repo *r);
/* Index of the first entry of name in sn (sn->n when none). */
uint32_t repo_snap_first(const struct repo_snap *sn, const char *name);
/* Mark e FAILED (unfit: for want of device memory) with reason, unless it
 * is no longer READY. Any thread but a worker's. */
void repo_fail_entry(struct repo *r, struct repo_entry *e, bool unfit, const char *reason);
/* An entry FAILED for want of device memory (why gets "model 'm' version
 * v: reason"), or NULL when there is none. Any thread. */
struct repo_entry *repo_unfit(struct repo *r, char *why, size_t len);

/* Open the repository at dir and scan it (entries UNAVAILABLE); entries
 * carry n_workers slots. 0 or an error with err_set. */
int repo_create(const char *dir, uint32_t n_workers, uint64_t host_limit, struct repo **out);
/* Free every entry, package and host copy; no device may use them. */
void repo_destroy(struct repo *r);
/* Open the package and read the weights: UNAVAILABLE/FAILED -> READY. */
int repo_load_entry(struct repo *r, struct repo_entry *e);
/* Mark e LOADING ("loading: queued") for a loader that will call
 * repo_load_queued or repo_cancel_load; false (nothing done) when it is
 * LOADING or READY already. Any thread but a worker's. */
bool repo_queue_load(struct repo *r, struct repo_entry *e);
/* repo_load_entry for an entry this thread queued. */
int repo_load_queued(struct repo *r, struct repo_entry *e);
/* A queued entry that will not be loaded: UNAVAILABLE again. */
void repo_cancel_load(struct repo *r, struct repo_entry *e);
/* Tests: called (when set) by the thread about to read an entry's
 * weights from its package, outside r->lock. */
extern _Atomic(void (*)(const struct repo_entry *)) repo_read_hook;
/* READY/FAILED -> UNAVAILABLE; frees the host copy if nobody uses it. */
void repo_unload_entry(struct repo *r, struct repo_entry *e);
/* A device instance starts using e's host copy (read from the package if
 * absent). 0 and *weights, or an error with err_set. Any worker. */
int repo_acquire(struct repo *r, struct repo_entry *e, const void **weights);
/* repo_acquire whose read of the package, if it reads one, is watched
 * (mem.h: the watch sees the copy fill; it becomes e's copy, READY, only
 * once wholly read and checked). Any thread. */
int repo_acquire_watched(struct repo *r, struct repo_entry *e, const struct hoststore_watch *wt,
			 const void **weights);
void repo_release(struct repo *r, struct repo_entry *e);
/* Whether a host copy waits for room that only copies held by device
 * models can give (workers drop idle ones then). Any thread. */
bool repo_host_short(struct repo *r);
/* Wait up to ns while host memory is short, until a device instance gives
 * a copy back. Any thread but a worker's. */
void repo_wait_room(struct repo *r, uint64_t ns);
/* Copy up to cap entry pointers; returns how many entries exist. */
uint32_t repo_entries(struct repo *r, struct repo_entry **out, uint32_t cap);

/* ---- workers ---- */
enum worker_kick {
	KICK_DROP = 1u << 0,	/* scan for unloaded models to drop */
	KICK_STOP = 1u << 1,	/* leave the thread loop */
	KICK_PREPARE = 1u << 2, /* models were loaded: find their plans */
	KICK_HOST = 1u << 3,	/* host memory is short: drop idle models' copies */
	KICK_HREAD = 1u << 4,	/* a host copy read for parked requests is done */
};

struct worker {
	struct sched *s;
	struct repo *repo;
	uint32_t id;
	struct sched_dev dev;
	char name[16];
	const struct exec_ops *ops;
	void *devh;
	uint64_t mem_limit; /* UINT64_MAX: none */
	uint32_t max_batch;
	uint64_t batch_delay_ns;
	uint64_t spin_ns;
	int cold_mode;	  /* WCOLD_* or an enum plan_mode */
	int evict_policy; /* enum sched_evict */
	bool evict_place; /* evict where a cold model's weights were */
	int efd;
	int cpu;
	pthread_t thread;
	bool started;

	struct ck_ring ring __attribute__((aligned(CACHELINE)));
	struct ck_ring_buffer *rbuf;

	/* Wakeup protocol, see worker_wake() and worker_idle(). */
	_Atomic uint32_t sleeping __attribute__((aligned(CACHELINE)));
	_Atomic uint32_t kick;

	/* owner only */
	struct lnode lru __attribute__((aligned(CACHELINE)));
	struct lnode standby; /* evicted cold models kept, most recent first */
	struct lnode parked;  /* slots whose requests wait for a host copy */
	uint64_t used;
	struct sched_req *pending; /* a partial batch waiting for its window */
	uint64_t pending_since;
	uint32_t n_pending;
	struct sched_req *held; /* dequeued; did not fit the last batch */
	/* requests (batch heads, linked by ->wait) whose models found no room
	 * on the device, oldest first; see defer_room() */
	struct sched_req *room_wait, *room_wait_tail;
	uint64_t taken;	 /* requests dequeued from the ring */
	bool room_short; /* the last make_room failed for models in use */
	bool room_force; /* this cold start may evict models in use */
	void *bbuf;	 /* batch input staging buffer */
	uint64_t bbuf_cap;

	/* published: written by the owner only */
	_Atomic uint64_t busy __attribute__((aligned(CACHELINE)));
	_Atomic uint64_t resident_bytes, resident_models;
	_Atomic uint64_t requests, failures, cold, bytes_loaded, evictions;
	_Atomic uint64_t standby_hits, creations, recreations, destroys, plans_made;
	_Atomic uint64_t cold_moved, cold_deferred, fixup_ns, place_evictions;
	_Atomic uint64_t room_waits, room_forced;
	_Atomic uint32_t n_room_wait; /* requests in room_wait */
	_Atomic bool dev_tried;	      /* the start-time device open is over */
	bool prep_pending;	      /* owner: some slot may still need its plan */
	uint32_t untidy;	      /* owner: slots with work for model_tidy */
	uint64_t headroom;	      /* owner: the largest model made here (bytes) */
	uint64_t shrink_due;	      /* owner: when idle models give back activation
			      * memory (clock_ns), 0 = nothing ran since */
};

/* ---- cold starts by plan (src/sched/cold.c) ---- */
/* Worker cold modes besides an enum plan_mode: load models whole; the
 * stored plan only (else whole); the default (dprt's planner on GPUs,
 * whole loads on CPU devices, whose memory is the host's). */
enum { WCOLD_LOAD = -1, WCOLD_AUTO = -2, WCOLD_DEFAULT = -3 };
/* The cold mode a worker of backend be runs in for a parsed mode. */
int sched_cold_mode_resolve(int mode, const struct exec_ops *be, bool gpu);
/* The plan of e on w's device in w's cold mode: stored, made from the
 * stored profile, or (a planning mode) made from a profile measured now
 * and stored. -ENOENT in auto mode with nothing stored. w's thread. */
int sched_find_plan(struct worker *w, struct repo_entry *e, const void *weights, struct plan **out);
/* w's device joins the scheduler's link table (after dev_open), logging
 * how its cold mode resolves with this many devices. w's thread. */
void sched_cold_join(struct worker *w);
/* Count what a cold start by plan p did (parallel transmission). */
void sched_cold_count(struct worker *w, const struct plan *p, const struct exec_cold_info *info);

/* Make worker id for device dev (not started). 0 or an error with err_set;
 * a GPU device fails with DPRT_ENODEV in a build without a GPU backend. */
int worker_create(struct sched *s, uint32_t id, const struct sched_dev *dev, struct worker **out);
/* Join the thread if any (after sched drained), drop every model, free. */
void worker_destroy(struct worker *w);
/* Post a request (any thread); false when the ring is full. */
bool worker_post(struct worker *w, struct sched_req *req);
/* Ask the worker to do something (enum worker_kick) and wake it. */
void worker_kick(struct worker *w, uint32_t what);
/* Join the worker's thread after KICK_STOP. */
void worker_join(struct worker *w);

/* ---- the scheduler ---- */
/* Loading at start (sched.c, "loaders"), on at most SCHED_LOADERS threads. */
#define SCHED_LOADERS 4u

struct sched_load {
	struct repo_entry **ents; /* [n]: queued, grouped by package file */
	uint32_t n;
	uint32_t *job; /* [n_jobs + 1]: first entry of each job */
	uint32_t n_jobs;
	_Atomic uint32_t next; /* the next job to take */
	_Atomic uint32_t done; /* entries finished */
	pthread_t th[SCHED_LOADERS];
	uint32_t n_th;
};

struct sched {
	struct sched_opts o;
	struct repo *repo;
	uint32_t n_workers;
	struct worker *w[SCHED_MAX_WORKERS];
	int cpus[SCHED_MAX_WORKERS];

	struct sched_req *reqs;
	uint32_t n_reqs;
	void *obufs;
	uint64_t req_out;
	struct ck_ring pool __attribute__((aligned(CACHELINE)));
	struct ck_ring_buffer *pool_buf;
	uint32_t chan_cap;   /* slots of each completion ring */
	uint64_t act_budget; /* activation bytes a request may need */

	_Atomic uint32_t stopping __attribute__((aligned(CACHELINE)));
	_Atomic uint64_t inflight;
	_Atomic uint32_t hreads; /* host copy reads for workers in progress */
	bool stopped;
	struct sched_load load;
	struct link_table links; /* the devices' transfer links (cold.c) */
};

/* Push a finished request into its channel and signal it (worker w). */
void chan_push(struct sched_chan *ch, uint32_t worker, struct sched_req *req);
/* Record status and message in a request (copies err_msg(code)). */
void req_fail(struct sched_req *req, int code);
/* Point the prepared outputs into the record's output buffer; 0 or
 * DPRT_EOUTBUF when it is too small. */
int req_bind_outputs(struct sched_req *req);
/* Bucket of a latency. */
unsigned hist_bucket(uint64_t ns);

#endif
