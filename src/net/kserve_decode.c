/* SPDX-License-Identifier: MIT */
/*
 * Decoding of net/kserve: infer requests and responses (JSON through
 * jansson, numeric "data" arrays through net/jnum's fast path, Triton's
 * binary tensor data after the JSON) and the repository index body.
 */
#include "net/kserve_int.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/jnum.h"

#define MAX_NUMEL (1ull << 40) /* elements of one tensor */
/* Doubles at or above this round to infinity as floats (FLT_MAX + half an
 * ulp, a tie that rounds to the even infinity). */
#define FLT_ROUND_MAX 0x1.ffffffp127

/* ---- decoding ---- */

/* The binary section of a body: the bytes after the JSON. */
struct bin {
	const char *p;
	uint64_t len, used;
	bool allowed; /* Inference-Header-Content-Length was given */
};

struct dec {
	struct arena *a;
	struct bin bin;
	const char *kind;			   /* "input" or "output" */
	const char *js;				   /* the JSON text */
	bool fast;				   /* try the numeric fast path (jnum.h) */
	struct jnum_span span[KSERVE_MAX_TENSORS]; /* its "data" arrays, emptied */
};

/* A decode that took the fast path and failed: the body is decoded again,
 * all by the tree path, whose errors (and their order) are the answer. The
 * fast path answers successes only (positive: never an error code). */
#define TREE_AGAIN 1

static bool took_fast_path(const struct dec *d)
{
	uint32_t i;

	for (i = 0; i < KSERVE_MAX_TENSORS; i++)
		if (d->span[i].len)
			return true;
	return false;
}

/* Bodies from this size on take the numeric fast path (jnum.h): all. */
static size_t fast_min;

void kserve_set_fast_min(size_t bytes)
{
	fast_min = bytes;
}

/* The JSON text with every span's array emptied ("[]"), in a per-thread
 * buffer that grows to the largest body seen and is reused; *n its length.
 * NULL if memory is short. */
static const char *compacted(const char *js, size_t len, const struct jnum_span *sp, size_t *n)
{
	static __thread char *buf;
	static __thread size_t cap;
	size_t at = 0, i, k, next;
	char *p;

	if (len > cap) {
		p = realloc(buf, len);
		if (!p)
			return NULL;
		buf = p;
		cap = len;
	}
	*n = 0;
	for (;;) { /* spans are in text order, the empty ones skipped */
		next = len;
		for (i = 0, k = KSERVE_MAX_TENSORS; i < KSERVE_MAX_TENSORS; i++)
			if (sp[i].len && sp[i].off >= at && sp[i].off < next) {
				next = sp[i].off;
				k = i;
			}
		memcpy(buf + *n, js + at, next - at);
		*n += next - at;
		if (k == KSERVE_MAX_TENSORS)
			return buf;
		memcpy(buf + *n, "[]", 2);
		*n += 2;
		at = sp[k].off + sp[k].len;
	}
}

static int arena_full(const struct arena *a, uint64_t need)
{
	return err_set(-E2BIG,
		       "request needs %" PRIu64 " more bytes than the %zu-byte decode arena has",
		       need, a->size);
}

/* A JSON value in a message, shortened. */
static const char *describe(const json_t *v, char *buf, size_t n)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

	snprintf(buf, n, "%.40s%s", s ? s : "?", s && strlen(s) > 40 ? "..." : "");
	free(s);
	return buf;
}

static int load_body(const char *body, size_t len, int64_t json_len, const char *what,
		     json_t **root, struct dec *d)
{
	size_t jl = json_len < 0 ? len : (size_t)json_len;
	const char *js = body;
	size_t n = 0;
	json_error_t e;

	if (json_len >= 0 && (uint64_t)json_len > len)
		return err_set(DPRT_EINPUT,
			       "Inference-Header-Content-Length %" PRId64
			       " is larger than the body (%zu bytes)",
			       json_len, len);
	d->bin = (struct bin){body + jl, len - jl, 0, json_len >= 0};
	d->js = body;
	memset(d->span, 0, sizeof(d->span));
	if (d->fast && jl >= fast_min &&
	    jnum_scan(body, jl, !strcmp(d->kind, "input") ? "inputs" : "outputs", d->span,
		      KSERVE_MAX_TENSORS, KSERVE_MAX_DEPTH))
		js = compacted(body, jl, d->span, &n);
	if (js != body) {
		/* the skeleton; where it fails, the whole body tells where */
		*root = js ? json_loadb(js, n, JSON_REJECT_DUPLICATES, &e) : NULL;
		if (*root)
			goto loaded;
		memset(d->span, 0, sizeof(d->span));
	}
	*root = json_loadb(body, jl, JSON_REJECT_DUPLICATES, &e);
loaded:
	if (!*root)
		return err_set(DPRT_EINPUT, "%s is not valid JSON: %s (line %d, column %d)", what,
			       e.text, e.line, e.column);
	if (!json_is_object(*root)) {
		json_decref(*root);
		return err_set(DPRT_EINPUT, "%s is not a JSON object", what);
	}
	return 0;
}

/* Optional string member key copied into the arena ("" if absent). */
static int arena_str(struct arena *a, const json_t *o, const char *key, bool required,
		     const char **out)
{
	const json_t *v = json_object_get(o, key);
	size_t n;
	char *s;

	*out = "";
	if (!v && !required)
		return 0;
	if (!json_is_string(v))
		return err_set(DPRT_EINPUT, "\"%s\" must be a string", key);
	n = json_string_length(v);
	s = arena_alloc(a, n + 1, 1);
	if (!s)
		return arena_full(a, n + 1);
	memcpy(s, json_string_value(v), n + 1);
	*out = s;
	return 0;
}

static int get_name(const json_t *o, char *out, const char *kind, size_t i)
{
	const json_t *v = json_object_get(o, "name");
	size_t n;

	if (!json_is_object(o))
		return err_set(DPRT_EINPUT, "%ss[%zu] is not an object", kind, i);
	if (!json_is_string(v))
		return err_set(DPRT_EINPUT, "%ss[%zu] has no \"name\" string", kind, i);
	n = json_string_length(v);
	if (!n || n >= NAME_LEN)
		return err_set(DPRT_EINPUT, "%ss[%zu]: name must have 1 to %d bytes", kind, i,
			       NAME_LEN - 1);
	memcpy(out, json_string_value(v), n + 1);
	return 0;
}

static const char *const other_types[] = {
	"FP64", "INT8", "INT16", "UINT16", "UINT32", "UINT64", "BYTES",
};

static int get_dtype(const json_t *o, const char *name, uint8_t *dt)
{
	const json_t *v = json_object_get(o, "datatype");
	const char *s;
	size_t i;

	if (!json_is_string(v))
		return err_set(DPRT_EINPUT, "%s: \"datatype\" missing or not a string", name);
	s = json_string_value(v);
	*dt = (uint8_t)dtype_parse(s);
	if (*dt != DT_NONE)
		return 0;
	for (i = 0; i < ARRAY_SIZE(other_types); i++)
		if (!strcmp(s, other_types[i]))
			return err_set(
				DPRT_EINPUT,
				"%s: datatype %s is not supported (FP32, FP16, BF16, INT64, INT32, UINT8, BOOL are)",
				name, s);
	return err_set(DPRT_EINPUT, "%s: unknown datatype \"%.32s\"", name, s);
}

static int get_shape(const json_t *o, const char *name, struct shape *s)
{
	const json_t *v = json_object_get(o, "shape"), *d;
	uint64_t numel = 1, dim;
	size_t i;

	if (!json_is_array(v))
		return err_set(DPRT_EINPUT, "%s: \"shape\" missing or not an array", name);
	if (!json_array_size(v))
		return err_set(DPRT_EINPUT, "%s: scalar tensors (shape []) are not supported",
			       name);
	if (json_array_size(v) > MAX_DIMS)
		return err_set(DPRT_EINPUT, "%s: shape has %zu dims, at most %d are supported",
			       name, json_array_size(v), MAX_DIMS);
	memset(s->dims, 0, sizeof(s->dims)); /* unused dims are 0: shapes compare */
	s->ndim = (uint8_t)json_array_size(v);
	for (i = 0; i < s->ndim; i++) {
		d = json_array_get(v, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return err_set(DPRT_EINPUT, "%s: shape dims must be non-negative integers",
				       name);
		s->dims[i] = json_integer_value(d);
		dim = (uint64_t)s->dims[i];
		if (dim > MAX_NUMEL || (dim && numel > MAX_NUMEL / dim))
			numel = MAX_NUMEL + 1; /* and stays above */
		else if (numel <= MAX_NUMEL)
			numel *= dim;
	}
	if (numel > MAX_NUMEL)
		return err_set(DPRT_EINPUT, "%s: shape has more than 2^40 elements", name);
	return 0;
}

/* Point t->data at p, or at an aligned copy of it in the arena. */
static int place(struct dec *d, struct kserve_tensor *t, const char *p)
{
	size_t es = dtype_size((enum dtype)t->shape.dtype);
	void *q;

	if ((uintptr_t)p % es == 0) {
		t->data = p;
		return 0;
	}
	q = arena_alloc(d->a, t->nbytes, 64);
	if (!q)
		return arena_full(d->a, t->nbytes);
	memcpy(q, p, t->nbytes);
	t->data = q;
	return 0;
}

static int check_bools(const struct kserve_tensor *t, const unsigned char *p)
{
	uint64_t i;

	for (i = 0; i < t->nbytes; i++)
		if (p[i] > 1)
			return err_set(DPRT_EINPUT,
				       "%s: binary BOOL element %" PRIu64 " is %u, not 0 or 1",
				       t->name, i, p[i]);
	return 0;
}

static int take_binary(struct dec *d, struct kserve_tensor *t, const json_t *bds)
{
	struct bin *b = &d->bin;
	char sh[96];
	json_int_t size;

	if (!json_is_integer(bds) || (size = json_integer_value(bds)) < 0)
		return err_set(DPRT_EINPUT, "%s: binary_data_size must be a non-negative integer",
			       t->name);
	if (!b->allowed)
		return err_set(
			DPRT_EINPUT,
			"%s has binary_data_size but the request has no Inference-Header-Content-Length header",
			t->name);
	kserve_fmt_shape(sh, sizeof(sh), &t->shape);
	if ((uint64_t)size != t->nbytes)
		return err_set(DPRT_EINPUT,
			       "%s: binary_data_size %" PRId64
			       " does not match shape %s of %s (%" PRIu64 " bytes)",
			       t->name, (int64_t)size, sh, dtype_name((enum dtype)t->shape.dtype),
			       t->nbytes);
	if ((uint64_t)size > b->len - b->used)
		return err_set(DPRT_EINPUT,
			       "%s: binary data runs past the end of the body (%" PRIu64
			       " bytes at offset %" PRIu64 ", %" PRIu64 " bytes follow the JSON)",
			       t->name, (uint64_t)size, b->used, b->len);
	t->binary = true;
	if (t->shape.dtype == DT_BOOL && check_bools(t, (const unsigned char *)b->p + b->used))
		return DPRT_EINPUT;
	b->used += (uint64_t)size;
	return place(d, t, b->p + b->used - size);
}

/* Walk of nested "data" arrays: every array at depth k must have len[k]
 * elements (taken from the first element at each depth) and every leaf
 * sits at depth `depth`. With out == NULL it only checks and counts. */
struct walk {
	const struct kserve_tensor *t;
	char *out;
	uint64_t n; /* leaves seen */
	int depth;
	size_t len[KSERVE_MAX_DEPTH];
};

static int ragged(const struct walk *w)
{
	return err_set(DPRT_EINPUT,
		       "%s: data is ragged (nested arrays of different lengths or depths)",
		       w->t->name);
}

static int elem_error(const struct walk *w, const json_t *v, const char *what)
{
	char buf[64];

	return err_set(DPRT_EINPUT, "%s: element %" PRIu64 " (%s) %s %s", w->t->name, w->n,
		       describe(v, buf, sizeof(buf)), what,
		       dtype_name((enum dtype)w->t->shape.dtype));
}

/* A JSON number, or one of the strings we write for NaN and infinities. */
static int get_number(const json_t *v, double *d)
{
	const char *s;

	if (json_is_number(v)) {
		*d = json_number_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	if (!strcmp(s, "NaN"))
		*d = NAN;
	else if (!strcmp(s, "Infinity"))
		*d = INFINITY;
	else if (!strcmp(s, "-Infinity"))
		*d = -INFINITY;
	else
		return -1;
	return 0;
}

static int put_float(const struct walk *w, const json_t *v, char *dst)
{
	uint8_t dt = w->t->shape.dtype;
	uint16_t h;
	double d;
	float f;

	if (get_number(v, &d))
		return elem_error(w, v, "is not a number, as needed for");
	if (isfinite(d) && fabs(d) >= FLT_ROUND_MAX)
		return elem_error(w, v, "is out of range for");
	f = (float)d;
	if (dt == DT_F32) {
		memcpy(dst, &f, 4);
		return 0;
	}
	h = dt == DT_F16 ? f32_to_f16(f) : f32_to_bf16(f);
	if (isfinite(f) && (h & 0x7fff) == (dt == DT_F16 ? 0x7c00 : 0x7f80))
		return elem_error(w, v, "is out of range for");
	memcpy(dst, &h, 2);
	return 0;
}

static int put_int(const struct walk *w, const json_t *v, char *dst)
{
	uint8_t dt = w->t->shape.dtype;
	json_int_t x;
	int64_t i64;
	int32_t i32;

	if (!json_is_integer(v))
		return elem_error(w, v, "is not an integer, as needed for");
	x = json_integer_value(v);
	if ((dt == DT_I32 && (x < INT32_MIN || x > INT32_MAX)) ||
	    (dt == DT_U8 && (x < 0 || x > 255)))
		return elem_error(w, v, "is out of range for");
	if (dt == DT_I64) {
		i64 = x;
		memcpy(dst, &i64, 8);
	} else if (dt == DT_I32) {
		i32 = (int32_t)x;
		memcpy(dst, &i32, 4);
	} else {
		*dst = (char)x;
	}
	return 0;
}

static int put_leaf(struct walk *w, const json_t *v)
{
	uint8_t dt = w->t->shape.dtype;
	char *dst;
	int ret = 0;

	if (json_is_array(v))
		return ragged(w);
	if (w->out) {
		dst = w->out + w->n * dtype_size((enum dtype)dt);
		if (dt == DT_F32 || dt == DT_F16 || dt == DT_BF16)
			ret = put_float(w, v, dst);
		else if (dt != DT_BOOL)
			ret = put_int(w, v, dst);
		else if (!json_is_boolean(v))
			ret = elem_error(w, v, "is not true or false, as needed for");
		else
			*dst = json_is_true(v);
	}
	w->n++;
	return ret;
}

static int walk(struct walk *w, const json_t *a, int depth)
{
	size_t i;
	int ret;

	if (depth == w->depth)
		return put_leaf(w, a);
	if (!json_is_array(a) || json_array_size(a) != w->len[depth])
		return ragged(w);
	for (i = 0; i < w->len[depth]; i++) {
		ret = walk(w, json_array_get(a, i), depth + 1);
		if (ret)
			return ret;
	}
	return 0;
}

/* The nesting implied by the first element at each depth. */
static int walk_dims(struct walk *w, const json_t *a)
{
	w->depth = 0;
	while (json_is_array(a)) {
		if (w->depth == KSERVE_MAX_DEPTH)
			return err_set(DPRT_EINPUT, "%s: data is nested more than %d deep",
				       w->t->name, KSERVE_MAX_DEPTH);
		w->len[w->depth++] = json_array_size(a);
		if (!json_array_size(a))
			break;
		a = json_array_get(a, 0);
	}
	return 0;
}

/* A data array the fast path emptied, decoded from its text; whatever
 * jnum_decode cannot decide (a bad token, ragged nesting, a miscount, a
 * value out of range) is the tree path's. */
static int decode_span(struct dec *d, struct kserve_tensor *t, const struct jnum_span *sp)
{
	uint64_t numel = t->nbytes / dtype_size((enum dtype)t->shape.dtype);
	void *out = arena_alloc(d->a, t->nbytes, 64);

	if (!out || jnum_decode(d->js + sp->off, sp->len, t->shape.dtype, numel, out))
		return TREE_AGAIN;
	t->data = out;
	return 0;
}

static int decode_data(struct dec *d, struct kserve_tensor *t, const json_t *data)
{
	uint64_t numel = t->nbytes / dtype_size((enum dtype)t->shape.dtype);
	struct walk w = {.t = t};
	char sh[96];
	int ret;

	if (!json_is_array(data))
		return err_set(DPRT_EINPUT, "%s: \"data\" must be an array", t->name);
	ret = walk_dims(&w, data);
	if (!ret)
		ret = walk(&w, data, 0);
	if (ret)
		return ret;
	kserve_fmt_shape(sh, sizeof(sh), &t->shape);
	if (w.n != numel)
		return err_set(DPRT_EINPUT,
			       "%s: shape %s needs %" PRIu64 " elements, data has %" PRIu64,
			       t->name, sh, numel, w.n);
	w.out = arena_alloc(d->a, t->nbytes, 64);
	if (!w.out)
		return arena_full(d->a, t->nbytes);
	w.n = 0;
	t->data = w.out;
	return walk(&w, data, 0);
}

static int decode_tensor(struct dec *d, const json_t *o, size_t i, struct kserve_tensor *t)
{
	const json_t *params, *bds = NULL, *data;
	int ret;

	ret = get_name(o, t->name, d->kind, i);
	if (!ret)
		ret = get_dtype(o, t->name, &t->shape.dtype);
	if (!ret)
		ret = get_shape(o, t->name, &t->shape);
	if (ret)
		return ret;
	t->nbytes = (uint64_t)shape_numel(&t->shape) * dtype_size((enum dtype)t->shape.dtype);
	t->binary = false;
	params = json_object_get(o, "parameters");
	if (params && !json_is_object(params))
		return err_set(DPRT_EINPUT, "%s: \"parameters\" must be an object", t->name);
	if (json_object_get(params, "shared_memory_region"))
		return err_set(DPRT_EINPUT, "%s: shared-memory tensors are not supported", t->name);
	bds = json_object_get(params, "binary_data_size");
	data = json_object_get(o, "data");
	if (bds && data)
		return err_set(DPRT_EINPUT, "%s has both \"data\" and binary_data_size", t->name);
	if (bds)
		return take_binary(d, t, bds);
	if (!data)
		return err_set(DPRT_EINPUT, "%s has neither \"data\" nor binary_data_size",
			       t->name);
	if (i < KSERVE_MAX_TENSORS && d->span[i].len && json_is_array(data) &&
	    !json_array_size(data))
		return decode_span(d, t, &d->span[i]);
	return decode_data(d, t, data);
}

static int decode_tensors(struct dec *d, const json_t *arr, struct kserve_tensor *ts, uint32_t *n)
{
	size_t i, j, cnt = json_array_size(arr);
	int ret;

	if (!json_is_array(arr))
		return err_set(DPRT_EINPUT, "no \"%ss\" array", d->kind);
	if (cnt > KSERVE_MAX_TENSORS)
		return err_set(DPRT_EINPUT, "%zu %ss, at most %d are supported", cnt, d->kind,
			       KSERVE_MAX_TENSORS);
	for (i = 0; i < cnt; i++) {
		ret = decode_tensor(d, json_array_get(arr, i), i, &ts[i]);
		if (ret)
			return ret;
		for (j = 0; j < i; j++)
			if (!strcmp(ts[j].name, ts[i].name))
				return err_set(DPRT_EINPUT, "two %ss are named %s", d->kind,
					       ts[i].name);
		*n = (uint32_t)i + 1;
	}
	if (d->bin.used != d->bin.len)
		return err_set(DPRT_EINPUT,
			       "%" PRIu64
			       " bytes of binary data follow the JSON, but the %ss use %" PRIu64,
			       d->bin.len, d->kind, d->bin.used);
	return 0;
}

static int decode_req_params(const json_t *root, struct kserve_request *req)
{
	const json_t *p = json_object_get(root, "parameters"), *b;

	if (!p)
		return 0;
	if (!json_is_object(p))
		return err_set(DPRT_EINPUT, "\"parameters\" must be an object");
	b = json_object_get(p, "binary_data_output");
	if (b && !json_is_boolean(b))
		return err_set(DPRT_EINPUT, "binary_data_output must be true or false");
	req->binary_output = json_is_true(b);
	return 0;
}

static int decode_output_req(const json_t *o, size_t i, struct kserve_request *req)
{
	struct kserve_output_req *out = &req->outputs[i];
	const json_t *p, *b;
	size_t j;
	int ret;

	ret = get_name(o, out->name, "output", i);
	if (ret)
		return ret;
	for (j = 0; j < i; j++)
		if (!strcmp(req->outputs[j].name, out->name))
			return err_set(DPRT_EINPUT, "output %s is requested twice", out->name);
	out->binary = req->binary_output;
	p = json_object_get(o, "parameters");
	if (!p)
		return 0;
	if (!json_is_object(p))
		return err_set(DPRT_EINPUT, "output %s: \"parameters\" must be an object",
			       out->name);
	if (json_object_get(p, "classification") || json_object_get(p, "shared_memory_region"))
		return err_set(DPRT_EINPUT,
			       "output %s: classification and shared memory are not supported",
			       out->name);
	b = json_object_get(p, "binary_data");
	if (b && !json_is_boolean(b))
		return err_set(DPRT_EINPUT, "output %s: binary_data must be true or false",
			       out->name);
	if (b)
		out->binary = json_is_true(b);
	return 0;
}

static int decode_output_reqs(const json_t *arr, struct kserve_request *req)
{
	size_t i, cnt = json_array_size(arr);
	int ret;

	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return err_set(DPRT_EINPUT, "\"outputs\" must be an array");
	if (cnt > KSERVE_MAX_TENSORS)
		return err_set(DPRT_EINPUT, "%zu outputs requested, at most %d are supported", cnt,
			       KSERVE_MAX_TENSORS);
	for (i = 0; i < cnt; i++) {
		ret = decode_output_req(json_array_get(arr, i), i, req);
		if (ret)
			return ret;
		req->n_outputs = (uint32_t)i + 1;
	}
	return 0;
}

static int decode_request(const char *body, size_t len, int64_t json_len, struct arena *a,
			  struct kserve_request *req, bool fast)
{
	struct dec d = {.a = a, .kind = "input", .fast = fast};
	json_t *root;
	int ret;

	req->id = "";
	req->binary_output = false;
	req->n_inputs = req->n_outputs = 0;
	ret = load_body(body, len, json_len, "request", &root, &d);
	if (ret)
		return ret;
	ret = arena_str(a, root, "id", false, &req->id);
	if (ret)
		goto out_put;
	ret = decode_req_params(root, req);
	if (ret)
		goto out_put;
	ret = decode_tensors(&d, json_object_get(root, "inputs"), req->inputs, &req->n_inputs);
	if (!ret && !req->n_inputs)
		ret = err_set(DPRT_EINPUT, "request has no inputs");
	if (ret)
		goto out_put;
	ret = decode_output_reqs(json_object_get(root, "outputs"), req);
out_put:
	json_decref(root);
	return ret && took_fast_path(&d) ? TREE_AGAIN : ret;
}

int kserve_decode_request(const char *body, size_t len, int64_t json_len, struct arena *a,
			  struct kserve_request *req)
{
	size_t used = a->used;
	int ret = decode_request(body, len, json_len, a, req, true);

	if (ret != TREE_AGAIN)
		return ret;
	a->used = used;
	return decode_request(body, len, json_len, a, req, false);
}

static int decode_response(const char *body, size_t len, int64_t json_len, struct arena *a,
			   struct kserve_result *res, bool fast)
{
	struct dec d = {.a = a, .kind = "output", .fast = fast};
	json_t *root;
	int ret;

	res->model_name = res->model_version = res->id = "";
	res->n_outputs = 0;
	ret = load_body(body, len, json_len, "response", &root, &d);
	if (ret)
		return ret;
	ret = arena_str(a, root, "model_name", true, &res->model_name);
	if (!ret)
		ret = arena_str(a, root, "model_version", false, &res->model_version);
	if (!ret)
		ret = arena_str(a, root, "id", false, &res->id);
	if (!ret)
		ret = decode_tensors(&d, json_object_get(root, "outputs"), res->outputs,
				     &res->n_outputs);
	json_decref(root);
	return ret && took_fast_path(&d) ? TREE_AGAIN : ret;
}

int kserve_decode_response(const char *body, size_t len, int64_t json_len, struct arena *a,
			   struct kserve_result *res)
{
	size_t used = a->used;
	int ret = decode_response(body, len, json_len, a, res, true);

	if (ret != TREE_AGAIN)
		return ret;
	a->used = used;
	return decode_response(body, len, json_len, a, res, false);
}

bool kserve_want_output(const struct kserve_request *req, const char *name, bool *binary)
{
	uint32_t i;

	*binary = req->binary_output;
	if (!req->n_outputs)
		return true;
	for (i = 0; i < req->n_outputs; i++) {
		if (!strcmp(req->outputs[i].name, name)) {
			*binary = req->outputs[i].binary;
			return true;
		}
	}
	return false;
}

int kserve_decode_repo_index(const char *body, size_t len, bool *ready_only)
{
	struct dec d = {.kind = "index"};
	json_t *root;
	const json_t *r;
	int ret = 0;

	*ready_only = false;
	if (!len)
		return 0;
	ret = load_body(body, len, -1, "repository index request", &root, &d);
	if (ret)
		return ret;
	r = json_object_get(root, "ready");
	if (r && !json_is_boolean(r))
		ret = err_set(DPRT_EINPUT, "\"ready\" must be true or false");
	*ready_only = json_is_true(r);
	json_decref(root);
	return ret;
}
