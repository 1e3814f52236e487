/* SPDX-License-Identifier: MIT */
/*
 * cold: what the parts of the cold-start engine (exec.h, "cold starts on
 * the CUDA backend") share. cold.c: the run (one cold start, its graph
 * capture and replay, eviction) and the model's lifecycle; cold_link.c:
 * transfer links, their claims and staging; cold_copy.c: the groups of
 * layers and their copies by plan, per link; cold_promote.c: promotion of
 * the DHA layers into device memory.
 *
 * Threads: a cold model is its device's thread's, like every model; links
 * are shared and claimed (claim = acquire, release = release).
 */
#ifndef DPRT_EXEC_CUDA_COLD_PRIV_H
#define DPRT_EXEC_CUDA_COLD_PRIV_H

#include "cuda_priv.h"

#include <stdatomic.h>

#define STAGE_BYTES (32ull << 20)	 /* one staging slot of a helper link */
#define LINK_EVENTS 1024u		 /* group events of one helper link */
#define GROUP_BYTES (2ull << 20)	 /* adjacent layers copied as one, up to this */
#define DEMAND_GROUP_BYTES (64ull << 20) /* the same in demand mode (run after all) */
#define PT_TRIALS 2u			 /* cold starts with helpers timed eager, and graph */

struct cuda_link {
	struct cuda_dev *d;
	CUstream h2d, peer;
	uint64_t stage[2];
	CUevent staged[2];	 /* slot filled (h2d stream) */
	CUevent freed[2];	 /* slot forwarded (peer stream) */
	CUevent ev[LINK_EVENTS]; /* group arrived on the target */
	uint32_t slot;		 /* next staging slot: the claimer's */
	atomic_int claimed;	 /* 1 while a cold start holds the link */
};

/* Adjacent layers first..first+n-1 copied over one link as one range. */
struct cold_group {
	uint32_t first, n;
	uint32_t link;	/* plan slot: 0 = the target's own link */
	uint64_t dev;	/* device range on the target */
	uint64_t bytes; /* span of the host range */
	CUevent ev;	/* recorded once the range is on the target */
};

/* Where a promotion of the DHA layers stands. */
enum promo_state {
	PROMO_NONE,    /* DHA layers read from host memory, no ranges */
	PROMO_COPYING, /* ranges taken, copies queued, layers still DHA */
	PROMO_DONE,    /* layers LOAD in the ranges, shape programs remade */
};

struct cuda_cold {
	struct exec_model *m;
	uint32_t n_layers, width;
	bool demand;
	bool resident;
	bool per_layer;		/* ranges are model creation's (m->wrange) */
	bool use_graph;		/* DPRT_COLD_GRAPH unless "0" */
	bool graph_failed;	/* a capture failed: eager from then on */
	bool direct;		/* DPRT_PT_DIRECT=1 and every helper peer-mapped */
	uint8_t *link;		/* [n_layers]: plan slot of each LOAD layer */
	uint64_t *last;		/* [n_layers]: layer addresses at the last eviction */
	uint32_t *lgrp;		/* [n_layers]: this run's group of a LOAD layer */
	struct cold_group *grp; /* [n_layers]: this run's groups, by link */
	uint8_t *waited;	/* [n_layers]: exec stream waits on group */
	uint32_t n_grp;
	uint32_t tail[CUDA_COLD_LINKS]; /* last group of each link, + 1; 0: none */
	CUevent *ev;			/* [n_layers]: the target's group events */
	CUevent fork, join;		/* graph capture of the copy stream */
	struct cuda_link **helpers;
	uint32_t n_helpers;
	struct link_table *lt;			  /* serving's links (cold_serve.c), else NULL */
	uint32_t lt_i;				  /* the target's index in lt */
	uint32_t slot_i[CUDA_COLD_LINKS];	  /* lt index of each lent slot */
	struct cuda_link *slot[CUDA_COLD_LINKS];  /* this run's lent links */
	struct cuda_link *gslot[CUDA_COLD_LINKS]; /* links of the captured graphs */
	uint64_t pt_ns[2];   /* with helpers: fastest cold start eager [0], graph [1] */
	uint32_t pt_n[2];    /* how many each of those measured */
	int pt_try;	     /* this run measures pt_ns[pt_try]; -1: none */
	bool capturing;	     /* a cold start is being captured */
	bool helpers_queued; /* this run's helper copies are queued already */
	uint64_t bytes_dha;
	bool auto_promote; /* DPRT_COLD_PROMOTE=1: promote after cold starts */
	bool remade;	   /* an unpromotion dropped the shape programs */
	enum promo_state promo;
	struct cold_group *pgrp; /* [n_layers]: promoted ranges of DHA layers */
	uint32_t n_pgrp;
	CUevent promo_ev;	 /* recorded after the promotion's copies */
	uint64_t bytes_promoted; /* DHA layers' bytes in the ranges */
	CUdeviceptr wm;		 /* streaming: the watermark's address, 0 = none */
	int8_t wait_ok;		 /* cuStreamWaitValue32 works: 0 unknown, 1, -1 */
};

/* Streaming: stream s waits until the first n layers are read. */
int cold_wait_layers(struct cuda_cold *c, CUstream s, uint32_t n);

/* ---- cold_link.c ---- */

/* Destroy e (NULL ignored). */
void cold_event_destroy(CUevent e);
/* Lend helper slots 1..width-1 the first free links of the model's list
 * (st->fallbacks counts the slots that found none) / give them back. */
void cold_claim_links(struct cuda_cold *c, struct cuda_cold_stats *st);
void cold_release_links(struct cuda_cold *c);
/* After a failure: let every stream that took work finish. */
void cold_quiesce(struct cuda_cold *c);

/* ---- cold_serve.c: serving's link table ---- */

/* c->lt and c->lt_i: the table the model's GPU joined, if any. */
void cold_find_table(struct cuda_cold *c);
/* Lend helper slots 1..width-1 idle links of the table (st->fallbacks
 * counts those that found none) / give them back, counting what they
 * carried as lent. */
void cold_claim_table(struct cuda_cold *c, struct cuda_cold_stats *st);
void cold_release_table(struct cuda_cold *c);

/* ---- cold_copy.c ---- */

/* Layer l joins group open (the last of grp[*n], or NULL) if it follows
 * open's last layer and the span stays within limit bytes (GROUP_BYTES,
 * or DEMAND_GROUP_BYTES when nothing runs before the last group), else
 * opens grp[(*n)++] on link k. Returns l's group. */
struct cold_group *cold_add_layer(const struct graph *g, struct cold_group *grp, uint32_t *n,
				  struct cold_group *open, uint32_t l, uint32_t k, uint64_t limit);
/* This run's groups of LOAD layers, by link (the lent ones and link 0). */
void cold_make_groups(struct cuda_cold *c);
/* Take a range per group; lay the layers out in it; *moved: some layer
 * landed elsewhere than before the last eviction. */
int cold_alloc_groups(struct cuda_cold *c, bool *moved);
/* Give every LOAD range back; remember where the layers were. */
void cold_free_ranges(struct cuda_cold *c);
/* Queue every lent link's copies (and their group events). */
int cold_copy_helpers(struct cuda_cold *c);
/* Queue the target's copies on its copy stream, after the exec stream's
 * input copies. */
int cold_copy_own_after_inputs(struct cuda_cold *c);

/* ---- cold_promote.c ---- */

/* Switch if the promotion's copies are done, never waiting; the device's
 * context is current. True once switched. */
bool cold_poll_promoted(struct cuda_cold *c, struct cuda_cold_stats *st);
/* Back to the plan's DHA layers, the promoted ranges given back; remake:
 * drop the shape programs and rebind the weights if the layers had switched. */
void cold_unpromote(struct cuda_cold *c, bool remake);

/* ---- cold.c ---- */

/* Access from a's context to b's memory; already enabled is fine. Leaves
 * a's context current. */
int cold_enable_peer(struct cuda_dev *a, struct cuda_dev *b);
/* Give back every shape program of m (with its graphs). */
void cold_drop_progs(struct exec_model *m);
/* Give back the captured cold starts of m's shape programs. */
void cold_drop_graphs(struct exec_model *m);

#endif
