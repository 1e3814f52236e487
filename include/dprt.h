/* SPDX-License-Identifier: MIT */
/*
 * dprt's embedding API: serve a model repository from inside a C program,
 * without HTTP. The same scheduler as `dprt serve` runs behind it: one
 * pinned worker thread per device, cold starts, eviction, batching.
 *
 *   struct dprt_options o = {.models = "models", .devices = "0-3"};
 *   dprt *d;
 *   if (dprt_open(&o, &d)) { fprintf(stderr, "%s\n", dprt_last_error()); ... }
 *   int64_t ids[384] = {...};
 *   float pooled[768];
 *   struct dprt_tensor in = {"input_ids", DPRT_INT64, 2, {1, 384}, ids, sizeof(ids)};
 *   struct dprt_tensor out = {.name = "pooler_output", .data = pooled,
 *                             .nbytes = sizeof(pooled)};
 *   if (dprt_infer(d, "bert-base", 0, &in, 1, &out, 1)) ...
 *   dprt_close(d);
 *
 * Link with build/libdprt.a and build/libdprt_cuda.a (as one group; see
 * build.ninja's dprt target for the libraries they need).
 */
#ifndef DPRT_H
#define DPRT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dprt dprt;

/* Element types (the KServe v2 names in comments). */
enum dprt_dtype {
	DPRT_FP32 = 1,	/* FP32 */
	DPRT_FP16 = 2,	/* FP16 (IEEE half, stored as uint16_t) */
	DPRT_BF16 = 3,	/* BF16 (stored as uint16_t) */
	DPRT_INT64 = 4, /* INT64 */
	DPRT_INT32 = 5, /* INT32 */
	DPRT_UINT8 = 6, /* UINT8 */
	DPRT_BOOL = 7,	/* BOOL (one byte, 0 or 1) */
};

#define DPRT_MAX_DIMS 6

struct dprt_options {
	const char *models;	 /* repository: DIR/NAME/VERSION/model.dpk (required) */
	const char *devices;	 /* "cpu" (default), "cpu:N", or GPU ids "0-3", "0,2" */
	const char *cold_mode;	 /* how a GPU brings a model in, as serve's
				  * --cold-mode: NULL/"load", "auto", or a plan
				  * mode ("dprt", "deepplan", ...) */
	const char *plans;	 /* plan repository (NULL: beside each package) */
	uint64_t gpu_mem_limit;	 /* bytes per device for models, 0: no limit */
	uint64_t host_mem_limit; /* bytes of host weight copies, 0: no limit */
	uint32_t max_batch;	 /* fuse up to this many queued requests, 0/1: off */
	uint32_t batch_delay_us; /* wait this long for a batch to fill */
	int explicit_load;	 /* nonzero: load models only with dprt_load */
};

/*
 * Start dprt on a repository: open the devices, scan the repository and
 * (unless explicit_load) read every model's weights into host memory.
 * Returns 0 and *out, or a negative code (dprt_last_error() says why).
 */
int dprt_open(const struct dprt_options *o, dprt **out);

/*
 * Finish the requests in flight, stop the workers and free everything.
 * No dprt_infer may run or start. NULL is ignored.
 */
void dprt_close(dprt *d);

/* Load / unload a model (version 0: the newest / every version), as the
 * repository API of `dprt serve`. 0 or a negative code. */
int dprt_load(dprt *d, const char *model, uint32_t version);
int dprt_unload(dprt *d, const char *model, uint32_t version);

/* A tensor: an input the caller gives, or an output it asks for. */
struct dprt_tensor {
	const char *name;
	int dtype; /* enum dprt_dtype */
	int ndim;
	int64_t dims[DPRT_MAX_DIMS];
	void *data;	 /* row-major elements */
	uint64_t nbytes; /* inputs: the bytes at data; outputs: room at data */
};

/*
 * One inference of model (version 0: the newest ready version). in[n_in]:
 * the inputs by name, in any order (optional inputs may be left out).
 * out[n_out]: the outputs wanted, by name; dprt fills in dtype, ndim,
 * dims and nbytes and copies the elements to data, which must have room
 * for them (too little: -ENOSPC, with out[i].nbytes set to the bytes
 * needed and nothing copied). Blocks until the answer is there.
 * Any thread, several at once.
 * Returns 0 or a negative code; dprt_last_error() says what was wrong
 * (unknown model or tensor name, shape, dtype, device, overload).
 */
int dprt_infer(dprt *d, const char *model, uint32_t version, const struct dprt_tensor *in,
	       uint32_t n_in, struct dprt_tensor *out, uint32_t n_out);

/* The message of this thread's last failed call (never NULL). */
const char *dprt_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
