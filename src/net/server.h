/* SPDX-License-Identifier: MIT */
/*
 * net/server: the network thread of `dprt serve`.
 *
 * One thread runs an io_uring loop over everything the server waits for:
 * the listen socket (multishot accept), each connection's receive and send,
 * the scheduler's completion channel (its eventfd), the eventfd of helper
 * threads that run model loads, a signalfd for SIGINT/SIGTERM and a
 * periodic timeout that enforces the idle and request timeouts. The thread
 * owns every connection; workers and helpers reach it only through
 * eventfds. The loop itself never blocks on anything but io_uring.
 *
 * Per connection: one recv outstanding at a time into a growing receive
 * buffer; requests are parsed in place (net/http) and served one at a
 * time in arrival order, so pipelined requests get their responses in
 * order; a response goes out by sendmsg of iovecs (head, JSON, binary
 * tensors straight from the request record's output buffer), resumed
 * after partial sends. No recv is armed while a request is being served:
 * its body stays where the request record's inputs point.
 *
 * Choices (documented for users in `dprt --help`):
 *  - beyond --max-conns, a new connection is accepted, answered 503 with
 *    "Connection: close" and closed (after reading what it sent, so the
 *    client sees the answer rather than a reset);
 *  - a connection idle (no request started) for --idle-timeout is closed;
 *    a request not complete --request-timeout after its first byte is
 *    answered 408 and its connection closed; a client that stops reading
 *    a response for --idle-timeout is disconnected;
 *  - every response that closes the connection is followed by a lingering
 *    close: write side shut, input drained for up to 2 s, then close;
 *  - GET /v2/models/{m}/ready: 200 if the version is READY, 503 (with the
 *    state and reason) if it exists but is not, 404 if unknown;
 *  - infer on a model that exists but is not READY (unloaded, loading,
 *    FAILED): 503 with the state and reason; unknown model or version:
 *    404;
 *  - model metadata is served once the package has been opened (loaded
 *    at least once), whatever the state; before that, 503;
 *  - load/unload run sched_load/sched_unload on a helper thread (load
 *    rescans the repository first, so a model added on disk can be
 *    loaded); the loop answers when the helper is done: 200 with an empty
 *    body, or the error;
 *  - request bodies: chunked and Content-Encoding gzip/deflate are
 *    decoded before dispatch (net/body.c), --max-body bounding the
 *    decoded size (413); another content coding is 415;
 *  - /v2/models[/{m}[/versions/{v}]]/stats counts the infer requests the
 *    server answered, per model version, on the loop thread (ep_stats.c);
 *    the same counts are the nv_inference_* series of /metrics;
 *  - SIGINT/SIGTERM: stop accepting, /v2/health/ready turns 503, idle
 *    connections and half-received requests are closed, requests already
 *    received are completed and answered with "Connection: close", then
 *    server_run() returns 0. A second signal closes every connection that
 *    is not waiting for a worker at once.
 */
#ifndef DPRT_NET_SERVER_H
#define DPRT_NET_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/sched.h"

#define SERVER_DEF_LISTEN ":9000"
#define SERVER_DEF_GRPC_LISTEN ":8001"
#define SERVER_DEF_MAX_BODY (64ull << 20)
#define SERVER_DEF_MAX_CONNS 1024u
#define SERVER_DEF_IDLE_MS 60000u
#define SERVER_DEF_REQUEST_MS 30000u

struct server_opts {
	const char *listen;	     /* ":PORT", "HOST:PORT", "[V6]:PORT"; NULL = :9000 */
	const char *grpc_listen;     /* gRPC, the same forms or "off"; NULL = :8001,
				      * skipped with a warning when busy */
	const char *version;	     /* reported by GET /v2; NULL = "0" */
	uint64_t max_body;	     /* bytes, 0 = SERVER_DEF_MAX_BODY */
	uint32_t max_header;	     /* request line + headers, 0 = 16 KiB */
	uint32_t max_conns;	     /* 0 = SERVER_DEF_MAX_CONNS */
	uint32_t idle_timeout_ms;    /* 0 = SERVER_DEF_IDLE_MS */
	uint32_t request_timeout_ms; /* 0 = SERVER_DEF_REQUEST_MS */
};

struct server;

/*
 * Block SIGINT and SIGTERM in the calling thread, so that every thread it
 * starts afterwards inherits the mask and the signals reach the server's
 * signalfd (read on this thread) only; threads that existed before (a BLAS
 * pool) forward them here from a handler. Ignore SIGPIPE. Call it before
 * sched_create, on the thread that will call server_run. 0 or -errno with
 * err_set.
 */
int server_signals_block(void);

/*
 * Bind and listen on o->listen (SO_REUSEADDR; port 0 picks a free port),
 * set up the io_uring and the signalfd. Connections wait in the backlog
 * until server_run(). 0 or an error with err_set naming the address.
 * Called by the thread that will call server_run.
 */
int server_create(const struct server_opts *o, struct server **out);
/* The address bound, as "127.0.0.1:9000" or "[::]:9000", and its port. */
const char *server_address(const struct server *srv);
int server_port(const struct server *srv);
/*
 * Serve requests for scheduler s until SIGINT or SIGTERM, then shut down
 * gracefully (see above). Returns 0, or an error with err_set if the loop
 * itself failed (io_uring). The thread that made the server.
 */
int server_run(struct server *srv, struct sched *s);
/* Close everything the server holds. After server_run returned and
 * sched_stop (so that every record the server submitted is back in its
 * channel, to be put back here); before sched_destroy. */
void server_destroy(struct server *srv);

/* ---- metrics (metrics.c) ---- */

/* The server's own counters that /metrics shows next to sched_stats. */
struct server_counters {
	uint64_t http[600];	 /* responses by status code */
	uint64_t conns_open;	 /* connections now open */
	uint64_t conns_total;	 /* connections accepted */
	uint64_t conns_rejected; /* answered 503 for --max-conns */
	uint64_t infer_rejected; /* infer requests refused before a worker */
	uint64_t conn_kept;	 /* large receive and output buffers kept between
				  * requests, all connections (conn_keep_big) */
};

/* A growable text buffer. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom; /* an append failed; the text is truncated */
};
void sbuf_printf(struct sbuf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
void sbuf_free(struct sbuf *b);
/* Append a Prometheus label value with \\, " and newline escaped. */
void sbuf_label(struct sbuf *b, const char *s);

/*
 * Write the Prometheus text exposition (format 0.0.4) of st and c into b
 * (appended). resident[m * st->n_workers + w] says whether model m of st
 * is resident on worker w (NULL: not shown). Any thread. 0 or -ENOMEM.
 */
int metrics_render(struct sbuf *b, const struct sched_stats *st, const uint8_t *resident,
		   const struct server_counters *c);
/* Content-Type of that text. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ---- the demo repository (demo.c) ---- */

/*
 * Make sure the demo repository exists and holds bert-tiny, gpt2-tiny and
 * resnet-tiny (fp32, seeded random weights) as NAME/1/model.dpk, building
 * the ones missing or unreadable. Its place: $DPRT_CACHE/demo, else
 * $XDG_CACHE_HOME/dprt/demo, else ~/.cache/dprt/demo; dir gets the path.
 * 0 or an error with err_set. Any thread (one at a time).
 */
int demo_repo_ensure(char *dir, size_t len);

/* ---- everything `dprt serve` does ---- */

struct serve_opts {
	struct server_opts net;
	struct sched_opts sched; /* models_dir NULL: ./models if it exists, else
				  * the demo repository */
};

/*
 * Block the signals, bind, find the repository, make the scheduler (which
 * loads the models unless explicit), serve until a signal, then tear
 * everything down. Logs where it listens and what it serves. Returns 0 or
 * an error with err_set. main()'s thread, before any other thread exists.
 */
int serve_main(const struct serve_opts *o);

#endif
