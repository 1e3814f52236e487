/* SPDX-License-Identifier: MIT */
/*
 * fullsize_cuda: the CUDA backend against the CPU reference on the paper's
 * models at full size, and device and host memory over many inferences.
 * Not a criterion test (minutes of CPU time); run on a GPU machine.
 *
 * Correctness: for each model and dtype, each configuration (paper: batch
 * 1 at the paper's shape; b4: batch 4 at sequence length 128 with the
 * rows after the first padded by 16 tokens, ResNets 4x3x224x224) runs once
 * on the CPU backend (all cores), then on the GPU in several variants,
 * each output compared by the normalised max error max|gpu - cpu| /
 * max|cpu| (fp32 <= 1e-4, 16-bit <= 2e-2):
 *   default   every layer loaded; the first (eager) run and a graph replay,
 *             which must equal the first run bit for bit
 *   legacy    DPRT_CUDA_LT=0 DPRT_CUDA_FLASH=0 DPRT_CUDNN_FIND=0
 *   dha       embedding and batch-norm layers read from host memory
 * One line per output; "FAIL" lines and a non-zero exit when out of
 * tolerance.
 *
 * Memory (-r N): one model at the paper's shape runs N times after two warm
 * runs; free device memory (cuMemGetInfo), the device pool and the
 * process's resident memory (pinned staging included) before and after,
 * and every N/5 runs, must not grow.
 *
 *   fullsize_cuda [-m MODEL,...] [-d fp32,fp16] [-c paper,b4] [-r RUNS] [-M MODEL:DTYPE]
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem/cudrv.h"
#include "progs.h"

#define ALL_MODELS                                                                                 \
	"resnet50,resnet101,bert-base,bert-large,roberta-base,roberta-large,"                      \
	"gpt2,gpt2-medium"

struct opts {
	char models[512], dtypes[64], configs[64], mem_model[64];
	int mem_runs;
};

struct ref {
	struct tview out[PROG_MAX_IO];
	uint32_t n;
};

static double value(const struct tview *t, int64_t i)
{
	switch (t->shape.dtype) {
	case DT_F32:
		return ((const float *)t->data)[i];
	case DT_F16:
		return f16_to_f32(((const uint16_t *)t->data)[i]);
	case DT_BF16:
		return bf16_to_f32(((const uint16_t *)t->data)[i]);
	default:
		return (double)((const int64_t *)t->data)[i];
	}
}

/* Normalised max error; NaN, or a shape mismatch, is infinite. */
static double norm_err(const struct tview *a, const struct tview *ref)
{
	int64_t n = shape_numel(&ref->shape), i;
	double diff = 0, big = 0, d;

	if (a->nbytes != ref->nbytes || a->shape.ndim != ref->shape.ndim)
		return INFINITY;
	for (i = 0; i < n; i++) {
		d = fabs(value(a, i) - value(ref, i));
		if (isnan(d))
			return INFINITY;
		diff = MAX(diff, d);
		big = MAX(big, fabs(value(ref, i)));
	}
	return diff / (big > 0 ? big : 1.0);
}

static int keep(const struct tview *out, uint32_t n, struct ref *r)
{
	uint32_t o;

	r->n = n;
	for (o = 0; o < n; o++) {
		r->out[o] = out[o];
		r->out[o].data = malloc(out[o].nbytes);
		if (!r->out[o].data)
			return -ENOMEM;
		memcpy(r->out[o].data, out[o].data, out[o].nbytes);
	}
	return 0;
}

static void drop(struct ref *r)
{
	uint32_t o;

	for (o = 0; o < r->n; o++)
		free(r->out[o].data);
	r->n = 0;
}

static void set_variant(const char *v)
{
	const char *off = !strcmp(v, "legacy") ? "0" : "1";

	setenv("DPRT_CUDA_LT", off, 1);
	setenv("DPRT_CUDA_FLASH", off, 1);
	setenv("DPRT_CUDNN_FIND", off, 1);
	knobs_reload();
}

/* Layers DeepPlan typically reads in place: embeddings, batch norms. */
static uint8_t *dha_place(const struct graph *g)
{
	uint8_t *p = calloc(g->n_layers + 1, 1);
	uint32_t l;

	for (l = 0; p && l < g->n_layers; l++) {
		const char *n = g->layers[l].name;

		if (strstr(n, "embeddings.") || !strcmp(n, "wte") || !strcmp(n, "wpe") ||
		    strstr(n, "bn") || strstr(n, "downsample.1"))
			p[l] = PLACE_DHA;
	}
	return p;
}

static int report(const char *what, const char *variant, const struct graph *g,
		  const struct tview *out, const struct ref *cpu, double ms)
{
	double tol = g->wdtype == DT_F32 ? 1e-4 : 2e-2, e;
	int bad = 0;
	uint32_t o;

	for (o = 0; o < cpu->n; o++) {
		e = norm_err(&out[o], &cpu->out[o]);
		bad += !(e <= tol);
		printf("%-4s %-14s %-5s %-6s %-8s %-18s err %.3e tol %.0e  gpu %8.2f ms\n",
		       e <= tol ? "ok" : "FAIL", g->name, dtype_name((enum dtype)g->wdtype), what,
		       variant, g->outputs[o].name, e, tol, ms);
	}
	fflush(stdout);
	return bad;
}

/* Run one GPU variant against the CPU outputs; returns failures. */
static int gpu_variant(struct cuda_dev *d, const struct graph *g, const void *w,
		       const struct tview *in, const struct ref *cpu, const char *what,
		       const char *variant)
{
	struct exec_model *m = NULL;
	struct tview out[PROG_MAX_IO];
	uint8_t *place = NULL;
	struct ref first = {0};
	uint64_t t0;
	double ms;
	int bad = 0, ret;
	uint32_t o;

	set_variant(variant);
	if (!strcmp(variant, "dha"))
		place = dha_place(g);
	ret = cuda_backend.model_create_placed(d, g, w, place, &m);
	free(place);
	t0 = clock_ns();
	ret = ret ?: cuda_backend.model_run(m, in, out);
	ms = clock_ms_since(t0);
	if (ret)
		goto fail;
	bad += report(what, variant, g, out, cpu, ms);
	ret = keep(out, g->n_outputs, &first) ?: cuda_backend.model_run(m, in, out);
	for (o = 0; !ret && o < g->n_outputs; o++) {
		if (out[o].nbytes == first.out[o].nbytes &&
		    !memcmp(out[o].data, first.out[o].data, out[o].nbytes))
			continue;
		printf("FAIL %-14s %-5s %-6s %-8s %-18s graph replay differs from the first run\n",
		       g->name, dtype_name((enum dtype)g->wdtype), what, variant,
		       g->outputs[o].name);
		bad++;
	}
	drop(&first);
	if (ret)
		goto fail;
	cuda_backend.model_destroy(m);
	return bad;
fail:
	printf("FAIL %-14s %-5s %-6s %-8s error: %s\n", g->name, dtype_name((enum dtype)g->wdtype),
	       what, variant, err_msg(ret));
	cuda_backend.model_destroy(m);
	return bad + 1;
}

static int one_config(struct cuda_dev *d, const struct graph *g, const void *w, const char *what)
{
	static const char *const variants[] = {"default", "legacy", "dha"};
	bool b4 = !strcmp(what, "b4");
	struct tview in[PROG_MAX_IO], out[PROG_MAX_IO];
	struct exec_model *cm = NULL;
	struct ref cpu = {0};
	uint64_t t0;
	size_t v;
	int bad = 0, ret;

	ret = prog_inputs(g, b4 ? 4 : 1, b4 && g->def_seq ? 128 : 0, b4 ? 16 : 0, false,
			  hash64(0, g->name, strlen(g->name)) ^ (b4 ? 4 : 1), in);
	t0 = clock_ns();
	ret = ret ?: cpu_backend.model_create(NULL, g, w, &cm);
	ret = ret ?: cpu_backend.model_run(cm, in, out);
	ret = ret ?: keep(out, g->n_outputs, &cpu);
	if (ret) {
		printf("FAIL %-14s %-5s %-6s cpu error: %s\n", g->name,
		       dtype_name((enum dtype)g->wdtype), what, err_msg(ret));
		bad++;
		goto out;
	}
	printf("     %-14s %-5s %-6s cpu reference %.2f s\n", g->name,
	       dtype_name((enum dtype)g->wdtype), what, clock_ms_since(t0) / 1e3);
	cpu_backend.model_destroy(cm);
	cm = NULL;
	for (v = 0; v < ARRAY_SIZE(variants); v++)
		bad += gpu_variant(d, g, w, in, &cpu, what, variants[v]);
out:
	cpu_backend.model_destroy(cm);
	drop(&cpu);
	prog_free_inputs(g, in);
	return bad;
}

static bool listed(const char *list, const char *item)
{
	char buf[512], *t, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", list);
	for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (!strcmp(t, item))
			return true;
	return false;
}

static int check_model(struct cuda_dev *d, const char *name, enum dtype dt, const struct opts *o)
{
	struct hoststore *hs = NULL;
	struct graph *g = NULL;
	int bad = 0, ret;

	ret = prog_model(name, dt, 1, &g, &hs);
	if (ret) {
		printf("FAIL %-14s %-5s model: %s\n", name, dtype_name(dt), err_msg(ret));
		bad = 1;
		goto out;
	}
	if (listed(o->configs, "paper"))
		bad += one_config(d, g, hoststore_base(hs), "paper");
	if (listed(o->configs, "b4"))
		bad += one_config(d, g, hoststore_base(hs), "b4");
out:
	hoststore_destroy(hs);
	graph_destroy(g);
	return bad;
}

/* ------------------------------------------------------------- memory */

struct snap {
	size_t dev_free;
	uint64_t reserved, used;
	long rss;
};

static void snap(struct cuda_dev *d, struct snap *s)
{
	size_t total = 0;

	s->dev_free = 0;
	CU(cuMemGetInfo(&s->dev_free, &total));
	s->reserved = cuda_device_reserved(d);
	s->used = cuda_device_used(d);
	s->rss = prog_rss_kib();
}

static void print_snap(const char *when, const struct snap *s)
{
	printf("mem %-12s device free %llu B, pool reserved %llu B, used %llu B, RSS %ld KiB\n",
	       when, (unsigned long long)s->dev_free, (unsigned long long)s->reserved,
	       (unsigned long long)s->used, s->rss);
}

static int mem_test(struct cuda_dev *d, const char *spec, int runs)
{
	char name[64], *colon;
	struct tview in[PROG_MAX_IO], out[PROG_MAX_IO];
	struct hoststore *hs = NULL;
	struct exec_model *m = NULL;
	struct graph *g = NULL;
	struct snap a, b;
	enum dtype dt = DT_F16;
	uint64_t t0;
	int i, ret, bad = 0;
	char when[32];

	snprintf(name, sizeof(name), "%s", spec);
	colon = strchr(name, ':');
	if (colon) {
		*colon = 0;
		dt = dtype_parse(colon + 1);
	}
	set_variant("default");
	ret = prog_model(name, dt, 1, &g, &hs) ?: prog_inputs(g, 1, 0, 0, false, 7, in);
	ret = ret ?: cuda_backend.model_create(d, g, hoststore_base(hs), &m);
	ret = ret ?: cuda_backend.model_run(m, in, out) ?: cuda_backend.model_run(m, in, out);
	if (ret) {
		printf("FAIL mem %s: %s\n", spec, err_msg(ret));
		bad = 1;
		goto out;
	}
	snap(d, &a);
	print_snap("start", &a);
	t0 = clock_ns();
	for (i = 1; i <= runs && !ret; i++) {
		ret = cuda_backend.model_run(m, in, out);
		if (i % (runs / 5 ? runs / 5 : 1))
			continue;
		snap(d, &b);
		snprintf(when, sizeof(when), "after %d", i);
		print_snap(when, &b);
	}
	if (ret) {
		printf("FAIL mem %s: run %d: %s\n", spec, i - 1, err_msg(ret));
		bad = 1;
		goto out;
	}
	snap(d, &b);
	bad = b.dev_free < a.dev_free || b.reserved != a.reserved || b.used != a.used ||
	      b.rss > a.rss + 1024;
	printf("%s mem %s %s: %d runs in %.1f s: device free %+lld B, pool %+lld B, RSS %+ld "
	       "KiB\n",
	       bad ? "FAIL" : "ok", name, dtype_name(dt), runs, clock_ms_since(t0) / 1e3,
	       (long long)b.dev_free - (long long)a.dev_free,
	       (long long)b.reserved - (long long)a.reserved, b.rss - a.rss);
out:
	if (g)
		prog_free_inputs(g, in);
	cuda_backend.model_destroy(m);
	hoststore_destroy(hs);
	graph_destroy(g);
	return bad;
}

static int parse(int argc, char **argv, struct opts *o)
{
	int c;

	snprintf(o->models, sizeof(o->models), "%s", ALL_MODELS);
	snprintf(o->dtypes, sizeof(o->dtypes), "fp32,fp16");
	snprintf(o->configs, sizeof(o->configs), "paper,b4");
	snprintf(o->mem_model, sizeof(o->mem_model), "bert-base:fp16");
	while ((c = getopt(argc, argv, "m:d:c:r:M:")) != -1) {
		switch (c) {
		case 'm':
			snprintf(o->models, sizeof(o->models), "%s", optarg);
			break;
		case 'd':
			snprintf(o->dtypes, sizeof(o->dtypes), "%s", optarg);
			break;
		case 'c':
			snprintf(o->configs, sizeof(o->configs), "%s", optarg);
			break;
		case 'r':
			o->mem_runs = atoi(optarg);
			break;
		case 'M':
			snprintf(o->mem_model, sizeof(o->mem_model), "%s", optarg);
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	char models[512], *name, *save = NULL;
	static const char *const dts[] = {"fp32", "fp16", "bf16"};
	struct cuda_dev *d;
	struct opts o = {0};
	int bad = 0, ret;
	size_t k;

	if (parse(argc, argv, &o)) {
		fprintf(stderr, "usage: fullsize_cuda [-m MODEL,...] [-d fp32,fp16] "
				"[-c paper,b4] [-r RUNS] [-M MODEL:DTYPE]\n");
		return 2;
	}
	ret = cuda_device_open(0, &d);
	if (ret) {
		fprintf(stderr, "fullsize_cuda: %s\n", err_msg(ret));
		return 1;
	}
	printf("GPU 0: %s\n", cuda_device_name(d));
	for (k = 0; k < ARRAY_SIZE(dts); k++) {
		if (!listed(o.dtypes, dts[k]))
			continue;
		snprintf(models, sizeof(models), "%s", o.models);
		for (name = strtok_r(models, ",", &save); name; name = strtok_r(NULL, ",", &save))
			bad += check_model(d, name, dtype_parse(dts[k]), &o);
	}
	if (o.mem_runs > 0)
		bad += mem_test(d, o.mem_model, o.mem_runs);
	printf("fullsize_cuda: %d failure%s\n", bad, bad == 1 ? "" : "s");
	cuda_device_close(d);
	return bad ? 1 : 0;
}
