/* SPDX-License-Identifier: MIT */
/*
 * bench_cuda: warm latency of zoo models on GPU 0, each configuration
 * measured in the same process against its baseline:
 *
 *   load     model_create with every layer copied from the host weight
 *            store (pinned) to the GPU, plus planning the default shape
 *   first    the first run of the shape (eager, then the graph capture)
 *   eager    median run with CUDA graphs off (DPRT_CUDA_GRAPHS=0)
 *   graph    median run replaying the captured graph
 *   dha      median graph run with every layer read from host memory
 *
 * A run's time is the caller's: inputs staged, launched, synchronized,
 * outputs ready. The first model is benchmarked once unprinted first, so
 * that no row carries cuBLAS's and cuDNN's lazy start-up. Not a pass/fail
 * test; prints one row per model.
 *
 *   bench_cuda [-m resnet50,bert-base] [-d fp32|fp16] [-b batch] [-s seq] [-n runs]
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/exec.h"
#include "mem/mem.h"

#define MAX_IN 4

struct opts {
	char models[512];
	enum dtype dt;
	int64_t batch, seq;
	int runs;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median_run(struct exec_model *m, const struct tview *in, int runs, double *p90)
{
	struct tview out[4];
	double *t = calloc((size_t)runs, sizeof(*t)), med = -1;
	int i;

	if (!t)
		return -1;
	for (i = 0; i < runs; i++) {
		uint64_t t0 = clock_ns();

		if (cuda_backend.model_run(m, in, out)) {
			fprintf(stderr, "run: %s\n", err_msg(DPRT_EDEVICE));
			goto out;
		}
		t[i] = clock_ms_since(t0);
	}
	qsort(t, (size_t)runs, sizeof(*t), cmp_double);
	med = t[runs / 2];
	*p90 = t[runs * 9 / 10];
out:
	free(t);
	return med;
}

static void make_inputs(const struct graph *g, const struct opts *o, struct tview *in)
{
	int64_t seq = o->seq ? o->seq : g->def_seq ? g->def_seq : 128;
	struct rng r;
	uint32_t i, n;
	int k;

	rng_seed(&r, 1);
	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];
		struct tview *tv = &in[i];

		memset(tv, 0, sizeof(*tv));
		if (io->flags & IO_OPTIONAL)
			continue;
		tv->shape.dtype = io->dtype;
		tv->shape.ndim = io->ndim;
		for (k = 0; k < io->ndim; k++)
			tv->shape.dims[k] = io->dims[k] == DIM_BATCH ? o->batch
					    : io->dims[k] == DIM_SEQ ? seq
								     : io->dims[k];
		n = (uint32_t)shape_numel(&tv->shape);
		tv->nbytes = n * dtype_size((enum dtype)io->dtype);
		tv->data = calloc(1, tv->nbytes);
		for (k = 0; tv->data && k < (int)n; k++) {
			if (io->dtype == DT_I64)
				((int64_t *)tv->data)[k] = (int64_t)(rng_next(&r) % 1000);
			else if (io->dtype == DT_F32)
				((float *)tv->data)[k] = rng_unit(&r);
			else
				((uint16_t *)tv->data)[k] = io->dtype == DT_F16
								    ? f32_to_f16(rng_unit(&r))
								    : f32_to_bf16(rng_unit(&r));
		}
	}
}

static int fill_store(const struct graph *g, struct hoststore **hs)
{
	struct weight_source *ws = wsrc_random(1);
	uint32_t t;
	int ret;

	if (!ws)
		return -ENOMEM;
	ret = hoststore_create(g->weights_size, hs);
	for (t = 0; !ret && t < g->n_tensors; t++)
		if (g->tensors[t].kind == TK_WEIGHT)
			ret = wsrc_fill(ws, g, t,
					(char *)hoststore_base(*hs) + g->tensors[t].offset);
	wsrc_destroy(ws);
	return ret;
}

struct row {
	double load, first, eager, graph, graph90, dha;
};

/* Make a model, run it once (the first run), then time `runs` runs. */
static int timed(struct cuda_dev *d, const struct graph *g, const void *w, const uint8_t *place,
		 const struct tview *in, int runs, double *load, double *first, double *med,
		 double *p90)
{
	struct exec_model *m;
	struct tview out[4];
	uint64_t t0 = clock_ns();
	int ret;

	ret = cuda_backend.model_create_placed(d, g, w, place, &m);
	if (ret)
		return ret;
	*load = clock_ms_since(t0);
	t0 = clock_ns();
	ret = cuda_backend.model_run(m, in, out);
	*first = clock_ms_since(t0);
	if (!ret)
		*med = median_run(m, in, runs, p90);
	cuda_backend.model_destroy(m);
	return ret;
}

/* One row; quiet: a warm-up that prints nothing. */
static int bench_model(struct cuda_dev *d, const char *name, const struct opts *o, bool quiet)
{
	struct tview in[MAX_IN];
	struct hoststore *hs = NULL;
	struct graph *g = NULL;
	struct row r = {0};
	uint8_t *dha = NULL;
	double x, y;
	int ret;

	ret = zoo_build(name, o->dt, &g);
	if (ret || g->n_inputs > MAX_IN)
		goto out;
	ret = fill_store(g, &hs);
	dha = malloc(g->n_layers + 1);
	if (ret || !dha)
		goto out;
	memset(dha, PLACE_DHA, g->n_layers + 1);
	make_inputs(g, o, in);
	ret = timed(d, g, hoststore_base(hs), NULL, in, o->runs, &r.load, &r.first, &r.graph,
		    &r.graph90);
	setenv("DPRT_CUDA_GRAPHS", "0", 1);
	ret = ret ?: timed(d, g, hoststore_base(hs), NULL, in, o->runs, &x, &y, &r.eager, &y);
	unsetenv("DPRT_CUDA_GRAPHS");
	ret = ret ?: timed(d, g, hoststore_base(hs), dha, in, o->runs, &x, &y, &r.dha, &y);
	for (uint32_t i = 0; i < g->n_inputs; i++)
		free(in[i].data);
	if (!ret && !quiet)
		printf("%-14s %-5s %5lld %9.2f %9.2f %9.3f %9.3f %9.3f %9.3f\n", name,
		       dtype_name(o->dt), (long long)o->batch, r.load, r.first, r.eager, r.graph,
		       r.graph90, r.dha);
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
	o->dt = DT_F16;
	o->batch = 1;
	o->runs = 200;
	while ((c = getopt(argc, argv, "m:d:b:s:n:")) != -1) {
		switch (c) {
		case 'm': snprintf(o->models, sizeof(o->models), "%s", optarg); break;
		case 'd': o->dt = dtype_parse(optarg); break;
		case 'b': o->batch = atoll(optarg); break;
		case 's': o->seq = atoll(optarg); break;
		case 'n': o->runs = atoi(optarg); break;
		default: return -EINVAL;
		}
	}
	if (o->batch < 1 || o->runs < 1 || (o->dt != DT_F32 && o->dt != DT_F16 &&
					    o->dt != DT_BF16))
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	struct cuda_dev *d;
	struct opts o = {0};
	char *name, *save = NULL;
	int ret, fails = 0;

	if (parse(argc, argv, &o)) {
		fprintf(stderr, "usage: bench_cuda [-m MODEL,...] [-d fp32|fp16|bf16] [-b N] "
				"[-s N] [-n RUNS]\n");
		return 2;
	}
	ret = cuda_device_open(0, &d);
	if (ret) {
		fprintf(stderr, "bench_cuda: %s\n", err_msg(ret));
		return 1;
	}
	printf("GPU 0: %s; %d runs per median; times in ms\n", cuda_device_name(d), o.runs);
	printf("%-14s %-5s %5s %9s %9s %9s %9s %9s %9s\n", "model", "dtype", "batch", "load",
	       "first", "eager", "graph", "graph-p90", "dha");
	for (name = strtok_r(o.models, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		/* The first model also pays the libraries' lazy start-up. */
		if (name == o.models)
			bench_model(d, name, &o, true);
		fails += bench_model(d, name, &o, false) != 0;
	}
	cuda_device_close(d);
	return fails ? 1 : 0;
}
