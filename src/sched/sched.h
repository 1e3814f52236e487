/* SPDX-License-Identifier: MIT */
/*
 * sched: the model repository, one worker per device, placement, eviction.
 *
 * Threads. Each worker owns one device (a GPU, or a CPU "device" for the
 * reference backend) and everything on it: the models resident there, their
 * LRU order and the device memory accounting. Other threads reach a worker
 * only through its inbound MPSC ring of request pointers. A worker is
 * stepped by worker_poll(w, budget, now), which any single thread may call
 * (tests step workers deterministically); worker_start() gives it a pinned
 * thread of its own that loops on worker_poll and sleeps on an eventfd when
 * idle.
 *
 * Posters (the network threads, the CLI, tests) take a request record from
 * the pool, fill it, and sched_submit() it on their own thread. Each poster
 * owns a completion channel; workers push finished requests there and write
 * the channel's eventfd. Contract: sched_submit() returns 0 and the request
 * comes back through its channel exactly once, or returns a negative code
 * (status and msg also set in the request) and never comes back.
 *
 * Repository: DIR/<name>/<version>/model.dpk, version a positive integer.
 * An entry's state is UNAVAILABLE (found, not loaded), LOADING, READY
 * (package open, weights readable from the host weight store) or FAILED
 * (with the reason). READY models' weights live once in host memory, shared
 * by every worker that runs the model; host copies nobody uses may be
 * dropped in LRU order under the host memory limit and are read again on
 * the next cold start. Entries are never freed before the scheduler, so an
 * entry pointer (and its graph, once opened) stays valid until
 * sched_destroy().
 *
 * Readers of the repository never wait for its writers: lookups, the
 * index, states and reasons come from immutable published objects (an
 * array of entries, one {state, reason} per entry) that writers (scans,
 * loads, unloads, under the repository's mutex) replace with seq_cst
 * stores and free only when no reader is inside a read section; host
 * memory is freed after the mutex is released. Details in repo.c.
 */
#ifndef DPRT_SCHED_H
#define DPRT_SCHED_H

#include "exec/exec.h"

#define SCHED_MAX_WORKERS 64
#define SCHED_MAX_IO 16	  /* inputs or outputs of a model the scheduler runs */
#define SCHED_MSG_LEN 256 /* error text of a request */
#define SCHED_HIST_BUCKETS 16
#define SCHED_STATS_MAX_MODELS 256

/* ---- devices ---- */
enum sched_dev_kind { SCHED_DEV_CPU = 0, SCHED_DEV_GPU = 1 };

struct sched_dev {
	uint8_t kind;
	int32_t id; /* CPU: 0..N-1 virtual device; GPU: CUDA ordinal */
};

/*
 * Parse a --gpus value: "cpu" (one CPU device), "cpu:N" (N virtual CPU
 * devices), or GPU ordinals "0-3", "0,2", "0-1,3". Returns 0 and *n, or
 * DPRT_EUSAGE with err_set. Any thread.
 */
int sched_parse_devices(const char *spec, struct sched_dev *devs, uint32_t max, uint32_t *n);
/* Parse a --cpus list ("2,3", "4-7"); same conventions. */
int sched_parse_cpus(const char *spec, int *cpus, uint32_t max, uint32_t *n);
/*
 * Default cores for n workers on a machine with ncpu cores: the last n
 * cores, which skips core 0 when ncpu > n; with fewer cores than workers,
 * workers share cores round-robin. Any thread.
 */
void sched_default_cpus(uint32_t n, uint32_t ncpu, int *cpus);

/* ---- repository ---- */
enum repo_state {
	REPO_UNAVAILABLE = 0,
	REPO_LOADING = 1,
	REPO_READY = 2,
	REPO_FAILED = 3,
};
const char *repo_state_name(enum repo_state st);

struct repo;
struct repo_entry;

/* One row of the repository index. */
struct repo_info {
	char name[NAME_LEN];
	uint32_t version;
	uint8_t state;		    /* enum repo_state */
	char reason[SCHED_MSG_LEN]; /* FAILED: why; UNAVAILABLE: "unloaded"... */
	bool registered;	    /* added by repo_register */
};

/*
 * Find model name, version (0: the highest READY version, else the highest
 * version). Returns 0 and the entry (whatever its state), or DPRT_ENOMODEL
 * with err_set. Any thread; never blocks (it reads the published index:
 * see "The published index" in repo.c).
 */
int repo_lookup(struct repo *r, const char *name, uint32_t version, struct repo_entry **out);
/* Rescan the directory: add entries for new packages, mark missing ones.
 * Returns 0 or an error with err_set. Any thread. */
int repo_scan(struct repo *r);
/* Copy up to cap rows of the index (models present on disk or loaded) into
 * out; *n gets the number of rows that exist. Any thread. */
void repo_index(struct repo *r, struct repo_info *out, uint32_t cap, uint32_t *n);

const char *repo_entry_name(const struct repo_entry *e);
uint32_t repo_entry_version(const struct repo_entry *e);
enum repo_state repo_entry_state(const struct repo_entry *e);
/* The model's graph, NULL until its package was opened once. */
const struct graph *repo_entry_graph(const struct repo_entry *e);
/* Copy the reason text of the entry's state into buf. Any thread. */
void repo_entry_reason(const struct repo_entry *e, char *buf, size_t len);
/* Host weight store of the entry: base address (NULL when not in host
 * memory) and the number of device instances using it. Any thread; a
 * snapshot for tests and metrics. */
const void *repo_entry_host(const struct repo_entry *e, uint32_t *users);
/* Bytes of host memory held by weight copies. Any thread. */
uint64_t repo_host_used(const struct repo *r);
/* The host memory limit of weight copies (0: none). Any thread. */
uint64_t repo_host_limit(const struct repo *r);
/*
 * Add model name, version 1, for the package file at path, which need not
 * be in the repository directory (ModelMesh's loadModel): scans keep the
 * entry; sched_load(s, name, 1) loads it. Registering it again with
 * another path repoints it while it is not LOADING or READY. 0, or an
 * error with err_set: -EINVAL (a bad name or path), -EEXIST (name version
 * 1 is a package of the directory), -EBUSY (loaded, or still in use, from another path).
 * Any thread.
 */
int repo_register(struct repo *r, const char *name, const char *path);
/* Host tier counters since start: requests for a host copy that found it
 * in memory (hits), that read it from the package (misses), and copies
 * dropped (LRU, unload, failure). Any thread. */
void repo_host_counts(const struct repo *r, uint64_t *hits, uint64_t *misses, uint64_t *drops);
/* Disk tier counters since start: cold starts that read their host copy
 * from the package, those of them that began before the read ended
 * (streamed), and weight bytes read from packages (loads included). */
void repo_disk_counts(const struct repo *r, uint64_t *cold_starts, uint64_t *streamed,
		      uint64_t *bytes);

/* ---- the scheduler ---- */
struct sched;
struct worker;
struct sched_chan;

/* Which idle model an eviction picks. */
enum sched_evict {
	SCHED_EVICT_COST = 0, /* the least expected reload time per byte freed:
			       * its cold-start time (plan) x its recent rate */
	SCHED_EVICT_LRU = 1,  /* the least recently used */
};
/* "cost" or "lru" -> enum sched_evict; else -EINVAL with err_set. */
int sched_evict_parse(const char *s, uint8_t *out);

struct sched_opts {
	const char *models_dir;	   /* repository root (required) */
	const char *gpus;	   /* --gpus, NULL = "cpu" */
	const char *cpus;	   /* --cpus, NULL = sched_default_cpus */
	uint64_t host_mem_limit;   /* bytes, 0 = no limit */
	uint64_t gpu_mem_limit;	   /* bytes per device, 0 = no limit */
	uint32_t queue_depth;	   /* per-worker ring slots (power of 2), 0 = 256 */
	uint32_t n_reqs;	   /* request records in the pool, 0 = 1024 */
	uint64_t req_out_bytes;	   /* output buffer of each record, 0 = 1 MiB */
	uint32_t max_batch;	   /* requests fused into one run, 0 or 1 = off */
	uint32_t batch_delay_us;   /* wait this long for a batch to fill */
	uint32_t spin_us;	   /* idle spin before sleeping, 0 = 50 */
	uint32_t spill_depth;	   /* queue depth at which a model also starts on
				  * an idle device with free memory, 0 = 4 */
	const char *cold_mode;	   /* cold starts: a plan mode (dprt, deepplan,
				  * deepplan-v1, pipeline, demand: the stored
				  * one-device plan, else one made from the
				  * stored profile, else the model is profiled
				  * on its device when loaded, between
				  * requests, and both stored), "auto" (a
				  * stored dprt plan, else whole), "load"
				  * (whole models); NULL = dprt on GPUs, load
				  * on CPU devices */
	const char *plans_dir;	   /* plan repository, NULL = plan_repo_dir's */
	uint8_t evict_policy;	   /* enum sched_evict */
	uint64_t max_activation;   /* activation bytes one request may need
				  * (--max-activation); 0 = the default: a
				  * quarter of host memory on CPU devices;
				  * on GPUs half of gpu_mem_limit, else
				  * 16 GiB */
	uint64_t max_batch_tokens; /* batch x sequence length one request may
				    * have (--max-batch-tokens), 0 = no limit */
	uint64_t cpu_dev_capacity; /* simulated memory of each CPU device
				    * (bytes, 0 = none; tests) */
	uint32_t disk_lead_us;	   /* a cold start read from disk starts once
				    * the read's remaining time is at most
				    * max(its predicted cold start, this);
				    * 0 = 2000 */
	bool explicit_load;	   /* don't load every model at start */
	bool load_async;	   /* load them on loader threads while
				  * sched_create returns (sched_ready says
				  * "loading" until all are done) */
	bool no_threads;	   /* don't start worker threads (tests step them) */
	bool no_prewarm;	   /* don't make and warm up planned models in
				  * idle time (worker_prepare) */
	bool no_pin;		   /* don't pin worker threads to cores */
};

/* --cold-mode: "auto" -> -2, NULL or "load" -> -1, a one-GPU plan mode ->
 * its enum plan_mode; else -EINVAL with err_set. */
int sched_cold_mode_parse(const char *s, int *mode);

/*
 * Make the scheduler: parse devices, open every device (a GPU device fails
 * with DPRT_ENODEV in a build without a CUDA backend), scan the repository,
 * load every model unless explicit_load (on up to four loader threads,
 * one package file per job; a model that fails to load goes FAILED, which
 * is not an error here; with load_async without waiting), allocate the request pool, and start
 * one pinned thread per worker unless no_threads. Returns 0 or an error
 * with err_set. Called once, by the thread that will call sched_destroy.
 */
int sched_create(const struct sched_opts *o, struct sched **out);
/*
 * Stop accepting requests, wait until every submitted request has been
 * completed into its channel, then stop and join the worker threads (with
 * no_threads, this thread polls the workers until drained). Posters then
 * drain their channels and put their records back. Idempotent.
 */
void sched_stop(struct sched *s);
/* sched_stop, then free everything: models, devices, host copies, pool. */
void sched_destroy(struct sched *s);

struct repo *sched_repo(struct sched *s);
uint32_t sched_n_workers(const struct sched *s);
struct worker *sched_worker(struct sched *s, uint32_t i);

/* Parallel transmission (cold.c): cold starts that moved layers over
 * other devices' links, cold starts by plans with helpers that fell back
 * to fewer links, and per worker what its link carried for others. */
struct sched_pt_stats {
	uint32_t n_workers;
	uint64_t pt_cold_starts, pt_fallbacks;
	uint64_t lent_ns[SCHED_MAX_WORKERS], lent_bytes[SCHED_MAX_WORKERS];
};
/* A snapshot of those counters. Any thread. */
void sched_pt_stats(const struct sched *s, struct sched_pt_stats *st);

/*
 * Explicit repository control (Triton's load/unload). load: open the
 * package and read its weights into host memory; READY on success, FAILED
 * with the reason otherwise (also, DPRT_EDEVICE, when it fits no device's
 * memory limit); version 0 = the highest version that loads: a newest
 * version that fails stays FAILED and the next one down is tried, so the
 * previous one keeps serving. Unknown name or version: DPRT_ENOMODEL. unload: the
 * model (version 0: every version) stops taking requests at once, each
 * worker drops it when no request for it is queued there, and its host
 * copy is freed when no device uses it. 0 or an error with err_set. Any
 * thread but a worker's.
 */
int sched_load(struct sched *s, const char *name, uint32_t version);
int sched_unload(struct sched *s, const char *name, uint32_t version);
/*
 * Whether every model meant to serve can: false, with why filled, while a
 * model that was to be READY fits no device's memory limit (it is FAILED
 * with the reason). Never blocks. Any thread.
 */
bool sched_ready(struct sched *s, char *why, size_t len);

/* ---- workers ---- */
/*
 * Process up to budget messages from the worker's ring (requests: run them,
 * cold-starting the model if needed, and complete them) and any pending
 * drop of unloaded models. now: clock_ns() or a test's virtual clock; it
 * stamps queueing time and drives the batch window. Returns the number of
 * requests it completed. Only one thread at a time: the worker's own
 * thread once worker_start() ran, else the caller's.
 */
unsigned worker_poll(struct worker *w, unsigned budget, uint64_t now);
/* Start the worker's thread, pinned to core cpu (-1: not pinned). 0 or
 * -errno with err_set. The thread that made the scheduler. */
int worker_start(struct worker *w, int cpu);
/* One step of background work: find the plan of one loaded model that
 * has none on this worker yet (profiling it if the mode plans and nothing
 * is stored). Returns whether it did something. Called by the worker's
 * thread when it has no requests, or by the thread that polls it. */
bool worker_prepare(struct worker *w);
/* Requests queued on the worker (ring + the one running). Any thread. */
uint32_t worker_queue_depth(const struct worker *w);
/* Whether the worker's thread is past opening its device at start (with
 * or without success): its libraries and kernels are initialised. Any
 * thread. */
bool worker_dev_tried(const struct worker *w);
/* Bytes of device memory held by resident models. Any thread. */
uint64_t worker_resident_bytes(const struct worker *w);
/* Whether entry e is resident on the worker. Any thread (a snapshot). */
bool worker_has_model(const struct worker *w, const struct repo_entry *e);
/* Resident models from most to least recently used; returns how many
 * exist (may exceed cap). Only the thread that may poll the worker. */
uint32_t worker_lru(const struct worker *w, struct repo_entry **out, uint32_t cap);

/* ---- requests ---- */
enum sched_req_flags {
	SCHED_F_COLD = 1u << 0,	    /* the model was loaded onto the device for it */
	SCHED_F_PREPARED = 1u << 1, /* sched_req_prepare succeeded */
	SCHED_F_BATCHED = 1u << 2,  /* ran fused with other requests */
};

/*
 * A request record. Layout public: the poster fills it on its hot path.
 * Records come from the scheduler's pool (sched_req_get) and go back with
 * sched_req_put; between sched_submit and its completion only the worker
 * touches it.
 */
struct sched_req {
	/* filled by the poster */
	struct repo_entry *model;
	struct sched_chan *chan;       /* where the completion goes */
	void *ctx;		       /* the poster's, untouched */
	struct tview in[SCHED_MAX_IO]; /* graph input order; caller's buffers,
				      * valid until completion; shape.ndim 0 =
				      * an omitted optional input */
	uint32_t out_mask;	       /* bit i: return graph output i; 0 = all */
	uint64_t t_post;	       /* clock_ns() at arrival; 0: sched_submit sets it */

	/* filled by sched_req_prepare */
	uint32_t n_in, n_out;
	uint64_t out_need; /* bytes of output buffer needed */
	uint64_t act_need; /* activation bytes a run needs (graph_act_peak) */
	uint64_t tokens;   /* batch x sequence length (0: no sequence dim) */
	/* out[i] for graph output i: shape (ndim 0 if not wanted) and, once
	 * submitted, data pointing into the record's output buffer. */
	struct tview out[SCHED_MAX_IO];

	/* results, valid once completed (or after a failed submit) */
	int status; /* 0 or a negative code */
	char msg[SCHED_MSG_LEN];
	uint32_t flags; /* enum sched_req_flags */
	uint32_t worker;
	uint64_t t_queue, t_load, t_exec; /* ns */

	/* private to the scheduler */
	void *obuf;
	uint64_t ocap;
	void *pool_buf;
	uint64_t pool_cap;
	struct sched_req *next; /* in a worker's batch */
	struct sched_req *wait; /* in a worker's list waiting for room */
	uint64_t room_mark;	/* waits for room until the worker dequeued this many */
};

/* A clean record from the pool, or NULL when every record is in use
 * (answer 503). Any thread (lock-free). */
struct sched_req *sched_req_get(struct sched *s);
/* Give a record back. Any thread; not while it is submitted. */
void sched_req_put(struct sched *s, struct sched_req *req);
/* Use buf (cap bytes, 64-byte aligned, valid until completion) for the
 * outputs instead of the record's own buffer. Before sched_submit. */
void sched_req_set_output(struct sched_req *req, void *buf, uint64_t cap);
/*
 * Validate the inputs against req->model's signature (shapes, dtypes,
 * byte sizes) and compute the output shapes and out_need. sched_submit
 * calls it when the poster did not. 0 or an error with err_set (and in
 * req->status/msg). The poster's thread.
 */
int sched_req_prepare(struct sched_req *req);
/*
 * Place and post a request (the poster's thread): to the least loaded
 * worker where its model is resident or headed, unless that one's queue
 * reached spill_depth and an idle worker has room for another copy without
 * evicting; else (cold start) to the worker with the most free device
 * memory, then the shortest queue. Never blocks.
 * Returns 0 (the request completes exactly once into req->chan) or, never
 * to complete: DPRT_ENOMODEL (model not ready), a prepare error,
 * DPRT_ETOOMANY (the model has more than SCHED_MAX_IO inputs or outputs),
 * DPRT_EOUTBUF (outputs exceed the output buffer: req->out_need says how
 * much; attach one with sched_req_set_output and submit again),
 * DPRT_EACTMEM (its shapes need more activation memory than
 * max_activation: req->act_need says how much, or more tokens than
 * max_batch_tokens), DPRT_EOVERLOAD (queue
 * full), DPRT_EDEVICE (fits no device), -ESHUTDOWN.
 * A request that was posted may still fail on its worker: DPRT_EOVERLOAD
 * (no room on the device or in host memory even after waiting for the
 * requests queued ahead of it and evicting models in use), DPRT_EDEVICE
 * (the device could not load the model), or the backend's error.
 */
int sched_submit(struct sched *s, struct sched_req *req);

/* ---- completion channels: one per poster thread ---- */
/* Make a channel able to hold every record of the pool. 0 or -errno. */
int sched_chan_create(struct sched *s, struct sched_chan **out);
/* Free a channel; no request may be outstanding on it. */
void sched_chan_destroy(struct sched_chan *ch);
/* The eventfd workers write after pushing completions (non-blocking). */
int sched_chan_fd(const struct sched_chan *ch);
/* Take up to max finished requests; returns how many. The channel's
 * owner thread only. */
unsigned sched_complete_poll(struct sched_chan *ch, struct sched_req **out, unsigned max);
/* Wait until the channel's eventfd fires or timeout_ms passes (-1:
 * forever). For posters without an event loop (CLI, tests). */
void sched_chan_wait(struct sched_chan *ch, int timeout_ms);

/* ---- statistics (for /metrics) ---- */
/* Upper bounds (ns) of the latency buckets; the last bucket is +Inf. */
extern const uint64_t sched_hist_le_ns[SCHED_HIST_BUCKETS - 1];

struct sched_worker_stats {
	char name[16]; /* "cpu0", "gpu2" */
	uint8_t kind;  /* enum sched_dev_kind */
	int32_t dev_id, cpu;
	uint64_t queue_depth, resident_models, resident_bytes, mem_limit;
	uint64_t requests, failures, cold_starts, bytes_loaded, evictions;
	uint64_t standby_hits;	  /* cold starts of a kept (evicted) cold model */
	uint64_t creations;	  /* models made here for the first time */
	uint64_t recreations;	  /* models made again after being destroyed */
	uint64_t destroys;	  /* models destroyed (room, unload, shutdown) */
	uint64_t plans;		  /* cold-start plans found or made */
	uint64_t cold_moved;	  /* cold starts whose weights landed elsewhere */
	uint64_t cold_deferred;	  /* of those, run eagerly (graphs re-recorded idle) */
	uint64_t fixup_ns;	  /* time cold starts spent taking new addresses */
	uint64_t place_evictions; /* evictions so a cold model lands where it was */
	uint64_t room_waits;	  /* requests that waited for device room */
	uint64_t room_forced;	  /* of those, run by evicting models with requests queued */
	int32_t cold_mode;	  /* the worker's: an enum plan_mode, or < 0 */
};

struct sched_model_stats {
	char name[NAME_LEN];
	uint32_t version;
	uint8_t state; /* enum repo_state */
	uint64_t requests, failures, cold_starts, bytes_loaded;
	uint64_t in_flight, resident_on, host_bytes;
	uint64_t lat_count, lat_sum_ns;	   /* queue + load + exec */
	uint64_t hist[SCHED_HIST_BUCKETS]; /* not cumulative */
};

struct sched_stats {
	uint32_t n_workers, n_models, n_models_total;
	uint64_t in_flight, host_used, host_limit;
	uint64_t host_hits, host_misses, host_drops;		   /* repo_host_counts */
	uint64_t disk_cold_starts, disk_streamed, disk_read_bytes; /* repo_disk_counts */
	uint64_t host_recycled; /* host copies made on a dropped copy's pinned buffer */
	struct sched_worker_stats workers[SCHED_MAX_WORKERS];
	struct sched_model_stats models[SCHED_STATS_MAX_MODELS];
};

/* Fill st with a snapshot of every counter (each one read atomically; the
 * set is not one instant). Any thread. */
void sched_stats(struct sched *s, struct sched_stats *st);

#endif
