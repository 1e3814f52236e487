/* SPDX-License-Identifier: MIT */
/*
 * cuda: the CUDA backend's face for the rest of its build (the device
 * layer of exec/cuda/device.c, the GPU tests and benchmarks): devices,
 * links, cold models by plan, the profiler. Above src/exec only the
 * backend-neutral exec.h is used (the vtable behind exec_gpu_backend).
 * No CUDA types here: struct cuda_dev and struct cuda_link are opaque.
 */
#ifndef DPRT_EXEC_CUDA_H
#define DPRT_EXEC_CUDA_H

#include "exec/exec.h"

/* The CUDA backend (cuBLAS GEMMs, cuDNN convolutions and pooling, dprt's
 * own kernels elsewhere; fp32 without TF32, fp16/bf16 with fp32
 * accumulation). Its dev argument is a struct cuda_dev from
 * cuda_device_open; a model runs on its device's thread only. After the
 * first run of an input shape, runs of that shape replay a CUDA graph
 * (unless DPRT_CUDA_GRAPHS=0 was set when the model was made). */
extern const struct exec_ops cuda_backend;
struct cuda_dev;
/*
 * Open GPU `ordinal` (CUDA numbering) for the calling thread, which owns it
 * from then on: load the driver (dlopen), retain the primary context, make
 * the streams, cuBLAS and cuDNN handles, load the kernels and make the
 * device memory pool. On a machine without a driver or GPU: DPRT_ENODEV,
 * err_msg "no GPU available: ...". Other failures: an error with err_set.
 */
int cuda_device_open(int ordinal, struct cuda_dev **out);
/* Close a device; every model made on it must be destroyed first. */
void cuda_device_close(struct cuda_dev *d);
/* Number of GPUs the driver sees; 0 without driver. Any thread. */
int cuda_device_count(void);
/* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs" for logs. */
const char *cuda_device_name(const struct cuda_dev *d);
/* "NVIDIA H100 80GB HBM3": the model name profiles and plans are keyed by. */
const char *cuda_device_model(const struct cuda_dev *d);
/* Bytes of device memory the device's pool has reserved / handed out. */
uint64_t cuda_device_reserved(const struct cuda_dev *d);
uint64_t cuda_device_used(const struct cuda_dev *d);

/* ---- cold starts on the CUDA backend (src/exec/cuda/cold*.c) ----
 *
 * A cold model is made from a plan (plan/plan.h): its DHA layers stay in
 * the host weight store, its LOAD layers are brought into device memory by
 * each cold start over the links the plan names and returned to the pool
 * by an eviction. A cold start runs the first inference while the weights
 * arrive: per-link copy streams record one event per group of adjacent
 * layers (events pooled, made with the model or link); the exec stream
 * waits on them, the CPU never does. A cold start replays one captured
 * graph of the target's copies and run (helpers' copies are queued before
 * it, and it waits on their events). Helper k of a
 * plan is lent by the first free link of the model's helper list, claimed
 * through an atomic for that one cold start; a slot with no free link
 * falls back to the target's own link. After a cold start the model is
 * resident and runs warm (its CUDA graph) through cuda_backend.model_run;
 * model_run on an evicted model makes a cold start. Weights go back where
 * they were before the eviction when that room is free; when they move,
 * the shape programs take the new addresses and their graphs are updated in
 * place (cuGraphExecUpdate), not remade (cuda_cold_stats says which).
 *
 * Promotion (opt-in): cuda_cold_promote queues copies of a resident
 * model's DHA layers into device ranges of their own and returns; the next
 * cuda_cold_run (or cuda_cold_promoted) that finds them arrived switches
 * those layers to device memory (the shape programs are remade once). With
 * DPRT_COLD_PROMOTE=1 set when the model is made (default off),
 * cuda_cold_run promotes after every successful cold start. An eviction
 * gives the ranges back and the next cold start runs the plan as before.
 */
/* One GPU's transfer link for other GPUs' cold starts: a host-to-device
 * and a peer copy stream, two staging slots in its device memory, events.
 * Made and destroyed by the thread that owns d (it takes from d's pool);
 * claimed and used by any thread. */
struct cuda_link;
int cuda_link_create(struct cuda_dev *d, struct cuda_link **out);
void cuda_link_destroy(struct cuda_link *lk);
/* Take the link for one cold start (false: someone else has it) / give it
 * back. Any thread. */
bool cuda_link_claim(struct cuda_link *lk);
void cuda_link_release(struct cuda_link *lk);

/* Reserve device memory for d's pool up front until bytes are reserved
 * in all (e.g. the server's --gpu-mem-limit), so that no cold start's
 * range or plan ever makes the pool call cuMemAlloc. d's thread. 0 or an
 * error with err_set. (DPRT_CUDA_POOL_MB=N at cuda_device_open does the
 * same for N MiB; DPRT_CUDA_ARENA_MB=N reserves the activation arena that
 * the device's models share at N MiB, so that it never grows.) */
int cuda_device_reserve(struct cuda_dev *d, uint64_t bytes);

#define CUDA_COLD_LINKS 16
/* What one cold start did. */
struct cuda_cold_stats {
	bool cold;			      /* weights were brought in (false: was resident) */
	bool graph;			      /* ran as one captured graph */
	bool progs_remade;		      /* the shape programs (and their graphs) were
			     * remade: the places changed (promotion undone) */
	bool moved;			      /* weights landed elsewhere than last time: the
			     * shape programs took the new addresses (their
			     * graphs updated, not remade) */
	uint32_t graphs_updated;	      /* cold-start graphs updated in place
				   * (new addresses, cuGraphExecUpdate) */
	uint32_t graphs_captured;	      /* cold-start graphs instantiated anew */
	bool deferred;			      /* moved: ran eagerly, graphs left stale
				   * for cuda_model_tidy */
	uint64_t fixup_ns;		      /* taking the new addresses: rebind, and
				   * re-recording when not deferred */
	uint32_t links;			      /* links that carried bytes, the target's included */
	uint32_t fallbacks;		      /* helper slots that found no free link */
	uint32_t copies;		      /* host-to-device copies (one per group) */
	uint64_t bytes_link[CUDA_COLD_LINKS]; /* bytes per plan link */
	uint64_t bytes_loaded;		      /* all links */
	uint64_t bytes_dha;		      /* left in host memory */
	uint64_t bytes_promoted;	      /* DHA layers' bytes this run switched to
				  * device memory (a finished promotion) */
};

/*
 * Make a model for cold starts by plan p (made for g: same layers and
 * bytes) on device d, with weights in a host weight store (pinned and
 * mapped). helpers[n_helpers] are the links that may lend themselves
 * (NULL/0: none; a plan's helper slot without one falls back to the
 * target's link). The model starts evicted. Device d's thread. 0 or an
 * error with err_set.
 */
int cuda_cold_model_create(struct cuda_dev *d, const struct graph *g, const void *weights,
			   const struct plan *p, struct cuda_link *const *helpers,
			   uint32_t n_helpers, struct exec_model **out);
/* Change m's plan (a model of cuda_cold_model_create; evicts it first).
 * A plan with another DHA set remakes the shape programs. p may be freed
 * afterwards. 0 or an error with err_set. */
int cuda_cold_set_plan(struct exec_model *m, const struct plan *p);
/* Whether m's LOAD layers are in device memory. */
bool cuda_cold_resident(const struct exec_model *m);
/*
 * One inference that brings m's weights in by its plan if m is evicted
 * (else a warm run); out as for model_run. st (may be NULL) tells what
 * happened. On failure m is left evicted and usable. Device's thread.
 */
int cuda_cold_run(struct exec_model *m, const struct tview *in, struct tview *out,
		  struct cuda_cold_stats *st);
/* exec_ops.cold_stream: m's next cold starts wait for the watermark at
 * ready (mapped host memory) before each group's copy and DHA kernel
 * (cuStreamWaitValue32 GEQ) and run eagerly; -EOPNOTSUPP where the device
 * cannot wait on host memory. Device's thread. */
int cuda_cold_stream(struct exec_model *m, const _Atomic uint32_t *ready);
/* Return m's LOAD layers' device memory to the pool (no-op if evicted).
 * 0 or an error with err_set (-EINVAL for a model without cold state). */
int cuda_cold_evict(struct exec_model *m);
/* Whether other's LOAD ranges (other resident) overlap where m's LOAD
 * layers were before m's last eviction (m evicted); same device. */
bool cuda_cold_overlaps(const struct exec_model *m, const struct exec_model *other);
/* Re-record m's stale cold-start graphs (m resident, no helpers); the
 * device's context is current and its streams idle. Whether it did any. */
bool cuda_cold_tidy(struct exec_model *m);
/* exec_ops.model_tidy: re-record the stale graphs of m (warm and cold)
 * that runs left for later (DPRT_COLD_DEFER). Whether it did any. */
bool cuda_model_tidy(struct exec_model *m);
/*
 * Start promoting m's DHA layers into device memory: take ranges from the
 * device pool (adjacent layers share one, as in cold starts), queue their
 * copies on the device's copy stream and return without waiting. Runs
 * read the layers from host memory until cuda_cold_run or
 * cuda_cold_promoted finds the copies done and switches (cuda_backend's
 * model_run alone does not switch). An evicted model, one without DHA
 * layers, or one promoted or promoting: 0, nothing done. Pool full: the
 * model stays as it was, an error with err_set naming it (-ENOMEM). A
 * model without cold state: -EINVAL. Device's thread. An eviction (also
 * by cuda_cold_set_plan) or destruction gives the ranges back.
 */
int cuda_cold_promote(struct exec_model *m);
/* Whether m's DHA layers run from device memory now: a finished
 * promotion switches here if no run has yet; never waits. A failed copy
 * is logged and the promotion dropped (false). Device's thread. */
bool cuda_cold_promoted(struct exec_model *m);

/*
 * The GPU profiler: measure graph g (weights in a host weight store, the
 * package's checksum pkg_checksum) on devs[0] as the target, with
 * devs[1..n_devs-1] as helpers for the link facts, and fill a profile
 * (plan.h): per layer the H2D time of its range, its exec time with
 * weights resident and with them read from host memory (10 warm-up + 10
 * timed runs, CUDA events, batch 1 at the model's default shape); per
 * link the H2D bandwidth alone and with k links busy, peer bandwidth and
 * latency, and the DHA interference shares. The calling thread must own
 * every device (a profiling run, not a serving one); it takes a few
 * seconds and about 1 GiB of pinned memory and of each GPU's memory.
 * 0 or an error with err_set.
 */
int cuda_profile(struct cuda_dev *const *devs, uint32_t n_devs, const struct graph *g,
		 const void *weights, uint64_t pkg_checksum, struct plan_profile **out);

#endif
