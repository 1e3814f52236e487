/* SPDX-License-Identifier: MIT */
/*
 * KServe v2 router, binding of decoded requests to a model's signature and
 * the HTTP status of error codes. Decoding (kserve_decode.c) goes through
 * jansson; encoding (kserve_encode.c) is a small JSON writer over caller
 * buffers (kserve_json.c: no allocation, no tree).
 */
#include "net/kserve_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

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
	{"v2/models/stats", KR_STATS, M_GET}, /* before the model wildcard */
	{"v2/models/*", KR_MODEL_META, M_GET},
	{"v2/models/*/versions/*", KR_MODEL_META, M_GET},
	{"v2/models/*/ready", KR_MODEL_READY, M_GET},
	{"v2/models/*/versions/*/ready", KR_MODEL_READY, M_GET},
	{"v2/models/*/config", KR_MODEL_CONFIG, M_GET},
	{"v2/models/*/versions/*/config", KR_MODEL_CONFIG, M_GET},
	{"v2/models/*/stats", KR_MODEL_STATS, M_GET},
	{"v2/models/*/versions/*/stats", KR_MODEL_STATS, M_GET},
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
		k = kserve_utf8_len((const unsigned char *)out + i, (size_t)n - i);
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

void kserve_fmt_shape(char *buf, size_t n, const struct shape *s)
{
	size_t l = 0;
	int i;

	buf[0] = 0;
	for (i = 0; i < s->ndim && l < n; i++)
		l += (size_t)snprintf(buf + l, n - l, "%s%" PRId64, i ? "," : "[", s->dims[i]);
	if (l < n)
		snprintf(buf + l, n - l, "%s]", s->ndim ? "" : "[");
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
	kserve_fmt_shape(got_s, sizeof(got_s), &t->shape);
	kserve_fmt_shape(want_s, sizeof(want_s), &want);
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
