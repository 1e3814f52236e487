/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 parser, response writer and KServe router. */
#include <criterion/criterion.h>

#include "net/http.h"
#include "net/kserve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct http_limits lim = {.max_header = 1024, .max_uri = 256, .max_body = 4096};

static bool str_is(struct http_str s, const char *lit)
{
	return s.len == strlen(lit) && !memcmp(s.p, lit, s.len);
}

/* Parse a whole buffer at once; returns http_parse's result. */
static ssize_t parse_all(struct http_req *r, const char *buf)
{
	http_req_init(r, &lim);
	return http_parse(r, buf, strlen(buf));
}

/* Expect the first request of buf to fail with status. */
static void expect_status(const char *buf, int status)
{
	struct http_req r;
	ssize_t n = parse_all(&r, buf);

	cr_assert_eq(n, -EBADMSG, "%s: got %zd, wanted an error %d", buf, n, status);
	cr_assert_eq(r.status, status, "%s: status %d, wanted %d (%s)", buf, r.status, status,
		     r.error);
	cr_assert(r.error && r.error[0]);
}

Test(http, simple_get)
{
	const char *req = "GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n"
			  "User-Agent: t\r\n\r\n";
	struct http_req r;
	struct http_str v;

	cr_assert_eq(parse_all(&r, req), (ssize_t)strlen(req));
	cr_assert_eq(r.method, HTTP_GET);
	cr_assert_eq(r.minor, 1);
	cr_assert(r.keep_alive);
	cr_assert(str_is(r.target, "/v2/health/live"));
	cr_assert(str_is(r.path, "/v2/health/live"));
	cr_assert_eq(r.query.len, 0);
	cr_assert_eq(r.body.len, 0);
	cr_assert_eq(r.content_type.len, 0);
	cr_assert_eq(r.infer_header_len, -1);
	cr_assert_eq(http_header_count(&r), 2);
	cr_assert(http_header(&r, "user-agent", &v) && str_is(v, "t"));
	cr_assert(http_header(&r, "HOST", &v) && str_is(v, "localhost"));
	cr_assert(!http_header(&r, "Accept", &v));
	/* the header array points into the caller's buffer: zero copy */
	cr_assert(v.p > req && v.p < req + strlen(req));
}

Test(http, post_with_body)
{
	const char *req = "POST /v2/models/bert/infer?x=1&y HTTP/1.1\r\n"
			  "Host: h\r\ncontent-type:application/json  \r\n"
			  "Content-Length: 11\r\nInference-Header-Content-Length: 4\r\n\r\n"
			  "{\"a\":1}abcd";
	struct http_req r;

	cr_assert_eq(parse_all(&r, req), (ssize_t)strlen(req));
	cr_assert_eq(r.method, HTTP_POST);
	cr_assert(str_is(r.path, "/v2/models/bert/infer"));
	cr_assert(str_is(r.query, "x=1&y"));
	cr_assert(str_is(r.content_type, "application/json"));
	cr_assert(str_is(r.body, "{\"a\":1}abcd"));
	cr_assert_eq(r.infer_header_len, 4);
	cr_assert_eq(http_req_size(&r), strlen(req));
}

Test(http, pipelined_three)
{
	const char *buf =
		"GET /v2 HTTP/1.1\r\nHost: a\r\n\r\n"
		"POST /v2/repository/index HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"
		"HEAD /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
	static const uint8_t methods[] = {HTTP_GET, HTTP_POST, HTTP_HEAD};
	static const char *const paths[] = {"/v2", "/v2/repository/index", "/metrics"};
	size_t off = 0, len = strlen(buf);
	struct http_req r;
	ssize_t n;
	int i;

	http_req_init(&r, &lim);
	for (i = 0; i < 3; i++) {
		n = http_parse(&r, buf + off, len - off);
		cr_assert_gt(n, 0, "request %d: %zd", i, n);
		cr_assert_eq(r.method, methods[i]);
		cr_assert(str_is(r.path, paths[i]));
		cr_assert_eq(r.keep_alive, i < 2);
		cr_assert_eq(r.body.len, i == 1 ? 2 : 0);
		if (i == 1)
			cr_assert(str_is(r.body, "{}"));
		off += (size_t)n;
	}
	cr_assert_eq(off, len);
	cr_assert_eq(http_parse(&r, buf + off, 0), 0);
}

/* The outcome of parsing one request, for comparisons. */
struct outcome {
	ssize_t n;
	int status;
	uint8_t method, minor;
	bool keep_alive, cont;
	size_t path_off, path_len, query_off, query_len, body_off, body_len, ctype_len;
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
	o.path_off = r->path.len > 1 ? (size_t)(r->path.p - base) : 0;
	o.path_len = r->path.len;
	o.query_off = (size_t)(r->query.p - base);
	o.query_len = r->query.len;
	o.body_off = (size_t)(r->body.p - base);
	o.body_len = r->body.len;
	o.ctype_len = r->content_type.len;
	o.ihl = r->infer_header_len;
	o.n_headers = http_header_count(r);
	return o;
}

/*
 * Feed buf[0, k) for k = 1..len into one parser, each time from a fresh
 * copy of the bytes (so a parser that kept pointers would read freed
 * memory under ASan), and compare with parsing it at once.
 */
static void check_split(const char *buf, size_t len)
{
	struct http_req r;
	struct outcome all, inc = {0};
	ssize_t n = 0;
	size_t k;
	char *copy;

	http_req_init(&r, &lim);
	all = outcome_of(&r, http_parse(&r, buf, len), buf);
	http_req_init(&r, &lim);
	for (k = 1; k <= len; k++) {
		copy = malloc(k);
		memcpy(copy, buf, k);
		n = http_parse(&r, copy, k);
		if (n != 0) {
			inc = outcome_of(&r, n, copy);
			free(copy);
			break;
		}
		free(copy);
	}
	if (n == 0)
		inc = outcome_of(&r, 0, buf);
	cr_assert_eq(memcmp(&all, &inc, sizeof(all)), 0,
		     "split parse differs for %.60s: all %zd/%d, incremental %zd/%d at %zu", buf,
		     all.n, all.status, inc.n, inc.status, k);
}

Test(http, split_at_every_byte)
{
	static const char *const reqs[] = {
		"GET /v2/health/live HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\n\r\nPOST /v2/models/m/infer?q=1 HTTP/1.1\r\nHost: a\r\nContent-Type: x/y\r\n"
		"Content-Length: 10\r\nInference-Header-Content-Length: 3\r\n"
		"Expect: 100-continue\r\n\r\n0123456789",
		"GET http://example.com:80/a/b?c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
		"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: v\r\n\r\nGET",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWikiX",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\rX\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: nothing\r\n\r\n",
	};
	char big[2048];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(reqs); i++)
		check_split(reqs[i], strlen(reqs[i]));
	/* limits hit mid-stream: a long target, then long headers */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /", 5);
	check_split(big, sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	check_split(big, sizeof(big));
}

Test(http, split_survives_buffer_moves)
{
	const char *req = "POST /v2/models/m/infer HTTP/1.1\r\nHost: a\r\nContent-Type: t\r\n"
			  "Content-Length: 4\r\n\r\nbody";
	size_t len = strlen(req), k;
	struct http_req r;
	char *copy = NULL;
	ssize_t n = 0;

	http_req_init(&r, &lim);
	for (k = 1; k <= len && n == 0; k++) {
		free(copy);
		copy = malloc(k);
		memcpy(copy, req, k);
		n = http_parse(&r, copy, k);
		if (k == len - 4)
			cr_assert_eq(http_req_size(&r), len);
	}
	cr_assert_eq(n, (ssize_t)len);
	cr_assert(str_is(r.body, "body"));
	cr_assert(str_is(r.content_type, "t"));
	cr_assert(r.body.p == copy + len - 4);
	free(copy);
}

Test(http, header_limits)
{
	char buf[4096];
	struct http_req r;
	int i, n;

	/* request line + headers of exactly max_header bytes pass, one more fails */
	n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	memset(buf + n, 'v', lim.max_header - (size_t)n - 4);
	strcpy(buf + lim.max_header - 4, "\r\n\r\n");
	cr_assert_eq(parse_all(&r, buf), (ssize_t)lim.max_header);
	memmove(buf + n + 1, buf + n, strlen(buf + n) + 1);
	expect_status(buf, 431);
	/* too many headers */
	n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (i = 0; i < HTTP_MAX_HEADERS; i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "H%d: v\r\n", i);
	strcat(buf, "\r\n");
	lim.max_header = sizeof(buf);
	expect_status(buf, 431);
	lim.max_header = 1024;
	/* an unterminated header block is refused once it passes the limit */
	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "GET / HTTP/1.1\r\nA: ", 19);
	http_req_init(&r, &lim);
	cr_assert_eq(http_parse(&r, buf, lim.max_header), 0);
	cr_assert_eq(http_parse(&r, buf, lim.max_header + 1), -EBADMSG);
	cr_assert_eq(r.status, 431);
}

Test(http, uri_limit)
{
	char buf[1024];

	memset(buf, 0, sizeof(buf));
	strcpy(buf, "GET /");
	memset(buf + 5, 'a', lim.max_uri - 1);
	strcat(buf, " HTTP/1.1\r\nHost: a\r\n\r\n");
	cr_assert_gt(parse_all(&(struct http_req){0}, buf), 0);
	memset(buf, 0, sizeof(buf));
	strcpy(buf, "GET /");
	memset(buf + 5, 'a', lim.max_uri);
	expect_status(buf, 414); /* known before the line ends */
}

Test(http, body_limit)
{
	struct http_req r;
	char buf[256];

	snprintf(buf, sizeof(buf), "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %llu\r\n\r\n",
		 (unsigned long long)lim.max_body);
	cr_assert_eq(parse_all(&r, buf), 0); /* fits: waits for the body */
	snprintf(buf, sizeof(buf), "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %llu\r\n\r\n",
		 (unsigned long long)lim.max_body + 1);
	expect_status(buf, 413); /* refused before the body arrives */
}

Test(http, content_length_variants)
{
	static const char *const bad[] = {"-1",
					  "+5",
					  "5a",
					  "0x10",
					  "1 2",
					  "1,1",
					  "18446744073709551616",
					  "99999999999999999999999"};
	char buf[256];
	struct http_req r;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(buf, sizeof(buf),
			 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n", bad[i]);
		expect_status(buf, 400);
	}
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400);
	expect_status(
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		400);
	/* identical duplicates and surrounding blanks are fine */
	cr_assert_gt(parse_all(&r, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  2 \r\n"
				   "content-length: 2\r\n\r\nab"),
		     0);
	cr_assert(str_is(r.body, "ab"));
	/* no Content-Length: empty body */
	cr_assert_gt(parse_all(&r, "POST / HTTP/1.1\r\nHost: a\r\n\r\nGET"), 0);
	cr_assert_eq(r.body.len, 0);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nInference-Header-Content-Length: x\r\n\r\n",
		      400);
}

#define TE_HEAD "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

Test(http, transfer_encoding)
{
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
		      501);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
		      "Content-Length: 4\r\n\r\n",
		      400);
	expect_status(TE_HEAD "zz\r\n", 400);		      /* not a size */
	expect_status(TE_HEAD "4\nWiki\r\n0\r\n\r\n", 400);   /* bare LF */
	expect_status(TE_HEAD "4\r\nWikiXX0\r\n\r\n", 400);   /* no CRLF after data */
	expect_status(TE_HEAD "0\r\nbad field\r\n\r\n", 400); /* trailer */
	expect_status(TE_HEAD "1001\r\n", 413);		      /* one chunk over 4096 */
}

Test(http, chunked_body)
{
	const char *req = TE_HEAD "4;name=\"v\"\r\nWiki\r\n5\r\npedia\r\n000\r\nX-T: 1\r\n\r\nNEXT";
	char buf[256];
	struct http_req r;
	ssize_t n;

	snprintf(buf, sizeof(buf), "%s", req);
	http_req_init(&r, &lim);
	n = http_parse(&r, buf, strlen(buf));
	cr_assert_eq(n, (ssize_t)(strlen(buf) - 4), "%zd (%s)", n, r.error ? r.error : "");
	cr_assert(r.chunked);
	cr_assert_eq(r.body_len, 9);
	cr_assert_eq(http_dechunk((char *)r.body.p, r.body.len), 9);
	cr_assert_eq(memcmp(r.body.p, "Wikipedia", 9), 0);
	cr_assert_eq(memcmp(buf + n, "NEXT", 4), 0, "the next request is untouched");
}

/* Many one-byte chunks: the data fits the limit, the framing does not. */
Test(http, chunked_framing_limit)
{
	size_t cap = 64 * 4096, len;
	char *buf = malloc(cap);
	struct http_req r;
	ssize_t n;

	len = (size_t)snprintf(buf, cap, "%s", TE_HEAD);
	while (len + 8 < cap)
		len += (size_t)snprintf(buf + len, cap - len, "1;e\r\nX\r\n");
	http_req_init(&r, &lim);
	n = http_parse(&r, buf, len);
	cr_assert_eq(n, -EBADMSG);
	cr_assert_eq(r.status, 413, "%d %s", r.status, r.error);
	cr_assert(strstr(r.error, "framing"), "%s", r.error);
	free(buf);
}

Test(http, keep_alive_rules)
{
	static const struct {
		const char *req;
		bool keep;
	} cases[] = {
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true},
		{"GET / HTTP/1.0\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
		{"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
		{"GET / HTTP/1.2\r\nHost: a\r\n\r\n", true}, /* 1.x is served as 1.1 */
	};
	struct http_req r;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		cr_assert_gt(parse_all(&r, cases[i].req), 0, "%s", cases[i].req);
		cr_assert_eq(r.keep_alive, cases[i].keep, "%s", cases[i].req);
	}
}

Test(http, bad_request_lines)
{
	static const struct {
		const char *req;
		int status;
	} cases[] = {
		{"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
		{"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
		{"GET / HTTP/11\r\nHost: a\r\n\r\n", 400},
		{"GET / http/1.1\r\nHost: a\r\n\r\n", 400},
		{"GET /\r\n\r\n", 400},
		{"GET / HTTP/1.1\nHost: a\n\n", 400},
		{"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
		{"get / HTTP/1.1\r\nHost: a\r\n\r\n", 501},
		{"PUT / HTTP/1.1\r\nHost: a\r\n\r\n", 501},
		{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 501},
		{"AVERYLONGMETHODNAME / HTTP/1.1\r\n", 501},
		{"\n", 400},
		{"\r\rGET", 400},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++)
		expect_status(cases[i].req, cases[i].status);
}

Test(http, bad_headers)
{
	static const char *const cases[] = {
		"GET / HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\rX",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	};
	struct http_req r;
	struct http_str v;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++)
		expect_status(cases[i], 400);
	/* obs-text and inner blanks are fine in values; empty values too */
	cr_assert_gt(parse_all(&r, "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9 \t au lait\t\r\n"
				   "Empty:\r\nE2:   \r\n\r\n"),
		     0);
	cr_assert(http_header(&r, "x", &v) && str_is(v, "caf\xc3\xa9 \t au lait"));
	cr_assert(http_header(&r, "empty", &v) && v.len == 0);
	cr_assert(http_header(&r, "e2", &v) && v.len == 0);
	/* HTTP/1.0 needs no Host */
	cr_assert_gt(parse_all(&r, "GET / HTTP/1.0\r\n\r\n"), 0);
	cr_assert_eq(r.minor, 0);
}

Test(http, expect_continue)
{
	const char *req = "POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
			  "Content-Length: 3\r\n\r\n";
	char buf[256];
	struct http_req r;

	http_req_init(&r, &lim);
	cr_assert_eq(http_parse(&r, req, 10), 0);
	cr_assert(!http_need_continue(&r)); /* headers not in yet */
	cr_assert_eq(http_parse(&r, req, strlen(req)), 0);
	cr_assert(http_need_continue(&r));
	cr_assert(!http_need_continue(&r)); /* once */
	snprintf(buf, sizeof(buf), "%sabc", req);
	cr_assert_eq(http_parse(&r, buf, strlen(buf)), (ssize_t)strlen(buf));
	cr_assert(r.expect_continue);
	/* body already complete: no 100 needed */
	http_req_init(&r, &lim);
	cr_assert_gt(http_parse(&r, buf, strlen(buf)), 0);
	cr_assert(!http_need_continue(&r));
	expect_status("POST /x HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417);
	/* HTTP/1.0 ignores Expect */
	cr_assert_gt(parse_all(&r, "POST /x HTTP/1.0\r\nExpect: 200-ok\r\n\r\n"), 0);
	cr_assert(!r.expect_continue);
}

Test(http, errors_stick_and_init_clears)
{
	struct http_req r;

	http_req_init(&r, &lim);
	cr_assert_eq(http_parse(&r, "BAD(", 4), -EBADMSG);
	cr_assert_eq(http_parse(&r, "GET / HTTP/1.0\r\n\r\n", 18), -EBADMSG);
	http_req_init(&r, &lim);
	cr_assert_eq(http_parse(&r, "GET / HTTP/1.0\r\n\r\n", 18), 18);
}

Test(http, targets)
{
	struct http_req r;

	cr_assert_gt(parse_all(&r, "GET http://h:1/v2/models?x HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(str_is(r.path, "/v2/models"));
	cr_assert(str_is(r.query, "x"));
	cr_assert_gt(parse_all(&r, "GET HTTPS://h HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(str_is(r.path, "/"));
	cr_assert_gt(parse_all(&r, "GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(str_is(r.path, "/"));
	cr_assert(str_is(r.query, "q=1"));
	cr_assert_gt(parse_all(&r, "GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(str_is(r.path, "/a"));
	cr_assert(str_is(r.query, "b?c"));
	cr_assert_gt(parse_all(&r, "GET /? HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(str_is(r.path, "/"));
	cr_assert_eq(r.query.len, 0);
	expect_status("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

Test(http, pct_decode)
{
	char out[16];

	cr_assert_eq(http_pct_decode("a%20b%2Fc%2fd+", 14, out, sizeof(out)), 8);
	cr_assert_str_eq(out, "a b/c/d+");
	cr_assert_eq(http_pct_decode("%C3%A9", 6, out, sizeof(out)), 2);
	cr_assert_str_eq(out, "\xc3\xa9");
	cr_assert_eq(http_pct_decode("", 0, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "");
	cr_assert_eq(http_pct_decode("%", 1, out, sizeof(out)), -EINVAL);
	cr_assert_eq(http_pct_decode("%4", 2, out, sizeof(out)), -EINVAL);
	cr_assert_eq(http_pct_decode("%g0", 3, out, sizeof(out)), -EINVAL);
	cr_assert_eq(http_pct_decode("%00", 3, out, sizeof(out)), -EINVAL);
	cr_assert_eq(http_pct_decode("0123456789abcdef", 16, out, sizeof(out)), -ENAMETOOLONG);
	cr_assert_eq(http_pct_decode("0123456789abcde", 15, out, sizeof(out)), 15);
}

Test(http, write_response)
{
	char buf[256];
	int n;

	n = http_write_response(buf, sizeof(buf), 200, "application/json", "X-A: 1\r\n", 42, true);
	cr_assert_gt(n, 0);
	buf[n] = 0;
	cr_assert_str_eq(buf,
			 "HTTP/1.1 200 OK\r\nServer: dprt\r\nContent-Type: application/json\r\n"
			 "Content-Length: 42\r\nConnection: keep-alive\r\nX-A: 1\r\n\r\n");
	n = http_write_response(buf, sizeof(buf), 404, NULL, NULL, 0, false);
	buf[n] = 0;
	cr_assert_str_eq(buf, "HTTP/1.1 404 Not Found\r\nServer: dprt\r\nContent-Length: 0\r\n"
			      "Connection: close\r\n\r\n");
	n = http_write_response(buf, sizeof(buf), 204, NULL, NULL, 0, true);
	buf[n] = 0;
	cr_assert_null(strstr(buf, "Content-Length"));
	cr_assert_eq(http_write_response(buf, 20, 200, NULL, NULL, 0, true), -ENOSPC);
	cr_assert_str_eq(http_reason(431), "Request Header Fields Too Large");
	cr_assert_str_eq(http_reason(505), "HTTP Version Not Supported");
	cr_assert_str_eq(http_reason(299), "Unknown");
}

/* ---- router ---- */

static int route(const char *method, const char *target, struct kserve_target *t)
{
	char buf[512];
	struct http_req r;

	snprintf(buf, sizeof(buf), "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", method, target);
	cr_assert_gt(parse_all(&r, buf), 0, "%s", buf);
	return kserve_route(&r, t);
}

Test(http, router_table)
{
	static const struct {
		const char *method, *target;
		enum kserve_route route;
		const char *model, *version;
	} ok[] = {
		{"GET", "/v2", KR_SERVER_META, "", ""},
		{"HEAD", "/v2", KR_SERVER_META, "", ""},
		{"GET", "/v2/health/live", KR_LIVE, "", ""},
		{"GET", "/v2/health/ready?verbose", KR_READY, "", ""},
		{"GET", "/v2/models/bert", KR_MODEL_META, "bert", ""},
		{"GET", "/v2/models/bert/versions/3", KR_MODEL_META, "bert", "3"},
		{"GET", "/v2/models/bert/ready", KR_MODEL_READY, "bert", ""},
		{"GET", "/v2/models/bert/versions/1/ready", KR_MODEL_READY, "bert", "1"},
		{"POST", "/v2/models/resnet-50/infer", KR_INFER, "resnet-50", ""},
		{"POST", "/v2/models/gpt2/versions/2/infer", KR_INFER, "gpt2", "2"},
		{"POST", "/v2/models/my%20model/infer", KR_INFER, "my model", ""},
		{"POST", "/v2/models/caf%C3%A9/infer", KR_INFER, "caf\xc3\xa9", ""},
		{"POST", "/v2/models/versions/infer", KR_INFER, "versions", ""},
		{"GET", "/v2/models/ready/ready", KR_MODEL_READY, "ready", ""},
		{"POST", "/v2/repository/index", KR_REPO_INDEX, "", ""},
		{"POST", "/v2/repository/models/bert/load", KR_REPO_LOAD, "bert", ""},
		{"POST", "/v2/repository/models/bert/unload", KR_REPO_UNLOAD, "bert", ""},
		{"GET", "/metrics", KR_METRICS, "", ""},
		{"GET", "http://host:9000/metrics", KR_METRICS, "", ""},
		{"GET", "/v2/models/bert/config", KR_MODEL_CONFIG, "bert", ""},
		{"GET", "/v2/models/bert/versions/2/config", KR_MODEL_CONFIG, "bert", "2"},
		{"GET", "/v2/models/bert/stats", KR_MODEL_STATS, "bert", ""},
		{"GET", "/v2/models/bert/versions/2/stats", KR_MODEL_STATS, "bert", "2"},
		{"GET", "/v2/models/stats", KR_STATS, "", ""},
		{"GET", "/v2/models/stats/stats", KR_MODEL_STATS, "stats", ""},
	};
	struct kserve_target t;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ok); i++) {
		cr_assert_eq(route(ok[i].method, ok[i].target, &t), 0, "%s %s: %s", ok[i].method,
			     ok[i].target, err_msg(0));
		cr_assert_eq(t.route, ok[i].route, "%s", ok[i].target);
		cr_assert_eq(t.status, 200);
		cr_assert_str_eq(t.model, ok[i].model);
		cr_assert_str_eq(t.version, ok[i].version);
	}
}

Test(http, router_errors)
{
	static const struct {
		const char *method, *target;
		int code, status;
		const char *allow;
	} bad[] = {
		{"GET", "/", -ENOENT, 404, NULL},
		{"GET", "/v2/", -ENOENT, 404, NULL},
		{"GET", "/v3", -ENOENT, 404, NULL},
		{"GET", "/v2/health", -ENOENT, 404, NULL},
		{"GET", "/v2/models", -ENOENT, 404, NULL},
		{"GET", "/v2/models//ready", -ENOENT, 404, NULL},
		{"GET", "/v2/models/x/versions", -ENOENT, 404, NULL},
		{"GET", "/v2/models/x/infer/more", -ENOENT, 404, NULL},
		{"GET", "/V2", -ENOENT, 404, NULL},
		{"GET", "/a/b/c/d/e/f/g/h/i/j", -ENOENT, 404, NULL},
		{"GET", "/v2/models/bert/infer", -EOPNOTSUPP, 405, "POST"},
		{"HEAD", "/v2/repository/index", -EOPNOTSUPP, 405, "POST"},
		{"POST", "/v2/health/live", -EOPNOTSUPP, 405, "GET, HEAD"},
		{"POST", "/metrics", -EOPNOTSUPP, 405, "GET, HEAD"},
		{"POST", "/v2/models/..%2f..%2fetc/infer", DPRT_EINPUT, 400, NULL},
		{"POST", "/v2/models/../infer", DPRT_EINPUT, 400, NULL},
		{"POST", "/v2/models/%2e/infer", DPRT_EINPUT, 400, NULL},
		{"POST", "/v2/models/a%0ab/infer", DPRT_EINPUT, 400, NULL},
		{"POST", "/v2/models/a%00b/infer", DPRT_EINPUT, 400, NULL},
		{"POST", "/v2/models/a%zz/infer", DPRT_EINPUT, 400, NULL},
		{"POST", "/v2/models/%ff%fe/infer", DPRT_EINPUT, 400, NULL},
		{"POST", "/v2/models/m/versions/123456789012345678901234567890123/infer",
		 DPRT_EINPUT, 400, NULL},
	};
	struct kserve_target t;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		cr_assert_eq(route(bad[i].method, bad[i].target, &t), bad[i].code, "%s %s",
			     bad[i].method, bad[i].target);
		cr_assert_eq(t.status, bad[i].status, "%s", bad[i].target);
		cr_assert_eq(t.route, KR_NONE);
		if (bad[i].allow)
			cr_assert_str_eq(t.allow, bad[i].allow);
		cr_assert_eq(kserve_http_status(bad[i].code), bad[i].status);
	}
}

Test(http, router_long_model_name)
{
	char target[256];
	struct kserve_target t;

	snprintf(target, sizeof(target), "/v2/models/%0*d/ready", NAME_LEN - 1, 7);
	cr_assert_eq(route("GET", target, &t), 0);
	cr_assert_eq(strlen(t.model), NAME_LEN - 1);
	snprintf(target, sizeof(target), "/v2/models/%0*d/ready", NAME_LEN, 7);
	cr_assert_eq(route("GET", target, &t), DPRT_EINPUT);
	cr_assert_eq(t.status, 400);
}
