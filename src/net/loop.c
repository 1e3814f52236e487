/* SPDX-License-Identifier: MIT */
/*
 * net/loop: the server's io_uring ring. Setup (listen socket, signalfd,
 * ring), the multishot accept, the completion loop that hands each
 * completion to its owner (connection, channel, helper eventfd, signal,
 * tick), the tick that drives timeouts, and the graceful stop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net/grpc.h"
#include "net/internal.h"

#define RING_ENTRIES 1024u
#define CQ_ENTRIES 16384u
#define CQE_BATCH 256u
#define STOP_GRACE_NS 30000000000ull /* shutdown: then close what is left */
#define TICK_MIN_NS 50000000ull
#define TICK_MAX_NS 1000000000ull

/* ------------------------------------------------------------ ring helpers */

/* A submission slot; a full queue is flushed first. NULL only if the
 * kernel refuses to take submissions. */
struct io_uring_sqe *sqe_get(struct server *srv, uint64_t data)
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

void cancel_op(struct server *srv, uint64_t data)
{
	struct io_uring_sqe *sqe = sqe_get(srv, ud(NULL, UD_IGNORE));

	if (sqe)
		io_uring_prep_cancel64(sqe, data, 0);
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
		for (i = 0; i < n; i++) {
			if (grpc_is_ctx(done[i]->ctx))
				grpc_infer_done(done[i]);
			else
				infer_done(done[i]);
		}
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
	grpc_tick(srv, now);
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
	grpc_stop(srv, force);
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
	grpc_jobs_reap(srv);
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
		conn_on_recv(p, res);
		break;
	case UD_SEND:
		conn_on_send(p, res);
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
	case UD_GACCEPT:
		grpc_on_accept(srv, res, flags);
		break;
	case UD_GRECV:
		grpc_on_recv(p, res);
		break;
	case UD_GSEND:
		grpc_on_send(p, res);
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

static void describe_bound(int fd, char *addr, size_t alen, int *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";

	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return;
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		*port = ntohs(a->sin6_port);
		snprintf(addr, alen, "[%s]:%d", ip, *port);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		*port = ntohs(a->sin_port);
		snprintf(addr, alen, "%s:%d", ip, *port);
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

/* Listen on spec (the value of option opt): the descriptor in *lfd, the
 * address bound as text and its port. 0 or an error with err_set. */
int net_listen(const char *spec, const char *opt, int *lfd, char *addr, size_t alen, int *bport)
{
	char host[256], port[8];
	const char *why = NULL;
	int fd;

	if (split_listen(spec, host, sizeof(host), port, sizeof(port)))
		return err_set(DPRT_EUSAGE, "%s '%s': expected :PORT, HOST:PORT or [IPV6]:PORT",
			       opt, spec);
	/* No host: every address, IPv6 dual-stack where the kernel has IPv6. */
	fd = listen_first(host, port, host[0] ? AF_UNSPEC : AF_INET6, &why);
	if (fd < 0 && fd != -EADDRINUSE && !host[0])
		fd = listen_first(host, port, AF_INET, &why);
	if (fd < 0)
		return err_set(fd, "cannot listen on %s: %s", spec, why);
	*lfd = fd;
	describe_bound(fd, addr, alen, bport);
	return 0;
}

static int bind_listen(struct server *srv, const char *spec)
{
	return net_listen(spec, "--listen", &srv->lfd, srv->addr, sizeof(srv->addr), &srv->port);
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
		ret = grpc_create(srv);
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
	return srv->stopping && !srv->conns && !srv->n_jobs && srv->lfd < 0 && grpc_drained(srv);
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
	grpc_start(srv);
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
		for (i = 0; i < n; i++) {
			if (grpc_is_ctx(done[i]->ctx))
				grpc_orphan(done[i]);
			else
				((struct conn *)done[i]->ctx)->inflight = false;
		}
	grpc_destroy(srv);
	while (srv->conns)
		conn_free(srv->conns);
	server_free_spares(srv);
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
	free(srv->mstats);
	free(srv);
}
