/* SPDX-License-Identifier: MIT */
/*
 * net/grpc_stub: the gRPC hooks of a build without nghttp2 or protobuf-c
 * (HAVE_GRPC 0): no listener; --grpc-listen other than "off" is an error.
 */
#include <string.h>

#include "net/grpc.h"
#include "net/internal.h"

int grpc_create(struct server *srv)
{
	if (!srv->o.grpc_listen) {
		log_info("built without gRPC (nghttp2 or protobuf-c missing at configure)");
		return 0;
	}
	if (!strcmp(srv->o.grpc_listen, "off"))
		return 0;
	return err_set(DPRT_EUSAGE, "--grpc-listen: this dprt was built without gRPC "
				    "(configure found no nghttp2 or protobuf-c)");
}

void grpc_start(struct server *srv)
{
	(void)srv;
}

void grpc_on_accept(struct server *srv, int res, uint32_t flags)
{
	(void)srv;
	(void)res;
	(void)flags;
}

void grpc_on_recv(void *gc, int res)
{
	(void)gc;
	(void)res;
}

void grpc_on_send(void *gc, int res)
{
	(void)gc;
	(void)res;
}

void grpc_infer_done(struct sched_req *r)
{
	(void)r;
}

void grpc_tick(struct server *srv, uint64_t now)
{
	(void)srv;
	(void)now;
}

void grpc_stop(struct server *srv, bool force)
{
	(void)srv;
	(void)force;
}

void grpc_jobs_reap(struct server *srv)
{
	(void)srv;
}

bool grpc_drained(const struct server *srv)
{
	(void)srv;
	return true;
}

void grpc_orphan(struct sched_req *r)
{
	(void)r;
}

void grpc_destroy(struct server *srv)
{
	(void)srv;
}
