/* SPDX-License-Identifier: MIT */
/*
 * net/grpc_int.h: what grpc.c and grpc_svc.c share (see grpc.h).
 */
#ifndef DPRT_NET_GRPC_INT_H
#define DPRT_NET_GRPC_INT_H

#include <limits.h>
#include <sys/un.h>

#include <nghttp2/nghttp2.h>
#include <protobuf-c/protobuf-c.h>

#include "net/grpc.h"
#include "net/internal.h"

/* gRPC status codes. */
enum {
	GS_OK = 0,
	GS_CANCELLED = 1,
	GS_UNKNOWN = 2,
	GS_INVALID_ARGUMENT = 3,
	GS_DEADLINE_EXCEEDED = 4,
	GS_NOT_FOUND = 5,
	GS_RESOURCE_EXHAUSTED = 8,
	GS_UNIMPLEMENTED = 12,
	GS_INTERNAL = 13,
	GS_UNAVAILABLE = 14,
};

enum grpc_method {
	GM_NONE = 0,
	GM_SERVER_LIVE,
	GM_SERVER_READY,
	GM_MODEL_READY,
	GM_SERVER_META,
	GM_MODEL_META,
	GM_INFER,
	GM_REPO_INDEX,
	GM_REPO_LOAD,
	GM_REPO_UNLOAD,
	GM_MODEL_CONFIG,
	GM_MODEL_STATS,
	/* mmesh.ModelRuntime (grpc_mm.c) */
	GM_MM_LOAD,
	GM_MM_UNLOAD,
	GM_MM_PREDICT,
	GM_MM_SIZE,
	GM_MM_STATUS,
};

/* Splitting raw_input_contents (field 7) off a ModelInferRequest. */
enum split_state { SP_TAG, SP_LEN, SP_VARINT, SP_FIXED, SP_BODY };

struct split {
	uint8_t state;
	bool raw;	 /* the field being read is raw_input_contents */
	uint8_t hlen;	 /* bytes in hdr */
	uint8_t hdr[24]; /* tag and length of the field being read */
	uint64_t v;	 /* varint being read */
	uint32_t shift;
	uint64_t left; /* bytes of the field's body still to come */
};

struct gstream;

/* Message codings (grpc-encoding) of a request. */
enum genc { GE_IDENTITY = 0, GE_GZIP, GE_DEFLATE, GE_OTHER };

/* One piece of a response body. */
struct gpiece {
	const uint8_t *p;
	size_t len;
};

#define GPIECES (2 + 2 * SCHED_MAX_IO)

struct gconn;

struct gstream {
	struct gconn *gc; /* NULL once the connection is gone */
	struct gstream *prev, *next;
	int32_t id;
	uint8_t method;	 /* enum grpc_method */
	bool mm_id_long; /* mm-model-id too long for a model name */
	bool bad_path;	 /* :path names no method of ours */
	bool bad_ctype;	 /* not application/grpc */
	bool done_early; /* answered before the request ended: drop the rest */
	bool replied;	 /* a response was submitted */
	bool inflight;	 /* the record is with a worker, or a job runs */
	bool closed;	 /* nghttp2 closed it; free when not inflight */
	uint8_t enc;	 /* grpc-encoding: enum genc */
	bool zmsg;	 /* the message is compressed: gathered in zin */
	uint64_t t_start, t_done;

	/* the request message */
	uint8_t pfx[5];
	uint8_t pfx_len;
	uint32_t n_msgs;
	uint64_t msg_len, msg_got;
	char *meta; /* the message, less raw_input_contents for ModelInfer */
	size_t meta_len, meta_cap;
	uint8_t *zin; /* a compressed message as it arrives */
	size_t zin_cap;
	uint8_t *raw; /* raw_input_contents, each 64-byte aligned */
	size_t raw_len, raw_cap;
	uint64_t raw_off[KSERVE_MAX_TENSORS], raw_size[KSERVE_MAX_TENSORS];
	uint32_t n_raw;
	struct split sp;

	/* the call */
	struct kserve_request kr;
	struct arena arena;
	struct repo_entry *e;
	struct sched_req *sreq;
	void *obuf;
	uint64_t ocap;
	void *unpacked; /* ProtobufCMessage of the request */
	char ver[16];
	char mm_id[NAME_LEN]; /* the mm-model-id header: the model of ModelInfer */

	/* the response */
	uint8_t *resp;
	size_t resp_cap;
	uint8_t hdrs[SCHED_MAX_IO][16]; /* tag + length of each raw output */
	struct gpiece pc[GPIECES];
	uint32_t n_pc, rd_i, wr_i;
	size_t rd_off, wr_off;
	int status;
	char msg[SCHED_MSG_LEN + NAME_LEN + 96];
	char timing[160];
	bool cold;
};

/* A connection. */
struct gconn {
	struct server *srv;
	struct gconn *prev, *next;
	nghttp2_session *ses;
	struct gstream *streams;
	uint32_t n_streams, n_inflight;
	int fd;
	bool recv_armed, send_armed, closed, goaway;
	bool in_recv; /* inside nghttp2_session_mem_recv */
	uint64_t t_active;
	uint64_t buffered; /* request bytes held by its streams */
	uint8_t *rbuf;
	/* two write buffers: one being sent (out[snd]), the other filling */
	uint8_t *out[2];
	size_t out_len[2], out_cap[2], out_off;
	uint8_t snd;
} __attribute__((aligned(64)));

enum grpc_job_kind {
	GJ_REPO = 0,  /* RepositoryModelLoad / Unload */
	GJ_MM_LOAD,   /* mmesh loadModel */
	GJ_MM_UNLOAD, /* mmesh unloadModel */
	GJ_MM_PURGE,  /* mmesh runtimeStatus: unload what mmesh loaded */
};

struct grpc_job {
	struct gstream *st;
	struct grpc_job *next;
	pthread_t thread;
	struct server *srv;
	bool load;
	uint8_t kind; /* enum grpc_job_kind */
	char model[NAME_LEN];
	char path[PATH_MAX]; /* GJ_MM_LOAD: modelPath */
	uint64_t size;	     /* GJ_MM_LOAD: the model's bytes */
	_Atomic bool done;
	int ret;
	int gstatus; /* GJ_MM_*: the gRPC status of a failure */
	char msg[SCHED_MSG_LEN];
	/* GJ_MM_LOAD, loop thread: an unloadModel of the model came while it
	 * loaded; its stream (waiter) is answered once the load is undone */
	bool cancel;
	struct gstream *waiter;
};

struct grpc_srv {
	int lfd;
	bool accept_armed, multishot;
	char addr[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* "": TCP */
	int port;
	struct gconn *conns;
	uint32_t n_conns;
	struct grpc_job *jobs;
	uint32_t n_jobs;
	/* mmesh loads in flight (at most GRPC_MM_LOADS; others wait) */
	pthread_mutex_t mm_lock;
	pthread_cond_t mm_cond;
	uint32_t mm_loading;
};

/* grpc.c (loop thread, all) */
/* Submit st's outcome: status 0 with the pieces in st->pc, else trailers only. */
void gstream_reply(struct gstream *st);
/* Answer st with a gRPC status and message. */
void gstream_fail(struct gstream *st, int gstatus, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Answer st for a dprt error code (grpc_status_of). */
void gstream_fail_code(struct gstream *st, int code, const char *msg);
/* Write what nghttp2 has queued; keep a recv armed; close when done. */
void gconn_flush(struct gconn *gc);
/* Give st's request record back to the pool. */
void gstream_release(struct gstream *st);
/* st's record or job came back: false when st was closed (now freed). */
bool gstream_back(struct gstream *st);
/* The gRPC status of a dprt error code (via kserve_http_status). */
int grpc_status_of(int code);

/* grpc_svc.c (loop thread, all) */
/* The method of a :path, or GM_NONE. */
int svc_method(const char *path, size_t len);
/* The request message is complete in st->meta (and st->raw): run it. */
void svc_call(struct gstream *st);
/* A ModelInfer record came back from its worker: answer it. */
void svc_infer_done(struct gstream *st);
/* Feed bytes of a ModelInferRequest: raw_input_contents to st->raw, the
 * rest to st->meta. 0, or an error after failing the call. */
int split_feed(struct gstream *st, const uint8_t *p, size_t n);

/* grpc_mm.c (loop thread, but mm_job_main) */
#define GRPC_MM_LOADS 2u /* RuntimeStatus.maxLoadingConcurrency */
/* The mmesh.ModelRuntime method of a :path, or GM_NONE. */
int mm_method(const char *path, size_t len);
/* Run an mmesh.ModelRuntime call (st->method GM_MM_*). */
void mm_call(struct gstream *st);
/* An mmesh load or unload job came back: answer its stream. */
void mm_job_done(struct grpc_job *j);

/* grpc_svc.c, for grpc_mm.c */
/* Pack message m into st's response and answer it. */
void svc_reply_msg(struct gstream *st, const void *m);
/* Unpack st's request as a d; NULL after failing the call. */
void *svc_unpack(struct gstream *st, const ProtobufCMessageDescriptor *d);

#endif
