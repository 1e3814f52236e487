/* SPDX-License-Identifier: MIT */
/*
 * plan: profiles, the cold-start simulator, the planner (DHA and PT
 * decisions) and plan files.
 *
 * A *profile* holds what the GPU profiler measured for one package on one
 * GPU model: per layer its bytes, load / exec / DHA-exec times, and the
 * facts of the machine's transfer links. The planner turns a profile into a
 * *plan*: per layer LOAD (copied to the target GPU before it runs) or DHA
 * (read in place from pinned host memory), which link copies a LOAD layer
 * (0 = the target GPU's own host-to-device link, k = helper GPU k's link
 * followed by a peer copy over NVLink into the target), and its position in
 * that link's queue. Helper k is relative to the target: the engine picks
 * which GPU lends its link, so a plan fixes no GPU pairs.
 *
 * Cold-start model (plan_sim_run; the engine must behave like it):
 *  - one exec stream runs the layers in order; layer i's exec time covers
 *    its own node and the weightless nodes after it up to the next layer
 *    (nodes before layer 0 count to layer 0);
 *  - every link copies its layers back to back in queue order, all links
 *    starting at time 0. A transfer of layer i has a fixed part
 *    ovh = min(xfer_ovh_ns, load_ns) and a bandwidth part load_ns - ovh,
 *    which progresses at share(k) of the alone speed while k links still
 *    have layers to copy: share(k) = min(1, agg_bw[k-1] / (k * h2d_bw)),
 *    share(1) = 1 (alone, a link is as fast as profiled; together the links
 *    split the host's aggregate bandwidth; a link that is done stops
 *    counting);
 *  - a helper's copy of layer i is followed by a peer copy into the target
 *    of bytes / peer_bw + peer_lat_ns; peer copies into the target share its
 *    NVLink ingress and run one at a time, first come first served (ties:
 *    lower layer index). A helper's next H2D copy overlaps its previous
 *    peer copy (two streams and a double-buffered staging area);
 *  - a LOAD layer starts when its bytes have arrived and the previous layer
 *    has ended, and runs for exec_ns. A DHA layer never waits for bytes: it
 *    first reads host memory for max(dha_ns - exec_ns, 0) (its DHA penalty,
 *    at alone speed), then computes for min(exec_ns, dha_ns). Its reads
 *    cross the target's PCIe link, which the target's own copies use too:
 *    while the target's link still has layers to copy, the reads run at
 *    dha_read_share of their speed and the copy's bandwidth part at
 *    dha_copy_share (1 and 1: no interference; a DHA layer then simply
 *    takes dha_ns, as in DeepPlan's model, which ignores it);
 *  - in demand mode the first layer waits for every LOAD layer to arrive.
 * Stall = time the exec stream waits for bytes. Total = end of the last
 * layer.
 *
 * Files: profiles (*.dpprof) and plans (*.dpp) are binary, little-endian,
 * versioned and CRC32C-checked (layouts at the top of file.c); readers
 * refuse anything malformed with a message naming the file. A plan is keyed
 * by the package checksum, the GPU model name and the number of GPUs.
 *
 * Thread safety: every function works on the objects it is given; none
 * keeps global state. Nothing here touches a GPU.
 */
#ifndef DPRT_PLAN_H
#define DPRT_PLAN_H

#include "model/model.h"

#define PLAN_MAX_GPUS 16
#define PLAN_GPU_LEN 64 /* GPU model name, NUL included */
#define PLAN_MAX_LAYERS (1u << 20)
#define PLAN_NO_ORDER UINT32_MAX /* order of a DHA row */
#define PLAN_ASG_DHA 0xffu	 /* plan_sim_run: layer runs by DHA */

/* Profile and plan flags. */
#define PLAN_F_SYNTHETIC 1u /* derived analytically, not measured on a GPU */
#define PLAN_F_ALL PLAN_F_SYNTHETIC

/* Same values as enum exec_place (exec.h), which sits above this layer. */
enum plan_place {
	PLAN_LOAD = 0,
	PLAN_DHA = 1,
};

/*
 * What a plan may use. dprt searches DHA and PT together over widths 1..n
 * and records the width that predicts fastest (helpers are lent only where
 * they shorten the cold start); pt+dha is the same search under the paper's
 * name for the mode, so benchmarks can name it.
 */
enum plan_mode {
	PLAN_DPRT = 0,	      /* dprt's planner: DHA and PT, best width 1..n */
	PLAN_DEEPPLAN_V1 = 1, /* DeepPlan's own DHA greedy and equal-size PT split */
	PLAN_PIPELINE = 2,    /* all LOAD on the target's link (PipeSwitch) */
	PLAN_PT = 3,	      /* all LOAD over up to n links, dprt's split */
	PLAN_PT_DHA = 4,      /* = dprt */
	PLAN_DEMAND = 5,      /* all LOAD on the target's link, run after all arrive */
	PLAN_DEEPPLAN = 6,    /* dprt's planner on the target's link only (DHA) */
	PLAN_MODE_COUNT
};
/* "dprt", "deepplan-v1", "pipeline", "pt", "pt+dha", "demand", "deepplan". */
const char *plan_mode_name(enum plan_mode m);
/* The mode of a name above; -1 if none. */
int plan_mode_parse(const char *s);

/*
 * Facts of the transfer links, measured on the machine (bandwidths in
 * bytes per second, times in nanoseconds). What the GPU profiler measures:
 *  h2d_bw       a large (1 GiB) H2D copy from pinned memory, one GPU;
 *  agg_bw[k-1]  the sum of k GPUs' H2D bandwidth, all copying at once;
 *  peer_bw      a large peer copy from a helper into the target;
 *  peer_lat_ns, xfer_ovh_ns  the time of a small (4 KiB) peer / H2D copy;
 *  dha_*_share  a kernel streaming pinned host memory (DHA) and an H2D copy
 *               on the target at once: the throughput of each relative to
 *               the same work alone.
 * Invariants (checked by the readers and plan_profile_validate):
 * 1 <= n_gpus <= PLAN_MAX_GPUS; h2d_bw, peer_bw and agg_bw[0..n_gpus-1]
 * finite and > 0; agg_bw[n_gpus..] == 0; the DHA shares in (0, 1].
 */
struct plan_links {
	uint32_t n_gpus;	      /* GPUs whose links were measured */
	double h2d_bw;		      /* one link's H2D from pinned memory, alone */
	double agg_bw[PLAN_MAX_GPUS]; /* [k-1]: aggregate H2D with k links busy */
	double peer_bw;		      /* peer copy (NVLink) into the target */
	uint64_t peer_lat_ns;	      /* fixed cost of one peer copy */
	uint64_t xfer_ovh_ns;	      /* fixed cost of one H2D */
	double dha_copy_share;	      /* an H2D copy's speed beside DHA reads */
	double dha_read_share;	      /* DHA reads' speed beside an H2D copy */
};

/*
 * One layer as the GPU profiler measured it on the target GPU (means of
 * timed runs after warm-up, CUDA events):
 *  load_ns:  H2D copy of the layer's byte range from pinned host memory,
 *            nothing else running;
 *  exec_ns:  the layer's node plus the weightless nodes after it (see the
 *            file comment), weights resident in device memory;
 *  dha_ns:   the same with the layer's weights read from pinned host memory
 *            through its device mapping.
 * name and op are for display (the layer's name and its node's enum op).
 */
struct plan_layer_prof {
	char name[NAME_LEN];
	uint16_t op;
	uint64_t bytes;
	uint64_t load_ns, exec_ns, dha_ns;
};

/* A profile: one package (by checksum) on one GPU model. */
struct plan_profile {
	uint64_t pkg_checksum;
	char gpu[PLAN_GPU_LEN]; /* GPU model name, e.g. "NVIDIA H100 80GB HBM3" */
	char model[NAME_LEN];	/* model name, for display */
	uint32_t flags;		/* PLAN_F_* */
	uint32_t n_layers;
	struct plan_links link;
	struct plan_layer_prof *layers; /* [n_layers], in the package's order */
};

/* Allocate a zeroed profile of n layers (1..PLAN_MAX_LAYERS). 0 or -ENOMEM
 * / -EINVAL with err_set. Any thread. */
int plan_profile_create(uint32_t n_layers, struct plan_profile **out);
void plan_profile_destroy(struct plan_profile *pf);

/*
 * Make a profile for graph g of the package with checksum pkg_checksum:
 * names, ops and bytes filled from g, times zero, link facts zero. The GPU
 * profiler starts from this and fills the times, the link facts and the GPU
 * name. 0 or an error with err_set.
 */
int plan_profile_from_graph(const struct graph *g, uint64_t pkg_checksum,
			    struct plan_profile **out);

/*
 * A synthetic profile for g: times derived from bytes and FLOP estimates
 * with the H100/H200 figures of PAPER.md (55 GB/s H2D with 5 us per
 * transfer, 185 GB/s for 4 links at once, 396 GB/s NVLink, DHA reads at
 * 51 GB/s, fp32 GEMMs at 19 TFLOP/s), for n_gpus GPUs (1..8). Flagged
 * PLAN_F_SYNTHETIC, GPU name "synthetic H100 (PAPER.md figures)", so a plan
 * made from it never matches a real GPU. For demonstrations and tests on
 * the CPU; never a measurement. 0 or an error with err_set.
 */
int plan_profile_synthetic(const struct graph *g, uint64_t pkg_checksum, uint32_t n_gpus,
			   struct plan_profile **out);

/* Check a profile's link facts and layers (the readers' rules). what names
 * the profile in the message. 0 or DPRT_EBADPLAN with err_set. */
int plan_profile_validate(const struct plan_profile *pf, const char *what);

/*
 * Check that profile pf (read from `what`) was made for this package:
 * checksum, layer count and per-layer bytes. 0 or DPRT_EBADPLAN with a
 * message such as "profile p.dpprof was made for package 1234..., this is
 * 5678...".
 */
int plan_profile_match(const struct plan_profile *pf, const char *what, uint64_t pkg_checksum,
		       const struct graph *g);

/* Write pf to path atomically (temp file + rename). 0 or error, err_set. */
int plan_profile_write(const char *path, const struct plan_profile *pf);
/* Read and validate a profile file. 0 or DPRT_EBADPLAN / DPRT_EVERSION /
 * -errno with a message naming the file. */
int plan_profile_read(const char *path, struct plan_profile **out);

/* ---- simulator ---- */

/*
 * Workspace and result of one simulation (allocation-free per run). The
 * result arrays hold, per layer, its predicted arrival (bytes usable on the
 * target; 0 for DHA), start and end on the exec stream, in ns from the start
 * of the cold start.
 */
struct plan_sim {
	uint32_t cap; /* layers the workspace holds */
	/* Input, INFINITY after plan_sim_init: a run stops as soon as its
	 * total must exceed cutoff and then reports total_ns = INFINITY
	 * (the other results are partial). For searches. */
	double cutoff;
	double *arrival, *start, *end; /* [cap] */
	double total_ns;	       /* end of the last layer */
	double stall_ns;	       /* exec stream waiting for bytes, summed */
	double links_done_ns;	       /* when the last transfer finished */
	/* scratch */
	double *rest;	 /* [cap + 1] least time of layers i.. */
	uint32_t *queue; /* [cap] layers grouped by link, in order */
	uint32_t first[PLAN_MAX_GPUS + 1];
};
/* share(k) of the model above: the speed of each of k busy links relative
 * to one link alone, min(1, agg_bw[k-1] / (k * h2d_bw)); 1 for k <= 1. */
double plan_link_share(const struct plan_links *lk, uint32_t k);

/* Make a workspace for up to n layers. 0 or -ENOMEM. */
int plan_sim_init(struct plan_sim *s, uint32_t n);
void plan_sim_fini(struct plan_sim *s);

/*
 * Simulate a cold start of profile pf with n_links links (1..pf's n_gpus):
 * asg[i] is layer i's link (< n_links) or PLAN_ASG_DHA; order[i], if order
 * is not NULL, is a LOAD layer's position in its link's queue (a
 * permutation of 0..count-1 per link; ignored for DHA), else each link
 * copies its layers in layer order. demand: the first layer waits for all
 * bytes. Pure and deterministic. 0, or -EINVAL for an invalid assignment
 * (no message: callers validate first).
 */
int plan_sim_run(struct plan_sim *s, const struct plan_profile *pf, uint32_t n_links,
		 const uint8_t *asg, const uint32_t *order, bool demand);

/* ---- plans ---- */

/* One layer's decision and its predicted timeline. LOAD: link < width and
 * order is its position in that link's queue; DHA: link 0, PLAN_NO_ORDER. */
struct plan_row {
	uint8_t place; /* enum plan_place */
	uint32_t link;
	uint32_t order;
	double arrival_ns, start_ns, end_ns;
};

/*
 * A plan. prof is a copy of the profile it was made from (the key, the
 * per-layer facts and the link facts), restricted to the plan's GPUs:
 * prof.link.n_gpus is the number of GPUs the plan is for. width = links in
 * use: link 0 and helpers 1..width-1, each helper carrying at least one
 * layer. total_ns = the last row's end_ns.
 */
struct plan {
	struct plan_profile prof;
	uint32_t mode; /* enum plan_mode */
	uint32_t width;
	double total_ns, stall_ns;
	struct plan_row *rows; /* [prof.n_layers] */
};

/*
 * Plan a cold start of pf's package on n_gpus GPUs (1..pf's n_gpus) in
 * the given mode. dprt, pt and pt+dha use up to n_gpus links, deepplan-v1
 * exactly n_gpus (the original's split), the other modes one. The plan's
 * predicted times come from plan_sim_run. 0 or an error with err_set.
 * Any thread; dprt on 209 layers and 4 links takes some 30-90 ms.
 */
int plan_build(const struct plan_profile *pf, enum plan_mode mode, uint32_t n_gpus,
	       struct plan **out);
/* An empty plan for pf on n_gpus GPUs (1..pf's n_gpus): a copy of pf with
 * its link facts cut to n_gpus, every row LOAD on link 0 in layer order,
 * nothing predicted. For readers and tests. 0 or an error with err_set. */
int plan_create(const struct plan_profile *pf, uint32_t n_gpus, struct plan **out);
/* Free a plan (NULL is ignored). */
void plan_destroy(struct plan *p);

/*
 * The planner's steps, for tests and comparisons. asg is as for
 * plan_sim_run, of pf->n_layers entries.
 * plan_v1_dha: DeepPlan's dynamic DHA plan (one link): asg[i] = 0 or
 *   PLAN_ASG_DHA. plan_v1_split: the original's equal-size contiguous
 *   split of the LOAD layers of asg over n_links links (front chunk on the
 *   target). plan_optimize: dprt's search over n_links links (DHA only if
 *   dha), starting from asg (a valid assignment, at least as good as the
 *   result) and improving it; returns the predicted total.
 */
int plan_v1_dha(const struct plan_profile *pf, uint8_t *asg);
void plan_v1_split(const struct plan_profile *pf, uint32_t n_links, uint8_t *asg);
int plan_optimize(const struct plan_profile *pf, uint32_t n_links, bool dha, uint8_t *asg,
		  double *total_ns);

/* Check every invariant of p (the plan reader's rules). what names the
 * plan in the message. 0 or DPRT_EBADPLAN with err_set. */
int plan_validate(const struct plan *p, const char *what);

/*
 * Refuse a plan made for something else: another package, GPU model or
 * GPU count. what names the plan file. 0 or DPRT_EBADPLAN with a message
 * such as "plan x.dpp was made for package 1234..., this is 5678...".
 */
int plan_check_key(const struct plan *p, const char *what, uint64_t pkg_checksum, const char *gpu,
		   uint32_t n_gpus);

/* Write p to path atomically (temp file + rename), after plan_validate.
 * 0 or error with err_set. */
int plan_write(const char *path, const struct plan *p);
/* Read and validate a plan file. 0 or DPRT_EBADPLAN / DPRT_EVERSION /
 * -errno with a message naming the file. */
int plan_read(const char *path, struct plan **out);

/* Per-link and DHA byte counts of a plan (for display). */
struct plan_stats {
	uint64_t link_bytes[PLAN_MAX_GPUS];
	uint32_t link_layers[PLAN_MAX_GPUS];
	uint64_t dha_bytes, total_bytes;
	uint32_t dha_layers;
};
void plan_get_stats(const struct plan *p, struct plan_stats *st);

/* ---- plan repository ---- */

/*
 * Directory of the plans of the package at pkg_path: dir if not NULL; else
 * $PLAN_REPO/<model>-<first 8 hex digits of the checksum> if PLAN_REPO is
 * set and not empty; else <directory of pkg_path>/plans. 0 or
 * -ENAMETOOLONG with err_set.
 */
int plan_repo_dir(const char *dir, const char *pkg_path, const char *model, uint64_t pkg_checksum,
		  char *out, size_t len);
/* File name of a plan: "<gpu slug>-<n>gpu-<mode slug>.dpp", the slug being
 * the name in lower case with runs of other characters than [a-z0-9] as
 * one '-' (e.g. "nvidia-h100-80gb-hbm3-4gpu-pt-dha.dpp"). 0 or
 * -ENAMETOOLONG. */
int plan_file_name(const char *gpu, uint32_t n_gpus, enum plan_mode mode, char *out, size_t len);
/*
 * Find and read the plan for (package, GPU model, GPU count, mode) in
 * directory dir, refusing one made for something else. 0; -ENOENT with
 * err_set if there is none; or the errors of plan_read / plan_check_key.
 */
int plan_find(const char *dir, uint64_t pkg_checksum, const char *gpu, uint32_t n_gpus,
	      enum plan_mode mode, struct plan **out);
/* Write p / pf into dir (made if missing) under its key's file name; path
 * gets the file's path. 0 or an error with err_set. */
int plan_store(const char *dir, const struct plan *p, char *path, size_t len);
int plan_profile_store(const char *dir, const struct plan_profile *pf, char *path, size_t len);
/* File name of a stored profile: "<gpu slug>-<n>gpu.dpprof". 0 or
 * -ENAMETOOLONG. */
int plan_profile_file_name(const char *gpu, uint32_t n_gpus, char *out, size_t len);
/*
 * Read the profile `dprt plan` stored in dir for (package, GPU model) with
 * the most GPUs, at least min_gpus. 0; -ENOENT with err_set if there is
 * none; DPRT_EBADPLAN for one made for something else; read errors.
 */
int plan_profile_find(const char *dir, uint64_t pkg_checksum, const char *gpu, uint32_t min_gpus,
		      struct plan_profile **out);
/*
 * The plan for (package, GPU model, n_gpus, mode): the stored one, else one
 * made now from the stored profile (a profile of n_gpus or more GPUs
 * serves any count up to its own), written to dir if store. 0; -ENOENT
 * with err_set if neither plan nor profile is there; the errors of
 * plan_find, plan_profile_find and plan_build.
 */
int plan_get(const char *dir, uint64_t pkg_checksum, const char *gpu, uint32_t n_gpus,
	     enum plan_mode mode, bool store, struct plan **out);

#endif
