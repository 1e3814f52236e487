/* SPDX-License-Identifier: MIT */
/*
 * net/internal.h: what the server's files share, and nobody else sees.
 *
 *   loop.c       the io_uring ring: setup, accept, the completion loop,
 *                the tick (timeouts), signals, shutdown
 *   conn.c       connections: state, recv/send, HTTP framing, limits,
 *                responses, dispatch to the endpoints
 *   body.c       request bodies: chunked and compressed ones made plain;
 *                response bodies compressed as Accept-Encoding asks
 *   ep_models.c  health, server and model metadata, model readiness
 *   ep_infer.c   inference: decode, submit to a worker, encode the answer
 *   ep_repo.c    the repository API: index, load/unload on helper threads
 *   ep_metrics.c Prometheus /metrics
 *   ep_stats.c   per-model statistics: /stats and the nv_inference_* series
 *   serve.c      dprt serve: the server over a scheduler
 *   grpc*.c      the same over gRPC, on a second listening socket (grpc.h)
 *
 * Every submission carries user_data = pointer | tag: the pointer is a
 * connection or the server (both 64-byte aligned), the tag names the
 * operation (enum ud_tag). A connection is freed only when none of its
 * operations is outstanding, no worker holds its request record and no
 * helper thread works for it (conn_maybe_free).
 *
 * Everything here runs on the loop thread, except job_main (ep_repo.c).
 */
#ifndef DPRT_NET_INTERNAL_H
#define DPRT_NET_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <arpa/inet.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "net/http.h"
#include "net/kserve.h"
#include "net/server.h"

enum ud_tag {
	UD_IGNORE = 0, /* a cancellation: nothing to do */
	UD_ACCEPT = 1,
	UD_RECV = 2,
	UD_SEND = 3,
	UD_CHAN = 4, /* the completion channel's eventfd */
	UD_JOBS = 5, /* the helper threads' eventfd */
	UD_SIGNAL = 6,
	UD_TICK = 7,
	UD_GACCEPT = 8, /* gRPC (grpc.h) */
	UD_GRECV = 9,
	UD_GSEND = 10,
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

/* One model version's answered requests (ep_stats.c; loop thread only). */
struct net_stat {
	char name[NAME_LEN];
	uint32_t version;
	uint64_t last_ms;		 /* last answer, ms since the epoch */
	uint64_t inferences, executions; /* batch items; requests run */
	struct kserve_stat success, fail, queue, compute_input, compute_infer, compute_output;
};

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
	uint64_t t_submit;  /* an infer request went to the scheduler */

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
	char *zbuf; /* the request body, decompressed (body.c) */
	size_t zcap;
	void *obuf; /* outputs too big for the record's buffer */
	uint64_t ocap;
	uint64_t okept, rkept; /* of ocap and rcap, counted in cnt.conn_kept */

	/* the response */
	char head[1024];
	char *wbuf;
	size_t wcap;
	struct z_stream_s *zs; /* raw deflate state, made at the first use (body.c) */
	char *cbuf;	       /* the body, compressed */
	size_t ccap;
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
	uint32_t version; /* 0: none named */
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
	struct net_stat *mstats; /* per-model statistics (ep_stats.c) */
	uint32_t n_mstats, cap_mstats;

	struct sched_stats *stats; /* /metrics scratch */
	uint8_t *resident;
	struct repo_info *index; /* index scratch */
	uint32_t index_cap;
	char (*dev)[16];       /* worker names */
	struct grpc_srv *grpc; /* NULL: no gRPC listener */
	struct {
		void *p;
		uint64_t cap;
	} spare[4]; /* closed connections' output buffers (conn_spare_put) */
} __attribute__((aligned(64)));

static inline uint64_t ud(const void *p, enum ud_tag t)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)t;
}

/* loop.c */
struct io_uring_sqe *sqe_get(struct server *srv, uint64_t data);
void cancel_op(struct server *srv, uint64_t data);
int net_listen(const char *spec, const char *opt, int *fd, char *addr, size_t alen, int *port);

/* conn.c */
int buf_grow(char **buf, size_t *cap, size_t need);
void conn_new(struct server *srv, int fd);
void conn_close(struct conn *c);
void conn_free(struct conn *c);
void conn_maybe_free(struct conn *c);
void conn_release_request(struct conn *c);
/* Whether c keeps a large buffer of cap bytes between requests (counted in
 * cnt.conn_kept, replacing *kept). */
bool conn_keep_big(struct conn *c, uint64_t *kept, uint64_t cap);
/* The buffer *kept counted is no longer kept (freed, or replaced). */
void conn_unkeep(struct conn *c, uint64_t *kept);
/* A spare output buffer of at least need bytes for c (its own, if any,
 * freed), or false. */
bool conn_spare_take(struct conn *c, uint64_t need);
/* Free the spare output buffers (server_destroy). */
void server_free_spares(struct server *srv);
void conn_tick(struct conn *c, uint64_t now);
void conn_on_recv(struct conn *c, int res);
void conn_on_send(struct conn *c, int res);
bool conn_keep_alive(const struct conn *c);
void conn_send_response(struct conn *c, int status, size_t hlen, uint32_t n_body);
void conn_reply(struct conn *c, int status, const char *ctype, const char *extra, size_t len);
void conn_error(struct conn *c, int status, const char *msg, bool close);
void conn_fail(struct conn *c, int code, const char *msg);
int conn_body(struct conn *c, int (*enc)(char *, size_t, const void *), const void *arg);

/* body.c */
/* Make a complete request's body plain (chunked, Content-Encoding); 0, or
 * the HTTP status to answer with *why. */
int body_decode(struct conn *c, const char **why);
/* Inflate in[0, n) (wbits as zlib's inflateInit2: 16 + 15 gzip, 15 zlib)
 * into *buf (grown, *cap bytes), at most max bytes; *out gets the length.
 * 0, -E2BIG (more than max), -EBADMSG (malformed, truncated, or bytes after
 * the stream) or -ENOMEM. Any thread. */
int body_inflate(const void *in, size_t n, int wbits, uint64_t max, char **buf, size_t *cap,
		 size_t *out);
/* Compress the response body, c->iov[1, 1 + n_body), into c->cbuf when
 * the request's Accept-Encoding asks for a coding and the body is not tiny,
 * and rewrite the head c->head[0, *hlen) to match (Content-Length,
 * Content-Encoding, Vary). Returns the number of body pieces to send: 1
 * when compressed, else n_body (the body as it was; on any failure too). */
uint32_t body_encode(struct conn *c, int status, size_t *hlen, uint32_t n_body);
/* Free the connection's compression state. */
void body_fini(struct conn *c);

/* ep_models.c */
int ep_lookup(struct conn *c, struct repo_entry **e);
void conn_not_ready(struct conn *c, struct repo_entry *e, const char *what);
int index_fetch(struct server *srv, uint32_t *n);
int meta_output_dims(const struct graph *g, struct io_desc *outs);
void ep_health(struct conn *c, bool ready);
void ep_server_meta(struct conn *c);
void ep_model_ready(struct conn *c);
void ep_model_meta(struct conn *c, bool config);

/* ep_infer.c */
void ep_infer(struct conn *c);
void infer_done(struct sched_req *r);

/* ep_repo.c */
void ep_repo_index(struct conn *c);
void ep_repo_control(struct conn *c, bool load);
/* On a job thread: rescan then load, or unload, model (version 0: all or
 * the highest); 0 or the scheduler's error. */
int ep_repo_act(struct sched *s, bool load, const char *model, uint32_t version);
/* On a job thread: mark the job done (release) and wake the loop. */
void ep_job_done(struct server *srv, _Atomic bool *done);
void jobs_reap(struct server *srv);

/* ep_metrics.c */
void ep_metrics(struct conn *c);

/* ep_stats.c */
/* An infer answer was encoded (encoding began at t_out): count it. */
void stats_success(struct conn *c, uint64_t t_out);
/* An infer request for c->e (else c->tgt's model, if any) failed: count
 * it. May set this thread's error message. */
void stats_fail(struct conn *c);
void ep_stats(struct conn *c, bool all);
/* Append the nv_inference_* series to b. 0 or -ENOMEM. */
int stats_render_triton(struct sbuf *b, const struct server *srv);

#endif
