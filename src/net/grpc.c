/* SPDX-License-Identifier: MIT */
/*
 * net/grpc: the gRPC listener and connections (see grpc.h). Each
 * connection runs an nghttp2 server session: received bytes go to
 * nghttp2_session_mem_recv, frames come out through the send callbacks
 * into one of two write buffers while the other is with the kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <protobuf-c/protobuf-c.h>
#include <zlib.h>

#include "net/grpc_int.h"

#define G_RBUF (64u << 10)
#define G_WBUF_HIGH (1u << 20) /* stop writing DATA frames above this */
#define G_MAX_STREAMS 16u      /* SETTINGS_MAX_CONCURRENT_STREAMS */
#define G_WINDOW (8u << 20)    /* stream and connection receive windows */

static void gconn_close(struct gconn *gc);

/* ------------------------------------------------------------ status */

int grpc_status_of(int code)
{
	switch (kserve_http_status(code)) {
	case 200:
		return GS_OK;
	case 400:
		return GS_INVALID_ARGUMENT;
	case 404:
		return GS_NOT_FOUND;
	case 413:
		return GS_RESOURCE_EXHAUSTED;
	case 405:
	case 501:
		return GS_UNIMPLEMENTED;
	case 503:
		return GS_UNAVAILABLE;
	default:
		return code == -ENOMEM ? GS_RESOURCE_EXHAUSTED : GS_INTERNAL;
	}
}

/* grpc-message is percent-encoded: keep printable ASCII but '%'. */
static void pct_encode(char *dst, size_t cap, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *s && n + 4 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch >= 0x20 && ch < 0x7f && ch != '%') {
			dst[n++] = (char)ch;
		} else {
			dst[n++] = '%';
			dst[n++] = hex[ch >> 4];
			dst[n++] = hex[ch & 15];
		}
	}
	dst[n] = 0;
}

/* ------------------------------------------------------------ responses */

#define NV(n, v)                                                                                   \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE     \
	}

/* grpc-status, grpc-message and ours: into nv (at most 4). */
static size_t trailer_nv(struct gstream *st, nghttp2_nv *nv, char *code, char *msg, size_t mcap)
{
	size_t n = 0;

	snprintf(code, 8, "%d", st->status);
	nv[n++] = (nghttp2_nv)NV("grpc-status", code);
	if (st->status && st->msg[0]) {
		pct_encode(msg, mcap, st->msg);
		nv[n++] = (nghttp2_nv)NV("grpc-message", msg);
	}
	if (st->method == GM_INFER && !st->status) {
		nv[n++] = (nghttp2_nv)NV("dprt-cold-start", st->cold ? "1" : "0");
		nv[n++] = (nghttp2_nv)NV("server-timing", st->timing);
	}
	return n;
}

static ssize_t data_read(nghttp2_session *ses, int32_t id, uint8_t *buf, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct gstream *st = src->ptr;
	size_t n = 0;
	nghttp2_nv nv[4];
	char code[8], msg[sizeof(st->msg) * 3 + 4];

	(void)buf;
	(void)user;
	while (st->rd_i < st->n_pc && n < len) {
		size_t k = MIN(len - n, st->pc[st->rd_i].len - st->rd_off);

		n += k;
		st->rd_off += k;
		if (st->rd_off == st->pc[st->rd_i].len) {
			st->rd_i++;
			st->rd_off = 0;
		}
	}
	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (st->rd_i == st->n_pc) {
		*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(ses, id, nv, trailer_nv(st, nv, code, msg, sizeof(msg))))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return (ssize_t)n;
}

/* The outcome of a call: headers, then (status 0) the message pieces in
 * st->pc and trailers; else trailers only. */
void gstream_reply(struct gstream *st)
{
	struct gconn *gc = st->gc;
	nghttp2_data_provider dp = {.source.ptr = st, .read_callback = data_read};
	nghttp2_nv nv[6] = {NV(":status", "200"), NV("content-type", "application/grpc")};
	char code[8], msg[sizeof(st->msg) * 3 + 4];
	size_t n = 2;

	if (!gc || st->replied || st->closed)
		return;
	st->replied = true;
	if (st->status)
		n += trailer_nv(st, nv + 2, code, msg, sizeof(msg));
	if (nghttp2_submit_response(gc->ses, st->id, nv, n, st->status ? NULL : &dp))
		nghttp2_submit_rst_stream(gc->ses, NGHTTP2_FLAG_NONE, st->id,
					  NGHTTP2_INTERNAL_ERROR);
	gconn_flush(gc);
}

void gstream_fail(struct gstream *st, int gstatus, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
	va_end(ap);
	st->status = gstatus;
	log_debug("grpc stream %d: status %d: %s", st->id, gstatus, st->msg);
	gstream_reply(st);
}

void gstream_fail_code(struct gstream *st, int code, const char *msg)
{
	gstream_fail(st, grpc_status_of(code), "%s", msg);
}

/* ------------------------------------------------------------ streams */

static void gstream_free(struct gstream *st)
{
	free(st->meta);
	free(st->zin);
	free(st->raw);
	free(st->resp);
	free(st->obuf);
	arena_fini(&st->arena);
	if (st->unpacked)
		protobuf_c_message_free_unpacked(st->unpacked, NULL);
	free(st);
}

/* Drop what the call holds (the record back to the pool). */
void gstream_release(struct gstream *st)
{
	struct server *srv = st->gc ? st->gc->srv : NULL;

	if (st->sreq && !st->inflight && srv) {
		sched_req_put(srv->s, st->sreq);
		st->sreq = NULL;
	}
}

static void gstream_unlink(struct gstream *st)
{
	struct gconn *gc = st->gc;

	if (st->prev)
		st->prev->next = st->next;
	else
		gc->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	gc->n_streams--;
	gc->buffered -= MIN(gc->buffered, st->meta_cap + st->raw_cap + st->zin_cap);
}

static int on_begin_headers(nghttp2_session *ses, const nghttp2_frame *f, void *user)
{
	struct gconn *gc = user;
	struct gstream *st;

	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = calloc(1, sizeof(*st));
	if (!st) {
		nghttp2_submit_rst_stream(ses, NGHTTP2_FLAG_NONE, f->hd.stream_id,
					  NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	st->gc = gc;
	st->id = f->hd.stream_id;
	st->t_start = clock_ns();
	st->bad_ctype = true;
	st->next = gc->streams;
	if (gc->streams)
		gc->streams->prev = st;
	gc->streams = st;
	gc->n_streams++;
	nghttp2_session_set_stream_user_data(ses, st->id, st);
	return 0;
}

static uint8_t genc_of(const char *v, size_t n)
{
	if (n == 8 && !memcmp(v, "identity", 8))
		return GE_IDENTITY;
	if (n == 4 && !memcmp(v, "gzip", 4))
		return GE_GZIP;
	if (n == 7 && !memcmp(v, "deflate", 7))
		return GE_DEFLATE;
	return GE_OTHER;
}

static int on_header(nghttp2_session *ses, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
		     const uint8_t *val, size_t vlen, uint8_t flags, void *user)
{
	struct gstream *st = nghttp2_session_get_stream_user_data(ses, f->hd.stream_id);

	(void)flags;
	(void)user;
	if (!st || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (nlen == 5 && !memcmp(name, ":path", 5)) {
		st->method = (uint8_t)svc_method((const char *)val, vlen);
		st->bad_path = st->method == GM_NONE;
	} else if (nlen == 11 && !memcmp(name, "mm-model-id", 11)) {
		st->mm_id_long = vlen >= sizeof(st->mm_id);
		if (!st->mm_id_long) {
			memcpy(st->mm_id, val, vlen);
			st->mm_id[vlen] = 0;
		}
	} else if (nlen == 13 && !memcmp(name, "grpc-encoding", 13)) {
		st->enc = genc_of((const char *)val, vlen);
	} else if (nlen == 12 && !memcmp(name, "content-type", 12)) {
		st->bad_ctype = vlen < 16 || memcmp(val, "application/grpc", 16) ||
				(vlen > 16 && val[16] != '+' && val[16] != ';');
	}
	return 0;
}

/* The request headers are complete: refuse what we will not serve now. */
static void gstream_headers_done(struct gstream *st)
{
	if (st->bad_path)
		gstream_fail(st, GS_UNIMPLEMENTED, "unknown method");
	else if (st->bad_ctype)
		gstream_fail(st, GS_INVALID_ARGUMENT, "content-type must be application/grpc");
	else if (st->gc->srv->stopping && st->method != GM_SERVER_LIVE &&
		 st->method != GM_SERVER_READY)
		gstream_fail(st, GS_UNAVAILABLE, "the server is shutting down");
	else
		return;
	st->done_early = true;
}

/* Room for a message of len plain bytes: meta, and raw for ModelInfer. */
static int msg_alloc(struct gstream *st, uint64_t len)
{
	size_t meta = st->method == GM_INFER ? MIN(len, 65536u) : len;

	st->msg_len = len;
	if (buf_grow(&st->meta, &st->meta_cap, meta + 1))
		return gstream_fail(st, GS_RESOURCE_EXHAUSTED, "out of memory"), -1;
	if (st->method == GM_INFER) {
		st->raw_cap = ALIGN_UP(len + 64 * KSERVE_MAX_TENSORS + 64, 64);
		st->raw = aligned_alloc(64, st->raw_cap);
		if (!st->raw)
			return gstream_fail(st, GS_RESOURCE_EXHAUSTED, "out of memory"), -1;
	}
	st->gc->buffered += st->meta_cap + st->raw_cap;
	return 0;
}

/* The message's compressed flag against grpc-encoding; 0 or -1 (failed). */
static int msg_coding(struct gstream *st)
{
	if (st->pfx[0] > 1)
		return gstream_fail(st, GS_INTERNAL, "bad message flags %u", st->pfx[0]), -1;
	if (!st->pfx[0])
		return 0;
	if (st->enc == GE_IDENTITY)
		return gstream_fail(st, GS_INTERNAL, "a compressed message without grpc-encoding"),
		       -1;
	if (st->enc == GE_OTHER)
		return gstream_fail(st, GS_UNIMPLEMENTED,
				    "grpc-encoding not supported (gzip, deflate and identity are)"),
		       -1;
	st->zmsg = true;
	return 0;
}

/* The 5-byte prefix is in: check the message and make room for it. */
static int msg_begin(struct gstream *st)
{
	struct server *srv = st->gc->srv;
	uint64_t len = (uint64_t)st->pfx[1] << 24 | (uint64_t)st->pfx[2] << 16 |
		       (uint64_t)st->pfx[3] << 8 | st->pfx[4];

	if (++st->n_msgs > 1)
		return gstream_fail(st, GS_INVALID_ARGUMENT, "a unary call takes one message"), -1;
	if (msg_coding(st))
		return -1;
	if (len > srv->o.max_body)
		return gstream_fail(st, GS_RESOURCE_EXHAUSTED,
				    "the message has %llu bytes; at most %llu (--max-body)",
				    (unsigned long long)len, (unsigned long long)srv->o.max_body),
		       -1;
	if (st->gc->buffered + len > 2 * srv->o.max_body)
		return gstream_fail(st, GS_RESOURCE_EXHAUSTED,
				    "too many request bytes in flight on this connection"),
		       -1;
	if (!st->zmsg)
		return msg_alloc(st, len);
	if (!len)
		return gstream_fail(st, GS_INTERNAL, "an empty compressed message"), -1;
	st->msg_len = len;
	st->zin_cap = len + 1;
	st->zin = malloc(st->zin_cap);
	if (!st->zin)
		return gstream_fail(st, GS_RESOURCE_EXHAUSTED, "out of memory"), -1;
	st->gc->buffered += st->zin_cap;
	return 0;
}

/* Bytes of a message body. */
static int msg_feed(struct gstream *st, const uint8_t *p, size_t n)
{
	if (st->zmsg) {
		memcpy(st->zin + st->msg_got, p, n);
		return 0;
	}
	if (st->method == GM_INFER)
		return split_feed(st, p, n);
	memcpy(st->meta + st->meta_len, p, n);
	st->meta_len += n;
	return 0;
}

/* A compressed message is complete in zin: inflate it (at most --max-body
 * bytes) and feed it on as if it had come plain. 0 or -1 (failed). */
static int msg_inflate(struct gstream *st)
{
	struct gconn *gc = st->gc;
	char *plain = NULL;
	size_t cap = 0, n = 0;
	int ret;

	ret = body_inflate(st->zin, st->msg_len, st->enc == GE_GZIP ? 16 + MAX_WBITS : MAX_WBITS,
			   gc->srv->o.max_body, &plain, &cap, &n);
	free(st->zin);
	st->zin = NULL;
	gc->buffered -= MIN(gc->buffered, st->zin_cap);
	st->zin_cap = 0;
	st->zmsg = false;
	if (ret) {
		free(plain);
		if (ret == -E2BIG)
			return gstream_fail(st, GS_RESOURCE_EXHAUSTED,
					    "the decompressed message has more than %llu bytes "
					    "(--max-body)",
					    (unsigned long long)gc->srv->o.max_body),
			       -1;
		return gstream_fail(st, ret == -EBADMSG ? GS_INTERNAL : GS_RESOURCE_EXHAUSTED, "%s",
				    ret == -EBADMSG ? "malformed compressed message" :
						      "out of memory"),
		       -1;
	}
	ret = msg_alloc(st, n);
	if (!ret && n)
		ret = msg_feed(st, (const uint8_t *)plain, n);
	free(plain);
	st->msg_got = st->msg_len;
	return ret;
}

static int on_data_chunk(nghttp2_session *ses, uint8_t flags, int32_t id, const uint8_t *p,
			 size_t len, void *user)
{
	struct gstream *st = nghttp2_session_get_stream_user_data(ses, id);
	size_t k;

	(void)flags;
	(void)user;
	while (st && !st->done_early && len) {
		if (st->pfx_len < 5) {
			k = MIN(len, 5u - st->pfx_len);
			memcpy(st->pfx + st->pfx_len, p, k);
			st->pfx_len = (uint8_t)(st->pfx_len + k);
			p += k;
			len -= k;
			if (st->pfx_len == 5 && msg_begin(st)) {
				st->done_early = true;
				break;
			}
			if (st->pfx_len == 5 && !st->msg_len)
				st->pfx_len = 0; /* an empty message */
			continue;
		}
		k = (size_t)MIN((uint64_t)len, st->msg_len - st->msg_got);
		if (k && msg_feed(st, p, k)) {
			st->done_early = true;
			break;
		}
		st->msg_got += k;
		p += k;
		len -= k;
		if (st->msg_got == st->msg_len && st->zmsg && msg_inflate(st)) {
			st->done_early = true;
			break;
		}
		if (st->msg_got == st->msg_len) {
			st->pfx_len = 0; /* a next message (refused in msg_begin) */
			st->msg_got = 0;
		}
	}
	return 0;
}

/* The client has sent all: run the call. */
static void gstream_request_done(struct gstream *st)
{
	if (st->done_early || st->replied)
		return;
	st->t_done = clock_ns();
	if (!st->n_msgs || st->pfx_len) {
		gstream_fail(st, GS_INVALID_ARGUMENT,
			     "the request ended inside or before its message");
		return;
	}
	st->meta[st->meta_len] = 0;
	svc_call(st);
}

static int on_frame_recv(nghttp2_session *ses, const nghttp2_frame *f, void *user)
{
	struct gstream *st = nghttp2_session_get_stream_user_data(ses, f->hd.stream_id);

	(void)user;
	if (!st)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
		gstream_headers_done(st);
	if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		gstream_request_done(st);
	return 0;
}

/* Answered before the client finished sending: tell it to stop. */
static int on_frame_send(nghttp2_session *ses, const nghttp2_frame *f, void *user)
{
	struct gstream *st = nghttp2_session_get_stream_user_data(ses, f->hd.stream_id);

	(void)user;
	if (st && st->done_early && f->hd.type == NGHTTP2_HEADERS &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    nghttp2_session_get_stream_remote_close(ses, st->id) == 0)
		nghttp2_submit_rst_stream(ses, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
	return 0;
}

static int on_stream_close(nghttp2_session *ses, int32_t id, uint32_t code, void *user)
{
	struct gstream *st = nghttp2_session_get_stream_user_data(ses, id);
	struct gconn *gc = user;

	(void)code;
	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(ses, id, NULL);
	gstream_unlink(st);
	st->closed = true;
	if (st->inflight) {
		st->next = st->prev = NULL; /* freed by its completion */
		return 0;
	}
	gstream_release(st);
	gstream_free(st);
	if (gc->srv->stopping && !gc->n_streams)
		nghttp2_session_terminate_session(ses, NGHTTP2_NO_ERROR);
	return 0;
}

/* ------------------------------------------------------------ output */

/* Room in the filling buffer for n more bytes. */
static uint8_t *out_room(struct gconn *gc, size_t n)
{
	uint8_t f = gc->snd ^ 1;

	if (buf_grow((char **)&gc->out[f], &gc->out_cap[f], gc->out_len[f] + n))
		return NULL;
	gc->out_len[f] += n;
	return gc->out[f] + gc->out_len[f] - n;
}

static ssize_t on_send(nghttp2_session *ses, const uint8_t *data, size_t len, int flags, void *user)
{
	uint8_t *p = out_room(user, len);

	(void)ses;
	(void)flags;
	if (!p)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	memcpy(p, data, len);
	return (ssize_t)len;
}

/* A DATA frame: its header, then its bytes copied from the pieces. */
static int on_send_data(nghttp2_session *ses, nghttp2_frame *f, const uint8_t *hd, size_t len,
			nghttp2_data_source *src, void *user)
{
	struct gconn *gc = user;
	struct gstream *st = src->ptr;
	uint8_t *p;

	(void)ses;
	if (gc->out_len[gc->snd ^ 1] > G_WBUF_HIGH)
		return NGHTTP2_ERR_WOULDBLOCK;
	p = out_room(gc, 9 + len + (f->data.padlen ? f->data.padlen : 0));
	if (!p)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	memcpy(p, hd, 9);
	p += 9;
	if (f->data.padlen)
		*p++ = (uint8_t)(f->data.padlen - 1);
	while (len) {
		const struct gpiece *pc = &st->pc[st->wr_i];
		size_t k = MIN(len, pc->len - st->wr_off);

		memcpy(p, pc->p + st->wr_off, k);
		p += k;
		len -= k;
		st->wr_off += k;
		if (st->wr_off == pc->len) {
			st->wr_i++;
			st->wr_off = 0;
		}
	}
	if (f->data.padlen > 1)
		memset(p, 0, f->data.padlen - 1);
	return 0;
}

static void arm_send(struct gconn *gc)
{
	struct io_uring_sqe *sqe;

	if (gc->send_armed || gc->closed)
		return;
	if (gc->out_off == gc->out_len[gc->snd]) {
		gc->out_len[gc->snd] = 0;
		gc->out_off = 0;
		if (!gc->out_len[gc->snd ^ 1])
			return;
		gc->snd ^= 1;
	}
	sqe = sqe_get(gc->srv, ud(gc, UD_GSEND));
	if (!sqe) {
		gconn_close(gc);
		return;
	}
	io_uring_prep_send(sqe, gc->fd, gc->out[gc->snd] + gc->out_off,
			   gc->out_len[gc->snd] - gc->out_off, MSG_NOSIGNAL);
	gc->send_armed = true;
}

static void arm_recv(struct gconn *gc)
{
	struct io_uring_sqe *sqe;

	if (gc->recv_armed || gc->closed || !nghttp2_session_want_read(gc->ses))
		return;
	sqe = sqe_get(gc->srv, ud(gc, UD_GRECV));
	if (!sqe) {
		gconn_close(gc);
		return;
	}
	io_uring_prep_recv(sqe, gc->fd, gc->rbuf, G_RBUF, 0);
	gc->recv_armed = true;
}

/* Write what nghttp2 has, keep a recv armed, close when both sides are done. */
void gconn_flush(struct gconn *gc)
{
	int ret;

	if (gc->closed || gc->in_recv)
		return; /* not from nghttp2's callbacks: after mem_recv */
	ret = nghttp2_session_send(gc->ses);
	if (ret)
		log_debug("grpc conn %d: %s", gc->fd, nghttp2_strerror(ret));
	arm_send(gc);
	arm_recv(gc);
	if (!gc->send_armed && !gc->recv_armed && !nghttp2_session_want_write(gc->ses))
		gconn_close(gc);
}

/* ------------------------------------------------------------ lifecycle */

static void gconn_free(struct gconn *gc)
{
	struct grpc_srv *g = gc->srv->grpc;
	struct gstream *st;

	while ((st = gc->streams)) {
		gstream_unlink(st);
		st->closed = true;
		if (st->inflight) {
			st->gc = NULL;
			continue;
		}
		gstream_release(st);
		gstream_free(st);
	}
	nghttp2_session_del(gc->ses);
	if (gc->prev)
		gc->prev->next = gc->next;
	else
		g->conns = gc->next;
	if (gc->next)
		gc->next->prev = gc->prev;
	g->n_conns--;
	close(gc->fd);
	free(gc->rbuf);
	free(gc->out[0]);
	free(gc->out[1]);
	free(gc);
}

static void gconn_maybe_free(struct gconn *gc)
{
	if (gc->closed && !gc->recv_armed && !gc->send_armed && !gc->n_inflight)
		gconn_free(gc);
}

static void gconn_close(struct gconn *gc)
{
	if (gc->closed)
		return;
	gc->closed = true;
	shutdown(gc->fd, SHUT_RDWR);
	if (gc->recv_armed)
		cancel_op(gc->srv, ud(gc, UD_GRECV));
	if (gc->send_armed)
		cancel_op(gc->srv, ud(gc, UD_GSEND));
	gconn_maybe_free(gc);
}

static int session_new(struct gconn *gc)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	nghttp2_settings_entry set[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, G_MAX_STREAMS},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, G_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, gc->srv->lim.max_header},
	};
	int ret;

	if (nghttp2_session_callbacks_new(&cb))
		return -ENOMEM;
	nghttp2_session_callbacks_set_send_callback(cb, on_send);
	nghttp2_session_callbacks_set_send_data_callback(cb, on_send_data);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	ret = nghttp2_option_new(&opt);
	if (!ret) {
		nghttp2_option_set_max_send_header_block_length(opt, 65536);
		ret = nghttp2_session_server_new2(&gc->ses, cb, gc, opt);
		nghttp2_option_del(opt);
	}
	nghttp2_session_callbacks_del(cb);
	if (ret)
		return -ENOMEM;
	ret = nghttp2_submit_settings(gc->ses, NGHTTP2_FLAG_NONE, set, ARRAY_SIZE(set));
	if (!ret)
		ret = nghttp2_session_set_local_window_size(gc->ses, NGHTTP2_FLAG_NONE, 0,
							    (int32_t)G_WINDOW);
	return ret ? -ENOMEM : 0;
}

static void gconn_new(struct server *srv, int fd)
{
	struct grpc_srv *g = srv->grpc;
	struct gconn *gc;
	int one = 1;

	if (srv->stopping || g->n_conns >= srv->o.max_conns)
		goto out_close;
	gc = aligned_alloc(64, ALIGN_UP(sizeof(*gc), 64));
	if (!gc)
		goto out_close;
	memset(gc, 0, sizeof(*gc));
	gc->srv = srv;
	gc->fd = fd;
	gc->t_active = clock_ns();
	gc->rbuf = malloc(G_RBUF);
	if (!gc->rbuf || session_new(gc)) {
		if (gc->ses)
			nghttp2_session_del(gc->ses);
		free(gc->rbuf);
		free(gc);
		goto out_close;
	}
	if (!g->unix_path[0])
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	gc->next = g->conns;
	if (g->conns)
		g->conns->prev = gc;
	g->conns = gc;
	g->n_conns++;
	gconn_flush(gc);
	return;
out_close:
	close(fd);
}

/* ------------------------------------------------------------ completions */

void grpc_on_recv(void *p, int res)
{
	struct gconn *gc = p;
	ssize_t n;

	gc->recv_armed = false;
	if (gc->closed) {
		gconn_maybe_free(gc);
		return;
	}
	if (res <= 0) {
		if (res < 0 && res != -ECONNRESET && res != -ECANCELED)
			log_debug("grpc conn %d: recv: %s", gc->fd, strerror(-res));
		gconn_close(gc);
		return;
	}
	gc->t_active = clock_ns();
	gc->in_recv = true;
	n = nghttp2_session_mem_recv(gc->ses, gc->rbuf, (size_t)res);
	gc->in_recv = false;
	if (n < 0) {
		log_debug("grpc conn %d: %s", gc->fd, nghttp2_strerror((int)n));
		nghttp2_session_terminate_session(gc->ses, NGHTTP2_PROTOCOL_ERROR);
	}
	gconn_flush(gc);
}

void grpc_on_send(void *p, int res)
{
	struct gconn *gc = p;

	gc->send_armed = false;
	if (gc->closed) {
		gconn_maybe_free(gc);
		return;
	}
	if (res <= 0) {
		if (res != -EPIPE && res != -ECONNRESET)
			log_debug("grpc conn %d: send: %s", gc->fd,
				  res ? strerror(-res) : "0 bytes");
		gconn_close(gc);
		return;
	}
	gc->t_active = clock_ns();
	gc->out_off += (size_t)res;
	gconn_flush(gc);
}

/* A record or a job of st came back: false when st had been closed (and
 * is freed now). */
bool gstream_back(struct gstream *st)
{
	struct gconn *gc = st->gc;

	st->inflight = false;
	if (gc)
		gc->n_inflight--;
	if (!st->closed && !(gc && gc->closed))
		return true;
	if (!st->closed) {
		/* its connection is gone: nobody will read the answer */
		gstream_unlink(st);
		st->closed = true;
	}
	gstream_release(st);
	gstream_free(st);
	if (gc)
		gconn_maybe_free(gc);
	return false;
}

void grpc_infer_done(struct sched_req *r)
{
	struct gstream *st = (void *)((uintptr_t)r->ctx & ~(uintptr_t)1);

	if (gstream_back(st))
		svc_infer_done(st);
}

/* ------------------------------------------------------------ the listener */

static void arm_accept(struct server *srv)
{
	struct grpc_srv *g = srv->grpc;
	struct io_uring_sqe *sqe = sqe_get(srv, ud(srv, UD_GACCEPT));

	if (!sqe)
		return;
	if (g->multishot)
		io_uring_prep_multishot_accept(sqe, g->lfd, NULL, NULL, SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, g->lfd, NULL, NULL, SOCK_CLOEXEC);
	g->accept_armed = true;
}

void grpc_on_accept(struct server *srv, int res, uint32_t flags)
{
	struct grpc_srv *g = srv->grpc;

	if (res >= 0)
		gconn_new(srv, res);
	if (g->multishot && (flags & IORING_CQE_F_MORE))
		return;
	g->accept_armed = false;
	if (srv->stopping) {
		close(g->lfd);
		g->lfd = -1;
		return;
	}
	if (res == -EINVAL && g->multishot)
		g->multishot = false;
	else if (res < 0 && res != -EINTR && res != -ECONNABORTED)
		return; /* retried on the next tick */
	arm_accept(srv);
}

/* --grpc-listen unix:PATH: a stream socket at PATH (a stale socket there
 * is replaced; any other file is an error). */
static int listen_unix(struct grpc_srv *g, const char *spec)
{
	const char *path = spec + 5;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;
	int fd, ret;

	if (!path[0] || strlen(path) >= sizeof(sa.sun_path))
		return err_set(DPRT_EUSAGE,
			       "--grpc-listen '%s': the socket path is empty or "
			       "longer than %zu bytes",
			       spec, sizeof(sa.sun_path) - 1);
	if (!lstat(path, &sb) && !S_ISSOCK(sb.st_mode))
		return err_set(-EEXIST, "cannot listen on %s: a file that is not a socket is there",
			       spec);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set(-errno, "socket(AF_UNIX): %s", strerror(errno));
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, SOMAXCONN)) {
		ret = -errno;
		close(fd);
		return err_set(ret, "cannot listen on %s: %s", spec, strerror(-ret));
	}
	g->lfd = fd;
	snprintf(g->addr, sizeof(g->addr), "%s", spec);
	snprintf(g->unix_path, sizeof(g->unix_path), "%s", path);
	return 0;
}

int grpc_create(struct server *srv)
{
	const char *spec = srv->o.grpc_listen ? srv->o.grpc_listen : SERVER_DEF_GRPC_LISTEN;
	struct grpc_srv *g;
	int ret;

	if (!strcmp(spec, "off"))
		return 0;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->lfd = -1;
	g->multishot = true;
	if (!strncmp(spec, "unix:", 5))
		ret = listen_unix(g, spec);
	else
		ret = net_listen(spec, "--grpc-listen", &g->lfd, g->addr, sizeof(g->addr),
				 &g->port);
	if (ret && !srv->o.grpc_listen && ret != DPRT_EUSAGE) {
		log_warn("%s; serving without gRPC (--grpc-listen picks another address)",
			 err_msg(ret));
		free(g);
		return 0;
	}
	if (ret) {
		free(g);
		return ret;
	}
	pthread_mutex_init(&g->mm_lock, NULL);
	pthread_cond_init(&g->mm_cond, NULL);
	srv->grpc = g;
	return 0;
}

void grpc_start(struct server *srv)
{
	if (!srv->grpc)
		return;
	arm_accept(srv);
	log_info("grpc listening on %s (KServe v2 over gRPC, HTTP/2 cleartext)", srv->grpc->addr);
}

/* Requests not complete within --request-timeout of their headers. */
static void streams_tick(struct gconn *gc, uint64_t now)
{
	uint64_t req = (uint64_t)gc->srv->o.request_timeout_ms * 1000000u;
	struct gstream *st, *next;

	for (st = gc->streams; st; st = next) {
		next = st->next;
		if (st->replied || st->inflight || st->done_early || now - st->t_start <= req)
			continue;
		st->done_early = true;
		gstream_fail(st, GS_DEADLINE_EXCEEDED,
			     "the request did not arrive complete within %.1f s",
			     (double)gc->srv->o.request_timeout_ms / 1e3);
	}
}

void grpc_tick(struct server *srv, uint64_t now)
{
	struct grpc_srv *g = srv->grpc;
	uint64_t idle = (uint64_t)srv->o.idle_timeout_ms * 1000000u;
	struct gconn *gc, *next;

	if (!g)
		return;
	for (gc = g->conns; gc; gc = next) {
		next = gc->next;
		if (gc->closed)
			continue;
		if (gc->send_armed && now - gc->t_active > idle) {
			log_debug("grpc conn %d: client does not read, closing", gc->fd);
			gconn_close(gc);
		} else if (!gc->n_streams && (now - gc->t_active > idle || srv->stopping)) {
			log_debug("grpc conn %d: idle, closing", gc->fd);
			nghttp2_session_terminate_session(gc->ses, NGHTTP2_NO_ERROR);
			gconn_flush(gc);
		} else {
			streams_tick(gc, now);
		}
	}
	if (!g->accept_armed && g->lfd >= 0 && !srv->stopping)
		arm_accept(srv);
}

void grpc_stop(struct server *srv, bool force)
{
	struct grpc_srv *g = srv->grpc;
	struct gconn *gc, *next;

	if (!g)
		return;
	if (g->accept_armed) {
		cancel_op(srv, ud(srv, UD_GACCEPT));
	} else if (g->lfd >= 0) {
		close(g->lfd);
		g->lfd = -1;
	}
	for (gc = g->conns; gc; gc = next) {
		next = gc->next;
		if (force && !gc->n_inflight) {
			gconn_close(gc);
			continue;
		}
		if (!gc->goaway) {
			gc->goaway = true;
			nghttp2_submit_goaway(gc->ses, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(gc->ses),
					      NGHTTP2_NO_ERROR, NULL, 0);
		}
		if (!gc->n_streams)
			nghttp2_session_terminate_session(gc->ses, NGHTTP2_NO_ERROR);
		gconn_flush(gc);
	}
}

bool grpc_drained(const struct server *srv)
{
	const struct grpc_srv *g = srv->grpc;

	return !g || (!g->conns && !g->n_jobs && g->lfd < 0);
}

void grpc_orphan(struct sched_req *r)
{
	gstream_back((void *)((uintptr_t)r->ctx & ~(uintptr_t)1));
}

void grpc_destroy(struct server *srv)
{
	struct grpc_srv *g = srv->grpc;
	struct grpc_job *j;

	if (!g)
		return;
	while ((j = g->jobs)) {
		g->jobs = j->next;
		pthread_join(j->thread, NULL);
		if (j->st)
			gstream_back(j->st);
		if (j->waiter)
			gstream_back(j->waiter);
		free(j);
	}
	while (g->conns) {
		g->conns->recv_armed = g->conns->send_armed = false;
		g->conns->n_inflight = 0;
		gconn_free(g->conns);
	}
	if (g->lfd >= 0)
		close(g->lfd);
	if (g->unix_path[0])
		unlink(g->unix_path);
	pthread_mutex_destroy(&g->mm_lock);
	pthread_cond_destroy(&g->mm_cond);
	free(g);
	srv->grpc = NULL;
}
