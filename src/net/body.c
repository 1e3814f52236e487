/* SPDX-License-Identifier: MIT */
/*
 * net/body: a complete request's body made plain before dispatch, and the
 * response's body compressed before it is sent. A chunked body is decoded
 * in place in the receive buffer; a body with Content-Encoding gzip
 * (x-gzip) or deflate is inflated with zlib into the connection's zbuf, at
 * most --max-body bytes (more: 413, so a small bomb costs at most the
 * limit); identity is nothing to do; any other coding is 415.
 *
 * A response body of at least BODY_ZMIN bytes (any size when the client
 * refuses identity) goes out gzip- or deflate-coded when Accept-Encoding
 * prefers one (http_accept_encoding), with Vary: Accept-Encoding on every
 * response to a request that had the header. One raw deflate stream per
 * connection, made at its first compressed response and reset for each
 * next one, writes into the connection's cbuf; the gzip or zlib wrapper
 * around it is written here, so one stream serves both codings. Headers
 * that describe the uncoded body stay as they were
 * (Inference-Header-Content-Length counts the JSON before coding, as
 * Triton's clients read it). Loop thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "net/internal.h"

#define ZBUF_MIN (64u << 10)
#define BODY_ZMIN 1024u		 /* smaller response bodies go out as they are */
#define BODY_ZMAX (256ull << 20) /* larger ones too: the loop would stall */
#define BODY_ZLEVEL Z_BEST_SPEED /* on the loop thread: speed over ratio */
#define BODY_ZWRAP 18u		 /* gzip's header and trailer, at most */
#define VARY "Vary: Accept-Encoding\r\n"

static bool str_ieq(const struct http_str *s, const char *lit)
{
	return s->len == strlen(lit) && !strncasecmp(s->p, lit, s->len);
}

/* Room for more output: *buf grown, up to max + 1 bytes. */
static int out_more(char **buf, size_t *cap, uint64_t max)
{
	uint64_t want = MAX((uint64_t)*cap * 2, ZBUF_MIN);

	return buf_grow(buf, cap, (size_t)MIN(want, max + 1));
}

int body_inflate(const void *in, size_t n, int wbits, uint64_t max, char **buf, size_t *cap,
		 size_t *out)
{
	z_stream zs;
	int zr = Z_OK, ret = 0;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, wbits) != Z_OK)
		return -ENOMEM;
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)n;
	while (zr != Z_STREAM_END) {
		if (zs.total_out == *cap && (zs.total_out > max || out_more(buf, cap, max))) {
			ret = zs.total_out > max ? -E2BIG : -ENOMEM;
			break;
		}
		zs.next_out = (Bytef *)*buf + zs.total_out;
		zs.avail_out = (uInt)(*cap - zs.total_out);
		zr = inflate(&zs, Z_NO_FLUSH);
		if ((zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) ||
		    (zr == Z_BUF_ERROR && !zs.avail_in) || (zr == Z_STREAM_END && zs.avail_in)) {
			ret = -EBADMSG;
			break;
		}
	}
	if (!ret && zs.total_out > max)
		ret = -E2BIG;
	*out = zs.total_out;
	inflateEnd(&zs);
	return ret;
}

/* Inflate body into c->zbuf; wbits as inflateInit2's. 0 or a status. */
static int inflate_body(struct conn *c, int wbits, const char **why)
{
	size_t n;
	int ret = body_inflate(c->req.body.p, c->req.body.len, wbits, c->srv->lim.max_body,
			       &c->zbuf, &c->zcap, &n);

	if (!ret) {
		c->req.body = (struct http_str){c->zbuf, n};
		return 0;
	}
	if (ret == -E2BIG)
		*why = "decompressed request body too large";
	else if (ret == -EBADMSG)
		*why = "malformed compressed request body";
	else
		*why = "out of memory";
	return ret == -E2BIG ? 413 : ret == -EBADMSG ? 400 : 500;
}

int body_decode(struct conn *c, const char **why)
{
	struct http_str enc;
	char *p;

	if (c->req.chunked) {
		p = c->rbuf + (c->req.body.p - c->rbuf);
		c->req.body.len = http_dechunk(p, c->req.body.len);
	}
	if (!http_header(&c->req, "content-encoding", &enc) || str_ieq(&enc, "identity"))
		return 0;
	if (str_ieq(&enc, "gzip") || str_ieq(&enc, "x-gzip"))
		return c->req.body.len ? inflate_body(c, 16 + MAX_WBITS, why) : 0;
	if (str_ieq(&enc, "deflate"))
		return c->req.body.len ? inflate_body(c, MAX_WBITS, why) : 0;
	*why = "unsupported Content-Encoding (gzip, deflate and identity are)";
	return 415;
}

/* ------------------------------------------------------------ responses */

void body_fini(struct conn *c)
{
	if (!c->zs)
		return;
	deflateEnd(c->zs);
	free(c->zs);
	c->zs = NULL;
}

/* The connection's deflate stream, reset; NULL if it cannot be made. */
static z_stream *zs_get(struct conn *c)
{
	if (c->zs)
		return deflateReset(c->zs) == Z_OK ? c->zs : NULL;
	c->zs = calloc(1, sizeof(*c->zs));
	if (!c->zs)
		return NULL;
	if (deflateInit2(c->zs, BODY_ZLEVEL, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK)
		return c->zs;
	free(c->zs);
	c->zs = NULL;
	return NULL;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Deflate the n pieces of iov into zs, after the wrapper's header of hl
 * bytes in c->cbuf; the checksum of the coding in *sum. 0 or -1. */
static int deflate_iov(z_stream *zs, const struct iovec *iov, uint32_t n, bool gzip, uLong *sum)
{
	uint32_t i;
	int zr = Z_OK;

	*sum = gzip ? crc32(0, Z_NULL, 0) : adler32(0, Z_NULL, 0);
	for (i = 0; i < n; i++) {
		zs->next_in = (Bytef *)iov[i].iov_base;
		zs->avail_in = (uInt)iov[i].iov_len;
		*sum = gzip ? crc32(*sum, zs->next_in, zs->avail_in) :
			      adler32(*sum, zs->next_in, zs->avail_in);
		zr = deflate(zs, i + 1 == n ? Z_FINISH : Z_NO_FLUSH);
		if (zr == Z_STREAM_ERROR || zs->avail_in)
			return -1;
	}
	return zr == Z_STREAM_END ? 0 : -1;
}

/* Compress c->iov[1, 1 + n) of total bytes into c->cbuf; its length, or
 * 0 when it cannot be done. */
static size_t compress_body(struct conn *c, uint32_t n, uint64_t total, bool gzip)
{
	static const uint8_t gz_head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
	z_stream *zs = zs_get(c);
	uint8_t *p;
	size_t hl = gzip ? sizeof(gz_head) : 2;
	uLong sum;

	if (!zs || buf_grow(&c->cbuf, &c->ccap, deflateBound(zs, (uLong)total) + BODY_ZWRAP))
		return 0;
	p = (uint8_t *)c->cbuf;
	if (gzip)
		memcpy(p, gz_head, hl);
	else
		memcpy(p, "\x78\x01", 2); /* deflate, 32 KiB window, fastest */
	zs->next_out = p + hl;
	zs->avail_out = (uInt)(c->ccap - hl - 8);
	if (deflate_iov(zs, c->iov + 1, n, gzip, &sum))
		return 0;
	p = zs->next_out;
	if (gzip) {
		put_le32(p, (uint32_t)sum);
		put_le32(p + 4, (uint32_t)total);
		p += 8;
	} else {
		*p++ = (uint8_t)(sum >> 24);
		*p++ = (uint8_t)(sum >> 16);
		*p++ = (uint8_t)(sum >> 8);
		*p++ = (uint8_t)sum;
	}
	return (size_t)(p - (uint8_t *)c->cbuf);
}

uint32_t body_encode(struct conn *c, int status, size_t *hlen, uint32_t n_body)
{
	static const char *const extra[] = {
		[HTTP_IDENTITY] = VARY,
		[HTTP_GZIP] = "Content-Encoding: gzip\r\n" VARY,
		[HTTP_DEFLATE] = "Content-Encoding: deflate\r\n" VARY,
	};
	struct http_accept a;
	uint64_t total = 0;
	uint8_t coding;
	uint32_t i;
	size_t zl = 0;
	int n;

	if (!c->req_len || status < 200 || status == 204 || status == 304)
		return n_body;
	http_accept_encoding(&c->req, &a);
	if (!a.present)
		return n_body;
	for (i = 0; i < n_body; i++)
		total += c->iov[1 + i].iov_len;
	coding = a.coding;
	if (!total || total > BODY_ZMAX || (total < BODY_ZMIN && a.identity_ok) ||
	    *hlen + strlen(extra[coding]) + 24 > sizeof(c->head))
		coding = HTTP_IDENTITY;
	if (coding != HTTP_IDENTITY && !(zl = compress_body(c, n_body, total, coding == HTTP_GZIP)))
		coding = HTTP_IDENTITY;
	n = http_head_rewrite(c->head, *hlen, sizeof(c->head), zl ? zl : total, extra[coding]);
	if (n < 0)
		return n_body; /* no room for Vary: the head as it was */
	*hlen = (size_t)n;
	if (!zl)
		return n_body;
	c->iov[1] = (struct iovec){c->cbuf, zl};
	return 1;
}
