/* SPDX-License-Identifier: MIT */
/*
 * net/grpc_mm: ModelMesh's model-runtime interface, mmesh.ModelRuntime
 * (src/net/proto/model_runtime.proto), on the gRPC port. loadModel
 * registers the package at modelPath under the model id (repo_register)
 * and loads it on a job thread, at most GRPC_MM_LOADS loads at a time
 * (the others wait); unloadModel unloads it on a job thread; sizes are
 * the packages' weight bytes; predictModelSize reads only the package's
 * header and tables; runtimeStatus first unloads every model loadModel
 * loaded (ModelMesh calls it when it starts, knowing of no model loaded).
 * A load whose loadModel is cancelled (the stream reset) is unloaded when
 * it finishes; an unloadModel that comes while the model loads waits for
 * the load, then unloads (the loadModel, if still there, is CANCELLED).
 * ModelMesh routes inference as ModelInfer with the
 * mm-model-id header naming the model (grpc_svc.c).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_runtime.pb-c.h"
#include "net/grpc_int.h"

#define MM_PREFIX "/mmesh.ModelRuntime/"
#define MM_MAX_JOBS 16u		   /* as grpc_svc.c's repository jobs */
#define MM_LOAD_TIMEOUT_MS 300000u /* RuntimeStatus.modelLoadingTimeoutMs */
#define MM_DEFAULT_SIZE (64ull << 20)
#define MM_PKG "model.dpk"

typedef Mmesh__RuntimeStatusResponse StatusRes;
typedef Mmesh__RuntimeStatusResponse__MethodInfo MethodInfo;
typedef Mmesh__RuntimeStatusResponse__MethodInfosEntry MethodEntry;

int mm_method(const char *path, size_t len)
{
	static const struct {
		const char *name;
		int m;
	} names[] = {
		{"loadModel", GM_MM_LOAD},	     {"unloadModel", GM_MM_UNLOAD},
		{"predictModelSize", GM_MM_PREDICT}, {"modelSize", GM_MM_SIZE},
		{"runtimeStatus", GM_MM_STATUS},
	};
	size_t pl = sizeof(MM_PREFIX) - 1;
	uint32_t i;

	if (len <= pl || memcmp(path, MM_PREFIX, pl))
		return GM_NONE;
	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (strlen(names[i].name) == len - pl &&
		    !memcmp(path + pl, names[i].name, len - pl))
			return names[i].m;
	return GM_NONE;
}

/* ------------------------------------------------------------ packages */

static bool is_file(const char *path)
{
	struct stat sb;

	return !stat(path, &sb) && S_ISREG(sb.st_mode);
}

/* A version directory's number, 0 if the name is none. */
static uint32_t version_of(const char *s)
{
	uint64_t v = 0;

	if (*s == '0')
		return 0;
	for (; *s >= '0' && *s <= '9' && v <= UINT32_MAX; s++)
		v = v * 10 + (uint64_t)(*s - '0');
	return *s || v > UINT32_MAX ? 0 : (uint32_t)v;
}

/* DIR/<highest version>/model.dpk of a repository entry directory. */
static int newest_version(const char *dir, char *out, size_t cap)
{
	uint32_t best = 0, v;
	struct dirent *de;
	DIR *d = opendir(dir);
	int n;

	if (!d)
		return err_set(-errno, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		v = version_of(de->d_name);
		if (v <= best)
			continue;
		n = snprintf(out, cap, "%s/%u/" MM_PKG, dir, v);
		if (n > 0 && (size_t)n < cap && is_file(out))
			best = v;
	}
	closedir(d);
	if (!best)
		return err_set(-ENOENT, "%s: no " MM_PKG " in it nor in a version directory", dir);
	snprintf(out, cap, "%s/%u/" MM_PKG, dir, best);
	return 0;
}

/* The package file of a modelPath: a package file, a directory holding
 * model.dpk, or a repository entry directory (<version>/model.dpk). */
static int pkg_resolve(const char *in, char *out, size_t cap)
{
	struct stat sb;
	int n;

	if (!in[0])
		return err_set(-EINVAL, "modelPath is empty");
	if (stat(in, &sb))
		return err_set(-ENOENT, "modelPath %s: %s", in, strerror(errno));
	n = snprintf(out, cap, "%s", in);
	if (n < 0 || (size_t)n >= cap)
		return err_set(-EINVAL, "modelPath is too long");
	if (S_ISREG(sb.st_mode))
		return 0;
	if (!S_ISDIR(sb.st_mode))
		return err_set(-EINVAL, "modelPath %s: not a file or directory", in);
	n = snprintf(out, cap, "%s/" MM_PKG, in);
	if (n > 0 && (size_t)n < cap && is_file(out))
		return 0;
	return newest_version(in, out, cap);
}

/* The gRPC status of a failed package lookup or open. */
static int pkg_status(int code)
{
	return code == -ENOENT ? GS_NOT_FOUND : GS_INVALID_ARGUMENT;
}

/* ------------------------------------------------------------ jobs */

/* Wait for a load slot (at most GRPC_MM_LOADS loads run at once). */
static void load_enter(struct grpc_srv *g, const struct grpc_job *j)
{
	uint32_t n;

	pthread_mutex_lock(&g->mm_lock);
	while (g->mm_loading >= GRPC_MM_LOADS)
		pthread_cond_wait(&g->mm_cond, &g->mm_lock);
	n = ++g->mm_loading;
	pthread_mutex_unlock(&g->mm_lock);
	log_info("model '%s': loading %s (mmesh load %u of at most %u)", j->model, j->path, n,
		 GRPC_MM_LOADS);
}

static void load_exit(struct grpc_srv *g)
{
	pthread_mutex_lock(&g->mm_lock);
	g->mm_loading--;
	pthread_cond_signal(&g->mm_cond);
	pthread_mutex_unlock(&g->mm_lock);
}

/* Job thread: resolve, register and load j->model; its size. */
static int mm_load(struct grpc_job *j)
{
	struct sched *s = j->srv->s;
	char pkg[PATH_MAX];
	struct repo_entry *e;
	int ret;

	ret = pkg_resolve(j->path, pkg, sizeof(pkg));
	if (ret) {
		j->gstatus = pkg_status(ret);
		return ret;
	}
	ret = repo_register(sched_repo(s), j->model, pkg);
	if (ret) {
		j->gstatus = GS_INVALID_ARGUMENT;
		return ret;
	}
	ret = sched_load(s, j->model, 1);
	if (!ret)
		ret = repo_lookup(sched_repo(s), j->model, 1, &e);
	if (ret)
		return ret;
	j->size = repo_entry_graph(e)->weights_size;
	return 0;
}

/* Job thread: unload every registered model that is not UNAVAILABLE. */
static int mm_purge(struct grpc_job *j)
{
	struct repo *r = sched_repo(j->srv->s);
	struct repo_info *rows = NULL;
	uint32_t n = 0, cap, i, k = 0;
	int ret = 0;

	repo_index(r, NULL, 0, &n);
	cap = n + 16; /* room for loads meanwhile */
	rows = calloc(cap, sizeof(*rows));
	if (!rows)
		return err_set(-ENOMEM, "out of memory");
	repo_index(r, rows, cap, &n);
	for (i = 0; i < MIN(n, cap) && !ret; i++) {
		if (!rows[i].registered || rows[i].state == REPO_UNAVAILABLE)
			continue;
		ret = sched_unload(j->srv->s, rows[i].name, rows[i].version);
		k++;
	}
	free(rows);
	if (k && !ret)
		log_info("mmesh runtimeStatus: unloaded %u model%s loaded before", k,
			 k == 1 ? "" : "s");
	return ret;
}

static void *mm_job_main(void *arg)
{
	struct grpc_job *j = arg;

	if (j->kind == GJ_MM_PURGE) {
		j->ret = mm_purge(j);
	} else if (j->kind == GJ_MM_LOAD) {
		load_enter(j->srv->grpc, j);
		j->ret = mm_load(j);
		load_exit(j->srv->grpc);
	} else {
		j->ret = sched_unload(j->srv->s, j->model, 1);
		if (j->ret == DPRT_ENOMODEL)
			j->gstatus = GS_NOT_FOUND;
	}
	if (j->ret)
		snprintf(j->msg, sizeof(j->msg), "%s", err_msg(j->ret));
	ep_job_done(j->srv, &j->done); /* grpc_jobs_reap() acquires */
	return NULL;
}

/* Start a load or unload of model id for st (answered in mm_job_done), or
 * for nobody (st NULL: undoing a cancelled load). 0, or -1 after failing st. */
static int job_start(struct server *srv, struct gstream *st, uint8_t kind, const char *id,
		     const char *path)
{
	struct grpc_srv *g = srv->grpc;
	struct grpc_job *j = NULL;
	const char *why = "too many model loads and unloads in progress";

	if (g->n_jobs < MM_MAX_JOBS && (j = calloc(1, sizeof(*j)))) {
		j->srv = srv;
		j->st = st;
		j->kind = kind;
		j->load = kind == GJ_MM_LOAD;
		snprintf(j->model, sizeof(j->model), "%s", id);
		snprintf(j->path, sizeof(j->path), "%s", path ? path : "");
		why = "cannot start a helper thread";
	}
	if (!j || pthread_create(&j->thread, NULL, mm_job_main, j)) {
		free(j);
		if (st)
			gstream_fail(st, GS_UNAVAILABLE, "%s", why);
		return -1;
	}
	if (st) {
		st->inflight = true;
		st->gc->n_inflight++;
	}
	j->next = g->jobs;
	g->jobs = j;
	g->n_jobs++;
	return 0;
}

/* The loadModel job of model id still in flight (not yet answered), or NULL. */
static struct grpc_job *load_in_flight(struct grpc_srv *g, const char *id)
{
	struct grpc_job *j;

	for (j = g->jobs; j; j = j->next)
		if (j->kind == GJ_MM_LOAD && !strcmp(j->model, id))
			return j;
	return NULL;
}

/*
 * A load whose loadModel was cancelled (its stream reset: ModelMesh gave
 * up on it) or overtaken by an unloadModel has finished: unload what it
 * loaded, so that nothing stays loaded that ModelMesh does not count,
 * answering the waiting unloadModel, if any, when that is done.
 */
static void load_undo(struct grpc_job *j)
{
	struct gstream *w = j->waiter;

	if (w && !gstream_back(w))
		w = NULL; /* job_start counts it again */
	if (j->ret && !w)
		return; /* it failed: nothing is loaded */
	log_info("model '%s': %s while it loaded; unloading it (mmesh)", j->model,
		 j->cancel ? "an unloadModel came" : "its loadModel was cancelled");
	if (job_start(j->srv, w, GJ_MM_UNLOAD, j->model, NULL) && !w)
		log_warn("model '%s': cannot start its unload; it stays loaded", j->model);
}

static void status_reply(struct gstream *st);

void mm_job_done(struct grpc_job *j)
{
	Mmesh__LoadModelResponse lr = MMESH__LOAD_MODEL_RESPONSE__INIT;
	Mmesh__UnloadModelResponse ur = MMESH__UNLOAD_MODEL_RESPONSE__INIT;
	struct gstream *st = j->st;
	bool back = st && gstream_back(st);

	if (!j->ret && j->kind != GJ_MM_PURGE)
		log_info("model '%s': %s (mmesh)", j->model,
			 j->kind == GJ_MM_LOAD ? "loaded" : "unloaded");
	if (j->kind == GJ_MM_LOAD && (j->cancel || !back)) {
		load_undo(j);
		if (back)
			gstream_fail(st, GS_CANCELLED, "model '%s' was unloaded while it loaded",
				     j->model);
		return;
	}
	if (!back)
		return;
	if (j->ret) {
		gstream_fail(st, j->gstatus ? j->gstatus : grpc_status_of(j->ret), "%s", j->msg);
		return;
	}
	if (j->kind == GJ_MM_PURGE) {
		status_reply(st);
		return;
	}
	lr.sizeinbytes = j->size;
	svc_reply_msg(st, j->kind == GJ_MM_LOAD ? (void *)&lr : (void *)&ur);
}

/* ------------------------------------------------------------ methods */

/* A model id of a request: not empty, short enough. */
static bool id_ok(struct gstream *st, const char *id)
{
	if (id[0] && strlen(id) < NAME_LEN)
		return true;
	gstream_fail(st, GS_INVALID_ARGUMENT, "modelId is empty or longer than %d bytes",
		     NAME_LEN - 1);
	return false;
}

static void mm_load_call(struct gstream *st)
{
	Mmesh__LoadModelRequest *q = svc_unpack(st, &mmesh__load_model_request__descriptor);

	if (q && id_ok(st, q->modelid))
		job_start(st->gc->srv, st, GJ_MM_LOAD, q->modelid, q->modelpath);
}

static void mm_unload_call(struct gstream *st)
{
	Mmesh__UnloadModelRequest *q = svc_unpack(st, &mmesh__unload_model_request__descriptor);
	struct server *srv = st->gc->srv;
	struct grpc_job *ld;
	struct repo_entry *e;

	if (!q || !id_ok(st, q->modelid))
		return;
	ld = load_in_flight(srv->grpc, q->modelid);
	if (ld && ld->waiter) {
		gstream_fail(st, GS_UNAVAILABLE, "an unloadModel of '%s' is in progress",
			     q->modelid);
		return;
	}
	if (ld) {
		/* answered when the load is done and undone (load_undo) */
		ld->cancel = true;
		ld->waiter = st;
		st->inflight = true;
		st->gc->n_inflight++;
		return;
	}
	if (repo_lookup(sched_repo(srv->s), q->modelid, 1, &e)) {
		gstream_fail(st, GS_NOT_FOUND, "no model '%s'", q->modelid);
		return;
	}
	job_start(srv, st, GJ_MM_UNLOAD, q->modelid, NULL);
}

static void mm_size_call(struct gstream *st)
{
	Mmesh__ModelSizeRequest *q = svc_unpack(st, &mmesh__model_size_request__descriptor);
	Mmesh__ModelSizeResponse res = MMESH__MODEL_SIZE_RESPONSE__INIT;
	const struct graph *g;
	struct repo_entry *e;

	if (!q || !id_ok(st, q->modelid))
		return;
	if (repo_lookup(sched_repo(st->gc->srv->s), q->modelid, 1, &e) ||
	    repo_entry_state(e) != REPO_READY || !(g = repo_entry_graph(e))) {
		gstream_fail(st, GS_NOT_FOUND, "model '%s' is not loaded", q->modelid);
		return;
	}
	res.sizeinbytes = g->weights_size;
	svc_reply_msg(st, &res);
}

/* From the package's header and tables (pkg_open reads no weights). */
static void mm_predict_call(struct gstream *st)
{
	Mmesh__PredictModelSizeRequest *q =
		svc_unpack(st, &mmesh__predict_model_size_request__descriptor);
	Mmesh__PredictModelSizeResponse res = MMESH__PREDICT_MODEL_SIZE_RESPONSE__INIT;
	char path[PATH_MAX];
	struct pkg *p;
	int ret;

	if (!q)
		return;
	ret = pkg_resolve(q->modelpath, path, sizeof(path));
	if (!ret)
		ret = pkg_open(path, &p);
	if (ret) {
		gstream_fail(st, pkg_status(ret), "%s", err_msg(ret));
		return;
	}
	res.sizeinbytes = pkg_graph(p)->weights_size;
	pkg_close(p);
	svc_reply_msg(st, &res);
}

/* The pinned host budget: --host-mem-limit, else half the host's memory. */
static uint64_t capacity(struct server *srv)
{
	uint64_t lim = repo_host_limit(sched_repo(srv->s));
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

	if (lim || pages <= 0 || psz <= 0)
		return lim;
	return (uint64_t)pages * (uint64_t)psz / 2;
}

static void status_reply(struct gstream *st)
{
	static const char *const methods[] = {
		"inference.GRPCInferenceService/ModelInfer",
		"inference.GRPCInferenceService/ModelMetadata",
		"inference.GRPCInferenceService/ModelReady",
	};
	StatusRes res = MMESH__RUNTIME_STATUS_RESPONSE__INIT;
	MethodInfo mi = MMESH__RUNTIME_STATUS_RESPONSE__METHOD_INFO__INIT;
	MethodEntry me[ARRAY_SIZE(methods)], *mp[ARRAY_SIZE(methods)];
	struct server *srv = st->gc->srv;
	uint32_t path[] = {1}; /* model_name (ModelInfer) and name: field 1 */
	uint32_t i;

	mi.n_idinjectionpath = ARRAY_SIZE(path);
	mi.idinjectionpath = path;
	for (i = 0; i < ARRAY_SIZE(methods); i++) {
		mmesh__runtime_status_response__method_infos_entry__init(&me[i]);
		me[i].key = (char *)methods[i];
		me[i].value = &mi;
		mp[i] = &me[i];
	}
	res.status = srv->stopping ? MMESH__RUNTIME_STATUS_RESPONSE__STATUS__FAILING :
				     MMESH__RUNTIME_STATUS_RESPONSE__STATUS__READY;
	res.capacityinbytes = capacity(srv);
	res.maxloadingconcurrency = GRPC_MM_LOADS;
	res.modelloadingtimeoutms = MM_LOAD_TIMEOUT_MS;
	res.defaultmodelsizeinbytes = MM_DEFAULT_SIZE;
	res.runtimeversion = (char *)srv->o.version;
	res.n_methodinfos = ARRAY_SIZE(methods);
	res.methodinfos = mp;
	res.allowanymethod = true;
	svc_reply_msg(st, &res);
}

static void mm_status_call(struct gstream *st)
{
	if (svc_unpack(st, &mmesh__runtime_status_request__descriptor))
		job_start(st->gc->srv, st, GJ_MM_PURGE, "", NULL);
}

void mm_call(struct gstream *st)
{
	switch (st->method) {
	case GM_MM_LOAD:
		mm_load_call(st);
		break;
	case GM_MM_UNLOAD:
		mm_unload_call(st);
		break;
	case GM_MM_PREDICT:
		mm_predict_call(st);
		break;
	case GM_MM_SIZE:
		mm_size_call(st);
		break;
	case GM_MM_STATUS:
		mm_status_call(st);
		break;
	default:
		gstream_fail(st, GS_UNIMPLEMENTED, "unknown method");
		break;
	}
}
