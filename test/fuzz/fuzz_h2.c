/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness: the gRPC input path (nghttp2 server session, the
 * callbacks of src/net/grpc.c, message framing, the ModelInferRequest
 * splitter and the unary methods of src/net/grpc_svc.c).
 * grpc.c and grpc_svc.c are compiled into this file so that
 * a connection can be driven without a socket or io_uring: the input
 * bytes go to nghttp2_session_mem_recv as grpc_on_recv does, and what the
 * session writes is dropped as if sent. 'ninja test' builds it
 * (test/fuzz/fuzz_h2.ninja) and test/cli/fuzz.sh runs it on corpus_h2/.
 *
 * By hand, longer (from the repository root, after ./configure && ninja):
 *   build/fuzz/fuzz_h2 -max_total_time=600 -artifact_prefix=/tmp/ \
 *     -dict=test/fuzz/h2.dict /tmp/corpus test/fuzz/corpus_h2
 * An empty corpus directory is first filled with seed inputs; a replay
 * driver (no libFuzzer) takes files: build/fuzz/fuzz_h2 FILE...
 *
 * The first input byte: bit 0 sets the server stopping; bits 1..7 + 1 are
 * the size of the pieces the rest is fed in (as separate recvs).
 * The scheduler is real, over an empty repository: every model lookup
 * fails. Repository load/unload and the mmesh calls, which start threads,
 * are answered UNIMPLEMENTED here.
 */
#define svc_call fuzz_svc_call
#include "../../src/net/grpc.c"
#undef svc_call
void svc_call(struct gstream *st);
#include "../../src/net/grpc_svc.c"

#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

static struct server fsrv __attribute__((aligned(64)));
static struct grpc_srv fgrpc;

void fuzz_svc_call(struct gstream *st)
{
	switch (st->method) {
	case GM_REPO_LOAD:
	case GM_REPO_UNLOAD:
	case GM_MM_LOAD:
	case GM_MM_UNLOAD:
	case GM_MM_PREDICT:
	case GM_MM_SIZE:
	case GM_MM_STATUS:
		gstream_fail(st, GS_UNIMPLEMENTED, "not in the fuzz harness");
		break;
	default:
		svc_call(st);
		break;
	}
}

static char repo_dir[] = "/tmp/fuzz_h2_repo_XXXXXX";

/* At exit: remove the (empty) repository directory. */
static void repo_rm(void)
{
	rmdir(repo_dir);
}

static void fuzz_init(void)
{
	char *dir = repo_dir;
	struct sched_opts so = {
		.gpus = "cpu",
		.queue_depth = 16,
		.n_reqs = 16,
		.no_threads = true,
		.explicit_load = true,
		.no_prewarm = true,
		.no_pin = true,
	};
	uint32_t nw;

	log_set_level(LOG_ERROR);
	if (!mkdtemp(dir))
		abort();
	atexit(repo_rm);
	so.models_dir = dir;
	if (sched_create(&so, &fsrv.s))
		abort();
	nw = sched_n_workers(fsrv.s);
	fsrv.o.max_body = 1 << 20;
	fsrv.o.version = "fuzz";
	fsrv.lim = HTTP_LIMITS_DEFAULT;
	fsrv.lim.max_body = fsrv.o.max_body;
	fsrv.stats = malloc(sizeof(*fsrv.stats));
	fsrv.resident = calloc((size_t)SCHED_STATS_MAX_MODELS * nw + 1, 1);
	fsrv.dev = calloc(nw + 1, sizeof(*fsrv.dev));
	fsrv.index_cap = 64;
	fsrv.index = calloc(fsrv.index_cap, sizeof(*fsrv.index));
	if (!fsrv.stats || !fsrv.resident || !fsrv.dev || !fsrv.index)
		abort();
	fsrv.grpc = &fgrpc;
	fsrv.lfd = fsrv.sfd = fsrv.jfd = -1;
	fgrpc.lfd = -1;
}

/* What gconn_flush does, the written bytes dropped as if sent. */
static void fuzz_send(struct gconn *gc)
{
	nghttp2_session_send(gc->ses);
	gc->out_len[0] = gc->out_len[1] = 0;
	gc->out_off = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gconn *gc;
	size_t piece, k;
	ssize_t n;

	if (!fsrv.s)
		fuzz_init();
	if (!size)
		return 0;
	fsrv.stopping = data[0] & 1;
	piece = (size_t)(data[0] >> 1) * 61 + 1;
	data++;
	size--;
	gc = aligned_alloc(64, ALIGN_UP(sizeof(*gc), 64));
	if (!gc)
		abort();
	memset(gc, 0, sizeof(*gc));
	gc->srv = &fsrv;
	gc->fd = -1;
	gc->rbuf = malloc(G_RBUF);
	if (!gc->rbuf || session_new(gc))
		abort();
	gc->next = fgrpc.conns;
	if (fgrpc.conns)
		fgrpc.conns->prev = gc;
	fgrpc.conns = gc;
	fgrpc.n_conns++;
	fuzz_send(gc);
	while (size && nghttp2_session_want_read(gc->ses)) {
		k = MIN(MIN(size, piece), (size_t)G_RBUF);
		memcpy(gc->rbuf, data, k); /* as recv fills it */
		gc->in_recv = true;
		n = nghttp2_session_mem_recv(gc->ses, gc->rbuf, k);
		gc->in_recv = false;
		if (n < 0)
			nghttp2_session_terminate_session(gc->ses, NGHTTP2_PROTOCOL_ERROR);
		fuzz_send(gc);
		data += k;
		size -= k;
	}
	if (gc->n_inflight) /* nothing is served: no model exists */
		abort();
	gconn_free(gc);
	return 0;
}

/* ---- seeds for an empty corpus ---- */

static size_t frame(uint8_t *p, uint32_t len, uint8_t type, uint8_t flags, uint32_t id)
{
	p[0] = (uint8_t)(len >> 16);
	p[1] = (uint8_t)(len >> 8);
	p[2] = (uint8_t)len;
	p[3] = type;
	p[4] = flags;
	p[5] = (uint8_t)(id >> 24);
	p[6] = (uint8_t)(id >> 16);
	p[7] = (uint8_t)(id >> 8);
	p[8] = (uint8_t)id;
	return 9;
}

/* HPACK literal header without indexing, new name. */
static size_t hlit(uint8_t *p, const char *name, const char *val)
{
	size_t nl = strlen(name), vl = strlen(val), n = 0;

	p[n++] = 0;
	p[n++] = (uint8_t)nl;
	memcpy(p + n, name, nl);
	n += nl;
	p[n++] = (uint8_t)vl;
	memcpy(p + n, val, vl);
	return n + vl;
}

/* A call: preface, SETTINGS, HEADERS for path, DATA with msg (prefixed). */
static size_t call(uint8_t *buf, const char *path, const uint8_t *msg, uint32_t mlen)
{
	static const char pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	uint8_t hb[512];
	size_t n = 0, h = 0;

	buf[n++] = 0x10; /* pieces of 9 bytes */
	memcpy(buf + n, pre, 24);
	n += 24;
	n += frame(buf + n, 0, NGHTTP2_SETTINGS, 0, 0);
	hb[h++] = 0x83; /* :method POST */
	hb[h++] = 0x86; /* :scheme http */
	h += hlit(hb + h, ":path", path);
	h += hlit(hb + h, ":authority", "localhost");
	h += hlit(hb + h, "content-type", "application/grpc");
	h += hlit(hb + h, "te", "trailers");
	n += frame(buf + n, (uint32_t)h, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1);
	memcpy(buf + n, hb, h);
	n += h;
	n += frame(buf + n, mlen + 5, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1);
	buf[n++] = 0;
	buf[n++] = (uint8_t)(mlen >> 24);
	buf[n++] = (uint8_t)(mlen >> 16);
	buf[n++] = (uint8_t)(mlen >> 8);
	buf[n++] = (uint8_t)mlen;
	memcpy(buf + n, msg, mlen);
	n += mlen;
	n += frame(buf + n, 8, NGHTTP2_PING, 0, 0);
	memset(buf + n, 'p', 8);
	return n + 8;
}

static void write_seed(const char *dir, int i, const uint8_t *data, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/seed%d", dir, i);
	f = fopen(path, "wb");
	if (!f)
		return;
	fwrite(data, 1, len, f);
	fclose(f);
}

static void write_seeds(const char *dir)
{
	/* ModelInferRequest: model_name "bert-tiny", one INT64 input [1,4]
	 * "input_ids", one raw_input_contents of 32 bytes. */
	static const uint8_t infer[] = {
		0x0a, 9,   'b', 'e',  'r', 't', '-', 't',  'i', 'n', 'y',  0x2a, 22,  0x0a,
		9,    'i', 'n', 'p',  'u', 't', '_', 'i',  'd', 's', 0x12, 5,	 'I', 'N',
		'T',  '6', '4', 0x1a, 2,   1,	4,   0x3a, 32,	1,   0,	   0,	 0,   0,
		0,    0,   0,	2,    0,   0,	0,   0,	   0,	0,   0,	   3,	 0,   0,
		0,    0,   0,	0,    0,   4,	0,   0,	   0,	0,   0,	   0,	 0,
	};
	static const uint8_t name[] = {0x0a, 9, 'b', 'e', 'r', 't', '-', 't', 'i', 'n', 'y'};
	static const char *const paths[] = {
		"/inference.GRPCInferenceService/ServerLive",
		"/inference.GRPCInferenceService/ServerReady",
		"/inference.GRPCInferenceService/ServerMetadata",
		"/inference.GRPCInferenceService/ModelReady",
		"/inference.GRPCInferenceService/ModelMetadata",
		"/inference.GRPCInferenceService/ModelConfig",
		"/inference.GRPCInferenceService/ModelStatistics",
		"/inference.GRPCInferenceService/RepositoryIndex",
		"/inference.GRPCInferenceService/Nope",
	};
	uint8_t buf[2048];
	size_t i;

	write_seed(dir, 0, buf,
		   call(buf, "/inference.GRPCInferenceService/ModelInfer", infer, sizeof(infer)));
	for (i = 0; i < ARRAY_SIZE(paths); i++)
		write_seed(dir, (int)i + 1, buf, call(buf, paths[i], name, sizeof(name)));
}

/* libFuzzer calls this first: fill an empty corpus directory with seeds. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int i;

	for (i = 1; i < *argc; i++) {
		const char *a = (*argv)[i];
		DIR *d;
		struct dirent *e;
		int n = 0;

		if (a[0] == '-' || !(d = opendir(a)))
			continue;
		while ((e = readdir(d)))
			n += e->d_name[0] != '.';
		closedir(d);
		if (!n)
			write_seeds(a);
	}
	return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv)
{
	static uint8_t buf[1 << 20];
	int i;

	for (i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		size_t n;

		if (!f) {
			perror(argv[i]);
			return 1;
		}
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, n);
	}
	printf("%d inputs\n", argc - 1);
	return 0;
}
#endif
