/* SPDX-License-Identifier: MIT */
/*
 * net/grpc: KServe v2 over gRPC, beside HTTP/1.1, on the same loop thread.
 *
 *   grpc.c      the second listening socket, connections, HTTP/2 (h2c with
 *               prior knowledge) through nghttp2's server session driven
 *               from the io_uring loop, gRPC framing (5-byte length
 *               prefix, grpc-status/grpc-message trailers), limits
 *   grpc_svc.c  the methods of inference.GRPCInferenceService: protobuf
 *               in and out (protobuf-c, from src/net/proto), the shared
 *               request path (repository lookup, kserve_bind, the
 *               scheduler), load/unload on helper threads
 *
 * Bytes: a request's raw_input_contents are split off while the message
 * arrives and copied once, aligned, into the stream's raw buffer, which
 * the request record points into; outputs are copied once, from the
 * record's output buffer into the connection's write buffer, as DATA
 * frames are written. A message longer than --max-body is refused with
 * RESOURCE_EXHAUSTED from its 5-byte prefix, and its bytes dropped.
 *
 * Everything here runs on the loop thread, except the helper threads of
 * load/unload, which only touch their job and signal srv->jfd.
 * Built only with HAVE_GRPC; without it the hooks are empty stubs.
 */
#ifndef DPRT_NET_GRPC_H
#define DPRT_NET_GRPC_H

#include <stdbool.h>
#include <stdint.h>

struct server;
struct sched_req;

/* Bind o.grpc_listen unless "off" (the default address: a busy port only
 * warns). 0 or an error with err_set. server_create. */
int grpc_create(struct server *srv);
/* Arm the accept and log the address. server_run, before the loop. */
void grpc_start(struct server *srv);
/* Completions of the loop's ring for the gRPC side (loop.c). */
void grpc_on_accept(struct server *srv, int res, uint32_t flags);
void grpc_on_recv(void *gc, int res);
void grpc_on_send(void *gc, int res);
/* A finished request record whose ctx is a gRPC stream (grpc_is_ctx). */
void grpc_infer_done(struct sched_req *r);
/* Timeouts, at every tick. */
void grpc_tick(struct server *srv, uint64_t now);
/* Graceful stop (GOAWAY, finish open calls) or, force, close the idle. */
void grpc_stop(struct server *srv, bool force);
/* Finished load/unload jobs of gRPC calls (on srv->jfd). */
void grpc_jobs_reap(struct server *srv);
/* No gRPC connection, job or listening socket is left. */
bool grpc_drained(const struct server *srv);
/* A record came back after the loop stopped (server_destroy). */
void grpc_orphan(struct sched_req *r);
/* Close and free everything; after the loop and sched_stop. */
void grpc_destroy(struct server *srv);

/* Request records of gRPC streams carry ctx = stream | 1. */
static inline bool grpc_is_ctx(const void *ctx)
{
	return (uintptr_t)ctx & 1u;
}

#endif
