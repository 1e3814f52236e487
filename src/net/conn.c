/* SPDX-License-Identifier: MIT */
/*
 * net/conn: one connection's life on the loop thread. Receive into a
 * growing buffer, frame requests with the HTTP parser (limits from
 * srv->lim), dispatch a complete request to its endpoint, send the
 * response (100 Continue first where asked), keep alive or linger and
 * close, and the per-connection timeouts of the tick.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/internal.h"

#define RBUF_MIN 16384u
#define RBUF_KEEP (64u << 10)	 /* shrink the receive buffer above this */
#define ARENA_KEEP (4u << 20)	 /* free a decode arena above this */
#define BIG_KEEP (64ull << 20)	 /* a larger receive or output buffer is not kept */
#define CONN_KEEP (512ull << 20) /* the kept ones of all connections, at most */
#define LINGER_NS 2000000000ull	 /* lingering close: drain input this long */
#define MAX_REJECTING 64u

static void conn_parse(struct conn *c);
static void conn_pump(struct conn *c);

/* ------------------------------------------------------------ small helpers */

static uint32_t ms_of(uint64_t ns)
{
	return (uint32_t)(ns / 1000000u);
}

int buf_grow(char **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 4096;
	char *p;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	p = realloc(*buf, n);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

/* ------------------------------------------------------------ responses */

/* Start sending what is queued: the 100 Continue first, then the response. */
static void conn_pump(struct conn *c)
{
	struct io_uring_sqe *sqe;
	size_t cl = sizeof(HTTP_CONTINUE) - 1;

	if (c->send_armed || c->state == CS_CLOSED)
		return;
	if (!c->cont_left && (c->state != CS_WRITE || c->iov_i == c->n_iov))
		return;
	sqe = sqe_get(c->srv, ud(c, UD_SEND));
	if (!sqe) {
		conn_close(c);
		return;
	}
	if (c->cont_left) {
		io_uring_prep_send(sqe, c->fd, HTTP_CONTINUE + cl - c->cont_left, c->cont_left,
				   MSG_NOSIGNAL);
		c->cont_inflight = true;
	} else {
		c->msg.msg_iov = c->iov + c->iov_i;
		c->msg.msg_iovlen = c->n_iov - c->iov_i;
		io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
	}
	c->send_armed = true;
}

bool conn_keep_alive(const struct conn *c)
{
	return c->req.keep_alive && !c->close_after && !c->srv->stopping;
}

/* Queue head (written into c->head) and the body pieces already in c->iov
 * from index 1 on, and start sending. */
void conn_send_response(struct conn *c, int status, size_t hlen, uint32_t n_body)
{
	struct server *srv = c->srv;

	if (status >= 0 && status < (int)ARRAY_SIZE(srv->cnt.http))
		srv->cnt.http[status]++;
	c->close_after = !conn_keep_alive(c);
	n_body = body_encode(c, status, &hlen, n_body);
	c->iov[0] = (struct iovec){c->head, hlen};
	c->n_iov = c->req.method == HTTP_HEAD ? 1 : 1 + n_body;
	c->iov_i = 0;
	c->state = CS_WRITE;
	c->t_active = clock_ns();
	log_debug("conn %d: %.*s -> %d", c->fd, (int)MIN(c->req.target.len, 120),
		  c->req.target.p ? c->req.target.p : "", status);
	conn_pump(c);
}

/* A response whose body (len bytes) is in c->wbuf, or none. */
void conn_reply(struct conn *c, int status, const char *ctype, const char *extra, size_t len)
{
	int hlen;

	c->close_after = !conn_keep_alive(c);
	hlen = http_write_response(c->head, sizeof(c->head), status, ctype, extra, len,
				   !c->close_after);
	if (hlen < 0) {
		conn_close(c);
		return;
	}
	c->iov[1] = (struct iovec){c->wbuf, len};
	conn_send_response(c, status, (size_t)hlen, len ? 1 : 0);
}

/* {"error": msg} with status; close: the connection cannot go on. */
void conn_error(struct conn *c, int status, const char *msg, bool close)
{
	const char *extra = NULL;
	char allow[64];
	int n;

	if (close)
		c->close_after = true;
	if (buf_grow(&c->wbuf, &c->wcap, strlen(msg) * 6 + 64)) {
		conn_close(c);
		return;
	}
	n = kserve_encode_error(c->wbuf, c->wcap, msg);
	if (status == 405 && c->tgt.allow) {
		snprintf(allow, sizeof(allow), "Allow: %s\r\n", c->tgt.allow);
		extra = allow;
	} else if (status == 503) {
		extra = "Retry-After: 1\r\n";
	}
	log_debug("conn %d: error %d: %s", c->fd, status, msg);
	conn_reply(c, status, "application/json", extra, n < 0 ? 0 : (size_t)n);
}

/* Error for a code of the lower layers, with its message. */
void conn_fail(struct conn *c, int code, const char *msg)
{
	conn_error(c, kserve_http_status(code), msg, false);
}

/* Encode a body with enc(c->wbuf, cap, arg) into c->wbuf, growing it. */
int conn_body(struct conn *c, int (*enc)(char *, size_t, const void *), const void *arg)
{
	int n;

	for (;;) {
		if (buf_grow(&c->wbuf, &c->wcap, 4096))
			return -ENOMEM;
		n = enc(c->wbuf, c->wcap, arg);
		if (n != -ENOSPC)
			return n;
		if (buf_grow(&c->wbuf, &c->wcap, c->wcap * 2))
			return -ENOMEM;
	}
}

/* ------------------------------------------------------------ lifecycle */

static void conn_unlink(struct conn *c)
{
	struct server *srv = c->srv;

	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
}

/*
 * Whether c keeps a receive or output buffer of cap bytes (above
 * RBUF_KEEP) for its next request; *kept is what c had counted for it.
 * A client that sends large tensors or gets large outputs again and again
 * (an image model's input, a transformer's hidden states: MBs) would
 * otherwise have the buffer allocated, and its pages faulted in by the
 * worker copying outputs, on every request. Bounded: each at most
 * BIG_KEEP, all connections' together at most CONN_KEEP.
 */
void conn_unkeep(struct conn *c, uint64_t *kept)
{
	c->srv->cnt.conn_kept -= *kept;
	*kept = 0;
}

bool conn_keep_big(struct conn *c, uint64_t *kept, uint64_t cap)
{
	struct server_counters *n = &c->srv->cnt;

	conn_unkeep(c, kept);
	if (cap > BIG_KEEP || n->conn_kept + cap > CONN_KEEP)
		return false;
	*kept = cap;
	n->conn_kept += cap;
	return true;
}

/*
 * The kept output buffer of a connection that closes waits, still counted,
 * for the next connection whose outputs need one (a client that
 * reconnects, a new client of the same model): its pages are faulted in
 * already. At most ARRAY_SIZE(srv->spare); the rest are freed.
 */
static void conn_spare_put(struct conn *c)
{
	struct server *srv = c->srv;
	uint32_t i;

	if (!c->okept)
		return;
	for (i = 0; i < ARRAY_SIZE(srv->spare); i++)
		if (!srv->spare[i].p) {
			srv->spare[i].p = c->obuf;
			srv->spare[i].cap = c->ocap;
			c->obuf = NULL;
			c->ocap = c->okept = 0;
			return;
		}
}

bool conn_spare_take(struct conn *c, uint64_t need)
{
	struct server *srv = c->srv;
	uint32_t i, k = UINT32_MAX;

	for (i = 0; i < ARRAY_SIZE(srv->spare); i++)
		if (srv->spare[i].p && srv->spare[i].cap >= need &&
		    (k == UINT32_MAX || srv->spare[i].cap < srv->spare[k].cap))
			k = i;
	if (k == UINT32_MAX)
		return false;
	conn_unkeep(c, &c->okept); /* the old one */
	free(c->obuf);
	c->obuf = srv->spare[k].p;
	c->ocap = c->okept = srv->spare[k].cap; /* counted as a spare already */
	srv->spare[k].p = NULL;
	return true;
}

void server_free_spares(struct server *srv)
{
	uint32_t i;

	for (i = 0; i < ARRAY_SIZE(srv->spare); i++) {
		srv->cnt.conn_kept -= srv->spare[i].p ? srv->spare[i].cap : 0;
		free(srv->spare[i].p);
		srv->spare[i].p = NULL;
	}
}

/* Drop the request's resources: record, decode arena, big buffers (the
 * output buffer may stay, conn_keep_big). */
void conn_release_request(struct conn *c)
{
	if (c->sreq && !c->inflight) {
		sched_req_put(c->srv->s, c->sreq);
		c->sreq = NULL;
	}
	if (c->arena.size > ARENA_KEEP)
		arena_fini(&c->arena);
	arena_reset(&c->arena);
	if (c->ocap > RBUF_KEEP && !conn_keep_big(c, &c->okept, c->ocap)) {
		free(c->obuf);
		c->obuf = NULL;
		c->ocap = 0;
	}
	if (c->zcap > RBUF_KEEP) {
		free(c->zbuf);
		c->zbuf = NULL;
		c->zcap = 0;
	}
	if (c->wcap > RBUF_KEEP) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->wcap = 0;
	}
	if (c->ccap > ARENA_KEEP) {
		free(c->cbuf);
		c->cbuf = NULL;
		c->ccap = 0;
	}
	c->e = NULL;
}

void conn_free(struct conn *c)
{
	struct server *srv = c->srv;

	conn_unlink(c);
	close(c->fd);
	conn_release_request(c);
	arena_fini(&c->arena);
	conn_spare_put(c);
	conn_unkeep(c, &c->okept);
	conn_unkeep(c, &c->rkept);
	free(c->rbuf);
	free(c->wbuf);
	free(c->obuf);
	free(c->zbuf);
	free(c->cbuf);
	body_fini(c);
	if (c->reject)
		srv->n_rejecting--;
	else
		srv->n_active--;
	srv->cnt.conns_open--;
	free(c);
}

void conn_maybe_free(struct conn *c)
{
	if (c->state != CS_CLOSED || c->recv_armed || c->send_armed || c->inflight || c->job)
		return;
	conn_free(c);
}

/* Shut the socket (which ends its pending recv/send) and free the
 * connection once nothing refers to it any more. */
void conn_close(struct conn *c)
{
	if (c->state == CS_CLOSED)
		return;
	c->state = CS_CLOSED;
	shutdown(c->fd, SHUT_RDWR);
	if (c->recv_armed)
		cancel_op(c->srv, ud(c, UD_RECV));
	if (c->send_armed)
		cancel_op(c->srv, ud(c, UD_SEND));
	conn_maybe_free(c);
}

static int conn_recv(struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed)
		return 0;
	if (c->rlen == c->rcap)
		return -ENOBUFS;
	sqe = sqe_get(c->srv, ud(c, UD_RECV));
	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
	c->recv_armed = true;
	return 0;
}

/* After the last response: shut the write side and read until the client
 * closes (or LINGER_NS passes), so it reads the response, not a reset. */
static void conn_linger(struct conn *c)
{
	c->state = CS_LINGER;
	c->t_active = clock_ns();
	shutdown(c->fd, SHUT_WR);
	if (c->recv_armed)
		return;
	c->rlen = 0;
	if (conn_recv(c))
		conn_close(c);
}

/* The whole response went out: the next request, or close. */
static void conn_response_sent(struct conn *c)
{
	char *p;

	conn_release_request(c);
	if (c->close_after) {
		conn_linger(c);
		return;
	}
	c->rlen -= c->req_len;
	memmove(c->rbuf, c->rbuf + c->req_len, c->rlen);
	c->req_len = 0;
	if (c->rcap > RBUF_KEEP && c->rlen < RBUF_MIN && !conn_keep_big(c, &c->rkept, c->rcap) &&
	    (p = malloc(RBUF_MIN))) {
		memcpy(p, c->rbuf, c->rlen);
		free(c->rbuf);
		c->rbuf = p;
		c->rcap = RBUF_MIN;
	}
	c->state = CS_READ;
	c->t_active = c->t_req = clock_ns();
	if (c->rlen)
		conn_parse(c);
	else if (conn_recv(c))
		conn_close(c);
}

void conn_new(struct server *srv, int fd)
{
	bool reject = srv->n_active >= srv->o.max_conns;
	struct conn *c;
	int one = 1;

	if ((reject && srv->n_rejecting >= MAX_REJECTING) || srv->stopping)
		goto out_close;
	c = aligned_alloc(64, ALIGN_UP(sizeof(*c), 64));
	if (!c)
		goto out_close;
	memset(c, 0, sizeof(*c));
	c->rbuf = malloc(RBUF_MIN);
	if (!c->rbuf) {
		free(c);
		goto out_close;
	}
	c->srv = srv;
	c->fd = fd;
	c->rcap = RBUF_MIN;
	c->reject = reject;
	c->t_active = clock_ns();
	http_req_init(&c->req, &srv->lim);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->cnt.conns_open++;
	srv->cnt.conns_total++;
	if (reject) {
		srv->n_rejecting++;
		srv->cnt.conns_rejected++;
		conn_error(c, 503, "too many connections; try again later", true);
		return;
	}
	srv->n_active++;
	if (conn_recv(c))
		conn_close(c);
	return;
out_close:
	if (reject)
		srv->cnt.conns_rejected++;
	close(fd);
}

/* ------------------------------------------------------------ dispatch */

static void conn_dispatch(struct conn *c)
{
	int ret = kserve_route(&c->req, &c->tgt);

	if (ret) {
		conn_error(c, c->tgt.status, err_msg(ret), false);
		return;
	}
	switch (c->tgt.route) {
	case KR_SERVER_META:
		ep_server_meta(c);
		break;
	case KR_LIVE:
		ep_health(c, false);
		break;
	case KR_READY:
		ep_health(c, true);
		break;
	case KR_MODEL_META:
		ep_model_meta(c, false);
		break;
	case KR_MODEL_CONFIG:
		ep_model_meta(c, true);
		break;
	case KR_MODEL_READY:
		ep_model_ready(c);
		break;
	case KR_INFER:
		ep_infer(c);
		break;
	case KR_REPO_INDEX:
		ep_repo_index(c);
		break;
	case KR_REPO_LOAD:
		ep_repo_control(c, true);
		break;
	case KR_REPO_UNLOAD:
		ep_repo_control(c, false);
		break;
	case KR_METRICS:
		ep_metrics(c);
		break;
	case KR_MODEL_STATS:
		ep_stats(c, false);
		break;
	case KR_STATS:
		ep_stats(c, true);
		break;
	default:
		conn_error(c, 404, "no such endpoint", false);
		break;
	}
}

/* Room for the rest of the request being read; 0 or -ENOMEM. */
static int conn_room(struct conn *c)
{
	uint64_t need = http_req_size(&c->req);
	uint64_t hdr_cap = (uint64_t)c->srv->lim.max_header + 1;

	if (!need)
		need = c->rlen < c->rcap ? c->rcap :
					   MIN(2 * (uint64_t)c->rcap, MAX(hdr_cap, c->rcap));
	if (need <= c->rcap)
		return 0;
	return buf_grow(&c->rbuf, &c->rcap, (size_t)need);
}

/* Parse what has arrived: serve a complete request, or read more. */
static void conn_parse(struct conn *c)
{
	ssize_t n = http_parse(&c->req, c->rbuf, c->rlen);
	const char *why;
	int status;

	if (n < 0) {
		conn_error(c, c->req.status, c->req.error, true);
		return;
	}
	if (n == 0) {
		if (http_need_continue(&c->req)) {
			c->cont_left = sizeof(HTTP_CONTINUE) - 1;
			conn_pump(c);
		}
		if (conn_room(c) || conn_recv(c))
			conn_close(c);
		return;
	}
	c->req_len = (size_t)n;
	c->t_done = clock_ns();
	c->state = CS_BUSY;
	status = body_decode(c, &why);
	if (status)
		conn_error(c, status, why, false);
	else
		conn_dispatch(c);
}

/* ------------------------------------------------------------ completions */

void conn_on_recv(struct conn *c, int res)
{
	c->recv_armed = false;
	if (c->state == CS_CLOSED) {
		conn_maybe_free(c);
		return;
	}
	if (res <= 0) {
		if (res < 0 && res != -ECONNRESET && res != -ECANCELED)
			log_debug("conn %d: recv: %s", c->fd, strerror(-res));
		conn_close(c);
		return;
	}
	if (c->state == CS_LINGER) {
		c->rlen = 0;
		if (conn_recv(c))
			conn_close(c);
		return;
	}
	if (c->state != CS_READ)
		return; /* an error response is on its way; then we linger */
	if (!c->rlen)
		c->t_req = clock_ns();
	c->rlen += (size_t)res;
	c->t_active = clock_ns();
	conn_parse(c);
}

/* Advance the response's iovecs by n sent bytes. */
static void iov_advance(struct conn *c, size_t n)
{
	while (n && c->iov_i < c->n_iov) {
		struct iovec *v = &c->iov[c->iov_i];

		if (n < v->iov_len) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
			return;
		}
		n -= v->iov_len;
		c->iov_i++;
	}
	while (c->iov_i < c->n_iov && !c->iov[c->iov_i].iov_len)
		c->iov_i++;
}

void conn_on_send(struct conn *c, int res)
{
	bool cont = c->cont_inflight;

	c->send_armed = false;
	c->cont_inflight = false;
	if (c->state == CS_CLOSED) {
		conn_maybe_free(c);
		return;
	}
	if (res <= 0) {
		if (res != -EPIPE && res != -ECONNRESET)
			log_debug("conn %d: send: %s", c->fd, res ? strerror(-res) : "0 bytes");
		conn_close(c);
		return;
	}
	c->t_active = clock_ns();
	if (cont) {
		c->cont_left -= MIN((uint32_t)res, c->cont_left);
	} else if (c->state == CS_WRITE) {
		iov_advance(c, (size_t)res);
		if (c->iov_i == c->n_iov) {
			conn_response_sent(c);
			return;
		}
	}
	conn_pump(c);
}

/* Timeouts of one connection at time now. */
void conn_tick(struct conn *c, uint64_t now)
{
	const struct server_opts *o = &c->srv->o;
	uint64_t idle = (uint64_t)o->idle_timeout_ms * 1000000u;
	uint64_t req = (uint64_t)o->request_timeout_ms * 1000000u;
	char msg[96];

	if (c->state == CS_READ && !c->rlen && now - c->t_active > idle) {
		log_debug("conn %d: idle for %u ms, closing", c->fd, ms_of(now - c->t_active));
		conn_close(c);
	} else if (c->state == CS_READ && c->rlen && now - c->t_req > req) {
		snprintf(msg, sizeof(msg), "the request did not arrive complete within %.1f s",
			 (double)o->request_timeout_ms / 1e3);
		conn_error(c, 408, msg, true);
	} else if (c->state == CS_WRITE && now - c->t_active > idle) {
		log_debug("conn %d: client does not read its response, closing", c->fd);
		conn_close(c);
	} else if (c->state == CS_LINGER && now - c->t_active > LINGER_NS) {
		conn_close(c);
	}
}
