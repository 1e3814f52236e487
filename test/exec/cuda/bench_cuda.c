/* SPDX-License-Identifier: MIT */
/*
 * bench_cuda: warm latency of zoo models on GPU 0. Per model (random
 * weights in a host weight store, inputs at batch/seq, optional inputs
 * omitted):
 *
 *   load     model_create with every layer copied from the store (pinned)
 *            to the GPU, plus building the default shape's program (cuDNN and
 *            cuBLASLt algorithm choice included)
 *   first    the first run of the shape (eager, then the graph capture)
 *   graph    runs replaying the captured graph: mean, median, 99th pct
 *   eager    the same with CUDA graphs off (DPRT_CUDA_GRAPHS=0), unless -E
 *   dha      median graph run with every layer read from host memory (-D)
 *   TFLOP/s  GEMM, attention and convolution FLOPs over the graph median
 *
 * With -P, each model is also profiled: its run captured as a graph with
 * an event record before every node (cuda_model_enqueue's hook), replayed
 * 10 times; lines starting "PROFILE" give the time per kind of node (the
 * path taken in brackets) and the costliest nodes.
 *
 * A run's time is the caller's: inputs staged, launched, synchronized,
 * outputs ready in host memory. Each timed series follows -w warm-up runs.
 * A tiny model runs first, unprinted, so that no row carries the libraries'
 * lazy start-up. The paths (cuBLASLt epilogues, fused attention, timed
 * cuDNN choice) follow the DPRT_CUDA_* variables, which the caller sets;
 * -V names the setting in the rows. Besides the table, one line per model
 * starting "RESULT" carries the numbers for scripts (bench/warm.sh):
 *
 *   RESULT variant model dtype batch seq load first graph_mean graph_p50
 *          graph_p99 eager_mean eager_p50 eager_p99 dha_p50 gflop
 *
 *   bench_cuda [-m MODEL,...] [-d fp32|fp16|bf16] [-b N] [-s N] [-n RUNS]
 *              [-w WARM] [-E] [-D] [-P] [-V LABEL]
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/cuda/cuda_priv.h"
#include "progs.h"

#define PROF_REPS 10
#define PROF_TOP 8

struct opts {
	char models[512], label[32];
	enum dtype dt;
	int64_t batch, seq;
	int runs, warm;
	bool eager, dha, prof;
};

struct row {
	double load, first, gflop;
	struct prog_stats graph, eager, dha;
};

/* warm runs, then runs timed into st. */
static int series(struct exec_model *m, const struct tview *in, int warm, int runs,
		  struct prog_stats *st)
{
	struct tview out[PROG_MAX_IO];
	double *t = calloc((size_t)runs, sizeof(*t));
	uint64_t t0;
	int i, ret = 0;

	if (!t)
		return -ENOMEM;
	for (i = 0; i < warm && !ret; i++)
		ret = cuda_backend.model_run(m, in, out);
	for (i = 0; i < runs && !ret; i++) {
		t0 = clock_ns();
		ret = cuda_backend.model_run(m, in, out);
		t[i] = clock_ms_since(t0);
	}
	if (!ret)
		prog_stats(t, runs, st);
	free(t);
	return ret;
}

/* Make a model (placement place), time its first run, then a series. */
static int timed(struct cuda_dev *d, const struct graph *g, const void *w, const uint8_t *place,
		 const struct tview *in, const struct opts *o, int runs, double *load,
		 double *first, struct prog_stats *st)
{
	struct exec_model *m;
	struct tview out[PROG_MAX_IO];
	uint64_t t0 = clock_ns();
	int ret;

	ret = cuda_backend.model_create_placed(d, g, w, place, &m);
	if (ret)
		return ret;
	*load = clock_ms_since(t0);
	t0 = clock_ns();
	ret = cuda_backend.model_run(m, in, out);
	*first = clock_ms_since(t0);
	ret = ret ?: series(m, in, o->warm, runs, st);
	cuda_backend.model_destroy(m);
	return ret;
}

static void print_row(const char *name, const struct opts *o, int64_t seq, const struct row *r)
{
	double tflops = r->graph.p50 > 0 ? r->gflop / r->graph.p50 : 0;

	printf("%-14s %-5s %3lld %5lld %8.1f %8.1f | %8.3f %8.3f %8.3f | %8.3f %8.3f %8.3f | "
	       "%8.2f %7.1f %6.1f\n",
	       name, dtype_name(o->dt), (long long)o->batch, (long long)seq, r->load, r->first,
	       r->graph.mean, r->graph.p50, r->graph.p99, r->eager.mean, r->eager.p50, r->eager.p99,
	       r->dha.p50, r->gflop, tflops);
	printf("RESULT %s %s %s %lld %lld %.3f %.3f %.4f %.4f %.4f %.4f %.4f %.4f %.4f %.3f\n",
	       o->label, name, dtype_name(o->dt), (long long)o->batch, (long long)seq, r->load,
	       r->first, r->graph.mean, r->graph.p50, r->graph.p99, r->eager.mean, r->eager.p50,
	       r->eager.p99, r->dha.p50, r->gflop);
	fflush(stdout);
}

/* ------------------------------------------------------------ profile */

struct prof {
	CUevent *ev;
	CUstream st;
};

static int prof_hook(void *ctx, uint32_t i)
{
	struct prof *p = ctx;

	/* external: a record node of the captured graph, whose times can be
	 * read after each replay (a plain record in a capture only orders) */
	return CU(cuEventRecordWithFlags(p->ev[i], p->st, CU_EVENT_RECORD_EXTERNAL));
}

/* What node i did: its op, and the path for linears and attention. */
static void node_label(const struct exec_model *m, const struct cuda_prog *pl, uint32_t i,
		       char *buf, size_t n)
{
	const struct node *nd = &m->g->nodes[i];
	const struct node_rt *rt = &pl->rt[i];
	const char *op = op_name((enum op)nd->op);

	if (nd->op == OP_LINEAR && rt->lt)
		snprintf(buf, n, "%s[lt%s]", op,
			 !rt->fused		? "" :
			 rt->resid != NO_TENSOR ? "+add" :
						  "+gelu");
	else if (nd->op == OP_ATTENTION && rt->flash)
		snprintf(buf, n, "%s[fused w%d]", op, rt->flash);
	else if (nd->op == OP_ATTENTION)
		snprintf(buf, n, "%s[unfused]", op);
	else
		snprintf(buf, n, "%s", op);
}

/* Sum node times by label; print the kinds and the costliest nodes. */
static void prof_print(const struct exec_model *m, const struct cuda_prog *pl, const char *name,
		       const double *ms)
{
	const struct graph *g = m->g;
	char lab[64], (*kinds)[64] = calloc(g->n_nodes, sizeof(*kinds));
	double *sum = calloc(g->n_nodes, sizeof(*sum)), total = 0;
	int *cnt = calloc(g->n_nodes, sizeof(*cnt)), top[PROF_TOP];
	uint32_t i, k, nk = 0;

	for (i = 0; kinds && sum && cnt && i < g->n_nodes; i++) {
		node_label(m, pl, i, lab, sizeof(lab));
		for (k = 0; k < nk && strcmp(kinds[k], lab); k++)
			;
		if (k == nk)
			snprintf(kinds[nk++], sizeof(kinds[0]), "%s", lab);
		sum[k] += ms[i];
		cnt[k] += !pl->rt[i].skip;
		total += ms[i];
	}
	for (k = 0; k < nk; k++)
		printf("PROFILE %s %s %-24s %4d nodes %8.3f ms %5.1f%%\n", name,
		       dtype_name((enum dtype)g->wdtype), kinds[k], cnt[k], sum[k],
		       100.0 * sum[k] / total);
	printf("PROFILE %s %s %-24s %4u nodes %8.3f ms (graph replay, event per node)\n", name,
	       dtype_name((enum dtype)g->wdtype), "total", g->n_nodes, total);
	for (k = 0; k < MIN(PROF_TOP, g->n_nodes); k++) { /* the costliest, in order */
		top[k] = -1;
		for (i = 0; i < g->n_nodes; i++) {
			bool taken = false;
			uint32_t j;

			for (j = 0; j < k; j++)
				taken |= top[j] == (int)i;
			if (!taken && (top[k] < 0 || ms[i] > ms[top[k]]))
				top[k] = (int)i;
		}
		node_label(m, pl, (uint32_t)top[k], lab, sizeof(lab));
		printf("PROFILE %s %s   node %4d %-22s %8.4f ms\n", name,
		       dtype_name((enum dtype)g->wdtype), top[k], lab, ms[top[k]]);
	}
	free(kinds);
	free(sum);
	free(cnt);
}

/* Capture one run of m with an event before each node; replay it. */
static int prof_graph(struct exec_model *m, struct cuda_prog *pl, struct prof *p, double *ms)
{
	uint32_t n = m->g->n_nodes, i;
	CUgraph graph = NULL;
	CUgraphExec ge = NULL;
	struct cuda_hook h = {prof_hook, p};
	int r, ret, end;
	float t;

	ret = CU(cuStreamBeginCapture(p->st, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	if (ret)
		return ret;
	ret = cuda_model_enqueue(m, pl, &h);
	end = CU(cuStreamEndCapture(p->st, &graph));
	ret = ret ?: end ?: CU(cuGraphInstantiate(&ge, graph, 0));
	for (r = 0; r <= PROF_REPS && !ret; r++) {
		ret = CU(cuGraphLaunch(ge, p->st)) ?: CU(cuStreamSynchronize(p->st));
		for (i = 0; r && i < n && !ret; i++) { /* replay 0 warms up */
			ret = CU(cuEventElapsedTime(&t, p->ev[i], p->ev[i + 1]));
			ms[i] += t / PROF_REPS;
		}
	}
	if (ge)
		CU(cuGraphExecDestroy(ge));
	if (graph)
		CU(cuGraphDestroy(graph));
	return ret;
}

static int profile(struct cuda_dev *d, const struct graph *g, const void *w, const struct tview *in,
		   const char *name)
{
	struct exec_model *m = NULL;
	struct tview out[PROG_MAX_IO];
	struct cuda_prog *pl;
	struct prof p = {calloc(g->n_nodes + 1, sizeof(CUevent)), d->stream};
	double *ms = calloc(g->n_nodes, sizeof(*ms));
	uint32_t i;
	int ret = p.ev && ms ? 0 : -ENOMEM;

	for (i = 0; !ret && i <= g->n_nodes; i++)
		ret = CU(cuEventCreate(&p.ev[i], CU_EVENT_DEFAULT));
	ret = ret ?: cuda_backend.model_create(d, g, w, &m);
	ret = ret ?: cuda_backend.model_run(m, in, out);
	ret = ret ?: cuda_model_prepare(m, in, &pl);
	ret = ret ?: prof_graph(m, pl, &p, ms);
	if (!ret)
		prof_print(m, pl, name, ms);
	for (i = 0; p.ev && i <= g->n_nodes; i++)
		if (p.ev[i])
			CU(cuEventDestroy(p.ev[i]));
	cuda_backend.model_destroy(m);
	free(p.ev);
	free(ms);
	return ret;
}

/* One row; quiet: a warm-up that prints nothing. */
static int bench_model(struct cuda_dev *d, const char *name, const struct opts *o, bool quiet)
{
	struct tview in[PROG_MAX_IO];
	struct hoststore *hs = NULL;
	struct graph *g = NULL;
	struct row r = {0};
	uint8_t *dha = NULL;
	int64_t seq = 0;
	double x, y;
	int ret;

	ret = prog_model(name, o->dt, 1, &g, &hs);
	if (ret || g->n_inputs > PROG_MAX_IO)
		goto out;
	seq = g->def_seq ? (o->seq ? o->seq : g->def_seq) : 0;
	ret = prog_inputs(g, o->batch, o->seq, 0, true, 1, in);
	if (ret)
		goto out_in;
	r.gflop = prog_flops(g, in) / 1e9;
	ret = timed(d, g, hoststore_base(hs), NULL, in, o, o->runs, &r.load, &r.first, &r.graph);
	if (!ret && o->eager) {
		setenv("DPRT_CUDA_GRAPHS", "0", 1);
		knobs_reload();
		ret = timed(d, g, hoststore_base(hs), NULL, in, o, o->runs, &x, &y, &r.eager);
		unsetenv("DPRT_CUDA_GRAPHS");
		knobs_reload();
	}
	dha = calloc(g->n_layers + 1, 1);
	if (!ret && o->dha && dha) {
		memset(dha, PLACE_DHA, g->n_layers + 1);
		ret = timed(d, g, hoststore_base(hs), dha, in, o, MIN(o->runs, 20), &x, &y, &r.dha);
	}
	if (!ret && !quiet)
		print_row(name, o, seq, &r);
	if (!ret && !quiet && o->prof)
		ret = profile(d, g, hoststore_base(hs), in, name);
out_in:
	prog_free_inputs(g, in);
out:
	if (ret)
		printf("%-14s %-5s error: %s\n", name, dtype_name(o->dt), err_msg(ret));
	free(dha);
	hoststore_destroy(hs);
	graph_destroy(g);
	return ret;
}

static int parse(int argc, char **argv, struct opts *o)
{
	int c;

	snprintf(o->models, sizeof(o->models), "%s",
		 "resnet-tiny,bert-tiny,gpt2-tiny,resnet50,bert-base,roberta-base,gpt2");
	snprintf(o->label, sizeof(o->label), "default");
	o->dt = DT_F16;
	o->batch = 1;
	o->runs = 200;
	o->warm = 20;
	o->eager = true;
	while ((c = getopt(argc, argv, "m:d:b:s:n:w:EDPV:")) != -1) {
		switch (c) {
		case 'm':
			snprintf(o->models, sizeof(o->models), "%s", optarg);
			break;
		case 'd':
			o->dt = dtype_parse(optarg);
			break;
		case 'b':
			o->batch = atoll(optarg);
			break;
		case 's':
			o->seq = atoll(optarg);
			break;
		case 'n':
			o->runs = atoi(optarg);
			break;
		case 'w':
			o->warm = atoi(optarg);
			break;
		case 'E':
			o->eager = false;
			break;
		case 'D':
			o->dha = true;
			break;
		case 'P':
			o->prof = true;
			break;
		case 'V':
			snprintf(o->label, sizeof(o->label), "%s", optarg);
			break;
		default:
			return -EINVAL;
		}
	}
	if (o->batch < 1 || o->runs < 1 || o->warm < 0 ||
	    (o->dt != DT_F32 && o->dt != DT_F16 && o->dt != DT_BF16))
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	struct cuda_dev *d;
	struct opts o = {0}, w;
	char *name, *save = NULL;
	int ret, fails = 0;

	if (parse(argc, argv, &o)) {
		fprintf(stderr, "usage: bench_cuda [-m MODEL,...] [-d fp32|fp16|bf16] [-b N] "
				"[-s N] [-n RUNS] [-w WARM] [-E] [-D] [-P] [-V LABEL]\n");
		return 2;
	}
	ret = cuda_device_open(0, &d);
	if (ret) {
		fprintf(stderr, "bench_cuda: %s\n", err_msg(ret));
		return 1;
	}
	printf("GPU 0: %s; variant %s; %d warm-up + %d timed runs; times in ms\n",
	       cuda_device_name(d), o.label, o.warm, o.runs);
	printf("%-14s %-5s %3s %5s %8s %8s | %8s %8s %8s | %8s %8s %8s | %8s %7s %6s\n", "model",
	       "dtype", "b", "seq", "load", "first", "graph", "g-p50", "g-p99", "eager", "e-p50",
	       "e-p99", "dha-p50", "GFLOP", "TF/s");
	/* The libraries' lazy start-up, on tiny models. */
	w = o;
	w.batch = 1;
	w.seq = 0;
	w.runs = 3;
	w.warm = 1;
	w.eager = w.dha = w.prof = false;
	bench_model(d, "resnet-tiny", &w, true);
	bench_model(d, "bert-tiny", &w, true);
	for (name = strtok_r(o.models, ",", &save); name; name = strtok_r(NULL, ",", &save))
		fails += bench_model(d, name, &o, false) != 0;
	cuda_device_close(d);
	return fails ? 1 : 0;
}
