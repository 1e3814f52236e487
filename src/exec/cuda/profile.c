/* SPDX-License-Identifier: MIT */
/*
 * The GPU profiler (exec.h: cuda_profile): what the planner's cold-start
 * model (plan.h) needs, measured on the target GPU and its helpers.
 *
 * Layers: load_ns is the mean of TIMED host-to-device copies of the
 * layer's range from the weight store on the target's copy stream, after
 * WARM untimed ones. exec_ns and dha_ns time a whole run at batch 1 and the
 * model's default shape, all layers resident or all read from host memory:
 * the run is captured as a graph with an event record node at the start
 * of every layer's segment (its node and the weightless nodes after it,
 * as plan.h counts them), replayed WARM + TIMED times, and each segment's
 * time is the mean over the timed replays. A graph is how the cold engine
 * runs one-link plans; should capture fail, the run is timed eagerly.
 *
 * Links: a 1 GiB copy from pinned memory on each GPU alone (h2d_bw) and on
 * k of them at once (agg_bw, host clock around all k); a 256 MiB peer copy
 * from the first helper into the target (peer_bw; with one GPU, a copy
 * within the target stands in, since no plan for one GPU uses peers); 4 KiB
 * copies for the fixed costs; and the target's PCIe link shared by a
 * kernel streaming pinned host memory (the DHA access pattern) and a copy,
 * each share being the work's speed beside the other over its speed alone.
 */
#include "cuda_priv.h"
#include "plan/plan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WARM 10
#define TIMED 10
#define BIG (1ull << 30)
#define MID (256ull << 20)
#define SMALL 4096u
#define BW_REPS 5
#define SHARE_REPS 3

struct prof {
	struct cuda_dev *const *devs;
	uint32_t n;
	const struct graph *g;
	const char *host;
	struct plan_profile *pf;
	void *pin;		     /* BIG bytes of pinned host memory */
	uint64_t pin_dev;	     /* its device address */
	uint64_t buf[PLAN_MAX_GPUS]; /* BIG (+ MID on the target) per GPU */
	CUevent ev[PLAN_MAX_GPUS][4];
};

/* --------------------------------------------------------------- layers */

static int time_loads(struct prof *p)
{
	struct cuda_dev *d = p->devs[0];
	CUevent *e = p->ev[0];
	uint32_t l, r;
	float ms;
	int ret = 0;

	for (l = 0; l < p->g->n_layers && !ret; l++) {
		const struct layer *ly = &p->g->layers[l];
		double sum = 0;

		if (!ly->nbytes || ly->nbytes > BIG)
			continue;
		for (r = 0; r < WARM && !ret; r++)
			ret = CU(cuMemcpyHtoDAsync(p->buf[0], p->host + ly->offset, ly->nbytes,
						   d->copy));
		for (r = 0; r < TIMED && !ret; r++) {
			ret = CU(cuEventRecord(e[0], d->copy)) ?:
				      CU(cuMemcpyHtoDAsync(p->buf[0], p->host + ly->offset, ly->nbytes, d->copy)) ?:
				      CU(cuEventRecord(e[1], d->copy)) ?:
				      CU(cuEventSynchronize(e[1]))     ?:
				      CU(cuEventElapsedTime(&ms, e[0], e[1]));
			sum += ms;
		}
		p->pf->layers[l].load_ns = (uint64_t)llround(sum / TIMED * 1e6);
	}
	return ret;
}

static void fill_input(const struct graph *g, const struct io_desc *io, struct tview *tv)
{
	int64_t n = shape_numel(&tv->shape), b = graph_id_bound(g, io->tensor), i;
	bool mask = strstr(io->name, "mask") != NULL;

	for (i = 0; i < n; i++) {
		float v = (float)((i * 7919) % 2001 - 1000) / 1000.0f;

		if (io->dtype == DT_I64)
			((int64_t *)tv->data)[i] = mask ? 1 : (i * 7919 + 13) % b;
		else if (io->dtype == DT_F32)
			((float *)tv->data)[i] = v;
		else if (io->dtype == DT_F16)
			((uint16_t *)tv->data)[i] = f32_to_f16(v);
		else if (io->dtype == DT_BF16)
			((uint16_t *)tv->data)[i] = f32_to_bf16(v);
		else
			memset(tv->data, 0, tv->nbytes);
	}
}

static int make_inputs(const struct graph *g, struct tview *in)
{
	int64_t seq = graph_default_seq(g);
	uint32_t i;

	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];
		struct tview *tv = &in[i];

		if (io->flags & IO_OPTIONAL)
			continue;
		tv->nbytes = io_shape(io, 1, seq, &tv->shape);
		tv->data = malloc(tv->nbytes ? tv->nbytes : 1);
		if (!tv->data)
			return err_set(-ENOMEM, "profile: out of memory for input %s", io->name);
		fill_input(g, io, tv);
	}
	return 0;
}

/* One event per segment start and one after the last node. */
struct seg_run {
	const struct graph *g;
	CUstream st;
	CUevent *ev;	/* [n_layers + 1] */
	int32_t *segat; /* [n_nodes]: segment starting at the node, or -1 */
	bool captured;
};

static int seg_hook(void *ctx, uint32_t i)
{
	struct seg_run *r = ctx;
	CUevent e;

	if (i < r->g->n_nodes && r->segat[i] < 0)
		return 0;
	e = r->ev[i < r->g->n_nodes ? (uint32_t)r->segat[i] : r->g->n_layers];
	if (r->captured)
		return CU(cuEventRecordWithFlags(e, r->st, CU_EVENT_RECORD_EXTERNAL));
	return CU(cuEventRecord(e, r->st));
}

static int capture_segments(struct exec_model *m, struct cuda_prog *pl, struct seg_run *r,
			    CUgraphExec *gx)
{
	struct cuda_hook h = {seg_hook, r};
	CUgraph graph = NULL;
	int ret, end;

	*gx = NULL;
	r->captured = true;
	ret = CU(cuStreamBeginCapture(r->st, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	if (ret)
		return ret;
	ret = cuda_model_enqueue(m, pl, &h);
	end = CU(cuStreamEndCapture(r->st, &graph));
	ret = ret ?: end;
	if (!ret)
		ret = CU(cuGraphInstantiate(gx, graph, 0));
	if (graph)
		CU(cuGraphDestroy(graph));
	if (ret) {
		*gx = NULL;
		r->captured = false;
	}
	return ret;
}

static int replay(struct exec_model *m, struct cuda_prog *pl, struct seg_run *r, CUgraphExec gx,
		  double *sum)
{
	struct cuda_hook h = {seg_hook, r};
	uint32_t l;
	float ms;
	int ret;

	ret = gx ? CU(cuGraphLaunch(gx, r->st)) : cuda_model_enqueue(m, pl, &h);
	ret = ret ?: CU(cuStreamSynchronize(r->st));
	for (l = 0; l < r->g->n_layers && !ret && sum; l++) {
		ret = CU(cuEventElapsedTime(&ms, r->ev[l], r->ev[l + 1]));
		sum[l] += ms;
	}
	return ret;
}

static int run_segments(struct exec_model *m, const struct tview *in, struct tview *out,
			struct seg_run *r, double *sum)
{
	struct cuda_prog *pl;
	CUgraphExec gx = NULL;
	int i, ret;

	ret = cuda_model_prepare(m, in, &pl);
	if (ret)
		return ret;
	ret = capture_segments(m, pl, r, &gx);
	if (ret) {
		log_warn("profile: %s: cannot capture a graph, timing eager runs: %s", r->g->name,
			 err_msg(ret));
		err_clear();
		ret = 0;
	}
	for (i = 0; i < WARM + TIMED && !ret; i++)
		ret = replay(m, pl, r, gx, i < WARM ? NULL : sum);
	if (!ret)
		ret = cuda_model_finish(m, pl, in, out);
	if (gx)
		CU(cuGraphExecDestroy(gx));
	return ret;
}

/* Per-layer segment times ns[] of g with every layer at place. */
static int time_segments(struct prof *p, uint8_t place, uint64_t *ns)
{
	const struct graph *g = p->g;
	struct cuda_dev *d = p->devs[0];
	struct seg_run r = {.g = g, .st = d->stream};
	struct exec_model *m = NULL;
	struct tview *in = calloc(g->n_inputs + 1u, sizeof(*in));
	struct tview *out = calloc(g->n_outputs + 1u, sizeof(*out));
	uint8_t *pl = calloc(g->n_layers + 1u, 1);
	double *sum = calloc(g->n_layers + 1u, sizeof(*sum));
	uint32_t l, i;
	int ret = -ENOMEM;

	r.ev = calloc(g->n_layers + 1u, sizeof(*r.ev));
	r.segat = calloc(g->n_nodes + 1u, sizeof(*r.segat));
	if (!in || !out || !pl || !sum || !r.ev || !r.segat)
		goto out_free;
	memset(pl, place, g->n_layers);
	for (i = 0; i < g->n_nodes; i++)
		r.segat[i] = -1;
	r.segat[0] = 0;
	for (l = 1; l < g->n_layers; l++)
		r.segat[g->layers[l].node] = (int32_t)l;
	ret = make_inputs(g, in);
	for (l = 0; l <= g->n_layers && !ret; l++)
		ret = CU(cuEventCreate(&r.ev[l], CU_EVENT_DEFAULT));
	if (!ret)
		ret = cuda_backend.model_create_placed(d, g, p->host, pl, &m);
	if (!ret)
		ret = run_segments(m, in, out, &r, sum);
	for (l = 0; l < g->n_layers && !ret; l++)
		ns[l] = (uint64_t)llround(sum[l] / TIMED * 1e6);
	if (m)
		cuda_backend.model_destroy(m);
	for (l = 0; l <= g->n_layers; l++)
		if (r.ev[l])
			CU(cuEventDestroy(r.ev[l]));
	for (i = 0; i < g->n_inputs; i++)
		free(in[i].data);
out_free:
	free(in);
	free(out);
	free(pl);
	free(sum);
	free(r.ev);
	free(r.segat);
	return ret ? ret : 0;
}

/* ---------------------------------------------------------------- links */

enum xfer { X_H2D, X_PEER, X_D2D };

/* Mean ms of reps copies of bytes on GPU k's copy stream after one
 * warm-up: host to GPU k, GPU k to the target (peer), or within GPU k. */
static int time_copy(struct prof *p, uint32_t k, enum xfer x, uint64_t bytes, int reps,
		     double *ms_out)
{
	struct cuda_dev *d = p->devs[k], *t = p->devs[0];
	CUevent *e = p->ev[k];
	double sum = 0;
	float ms;
	int r, ret;

	ret = cuda_dev_enter(d);
	for (r = -1; r < reps && !ret; r++) {
		ret = CU(cuEventRecord(e[0], d->copy));
		if (!ret && x == X_H2D)
			ret = CU(cuMemcpyHtoDAsync(p->buf[k], p->pin, bytes, d->copy));
		else if (!ret && x == X_PEER)
			ret = CU(cuMemcpyPeerAsync(p->buf[0], t->ctx, p->buf[k], d->ctx, bytes,
						   d->copy));
		else if (!ret)
			ret = CU(cuMemcpyDtoDAsync(p->buf[k] + BIG / 2, p->buf[k], bytes, d->copy));
		ret = ret				       ?:
			      CU(cuEventRecord(e[1], d->copy)) ?:
			      CU(cuEventSynchronize(e[1]))     ?:
			      CU(cuEventElapsedTime(&ms, e[0], e[1]));
		if (r >= 0)
			sum += ms;
	}
	*ms_out = sum / reps;
	return cuda_dev_enter(t) ?: ret;
}

/* Aggregate bytes/s of k GPUs each copying BIG from pinned memory at once
 * (host clock around all of them), mean of BW_REPS after a warm-up. */
static int time_agg(struct prof *p, uint32_t k, double *bw)
{
	uint64_t t0, sum = 0;
	uint32_t j;
	int r, ret = 0;

	for (r = -1; r < BW_REPS && !ret; r++) {
		t0 = clock_ns();
		for (j = 0; j < k && !ret; j++)
			ret = cuda_dev_enter(p->devs[j]) ?:
				      CU(cuMemcpyHtoDAsync(p->buf[j], p->pin, BIG,
							   p->devs[j]->copy));
		for (j = 0; j < k && !ret; j++)
			ret = cuda_dev_enter(p->devs[j]) ?:
							   CU(cuStreamSynchronize(p->devs[j]->copy));
		if (r >= 0)
			sum += clock_ns() - t0;
	}
	*bw = (double)k * (double)BIG / ((double)sum / BW_REPS / 1e9);
	return cuda_dev_enter(p->devs[0]) ?: ret;
}

/* Stream n floats of pinned host memory through a kernel into the
 * target's buffer, on the exec stream (the DHA access pattern). */
static int dha_read(struct prof *p, uint64_t bytes)
{
	struct cuda_dev *d = p->devs[0];
	uint64_t x = p->pin_dev, y = p->buf[0];
	long long n = (long long)(bytes / sizeof(float));
	int op = U_RELU;
	void *args[] = {&x, &y, &n, &op};

	return CU(cuLaunchKernel(d->fn[K_UNARY][0], (unsigned)d->sm_count * 32, 1, 1, CUDA_BLOCK, 1,
				 1, 0, d->stream, args, NULL));
}

/* ms of the short work (a DHA read of MID bytes, or a MID copy) alone,
 * then beside the long other one (BIG); share = alone / together. */
static int time_share(struct prof *p, bool read, double *share)
{
	struct cuda_dev *d = p->devs[0];
	CUevent *e = p->ev[0];
	CUstream s_short = read ? d->stream : d->copy;
	double alone = 0, both = 0;
	float ms;
	int r, ret = 0;

	for (r = -1; r < 2 * SHARE_REPS && !ret; r++) {
		bool beside = r >= SHARE_REPS;

		if (beside)
			ret = read ? CU(cuMemcpyHtoDAsync(p->buf[0] + MID, p->pin, BIG - MID,
							  d->copy)) :
				     dha_read(p, BIG);
		ret = ret ?: CU(cuEventRecord(e[0], s_short));
		if (!ret)
			ret = read ? dha_read(p, MID) :
				     CU(cuMemcpyHtoDAsync(p->buf[0] + BIG, p->pin, MID, d->copy));
		ret = ret					      ?:
			      CU(cuEventRecord(e[1], s_short))	      ?:
			      CU(cuEventSynchronize(e[1]))	      ?:
			      CU(cuEventElapsedTime(&ms, e[0], e[1])) ?:
			      CU(cuStreamSynchronize(d->stream))      ?:
			      CU(cuStreamSynchronize(d->copy));
		if (r >= 0)
			*(beside ? &both : &alone) += ms;
	}
	*share = both > 0 ? MIN(1.0, MAX(0.05, alone / both)) : 1.0;
	return ret;
}

static int time_links(struct prof *p)
{
	struct plan_links *lk = &p->pf->link;
	double ms;
	uint32_t k;
	int ret;

	lk->n_gpus = p->n;
	ret = time_copy(p, 0, X_H2D, BIG, BW_REPS, &ms);
	lk->h2d_bw = (double)BIG / (ms / 1e3);
	lk->agg_bw[0] = lk->h2d_bw;
	for (k = 2; k <= p->n && !ret; k++)
		ret = time_agg(p, k, &lk->agg_bw[k - 1]);
	ret = ret ?: time_copy(p, 0, X_H2D, SMALL, TIMED, &ms);
	lk->xfer_ovh_ns = (uint64_t)llround(ms * 1e6);
	ret = ret ?: time_copy(p, p->n > 1 ? 1 : 0, p->n > 1 ? X_PEER : X_D2D, MID, BW_REPS, &ms);
	lk->peer_bw = (double)MID / (ms / 1e3);
	ret = ret ?: time_copy(p, p->n > 1 ? 1 : 0, p->n > 1 ? X_PEER : X_D2D, SMALL, TIMED, &ms);
	lk->peer_lat_ns = (uint64_t)llround(ms * 1e6);
	return ret						?:
		       time_share(p, true, &lk->dha_read_share) ?:
		       time_share(p, false, &lk->dha_copy_share);
}

/* ------------------------------------------------------------- set-up */

static int enable_peer(struct cuda_dev *a, struct cuda_dev *b)
{
	CUresult r;
	int ret, can = 0;

	ret = CU(cuDeviceCanAccessPeer(&can, a->dev, b->dev)) ?: cuda_dev_enter(a);
	if (ret || !can)
		return ret;
	r = cudrv_api.cuCtxEnablePeerAccess(b->ctx, 0);
	if (r == CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED)
		r = CUDA_SUCCESS;
	return cudrv_check(r, "cuCtxEnablePeerAccess");
}

static int setup(struct prof *p)
{
	CUdeviceptr dp = 0;
	uint32_t k, e;
	int ret = 0;

	for (k = 0; k < p->n && !ret; k++) {
		ret = cuda_dev_enter(p->devs[k]) ?: CU(cuMemAlloc(&dp, k ? BIG : BIG + MID));
		p->buf[k] = dp;
		for (e = 0; e < 4 && !ret; e++)
			ret = CU(cuEventCreate(&p->ev[k][e], CU_EVENT_DEFAULT));
	}
	if (!ret && p->n > 1)
		ret = enable_peer(p->devs[1], p->devs[0]) ?: enable_peer(p->devs[0], p->devs[1]);
	ret = ret				 ?:
		      cuda_dev_enter(p->devs[0]) ?:
						   CU(cuMemHostAlloc(&p->pin, BIG,
								     CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_PORTABLE));
	if (!ret)
		memset(p->pin, 0x3c, BIG);
	ret = ret ?: CU(cuMemHostGetDevicePointer(&dp, p->pin, 0));
	p->pin_dev = dp;
	return ret;
}

static void teardown(struct prof *p)
{
	uint32_t k, e;

	for (k = 0; k < p->n; k++) {
		if (cuda_dev_enter(p->devs[k]))
			continue;
		CU(cuStreamSynchronize(p->devs[k]->stream));
		CU(cuStreamSynchronize(p->devs[k]->copy));
		if (p->buf[k])
			CU(cuMemFree(p->buf[k]));
		for (e = 0; e < 4; e++)
			if (p->ev[k][e])
				CU(cuEventDestroy(p->ev[k][e]));
	}
	cuda_dev_enter(p->devs[0]);
	if (p->pin)
		CU(cuMemFreeHost(p->pin));
}

/* "NVIDIA H100 80GB HBM3": the plan key's GPU model name. */
static int gpu_name(struct cuda_dev *d, char *out, size_t len)
{
	return CU(cuDeviceGetName(out, (int)len, d->dev));
}

/* Measure g on devs for the planner; see exec.h. The devices' owner. */
int cuda_profile(struct cuda_dev *const *devs, uint32_t n_devs, const struct graph *g,
		 const void *weights, uint64_t pkg_checksum, struct plan_profile **out)
{
	struct prof p = {.devs = devs, .n = n_devs, .g = g, .host = weights};
	uint64_t *exec = NULL, *dha = NULL;
	char why[512];
	uint32_t l;
	int ret;

	*out = NULL;
	if (!n_devs || n_devs > PLAN_MAX_GPUS)
		return err_set(-EINVAL, "profile: %u GPUs (1..%u allowed)", n_devs, PLAN_MAX_GPUS);
	ret = plan_profile_from_graph(g, pkg_checksum, &p.pf);
	if (ret)
		return ret;
	exec = calloc(g->n_layers + 1u, sizeof(*exec));
	dha = calloc(g->n_layers + 1u, sizeof(*dha));
	ret = exec && dha ? setup(&p) : err_set(-ENOMEM, "profile: out of memory");
	ret = ret						      ?:
		      gpu_name(devs[0], p.pf->gpu, sizeof(p.pf->gpu)) ?:
		      time_loads(&p)				      ?:
		      time_segments(&p, PLACE_LOAD, exec)	      ?:
		      time_segments(&p, PLACE_DHA, dha)		      ?:
									time_links(&p);
	teardown(&p);
	for (l = 0; !ret && l < g->n_layers; l++) {
		p.pf->layers[l].exec_ns = exec[l];
		p.pf->layers[l].dha_ns = dha[l];
	}
	free(exec);
	free(dha);
	ret = ret ?: plan_profile_validate(p.pf, "measured profile");
	if (ret) {
		snprintf(why, sizeof(why), "%s", err_msg(ret));
		plan_profile_destroy(p.pf);
		return err_set(ret, "profiling %s on GPU %d: %s", g->name, devs[0]->ordinal, why);
	}
	*out = p.pf;
	return 0;
}
