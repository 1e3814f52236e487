/* SPDX-License-Identifier: MIT */
/*
 * bench_cuda: warm latency of zoo models on GPU 0. Per model (random
 * weights in a host weight store, inputs at batch/seq, optional inputs
 * omitted):
 *
 *   load     model_create with every layer copied from the store (pinned)
 *            to the GPU, plus planning the default shape (cuDNN and
 *            cuBLASLt algorithm choice included)
 *   first    the first run of the shape (eager, then the graph capture)
 *   graph    runs replaying the captured graph: mean, median, 99th pct
 *   eager    the same with CUDA graphs off (DPRT_CUDA_GRAPHS=0), unless -E
 *   dha      median graph run with every layer read from host memory (-D)
 *   TFLOP/s  GEMM, attention and convolution FLOPs over the graph median
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
 *              [-w WARM] [-E] [-D] [-V LABEL]
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "progs.h"

struct opts {
	char models[512], label[32];
	enum dtype dt;
	int64_t batch, seq;
	int runs, warm;
	bool eager, dha;
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
	       r->graph.mean, r->graph.p50, r->graph.p99, r->eager.mean, r->eager.p50,
	       r->eager.p99, r->dha.p50, r->gflop, tflops);
	printf("RESULT %s %s %s %lld %lld %.3f %.3f %.4f %.4f %.4f %.4f %.4f %.4f %.4f %.3f\n",
	       o->label, name, dtype_name(o->dt), (long long)o->batch, (long long)seq, r->load,
	       r->first, r->graph.mean, r->graph.p50, r->graph.p99, r->eager.mean, r->eager.p50,
	       r->eager.p99, r->dha.p50, r->gflop);
	fflush(stdout);
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
	ret = timed(d, g, hoststore_base(hs), NULL, in, o, o->runs, &r.load, &r.first,
		    &r.graph);
	if (!ret && o->eager) {
		setenv("DPRT_CUDA_GRAPHS", "0", 1);
		ret = timed(d, g, hoststore_base(hs), NULL, in, o, o->runs, &x, &y, &r.eager);
		unsetenv("DPRT_CUDA_GRAPHS");
	}
	dha = calloc(g->n_layers + 1, 1);
	if (!ret && o->dha && dha) {
		memset(dha, PLACE_DHA, g->n_layers + 1);
		ret = timed(d, g, hoststore_base(hs), dha, in, o, MIN(o->runs, 20), &x, &y,
			    &r.dha);
	}
	if (!ret && !quiet)
		print_row(name, o, seq, &r);
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
	while ((c = getopt(argc, argv, "m:d:b:s:n:w:EDV:")) != -1) {
		switch (c) {
		case 'm': snprintf(o->models, sizeof(o->models), "%s", optarg); break;
		case 'd': o->dt = dtype_parse(optarg); break;
		case 'b': o->batch = atoll(optarg); break;
		case 's': o->seq = atoll(optarg); break;
		case 'n': o->runs = atoi(optarg); break;
		case 'w': o->warm = atoi(optarg); break;
		case 'E': o->eager = false; break;
		case 'D': o->dha = true; break;
		case 'V': snprintf(o->label, sizeof(o->label), "%s", optarg); break;
		default: return -EINVAL;
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
				"[-s N] [-n RUNS] [-w WARM] [-E] [-D] [-V LABEL]\n");
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
	       "dtype", "b", "seq", "load", "first", "graph", "g-p50", "g-p99", "eager",
	       "e-p50", "e-p99", "dha-p50", "GFLOP", "TF/s");
	/* The libraries' lazy start-up, on tiny models. */
	w = o;
	w.batch = 1;
	w.seq = 0;
	w.runs = 3;
	w.warm = 1;
	w.eager = w.dha = false;
	bench_model(d, "resnet-tiny", &w, true);
	bench_model(d, "bert-tiny", &w, true);
	for (name = strtok_r(o.models, ",", &save); name; name = strtok_r(NULL, ",", &save))
		fails += bench_model(d, name, &o, false) != 0;
	cuda_device_close(d);
	return fails ? 1 : 0;
}
