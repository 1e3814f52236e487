/* SPDX-License-Identifier: MIT */
/*
 * net/server: the io_uring loop, its connections, and the KServe v2
 * endpoints on top of the scheduler. server.h describes the behaviour.
 *
 * Every submission carries user_data = pointer | tag: the pointer is a
 * connection or the server (both 64-byte aligned), the tag names the
 * operation (enum ud_tag). A connection is freed only when none of its
 * operations is outstanding, no worker holds its request record and no
 * helper thread works for it (conn_maybe_free).
 */
#define _GNU_SOURCE
#include "net/server.h"

#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/http.h"
#include "net/kserve.h"

#define RING_ENTRIES 1024u
#define CQ_ENTRIES 16384u
#define CQE_BATCH 256u
#define RBUF_MIN 16384u
#define RBUF_KEEP (64u << 10)	     /* shrink the receive buffer above this */
#define ARENA_KEEP (4u << 20)	     /* free a decode arena above this */
#define OBUF_LIMIT (1ull << 30)	     /* outputs of one request, at most */
#define LINGER_NS 2000000000ull	     /* lingering close: drain input this long */
#define STOP_GRACE_NS 30000000000ull /* shutdown: then close what is left */
#define MAX_JOBS 16u
#define MAX_REJECTING 64u
#define MAX_VERSIONS 64u
#define TICK_MIN_NS 50000000ull
#define TICK_MAX_NS 1000000000ull

enum ud_tag {
	UD_IGNORE = 0, /* a cancellation: nothing to do */
	UD_ACCEPT = 1,
	UD_RECV = 2,
	UD_SEND = 3,
	UD_CHAN = 4, /* the completion channel's eventfd */
	UD_JOBS = 5, /* the helper threads' eventfd */
	UD_SIGNAL = 6,
	UD_TICK = 7,
};
#define UD_TAG_MASK 15ull

enum conn_state {
	CS_READ,   /* reading a request */
	CS_BUSY,   /* its request is with a worker or a helper thread */
	CS_WRITE,  /* sending a response */
	CS_LINGER, /* write side shut after the last response; draining input */
	CS_CLOSED, /* socket shut; waiting for outstanding operations */
};

struct server;
struct job;

/*
 * A connection. Owned by the loop thread; workers see only its request
 * record (sreq) and helpers only its job, both handed back by eventfd.
 * rbuf[0] is always the start of the request being read or served.
 */
struct conn {
	struct server *srv;
	struct conn *prev, *next; /* srv->conns */
	int fd;
	uint8_t state; /* enum conn_state */
	bool recv_armed, send_armed;
	bool cont_inflight; /* the armed send is the 100 Continue */
	bool close_after;   /* close once this response is sent */
	bool reject;	    /* over --max-conns */
	bool inflight;	    /* sreq is with a worker */
	uint32_t cont_left; /* bytes of "100 Continue" still to send */
	uint64_t t_active;  /* last progress */
	uint64_t t_req;	    /* first byte of the request being read */
	uint64_t t_done;    /* the request was complete */

	char *rbuf;
	size_t rlen, rcap, req_len;
	struct http_req req;

	/* the request being served */
	struct kserve_target tgt;
	struct kserve_request kr;
	struct arena arena;
	struct repo_entry *e;
	struct sched_req *sreq;
	struct job *job;
	uint32_t out_bin; /* bit i: graph output i goes out as binary */
	char ver[16];
	void *obuf; /* outputs too big for the record's buffer */
	uint64_t ocap;

	/* the response */
	char head[1024];
	char *wbuf;
	size_t wcap;
	struct iovec iov[2 + SCHED_MAX_IO];
	uint32_t n_iov, iov_i;
	struct msghdr msg;
} __attribute__((aligned(64)));

/* A load or unload running on a helper thread. */
struct job {
	struct server *srv;
	struct conn *c;
	struct job *next;
	pthread_t thread;
	bool load;
	char model[NAME_LEN];
	_Atomic bool done;
	int ret;
	char msg[SCHED_MSG_LEN];
};

struct server {
	struct io_uring ring;
	struct server_opts o;
	struct http_limits lim;
	struct sched *s;
	struct sched_chan *chan;
	int lfd, sfd, jfd;
	char addr[INET6_ADDRSTRLEN + 16];
	int port;

	bool ring_ok, multishot, accept_armed, accept_paused;
	bool chan_poll, stopping;
	int fatal;
	uint64_t stop_at, tick_ns;
	uint64_t chan_val, job_val;
	struct signalfd_siginfo sig;
	struct __kernel_timespec tick_ts;

	struct conn *conns;
	uint32_t n_active, n_rejecting;
	struct job *jobs;
	uint32_t n_jobs;
	struct server_counters cnt;

	struct sched_stats *stats; /* /metrics scratch */
	uint8_t *resident;
	struct repo_info *index; /* index scratch */
	uint32_t index_cap;
	char (*dev)[16]; /* worker names */
} __attribute__((aligned(64)));

static void conn_parse(struct conn *c);
static void conn_pump(struct conn *c);
static void conn_close(struct conn *c);

/* ------------------------------------------------------------ ring helpers */

static inline uint64_t ud(const void *p, enum ud_tag t)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)t;
}

/* A submission slot; a full queue is flushed first. NULL only if the
 * kernel refuses to take submissions. */
static struct io_uring_sqe *sqe_get(struct server *srv, uint64_t data)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&srv->ring);
	int i;

	for (i = 0; !sqe && i < 3; i++) {
		io_uring_submit(&srv->ring);
		sqe = io_uring_get_sqe(&srv->ring);
	}
	if (!sqe) {
		log_error("server: io_uring submission queue stays full");
		return NULL;
	}
	io_uring_sqe_set_data64(sqe, data);
	return sqe;
}

static void cancel_op(struct server *srv, uint64_t data)
{
	struct io_uring_sqe *sqe = sqe_get(srv, ud(NULL, UD_IGNORE));

	if (sqe)
		io_uring_prep_cancel64(sqe, data, 0);
}

/* ------------------------------------------------------------ small helpers */

static uint32_t ms_of(uint64_t ns)
{
	return (uint32_t)(ns / 1000000u);
}

static int grow(char **buf, size_t *cap, size_t need)
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

/* "" -> 0; a positive decimal -> it; anything else -> -EINVAL. */
static int parse_version(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	*out = 0;
	if (!*s)
		return 0;
	for (; *s >= '0' && *s <= '9' && v <= UINT32_MAX; s++)
		v = v * 10 + (uint64_t)(*s - '0');
	if (*s || !v || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
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

static bool keep_alive(const struct conn *c)
{
	return c->req.keep_alive && !c->close_after && !c->srv->stopping;
}

/* Queue head (written into c->head) and the body pieces already in c->iov
 * from index 1 on, and start sending. */
static void conn_send_response(struct conn *c, int status, size_t hlen, uint32_t n_body)
{
	struct server *srv = c->srv;

	if (status >= 0 && status < (int)ARRAY_SIZE(srv->cnt.http))
		srv->cnt.http[status]++;
	c->close_after = !keep_alive(c);
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
static void conn_reply(struct conn *c, int status, const char *ctype, const char *extra, size_t len)
{
	int hlen;

	c->close_after = !keep_alive(c);
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
static void conn_error(struct conn *c, int status, const char *msg, bool close)
{
	const char *extra = NULL;
	char allow[64];
	int n;

	if (close)
		c->close_after = true;
	if (grow(&c->wbuf, &c->wcap, strlen(msg) * 6 + 64)) {
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
static void conn_fail(struct conn *c, int code, const char *msg)
{
	conn_error(c, kserve_http_status(code), msg, false);
}

/* Encode a body with enc(c->wbuf, cap, arg) into c->wbuf, growing it. */
static int conn_body(struct conn *c, int (*enc)(char *, size_t, const void *), const void *arg)
{
	int n;

	for (;;) {
		if (grow(&c->wbuf, &c->wcap, 4096))
			return -ENOMEM;
		n = enc(c->wbuf, c->wcap, arg);
		if (n != -ENOSPC)
			return n;
		if (grow(&c->wbuf, &c->wcap, c->wcap * 2))
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

/* Drop the request's resources: record, decode arena, big buffers. */
static void conn_release_request(struct conn *c)
{
	if (c->sreq && !c->inflight) {
		sched_req_put(c->srv->s, c->sreq);
		c->sreq = NULL;
	}
	if (c->arena.size > ARENA_KEEP)
		arena_fini(&c->arena);
	arena_reset(&c->arena);
	if (c->ocap > RBUF_KEEP) {
		free(c->obuf);
		c->obuf = NULL;
		c->ocap = 0;
	}
	if (c->wcap > RBUF_KEEP) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->wcap = 0;
	}
	c->e = NULL;
}

static void conn_free(struct conn *c)
{
	struct server *srv = c->srv;

	conn_unlink(c);
	close(c->fd);
	conn_release_request(c);
	arena_fini(&c->arena);
	free(c->rbuf);
	free(c->wbuf);
	free(c->obuf);
	if (c->reject)
		srv->n_rejecting--;
	else
		srv->n_active--;
	srv->cnt.conns_open--;
	free(c);
}

static void conn_maybe_free(struct conn *c)
{
	if (c->state != CS_CLOSED || c->recv_armed || c->send_armed || c->inflight || c->job)
		return;
	conn_free(c);
}

/* Shut the socket (which ends its pending recv/send) and free the
 * connection once nothing refers to it any more. */
static void conn_close(struct conn *c)
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
	if (c->rcap > RBUF_KEEP && c->rlen < RBUF_MIN && (p = malloc(RBUF_MIN))) {
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

static void conn_new(struct server *srv, int fd)
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

/* ------------------------------------------------------------ endpoints */

static int lookup(struct conn *c, struct repo_entry **e)
{
	uint32_t v;

	if (parse_version(c->tgt.version, &v))
		return err_set(DPRT_ENOMODEL, "model '%s' has no version '%s'", c->tgt.model,
			       c->tgt.version);
	return repo_lookup(sched_repo(c->srv->s), c->tgt.model, v, e);
}

/* The entry exists but does not serve: 503 with its state and reason. */
static void conn_not_ready(struct conn *c, struct repo_entry *e, const char *what)
{
	char why[SCHED_MSG_LEN], msg[SCHED_MSG_LEN + NAME_LEN + 96];

	repo_entry_reason(e, why, sizeof(why));
	snprintf(msg, sizeof(msg), "model '%s' version %u is %s (%s%s%s)", repo_entry_name(e),
		 repo_entry_version(e), what, repo_state_name(repo_entry_state(e)),
		 why[0] ? ": " : "", why);
	conn_error(c, 503, msg, false);
}

static void ep_health(struct conn *c, bool ready)
{
	if (ready && c->srv->stopping) {
		conn_error(c, 503, "the server is shutting down", false);
		return;
	}
	conn_reply(c, 200, NULL, NULL, 0);
}

static int enc_server_meta(char *buf, size_t cap, const void *arg)
{
	return kserve_encode_server_meta(buf, cap, arg);
}

static void ep_server_meta(struct conn *c)
{
	int n = conn_body(c, enc_server_meta, c->srv->o.version);

	if (n < 0)
		conn_fail(c, n, "cannot encode the server metadata");
	else
		conn_reply(c, 200, "application/json", NULL, (size_t)n);
}

static void ep_model_ready(struct conn *c)
{
	struct repo_entry *e;
	int ret = lookup(c, &e);

	if (ret)
		conn_fail(c, ret, err_msg(ret));
	else if (repo_entry_state(e) != REPO_READY)
		conn_not_ready(c, e, "not ready");
	else
		conn_reply(c, 200, NULL, NULL, 0);
}

/* Fill the probe shapes of g's inputs for one batch and seq value. */
static void probe_inputs(const struct graph *g, int64_t batch, int64_t seq, struct shape *in)
{
	uint32_t i;
	int d;

	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];

		in[i].dtype = io->dtype;
		in[i].ndim = io->ndim;
		for (d = 0; d < io->ndim; d++)
			in[i].dims[d] = io->dims[d] == DIM_BATCH ? batch :
					io->dims[d] == DIM_SEQ	 ? seq :
								   io->dims[d];
	}
}

/*
 * Output dims for the metadata: infer the shapes at two probe points that
 * differ in batch and seq; a dim that differs between them follows from
 * batch or seq and is written as -1. 0 or an error (outputs left ndim 0).
 */
static int meta_output_dims(const struct graph *g, struct io_desc *outs)
{
	int64_t b2 = g->max_batch && g->max_batch < 3 ? g->max_batch : 3;
	int64_t s2 = g->max_seq >= 7 ? 7 : g->max_seq, s1 = s2 > 5 ? 5 : MAX(s2 - 1, 1);
	struct shape *in = calloc(2 * (size_t)g->n_inputs + 1, sizeof(*in));
	struct shape *sh = calloc(2 * (size_t)g->n_tensors + 1, sizeof(*sh));
	uint32_t i;
	int d, ret = -ENOMEM;

	if (!in || !sh)
		goto out_free;
	probe_inputs(g, b2 > 1 ? b2 - 1 : 1, s1, in);
	probe_inputs(g, b2, s2, in + g->n_inputs);
	ret = graph_infer_shapes(g, in, sh);
	if (!ret)
		ret = graph_infer_shapes(g, in + g->n_inputs, sh + g->n_tensors);
	for (i = 0; !ret && i < g->n_outputs; i++) {
		const struct shape *a = &sh[g->outputs[i].tensor];
		const struct shape *b = &sh[g->n_tensors + g->outputs[i].tensor];

		outs[i].ndim = a->ndim;
		for (d = 0; d < a->ndim; d++)
			outs[i].dims[d] = a->dims[d] == b->dims[d] ? a->dims[d] : -1;
	}
out_free:
	free(in);
	free(sh);
	return ret;
}

/* Make sure srv->index holds every row of the repository index; *n rows. */
static int index_fetch(struct server *srv, uint32_t *n)
{
	struct repo_info *p;

	for (;;) {
		repo_index(sched_repo(srv->s), srv->index, srv->index_cap, n);
		if (*n <= srv->index_cap)
			return 0;
		p = realloc(srv->index, sizeof(*p) * *n);
		if (!p)
			return -ENOMEM;
		srv->index = p;
		srv->index_cap = *n;
	}
}

struct meta_ctx {
	struct kserve_model_meta m;
	const char *vptr[MAX_VERSIONS];
	char vstr[MAX_VERSIONS][12];
};

static int enc_model_meta(char *buf, size_t cap, const void *arg)
{
	const struct meta_ctx *mc = arg;

	return kserve_encode_model_meta(buf, cap, &mc->m);
}

static void meta_versions(struct server *srv, const char *name, struct meta_ctx *mc)
{
	uint32_t n = 0, i;

	if (index_fetch(srv, &n))
		n = MIN(n, srv->index_cap);
	for (i = 0; i < n && mc->m.n_versions < MAX_VERSIONS; i++) {
		if (strcmp(srv->index[i].name, name))
			continue;
		snprintf(mc->vstr[mc->m.n_versions], sizeof(mc->vstr[0]), "%u",
			 srv->index[i].version);
		mc->vptr[mc->m.n_versions] = mc->vstr[mc->m.n_versions];
		mc->m.n_versions++;
	}
}

static void ep_model_meta(struct conn *c)
{
	struct meta_ctx *mc = calloc(1, sizeof(*mc));
	const struct graph *g;
	struct io_desc *outs = NULL;
	struct repo_entry *e;
	int ret = mc ? lookup(c, &e) : -ENOMEM;

	if (ret) {
		conn_fail(c, ret, err_msg(ret));
		goto out_free;
	}
	g = repo_entry_graph(e);
	if (!g) {
		conn_not_ready(c, e, "not loaded yet, so its signature is not known");
		goto out_free;
	}
	outs = malloc(sizeof(*outs) * (g->n_outputs + 1));
	if (!outs) {
		conn_fail(c, -ENOMEM, "out of memory");
		goto out_free;
	}
	memcpy(outs, g->outputs, sizeof(*outs) * g->n_outputs);
	ret = meta_output_dims(g, outs);
	if (ret)
		log_warn("model '%s': cannot infer its output shapes: %s", g->name, err_msg(ret));
	mc->m = (struct kserve_model_meta){.name = repo_entry_name(e),
					   .versions = mc->vptr,
					   .n_inputs = g->n_inputs,
					   .n_outputs = g->n_outputs,
					   .inputs = g->inputs,
					   .outputs = outs};
	meta_versions(c->srv, repo_entry_name(e), mc);
	ret = conn_body(c, enc_model_meta, mc);
	if (ret < 0)
		conn_fail(c, ret, "cannot encode the model metadata");
	else
		conn_reply(c, 200, "application/json", NULL, (size_t)ret);
out_free:
	free(outs);
	free(mc);
}

struct index_ctx {
	struct kserve_repo_entry *rows;
	uint32_t n;
};

static int enc_index(char *buf, size_t cap, const void *arg)
{
	const struct index_ctx *ic = arg;

	return kserve_encode_repo_index(buf, cap, ic->rows, ic->n);
}

static void ep_repo_index(struct conn *c)
{
	struct server *srv = c->srv;
	struct index_ctx ic = {0};
	char(*vs)[12] = NULL;
	bool ready_only;
	uint32_t n = 0, i;
	int ret;

	ret = kserve_decode_repo_index(c->req.body.p, c->req.body.len, &ready_only);
	if (!ret)
		ret = index_fetch(srv, &n);
	if (!ret && !((ic.rows = calloc(n + 1, sizeof(*ic.rows))) && (vs = calloc(n + 1, 12))))
		ret = err_set(-ENOMEM, "out of memory");
	for (i = 0; !ret && i < n; i++) {
		const struct repo_info *ri = &srv->index[i];

		if (ready_only && ri->state != REPO_READY)
			continue;
		snprintf(vs[ic.n], sizeof(vs[0]), "%u", ri->version);
		ic.rows[ic.n] = (struct kserve_repo_entry){
			ri->name, vs[ic.n], repo_state_name((enum repo_state)ri->state),
			ri->reason};
		ic.n++;
	}
	if (!ret)
		ret = conn_body(c, enc_index, &ic);
	if (ret < 0)
		conn_fail(c, ret, err_msg(ret));
	else
		conn_reply(c, 200, "application/json", NULL, (size_t)ret);
	free(ic.rows);
	free(vs);
}

static void ep_metrics(struct conn *c)
{
	struct server *srv = c->srv;
	struct sbuf b = {0};
	struct repo_entry *e;
	uint32_t m, w, nw;

	sched_stats(srv->s, srv->stats);
	nw = srv->stats->n_workers;
	for (m = 0; m < srv->stats->n_models; m++) {
		const struct sched_model_stats *ms = &srv->stats->models[m];
		bool found = !repo_lookup(sched_repo(srv->s), ms->name, ms->version, &e);

		for (w = 0; w < nw; w++)
			srv->resident[m * nw + w] = found &&
						    worker_has_model(sched_worker(srv->s, w), e);
	}
	if (metrics_render(&b, srv->stats, srv->resident, &srv->cnt)) {
		sbuf_free(&b);
		conn_fail(c, -ENOMEM, "out of memory");
		return;
	}
	free(c->wbuf);
	c->wbuf = b.p;
	c->wcap = b.cap;
	conn_reply(c, 200, METRICS_CONTENT_TYPE, NULL, b.len);
}

/* ------------------------------------------------------------ load/unload */

static void *job_main(void *arg)
{
	struct job *j = arg;
	struct sched *s = j->srv->s;
	uint64_t one = 1;
	int ret;

	if (j->load) {
		ret = repo_scan(sched_repo(s));
		if (ret)
			log_warn("repository rescan: %s", err_msg(ret));
		j->ret = sched_load(s, j->model, 0);
	} else {
		j->ret = sched_unload(s, j->model, 0);
	}
	if (j->ret)
		snprintf(j->msg, sizeof(j->msg), "%s", err_msg(j->ret));
	/* Release: pairs with the acquire in jobs_reap(). */
	atomic_store_explicit(&j->done, true, memory_order_release);
	if (write(j->srv->jfd, &one, sizeof(one)) < 0)
		log_error("server: eventfd write: %s", strerror(errno));
	return NULL;
}

static void ep_repo_control(struct conn *c, bool load)
{
	struct server *srv = c->srv;
	struct job *j;
	int ret;

	if (srv->n_jobs >= MAX_JOBS) {
		conn_error(c, 503, "too many model loads and unloads in progress", false);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		conn_fail(c, -ENOMEM, "out of memory");
		return;
	}
	j->srv = srv;
	j->c = c;
	j->load = load;
	snprintf(j->model, sizeof(j->model), "%s", c->tgt.model);
	ret = pthread_create(&j->thread, NULL, job_main, j);
	if (ret) {
		free(j);
		conn_error(c, 503, "cannot start a helper thread", false);
		return;
	}
	c->job = j;
	j->next = srv->jobs;
	srv->jobs = j;
	srv->n_jobs++;
}

static void job_finish(struct job *j)
{
	struct conn *c = j->c;

	c->job = NULL;
	if (!j->ret)
		log_info("model '%s': %s", j->model, j->load ? "loaded" : "unloaded");
	if (c->state == CS_CLOSED)
		conn_maybe_free(c);
	else if (j->ret)
		conn_fail(c, j->ret, j->msg);
	else
		conn_reply(c, 200, NULL, NULL, 0);
}

static void jobs_reap(struct server *srv)
{
	struct job **jp = &srv->jobs, *j;

	while ((j = *jp)) {
		/* Acquire: pairs with the release in job_main(). */
		if (!atomic_load_explicit(&j->done, memory_order_acquire)) {
			jp = &j->next;
			continue;
		}
		*jp = j->next;
		pthread_join(j->thread, NULL);
		srv->n_jobs--;
		job_finish(j);
		free(j);
	}
}

/* ------------------------------------------------------------ inference */

/* The decode arena, sized for the worst case of this body: a JSON number
 * takes at least 2 bytes and becomes at most 8. */
static int conn_arena(struct conn *c, size_t body)
{
	size_t need = 4 * body + 8192;

	if (c->arena.size >= need)
		return 0;
	arena_fini(&c->arena);
	if (arena_init(&c->arena, need))
		return err_set(-ENOMEM, "cannot allocate %zu bytes to decode the request", need);
	return 0;
}

/* Point the record's outputs into c->obuf (64-byte aligned, grown). */
static int conn_obuf(struct conn *c, uint64_t need)
{
	void *p;

	if (need > OBUF_LIMIT)
		return err_set(-E2BIG, "the outputs need %llu bytes; at most %llu per request",
			       (unsigned long long)need, (unsigned long long)OBUF_LIMIT);
	if (need > c->ocap) {
		p = aligned_alloc(64, ALIGN_UP(need, 64));
		if (!p)
			return err_set(-ENOMEM, "cannot allocate %llu bytes for the outputs",
				       (unsigned long long)need);
		free(c->obuf);
		c->obuf = p;
		c->ocap = ALIGN_UP(need, 64);
	}
	sched_req_set_output(c->sreq, c->obuf, c->ocap);
	return 0;
}

static void infer_fill(struct conn *c, const struct graph *g, const int *order)
{
	struct sched_req *r = c->sreq;
	uint32_t i;
	bool bin;

	r->model = c->e;
	r->chan = c->srv->chan;
	r->ctx = c;
	r->t_post = c->t_done;
	for (i = 0; i < g->n_inputs; i++) {
		const struct kserve_tensor *t;

		if (order[i] < 0)
			continue;
		t = &c->kr.inputs[order[i]];
		r->in[i] = (struct tview){t->shape, (void *)t->data, t->nbytes};
	}
	c->out_bin = 0;
	for (i = 0; i < g->n_outputs; i++) {
		if (!kserve_want_output(&c->kr, g->outputs[i].name, &bin))
			continue;
		r->out_mask |= 1u << i;
		c->out_bin |= (uint32_t)bin << i;
	}
}

/* Submit; when the outputs do not fit the record's own buffer, give it
 * one of this connection's and submit again. */
static int infer_submit(struct conn *c)
{
	struct sched_req *r = c->sreq;
	int ret = sched_req_prepare(r);

	if (!ret)
		ret = sched_submit(c->srv->s, r);
	if (ret != DPRT_EUNSUP || !r->out_need)
		return ret;
	ret = conn_obuf(c, r->out_need);
	if (ret) {
		r->status = ret;
		snprintf(r->msg, sizeof(r->msg), "%s", err_msg(ret));
		return ret;
	}
	return sched_submit(c->srv->s, r);
}

/* Status of a failed infer: a model the lookup found but that does not
 * serve (any more) is 503, not 404. */
static int infer_status(int code)
{
	if (code == DPRT_ENOMODEL || code == -ESHUTDOWN)
		return 503;
	return kserve_http_status(code);
}

/* Checks before a record is taken; 0 or the code (message in err_msg). */
static int infer_check(struct conn *c, const struct graph **g, int *order)
{
	const struct http_req *q = &c->req;
	int ret;

	ret = conn_arena(c, q->body.len);
	if (!ret)
		ret = kserve_decode_request(q->body.p, q->body.len, q->infer_header_len, &c->arena,
					    &c->kr);
	if (!ret)
		ret = lookup(c, &c->e);
	if (ret)
		return ret;
	*g = repo_entry_graph(c->e);
	if (repo_entry_state(c->e) != REPO_READY || !*g)
		return DPRT_ENOMODEL;
	if ((*g)->n_inputs > SCHED_MAX_IO || (*g)->n_outputs > SCHED_MAX_IO)
		return err_set(DPRT_EUNSUP, "model '%s' has more than %u inputs or outputs",
			       (*g)->name, SCHED_MAX_IO);
	return kserve_bind(&c->kr, (*g)->inputs, (*g)->n_inputs, (*g)->outputs, (*g)->n_outputs,
			   order);
}

static void ep_infer(struct conn *c)
{
	int order[SCHED_MAX_IO + 1];
	const struct graph *g = NULL;
	int ret = infer_check(c, &g, order);

	if (ret == DPRT_ENOMODEL && c->e) {
		c->srv->cnt.infer_rejected++;
		conn_not_ready(c, c->e, "not ready");
		return;
	}
	if (!ret && !(c->sreq = sched_req_get(c->srv->s)))
		ret = err_set(DPRT_EOVERLOAD, "overloaded: every request record is in use");
	if (!ret) {
		infer_fill(c, g, order);
		ret = infer_submit(c);
	}
	if (ret) {
		c->srv->cnt.infer_rejected++;
		conn_error(c, c->sreq ? infer_status(ret) : kserve_http_status(ret),
			   c->sreq ? c->sreq->msg : err_msg(ret), false);
		return;
	}
	snprintf(c->ver, sizeof(c->ver), "%u", repo_entry_version(c->e));
	c->inflight = true;
}

/* Response head with Server-Timing added after kserve's headers. */
static int infer_head(struct conn *c, const struct kserve_response *res, size_t json_len)
{
	const struct sched_req *r = c->sreq;
	int n = kserve_write_infer_head(c->head, sizeof(c->head) - 128, res, json_len,
					!c->close_after);

	if (n < 2)
		return -ENOSPC;
	n -= 2; /* before the blank line */
	n += snprintf(c->head + n, sizeof(c->head) - (size_t)n,
		      "Server-Timing: queue;dur=%.3f, load;dur=%.3f, compute;dur=%.3f\r\n\r\n",
		      (double)r->t_queue / 1e6, (double)r->t_load / 1e6, (double)r->t_exec / 1e6);
	return n;
}

static void infer_reply(struct conn *c)
{
	const struct sched_req *r = c->sreq;
	const struct graph *g = repo_entry_graph(r->model);
	struct kserve_out outs[SCHED_MAX_IO];
	struct kserve_param par[4] = {
		{.name = "queue_us", .type = KP_INT, .i = (int64_t)(r->t_queue / 1000)},
		{.name = "load_us", .type = KP_INT, .i = (int64_t)(r->t_load / 1000)},
		{.name = "compute_us", .type = KP_INT, .i = (int64_t)(r->t_exec / 1000)},
		{.name = "device", .type = KP_STRING, .s = c->srv->dev[r->worker]},
	};
	struct kserve_response res = {.model_name = repo_entry_name(r->model),
				      .model_version = c->ver,
				      .id = c->kr.id,
				      .cold_start = r->flags & SCHED_F_COLD,
				      .n_params = 4,
				      .params = par,
				      .outputs = outs};
	uint32_t i, nb = 1;
	uint64_t bin_len;
	size_t jl;
	int hl;

	for (i = 0; i < r->n_out; i++)
		if (r->out_mask >> i & 1)
			outs[res.n_outputs++] = (struct kserve_out){g->outputs[i].name,
								    r->out[i].shape, r->out[i].data,
								    c->out_bin >> i & 1};
	c->close_after = !keep_alive(c);
	if (grow(&c->wbuf, &c->wcap, kserve_response_bound(&res)) ||
	    kserve_encode_response(&res, c->wbuf, c->wcap, &jl, &bin_len) ||
	    (hl = infer_head(c, &res, jl)) < 0) {
		conn_error(c, 500, "cannot encode the response", false);
		return;
	}
	c->iov[nb++] = (struct iovec){c->wbuf, jl};
	for (i = 0; i < res.n_outputs; i++)
		if (outs[i].binary)
			c->iov[nb++] = (struct iovec){(void *)outs[i].data,
						      (size_t)shape_numel(&outs[i].shape) *
							      dtype_size(outs[i].shape.dtype)};
	conn_send_response(c, 200, (size_t)hl, nb - 1);
}

static void infer_done(struct sched_req *r)
{
	struct conn *c = r->ctx;

	c->inflight = false;
	if (c->state == CS_CLOSED) {
		conn_release_request(c);
		conn_maybe_free(c);
		return;
	}
	if (r->status) {
		conn_error(c, infer_status(r->status), r->msg, false);
		return;
	}
	infer_reply(c);
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
		ep_model_meta(c);
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
	return grow(&c->rbuf, &c->rcap, (size_t)need);
}

/* Parse what has arrived: serve a complete request, or read more. */
static void conn_parse(struct conn *c)
{
	ssize_t n = http_parse(&c->req, c->rbuf, c->rlen);

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
	conn_dispatch(c);
}

/* ------------------------------------------------------------ completions */

static void on_recv(struct conn *c, int res)
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

static void on_send(struct conn *c, int res)
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

static void arm_accept(struct server *srv)
{
	struct io_uring_sqe *sqe = sqe_get(srv, ud(srv, UD_ACCEPT));

	if (!sqe) {
		srv->accept_paused = true;
		return;
	}
	if (srv->multishot)
		io_uring_prep_multishot_accept(sqe, srv->lfd, NULL, NULL, SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, srv->lfd, NULL, NULL, SOCK_CLOEXEC);
	srv->accept_armed = true;
	srv->accept_paused = false;
}

static void on_accept(struct server *srv, int res, uint32_t flags)
{
	bool more = srv->multishot && (flags & IORING_CQE_F_MORE);

	if (res >= 0)
		conn_new(srv, res);
	if (more)
		return;
	srv->accept_armed = false;
	if (srv->stopping) {
		close(srv->lfd);
		srv->lfd = -1;
		return;
	}
	if (res == -EINVAL && srv->multishot) {
		log_debug("server: no multishot accept; accepting one at a time");
		srv->multishot = false;
	} else if (res < 0 && res != -EINTR && res != -ECONNABORTED) {
		/* Out of file descriptors or memory: retry on the next tick. */
		log_warn("server: accept: %s", strerror(-res));
		srv->accept_paused = true;
		return;
	}
	arm_accept(srv);
}

static void arm_read(struct server *srv, enum ud_tag tag, int fd, void *buf, size_t len)
{
	struct io_uring_sqe *sqe = sqe_get(srv, ud(srv, tag));

	if (!sqe) {
		srv->fatal = err_set(-EBUSY, "io_uring: cannot submit");
		return;
	}
	if (tag == UD_CHAN && srv->chan_poll)
		io_uring_prep_poll_add(sqe, fd, POLLIN);
	else
		io_uring_prep_read(sqe, fd, buf, (unsigned)len, 0);
}

static void arm_chan(struct server *srv)
{
	arm_read(srv, UD_CHAN, sched_chan_fd(srv->chan), &srv->chan_val, sizeof(srv->chan_val));
}

static void on_chan(struct server *srv, int res)
{
	struct sched_req *done[64];
	unsigned n, i;

	/* A kernel that will not wait on a non-blocking eventfd says EAGAIN:
	 * wait for readability instead (sched_complete_poll reads it). */
	if (res == -EAGAIN && !srv->chan_poll) {
		log_debug("server: completion eventfd: polling instead of reading");
		srv->chan_poll = true;
	} else if (res < 0 && res != -EINTR && res != -EAGAIN) {
		log_error("server: completion eventfd: %s", strerror(-res));
	}
	do {
		n = sched_complete_poll(srv->chan, done, ARRAY_SIZE(done));
		for (i = 0; i < n; i++)
			infer_done(done[i]);
	} while (n == ARRAY_SIZE(done));
	arm_chan(srv);
}

static void arm_tick(struct server *srv)
{
	struct io_uring_sqe *sqe = sqe_get(srv, ud(srv, UD_TICK));

	if (!sqe) {
		srv->fatal = err_set(-EBUSY, "io_uring: cannot submit");
		return;
	}
	srv->tick_ts.tv_sec = (long long)(srv->tick_ns / 1000000000u);
	srv->tick_ts.tv_nsec = (long long)(srv->tick_ns % 1000000000u);
	io_uring_prep_timeout(sqe, &srv->tick_ts, 0, 0);
}

/* Timeouts of one connection at time now. */
static void conn_tick(struct conn *c, uint64_t now)
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

static void on_tick(struct server *srv)
{
	uint64_t now = clock_ns();
	struct conn *c, *next;

	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (srv->stopping && now - srv->stop_at > STOP_GRACE_NS && c->state != CS_BUSY)
			conn_close(c);
		else
			conn_tick(c, now);
	}
	if (srv->accept_paused && !srv->stopping)
		arm_accept(srv);
	arm_tick(srv);
}

/* Graceful stop on the first signal, closing of the rest on the second. */
static void begin_stop(struct server *srv, bool force)
{
	struct conn *c, *next;

	if (!srv->stopping) {
		srv->stopping = true;
		srv->stop_at = clock_ns();
		log_info("shutting down: %u connections open, %u loads in progress", srv->n_active,
			 srv->n_jobs);
		if (srv->accept_armed) {
			cancel_op(srv, ud(srv, UD_ACCEPT));
		} else if (srv->lfd >= 0) {
			close(srv->lfd);
			srv->lfd = -1;
		}
	}
	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (c->state == CS_READ || (force && c->state != CS_BUSY))
			conn_close(c);
		else
			c->close_after = true;
	}
}

static void on_signal(struct server *srv, int res)
{
	if (res == (int)sizeof(srv->sig)) {
		log_info("received %s", strsignal((int)srv->sig.ssi_signo));
		begin_stop(srv, srv->stopping);
	} else if (res < 0 && res != -EINTR && res != -EAGAIN) {
		log_error("server: signalfd: %s", strerror(-res));
	}
	arm_read(srv, UD_SIGNAL, srv->sfd, &srv->sig, sizeof(srv->sig));
}

static void on_jobs(struct server *srv, int res)
{
	if (res < 0 && res != -EINTR && res != -EAGAIN)
		log_error("server: helper eventfd: %s", strerror(-res));
	jobs_reap(srv);
	arm_read(srv, UD_JOBS, srv->jfd, &srv->job_val, sizeof(srv->job_val));
}

static void dispatch_cqe(struct server *srv, uint64_t data, int res, uint32_t flags)
{
	void *p = (void *)(uintptr_t)(data & ~UD_TAG_MASK);

	switch ((enum ud_tag)(data & UD_TAG_MASK)) {
	case UD_IGNORE:
		break;
	case UD_ACCEPT:
		on_accept(srv, res, flags);
		break;
	case UD_RECV:
		on_recv(p, res);
		break;
	case UD_SEND:
		on_send(p, res);
		break;
	case UD_CHAN:
		on_chan(srv, res);
		break;
	case UD_JOBS:
		on_jobs(srv, res);
		break;
	case UD_SIGNAL:
		on_signal(srv, res);
		break;
	case UD_TICK:
		on_tick(srv);
		break;
	}
}

/* ------------------------------------------------------------ setup */

static pthread_t signal_thread;

/*
 * Threads started before the signals were blocked (OpenBLAS makes its pool
 * when the library loads) still take SIGINT/SIGTERM: pass the signal on
 * to the thread that blocked it, where the signalfd sees it.
 */
static void forward_signal(int sig)
{
	int saved = errno;

	pthread_kill(signal_thread, sig);
	errno = saved;
}

int server_signals_block(void)
{
	struct sigaction sa = {.sa_handler = forward_signal, .sa_flags = SA_RESTART};
	sigset_t set;
	int ret;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	/* Block first: the handler must never run on this thread. */
	ret = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (ret)
		return err_set(-ret, "cannot block SIGINT/SIGTERM: %s", strerror(ret));
	signal_thread = pthread_self();
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
		return err_set(-errno, "sigaction: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

/* Split ADDR into host ("" = any) and port. */
static int split_listen(const char *spec, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon = strrchr(spec, ':');
	size_t n;

	if (!colon || !colon[1] || strlen(colon + 1) >= plen ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return -EINVAL;
	n = (size_t)(colon - spec);
	if (n >= 2 && spec[0] == '[' && spec[n - 1] == ']') {
		spec++;
		n -= 2;
	} else if (memchr(spec, ':', n) || memchr(spec, '[', n)) {
		return -EINVAL; /* IPv6 without brackets */
	}
	if (n >= hlen)
		return -EINVAL;
	memcpy(host, spec, n);
	host[n] = 0;
	snprintf(port, plen, "%s", colon + 1);
	return atoi(port) > 65535 ? -EINVAL : 0;
}

static int listen_on(const struct addrinfo *ai)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	int one = 1, zero = 0;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, SOMAXCONN)) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

static void describe_bound(struct server *srv)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";

	if (getsockname(srv->lfd, (struct sockaddr *)&ss, &len))
		return;
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		srv->port = ntohs(a->sin6_port);
		snprintf(srv->addr, sizeof(srv->addr), "[%s]:%d", ip, srv->port);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		srv->port = ntohs(a->sin_port);
		snprintf(srv->addr, sizeof(srv->addr), "%s:%d", ip, srv->port);
	}
}

/* Listen on the first address of host:port of that family that takes it;
 * the descriptor, or -errno with *why set. */
static int listen_first(const char *host, const char *port, int family, const char **why)
{
	struct addrinfo hints = {
		.ai_family = family, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res, *ai;
	int ret, fd = -EADDRNOTAVAIL;

	ret = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (ret) {
		*why = gai_strerror(ret);
		return -EADDRNOTAVAIL;
	}
	for (ai = res; ai && fd < 0; ai = ai->ai_next)
		fd = listen_on(ai);
	freeaddrinfo(res);
	*why = fd < 0 ? strerror(-fd) : NULL;
	return fd;
}

static int bind_listen(struct server *srv, const char *spec)
{
	char host[256], port[8];
	const char *why = NULL;
	int fd;

	if (split_listen(spec, host, sizeof(host), port, sizeof(port)))
		return err_set(DPRT_EUSAGE,
			       "--listen '%s': expected :PORT, HOST:PORT or "
			       "[IPV6]:PORT",
			       spec);
	/* No host: every address, IPv6 dual-stack where the kernel has IPv6. */
	fd = listen_first(host, port, host[0] ? AF_UNSPEC : AF_INET6, &why);
	if (fd < 0 && fd != -EADDRINUSE && !host[0])
		fd = listen_first(host, port, AF_INET, &why);
	if (fd < 0)
		return err_set(fd, "cannot listen on %s: %s", spec, why);
	srv->lfd = fd;
	describe_bound(srv);
	return 0;
}

static int ring_init(struct server *srv)
{
	struct io_uring_params p = {
		.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
			 IORING_SETUP_SINGLE_ISSUER,
		.cq_entries = CQ_ENTRIES,
	};
	int ret = io_uring_queue_init_params(RING_ENTRIES, &srv->ring, &p);

	if (ret == -EINVAL) {
		/* An older kernel: the plain ring does the same, a bit slower. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = CQ_ENTRIES;
		ret = io_uring_queue_init_params(RING_ENTRIES, &srv->ring, &p);
	}
	if (ret)
		return err_set(ret,
			       "io_uring_queue_init: %s (io_uring needs Linux 5.19 or "
			       "later, and may be disabled by the kernel.io_uring_disabled "
			       "sysctl or a seccomp filter)",
			       strerror(-ret));
	srv->ring_ok = true;
	return 0;
}

static int signal_fd(struct server *srv)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	srv->sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (srv->sfd < 0)
		return err_set(-errno, "signalfd: %s", strerror(errno));
	return 0;
}

static void fill_defaults(struct server_opts *o)
{
	if (!o->listen)
		o->listen = SERVER_DEF_LISTEN;
	if (!o->version)
		o->version = "0";
	if (!o->max_body)
		o->max_body = SERVER_DEF_MAX_BODY;
	if (!o->max_conns)
		o->max_conns = SERVER_DEF_MAX_CONNS;
	if (!o->idle_timeout_ms)
		o->idle_timeout_ms = SERVER_DEF_IDLE_MS;
	if (!o->request_timeout_ms)
		o->request_timeout_ms = SERVER_DEF_REQUEST_MS;
}

int server_create(const struct server_opts *o, struct server **out)
{
	struct server *srv = aligned_alloc(64, ALIGN_UP(sizeof(*srv), 64));
	uint64_t t;
	int ret;

	if (!srv)
		return -ENOMEM;
	memset(srv, 0, sizeof(*srv));
	srv->lfd = srv->sfd = srv->jfd = -1;
	srv->o = *o;
	fill_defaults(&srv->o);
	srv->lim = HTTP_LIMITS_DEFAULT;
	srv->lim.max_body = srv->o.max_body;
	if (srv->o.max_header)
		srv->lim.max_header = srv->o.max_header;
	t = (uint64_t)MIN(srv->o.idle_timeout_ms, srv->o.request_timeout_ms) * 250000u;
	srv->tick_ns = MIN(MAX(t, TICK_MIN_NS), TICK_MAX_NS);
	srv->multishot = true;
	ret = bind_listen(srv, srv->o.listen);
	if (!ret)
		ret = signal_fd(srv);
	if (!ret)
		ret = ring_init(srv);
	if (ret) {
		server_destroy(srv);
		return ret;
	}
	*out = srv;
	return 0;
}

const char *server_address(const struct server *srv)
{
	return srv->addr;
}

int server_port(const struct server *srv)
{
	return srv->port;
}

/* What server_run needs of the scheduler: channel, scratch, names. */
static int run_setup(struct server *srv, struct sched *s)
{
	uint32_t i, nw = sched_n_workers(s);

	srv->s = s;
	srv->stats = malloc(sizeof(*srv->stats));
	srv->resident = calloc((size_t)SCHED_STATS_MAX_MODELS * nw + 1, 1);
	srv->dev = calloc(nw + 1, sizeof(*srv->dev));
	srv->index_cap = 64;
	srv->index = calloc(srv->index_cap, sizeof(*srv->index));
	if (!srv->stats || !srv->resident || !srv->dev || !srv->index)
		return -ENOMEM;
	sched_stats(s, srv->stats);
	for (i = 0; i < nw; i++)
		snprintf(srv->dev[i], sizeof(srv->dev[i]), "%s", srv->stats->workers[i].name);
	srv->jfd = eventfd(0, EFD_CLOEXEC);
	if (srv->jfd < 0)
		return err_set(-errno, "eventfd: %s", strerror(errno));
	return sched_chan_create(s, &srv->chan);
}

static bool drained(const struct server *srv)
{
	return srv->stopping && !srv->conns && !srv->n_jobs && srv->lfd < 0;
}

/* Take a batch of completions off the ring and handle them. */
static void reap(struct server *srv)
{
	struct io_uring_cqe *cqes[CQE_BATCH];
	struct {
		uint64_t data;
		int res;
		uint32_t flags;
	} ev[CQE_BATCH];
	unsigned n, i;

	n = io_uring_peek_batch_cqe(&srv->ring, cqes, CQE_BATCH);
	for (i = 0; i < n; i++) {
		ev[i].data = cqes[i]->user_data;
		ev[i].res = cqes[i]->res;
		ev[i].flags = cqes[i]->flags;
	}
	io_uring_cq_advance(&srv->ring, n);
	for (i = 0; i < n; i++)
		dispatch_cqe(srv, ev[i].data, ev[i].res, ev[i].flags);
}

int server_run(struct server *srv, struct sched *s)
{
	int ret = run_setup(srv, s);

	if (ret)
		return ret;
	arm_accept(srv);
	arm_chan(srv);
	arm_read(srv, UD_JOBS, srv->jfd, &srv->job_val, sizeof(srv->job_val));
	arm_read(srv, UD_SIGNAL, srv->sfd, &srv->sig, sizeof(srv->sig));
	arm_tick(srv);
	log_info("listening on %s (KServe v2 over HTTP/1.1)", srv->addr);
	while (!srv->fatal && !drained(srv)) {
		ret = io_uring_submit_and_wait(&srv->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			srv->fatal = err_set(ret, "io_uring_enter: %s", strerror(-ret));
			break;
		}
		reap(srv);
	}
	if (srv->fatal)
		return srv->fatal;
	log_info("stopped: every request answered, every connection closed");
	return 0;
}

void server_destroy(struct server *srv)
{
	struct sched_req *done[64];
	struct job *j;
	unsigned n, i;

	if (!srv)
		return;
	/* Exiting the ring cancels whatever is still armed. */
	if (srv->ring_ok)
		io_uring_queue_exit(&srv->ring);
	while ((j = srv->jobs)) {
		srv->jobs = j->next;
		pthread_join(j->thread, NULL);
		j->c->job = NULL;
		free(j);
	}
	while (srv->chan && (n = sched_complete_poll(srv->chan, done, ARRAY_SIZE(done))))
		for (i = 0; i < n; i++)
			((struct conn *)done[i]->ctx)->inflight = false;
	while (srv->conns)
		conn_free(srv->conns);
	sched_chan_destroy(srv->chan);
	if (srv->lfd >= 0)
		close(srv->lfd);
	if (srv->sfd >= 0)
		close(srv->sfd);
	if (srv->jfd >= 0)
		close(srv->jfd);
	free(srv->stats);
	free(srv->resident);
	free(srv->dev);
	free(srv->index);
	free(srv);
}

/* ------------------------------------------------------------ dprt serve */

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Many connections need many descriptors: lift the soft limit. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		log_debug("cannot raise the descriptor limit: %s", strerror(errno));
}

/* CPU devices share the cores: give each worker's GEMMs its share. */
static void cpu_share(const struct sched_opts *so)
{
	struct sched_dev devs[SCHED_MAX_WORKERS];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint32_t n;

	if (sched_parse_devices(so->gpus ? so->gpus : "cpu", devs, SCHED_MAX_WORKERS, &n) ||
	    devs[0].kind != SCHED_DEV_CPU || ncpu < 1)
		return;
	cpu_set_threads((int)MAX(1, ncpu / (long)n));
}

static void log_models(struct sched *s, const char *dir)
{
	struct sched_stats *st = malloc(sizeof(*st));
	char devs[256];
	uint32_t i, ready = 0;
	size_t l = 0;

	if (!st)
		return;
	sched_stats(s, st);
	for (i = 0; i < st->n_models; i++) {
		const struct sched_model_stats *m = &st->models[i];

		ready += m->state == REPO_READY;
		log_info("  model %s version %u: %s", m->name, m->version,
			 repo_state_name((enum repo_state)m->state));
	}
	devs[0] = 0;
	for (i = 0; i < st->n_workers && l < sizeof(devs); i++)
		l += (size_t)snprintf(devs + l, sizeof(devs) - l, "%s%s", i ? ", " : "",
				      st->workers[i].name);
	log_info("repository %s: %u models, %u ready; devices: %s", dir, st->n_models_total, ready,
		 devs);
	free(st);
}

static int serve_repo(struct sched_opts *so, char *demo, size_t len)
{
	int ret;

	if (so->models_dir)
		return 0;
	if (is_dir("models")) {
		so->models_dir = "models";
		return 0;
	}
	ret = demo_repo_ensure(demo, len);
	if (ret)
		return ret;
	log_info("no --models and no ./models: serving the demo repository %s", demo);
	so->models_dir = demo;
	return 0;
}

int serve_main(const struct serve_opts *o)
{
	struct serve_opts so = *o;
	char demo[4096];
	struct server *srv = NULL;
	struct sched *s = NULL;
	int ret;

	ret = server_signals_block();
	if (ret)
		return ret;
	raise_nofile();
	ret = server_create(&so.net, &srv);
	if (ret)
		return ret;
	ret = serve_repo(&so.sched, demo, sizeof(demo));
	if (ret)
		goto out_server;
	cpu_share(&so.sched);
	if (so.sched.n_reqs < srv->o.max_conns)
		so.sched.n_reqs = srv->o.max_conns;
	log_info("loading the repository %s", so.sched.models_dir);
	ret = sched_create(&so.sched, &s);
	if (ret)
		goto out_server;
	log_models(s, so.sched.models_dir);
	ret = server_run(srv, s);
	sched_stop(s);
out_server:
	server_destroy(srv);
	sched_destroy(s);
	return ret;
}
