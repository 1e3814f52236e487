/* SPDX-License-Identifier: MIT */
/*
 * net/body: a complete request's body made plain before dispatch. A chunked
 * body is decoded in place in the receive buffer; a body with
 * Content-Encoding gzip (x-gzip) or deflate is inflated with zlib into the
 * connection's zbuf, at most --max-body bytes (more: 413, so a small bomb
 * costs at most the limit); identity is nothing to do; any other coding
 * is 415. Loop thread.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "net/internal.h"

#define ZBUF_MIN (64u << 10)

static bool str_ieq(const struct http_str *s, const char *lit)
{
	return s->len == strlen(lit) && !strncasecmp(s->p, lit, s->len);
}

/* Room for more output: zbuf grown, up to max_body + 1 bytes. */
static int zbuf_more(struct conn *c, uint64_t max)
{
	uint64_t want = MAX((uint64_t)c->zcap * 2, ZBUF_MIN);

	return buf_grow(&c->zbuf, &c->zcap, (size_t)MIN(want, max + 1));
}

/* Inflate body into c->zbuf; wbits as inflateInit2's. 0 or a status. */
static int inflate_body(struct conn *c, int wbits, const char **why)
{
	uint64_t max = c->srv->lim.max_body;
	z_stream zs;
	int zr = Z_OK, status = 0;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, wbits) != Z_OK) {
		*why = "cannot start decompressing";
		return 500;
	}
	zs.next_in = (Bytef *)c->req.body.p;
	zs.avail_in = (uInt)c->req.body.len;
	while (zr != Z_STREAM_END) {
		if (zs.total_out == c->zcap && (zs.total_out > max || zbuf_more(c, max))) {
			status = zs.total_out > max ? 413 : 500;
			*why = status == 413 ? "decompressed request body too large" :
					       "out of memory";
			break;
		}
		zs.next_out = (Bytef *)c->zbuf + zs.total_out;
		zs.avail_out = (uInt)(c->zcap - zs.total_out);
		zr = inflate(&zs, Z_NO_FLUSH);
		if ((zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) ||
		    (zr == Z_BUF_ERROR && !zs.avail_in) || (zr == Z_STREAM_END && zs.avail_in)) {
			status = 400;
			*why = "malformed compressed request body";
			break;
		}
	}
	if (!status && zs.total_out > max) {
		status = 413;
		*why = "decompressed request body too large";
	}
	if (!status)
		c->req.body = (struct http_str){c->zbuf, zs.total_out};
	inflateEnd(&zs);
	return status;
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
