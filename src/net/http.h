/* SPDX-License-Identifier: MIT */
/*
 * net/http: HTTP/1.1 request parser and response header writer.
 *
 * The parser is incremental and zero-copy: it runs over a connection's
 * receive buffer, which the caller grows as bytes arrive, and returns
 * "need more", "complete (N bytes consumed)" or an error carrying the status
 * to answer. Between calls it keeps only offsets, so the caller may move the
 * buffer (realloc, compaction) as long as the request still starts at buf[0].
 * It knows nothing of sockets or threads; one struct http_req per connection,
 * used by the connection's thread only.
 *
 * Protocol choices (RFC 9112 unless said otherwise):
 *  - methods GET, HEAD, POST; another well-formed method is 501;
 *  - versions HTTP/1.0 and HTTP/1.x (x >= 1, served as 1.1); HTTP/n.m with
 *    n != 1 is 505;
 *  - lines end in CRLF; bare CR, bare LF, obs-fold, whitespace before a
 *    header's colon and control bytes are 400;
 *  - empty lines before a request line are skipped (RFC 9112 2.2);
 *  - Content-Length: digits only, identical duplicates accepted, conflicting
 *    ones 400; above the body limit 413 (decided as soon as the headers are
 *    in, before the body is read);
 *  - Transfer-Encoding: "chunked" alone is accepted (any other coding, or
 *    a list, is 501; with Content-Length as well, 400): the decoded size
 *    is bounded by the body limit (413 as soon as a chunk size passes it),
 *    the chunked bytes on the wire by twice that plus max_header (413),
 *    a chunk-size line with its extensions by 1024 bytes and the trailer
 *    by max_header; malformed chunking is 400. Trailer fields are read
 *    and dropped. The body is left chunked in the buffer: the caller
 *    decodes it in place with http_dechunk();
 *  - Expect: 100-continue is supported through http_need_continue(); any
 *    other expectation is 417; Expect is ignored on HTTP/1.0;
 *  - an HTTP/1.1 request without exactly one Host header is 400;
 *  - keep-alive: HTTP/1.1 keeps the connection unless "Connection: close";
 *    HTTP/1.0 closes it unless "Connection: keep-alive";
 *  - a request without Content-Length has an empty body (no 411).
 * After an error the connection cannot be resynchronised: answer r->status
 * with "Connection: close" and close it.
 */
#ifndef DPRT_NET_HTTP_H
#define DPRT_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_MAX_HEADERS 64

/* What a connection accepts; see HTTP_LIMITS_DEFAULT. */
struct http_limits {
	uint32_t max_header; /* request line + headers + blank line: 431 */
	uint32_t max_uri;    /* request target: 414 */
	uint64_t max_body;   /* Content-Length: 413 */
};

#define HTTP_LIMITS_DEFAULT                                                                        \
	((struct http_limits){.max_header = 16384, .max_uri = 4096, .max_body = 256ull << 20})

enum http_method {
	HTTP_NONE = 0,
	HTTP_GET = 1,
	HTTP_HEAD = 2,
	HTTP_POST = 3,
};

/* A slice of the receive buffer (not NUL-terminated). */
struct http_str {
	const char *p;
	size_t len;
};

/* Parser state; private to http.c. Offsets are relative to buf[0]. */
struct http_pstate {
	uint8_t state;
	uint8_t vpos; /* position inside "HTTP/d.d" */
	uint8_t major;
	uint8_t n_host;
	bool has_cl, conn_close, conn_keep, continue_sent;
	bool has_te;	  /* Transfer-Encoding: chunked */
	uint64_t cpos;	  /* chunked body: bytes of buf scanned */
	uint64_t cleft;	  /* chunked body: data bytes left of this chunk */
	uint64_t csize;	  /* chunked body: size of the chunk being read */
	uint64_t cline;	  /* chunked body: start of this size or trailer line */
	const char *base; /* buf of the completing call (header lookups) */
	uint32_t pos;	  /* bytes of buf scanned */
	uint32_t mark;	  /* start of the token being scanned */
	uint32_t name_len, val_off, val_end;
	uint32_t tgt_off, tgt_len;
	uint32_t ctype_off, ctype_len;
	uint32_t hdr_end; /* bytes of request line + headers, once known */
	uint64_t content_length;
	uint32_t n_headers;
	struct {
		uint32_t name, name_len, value, value_len;
	} hdr[HTTP_MAX_HEADERS];
};

/*
 * One request being parsed. The result fields are valid after http_parse()
 * returned > 0, and stay valid while buf is neither moved nor reused; the
 * slices point into buf.
 */
struct http_req {
	uint8_t method;		      /* enum http_method */
	uint8_t minor;		      /* HTTP/1.minor: 0 or 1 */
	bool keep_alive;	      /* the connection may serve another request */
	bool expect_continue;	      /* "Expect: 100-continue" (HTTP/1.1 only) */
	struct http_str target;	      /* request target as sent */
	struct http_str path;	      /* target up to '?', still %-encoded */
	struct http_str query;	      /* after '?'; len 0 if none */
	struct http_str content_type; /* len 0 if absent */
	struct http_str body;	      /* Content-Length bytes, or the chunked body */
	bool chunked;		      /* body is still chunked: see http_dechunk() */
	uint64_t body_len;	      /* decoded length of a chunked body */
	int64_t infer_header_len;     /* Inference-Header-Content-Length; -1 */
	/* After http_parse() < 0: the status to answer and a static reason. */
	uint16_t status;
	const char *error;
	struct http_limits lim;
	struct http_pstate ps;
};

/* Prepare r for a connection's first request. Any thread (the owner's). */
void http_req_init(struct http_req *r, const struct http_limits *lim);

/*
 * Parse the request at the start of buf[0, len), resuming where the last
 * call stopped. Call it again with the same request start and more bytes
 * after it returned 0. After it returned N > 0 (request complete, N bytes
 * consumed) the next call parses a new request: pass buf + N (pipelining).
 * Returns N > 0, 0 (need more bytes) or -EBADMSG (r->status, r->error set;
 * every later call returns the same until http_req_init()).
 * Connection thread only.
 */
ssize_t http_parse(struct http_req *r, const char *buf, size_t len);

/*
 * True once per request when the client waits for "100 Continue" before
 * sending the body: headers are in, "Expect: 100-continue" was sent and the
 * body is incomplete. The caller then sends HTTP_CONTINUE.
 */
bool http_need_continue(struct http_req *r);
#define HTTP_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

/* Total bytes of the request (headers + body) once its headers are parsed,
 * else 0: lets the caller size its receive buffer. A chunked body's total
 * is not known: then the bytes known to be needed and some more (always
 * more than the bytes parsed so far). */
uint64_t http_req_size(const struct http_req *r);

/*
 * Decode the chunked body of a complete request (r->chunked) in place: the
 * data moves to the front of body, which must be r->body (writable); its
 * framing was checked by http_parse(). Returns the decoded length, which is
 * r->body_len. The bytes after the request (pipelined ones) are untouched.
 */
size_t http_dechunk(char *body, size_t len);

/* Value of the first header called name (case-insensitive) of a complete
 * request; false if absent. */
bool http_header(const struct http_req *r, const char *name, struct http_str *value);
/* Number of headers of a complete request, and the i-th of them. */
uint32_t http_header_count(const struct http_req *r);
void http_header_at(const struct http_req *r, uint32_t i, struct http_str *name,
		    struct http_str *value);

/*
 * Percent-decode s[0, len) into out (NUL-terminated, at most cap - 1 bytes).
 * '+' stays '+' (paths are not form data). Returns the decoded length,
 * -EINVAL for a bad escape or an encoded NUL, -ENAMETOOLONG if out is small.
 */
int http_pct_decode(const char *s, size_t len, char *out, size_t cap);

/* Standard reason phrase of a status ("Not Found"); "Unknown" if none. */
const char *http_reason(int status);

/*
 * Write the status line and headers of a response into buf: Server,
 * Content-Type (if content_type), Content-Length (except for 1xx and 204),
 * Connection (keep-alive or close), then extra_headers verbatim (complete
 * "Name: value\r\n" lines, or NULL) and the blank line. The body is sent by
 * the caller after these bytes (a HEAD response sends none but keeps the
 * GET length). Returns the number of bytes written or -ENOSPC. Any thread.
 */
int http_write_response(char *buf, size_t cap, int status, const char *content_type,
			const char *extra_headers, uint64_t body_len, bool keep_alive);

/* Content codings of a response body (RFC 9110 8.4.1). */
enum http_coding {
	HTTP_IDENTITY = 0,
	HTTP_GZIP = 1,	  /* gzip (RFC 1952); x-gzip is the same */
	HTTP_DEFLATE = 2, /* the zlib format (RFC 1950), as RFC 9110 says */
};

/*
 * What a request's Accept-Encoding allows (RFC 9110 12.5.3). Each coding's
 * weight is its own entry's q, else the one of "*", else it is not
 * acceptable; identity is acceptable unless "identity;q=0", or "*;q=0"
 * without an identity entry, says otherwise. coding is the acceptable
 * coding of the highest weight (gzip on a tie), or HTTP_IDENTITY when none
 * is or identity has an entry of a higher weight. Malformed entries (a bad
 * qvalue) are ignored; an empty value accepts identity only.
 */
struct http_accept {
	bool present;	  /* the request has Accept-Encoding */
	bool identity_ok; /* an uncoded body is acceptable */
	uint8_t coding;	  /* enum http_coding */
};

/* The Accept-Encoding of a complete request (every field of that name,
 * as one list) into *a. Connection thread. */
void http_accept_encoding(const struct http_req *r, struct http_accept *a);
/* The same for one field value s[0, len) (a->present set). Any thread. */
void http_accept_parse(const char *s, size_t len, struct http_accept *a);

/*
 * Rewrite the head buf[0, hlen) that http_write_response wrote (cap bytes
 * of room) for a body of body_len bytes: its Content-Length replaced and
 * the header lines extra ("Name: value\r\n"..., or NULL) added before the
 * blank line. Returns the new length, -ENOSPC (buf unchanged) or -EINVAL
 * (no Content-Length or blank line in it). Any thread.
 */
int http_head_rewrite(char *buf, size_t hlen, size_t cap, uint64_t body_len, const char *extra);

#endif
