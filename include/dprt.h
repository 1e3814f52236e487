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
/*
 * The error codes come first, in a part of their own: dprt's sources take
 * them alone (src/base/base.h defines DPRT_ERRORS_ONLY before including
 * this file), without the embedding API's names.
 */
#ifndef DPRT_H_ERRORS
#define DPRT_H_ERRORS

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Error codes. Every function returning int returns 0 or a negative code:
 * -errno (-EINVAL, -ENOMEM, -ENOSPC, -ENOENT...) or one of these, which
 * live below -4096 so they never collide with -errno. dprt_strerror()
 * names a code; dprt_last_error() has the message of the failed call.
 */
enum dprt_err {
	DPRT_OK = 0,
	DPRT_EBADPKG = -5001,	/* package file malformed or corrupt */
	DPRT_EVERSION = -5002,	/* unsupported format version */
	DPRT_ESHAPE = -5003,	/* tensor shape does not match the signature */
	DPRT_EDTYPE = -5004,	/* tensor dtype does not match the signature */
	DPRT_EINPUT = -5005,	/* bad input value (token id out of range...) */
	DPRT_ENOMODEL = -5006,	/* unknown model */
	DPRT_ENODEV = -5007,	/* no such device / no GPU driver */
	DPRT_EDEVICE = -5008,	/* device (CUDA, cuBLAS, cuDNN) failure */
	DPRT_EBADPLAN = -5009,	/* plan malformed or made for something else */
	DPRT_EUNSUP = -5010,	/* valid but unsupported (op, dtype, option) */
	DPRT_EWEIGHTS = -5011,	/* weight file lacks or mismatches a tensor */
	DPRT_EOVERLOAD = -5012, /* queue full, try later */
	DPRT_EUSAGE = -5013,	/* bad command-line usage */
	DPRT_ETOOMANY = -5014,	/* model has more inputs or outputs than served */
	DPRT_EOUTBUF = -5015,	/* outputs need a bigger buffer than given */
	DPRT_EACTMEM = -5016,	/* a request needs more activation memory than allowed */
};

/* A fixed text for a code: dprt's own codes and -errno alike ("success"
 * for 0, "unknown error" for a code that is neither). Never NULL; any
 * thread. */
const char *dprt_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* DPRT_H_ERRORS */

#if !defined(DPRT_H) && !defined(DPRT_ERRORS_ONLY)
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
 * Returns 0 and *out, or a negative code (dprt_last_error() says why):
 * -EINVAL (no options or no models directory), DPRT_EUSAGE or -EINVAL
 * (bad devices or cold_mode), -ENOMEM, -errno of the repository directory (-ENOENT...), DPRT_ENODEV
 * (no such device; any GPU in a build without CUDA), DPRT_EDEVICE (the
 * device failed to start), DPRT_EBADPLAN (a plan that does not fit). A
 * model that fails to load is not an error here: it is left FAILED and
 * dprt_infer answers DPRT_ENOMODEL for it.
 */
int dprt_open(const struct dprt_options *o, dprt **out);

/*
 * Finish the requests in flight, stop the workers and free everything.
 * No dprt_infer may run or start. NULL is ignored.
 */
void dprt_close(dprt *d);

/*
 * Load / unload a model (version 0: the newest / every version), as the
 * repository API of `dprt serve`. Any thread. Returns 0 or a negative
 * code: DPRT_ENOMODEL (no such model or version in the repository); for
 * dprt_load also what reading the package says: DPRT_EBADPKG,
 * DPRT_EVERSION, DPRT_EWEIGHTS, DPRT_EUNSUP, DPRT_ETOOMANY, -ENOMEM or
 * -errno of its files (the model is then FAILED with that reason), and
 * DPRT_EOVERLOAD or -ENOMEM when host memory (host_mem_limit) is full.
 */
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
 * Returns 0 or a negative code; dprt_last_error() says what was wrong:
 * DPRT_ENOMODEL (unknown model or version, or not READY), -EINVAL (a
 * tensor name the model lacks, an input given twice or without data, no
 * output asked for, more than 16 inputs or outputs), DPRT_ESHAPE and
 * DPRT_EDTYPE (an input that does not fit the signature), DPRT_EINPUT (a
 * bad input value), -ENOSPC (an output buffer too small; see above),
 * DPRT_EOVERLOAD (every request record in use: try again), DPRT_EDEVICE
 * (the device failed), DPRT_EUNSUP, -ENOMEM.
 */
int dprt_infer(dprt *d, const char *model, uint32_t version, const struct dprt_tensor *in,
	       uint32_t n_in, struct dprt_tensor *out, uint32_t n_out);

/* The message of this thread's last failed call (never NULL; a fixed text
 * when the call set none). Returns no code. */
const char *dprt_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* DPRT_H */
