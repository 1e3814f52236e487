/* SPDX-License-Identifier: MIT */
/* Accept-Encoding, head rewriting and compressed response bodies (body.c). */
#include <criterion/criterion.h>

#include "net/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- Accept-Encoding ---- */

/* The coding and identity verdict of one Accept-Encoding value. */
static void expect_accept(const char *v, int coding, bool identity_ok)
{
	struct http_accept a;

	http_accept_parse(v, strlen(v), &a);
	cr_assert(a.present);
	cr_assert_eq(a.coding, coding, "'%s': coding %d, expected %d", v, a.coding, coding);
	cr_assert_eq(a.identity_ok, identity_ok, "'%s': identity_ok %d, expected %d", v,
		     a.identity_ok, identity_ok);
}

Test(body, accept_encoding_codings)
{
	expect_accept("gzip", HTTP_GZIP, true);
	expect_accept("x-gzip", HTTP_GZIP, true);
	expect_accept("GZip", HTTP_GZIP, true);
	expect_accept("deflate", HTTP_DEFLATE, true);
	expect_accept("deflate, gzip", HTTP_GZIP, true); /* a tie: gzip */
	expect_accept("gzip, deflate, br", HTTP_GZIP, true);
	expect_accept("br", HTTP_IDENTITY, true);
	expect_accept("", HTTP_IDENTITY, true); /* empty: no coding wanted */
	expect_accept("identity", HTTP_IDENTITY, true);
	expect_accept("*", HTTP_GZIP, true);
	expect_accept(" ,, gzip ,", HTTP_GZIP, true);
}

Test(body, accept_encoding_weights)
{
	expect_accept("gzip;q=0.5, deflate", HTTP_DEFLATE, true);
	expect_accept("gzip;q=0.5, deflate;q=0.499", HTTP_GZIP, true);
	expect_accept("gzip ; q=0.8 , deflate;Q=0.9", HTTP_DEFLATE, true);
	expect_accept("gzip;q=0", HTTP_IDENTITY, true);
	expect_accept("gzip;q=0.000", HTTP_IDENTITY, true);
	expect_accept("gzip;q=0.", HTTP_IDENTITY, true);
	expect_accept("gzip;q=1.000", HTTP_GZIP, true);
	expect_accept("gzip;q=0.001", HTTP_GZIP, true); /* identity has no entry */
	expect_accept("identity;q=1, gzip;q=0.5", HTTP_IDENTITY, true);
	expect_accept("identity;q=0.5, gzip;q=0.5", HTTP_GZIP, true);
	expect_accept("gzip;level=1;q=0.3", HTTP_GZIP, true); /* other parameters */
	/* malformed weights make the entry void */
	expect_accept("gzip;q=2", HTTP_IDENTITY, true);
	expect_accept("gzip;q=1.5", HTTP_IDENTITY, true);
	expect_accept("gzip;q=0.1234", HTTP_IDENTITY, true);
	expect_accept("gzip;q=", HTTP_IDENTITY, true);
	expect_accept("gzip;q=abc, deflate", HTTP_DEFLATE, true);
	expect_accept("gzip junk", HTTP_IDENTITY, true);
}

Test(body, accept_encoding_star_and_identity)
{
	expect_accept("*;q=0", HTTP_IDENTITY, false);
	expect_accept("*;q=0, identity", HTTP_IDENTITY, true);
	expect_accept("*;q=0, gzip", HTTP_GZIP, false);
	expect_accept("identity;q=0", HTTP_IDENTITY, false);
	expect_accept("identity;q=0, deflate", HTTP_DEFLATE, false);
	expect_accept("*;q=0.5, gzip;q=0", HTTP_DEFLATE, true);
	expect_accept("*, gzip;q=0, deflate;q=0", HTTP_IDENTITY, true);
	expect_accept("*, identity;q=0", HTTP_GZIP, false);
}

/* Every Accept-Encoding field of a request counts, as one list. */
Test(body, accept_encoding_fields)
{
	static const struct http_limits lim = {1024, 256, 4096};
	const char *q = "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip;q=0.1\r\n"
			"X: y\r\naccept-encoding: deflate;q=0.2\r\n\r\n";
	struct http_accept a;
	struct http_req r;

	http_req_init(&r, &lim);
	cr_assert_eq(http_parse(&r, q, strlen(q)), (ssize_t)strlen(q));
	http_accept_encoding(&r, &a);
	cr_assert(a.present && a.identity_ok);
	cr_assert_eq(a.coding, HTTP_DEFLATE);
	q = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	http_req_init(&r, &lim);
	cr_assert_eq(http_parse(&r, q, strlen(q)), (ssize_t)strlen(q));
	http_accept_encoding(&r, &a);
	cr_assert(!a.present);
	cr_assert_eq(a.coding, HTTP_IDENTITY);
}

/* ---- head rewriting ---- */

Test(body, head_rewrite)
{
	char buf[160];
	int n = http_write_response(buf, sizeof(buf), 200, "application/json", "X-A: 1\r\n", 123456,
				    true);

	cr_assert_gt(n, 0);
	n = http_head_rewrite(buf, (size_t)n, sizeof(buf), 7, "Content-Encoding: gzip\r\n");
	cr_assert_gt(n, 0);
	buf[n] = 0;
	cr_assert_str_eq(buf,
			 "HTTP/1.1 200 OK\r\nServer: dprt\r\nContent-Type: application/json\r\n"
			 "Content-Length: 7\r\nConnection: keep-alive\r\nX-A: 1\r\n"
			 "Content-Encoding: gzip\r\n\r\n");
	n = http_head_rewrite(buf, (size_t)n, sizeof(buf), 98765432101ull, NULL);
	buf[n] = 0;
	cr_assert(strstr(buf, "\r\nContent-Length: 98765432101\r\nConnection: keep-alive\r\n"));
	cr_assert_eq(http_head_rewrite(buf, (size_t)n, (size_t)n + 10, 1,
				       "A-Long-Header: more than ten bytes\r\n"),
		     -ENOSPC);
	cr_assert(strstr(buf, "98765432101"), "unchanged after -ENOSPC");
	n = http_write_response(buf, sizeof(buf), 204, NULL, NULL, 0, true);
	cr_assert_eq(http_head_rewrite(buf, (size_t)n, sizeof(buf), 1, NULL), -EINVAL);
}

/* ---- compressed responses ---- */

static struct conn *conn;
static const struct http_limits lim = {.max_header = 4096, .max_uri = 256, .max_body = 1 << 20};
static char req_buf[1024];
static char body[3][40000];

static void setup(void)
{
	uint32_t i, j;

	conn = calloc(1, sizeof(*conn));
	cr_assert(conn);
	for (i = 0; i < 3; i++)
		for (j = 0; j < sizeof(body[i]); j++)
			body[i][j] = (char)("0123456789.,"[(j * 7 + i) % 12]);
}

static void teardown(void)
{
	body_fini(conn);
	free(conn->cbuf);
	free(conn);
}

TestSuite(body, .init = setup, .fini = teardown);

/* Parse a GET with the header lines hdrs into conn->req (complete). */
static void request(const char *hdrs)
{
	int n = snprintf(req_buf, sizeof(req_buf), "GET /x HTTP/1.1\r\nHost: a\r\n%s\r\n", hdrs);
	ssize_t k;

	http_req_init(&conn->req, &lim);
	k = http_parse(&conn->req, req_buf, (size_t)n);
	cr_assert_eq(k, n);
	conn->req_len = (size_t)k;
}

/* A 200 head for len bytes in conn->head; its length. */
static size_t head(uint64_t len)
{
	int n = http_write_response(conn->head, sizeof(conn->head), 200, "application/json",
				    "Inference-Header-Content-Length: 77\r\n", len, true);

	cr_assert_gt(n, 0);
	return (size_t)n;
}

/* Content-Length of conn->head[0, hl). */
static uint64_t head_length(size_t hl)
{
	char tmp[sizeof(conn->head) + 1];
	const char *p;

	memcpy(tmp, conn->head, hl);
	tmp[hl] = 0;
	p = strstr(tmp, "\r\nContent-Length: ");
	cr_assert(p);
	return strtoull(p + 18, NULL, 10);
}

static bool head_has(size_t hl, const char *line)
{
	char tmp[sizeof(conn->head) + 1];

	memcpy(tmp, conn->head, hl);
	tmp[hl] = 0;
	return strstr(tmp, line) != NULL;
}

/* Inflate conn->iov[1] (wbits as inflateInit2's) and compare it with the
 * n pieces of body, each len bytes. */
static void expect_inflates(int wbits, uint32_t n, size_t len)
{
	static char out[sizeof(body) + 1];
	z_stream zs;

	memset(&zs, 0, sizeof(zs));
	cr_assert_eq(inflateInit2(&zs, wbits), Z_OK);
	zs.next_in = conn->iov[1].iov_base;
	zs.avail_in = (uInt)conn->iov[1].iov_len;
	zs.next_out = (Bytef *)out;
	zs.avail_out = sizeof(out);
	cr_assert_eq(inflate(&zs, Z_FINISH), Z_STREAM_END, "%s", zs.msg ? zs.msg : "");
	cr_assert_eq(zs.avail_in, 0, "bytes after the stream");
	cr_assert_eq(zs.total_out, (uLong)n * len);
	for (uint32_t i = 0; i < n; i++)
		cr_assert(!memcmp(out + i * len, body[i], len), "piece %u differs", i);
	inflateEnd(&zs);
}

/* n pieces of body, len bytes each, into conn->iov[1..n]; the total. */
static uint64_t pieces(uint32_t n, size_t len)
{
	for (uint32_t i = 0; i < n; i++)
		conn->iov[1 + i] = (struct iovec){body[i], len};
	return (uint64_t)n * len;
}

Test(body, gzip_response_of_pieces)
{
	uint64_t total;
	size_t hl;

	request("Accept-Encoding: gzip, deflate\r\n");
	total = pieces(3, sizeof(body[0]));
	hl = head(total);
	cr_assert_eq(body_encode(conn, 200, &hl, 3), 1);
	cr_assert_lt(conn->iov[1].iov_len, total / 2, "text compresses");
	cr_assert_eq(head_length(hl), conn->iov[1].iov_len);
	cr_assert(head_has(hl, "\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n\r\n"));
	cr_assert(head_has(hl, "\r\nInference-Header-Content-Length: 77\r\n"), "kept as it was");
	expect_inflates(16 + MAX_WBITS, 3, sizeof(body[0]));
}

Test(body, deflate_is_zlib_and_the_stream_is_reused)
{
	void *zs;
	size_t hl;

	request("Accept-Encoding: deflate\r\n");
	hl = head(pieces(2, 5000));
	cr_assert_eq(body_encode(conn, 200, &hl, 2), 1);
	cr_assert(head_has(hl, "\r\nContent-Encoding: deflate\r\n"));
	expect_inflates(MAX_WBITS, 2, 5000);
	zs = conn->zs;
	request("Accept-Encoding: gzip\r\n");
	hl = head(pieces(1, 3000));
	cr_assert_eq(body_encode(conn, 200, &hl, 1), 1);
	cr_assert_eq(conn->zs, zs, "one deflate stream per connection");
	expect_inflates(16 + MAX_WBITS, 1, 3000);
}

Test(body, identity_cases)
{
	size_t hl, hl0;

	/* no Accept-Encoding: nothing changes */
	request("");
	hl0 = hl = head(pieces(2, 5000));
	cr_assert_eq(body_encode(conn, 200, &hl, 2), 2);
	cr_assert_eq(hl, hl0);
	cr_assert(!head_has(hl, "Vary"));
	cr_assert_null(conn->zs);
	/* tiny bodies go as they are, with Vary */
	request("Accept-Encoding: gzip\r\n");
	hl = head(pieces(1, 1000));
	cr_assert_eq(body_encode(conn, 200, &hl, 1), 1);
	cr_assert_eq(conn->iov[1].iov_base, body[0]);
	cr_assert_eq(head_length(hl), 1000);
	cr_assert(head_has(hl, "\r\nVary: Accept-Encoding\r\n\r\n"));
	cr_assert(!head_has(hl, "Content-Encoding"));
	/* ... unless identity is refused */
	request("Accept-Encoding: gzip, identity;q=0\r\n");
	hl = head(pieces(1, 100));
	cr_assert_eq(body_encode(conn, 200, &hl, 1), 1);
	cr_assert(head_has(hl, "Content-Encoding: gzip"));
	expect_inflates(16 + MAX_WBITS, 1, 100);
	/* identity preferred, or no coding of ours */
	request("Accept-Encoding: br, gzip;q=0\r\n");
	hl = head(pieces(2, 5000));
	cr_assert_eq(body_encode(conn, 200, &hl, 2), 2);
	cr_assert_eq(head_length(hl), 10000);
	cr_assert(!head_has(hl, "Content-Encoding"));
	/* a request that did not parse (an error answer): nothing */
	request("Accept-Encoding: gzip\r\n");
	conn->req_len = 0;
	hl0 = hl = head(pieces(2, 5000));
	cr_assert_eq(body_encode(conn, 400, &hl, 2), 2);
	cr_assert_eq(hl, hl0);
}
