/* SPDX-License-Identifier: MIT */
/*
 * KServe v2 router and codec. Decoding goes through jansson; encoding is a
 * small JSON writer over caller buffers (no allocation, no tree).
 */
#include "net/kserve.h"

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

/* ---- JSON writer ---- */

struct jw {
	char *p;
	size_t len, cap;
	bool full;
};

static void jw_raw(struct jw *w, const char *s, size_t n)
{
	if (w->full || w->cap - w->len < n) {
		w->full = true;
		return;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

static void jw_lit(struct jw *w, const char *s)
{
	jw_raw(w, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s[0, n), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1fu;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0fu;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07u;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static void jw_esc(struct jw *w, unsigned char c)
{
	char e[8];

	switch (c) {
	case '"':
		jw_lit(w, "\\\"");
		return;
	case '\\':
		jw_lit(w, "\\\\");
		return;
	case '\n':
		jw_lit(w, "\\n");
		return;
	case '\r':
		jw_lit(w, "\\r");
		return;
	case '\t':
		jw_lit(w, "\\t");
		return;
	}
	snprintf(e, sizeof(e), "\\u%04x", c);
	jw_lit(w, e);
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD. */
static void jw_str(struct jw *w, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, k;

	jw_raw(w, "\"", 1);
	while (i < n) {
		k = utf8_seq(p + i, n - i);
		if (!k) {
			jw_lit(w, "\\ufffd");
			k = 1;
		} else if (k == 1 && (p[i] < 0x20 || p[i] == '"' || p[i] == '\\' || p[i] == 0x7f)) {
			jw_esc(w, p[i]);
		} else {
			jw_raw(w, s + i, k);
		}
		i += k;
	}
	jw_raw(w, "\"", 1);
}

/* "key": (keys are our literals: no escaping) */
static void jw_key(struct jw *w, const char *k)
{
	jw_raw(w, "\"", 1);
	jw_lit(w, k);
	jw_raw(w, "\":", 2);
}

static void jw_u64(struct jw *w, uint64_t v)
{
	char tmp[24];
	int i = (int)sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	jw_raw(w, tmp + i, sizeof(tmp) - (size_t)i);
}

static void jw_i64(struct jw *w, int64_t v)
{
	if (v < 0) {
		jw_raw(w, "-", 1);
		jw_u64(w, -(uint64_t)v);
	} else {
		jw_u64(w, (uint64_t)v);
	}
}

static void jw_float(struct jw *w, double f, int digits)
{
	char tmp[40];

	if (isnan(f))
		jw_lit(w, "\"NaN\"");
	else if (isinf(f))
		jw_lit(w, f > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else if (f == 0 && signbit(f))
		jw_lit(w, "-0.0"); /* "-0" would read back as the integer 0 */
	else
		jw_raw(w, tmp, fmt_g(tmp, f, digits));
}

static void jw_bool(struct jw *w, bool b)
{
	jw_lit(w, b ? "true" : "false");
}

/* [d0,d1,...]; negative (symbolic) dims as -1 */
static void jw_dims(struct jw *w, int ndim, const int64_t *dims)
{
	int i;

	jw_raw(w, "[", 1);
	for (i = 0; i < ndim; i++) {
		if (i)
			jw_raw(w, ",", 1);
		jw_i64(w, dims[i] < 0 ? -1 : dims[i]);
	}
	jw_raw(w, "]", 1);
}

static int jw_end(const struct jw *w)
{
	return w->full || w->len > INT32_MAX ? -ENOSPC : (int)w->len;
}

/* ---- router ---- */

enum { M_GET = 1, M_POST = 2 };

static const struct route_pat {
	const char *pat; /* '/'-separated segments; '*' = model, then version */
	enum kserve_route route;
	uint8_t methods;
} routes[] = {
	{"v2", KR_SERVER_META, M_GET},
	{"v2/health/live", KR_LIVE, M_GET},
	{"v2/health/ready", KR_READY, M_GET},
	{"v2/models/*", KR_MODEL_META, M_GET},
	{"v2/models/*/versions/*", KR_MODEL_META, M_GET},
	{"v2/models/*/ready", KR_MODEL_READY, M_GET},
	{"v2/models/*/versions/*/ready", KR_MODEL_READY, M_GET},
	{"v2/models/*/infer", KR_INFER, M_POST},
	{"v2/models/*/versions/*/infer", KR_INFER, M_POST},
	{"v2/repository/index", KR_REPO_INDEX, M_POST},
	{"v2/repository/models/*/load", KR_REPO_LOAD, M_POST},
	{"v2/repository/models/*/unload", KR_REPO_UNLOAD, M_POST},
	{"metrics", KR_METRICS, M_GET},
};

#define MAX_SEGS 8

struct seg {
	const char *p;
	size_t n;
};

/* Split "/a/b" into segments; -1 if there are more than MAX_SEGS. */
static int split_path(const struct http_str *path, struct seg *s)
{
	const char *p = path->p + 1, *end = path->p + path->len, *slash;
	int n = 0;

	for (;;) {
		if (n == MAX_SEGS)
			return -1;
		slash = memchr(p, '/', (size_t)(end - p));
		s[n].p = p;
		s[n++].n = (size_t)((slash ? slash : end) - p);
		if (!slash)
			return n;
		p = slash + 1;
	}
}

/* Do the segments match pat? Wildcards (non-empty) are stored in wild[]. */
static bool match(const char *pat, const struct seg *s, int n, struct seg *wild)
{
	int i = 0, nw = 0;
	size_t l;

	for (; *pat && i < n; i++) {
		l = strcspn(pat, "/");
		if (l == 1 && *pat == '*') {
			if (!s[i].n)
				return false;
			wild[nw++] = s[i];
		} else if (l != s[i].n || memcmp(pat, s[i].p, l)) {
			return false;
		}
		pat += l + (pat[l] == '/');
	}
	return !*pat && i == n;
}

/* Percent-decode a model or version segment and check it can name a file. */
static int route_name(const struct seg *s, char *out, size_t cap, const char *what)
{
	int n = http_pct_decode(s->p, s->n, out, cap);
	size_t i, k;

	if (n == -ENAMETOOLONG)
		return err_set(DPRT_EINPUT, "%s name longer than %zu bytes", what, cap - 1);
	if (n < 0)
		return err_set(DPRT_EINPUT, "bad percent-encoding in the %s name", what);
	if (!strcmp(out, ".") || !strcmp(out, ".."))
		return err_set(DPRT_EINPUT, "invalid %s name \"%s\"", what, out);
	for (i = 0; i < (size_t)n; i += k) {
		k = utf8_seq((const unsigned char *)out + i, (size_t)n - i);
		if (!k || (unsigned char)out[i] < 0x20 || out[i] == 0x7f || out[i] == '/')
			return err_set(DPRT_EINPUT, "invalid byte in the %s name", what);
	}
	return 0;
}

static int route_found(const struct http_req *r, const struct route_pat *rp, const struct seg *wild,
		       struct kserve_target *t)
{
	uint8_t m = r->method == HTTP_POST ? M_POST : M_GET;
	int ret;

	if (!(rp->methods & m)) {
		t->status = 405;
		t->allow = rp->methods & M_GET ? "GET, HEAD" : "POST";
		return err_set(-EOPNOTSUPP, "method not allowed on %.*s; use %s",
			       (int)MIN(r->path.len, 200), r->path.p, t->allow);
	}
	t->status = 400;
	if (strchr(rp->pat, '*')) {
		ret = route_name(&wild[0], t->model, sizeof(t->model), "model");
		if (ret)
			return ret;
	}
	if (strstr(rp->pat, "versions/*")) {
		ret = route_name(&wild[1], t->version, sizeof(t->version), "version");
		if (ret)
			return ret;
	}
	t->route = rp->route;
	t->status = 200;
	return 0;
}

int kserve_route(const struct http_req *r, struct kserve_target *t)
{
	struct seg segs[MAX_SEGS], wild[2];
	size_t i;
	int n;

	t->route = KR_NONE;
	t->allow = NULL;
	t->model[0] = t->version[0] = 0;
	n = r->path.len && r->path.p[0] == '/' ? split_path(&r->path, segs) : -1;
	for (i = 0; n > 0 && i < ARRAY_SIZE(routes); i++)
		if (match(routes[i].pat, segs, n, wild))
			return route_found(r, &routes[i], wild, t);
	t->status = 404;
	return err_set(-ENOENT, "no such path: %.*s", (int)MIN(r->path.len, 200), r->path.p);
}

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
	const char *kind; /* "input" or "output" */
	const char *js;	  /* the JSON text */
	bool fast;	  /* try the numeric fast path (jnum.h) */
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

static void fmt_shape(char *buf, size_t n, const struct shape *s)
{
	size_t l = 0;
	int i;

	buf[0] = 0;
	for (i = 0; i < s->ndim && l < n; i++)
		l += (size_t)snprintf(buf + l, n - l, "%s%" PRId64, i ? "," : "[", s->dims[i]);
	if (l < n)
		snprintf(buf + l, n - l, "%s]", s->ndim ? "" : "[");
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
	fmt_shape(sh, sizeof(sh), &t->shape);
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
	fmt_shape(sh, sizeof(sh), &t->shape);
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

/* ---- binding to a model's signature ---- */

static int find_io(const struct io_desc *io, uint32_t n, const char *name)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(io[i].name, name))
			return (int)i;
	return -1;
}

static void list_names(char *buf, size_t n, const struct io_desc *io, uint32_t cnt)
{
	size_t l = 0;
	uint32_t i;

	buf[0] = 0;
	for (i = 0; i < cnt && l < n; i++)
		l += (size_t)snprintf(buf + l, n - l, "%s%s", i ? ", " : "", io[i].name);
}

static int check_input(const struct kserve_tensor *t, const struct io_desc *io)
{
	struct shape want = {.dtype = io->dtype, .ndim = io->ndim};
	char got_s[96], want_s[96];
	int d;

	if (t->shape.dtype != io->dtype)
		return err_set(DPRT_EDTYPE, "input %s: datatype %s, the model takes %s", t->name,
			       dtype_name((enum dtype)t->shape.dtype),
			       dtype_name((enum dtype)io->dtype));
	memcpy(want.dims, io->dims, sizeof(want.dims));
	for (d = 0; d < MAX_DIMS; d++)
		want.dims[d] = want.dims[d] < 0 ? -1 : want.dims[d];
	fmt_shape(got_s, sizeof(got_s), &t->shape);
	fmt_shape(want_s, sizeof(want_s), &want);
	if (t->shape.ndim != io->ndim)
		return err_set(DPRT_ESHAPE, "input %s: shape %s, the model takes %s", t->name,
			       got_s, want_s);
	for (d = 0; d < io->ndim; d++)
		if (io->dims[d] > 0 && t->shape.dims[d] != io->dims[d])
			return err_set(DPRT_ESHAPE, "input %s: shape %s, the model takes %s",
				       t->name, got_s, want_s);
	return 0;
}

int kserve_bind(const struct kserve_request *req, const struct io_desc *in, uint32_t n_in,
		const struct io_desc *out, uint32_t n_out, int *order)
{
	char names[256];
	uint32_t i;
	int j, ret;

	for (i = 0; i < n_in; i++)
		order[i] = -1;
	for (i = 0; i < req->n_inputs; i++) {
		j = find_io(in, n_in, req->inputs[i].name);
		if (j < 0) {
			list_names(names, sizeof(names), in, n_in);
			return err_set(DPRT_EINPUT, "the model has no input %s (its inputs: %s)",
				       req->inputs[i].name, names);
		}
		ret = check_input(&req->inputs[i], &in[j]);
		if (ret)
			return ret;
		order[j] = (int)i;
	}
	for (i = 0; i < n_in; i++)
		if (order[i] < 0 && !(in[i].flags & IO_OPTIONAL))
			return err_set(DPRT_EINPUT, "missing input %s", in[i].name);
	for (i = 0; i < req->n_outputs; i++) {
		if (find_io(out, n_out, req->outputs[i].name) >= 0)
			continue;
		list_names(names, sizeof(names), out, n_out);
		return err_set(DPRT_EINPUT, "the model has no output %s (its outputs: %s)",
			       req->outputs[i].name, names);
	}
	return 0;
}

/* ---- encoding ---- */

/* Bytes one element can take in JSON, comma included. */
static size_t elem_chars(uint8_t dt)
{
	switch (dt) {
	case DT_F32:
		return 17; /* -1.17549435e-38, */
	case DT_F16:
	case DT_BF16:
		return 13; /* "-Infinity", */
	case DT_I64:
		return 21;
	case DT_I32:
		return 12;
	case DT_U8:
		return 4;
	case DT_BOOL:
		return 6;
	}
	return 0;
}

static size_t str_bound(const char *s)
{
	return s ? 6 * strlen(s) + 2 : 2;
}

size_t kserve_response_bound(const struct kserve_response *res)
{
	const struct kserve_out *o;
	size_t n = 128 + str_bound(res->model_name) + str_bound(res->model_version) +
		   str_bound(res->id);
	uint32_t i;

	for (i = 0; i < res->n_params; i++)
		n += 48 + str_bound(res->params[i].name) +
		     (res->params[i].type == KP_STRING ? str_bound(res->params[i].s) : 0);
	for (i = 0; i < res->n_outputs; i++) {
		o = &res->outputs[i];
		n += 128 + str_bound(o->name) + 21 * MAX_DIMS;
		if (!o->binary)
			n += (size_t)shape_numel(&o->shape) * elem_chars(o->shape.dtype);
	}
	return n;
}

static void jw_elem(struct jw *w, uint8_t dt, const char *p)
{
	union {
		float f;
		uint16_t h;
		int64_t i64;
		int32_t i32;
	} u;

	switch (dt) {
	case DT_F32:
		memcpy(&u.f, p, 4);
		jw_float(w, u.f, 9);
		break;
	case DT_F16:
		memcpy(&u.h, p, 2);
		jw_float(w, f16_to_f32(u.h), 5);
		break;
	case DT_BF16:
		memcpy(&u.h, p, 2);
		jw_float(w, bf16_to_f32(u.h), 4);
		break;
	case DT_I64:
		memcpy(&u.i64, p, 8);
		jw_i64(w, u.i64);
		break;
	case DT_I32:
		memcpy(&u.i32, p, 4);
		jw_i64(w, u.i32);
		break;
	case DT_U8:
		jw_u64(w, (unsigned char)*p);
		break;
	default:
		jw_bool(w, *p);
	}
}

static int jw_output(struct jw *w, const struct kserve_out *o, uint64_t *bin_len)
{
	uint8_t dt = o->shape.dtype;
	size_t es = dtype_size((enum dtype)dt);
	uint64_t i, n = (uint64_t)shape_numel(&o->shape);

	if (!es || !o->shape.ndim || o->shape.ndim > MAX_DIMS)
		return -EINVAL;
	jw_lit(w, "{\"name\":");
	jw_str(w, o->name);
	jw_lit(w, ",\"datatype\":\"");
	jw_lit(w, dtype_name((enum dtype)dt));
	jw_lit(w, "\",\"shape\":");
	jw_dims(w, o->shape.ndim, o->shape.dims);
	if (o->binary) {
		jw_lit(w, ",\"parameters\":{\"binary_data_size\":");
		jw_u64(w, n * es);
		jw_lit(w, "}}");
		*bin_len += n * es;
		return 0;
	}
	jw_lit(w, ",\"data\":[");
	for (i = 0; i < n && !w->full; i++) {
		if (i)
			jw_raw(w, ",", 1);
		jw_elem(w, dt, (const char *)o->data + i * es);
	}
	jw_lit(w, "]}");
	return 0;
}

static void jw_param(struct jw *w, const struct kserve_param *p)
{
	jw_raw(w, ",", 1);
	jw_str(w, p->name);
	jw_raw(w, ":", 1);
	switch (p->type) {
	case KP_BOOL:
		jw_bool(w, p->b);
		break;
	case KP_INT:
		jw_i64(w, p->i);
		break;
	case KP_DOUBLE:
		jw_float(w, p->d, 17);
		break;
	case KP_STRING:
		jw_str(w, p->s ? p->s : "");
		break;
	}
}

int kserve_encode_response(const struct kserve_response *res, char *buf, size_t cap,
			   size_t *json_len, uint64_t *bin_len)
{
	struct jw w = {buf, 0, cap, false};
	uint32_t i;

	*bin_len = 0;
	jw_lit(&w, "{\"model_name\":");
	jw_str(&w, res->model_name ? res->model_name : "");
	if (res->model_version) {
		jw_lit(&w, ",\"model_version\":");
		jw_str(&w, res->model_version);
	}
	if (res->id && res->id[0]) {
		jw_lit(&w, ",\"id\":");
		jw_str(&w, res->id);
	}
	jw_lit(&w, ",\"parameters\":{\"cold_start\":");
	jw_bool(&w, res->cold_start);
	for (i = 0; i < res->n_params; i++)
		jw_param(&w, &res->params[i]);
	jw_lit(&w, "},\"outputs\":[");
	for (i = 0; i < res->n_outputs; i++) {
		if (i)
			jw_raw(&w, ",", 1);
		if (jw_output(&w, &res->outputs[i], bin_len))
			return -EINVAL;
	}
	jw_lit(&w, "]}");
	*json_len = w.len;
	return w.full ? -ENOSPC : 0;
}

int kserve_write_infer_head(char *buf, size_t cap, const struct kserve_response *res,
			    size_t json_len, bool keep_alive)
{
	bool binary = false;
	uint64_t bin_len = 0;
	char extra[96];
	uint32_t i;

	for (i = 0; i < res->n_outputs; i++) {
		const struct kserve_out *o = &res->outputs[i];

		if (!o->binary)
			continue;
		binary = true;
		bin_len +=
			(uint64_t)shape_numel(&o->shape) * dtype_size((enum dtype)o->shape.dtype);
	}
	if (binary)
		snprintf(extra, sizeof(extra), "Inference-Header-Content-Length: %zu\r\n",
			 json_len);
	else
		extra[0] = 0;
	strcat(extra, res->cold_start ? "Dprt-Cold-Start: true\r\n" : "Dprt-Cold-Start: false\r\n");
	return http_write_response(buf, cap, 200,
				   binary ? "application/octet-stream" : "application/json", extra,
				   json_len + bin_len, keep_alive);
}

int kserve_encode_error(char *buf, size_t cap, const char *msg)
{
	struct jw w = {buf, 0, cap, false};

	jw_lit(&w, "{\"error\":");
	jw_str(&w, msg);
	jw_lit(&w, "}");
	return jw_end(&w);
}

int kserve_encode_server_meta(char *buf, size_t cap, const char *version)
{
	struct jw w = {buf, 0, cap, false};

	jw_lit(&w, "{\"name\":\"dprt\",\"version\":");
	jw_str(&w, version);
	jw_lit(&w, ",\"extensions\":[\"binary_tensor_data\",\"model_repository\"]}");
	return jw_end(&w);
}

static void jw_io(struct jw *w, const struct io_desc *io, uint32_t n)
{
	uint32_t i;

	jw_raw(w, "[", 1);
	for (i = 0; i < n; i++) {
		jw_lit(w, i ? ",{\"name\":" : "{\"name\":");
		jw_str(w, io[i].name);
		jw_lit(w, ",\"datatype\":\"");
		jw_lit(w, dtype_name((enum dtype)io[i].dtype));
		jw_lit(w, "\",\"shape\":");
		jw_dims(w, MIN(io[i].ndim, MAX_DIMS), io[i].dims);
		jw_raw(w, "}", 1);
	}
	jw_raw(w, "]", 1);
}

int kserve_encode_model_meta(char *buf, size_t cap, const struct kserve_model_meta *m)
{
	struct jw w = {buf, 0, cap, false};
	uint32_t i;

	jw_lit(&w, "{\"name\":");
	jw_str(&w, m->name);
	jw_lit(&w, ",\"versions\":[");
	for (i = 0; i < m->n_versions; i++) {
		if (i)
			jw_raw(&w, ",", 1);
		jw_str(&w, m->versions[i]);
	}
	jw_lit(&w, "],\"platform\":\"dprt\",\"inputs\":");
	jw_io(&w, m->inputs, m->n_inputs);
	jw_lit(&w, ",\"outputs\":");
	jw_io(&w, m->outputs, m->n_outputs);
	jw_raw(&w, "}", 1);
	return jw_end(&w);
}

static void jw_opt(struct jw *w, const char *key, const char *val, bool *first)
{
	if (!val || !val[0])
		return;
	if (!*first)
		jw_raw(w, ",", 1);
	*first = false;
	jw_key(w, key);
	jw_str(w, val);
}

int kserve_encode_repo_index(char *buf, size_t cap, const struct kserve_repo_entry *e, uint32_t n)
{
	struct jw w = {buf, 0, cap, false};
	uint32_t i;
	bool first;

	jw_raw(&w, "[", 1);
	for (i = 0; i < n; i++) {
		jw_raw(&w, i ? ",{" : "{", i ? 2 : 1);
		first = true;
		jw_opt(&w, "name", e[i].name, &first);
		jw_opt(&w, "version", e[i].version, &first);
		jw_opt(&w, "state", e[i].state, &first);
		jw_opt(&w, "reason", e[i].reason, &first);
		jw_raw(&w, "}", 1);
	}
	jw_raw(&w, "]", 1);
	return jw_end(&w);
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

int kserve_http_status(int code)
{
	switch (code) {
	case 0:
		return 200;
	case DPRT_EINPUT:
	case DPRT_ESHAPE:
	case DPRT_EDTYPE:
	case -EINVAL:
		return 400;
	case DPRT_ENOMODEL:
	case -ENOENT:
		return 404;
	case -EOPNOTSUPP:
		return 405;
	case -E2BIG:
		return 413;
	case DPRT_EUNSUP:
	case DPRT_ETOOMANY:
		return 501;
	case DPRT_EOUTBUF: /* the server gives a buffer; left over: too big */
	case DPRT_EACTMEM:
		return 413;
	case DPRT_EOVERLOAD:
	case -EAGAIN:
	case -EBUSY:
		return 503;
	}
	return 500;
}
