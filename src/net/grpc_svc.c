/* SPDX-License-Identifier: MIT */
/*
 * net/grpc_svc: the methods of inference.GRPCInferenceService. Requests
 * are decoded with protobuf-c (build/proto/grpc_service.pb-c.h), checked
 * and scheduled through the same calls as HTTP (repo_lookup, kserve_bind,
 * sched_req_prepare, sched_submit), answered with protobuf-c; the raw
 * tensors of ModelInfer bypass protobuf-c both ways.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grpc_service.pb-c.h"
#include "net/grpc_int.h"

#define G_MAX_JOBS 16u
#define G_OBUF_LIMIT (1ull << 30)
#define SVC_PREFIX "/inference.GRPCInferenceService/"

typedef Inference__ModelInferRequest InferReq;
typedef Inference__ModelInferResponse InferRes;

/* ------------------------------------------------------------ routing */

int svc_method(const char *path, size_t len)
{
	static const char *const names[] = {
		[GM_SERVER_LIVE] = "ServerLive",
		[GM_SERVER_READY] = "ServerReady",
		[GM_MODEL_READY] = "ModelReady",
		[GM_SERVER_META] = "ServerMetadata",
		[GM_MODEL_META] = "ModelMetadata",
		[GM_INFER] = "ModelInfer",
		[GM_REPO_INDEX] = "RepositoryIndex",
		[GM_REPO_LOAD] = "RepositoryModelLoad",
		[GM_REPO_UNLOAD] = "RepositoryModelUnload",
		[GM_MODEL_CONFIG] = "ModelConfig",
		[GM_MODEL_STATS] = "ModelStatistics",
	};
	size_t pl = sizeof(SVC_PREFIX) - 1;
	uint32_t i;

	if (len <= pl || memcmp(path, SVC_PREFIX, pl))
		return mm_method(path, len);
	for (i = 1; i < ARRAY_SIZE(names); i++)
		if (strlen(names[i]) == len - pl && !memcmp(path + pl, names[i], len - pl))
			return (int)i;
	return GM_NONE;
}

/* ------------------------------------------------------------ replies */

/* Pack m after the 5-byte prefix into st->resp; extra: bytes that follow
 * in further pieces. The message piece is st->pc[0]. 0 or -ENOMEM. */
static int pack_msg(struct gstream *st, const ProtobufCMessage *m, uint64_t extra)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint64_t total = n + extra;

	if (total > UINT32_MAX)
		return -E2BIG;
	if (n + 5 > st->resp_cap) {
		free(st->resp);
		st->resp_cap = 0;
		st->resp = malloc(n + 5);
		if (!st->resp)
			return -ENOMEM;
		st->resp_cap = n + 5;
	}
	st->resp[0] = 0;
	st->resp[1] = (uint8_t)(total >> 24);
	st->resp[2] = (uint8_t)(total >> 16);
	st->resp[3] = (uint8_t)(total >> 8);
	st->resp[4] = (uint8_t)total;
	protobuf_c_message_pack(m, st->resp + 5);
	st->pc[0] = (struct gpiece){st->resp, n + 5};
	st->n_pc = 1;
	return 0;
}

static void reply_msg(struct gstream *st, const void *m)
{
	int ret = pack_msg(st, m, 0);

	if (ret) {
		gstream_fail_code(st, ret, "cannot encode the response");
		return;
	}
	st->status = GS_OK;
	gstream_reply(st);
}

static void *unpack(struct gstream *st, const ProtobufCMessageDescriptor *d)
{
	void *m = protobuf_c_message_unpack(d, NULL, st->meta_len, (const uint8_t *)st->meta);

	if (!m)
		gstream_fail(st, GS_INVALID_ARGUMENT, "malformed %s message", d->short_name);
	else
		st->unpacked = m;
	return m;
}

void svc_reply_msg(struct gstream *st, const void *m)
{
	reply_msg(st, m);
}

void *svc_unpack(struct gstream *st, const ProtobufCMessageDescriptor *d)
{
	return unpack(st, d);
}

/* ------------------------------------------------------------ lookups */

static int lookup(struct gstream *st, const char *name, const char *ver, struct repo_entry **e)
{
	uint64_t v = 0;
	const char *s;

	for (s = ver; *s >= '0' && *s <= '9' && v <= UINT32_MAX; s++)
		v = v * 10 + (uint64_t)(*s - '0');
	if (*s || (ver[0] && !v) || v > UINT32_MAX)
		return err_set(DPRT_ENOMODEL, "model '%s' has no version '%s'", name, ver);
	if (strlen(name) >= NAME_LEN)
		return err_set(DPRT_ENOMODEL, "no model named '%.40s...'", name);
	return repo_lookup(sched_repo(st->gc->srv->s), name, (uint32_t)v, e);
}

/* The entry exists but does not serve: UNAVAILABLE with its state. */
static void fail_not_ready(struct gstream *st, struct repo_entry *e, const char *what)
{
	char why[SCHED_MSG_LEN];

	repo_entry_reason(e, why, sizeof(why));
	gstream_fail(st, GS_UNAVAILABLE, "model '%s' version %u is %s (%s%s%s)", repo_entry_name(e),
		     repo_entry_version(e), what, repo_state_name(repo_entry_state(e)),
		     why[0] ? ": " : "", why);
}

/* ------------------------------------------------------------ health, metadata */

static void svc_health(struct gstream *st, bool ready)
{
	Inference__ServerLiveResponse live = INFERENCE__SERVER_LIVE_RESPONSE__INIT;
	Inference__ServerReadyResponse rdy = INFERENCE__SERVER_READY_RESPONSE__INIT;
	char why[SCHED_MSG_LEN];

	live.live = true;
	/* as /v2/health/ready: not while loading or with a model that fits
	 * no device */
	rdy.ready = !st->gc->srv->stopping && ready &&
		    sched_ready(st->gc->srv->s, why, sizeof(why));
	if (ready)
		reply_msg(st, &rdy);
	else
		reply_msg(st, &live);
}

static void svc_model_ready(struct gstream *st)
{
	Inference__ModelReadyRequest *q = unpack(st, &inference__model_ready_request__descriptor);
	Inference__ModelReadyResponse res = INFERENCE__MODEL_READY_RESPONSE__INIT;
	struct repo_entry *e;

	if (!q)
		return;
	/* Unknown models are not ready, as for Triton's clients. */
	res.ready = !lookup(st, st->mm_id[0] ? st->mm_id : q->name, st->mm_id[0] ? "" : q->version,
			    &e) &&
		    repo_entry_state(e) == REPO_READY;
	reply_msg(st, &res);
}

static void svc_server_meta(struct gstream *st)
{
	Inference__ServerMetadataResponse res = INFERENCE__SERVER_METADATA_RESPONSE__INIT;
	static char *ext[] = {"binary_tensor_data", "model_repository"};

	res.name = "dprt";
	res.version = (char *)st->gc->srv->o.version;
	res.n_extensions = ARRAY_SIZE(ext);
	res.extensions = ext;
	reply_msg(st, &res);
}

typedef Inference__ModelMetadataResponse__TensorMetadata TensorMeta;

/* One tensor's metadata; symbolic dims as -1. */
static void tensor_meta(TensorMeta *t, const struct io_desc *io, int64_t *dims)
{
	int d;

	inference__model_metadata_response__tensor_metadata__init(t);
	t->name = (char *)io->name;
	t->datatype = (char *)dtype_name((enum dtype)io->dtype);
	for (d = 0; d < io->ndim; d++)
		dims[d] = io->dims[d] < 0 ? -1 : io->dims[d];
	t->n_shape = (size_t)io->ndim;
	t->shape = dims;
}

/* The graph of a known model with its output dims; NULL after failing
 * the call. *outs: to free. */
static const struct graph *meta_graph(struct gstream *st, const char *name, const char *ver,
				      struct repo_entry **e, struct io_desc **outs)
{
	const struct graph *g;
	int ret = lookup(st, name, ver, e);

	*outs = NULL;
	if (ret) {
		gstream_fail_code(st, ret, err_msg(ret));
		return NULL;
	}
	g = repo_entry_graph(*e);
	if (!g) {
		fail_not_ready(st, *e, "not loaded yet, so its signature is not known");
		return NULL;
	}
	*outs = malloc(sizeof(**outs) * (g->n_outputs + 1));
	if (!*outs) {
		gstream_fail(st, GS_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	memcpy(*outs, g->outputs, sizeof(**outs) * g->n_outputs);
	ret = meta_output_dims(g, *outs);
	if (ret)
		log_warn("model '%s': cannot infer its output shapes: %s", g->name, err_msg(ret));
	return g;
}

struct meta_bufs {
	TensorMeta t[2 * SCHED_MAX_IO];
	TensorMeta *tp[2 * SCHED_MAX_IO];
	int64_t dims[2 * SCHED_MAX_IO][MAX_DIMS];
	char vs[64][12];
	char *vp[64];
};

static void meta_versions(struct server *srv, const char *name, struct meta_bufs *b, size_t *n)
{
	uint32_t rows = 0, i;

	*n = 0;
	if (index_fetch(srv, &rows))
		rows = MIN(rows, srv->index_cap);
	for (i = 0; i < rows && *n < ARRAY_SIZE(b->vs); i++) {
		if (strcmp(srv->index[i].name, name))
			continue;
		snprintf(b->vs[*n], sizeof(b->vs[0]), "%u", srv->index[i].version);
		b->vp[*n] = b->vs[*n];
		(*n)++;
	}
}

static void svc_model_meta(struct gstream *st)
{
	Inference__ModelMetadataRequest *q =
		unpack(st, &inference__model_metadata_request__descriptor);
	Inference__ModelMetadataResponse res = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
	struct meta_bufs *b = NULL;
	struct io_desc *outs = NULL;
	const struct graph *g;
	struct repo_entry *e;
	uint32_t i, n;

	if (!q || !(g = meta_graph(st, st->mm_id[0] ? st->mm_id : q->name,
				   st->mm_id[0] ? "" : q->version, &e, &outs)))
		goto out_free;
	b = calloc(1, sizeof(*b));
	if (!b || g->n_inputs > SCHED_MAX_IO || g->n_outputs > SCHED_MAX_IO) {
		gstream_fail(st, b ? GS_UNIMPLEMENTED : GS_RESOURCE_EXHAUSTED,
			     "cannot describe model '%s'", g->name);
		goto out_free;
	}
	for (i = 0, n = 0; i < g->n_inputs; i++, n++)
		tensor_meta(&b->t[n], &g->inputs[i], b->dims[n]);
	for (i = 0; i < g->n_outputs; i++, n++)
		tensor_meta(&b->t[n], &outs[i], b->dims[n]);
	for (i = 0; i < n; i++)
		b->tp[i] = &b->t[i];
	res.name = (char *)repo_entry_name(e);
	res.platform = "dprt";
	meta_versions(st->gc->srv, res.name, b, &res.n_versions);
	res.versions = b->vp;
	res.n_inputs = g->n_inputs;
	res.inputs = b->tp;
	res.n_outputs = g->n_outputs;
	res.outputs = b->tp + g->n_inputs;
	reply_msg(st, &res);
out_free:
	free(outs);
	free(b);
}

/* Triton's data type enum of a dtype. */
static Inference__DataType triton_type(enum dtype dt)
{
	switch (dt) {
	case DT_F32:
		return INFERENCE__DATA_TYPE__TYPE_FP32;
	case DT_F16:
		return INFERENCE__DATA_TYPE__TYPE_FP16;
	case DT_BF16:
		return INFERENCE__DATA_TYPE__TYPE_BF16;
	case DT_I64:
		return INFERENCE__DATA_TYPE__TYPE_INT64;
	case DT_I32:
		return INFERENCE__DATA_TYPE__TYPE_INT32;
	case DT_U8:
		return INFERENCE__DATA_TYPE__TYPE_UINT8;
	case DT_BOOL:
		return INFERENCE__DATA_TYPE__TYPE_BOOL;
	default:
		return INFERENCE__DATA_TYPE__TYPE_INVALID;
	}
}

struct config_bufs {
	Inference__ModelInput in[SCHED_MAX_IO];
	Inference__ModelInput *inp[SCHED_MAX_IO];
	Inference__ModelOutput out[SCHED_MAX_IO];
	Inference__ModelOutput *outp[SCHED_MAX_IO];
	int64_t dims[2 * SCHED_MAX_IO][MAX_DIMS];
};

static void config_io(struct config_bufs *b, const struct graph *g, const struct io_desc *outs)
{
	uint32_t i;
	int d;

	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];

		inference__model_input__init(&b->in[i]);
		b->in[i].name = (char *)io->name;
		b->in[i].data_type = triton_type((enum dtype)io->dtype);
		for (d = 0; d < io->ndim; d++)
			b->dims[i][d] = io->dims[d] < 0 ? -1 : io->dims[d];
		b->in[i].n_dims = (size_t)io->ndim;
		b->in[i].dims = b->dims[i];
		b->inp[i] = &b->in[i];
	}
	for (i = 0; i < g->n_outputs; i++) {
		int64_t *dm = b->dims[SCHED_MAX_IO + i];

		inference__model_output__init(&b->out[i]);
		b->out[i].name = (char *)outs[i].name;
		b->out[i].data_type = triton_type((enum dtype)outs[i].dtype);
		for (d = 0; d < outs[i].ndim; d++)
			dm[d] = outs[i].dims[d] < 0 ? -1 : outs[i].dims[d];
		b->out[i].n_dims = (size_t)outs[i].ndim;
		b->out[i].dims = dm;
		b->outp[i] = &b->out[i];
	}
}

static void svc_model_config(struct gstream *st)
{
	Inference__ModelConfigRequest *q = unpack(st, &inference__model_config_request__descriptor);
	Inference__ModelConfigResponse res = INFERENCE__MODEL_CONFIG_RESPONSE__INIT;
	Inference__ModelConfig cfg = INFERENCE__MODEL_CONFIG__INIT;
	struct config_bufs *b = NULL;
	struct io_desc *outs = NULL;
	const struct graph *g;
	struct repo_entry *e;

	if (!q || !(g = meta_graph(st, q->name, q->version, &e, &outs)))
		goto out_free;
	b = calloc(1, sizeof(*b));
	if (!b || g->n_inputs > SCHED_MAX_IO || g->n_outputs > SCHED_MAX_IO) {
		gstream_fail(st, b ? GS_UNIMPLEMENTED : GS_RESOURCE_EXHAUSTED,
			     "cannot describe model '%s'", g->name);
		goto out_free;
	}
	config_io(b, g, outs);
	cfg.name = (char *)repo_entry_name(e);
	cfg.platform = "dprt";
	cfg.backend = "dprt";
	cfg.max_batch_size = (int32_t)MIN(g->max_batch, INT32_MAX);
	cfg.n_input = g->n_inputs;
	cfg.input = b->inp;
	cfg.n_output = g->n_outputs;
	cfg.output = b->outp;
	res.config = &cfg;
	reply_msg(st, &res);
out_free:
	free(outs);
	free(b);
}

static void svc_model_stats(struct gstream *st)
{
	Inference__ModelStatisticsRequest *q =
		unpack(st, &inference__model_statistics_request__descriptor);
	Inference__ModelStatisticsResponse res = INFERENCE__MODEL_STATISTICS_RESPONSE__INIT;
	struct server *srv = st->gc->srv;
	struct sched_stats *ss = srv->stats;
	Inference__ModelStatistics *ms = NULL, **mp = NULL;
	Inference__InferStatistics *is = NULL;
	Inference__StatisticDuration *du = NULL;
	char(*vs)[12] = NULL;
	uint32_t i, n = 0;

	if (!q)
		return;
	sched_stats(srv->s, ss);
	ms = calloc(ss->n_models + 1, sizeof(*ms));
	mp = calloc(ss->n_models + 1, sizeof(*mp));
	is = calloc(ss->n_models + 1, sizeof(*is));
	du = calloc(2 * (size_t)ss->n_models + 1, sizeof(*du));
	vs = calloc(ss->n_models + 1, sizeof(*vs));
	if (!ms || !mp || !is || !du || !vs) {
		gstream_fail(st, GS_RESOURCE_EXHAUSTED, "out of memory");
		goto out_free;
	}
	for (i = 0; i < ss->n_models; i++) {
		const struct sched_model_stats *m = &ss->models[i];

		snprintf(vs[n], sizeof(vs[0]), "%u", m->version);
		if ((q->name[0] && strcmp(q->name, m->name)) ||
		    (q->version[0] && strcmp(q->version, vs[n])))
			continue;
		inference__model_statistics__init(&ms[n]);
		inference__infer_statistics__init(&is[n]);
		inference__statistic_duration__init(&du[2 * n]);
		inference__statistic_duration__init(&du[2 * n + 1]);
		ms[n].name = (char *)m->name;
		ms[n].version = vs[n];
		ms[n].inference_count = ms[n].execution_count = m->requests - m->failures;
		du[2 * n] = (Inference__StatisticDuration){
			du[2 * n].base, m->requests - m->failures, m->lat_sum_ns};
		du[2 * n + 1].count = m->failures;
		is[n].success = &du[2 * n];
		is[n].fail = &du[2 * n + 1];
		ms[n].inference_stats = &is[n];
		mp[n] = &ms[n];
		n++;
	}
	if (q->name[0] && !n) {
		gstream_fail(st, GS_NOT_FOUND, "no model '%s'%s%s", q->name,
			     q->version[0] ? " version " : "", q->version);
		goto out_free;
	}
	res.n_model_stats = n;
	res.model_stats = mp;
	reply_msg(st, &res);
out_free:
	free(ms);
	free(mp);
	free(is);
	free(du);
	free(vs);
}

/* ------------------------------------------------------------ repository */

static void svc_repo_index(struct gstream *st)
{
	Inference__RepositoryIndexRequest *q =
		unpack(st, &inference__repository_index_request__descriptor);
	Inference__RepositoryIndexResponse res = INFERENCE__REPOSITORY_INDEX_RESPONSE__INIT;
	Inference__RepositoryIndexResponse__ModelIndex *rows = NULL, **rp = NULL;
	struct server *srv = st->gc->srv;
	char(*vs)[12] = NULL;
	uint32_t n = 0, i;
	int ret;

	if (!q)
		return;
	ret = index_fetch(srv, &n);
	if (!ret && !((rows = calloc(n + 1, sizeof(*rows))) && (rp = calloc(n + 1, sizeof(*rp))) &&
		      (vs = calloc(n + 1, sizeof(*vs)))))
		ret = -ENOMEM;
	for (i = 0; !ret && i < n; i++) {
		const struct repo_info *ri = &srv->index[i];
		Inference__RepositoryIndexResponse__ModelIndex *r = &rows[res.n_models];

		if (q->ready && ri->state != REPO_READY)
			continue;
		inference__repository_index_response__model_index__init(r);
		snprintf(vs[res.n_models], sizeof(vs[0]), "%u", ri->version);
		r->name = (char *)ri->name;
		r->version = vs[res.n_models];
		r->state = (char *)repo_state_name((enum repo_state)ri->state);
		r->reason = (char *)ri->reason;
		rp[res.n_models++] = r;
	}
	res.models = rp;
	if (ret)
		gstream_fail_code(st, ret, "cannot list the repository");
	else
		reply_msg(st, &res);
	free(rows);
	free(rp);
	free(vs);
}

static void *job_main(void *arg)
{
	struct grpc_job *j = arg;

	j->ret = ep_repo_act(j->srv->s, j->load, j->model, 0);
	if (j->ret)
		snprintf(j->msg, sizeof(j->msg), "%s", err_msg(j->ret));
	ep_job_done(j->srv, &j->done); /* grpc_jobs_reap() acquires */
	return NULL;
}

static void svc_repo_control(struct gstream *st, bool load)
{
	const ProtobufCMessageDescriptor *d =
		load ? &inference__repository_model_load_request__descriptor :
		       &inference__repository_model_unload_request__descriptor;
	/* Both requests have the same fields. */
	Inference__RepositoryModelLoadRequest *q = unpack(st, d);
	struct server *srv = st->gc->srv;
	struct grpc_srv *g = srv->grpc;
	struct grpc_job *j;

	if (!q)
		return;
	if (!q->model_name[0] || strlen(q->model_name) >= NAME_LEN) {
		gstream_fail(st, GS_INVALID_ARGUMENT, "model_name is empty or too long");
		return;
	}
	if (g->n_jobs >= G_MAX_JOBS || !(j = calloc(1, sizeof(*j)))) {
		gstream_fail(st, GS_UNAVAILABLE, "too many model loads and unloads in progress");
		return;
	}
	j->srv = srv;
	j->st = st;
	j->load = load;
	snprintf(j->model, sizeof(j->model), "%s", q->model_name);
	if (pthread_create(&j->thread, NULL, job_main, j)) {
		free(j);
		gstream_fail(st, GS_UNAVAILABLE, "cannot start a helper thread");
		return;
	}
	st->inflight = true;
	st->gc->n_inflight++;
	j->next = g->jobs;
	g->jobs = j;
	g->n_jobs++;
}

static void svc_job_done(struct grpc_job *j)
{
	Inference__RepositoryModelLoadResponse res =
		INFERENCE__REPOSITORY_MODEL_LOAD_RESPONSE__INIT;
	struct gstream *st = j->st;

	if (j->kind != GJ_REPO) {
		mm_job_done(j);
		return;
	}
	if (!j->ret)
		log_info("model '%s': %s", j->model, j->load ? "loaded" : "unloaded");
	if (!gstream_back(st))
		return;
	if (j->ret)
		gstream_fail_code(st, j->ret, j->msg);
	else
		reply_msg(st, &res);
}

void grpc_jobs_reap(struct server *srv)
{
	struct grpc_srv *g = srv->grpc;
	struct grpc_job **jp, *j;

	if (!g)
		return;
	jp = &g->jobs;
	while ((j = *jp)) {
		/* Acquire: pairs with the release in job_main(). */
		if (!atomic_load_explicit(&j->done, memory_order_acquire)) {
			jp = &j->next;
			continue;
		}
		*jp = j->next;
		pthread_join(j->thread, NULL);
		g->n_jobs--;
		svc_job_done(j);
		free(j);
	}
}

/* ------------------------------------------------------------ ModelInfer: in */

static int meta_put(struct gstream *st, const void *p, size_t n)
{
	size_t cap = st->meta_cap;

	if (buf_grow(&st->meta, &st->meta_cap, st->meta_len + n + 1))
		return -ENOMEM;
	st->gc->buffered += st->meta_cap - cap;
	memcpy(st->meta + st->meta_len, p, n);
	st->meta_len += n;
	return 0;
}

/* A field's tag or length varint is complete in sp->v. */
static int split_varint_done(struct gstream *st)
{
	struct split *sp = &st->sp;
	uint64_t v = sp->v, off;

	sp->v = 0;
	sp->shift = 0;
	if (sp->state == SP_LEN) {
		if (v > st->msg_len)
			return -EINVAL;
		sp->left = v;
		sp->state = v ? SP_BODY : SP_TAG;
		if (!sp->raw) {
			int ret = meta_put(st, sp->hdr, sp->hlen);

			sp->hlen = 0;
			return ret;
		}
		sp->hlen = 0;
		if (st->n_raw == KSERVE_MAX_TENSORS)
			return -E2BIG;
		off = ALIGN_UP(st->raw_len, 64);
		if (off + v > st->raw_cap)
			return -EINVAL;
		st->raw_off[st->n_raw] = off;
		st->raw_size[st->n_raw++] = v;
		st->raw_len = off;
		return 0;
	}
	/* a tag: its bytes stay in hdr until the field's kind is known */
	if (!(v >> 3) || (v >> 3) > UINT32_MAX)
		return -EINVAL;
	sp->raw = (v >> 3) == 7 && (v & 7) == 2;
	switch (v & 7) {
	case 0:
		sp->state = SP_VARINT;
		return 0;
	case 2:
		sp->state = SP_LEN;
		return 0;
	case 1:
	case 5:
		sp->state = SP_FIXED;
		sp->left = (v & 7) == 1 ? 8 : 4;
		v = sp->hlen;
		sp->hlen = 0;
		return meta_put(st, sp->hdr, (size_t)v);
	default:
		return -EINVAL; /* groups */
	}
}

int split_feed(struct gstream *st, const uint8_t *p, size_t n)
{
	struct split *sp = &st->sp;
	int ret = 0;

	while (n && !ret) {
		if (sp->state == SP_BODY || sp->state == SP_FIXED) {
			size_t k = (size_t)MIN((uint64_t)n, sp->left);

			if (sp->raw && sp->state == SP_BODY) {
				memcpy(st->raw + st->raw_len, p, k);
				st->raw_len += k;
			} else if (meta_put(st, p, k)) {
				ret = -ENOMEM;
			}
			p += k;
			n -= k;
			sp->left -= k;
			if (!sp->left)
				sp->state = SP_TAG;
			continue;
		}
		if (sp->hlen == sizeof(sp->hdr) || sp->shift >= 64) {
			ret = -EINVAL;
			break;
		}
		sp->hdr[sp->hlen++] = *p;
		sp->v |= (uint64_t)(*p & 0x7f) << sp->shift;
		sp->shift += 7;
		if (*p++ & 0x80) {
			n--;
			continue;
		}
		n--;
		if (sp->state == SP_VARINT) {
			ret = meta_put(st, sp->hdr, sp->hlen);
			sp->hlen = 0;
			sp->v = 0;
			sp->shift = 0;
			sp->state = SP_TAG;
			continue;
		}
		ret = split_varint_done(st);
	}
	if (ret == -ENOMEM)
		gstream_fail(st, GS_RESOURCE_EXHAUSTED, "out of memory");
	else if (ret == -E2BIG)
		gstream_fail(st, GS_INVALID_ARGUMENT, "more than %u raw_input_contents",
			     KSERVE_MAX_TENSORS);
	else if (ret)
		gstream_fail(st, GS_INVALID_ARGUMENT, "malformed ModelInferRequest message");
	return ret;
}

/* Typed contents of a tensor: its data, converted where our dtype is
 * narrower than the protobuf's. 0 or DPRT_EINPUT. */
static int typed_data(struct gstream *st, const Inference__InferTensorContents *c,
		      struct kserve_tensor *t, uint64_t numel)
{
	size_t have = 0, i;
	uint8_t *u;

	switch (t->shape.dtype) {
	case DT_F32:
		have = c->n_fp32_contents;
		t->data = c->fp32_contents;
		break;
	case DT_I64:
		have = c->n_int64_contents;
		t->data = c->int64_contents;
		break;
	case DT_I32:
		have = c->n_int_contents;
		t->data = c->int_contents;
		break;
	case DT_U8:
		have = c->n_uint_contents;
		break;
	case DT_BOOL:
		have = c->n_bool_contents;
		break;
	default:
		return err_set(DPRT_EINPUT,
			       "input '%s': %s has no typed contents; send it in "
			       "raw_input_contents",
			       t->name, dtype_name((enum dtype)t->shape.dtype));
	}
	if (have != numel)
		return err_set(DPRT_EINPUT,
			       "input '%s': %zu values in its contents, its shape "
			       "needs %llu",
			       t->name, have, (unsigned long long)numel);
	if (t->shape.dtype != DT_U8 && t->shape.dtype != DT_BOOL)
		return 0;
	u = arena_alloc(&st->arena, numel + 1, 8);
	if (!u)
		return err_set(-E2BIG, "input '%s' does not fit the decode arena", t->name);
	for (i = 0; i < numel; i++) {
		if (t->shape.dtype == DT_U8 && c->uint_contents[i] > 255)
			return err_set(DPRT_EINPUT, "input '%s': %u is out of range for UINT8",
				       t->name, c->uint_contents[i]);
		u[i] = t->shape.dtype == DT_U8 ? (uint8_t)c->uint_contents[i] :
						 (uint8_t) !!c->bool_contents[i];
	}
	t->data = u;
	return 0;
}

static int input_decode(struct gstream *st, const InferReq *m, uint32_t i)
{
	const Inference__ModelInferRequest__InferInputTensor *in = m->inputs[i];
	struct kserve_tensor *t = &st->kr.inputs[i];
	uint64_t numel = 1;
	size_t d;

	if (strlen(in->name) >= NAME_LEN)
		return err_set(DPRT_EINPUT, "input %u: name too long", i);
	snprintf(t->name, sizeof(t->name), "%s", in->name);
	t->shape.dtype = (uint8_t)dtype_parse(in->datatype);
	if (t->shape.dtype == DT_NONE)
		return err_set(DPRT_EDTYPE, "input '%s': unsupported datatype '%s'", t->name,
			       in->datatype);
	if (!in->n_shape || in->n_shape > MAX_DIMS)
		return err_set(DPRT_ESHAPE, "input '%s': rank %zu; 1 to %d dims", t->name,
			       in->n_shape, MAX_DIMS);
	t->shape.ndim = (int)in->n_shape;
	for (d = 0; d < in->n_shape; d++) {
		if (in->shape[d] < 0 || in->shape[d] > (1ll << 40))
			return err_set(DPRT_ESHAPE, "input '%s': dim %zu is %lld", t->name, d,
				       (long long)in->shape[d]);
		t->shape.dims[d] = in->shape[d];
		numel *= (uint64_t)in->shape[d];
		if (numel > (1ull << 40))
			return err_set(DPRT_ESHAPE, "input '%s' is too large", t->name);
	}
	t->nbytes = numel * dtype_size((enum dtype)t->shape.dtype);
	t->binary = st->n_raw > 0;
	if (!st->n_raw)
		return in->contents ? typed_data(st, in->contents, t, numel) :
				      err_set(DPRT_EINPUT, "input '%s' has no contents", t->name);
	if (st->raw_size[i] != t->nbytes)
		return err_set(DPRT_EINPUT,
			       "input '%s': %llu bytes in raw_input_contents, its "
			       "shape and datatype need %llu",
			       t->name, (unsigned long long)st->raw_size[i],
			       (unsigned long long)t->nbytes);
	t->data = st->raw + st->raw_off[i];
	return 0;
}

/* The decoded message as a kserve_request. 0 or an error with err_set. */
static int infer_decode(struct gstream *st, const InferReq *m)
{
	struct kserve_request *kr = &st->kr;
	uint32_t i;
	int ret;

	memset(kr, 0, sizeof(*kr));
	kr->id = m->id;
	if (m->n_inputs > KSERVE_MAX_TENSORS || m->n_outputs > KSERVE_MAX_TENSORS)
		return err_set(DPRT_EINPUT, "more than %u inputs or outputs", KSERVE_MAX_TENSORS);
	if (st->n_raw && st->n_raw != m->n_inputs)
		return err_set(DPRT_EINPUT, "%u raw_input_contents for %zu inputs", st->n_raw,
			       m->n_inputs);
	if (arena_init(&st->arena, st->meta_len + 4096))
		return err_set(-ENOMEM, "out of memory");
	kr->n_inputs = (uint32_t)m->n_inputs;
	for (i = 0; i < kr->n_inputs; i++) {
		ret = input_decode(st, m, i);
		if (ret)
			return ret;
	}
	kr->n_outputs = (uint32_t)m->n_outputs;
	for (i = 0; i < kr->n_outputs; i++) {
		if (strlen(m->outputs[i]->name) >= NAME_LEN)
			return err_set(DPRT_EINPUT, "output %u: name too long", i);
		snprintf(kr->outputs[i].name, NAME_LEN, "%s", m->outputs[i]->name);
		kr->outputs[i].binary = true;
	}
	return 0;
}

/* Checks before a record is taken, as HTTP's infer_check. */
static int infer_check(struct gstream *st, const InferReq *m, const struct graph **g, int *order)
{
	int ret = infer_decode(st, m);

	/* ModelMesh names the model in a header (its id), not the message. */
	if (!ret && st->mm_id_long)
		ret = err_set(DPRT_ENOMODEL, "mm-model-id names no model (too long)");
	else if (!ret && st->mm_id[0])
		ret = lookup(st, st->mm_id, "", &st->e);
	else if (!ret)
		ret = lookup(st, m->model_name, m->model_version, &st->e);
	if (ret)
		return ret;
	*g = repo_entry_graph(st->e);
	if (repo_entry_state(st->e) != REPO_READY || !*g)
		return DPRT_ENOMODEL;
	if ((*g)->n_inputs > SCHED_MAX_IO || (*g)->n_outputs > SCHED_MAX_IO)
		return err_set(DPRT_ETOOMANY, "model '%s' has more than %u inputs or outputs",
			       (*g)->name, SCHED_MAX_IO);
	return kserve_bind(&st->kr, (*g)->inputs, (*g)->n_inputs, (*g)->outputs, (*g)->n_outputs,
			   order);
}

static void infer_fill(struct gstream *st, const struct graph *g, const int *order)
{
	struct sched_req *r = st->sreq;
	uint32_t i;
	bool bin;

	r->model = st->e;
	r->chan = st->gc->srv->chan;
	r->ctx = (void *)((uintptr_t)st | 1u);
	r->t_post = st->t_done;
	for (i = 0; i < g->n_inputs; i++) {
		const struct kserve_tensor *t;

		if (order[i] < 0)
			continue;
		t = &st->kr.inputs[order[i]];
		r->in[i] = (struct tview){t->shape, (void *)t->data, t->nbytes};
	}
	for (i = 0; i < g->n_outputs; i++)
		if (kserve_want_output(&st->kr, g->outputs[i].name, &bin))
			r->out_mask |= 1u << i;
}

/* Submit; outputs too big for the record's buffer get one of ours. */
static int infer_submit(struct gstream *st)
{
	struct sched_req *r = st->sreq;
	int ret = sched_req_prepare(r);
	void *p;

	if (!ret)
		ret = sched_submit(st->gc->srv->s, r);
	if (ret != DPRT_EOUTBUF || !r->out_need)
		return ret;
	if (r->out_need > G_OBUF_LIMIT)
		return err_set(-E2BIG, "the outputs need %llu bytes; at most %llu per request",
			       (unsigned long long)r->out_need, (unsigned long long)G_OBUF_LIMIT);
	p = aligned_alloc(64, ALIGN_UP(r->out_need, 64));
	if (!p)
		return err_set(-ENOMEM, "cannot allocate the outputs");
	free(st->obuf);
	st->obuf = p;
	st->ocap = ALIGN_UP(r->out_need, 64);
	sched_req_set_output(r, st->obuf, st->ocap);
	return sched_submit(st->gc->srv->s, r);
}

static void svc_infer(struct gstream *st)
{
	int order[SCHED_MAX_IO + 1];
	const struct graph *g = NULL;
	InferReq *m;
	int ret;

	if (st->sp.state != SP_TAG || st->sp.hlen) {
		gstream_fail(st, GS_INVALID_ARGUMENT, "malformed ModelInferRequest message");
		return;
	}
	m = unpack(st, &inference__model_infer_request__descriptor);
	if (!m)
		return;
	ret = infer_check(st, m, &g, order);
	if (ret == DPRT_ENOMODEL && st->e) {
		st->gc->srv->cnt.infer_rejected++;
		fail_not_ready(st, st->e, "not ready");
		return;
	}
	if (!ret && !(st->sreq = sched_req_get(st->gc->srv->s)))
		ret = err_set(DPRT_EOVERLOAD, "overloaded: every request record is in use");
	if (!ret) {
		infer_fill(st, g, order);
		ret = infer_submit(st);
	}
	if (ret) {
		st->gc->srv->cnt.infer_rejected++;
		if (st->sreq && (ret == DPRT_ENOMODEL || ret == -ESHUTDOWN))
			gstream_fail(st, GS_UNAVAILABLE, "%s", err_msg(ret));
		else
			gstream_fail_code(st, ret, err_msg(ret));
		return;
	}
	snprintf(st->ver, sizeof(st->ver), "%u", repo_entry_version(st->e));
	st->inflight = true;
	st->gc->n_inflight++;
}

/* ------------------------------------------------------------ ModelInfer: out */

typedef Inference__ModelInferResponse__InferOutputTensor OutTensor;
typedef Inference__ModelInferResponse__ParametersEntry ParamEntry;

struct infer_bufs {
	OutTensor t[SCHED_MAX_IO];
	OutTensor *tp[SCHED_MAX_IO];
	ParamEntry pe[5];
	ParamEntry *pp[5];
	Inference__InferParameter pv[5];
};

static void param(struct infer_bufs *b, uint32_t i, const char *key)
{
	inference__model_infer_response__parameters_entry__init(&b->pe[i]);
	inference__infer_parameter__init(&b->pv[i]);
	b->pe[i].key = (char *)key;
	b->pe[i].value = &b->pv[i];
	b->pp[i] = &b->pe[i];
}

static void infer_params(struct infer_bufs *b, const struct sched_req *r, const char *dev)
{
	static const char *const keys[] = {"queue_us", "load_us", "compute_us"};
	uint64_t ns[3] = {r->t_queue, r->t_load, r->t_exec};
	uint32_t i;

	param(b, 0, "cold_start");
	b->pv[0].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM;
	b->pv[0].bool_param = !!(r->flags & SCHED_F_COLD);
	for (i = 0; i < 3; i++) {
		param(b, i + 1, keys[i]);
		b->pv[i + 1].parameter_choice_case =
			INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
		b->pv[i + 1].int64_param = (int64_t)(ns[i] / 1000);
	}
	param(b, 4, "device");
	b->pv[4].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
	b->pv[4].string_param = (char *)dev;
}

/* Tag 6 and the length of one raw output; returns its bytes. */
static size_t raw_hdr(uint8_t *h, uint64_t len)
{
	size_t n = 0;

	h[n++] = 6 << 3 | 2;
	do {
		h[n++] = (uint8_t)((len & 0x7f) | (len >= 0x80 ? 0x80 : 0));
		len >>= 7;
	} while (len);
	return n;
}

static int infer_encode(struct gstream *st, struct infer_bufs *b)
{
	const struct sched_req *r = st->sreq;
	const struct graph *g = repo_entry_graph(r->model);
	InferRes res = INFERENCE__MODEL_INFER_RESPONSE__INIT;
	const struct tview *o[SCHED_MAX_IO];
	uint64_t extra = 0, len;
	uint32_t i, n = 0;
	int ret;

	for (i = 0; i < r->n_out; i++) {
		if (!(r->out_mask >> i & 1))
			continue;
		o[n] = &r->out[i];
		inference__model_infer_response__infer_output_tensor__init(&b->t[n]);
		b->t[n].name = (char *)g->outputs[i].name;
		b->t[n].datatype = (char *)dtype_name((enum dtype)o[n]->shape.dtype);
		b->t[n].n_shape = (size_t)o[n]->shape.ndim;
		b->t[n].shape = (int64_t *)o[n]->shape.dims;
		b->tp[n] = &b->t[n];
		len = (uint64_t)shape_numel(&o[n]->shape) *
		      dtype_size((enum dtype)o[n]->shape.dtype);
		extra += raw_hdr(st->hdrs[n], len) + len;
		n++;
	}
	infer_params(b, r, st->gc->srv->dev[r->worker]);
	res.model_name = (char *)repo_entry_name(r->model);
	res.model_version = st->ver;
	res.id = (char *)st->kr.id;
	res.n_parameters = 5;
	res.parameters = b->pp;
	res.n_outputs = n;
	res.outputs = b->tp;
	ret = pack_msg(st, &res.base, extra);
	for (i = 0; !ret && i < n; i++) {
		len = (uint64_t)shape_numel(&o[i]->shape) *
		      dtype_size((enum dtype)o[i]->shape.dtype);
		st->pc[st->n_pc++] = (struct gpiece){st->hdrs[i], raw_hdr(st->hdrs[i], len)};
		st->pc[st->n_pc++] = (struct gpiece){o[i]->data, (size_t)len};
	}
	return ret;
}

void svc_infer_done(struct gstream *st)
{
	const struct sched_req *r = st->sreq;
	struct infer_bufs *b;
	int ret;

	if (r->status) {
		gstream_fail(st,
			     r->status == DPRT_ENOMODEL || r->status == -ESHUTDOWN ?
				     GS_UNAVAILABLE :
				     grpc_status_of(r->status),
			     "%s", r->msg);
		return;
	}
	st->cold = r->flags & SCHED_F_COLD;
	snprintf(st->timing, sizeof(st->timing), "queue;dur=%.3f, load;dur=%.3f, compute;dur=%.3f",
		 (double)r->t_queue / 1e6, (double)r->t_load / 1e6, (double)r->t_exec / 1e6);
	b = calloc(1, sizeof(*b));
	ret = b ? infer_encode(st, b) : -ENOMEM;
	free(b);
	if (ret) {
		gstream_fail_code(st, ret, "cannot encode the response");
		return;
	}
	st->status = GS_OK;
	gstream_reply(st);
}

/* ------------------------------------------------------------ dispatch */

void svc_call(struct gstream *st)
{
	switch (st->method) {
	case GM_SERVER_LIVE:
		svc_health(st, false);
		break;
	case GM_SERVER_READY:
		svc_health(st, true);
		break;
	case GM_MODEL_READY:
		svc_model_ready(st);
		break;
	case GM_SERVER_META:
		svc_server_meta(st);
		break;
	case GM_MODEL_META:
		svc_model_meta(st);
		break;
	case GM_INFER:
		svc_infer(st);
		break;
	case GM_REPO_INDEX:
		svc_repo_index(st);
		break;
	case GM_REPO_LOAD:
		svc_repo_control(st, true);
		break;
	case GM_REPO_UNLOAD:
		svc_repo_control(st, false);
		break;
	case GM_MODEL_CONFIG:
		svc_model_config(st);
		break;
	case GM_MODEL_STATS:
		svc_model_stats(st);
		break;
	case GM_MM_LOAD:
	case GM_MM_UNLOAD:
	case GM_MM_PREDICT:
	case GM_MM_SIZE:
	case GM_MM_STATUS:
		mm_call(st);
		break;
	default:
		gstream_fail(st, GS_UNIMPLEMENTED, "unknown method");
		break;
	}
}
