/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the CUDA backend's tests: a GPU per test, models with random
 * weights in pageable memory and in a host weight store, random inputs, and
 * the check that runs a model on the CPU reference and on the GPU and
 * compares the outputs (normalised max error: max|gpu - cpu| / max|cpu|).
 */
#ifndef DPRT_TEST_CUDA_HELPERS_H
#define DPRT_TEST_CUDA_HELPERS_H

#include "exec/cuda/cuda.h"
#include "exec/exec.h"
#include "mem/mem.h"

/* Open GPU 0. Without a GPU the test is skipped, unless DPRT_REQUIRE_GPU
 * is set (the GPU machine's runs), where that fails it. */
struct cuda_dev *tgpu_open(void);

/* A graph with its weights twice: pageable and in a host weight store. */
struct tmodel {
	struct graph *g;
	void *page;
	struct hoststore *hs;
};
/* Weights: uniform in [-scale, scale), from r. Takes ownership of g. */
void tm_init(struct tmodel *t, struct graph *g, struct rng *r, float scale);
/* A zoo model with the zoo's seeded random weights. */
void tm_init_zoo(struct tmodel *t, const char *name, enum dtype dt, uint64_t seed);
void tm_fini(struct tmodel *t);

/* How a GPU model gets its weights. */
enum tplace {
	TP_LOAD_PAGEABLE, /* every layer loaded, from pageable memory */
	TP_LOAD_PINNED,	  /* every layer loaded, from the host weight store */
	TP_DHA,		  /* every layer read in place from the store */
	TP_MIXED,	  /* even layers loaded, odd layers DHA */
};
const char *tplace_name(enum tplace p);
int tmodel_create_gpu(struct cuda_dev *d, const struct tmodel *t, enum tplace p,
		      struct exec_model **out);

/*
 * Inputs for g: dims DIM_BATCH/DIM_SEQ become batch/seq. Float inputs are
 * uniform in [-1, 1); an INT64 input named like a mask is 1 but for `pad`
 * trailing zeros in every row after the first; other INT64 inputs are ids
 * below the smallest embedding table that reads them, else below
 * id_range. Optional inputs are given unless omit_optional.
 */
void tin_make(const struct graph *g, int64_t batch, int64_t seq, int64_t pad, int64_t id_range,
	      bool omit_optional, struct rng *r, struct tview *in);
void tin_free(const struct graph *g, struct tview *in);

/* Tolerance of the normalised max error for an activation dtype. */
double ttol(enum dtype dt);
/* Normalised max error of a against the reference b (same shape/dtype);
 * integer tensors: 0 if equal, else infinity. NaN counts as infinity. */
double tnorm_err(const struct tview *a, const struct tview *ref);

/*
 * Run t on the CPU backend and on the GPU (placement p) with inputs in,
 * and assert every output within tol. The GPU model then runs twice more
 * with its outputs poisoned in between (the second and third runs replay
 * the CUDA graph): each must equal the first GPU run bit for bit.
 * what names the case in failure messages.
 */
void tcheck(struct cuda_dev *d, const struct tmodel *t, const struct tview *in, enum tplace p,
	    double tol, const char *what);

/* A seed that differs from run to run, logged so a failure can be redone
 * (DPRT_TEST_SEED overrides it). */
uint64_t tseed(void);

#endif
