/* SPDX-License-Identifier: MIT */
/*
 * exec: backends behind one vtable, and the executor.
 *
 * A backend model is made from a graph plus its weight region in host
 * memory (package layout, g->weights_size bytes). The region must outlive
 * the model: the host weight store owns it, and backends may read it in
 * place (the CPU backend does; the CUDA backend's DHA layers do).
 */
#ifndef DPRT_EXEC_H
#define DPRT_EXEC_H

#include "model/model.h"

/* A tensor passed in or out of a run. For inputs, shape.ndim == 0 (and
 * data == NULL) marks an omitted optional input. */
struct tview {
	struct shape shape;
	void *data;
	uint64_t nbytes;
};

struct exec_model;

/* Activation and output memory a model keeps when it shrinks. */
#define EXEC_SHRINK_KEEP (16ull << 20)

/* Where a layer's weights are while its model runs (model_create_placed). */
enum exec_place {
	PLACE_LOAD = 0, /* copied into device memory when the model is made */
	PLACE_DHA = 1,	/* read in place from host memory by the kernels (direct
			 * host access): the weight region must be pinned and
			 * device-mapped, i.e. a host weight store (mem.h) */
};

struct plan;
struct plan_profile;
struct link_table;

/* What one cold start by plan did (exec_ops.cold_run). */
struct exec_cold_info {
	bool cold;	       /* weights were brought in (false: was resident) */
	uint32_t links;	       /* links that carried bytes, the target's included */
	uint64_t bytes_loaded; /* copied to the device, all links */
	uint64_t bytes_dha;    /* left in host memory, read in place */
	bool moved;	       /* weights landed elsewhere than last time */
	bool deferred;	       /* so the run went eagerly; model_tidy re-records */
	uint64_t fixup_ns;     /* spent taking the new addresses (rebind, and
				* re-recording graphs when not deferred) */
	uint32_t fallbacks;    /* transfers the plan put on a helper's link
				* that went over fewer links (none idle) */
};

/*
 * A backend: its devices, its models and, optionally, cold starts by plan.
 * Members marked optional may be NULL; the front end's defaults are said
 * beside them. A device handle (void *dev) is the backend's own; a device
 * is used by the thread that opened it only (its worker), except where a
 * member says "any thread".
 */
struct exec_ops {
	const char *name;

	/* ---- devices ---- */
	/* Devices the backend can open (any thread); 0 when it has none
	 * (no driver). */
	int (*dev_count)(void);
	/* Open device ordinal for the calling thread, which owns it from then
	 * on. DPRT_ENODEV when there is no such device; else 0 and *out. */
	int (*dev_open)(int ordinal, void **out);
	/* Close a device; every model made on it must be destroyed first. */
	void (*dev_close)(void *dev);
	/* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs": for logs. */
	const char *(*dev_label)(const void *dev);
	/* "NVIDIA H100 80GB HBM3": what profiles and plans are keyed by. */
	const char *(*dev_model)(const void *dev);
	/* Device bytes handed out to models now (any thread; a snapshot). */
	uint64_t (*dev_used)(const void *dev);

	/* ---- models ---- */
	/* Make a runnable model on dev (NULL: the CPU backend's implicit
	 * device). Called by the thread that owns the device. */
	int (*model_create)(void *dev, const struct graph *g, const void *weights,
			    struct exec_model **out);
	void (*model_destroy)(struct exec_model *m);
	/* Run one inference. in[g->n_inputs]; out[g->n_outputs] is filled with
	 * shapes and pointers to buffers owned by the model, valid until the
	 * next run or destroy. Bad input (shape, dtype, token id) returns an
	 * error with err_set and leaves the model usable. A cold model that is
	 * evicted makes a cold start. */
	int (*model_run)(struct exec_model *m, const struct tview *in, struct tview *out);
	/* Optional (NULL: nothing to give back). Give back the activation and
	 * output memory a large run grew beyond EXEC_SHRINK_KEEP bytes; a
	 * later run that needs it grows it again. Outputs of the last run are
	 * invalid afterwards. The worker calls it when its device has been
	 * idle a while, so that one large request does not keep its memory
	 * for good. */
	void (*model_shrink)(struct exec_model *m);
	/* Optional (NULL: nothing to tidy). Work a run left for later that
	 * is cheaper done while the device is idle (re-recording the graphs
	 * of a model whose weights moved). Returns whether it did any; the
	 * worker calls it between requests. */
	bool (*model_tidy)(struct exec_model *m);
	/* Optional (NULL: the backend has no device memory; use model_create).
	 * Like model_create, with place[g->n_layers] giving each layer's enum
	 * exec_place; place == NULL means every layer PLACE_LOAD. */
	int (*model_create_placed)(void *dev, const struct graph *g, const void *weights,
				   const uint8_t *place, struct exec_model **out);

	/* ---- cold starts by plan (optional: all NULL, or all set) ----
	 * A cold model is made from a plan (plan/plan.h) for one device: its
	 * DHA layers stay in host memory (weights must be a host weight
	 * store), its LOAD layers are brought in by each cold start and given
	 * back by an eviction; what else it holds (shape programs, graphs) stays
	 * while it is evicted. */
	/* Measure g on devs[0] (devs[1..n-1]: helpers for the link facts) and
	 * fill a profile for plans. The calling thread owns every device; it
	 * may take seconds. 0 or an error with err_set. */
	int (*profile)(void *const *devs, uint32_t n_devs, const struct graph *g,
		       const void *weights, uint64_t pkg_checksum, struct plan_profile **out);
	/* A cold model of g by plan p on dev, made evicted (its first run is
	 * a cold start). p may be freed afterwards. */
	int (*cold_create)(void *dev, const struct graph *g, const void *weights,
			   const struct plan *p, struct exec_model **out);
	/* Give m's LOAD layers' device memory back (no-op when evicted). */
	int (*cold_evict)(struct exec_model *m);
	/* Whether m's LOAD layers are in device memory. */
	bool (*cold_resident)(const struct exec_model *m);
	/* model_run that says what happened (info may be NULL). On failure m
	 * is left evicted and usable. */
	int (*cold_run)(struct exec_model *m, const struct tview *in, struct tview *out,
			struct exec_cold_info *info);
	/* Optional (NULL: no addresses to keep). Whether evicting other would
	 * free part of the device range m's LOAD layers held before m's last
	 * eviction (so that m's next cold start lands there and its graphs
	 * stay right). m is evicted, other resident; both on one device. */
	bool (*cold_overlaps)(const struct exec_model *m, const struct exec_model *other);
	/* Optional (NULL: the device lends no link and its cold starts use
	 * only their own). Device dev joins link table t (mem/link.h) as
	 * device i: other devices' cold starts may borrow its link between
	 * its own transfers, and its cold models' plans with helpers borrow
	 * theirs. dev_close leaves the table. Owner thread, after dev_open,
	 * before its first cold_create. 0 or an error with err_set. */
	int (*dev_join_links)(void *dev, struct link_table *t, uint32_t i);
	/* Optional (NULL: a cold start needs its whole weight region read).
	 * Stream m's cold starts from a region still being read: before a
	 * layer's weights are copied or read in place, wait until *ready
	 * (acquire; a host weight store's watermark, mem.h, in the same
	 * mapped allocation) exceeds the layer's index; EXEC_STREAM_FAILED
	 * there fails the cold start. ready NULL: stop. -EOPNOTSUPP when m
	 * read its weights when made (it must be made again). */
	int (*cold_stream)(struct exec_model *m, const _Atomic uint32_t *ready);
};

/* The watermark of a failed read (mem.h's HOSTSTORE_WM_FAILED). */
#define EXEC_STREAM_FAILED 0x7fffffffu

/* The GPU backend of this build (&cuda_backend), or NULL in a build
 * without one. */
extern const struct exec_ops *const exec_gpu_backend;

/* Whether a backend makes cold models by plan. */
static inline bool exec_has_cold(const struct exec_ops *be)
{
	return be && be->cold_create;
}

/* The CPU reference backend (OpenBLAS GEMMs, plain C elsewhere).
 * Computes in fp32 whatever the weight dtype; FP16/BF16 outputs are
 * rounded from fp32. */
extern const struct exec_ops cpu_backend;
/* Threads the CPU backend's GEMMs may use (0 = BLAS default). */
void cpu_set_threads(int n);
/*
 * The CPU backend's devices are virtual: dev_open(i) makes device "cpu<i>"
 * whose device memory is simulated (a byte budget, no limit by default).
 * Its cold models copy their plan's LOAD layers into memory of their own
 * at each cold start (the transfer) and read the DHA layers in place; runs
 * compute from the host weights either way. Profiles are the synthetic
 * estimate (plan_profile_synthetic), keyed by the device model "cpu".
 * Set the simulated capacity of a device (0: none); a cold start or model
 * beyond it fails with -ENOMEM. Owner thread.
 */
void cpu_dev_set_capacity(void *dev, uint64_t bytes);
/* What a CPU cold model holds on its device while evicted (simulating a
 * GPU model's shape programs, graphs and events). */
#define CPU_COLD_KEEP 4096u

#endif
