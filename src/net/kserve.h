/* SPDX-License-Identifier: MIT */
/*
 * net/kserve: the KServe v2 / Open Inference Protocol over HTTP: the router
 * for its paths and the codec between its JSON (+ Triton's binary tensor
 * extension) and plain tensors. No threads, no sockets, no executor: every
 * function is pure and may run on any thread.
 *
 * Allocation: decoding parses the JSON with jansson (which mallocs its
 * tree, freed before return); everything the decoded request keeps -- the
 * id, tensors decoded from JSON numbers, binary tensors that needed
 * aligning -- comes from the caller's arena, so a request's memory is freed
 * by one arena_reset(). Encoders write into caller buffers and never
 * allocate.
 *
 * Numbers: FP32 is printed with 9 significant digits, FP16 with 5 and BF16
 * with 4: enough to read back the same bits. JSON has no NaN or infinity;
 * like the proto3 JSON mapping we write them as the strings "NaN",
 * "Infinity" and "-Infinity" and accept those strings for float inputs.
 * JSON float values beyond the range of the input's type are refused (400),
 * as are non-integers for integer types and values out of their range.
 */
#ifndef DPRT_NET_KSERVE_H
#define DPRT_NET_KSERVE_H

#include "base/base.h"
#include "model/model.h"
#include "net/http.h"

/* ---- router ---- */

enum kserve_route {
	KR_NONE = 0,
	KR_SERVER_META,	 /* GET /v2 */
	KR_LIVE,	 /* GET /v2/health/live */
	KR_READY,	 /* GET /v2/health/ready */
	KR_MODEL_META,	 /* GET /v2/models/{m}[/versions/{v}] */
	KR_MODEL_READY,	 /* GET /v2/models/{m}[/versions/{v}]/ready */
	KR_INFER,	 /* POST /v2/models/{m}[/versions/{v}]/infer */
	KR_REPO_INDEX,	 /* POST /v2/repository/index */
	KR_REPO_LOAD,	 /* POST /v2/repository/models/{m}/load */
	KR_REPO_UNLOAD,	 /* POST /v2/repository/models/{m}/unload */
	KR_METRICS,	 /* GET /metrics */
	KR_MODEL_CONFIG, /* GET /v2/models/{m}[/versions/{v}]/config */
	KR_MODEL_STATS,	 /* GET /v2/models/{m}[/versions/{v}]/stats */
	KR_STATS,	 /* GET /v2/models/stats: every model */
};

#define KSERVE_VERSION_LEN 32

/* Where a request goes. GET routes take HEAD too. */
struct kserve_target {
	enum kserve_route route;
	uint16_t status;		  /* 200 when routed, else 404, 405 or 400 */
	const char *allow;		  /* for 405: value of the Allow header */
	char model[NAME_LEN];		  /* percent-decoded; "" if the route has none */
	char version[KSERVE_VERSION_LEN]; /* percent-decoded; "" if absent */
};

/*
 * Route a complete request by method and path (the query is ignored).
 * Model and version names are percent-decoded and must be valid UTF-8
 * without control bytes or '/', and not "." or "..": they may name files.
 * Returns 0, or -ENOENT (404), -EOPNOTSUPP (405, t->allow set) or
 * DPRT_EINPUT (400); t->status is set either way, the text in err_msg().
 */
int kserve_route(const struct http_req *r, struct kserve_target *t);

/* ---- inference requests ---- */

#define KSERVE_MAX_TENSORS 16
#define KSERVE_MAX_DEPTH 32 /* nesting of JSON "data" arrays */

/* A decoded tensor. */
struct kserve_tensor {
	char name[NAME_LEN];
	struct shape shape; /* dtype and dims (ndim >= 1) */
	const void *data;   /* nbytes, aligned to the element size: into the
			      * body (binary, already aligned) or the arena */
	uint64_t nbytes;    /* shape_numel * dtype_size */
	bool binary;	    /* sent as binary data, not JSON */
};

/* An output the client asked for. */
struct kserve_output_req {
	char name[NAME_LEN];
	bool binary; /* return it as binary data */
};

struct kserve_request {
	const char *id;	    /* "" if none (in the arena) */
	bool binary_output; /* request parameter "binary_data_output" */
	uint32_t n_inputs;
	uint32_t n_outputs; /* 0: the client wants every output */
	struct kserve_tensor inputs[KSERVE_MAX_TENSORS];
	struct kserve_output_req outputs[KSERVE_MAX_TENSORS];
};

/*
 * Decode an infer request body. json_len is the Inference-Header-Content-
 * Length header (-1 if absent: the whole body is JSON); binary inputs
 * follow the JSON, packed, in the order of the inputs that carry
 * "binary_data_size", and must use every byte after it. Data the request
 * keeps is allocated from a (see above); body must outlive req.
 * Returns 0, DPRT_EINPUT (400; the message names the input and the
 * problem) or -E2BIG (413: arena too small).
 */
int kserve_decode_request(const char *body, size_t len, int64_t json_len, struct arena *a,
			  struct kserve_request *req);
/* JSON bodies of at least this many bytes decode their numeric "data"
 * arrays without a JSON tree (net/jnum.h); default 0, every body. For
 * tests and benchmarks: SIZE_MAX = never (the tree path alone). */
void kserve_set_fast_min(size_t bytes);

/* Should output name be returned, and as binary? */
bool kserve_want_output(const struct kserve_request *req, const char *name, bool *binary);

/*
 * Match a decoded request against a model's signature: order[j] = index in
 * req->inputs of model input j, or -1 for an omitted optional input.
 * Checks names, datatypes, ranks and fixed dims (batch/seq consistency is
 * graph_infer_shapes' job) and that requested outputs exist.
 * Returns 0, DPRT_EINPUT, DPRT_EDTYPE or DPRT_ESHAPE with err_set.
 */
int kserve_bind(const struct kserve_request *req, const struct io_desc *in, uint32_t n_in,
		const struct io_desc *out, uint32_t n_out, int *order);

/* ---- inference responses ---- */

/* One output tensor of a response. */
struct kserve_out {
	const char *name;
	struct shape shape;
	const void *data; /* shape_numel * dtype_size bytes, any alignment */
	bool binary;	  /* send as raw bytes after the JSON */
};

enum kserve_ptype { KP_BOOL, KP_INT, KP_DOUBLE, KP_STRING };

/* A response parameter ("parameters": {name: value}). */
struct kserve_param {
	const char *name;
	enum kserve_ptype type;
	union {
		bool b;
		int64_t i;
		double d;
		const char *s;
	};
};

struct kserve_response {
	const char *model_name;
	const char *model_version; /* NULL: omitted */
	const char *id;		   /* NULL or "": omitted */
	bool cold_start;	   /* parameter "cold_start" + Dprt-Cold-Start */
	uint32_t n_params, n_outputs;
	const struct kserve_param *params;
	const struct kserve_out *outputs;
};

/* An upper bound of the JSON bytes kserve_encode_response writes. */
size_t kserve_response_bound(const struct kserve_response *res);

/*
 * Write the JSON part of an infer response into buf. The response body is
 * these json_len bytes followed by the data of each binary output, in
 * order (bin_len bytes in all): send them as separate iovecs.
 * Returns 0, -ENOSPC (buf too small) or -EINVAL (bad dtype).
 */
int kserve_encode_response(const struct kserve_response *res, char *buf, size_t cap,
			   size_t *json_len, uint64_t *bin_len);

/*
 * HTTP header for an infer response: 200, application/json or (binary
 * outputs) application/octet-stream with Inference-Header-Content-Length,
 * and "Dprt-Cold-Start: true|false". Returns bytes written or -ENOSPC.
 */
int kserve_write_infer_head(char *buf, size_t cap, const struct kserve_response *res,
			    size_t json_len, bool keep_alive);

/* A decoded infer response (the client side: tools, tests, benchmarks). */
struct kserve_result {
	const char *model_name, *model_version, *id; /* in the arena; "" */
	uint32_t n_outputs;
	struct kserve_tensor outputs[KSERVE_MAX_TENSORS];
};

/* Decode an infer response body, like kserve_decode_request. */
int kserve_decode_response(const char *body, size_t len, int64_t json_len, struct arena *a,
			   struct kserve_result *res);

/* ---- other bodies; each returns bytes written, or -ENOSPC ---- */

/* {"error": msg} */
int kserve_encode_error(char *buf, size_t cap, const char *msg);

/* {"name":"dprt","version":version,"extensions":[...]} */
int kserve_encode_server_meta(char *buf, size_t cap, const char *version);

struct kserve_model_meta {
	const char *name;
	const char *const *versions;
	uint32_t n_versions;
	uint32_t n_inputs, n_outputs;
	/* dims < 0 (DIM_BATCH, DIM_SEQ) are written as -1; the caller fills
	 * the outputs' ndim/dims (graph_output leaves them 0). */
	const struct io_desc *inputs, *outputs;
};
/* {"name","versions","platform":"dprt","inputs":[...],"outputs":[...]} */
int kserve_encode_model_meta(char *buf, size_t cap, const struct kserve_model_meta *m);
/*
 * Triton's model configuration: {"name","platform":"dprt","backend":"dprt",
 * "max_batch_size","input":[{"name","data_type":"TYPE_FP32","dims"}],
 * "output":[...]}. When every input and output has a leading batch dim
 * (DIM_BATCH, or -1 for outputs) and max_batch > 0 (the graph's bound),
 * max_batch_size is max_batch and dims leave the batch dim out, as Triton's do; else
 * max_batch_size is 0 and dims are complete. Symbolic dims are -1.
 */
int kserve_encode_model_config(char *buf, size_t cap, const struct kserve_model_meta *m,
			       int64_t max_batch);

/* {"key":value}: the health bodies {"live":true} and {"ready":true}. */
int kserve_encode_flag(char *buf, size_t cap, const char *key, bool value);

/* Count and total nanoseconds of one kind of event (Triton's statistics). */
struct kserve_stat {
	uint64_t count, ns;
};
/* One model version's statistics (Triton's statistics extension). */
struct kserve_model_stats {
	const char *name, *version;
	uint64_t last_inference; /* ms since the epoch; 0: none yet */
	uint64_t inference_count, execution_count;
	struct kserve_stat success, fail, queue, compute_input, compute_infer, compute_output;
};
/* {"model_stats":[{"name","version","last_inference","inference_count",
 * "execution_count","inference_stats":{"success":{"count","ns"},"fail",
 * "queue","compute_input","compute_infer","compute_output"},
 * "batch_stats":[]}, ...]} */
int kserve_encode_model_stats(char *buf, size_t cap, const struct kserve_model_stats *s,
			      uint32_t n);

/* One row of the repository index; NULL or "" members are omitted. */
struct kserve_repo_entry {
	const char *name, *version, *state, *reason;
};
/* [{"name","version","state","reason"}, ...] */
int kserve_encode_repo_index(char *buf, size_t cap, const struct kserve_repo_entry *e, uint32_t n);
/* Body of POST /v2/repository/index: empty or {"ready": bool}. 0 or
 * DPRT_EINPUT. */
int kserve_decode_repo_index(const char *body, size_t len, bool *ready_only);

/* HTTP status for an error code of this module or the layers it serves:
 * 400 bad input, 404 unknown model, 413 too big, 503 overloaded, else 500. */
int kserve_http_status(int code);

#endif
