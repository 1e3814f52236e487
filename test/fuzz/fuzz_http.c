/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness: HTTP parser (and its Accept-Encoding and head rewriting),
 * KServe router, KServe decoders/encoder. 'ninja test' builds it
 * (test/fuzz/fuzz.ninja) and test/cli/fuzz.sh runs it on corpus_http/.
 *
 * By hand, longer (from the repository root, after ./configure && ninja):
 *   build/fuzz/fuzz_http -max_total_time=600 -artifact_prefix=/tmp/ \
 *     -dict=test/fuzz/http.dict /tmp/corpus test/fuzz/corpus_http
 * (a replay driver, fuzz_mode = replay in build/config.ninja, takes files:
 * build/fuzz/fuzz_http FILE...). An empty corpus directory is first
 * filled with a few seed inputs.
 *
 * The first input byte picks a target; the rest is its input:
 *   0, 1  HTTP stream: parse pipelined requests, route them, decode infer
 *         bodies; and check that feeding the bytes in pieces gives the same
 *         result as feeding them at once.
 *   2     infer request: a flag byte, two length bytes, the body. An odd
 *         flag makes the length bytes its Inference-Header-Content-Length.
 *         Decoded with and without the numeric fast path (net/jnum.h): the
 *         same tensors, or the same error message.
 *         The decoded tensors are encoded as a response and decoded back:
 *         every one must come back (bit-exact except NaN payloads).
 *   3     infer response body and repository index body.
 * A broken property aborts (libFuzzer reports it like a crash).
 */
#include "net/http.h"
#include "net/kserve.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);      \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static const struct http_limits lim = {.max_header = 1024, .max_uri = 256, .max_body = 1 << 16};
static struct arena arena, arena2;
static struct kserve_request req, req2;
static struct kserve_result res;

/* What one parse call says, in buffer-independent terms. */
struct outcome {
	ssize_t n;
	int status;
	uint8_t method, minor;
	bool keep_alive, cont;
	size_t path_len, query_len, body_off, body_len, ctype_len;
	int64_t ihl;
	uint32_t n_headers;
};

static struct outcome outcome_of(const struct http_req *r, ssize_t n, const char *base)
{
	struct outcome o;

	memset(&o, 0, sizeof(o));
	o.n = n;
	o.status = n < 0 ? r->status : 0;
	if (n <= 0)
		return o;
	o.method = r->method;
	o.minor = r->minor;
	o.keep_alive = r->keep_alive;
	o.cont = r->expect_continue;
	o.path_len = r->path.len;
	o.query_len = r->query.len;
	o.body_off = (size_t)(r->body.p - base);
	o.body_len = r->body.len;
	o.ctype_len = r->content_type.len;
	o.ihl = r->infer_header_len;
	o.n_headers = http_header_count(r);
	return o;
}

static bool valid_status(int s)
{
	static const int ok[] = {400, 411, 413, 414, 417, 431, 501, 505};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ok); i++)
		if (s == ok[i])
			return true;
	return false;
}

/* A chunked body the parser took decodes to its body_len, within limits. */
static void check_dechunk(const struct http_req *r)
{
	char *copy = malloc(r->body.len + 1);

	CHECK(copy != NULL);
	memcpy(copy, r->body.p, r->body.len);
	CHECK(r->body_len <= lim.max_body);
	CHECK(http_dechunk(copy, r->body.len) == r->body_len);
	free(copy);
}

/* Accept-Encoding of a parsed request: a coding we have, the same verdict
 * from its one field's value; its head rewritten for another length. */
static void check_accept(const struct http_req *r)
{
	struct http_accept a, b;
	struct http_str v, name, val;
	char head[512];
	uint32_t i, k = 0;
	int n;

	http_accept_encoding(r, &a);
	CHECK(a.coding <= HTTP_DEFLATE);
	CHECK(a.present == http_header(r, "accept-encoding", &v));
	if (!a.present)
		CHECK(a.coding == HTTP_IDENTITY && a.identity_ok);
	for (i = 0; i < http_header_count(r); i++) {
		http_header_at(r, i, &name, &val);
		k += name.len == 15 && !strncasecmp(name.p, "accept-encoding", 15);
	}
	if (k == 1) {
		http_accept_parse(v.p, v.len, &b);
		CHECK(!memcmp(&a, &b, sizeof(a)));
	}
	n = http_write_response(head, sizeof(head), 200, "application/json", NULL, r->body.len,
				r->keep_alive);
	CHECK(n > 0);
	n = http_head_rewrite(head, (size_t)n, sizeof(head), r->body.len * 3 + 7,
			      "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n");
	CHECK(n > 0 && !memcmp(head + n - 4, "\r\n\r\n", 4));
}

static void check_request(const struct http_req *r, const char *buf, size_t len, ssize_t n)
{
	struct kserve_target t;
	int ret;

	CHECK((size_t)n <= len);
	CHECK(r->method >= HTTP_GET && r->method <= HTTP_POST);
	CHECK(r->path.len && r->path.p[0] == '/');
	CHECK(r->body.p + r->body.len == buf + n);
	CHECK(r->target.p >= buf && r->target.p + r->target.len <= r->body.p);
	ret = kserve_route(r, &t);
	CHECK(ret == 0 ? t.status == 200 && t.route != KR_NONE : t.status >= 400);
	CHECK(kserve_http_status(ret) == (ret ? t.status : 200));
	if (r->chunked)
		check_dechunk(r);
	check_accept(r);
	if (ret || t.route != KR_INFER)
		return;
	arena_reset(&arena);
	ret = kserve_decode_request(r->body.p, r->body.len, r->infer_header_len, &arena, &req);
	CHECK(ret == 0 || ret == DPRT_EINPUT || ret == -E2BIG);
}

/* Parse pipelined requests from buf at once; returns the first outcome. */
static struct outcome parse_stream(const char *buf, size_t len)
{
	struct outcome first;
	struct http_req r;
	size_t off = 0;
	ssize_t n;

	http_req_init(&r, &lim);
	n = http_parse(&r, buf, len);
	first = outcome_of(&r, n, buf);
	while (n > 0) {
		check_request(&r, buf + off, len - off, n);
		off += (size_t)n;
		n = http_parse(&r, buf + off, len - off);
	}
	CHECK(n == 0 || (n == -EBADMSG && valid_status(r.status) && r.error));
	return first;
}

/* Feed the first request in pieces of `step` bytes, each call from a fresh
 * copy, and compare with the outcome of feeding it at once. */
static void check_split(const char *buf, size_t len, size_t step, const struct outcome *all)
{
	struct outcome inc;
	struct http_req r;
	size_t k = 0;
	ssize_t n = 0;
	char *copy;

	http_req_init(&r, &lim);
	while (n == 0 && k < len) {
		k = MIN(len, k + step);
		copy = malloc(k);
		memcpy(copy, buf, k);
		n = http_parse(&r, copy, k);
		inc = outcome_of(&r, n, copy);
		free(copy);
	}
	if (!len)
		inc = outcome_of(&r, 0, buf);
	CHECK(!memcmp(&inc, all, sizeof(inc)));
}

static void fuzz_http(const char *buf, size_t len, unsigned step)
{
	struct outcome all = parse_stream(buf, len);

	check_split(buf, len, 1 + step % 7, &all);
	if (len < 512)
		check_split(buf, len, 1, &all);
}

/* Equal, or both NaN of the dtype. */
static bool same_elem(uint8_t dt, const char *a, const char *b)
{
	size_t es = dtype_size((enum dtype)dt);
	uint16_t ha, hb;
	float fa, fb;

	if (!memcmp(a, b, es))
		return true;
	if (dt == DT_F32) {
		memcpy(&fa, a, 4);
		memcpy(&fb, b, 4);
		return isnan(fa) && isnan(fb);
	}
	if (dt != DT_F16 && dt != DT_BF16)
		return false;
	memcpy(&ha, a, 2);
	memcpy(&hb, b, 2);
	if (dt == DT_F16)
		return isnan(f16_to_f32(ha)) && isnan(f16_to_f32(hb));
	return isnan(bf16_to_f32(ha)) && isnan(bf16_to_f32(hb));
}

static void check_tensor(const struct kserve_tensor *t)
{
	uint64_t n = (uint64_t)shape_numel(&t->shape);
	size_t es = dtype_size((enum dtype)t->shape.dtype);

	CHECK(es && t->shape.ndim >= 1 && t->shape.ndim <= MAX_DIMS);
	CHECK(t->nbytes == n * es);
	CHECK(t->data && (uintptr_t)t->data % es == 0);
	CHECK(t->name[0] && strlen(t->name) < NAME_LEN);
}

/* Encode the decoded inputs as a response, decode it, compare. */
static void round_trip(const struct kserve_request *q, unsigned binmask)
{
	struct kserve_out outs[KSERVE_MAX_TENSORS];
	struct kserve_response rs = {.model_name = "m", .id = q->id, .outputs = outs};
	size_t bound, jl, off;
	uint64_t bl, i, k;
	char *buf;
	int ret;

	binmask &= (1u << q->n_inputs) - 1; /* a binary output needs the header */
	for (i = 0; i < q->n_inputs; i++) {
		outs[i] = (struct kserve_out){q->inputs[i].name, q->inputs[i].shape,
					      q->inputs[i].data, (binmask >> i) & 1};
		if (q->inputs[i].nbytes > (1u << 20))
			return; /* JSON of it would be slow */
	}
	rs.n_outputs = q->n_inputs;
	bound = kserve_response_bound(&rs);
	buf = malloc(bound);
	CHECK(kserve_encode_response(&rs, buf, bound, &jl, &bl) == 0);
	buf = realloc(buf, jl + bl + 1);
	for (i = 0, off = jl; i < q->n_inputs; i++) {
		if (!outs[i].binary)
			continue;
		memcpy(buf + off, outs[i].data, q->inputs[i].nbytes);
		off += q->inputs[i].nbytes;
	}
	ret = kserve_decode_response(buf, off, binmask ? (int64_t)jl : -1, &arena, &res);
	CHECK(ret == 0 || ret == -E2BIG);
	for (i = 0; !ret && i < q->n_inputs; i++) {
		const struct kserve_tensor *a = &q->inputs[i], *b = &res.outputs[i];
		size_t es = dtype_size((enum dtype)a->shape.dtype);

		CHECK(!strcmp(a->name, b->name) && a->nbytes == b->nbytes);
		CHECK(a->shape.dtype == b->shape.dtype && a->shape.ndim == b->shape.ndim);
		CHECK(!memcmp(a->shape.dims, b->shape.dims, sizeof(a->shape.dims)));
		for (k = 0; k < a->nbytes; k += es)
			CHECK(same_elem(a->shape.dtype, (const char *)a->data + k,
					(const char *)b->data + k));
	}
	free(buf);
}

static void fuzz_request(const char *buf, size_t len)
{
	int64_t jl = -1;
	char msg[512];
	uint32_t i;
	int ret;

	if (len < 3)
		return;
	if (buf[0] & 1) /* at most one byte past the body: that is refused */
		jl = ((unsigned char)buf[1] | (unsigned char)buf[2] << 8) % (len - 1);
	/* the tree path, then the numeric fast path: the same outcome */
	arena_reset(&arena2);
	kserve_set_fast_min(SIZE_MAX);
	ret = kserve_decode_request(buf + 3, len - 3, jl, &arena2, &req2);
	snprintf(msg, sizeof(msg), "%s", ret ? err_msg(ret) : "");
	arena_reset(&arena);
	kserve_set_fast_min(0);
	CHECK(kserve_decode_request(buf + 3, len - 3, jl, &arena, &req) == ret);
	CHECK(!strcmp(msg, ret ? err_msg(ret) : ""));
	CHECK(ret == 0 || ret == DPRT_EINPUT || ret == -E2BIG);
	CHECK(ret == 0 || err_msg(ret)[0]);
	if (ret)
		return;
	CHECK(req.n_inputs == req2.n_inputs);
	for (i = 0; i < req.n_inputs; i++)
		CHECK(req.inputs[i].nbytes == req2.inputs[i].nbytes &&
		      !memcmp(&req.inputs[i].shape, &req2.inputs[i].shape,
			      sizeof(req.inputs[i].shape)) &&
		      !memcmp(req.inputs[i].data, req2.inputs[i].data, req.inputs[i].nbytes));
	CHECK(req.n_inputs >= 1 && req.n_inputs <= KSERVE_MAX_TENSORS);
	for (i = 0; i < req.n_inputs; i++)
		check_tensor(&req.inputs[i]);
	round_trip(&req, (unsigned char)buf[1]);
}

static void fuzz_other(const char *buf, size_t len)
{
	bool ready;
	int ret;

	arena_reset(&arena);
	ret = kserve_decode_response(buf, len, -1, &arena, &res);
	CHECK(ret == 0 || ret == DPRT_EINPUT || ret == -E2BIG);
	ret = kserve_decode_repo_index(buf, len, &ready);
	CHECK(ret == 0 || ret == DPRT_EINPUT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data + 1;

	if (!arena.base && (arena_init(&arena, 4u << 20) || arena_init(&arena2, 4u << 20)))
		abort();
	if (!size)
		return 0;
	switch (data[0] & 3) {
	case 0:
	case 1:
		fuzz_http(buf, size - 1, data[0] >> 2);
		break;
	case 2:
		fuzz_request(buf, size - 1);
		break;
	default:
		fuzz_other(buf, size - 1);
	}
	return 0;
}

/* ---- seeds for an empty corpus ---- */

#define REQ_JSON                                                                                   \
	"{\"id\":\"1\",\"inputs\":[{\"name\":\"ids\",\"datatype\":\"INT64\","                      \
	"\"shape\":[1,3],\"data\":[[1,2,3]]},{\"name\":\"x\",\"datatype\":\"FP16\","               \
	"\"shape\":[2],\"data\":[0.5,\"NaN\"]}],\"outputs\":[{\"name\":\"y\","                     \
	"\"parameters\":{\"binary_data\":true}}]}"
#define BIN_JSON                                                                                   \
	"{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[2],"                        \
	"\"parameters\":{\"binary_data_size\":8}},{\"name\":\"m\",\"datatype\":"                   \
	"\"BOOL\",\"shape\":[2],\"parameters\":{\"binary_data_size\":2}}]}"

static void write_seed(const char *dir, int i, const char *data, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/seed%d", dir, i);
	f = fopen(path, "wb");
	if (!f)
		return;
	fwrite(data, 1, len, f);
	fclose(f);
}

/* Selector bytes 4..7 pick targets 0..3 without a NUL in the text seeds. */
static void write_seeds(const char *dir)
{
	static const char *const text[] = {
		"\x04GET /v2/health/live HTTP/1.1\r\nHost: a\r\n\r\n"
		"HEAD /v2/models/m%20n/versions/2/ready HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"\x05POST /v2/repository/index HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
		"Content-Length: 14\r\n\r\n{\"ready\":true}",
		"\x04GET /metrics HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip;q=0.5, "
		"deflate, identity;q=0\r\naccept-encoding: *;q=0.1\r\n\r\n",
		"\x06xxx" REQ_JSON,
		"\x07{\"model_name\":\"m\",\"outputs\":[{\"name\":\"o\",\"datatype\":\"BF16\","
		"\"shape\":[1],\"data\":[\"-Infinity\"]}]}",
		"\x07{\"ready\":false}",
	};
	float a[2] = {1.5f, -0.0f};
	size_t i, jl = strlen(BIN_JSON);
	char buf[1024];
	int n;

	for (i = 0; i < ARRAY_SIZE(text); i++)
		write_seed(dir, (int)i, text[i], strlen(text[i]));
	n = snprintf(buf, sizeof(buf),
		     "\x04POST /v2/models/m/infer HTTP/1.1\r\nHost: a\r\n"
		     "Content-Length: %zu\r\n\r\n%s",
		     strlen(REQ_JSON), REQ_JSON);
	write_seed(dir, (int)i++, buf, (size_t)n);
	/* binary extension: selector, flag, JSON length, JSON, tensors */
	buf[0] = 6;
	buf[1] = 1;
	buf[2] = (char)(jl & 0xff);
	buf[3] = (char)(jl >> 8);
	memcpy(buf + 4, BIN_JSON, jl);
	memcpy(buf + 4 + jl, a, 8);
	buf[4 + jl + 8] = 1;
	buf[4 + jl + 9] = 0;
	write_seed(dir, (int)i, buf, 4 + jl + 10);
}

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	bool empty = true;

	if (!d)
		return false;
	while (empty && (e = readdir(d)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	closedir(d);
	return empty;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = NULL;
	int a;

	for (a = 1; a < *argc && !dir; a++)
		if ((*argv)[a][0] != '-' && dir_is_empty((*argv)[a]))
			dir = (*argv)[a];
	if (dir)
		write_seeds(dir);
	return 0;
}

#ifdef FUZZ_STANDALONE
static int run_file(FILE *f, const char *name)
{
	static char data[1 << 20];
	size_t n = fread(data, 1, sizeof(data), f);

	if (ferror(f)) {
		fprintf(stderr, "%s: read error\n", name);
		return 1;
	}
	LLVMFuzzerTestOneInput((const uint8_t *)data, n);
	return 0;
}

int main(int argc, char **argv)
{
	FILE *f;
	int i, bad = 0;

	if (argc < 2)
		return run_file(stdin, "stdin");
	for (i = 1; i < argc; i++) {
		f = fopen(argv[i], "rb");
		if (!f) {
			perror(argv[i]);
			bad = 1;
			continue;
		}
		bad |= run_file(f, argv[i]);
		fclose(f);
	}
	return bad;
}
#endif
