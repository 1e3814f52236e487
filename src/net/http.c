/* SPDX-License-Identifier: MIT */
/*
 * HTTP/1.1 request parser (a byte-at-a-time state machine over the request
 * line and headers; the body is only counted) and response header writer.
 *
 * Every decision is taken at a byte position from the bytes before it, so
 * feeding a request in any number of pieces gives the same result, error
 * included, as feeding it at once.
 */
#include "net/http.h"

#include "base/base.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

enum parse_state {
	PS_START,    /* before the method; empty lines are skipped */
	PS_START_LF, /* CR of an empty line seen */
	PS_METHOD,
	PS_TARGET,
	PS_VERSION,
	PS_RL_LF,     /* CR after the version seen */
	PS_HDR_START, /* at the start of a header line */
	PS_HDR_NAME,
	PS_HDR_OWS, /* after the colon */
	PS_HDR_VALUE,
	PS_HDR_LF,	/* CR after a header value seen */
	PS_END_LF,	/* CR of the blank line seen */
	PS_BODY,	/* headers done; waiting for the body (chunked: a size line) */
	PS_CH_SIZE,	/* chunked: hex digits of a chunk size */
	PS_CH_EXT,	/* chunked: extensions after the size, up to CR */
	PS_CH_SIZE_LF,	/* chunked: CR after the size line seen */
	PS_CH_DATA,	/* chunked: the chunk's data */
	PS_CH_DATA_CR,	/* chunked: CR after the data expected */
	PS_CH_DATA_LF,	/* chunked: LF after the data expected */
	PS_CH_TRAILER,	/* chunked: at the start of a trailer line */
	PS_CH_FIELD,	/* chunked: a trailer field's name, up to ':' */
	PS_CH_VALUE,	/* chunked: a trailer field's value, up to CR */
	PS_CH_FIELD_LF, /* chunked: CR after a trailer field seen */
	PS_CH_END_LF,	/* chunked: CR of the last line seen */
	PS_DONE,	/* request returned; the next call starts a new one */
	PS_ERROR,
};

#define METHOD_MAX 16 /* a longer token is no method we implement */

/* RFC 9110 token characters. */
/* clang-format off */
static const bool tchar[256] = {
	['0' ... '9'] = true,
	['a' ... 'z'] = true,
	['A' ... 'Z'] = true,
	['!'] = true, ['#'] = true, ['$'] = true, ['%'] = true, ['&'] = true,
	['\''] = true, ['*'] = true, ['+'] = true, ['-'] = true, ['.'] = true,
	['^'] = true, ['_'] = true, ['`'] = true, ['|'] = true, ['~'] = true,
};
/* clang-format on */

static bool is_tchar(unsigned char c)
{
	return tchar[c];
}

static bool is_vchar(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e;
}

/* field-value characters other than blanks: VCHAR and obs-text */
static bool is_field(unsigned char c)
{
	return is_vchar(c) || c >= 0x80;
}

static int fail(struct http_req *r, int status, const char *why)
{
	r->status = (uint16_t)status;
	r->error = why;
	r->ps.state = PS_ERROR;
	return -EBADMSG;
}

static int next(struct http_req *r, enum parse_state st)
{
	r->ps.state = (uint8_t)st;
	return 0;
}

static bool slice_ieq(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && !strncasecmp(p, lit, n);
}

/* 1*DIGIT without sign or blanks; -1 if malformed or above UINT64_MAX. */
static int parse_u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (!n)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned d = (unsigned char)p[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* Does the comma-separated list p[0, n) hold the token tok (any case)? */
static bool list_has(const char *p, size_t n, const char *tok)
{
	size_t i = 0, b, e;

	while (i < n) {
		while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
			i++;
		b = i;
		while (i < n && p[i] != ',')
			i++;
		e = i;
		while (e > b && (p[e - 1] == ' ' || p[e - 1] == '\t'))
			e--;
		if (e > b && slice_ieq(p + b, e - b, tok))
			return true;
	}
	return false;
}

/* ---- request line ---- */

static int on_start(struct http_req *r, uint32_t i, unsigned char c)
{
	if (c == '\r')
		return next(r, PS_START_LF);
	if (!is_tchar(c))
		return fail(r, 400, "malformed request line");
	r->ps.mark = i;
	return next(r, PS_METHOD);
}

static int end_method(struct http_req *r, const char *m, size_t n)
{
	if (n == 3 && !memcmp(m, "GET", 3))
		r->method = HTTP_GET;
	else if (n == 4 && !memcmp(m, "HEAD", 4))
		r->method = HTTP_HEAD;
	else if (n == 4 && !memcmp(m, "POST", 4))
		r->method = HTTP_POST;
	else
		return fail(r, 501, "method not implemented");
	return next(r, PS_TARGET);
}

static int on_method(struct http_req *r, const char *buf, uint32_t i, unsigned char c)
{
	uint32_t n = i - r->ps.mark;

	if (c == ' ') {
		r->ps.mark = i + 1;
		return end_method(r, buf + i - n, n);
	}
	if (!is_tchar(c))
		return fail(r, 400, "malformed request line");
	if (n + 1 > METHOD_MAX)
		return fail(r, 501, "method not implemented");
	return 0;
}

/* origin-form ("/path?query") or absolute-form ("http://host/path") */
static bool target_form_ok(const char *t, size_t n)
{
	if (t[0] == '/')
		return true;
	return (n > 7 && !strncasecmp(t, "http://", 7)) ||
	       (n > 8 && !strncasecmp(t, "https://", 8));
}

static int on_target(struct http_req *r, const char *buf, uint32_t i, unsigned char c)
{
	struct http_pstate *ps = &r->ps;
	uint32_t n = i - ps->mark;

	if (c == ' ') {
		if (!n || !target_form_ok(buf + ps->mark, n))
			return fail(r, 400, "malformed request target");
		ps->tgt_off = ps->mark;
		ps->tgt_len = n;
		ps->vpos = 0;
		return next(r, PS_VERSION);
	}
	if (!is_vchar(c))
		return fail(r, 400, "malformed request target");
	if (n + 1 > r->lim.max_uri)
		return fail(r, 414, "request target too long");
	return 0;
}

static int end_version(struct http_req *r)
{
	if (r->ps.major != 1)
		return fail(r, 505, "HTTP version not supported");
	return next(r, PS_RL_LF);
}

/* "HTTP/" DIGIT "." DIGIT CR, one byte at a time */
static int on_version(struct http_req *r, unsigned char c)
{
	struct http_pstate *ps = &r->ps;
	uint8_t v = ps->vpos++;

	if (v < 5)
		return c == (unsigned char)"HTTP/"[v] ? 0 : fail(r, 400, "malformed HTTP version");
	if ((v == 5 || v == 7) && c >= '0' && c <= '9') {
		if (v == 5)
			ps->major = (uint8_t)(c - '0');
		else
			r->minor = c > '0';
		return 0;
	}
	if (v == 6 && c == '.')
		return 0;
	if (v == 8 && c == '\r')
		return end_version(r);
	return fail(r, 400, "malformed HTTP version");
}

/* ---- headers ---- */

static int hdr_content_length(struct http_req *r, const char *v, size_t n)
{
	struct http_pstate *ps = &r->ps;
	uint64_t cl;

	if (parse_u64(v, n, &cl))
		return fail(r, 400, "malformed Content-Length");
	if (ps->has_cl && cl != ps->content_length)
		return fail(r, 400, "conflicting Content-Length headers");
	ps->has_cl = true;
	ps->content_length = cl;
	return 0;
}

static int hdr_infer_len(struct http_req *r, const char *v, size_t n)
{
	uint64_t l;

	if (parse_u64(v, n, &l) || l > INT64_MAX)
		return fail(r, 400, "malformed Inference-Header-Content-Length");
	if (r->infer_header_len >= 0 && (uint64_t)r->infer_header_len != l)
		return fail(r, 400, "conflicting Inference-Header-Content-Length headers");
	r->infer_header_len = (int64_t)l;
	return 0;
}

static int hdr_expect(struct http_req *r, const char *v, size_t n)
{
	if (!r->minor)
		return 0;
	if (!slice_ieq(v, n, "100-continue"))
		return fail(r, 417, "unsupported expectation");
	r->expect_continue = true;
	return 0;
}

static int hdr_transfer_encoding(struct http_req *r, const char *v, size_t n)
{
	if (!slice_ieq(v, n, "chunked") || r->ps.has_te)
		return fail(r, 501, "transfer coding not supported (only chunked alone)");
	r->ps.has_te = true;
	return 0;
}

/* Act on the header just stored in ps->hdr[ps->n_headers - 1]. */
static int use_header(struct http_req *r, const char *buf)
{
	struct http_pstate *ps = &r->ps;
	uint32_t h = ps->n_headers - 1;
	const char *nm = buf + ps->hdr[h].name, *v = buf + ps->hdr[h].value;
	size_t nl = ps->hdr[h].name_len, vl = ps->hdr[h].value_len;

	switch (nl) { /* the length first: most headers are none of ours */
	case 4:
		if (slice_ieq(nm, nl, "host") && ++ps->n_host > 1)
			return fail(r, 400, "more than one Host header");
		break;
	case 6:
		if (slice_ieq(nm, nl, "expect"))
			return hdr_expect(r, v, vl);
		break;
	case 10:
		if (slice_ieq(nm, nl, "connection")) {
			ps->conn_close |= list_has(v, vl, "close");
			ps->conn_keep |= list_has(v, vl, "keep-alive");
		}
		break;
	case 12:
		if (slice_ieq(nm, nl, "content-type") && !ps->ctype_len) {
			ps->ctype_off = ps->hdr[h].value;
			ps->ctype_len = (uint32_t)vl;
		}
		break;
	case 14:
		if (slice_ieq(nm, nl, "content-length"))
			return hdr_content_length(r, v, vl);
		break;
	case 17:
		if (slice_ieq(nm, nl, "transfer-encoding"))
			return hdr_transfer_encoding(r, v, vl);
		break;
	case 31:
		if (slice_ieq(nm, nl, "inference-header-content-length"))
			return hdr_infer_len(r, v, vl);
		break;
	}
	return 0;
}

static int end_header(struct http_req *r, const char *buf)
{
	struct http_pstate *ps = &r->ps;
	uint32_t h = ps->n_headers++;

	ps->hdr[h].name = ps->mark;
	ps->hdr[h].name_len = ps->name_len;
	ps->hdr[h].value = ps->val_off;
	ps->hdr[h].value_len = ps->val_end - ps->val_off;
	if (use_header(r, buf))
		return -EBADMSG;
	return next(r, PS_HDR_START);
}

static int on_hdr_start(struct http_req *r, uint32_t i, unsigned char c)
{
	if (c == '\r')
		return next(r, PS_END_LF);
	if (c == ' ' || c == '\t')
		return fail(r, 400, "folded header line (obs-fold)");
	if (!is_tchar(c))
		return fail(r, 400, "malformed header name");
	if (r->ps.n_headers == HTTP_MAX_HEADERS)
		return fail(r, 431, "too many request headers");
	r->ps.mark = i;
	return next(r, PS_HDR_NAME);
}

static int on_hdr_name(struct http_req *r, uint32_t i, unsigned char c)
{
	if (c == ':') {
		r->ps.name_len = i - r->ps.mark;
		return next(r, PS_HDR_OWS);
	}
	return is_tchar(c) ? 0 : fail(r, 400, "malformed header name");
}

/* Value bytes; ows says whether we are still before the value. */
static int on_hdr_value(struct http_req *r, uint32_t i, unsigned char c, bool ows)
{
	struct http_pstate *ps = &r->ps;

	if (c == '\r') {
		if (ows)
			ps->val_off = ps->val_end = i;
		return next(r, PS_HDR_LF);
	}
	if (c == ' ' || c == '\t')
		return 0;
	if (!is_field(c))
		return fail(r, 400, "invalid character in header value");
	if (ows)
		ps->val_off = i;
	ps->val_end = i + 1;
	return next(r, PS_HDR_VALUE);
}

static int end_headers(struct http_req *r, uint32_t i)
{
	struct http_pstate *ps = &r->ps;

	if (r->minor && ps->n_host != 1)
		return fail(r, 400, "HTTP/1.1 request without a Host header");
	if (ps->has_cl && ps->has_te)
		return fail(r, 400, "both Content-Length and Transfer-Encoding");
	if (ps->has_cl && ps->content_length > r->lim.max_body)
		return fail(r, 413, "request body too large");
	if (r->minor)
		r->keep_alive = !ps->conn_close;
	else
		r->keep_alive = ps->conn_keep && !ps->conn_close;
	ps->hdr_end = i + 1;
	ps->cpos = ps->cline = ps->hdr_end;
	return next(r, PS_BODY);
}

static int expect_lf(struct http_req *r, unsigned char c, enum parse_state then)
{
	if (c != '\n')
		return fail(r, 400, "CR not followed by LF");
	return next(r, then);
}

static int step(struct http_req *r, const char *buf, uint32_t i)
{
	unsigned char c = (unsigned char)buf[i];

	switch (r->ps.state) {
	case PS_START:
		return on_start(r, i, c);
	case PS_START_LF:
		return expect_lf(r, c, PS_START);
	case PS_METHOD:
		return on_method(r, buf, i, c);
	case PS_TARGET:
		return on_target(r, buf, i, c);
	case PS_VERSION:
		return on_version(r, c);
	case PS_RL_LF:
		return expect_lf(r, c, PS_HDR_START);
	case PS_HDR_START:
		return on_hdr_start(r, i, c);
	case PS_HDR_NAME:
		return on_hdr_name(r, i, c);
	case PS_HDR_OWS:
		return on_hdr_value(r, i, c, true);
	case PS_HDR_VALUE:
		return on_hdr_value(r, i, c, false);
	case PS_HDR_LF:
		return c == '\n' ? end_header(r, buf) : fail(r, 400, "CR not followed by LF");
	case PS_END_LF:
		return c == '\n' ? end_headers(r, i) : fail(r, 400, "CR not followed by LF");
	}
	return fail(r, 500, "parser in a bad state");
}

/*
 * Fast path: skip the bytes from ps->pos (up to end) that step() would
 * accept without a state change, i.e. the inside of a target, a header name
 * or a header value. Returns the new position.
 */
static uint32_t skip_plain(struct http_req *r, const char *buf, size_t end)
{
	const unsigned char *p = (const unsigned char *)buf;
	struct http_pstate *ps = &r->ps;
	uint32_t i = ps->pos;

	switch (ps->state) {
	case PS_TARGET:
		end = MIN(end, (size_t)ps->mark + r->lim.max_uri);
		while (i < end && is_vchar(p[i]))
			i++;
		break;
	case PS_HDR_NAME:
		while (i < end && is_tchar(p[i]))
			i++;
		break;
	case PS_HDR_VALUE:
		while (i < end && is_field(p[i]))
			i++;
		if (i > ps->pos)
			ps->val_end = i;
		break;
	}
	return i;
}

/* ---- results ---- */

/* Past "http://host" or "https://host" of an absolute-form target. */
static const char *skip_authority(const char *t, const char *end)
{
	t += t[4] == ':' ? 7 : 8;
	while (t < end && *t != '/' && *t != '?')
		t++;
	return t;
}

/* Split the target into path and query; absolute-form loses scheme://host. */
static void split_target(struct http_req *r)
{
	const char *t = r->target.p, *end = t + r->target.len, *q;

	if (t[0] != '/')
		t = skip_authority(t, end);
	q = memchr(t, '?', (size_t)(end - t));
	if (t == end || t == q)
		r->path = (struct http_str){"/", 1};
	else
		r->path = (struct http_str){t, (size_t)((q ? q : end) - t)};
	if (q)
		r->query = (struct http_str){q + 1, (size_t)(end - q - 1)};
	else
		r->query = (struct http_str){end, 0};
}

/* ---- chunked bodies ---- */

#define CHUNK_LINE_MAX 1024 /* a chunk-size line with its extensions */

static ssize_t complete(struct http_req *r, const char *buf);

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A hex digit of the chunk size: the decoded total may not pass the limit. */
static int on_ch_size(struct http_req *r, unsigned char c)
{
	struct http_pstate *ps = &r->ps;
	int h = hexval(c);

	if (h >= 0) {
		if (ps->csize > (r->lim.max_body >> 4))
			return fail(r, 413, "request body too large");
		ps->csize = ps->csize << 4 | (uint64_t)h;
		if (r->body_len + ps->csize > r->lim.max_body)
			return fail(r, 413, "request body too large");
		return next(r, PS_CH_SIZE);
	}
	if (ps->state == PS_BODY)
		return fail(r, 400, "malformed chunk size");
	if (c == '\r')
		return next(r, PS_CH_SIZE_LF);
	if (c == ';' || c == ' ' || c == '\t')
		return next(r, PS_CH_EXT);
	return fail(r, 400, "malformed chunk size");
}

static int end_ch_size(struct http_req *r, unsigned char c, uint64_t i)
{
	struct http_pstate *ps = &r->ps;

	if (c != '\n')
		return fail(r, 400, "CR not followed by LF in chunked body");
	ps->cline = i + 1;
	if (!ps->csize)
		return next(r, PS_CH_TRAILER);
	r->body_len += ps->csize;
	ps->cleft = ps->csize;
	ps->csize = 0;
	return next(r, PS_CH_DATA);
}

static int on_ch_trailer(struct http_req *r, unsigned char c, uint64_t i)
{
	if (c == '\r')
		return next(r, PS_CH_END_LF);
	if (!is_tchar(c))
		return fail(r, 400, "malformed trailer field");
	r->ps.cline = i;
	return next(r, PS_CH_FIELD);
}

static int ch_expect(struct http_req *r, unsigned char c, unsigned char want, enum parse_state then)
{
	if (c != want)
		return fail(r, 400, "malformed chunked body");
	return next(r, then);
}

static int ch_step(struct http_req *r, unsigned char c, uint64_t i)
{
	switch (r->ps.state) {
	case PS_BODY:
	case PS_CH_SIZE:
		return on_ch_size(r, c);
	case PS_CH_EXT:
		if (c == '\r')
			return next(r, PS_CH_SIZE_LF);
		return c == '\t' || (c >= 0x20 && c != 0x7f) ?
			       0 :
			       fail(r, 400, "invalid character in a chunk extension");
	case PS_CH_SIZE_LF:
		return end_ch_size(r, c, i);
	case PS_CH_DATA_CR:
		return ch_expect(r, c, '\r', PS_CH_DATA_LF);
	case PS_CH_DATA_LF:
		r->ps.cline = i + 1;
		return ch_expect(r, c, '\n', PS_BODY);
	case PS_CH_TRAILER:
		return on_ch_trailer(r, c, i);
	case PS_CH_FIELD:
		if (c == ':')
			return next(r, PS_CH_VALUE);
		return is_tchar(c) ? 0 : fail(r, 400, "malformed trailer field");
	case PS_CH_VALUE:
		if (c == '\r')
			return next(r, PS_CH_FIELD_LF);
		return c == '\t' || (c >= 0x20 && c != 0x7f) ?
			       0 :
			       fail(r, 400, "invalid trailer field");
	case PS_CH_FIELD_LF:
		return ch_expect(r, c, '\n', PS_CH_TRAILER);
	}
	return fail(r, 500, "parser in a bad state");
}

/* The limits on the chunked framing, at position i. */
static int ch_limits(struct http_req *r, uint64_t i)
{
	struct http_pstate *ps = &r->ps;
	bool trailer = ps->state >= PS_CH_TRAILER;

	if (i - ps->hdr_end > 2 * r->lim.max_body + r->lim.max_header)
		return fail(r, 413, "chunked framing too large");
	if (ps->state <= PS_CH_SIZE_LF && i - ps->cline > CHUNK_LINE_MAX)
		return fail(r, 400, "chunk-size line too long");
	if (trailer && i - ps->cline > r->lim.max_header)
		return fail(r, 431, "trailer fields too large");
	return 0;
}

static ssize_t chunked(struct http_req *r, const char *buf, size_t len)
{
	struct http_pstate *ps = &r->ps;
	uint64_t n;

	while (ps->cpos < len) {
		if (ch_limits(r, ps->cpos))
			return -EBADMSG;
		if (ps->state == PS_CH_DATA) {
			n = MIN(ps->cleft, len - ps->cpos);
			ps->cpos += n;
			ps->cleft -= n;
			if (!ps->cleft)
				ps->state = PS_CH_DATA_CR;
			continue;
		}
		if (ps->state == PS_CH_END_LF) {
			if (buf[ps->cpos] != '\n')
				return fail(r, 400, "CR not followed by LF in chunked body");
			ps->cpos++;
			return complete(r, buf);
		}
		if (ch_step(r, (unsigned char)buf[ps->cpos], ps->cpos))
			return -EBADMSG;
		ps->cpos++;
	}
	return 0;
}

size_t http_dechunk(char *body, size_t len)
{
	size_t in = 0, out = 0, size;
	int h;

	while (in < len) {
		for (size = 0; in < len && (h = hexval((unsigned char)body[in])) >= 0; in++)
			size = size << 4 | (size_t)h;
		while (in < len && body[in] != '\n')
			in++;
		in++; /* past the LF of the size line */
		if (!size || in + size > len)
			break;
		memmove(body + out, body + in, size);
		out += size;
		in += size + 2; /* the data's CRLF */
	}
	return out;
}

static ssize_t complete(struct http_req *r, const char *buf)
{
	struct http_pstate *ps = &r->ps;

	ps->base = buf;
	r->target = (struct http_str){buf + ps->tgt_off, ps->tgt_len};
	split_target(r);
	r->content_type = (struct http_str){buf + ps->ctype_off, ps->ctype_len};
	if (ps->has_te) /* the wire bytes; the decoded length is r->body_len */
		ps->content_length = ps->cpos - ps->hdr_end;
	r->chunked = ps->has_te;
	r->body = (struct http_str){buf + ps->hdr_end, (size_t)ps->content_length};
	ps->state = PS_DONE;
	return (ssize_t)(ps->hdr_end + ps->content_length);
}

static void req_reset(struct http_req *r)
{
	struct http_limits lim = r->lim;

	memset(r, 0, offsetof(struct http_req, ps.hdr));
	r->lim = lim;
	r->infer_header_len = -1;
}

void http_req_init(struct http_req *r, const struct http_limits *lim)
{
	r->lim = *lim;
	req_reset(r);
}

ssize_t http_parse(struct http_req *r, const char *buf, size_t len)
{
	struct http_pstate *ps = &r->ps;

	if (ps->state == PS_DONE)
		req_reset(r);
	if (ps->state == PS_ERROR)
		return -EBADMSG;
	assert(len >= ps->pos);
	while (ps->state < PS_BODY) {
		ps->pos = skip_plain(r, buf, MIN(len, r->lim.max_header));
		if (ps->pos >= len)
			return 0;
		if (ps->pos >= r->lim.max_header)
			return fail(r, 431, "request headers too large");
		if (step(r, buf, ps->pos))
			return -EBADMSG;
		ps->pos++;
	}
	if (ps->has_te)
		return chunked(r, buf, len);
	if (len - ps->hdr_end < ps->content_length)
		return 0;
	return complete(r, buf);
}

bool http_need_continue(struct http_req *r)
{
	if (r->ps.state < PS_BODY || r->ps.state >= PS_DONE || !r->expect_continue ||
	    r->ps.continue_sent)
		return false;
	r->ps.continue_sent = true;
	return true;
}

uint64_t http_req_size(const struct http_req *r)
{
	if (r->ps.state < PS_BODY || r->ps.state == PS_ERROR)
		return 0;
	if (r->ps.has_te && r->ps.state != PS_DONE)
		return r->ps.cpos + r->ps.cleft + 4096;
	return r->ps.hdr_end + r->ps.content_length;
}

uint32_t http_header_count(const struct http_req *r)
{
	return r->ps.state == PS_DONE ? r->ps.n_headers : 0;
}

void http_header_at(const struct http_req *r, uint32_t i, struct http_str *name,
		    struct http_str *value)
{
	const struct http_pstate *ps = &r->ps;

	assert(ps->state == PS_DONE && i < ps->n_headers);
	*name = (struct http_str){ps->base + ps->hdr[i].name, ps->hdr[i].name_len};
	*value = (struct http_str){ps->base + ps->hdr[i].value, ps->hdr[i].value_len};
}

bool http_header(const struct http_req *r, const char *name, struct http_str *value)
{
	struct http_str n;
	uint32_t i;

	for (i = 0; i < http_header_count(r); i++) {
		http_header_at(r, i, &n, value);
		if (slice_ieq(n.p, n.len, name))
			return true;
	}
	return false;
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int http_pct_decode(const char *s, size_t len, char *out, size_t cap)
{
	size_t i, n = 0;
	int hi, lo;
	char c;

	for (i = 0; i < len; i++) {
		c = s[i];
		if (c == '%') {
			if (len - i < 3 || (hi = hex_val(s[i + 1])) < 0 ||
			    (lo = hex_val(s[i + 2])) < 0 || !(hi | lo))
				return -EINVAL;
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (!c) {
			return -EINVAL;
		}
		if (n + 1 >= cap)
			return -ENAMETOOLONG;
		out[n++] = c;
	}
	if (!cap)
		return -ENAMETOOLONG;
	out[n] = 0;
	return (int)n;
}

/* ---- responses ---- */

static const struct {
	uint16_t status;
	const char *reason;
} reasons[] = {
	{100, "Continue"},
	{200, "OK"},
	{201, "Created"},
	{202, "Accepted"},
	{204, "No Content"},
	{400, "Bad Request"},
	{403, "Forbidden"},
	{404, "Not Found"},
	{405, "Method Not Allowed"},
	{408, "Request Timeout"},
	{409, "Conflict"},
	{411, "Length Required"},
	{413, "Content Too Large"},
	{414, "URI Too Long"},
	{415, "Unsupported Media Type"},
	{417, "Expectation Failed"},
	{422, "Unprocessable Content"},
	{429, "Too Many Requests"},
	{431, "Request Header Fields Too Large"},
	{500, "Internal Server Error"},
	{501, "Not Implemented"},
	{503, "Service Unavailable"},
	{504, "Gateway Timeout"},
	{505, "HTTP Version Not Supported"},
	{507, "Insufficient Storage"},
};

const char *http_reason(int status)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(reasons); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "Unknown";
}

struct wbuf {
	char *p;
	size_t len, cap;
	bool full;
};

static void put(struct wbuf *w, const char *s)
{
	size_t n = strlen(s);

	if (w->full || w->cap - w->len < n) {
		w->full = true;
		return;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

static void put_u64(struct wbuf *w, uint64_t v)
{
	char tmp[24];
	int i = (int)sizeof(tmp) - 1;

	tmp[i] = 0;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(w, tmp + i);
}

int http_write_response(char *buf, size_t cap, int status, const char *content_type,
			const char *extra_headers, uint64_t body_len, bool keep_alive)
{
	struct wbuf w = {buf, 0, cap, false};

	if (status < 100 || status > 999)
		return -EINVAL;
	put(&w, "HTTP/1.1 ");
	put_u64(&w, (uint64_t)status);
	put(&w, " ");
	put(&w, http_reason(status));
	put(&w, "\r\nServer: dprt\r\n");
	if (content_type) {
		put(&w, "Content-Type: ");
		put(&w, content_type);
		put(&w, "\r\n");
	}
	if (status >= 200 && status != 204) {
		put(&w, "Content-Length: ");
		put_u64(&w, body_len);
		put(&w, "\r\n");
	}
	put(&w, keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
	if (extra_headers)
		put(&w, extra_headers);
	put(&w, "\r\n");
	return w.full ? -ENOSPC : (int)w.len;
}

/* ---- Accept-Encoding ---- */

enum { AC_GZIP, AC_DEFLATE, AC_IDENTITY, AC_STAR, AC_N };

/* Weights in thousandths of the codings listed so far; -1: no entry. */
struct accept_q {
	int q[AC_N];
};

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in
 * thousandths; -1 if malformed. */
static int parse_qvalue(const char *p, size_t n)
{
	int q, scale = 100;
	size_t i;

	if (!n || (p[0] != '0' && p[0] != '1') || n > 5 || (n > 1 && p[1] != '.'))
		return -1;
	q = (p[0] - '0') * 1000;
	for (i = 2; i < n; i++, scale /= 10) {
		if (p[i] < '0' || p[i] > '9' || (q == 1000 && p[i] != '0'))
			return -1;
		q += (p[i] - '0') * scale;
	}
	return q;
}

/* The entry's parameters at p[*i]: its q (1000 without one), -1 if bad.
 * Advances *i to the ',' that ends the entry, or to n. */
static int entry_weight(const char *p, size_t n, size_t *i)
{
	int q = 1000;
	size_t b;

	while (*i < n && p[*i] != ',') {
		while (*i < n && is_ows(p[*i]))
			(*i)++;
		if (*i == n || p[*i] == ',')
			break;
		if (p[*i] != ';')
			q = -1; /* junk after the coding */
		(*i)++;
		while (*i < n && is_ows(p[*i]))
			(*i)++;
		b = *i;
		while (*i < n && p[*i] != ',' && p[*i] != ';' && !is_ows(p[*i]))
			(*i)++;
		if (*i - b >= 2 && (p[b] | 0x20) == 'q' && p[b + 1] == '=' && q >= 0)
			q = parse_qvalue(p + b + 2, *i - b - 2);
	}
	return q;
}

static void accept_add(struct accept_q *a, const char *p, size_t n)
{
	static const struct {
		const char *name;
		int k;
	} names[] = {{"gzip", AC_GZIP},
		     {"x-gzip", AC_GZIP},
		     {"deflate", AC_DEFLATE},
		     {"identity", AC_IDENTITY},
		     {"*", AC_STAR}};
	size_t i = 0, b, k, j;
	int q;

	while (i < n) {
		while (i < n && (is_ows(p[i]) || p[i] == ','))
			i++;
		b = i;
		while (i < n && is_tchar((unsigned char)p[i]))
			i++;
		k = i - b;
		q = entry_weight(p, n, &i);
		if (!k || q < 0)
			continue;
		for (j = 0; j < ARRAY_SIZE(names); j++)
			if (slice_ieq(p + b, k, names[j].name))
				a->q[names[j].k] = MAX(a->q[names[j].k], q);
	}
}

static void accept_resolve(const struct accept_q *a, struct http_accept *out)
{
	int star = a->q[AC_STAR];
	int g = a->q[AC_GZIP] >= 0 ? a->q[AC_GZIP] : star;
	int d = a->q[AC_DEFLATE] >= 0 ? a->q[AC_DEFLATE] : star;
	int id = a->q[AC_IDENTITY] >= 0 ? a->q[AC_IDENTITY] : star;
	int best = MAX(g, d);

	out->identity_ok = id != 0;
	out->coding = HTTP_IDENTITY;
	if (best > 0 && best >= id)
		out->coding = g >= d ? HTTP_GZIP : HTTP_DEFLATE;
}

void http_accept_parse(const char *s, size_t len, struct http_accept *a)
{
	struct accept_q q = {{-1, -1, -1, -1}};

	accept_add(&q, s, len);
	accept_resolve(&q, a);
	a->present = true;
}

void http_accept_encoding(const struct http_req *r, struct http_accept *a)
{
	struct accept_q q = {{-1, -1, -1, -1}};
	struct http_str n, v;
	uint32_t i;

	a->present = false;
	for (i = 0; i < http_header_count(r); i++) {
		http_header_at(r, i, &n, &v);
		if (!slice_ieq(n.p, n.len, "accept-encoding"))
			continue;
		accept_add(&q, v.p, v.len);
		a->present = true;
	}
	accept_resolve(&q, a);
}

/* Where the line starting with lit is in buf[0, n) (after a CRLF), or n. */
static size_t find_line(const char *buf, size_t n, const char *lit)
{
	size_t k = strlen(lit), i;

	for (i = 0; i + 2 + k <= n; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n' && !memcmp(buf + i + 2, lit, k))
			return i + 2;
	return n;
}

int http_head_rewrite(char *buf, size_t hlen, size_t cap, uint64_t body_len, const char *extra)
{
	char tmp[24 + sizeof("Content-Length: \r\n")];
	size_t cl = find_line(buf, hlen, "Content-Length: "), end, xl = extra ? strlen(extra) : 0;
	struct wbuf w = {tmp, 0, sizeof(tmp), false};

	if (cl == hlen || hlen < 4 || memcmp(buf + hlen - 4, "\r\n\r\n", 4))
		return -EINVAL;
	for (end = cl; end + 1 < hlen && buf[end] != '\r'; end++)
		;
	end += 2; /* past the line's CRLF */
	put(&w, "Content-Length: ");
	put_u64(&w, body_len);
	put(&w, "\r\n");
	if (hlen - (end - cl) + w.len + xl > cap)
		return -ENOSPC;
	memmove(buf + cl + w.len, buf + end, hlen - end);
	memcpy(buf + cl, tmp, w.len);
	hlen = hlen - (end - cl) + w.len;
	memcpy(buf + hlen - 2, extra ? extra : "", xl);
	memcpy(buf + hlen - 2 + xl, "\r\n", 2);
	return (int)(hlen + xl);
}
