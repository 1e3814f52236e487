/* SPDX-License-Identifier: MIT */
/*
 * coldstart: cold-start latency of the paper's models by engine mode.
 *
 *   coldstart -m MODEL[,MODEL...] [-e MODE[@K][,MODE[@K]...]|all] -d GPU [GPU...]
 *             [-t fp32|fp16|bf16] [-w WARM] [-n RUNS] [-W WARM] [-N RUNS]
 *             [-B BYTES] [-c CYCLES]
 *
 * The first GPU is the target, the others lend their links (PT); MODE@K
 * plans the mode for the first K of them (default: all), so one run can
 * measure pt on 2 and on 4 GPUs from one profile. For each
 * model (zoo weights, seeded, in a host weight store; batch 1 at the
 * paper's shape) the GPU profiler measures it on these GPUs, then for each
 * mode the planner makes a plan and a cold model runs it:
 *   - check: the first cold run's outputs must equal the following warm
 *     run's bit for bit (else "FAIL" and exit 1);
 *   - warm-ups, then measured runs, each a cold start followed by an
 *     eviction (not timed); host clock around cuda_cold_run (inputs in,
 *     outputs out).
 * Models with more than -B bytes of weights (default 1 GB) use -W/-N
 * (default 10 + 50) instead of -w/-n (default 20 + 200, the paper's).
 *
 * Each row (mode@K): mean, p50, p99, min, max (ms); MB loaded over PCIe and left in
 * host memory (DHA); effective bandwidth (loaded bytes / mean); the
 * planner's prediction; the floor = max(loaded bytes / measured H2D
 * bandwidth, warm latency) with the warm latency of the model all in
 * device memory (its CUDA graph, p50), and mean / floor. Before the rows,
 * the model's PCIe floor on K GPUs: all its weight bytes (DHA reads cross
 * PCIe too) / the measured aggregate H2D bandwidth of K links. Also the mode's
 * own warm latency once resident, how many runs replayed one graph, and
 * how many remade their programs (weights landing elsewhere).
 * -c N: N more cold/evict cycles of the first mode of the first model,
 * checking that the pool and the GPU's free memory end where they began.
 * -g MS: sleep MS milliseconds before each timed cold start (the pace of
 * a server's requests: an idle GPU and CPU wake up slower than a busy one).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../test/exec/cuda/progs.h"
#include "mem/cudrv.h"
#include "plan/plan.h"

#define MAX_GPUS 8
#define ALL_MODES "demand,pipeline,deepplan,deepplan-v1,pt,pt+dha,dprt"

struct opts {
	char models[512], modes[256];
	int gpus[MAX_GPUS];
	uint32_t n_gpus;
	enum dtype dt;
	int warm, runs, warm_big, runs_big, cycles;
	uint64_t big;
	uint32_t gap_ms; /* -g: idle time before each timed cold start */
};

struct bench {
	const struct opts *o;
	struct cuda_dev *devs[MAX_GPUS];
	struct cuda_link *links[MAX_GPUS];
	struct graph *g;
	struct hoststore *hs;
	struct tview in[PROG_MAX_IO];
	struct plan_profile *pf;
	double warm_ms; /* all LOAD, graph, p50 */
	bool cycled;	/* -c done (on the first model) */
	int fails;
};

static int usage(void)
{
	fprintf(stderr,
		"usage: coldstart -m MODEL[,MODEL...] [-e MODE[@K][,MODE[@K]...]|all] -d GPU "
		"[GPU...] [-t fp32|fp16|bf16] [-w WARM] [-n RUNS] [-W WARM] [-N RUNS] "
		"[-B BYTES] [-c CYCLES] [-g GAP_MS]\nMODEL: a zoo name, or a package file (.dpk: its own dtype)\n"
		"modes: " ALL_MODES "\n");
	return 2;
}

static double ms_since(uint64_t t0)
{
	return (double)(clock_ns() - t0) / 1e6;
}

/* ------------------------------------------------------------- outputs */

struct outs {
	struct tview t[PROG_MAX_IO];
	uint32_t n;
};

static int keep(const struct graph *g, const struct tview *out, struct outs *k)
{
	uint32_t o;

	k->n = g->n_outputs;
	for (o = 0; o < k->n; o++) {
		k->t[o] = out[o];
		k->t[o].data = malloc(out[o].nbytes);
		if (!k->t[o].data)
			return -ENOMEM;
		memcpy(k->t[o].data, out[o].data, out[o].nbytes);
	}
	return 0;
}

static void drop(struct outs *k)
{
	uint32_t o;

	for (o = 0; o < k->n; o++)
		free(k->t[o].data);
	k->n = 0;
}

static bool same_bits(const struct outs *k, const struct tview *out)
{
	uint32_t o;

	for (o = 0; o < k->n; o++)
		if (k->t[o].nbytes != out[o].nbytes ||
		    memcmp(k->t[o].data, out[o].data, out[o].nbytes))
			return false;
	return true;
}

/* ----------------------------------------------------------- warm runs */

/* p50 of n warm runs of a resident model (its graph after the first). */
static int warm_p50(struct exec_model *m, const struct tview *in, int n, double *p50)
{
	struct tview out[PROG_MAX_IO];
	struct prog_stats s;
	double *t = calloc((size_t)n + 3, sizeof(*t));
	uint64_t t0;
	int i, ret = 0;

	if (!t)
		return -ENOMEM;
	for (i = -3; i < n && !ret; i++) {
		t0 = clock_ns();
		ret = cuda_backend.model_run(m, in, out);
		if (i >= 0)
			t[i] = ms_since(t0);
	}
	prog_stats(t, n, &s);
	*p50 = s.p50;
	free(t);
	return ret;
}

static int warm_reference(struct bench *b)
{
	struct exec_model *m;
	int ret;

	ret = cuda_backend.model_create(b->devs[0], b->g, hoststore_base(b->hs), &m);
	if (ret)
		return ret;
	ret = warm_p50(m, b->in, 100, &b->warm_ms);
	cuda_backend.model_destroy(m);
	return ret;
}

/* -------------------------------------------------------------- modes */

struct row {
	char mode[32]; /* name@K */
	struct prog_stats s;
	double max, predicted, floor, warm_mode, agg_floor;
	uint64_t loaded, dha;
	uint32_t width, links, graphs, replans, runs, fallbacks;
	bool bitwise;
};

/* The check: a cold run, then a warm one with the same outputs. */
static int check_bits(struct bench *b, struct exec_model *m, struct row *r)
{
	struct tview out[PROG_MAX_IO];
	struct cuda_cold_stats st;
	struct outs cold = {0};
	int ret;

	ret = cuda_cold_run(m, b->in, out, &st) ?:
		      keep(b->g, out, &cold)	?:
						  cuda_backend.model_run(m, b->in, out);
	if (!ret)
		r->bitwise = same_bits(&cold, out);
	drop(&cold);
	return ret ?: warm_p50(m, b->in, 50, &r->warm_mode) ?: cuda_cold_evict(m);
}

static int measure(struct bench *b, struct exec_model *m, int warm, int runs, struct row *r)
{
	struct tview out[PROG_MAX_IO];
	struct cuda_cold_stats st;
	double *t = calloc((size_t)runs + 1, sizeof(*t));
	uint64_t t0;
	int i, ret = 0;

	if (!t)
		return -ENOMEM;
	for (i = -warm; i < runs && !ret; i++) {
		if (i >= 0 && b->o->gap_ms) /* paced like requests at 1000/GAP per second */
			nanosleep(&(struct timespec){b->o->gap_ms / 1000,
						     (long)(b->o->gap_ms % 1000) * 1000000L},
				  NULL);
		t0 = clock_ns();
		ret = cuda_cold_run(m, b->in, out, &st);
		if (i < 0 || ret) {
			ret = ret ?: cuda_cold_evict(m);
			continue;
		}
		t[i] = ms_since(t0);
		r->max = MAX(r->max, t[i]);
		r->graphs += st.graph;
		r->replans += st.progs_remade;
		r->fallbacks += st.fallbacks;
		r->loaded = st.bytes_loaded;
		r->dha = st.bytes_dha;
		r->links = st.links;
		ret = cuda_cold_evict(m);
	}
	r->runs = (uint32_t)runs;
	prog_stats(t, runs, &r->s);
	free(t);
	return ret;
}

/* n more cycles: the pool and the GPU's free memory must not move. */
static int cycles(struct bench *b, struct exec_model *m, int n)
{
	struct tview out[PROG_MAX_IO];
	uint64_t used = cuda_device_used(b->devs[0]);
	size_t f0 = 0, f1 = 0, total;
	long rss0 = prog_rss_kib();
	int i, ret;

	ret = CU(cuMemGetInfo(&f0, &total));
	for (i = 0; i < n && !ret; i++)
		ret = cuda_cold_run(m, b->in, out, NULL) ?: cuda_cold_evict(m);
	ret = ret ?: CU(cuMemGetInfo(&f1, &total));
	if (ret)
		return ret;
	printf("cycles %s: %d cold/evict: pool in use %llu -> %llu B, GPU free %zu -> %zu B, "
	       "RSS %ld -> %ld KiB: %s\n",
	       b->g->name, n, (unsigned long long)used,
	       (unsigned long long)cuda_device_used(b->devs[0]), f0, f1, rss0, prog_rss_kib(),
	       used == cuda_device_used(b->devs[0]) && f0 == f1 ? "ok" : "LEAK");
	b->fails += used != cuda_device_used(b->devs[0]) || f0 != f1;
	return 0;
}

static void print_row(const struct bench *b, const struct row *r)
{
	printf("%-13s %-13s %u/%u %8.3f %8.3f %8.3f %8.3f %8.3f %8.1f %7.1f %6.1f %8.3f %8.3f "
	       "%5.2f %8.3f %3u/%-3u %2u %s\n",
	       b->g->name, r->mode, r->links, r->width, r->s.mean, r->s.p50, r->s.p99, r->s.min,
	       r->max, (double)r->loaded / 1e6, (double)r->dha / 1e6,
	       (double)r->loaded / (r->s.mean / 1e3) / 1e9, r->predicted, r->floor,
	       r->s.mean / r->floor, r->warm_mode, r->graphs, r->runs, r->replans,
	       r->bitwise ? "ok" : "FAIL");
	fflush(stdout);
}

static int run_mode(struct bench *b, enum plan_mode mode, uint32_t k, bool first)
{
	const struct opts *o = b->o;
	bool big = b->g->weights_size > o->big;
	struct exec_model *m = NULL;
	struct plan *p = NULL;
	struct row r = {0};
	int ret;

	snprintf(r.mode, sizeof(r.mode), "%s@%u", plan_mode_name(mode), k);
	ret = plan_build(b->pf, mode, k, &p);
	if (ret)
		return ret;
	r.predicted = p->total_ns / 1e6;
	r.width = p->width;
	ret = cuda_cold_model_create(b->devs[0], b->g, hoststore_base(b->hs), p, b->links + 1,
				     k - 1, &m);
	plan_destroy(p);
	if (ret)
		return ret;
	ret = check_bits(b, m, &r) ?:
		      measure(b, m, big ? o->warm_big : o->warm, big ? o->runs_big : o->runs, &r);
	if (!ret) {
		r.floor = MAX((double)r.loaded / b->pf->link.h2d_bw * 1e3, b->warm_ms);
		print_row(b, &r);
		b->fails += !r.bitwise;
	}
	if (!ret && first && o->cycles && !b->cycled) {
		b->cycled = true;
		ret = cycles(b, m, o->cycles);
	}
	cuda_backend.model_destroy(m);
	return ret;
}

/* ------------------------------------------------------------- models */

static void print_profile(const struct bench *b)
{
	const struct plan_links *lk = &b->pf->link;
	uint64_t load = 0, exec = 0, dha = 0;
	uint32_t l, k;

	for (l = 0; l < b->pf->n_layers; l++) {
		load += b->pf->layers[l].load_ns;
		exec += b->pf->layers[l].exec_ns;
		dha += b->pf->layers[l].dha_ns;
	}
	printf("profile %s on %u x %s: %u layers, %.1f MB; sum of layer loads %.3f ms, exec "
	       "%.3f ms, dha-exec %.3f ms; warm (graph, p50) %.3f ms\n",
	       b->g->name, lk->n_gpus, b->pf->gpu, b->pf->n_layers,
	       (double)b->g->weights_size / 1e6, (double)load / 1e6, (double)exec / 1e6,
	       (double)dha / 1e6, b->warm_ms);
	printf("links: h2d %.1f GB/s, aggregate", lk->h2d_bw / 1e9);
	for (k = 0; k < lk->n_gpus; k++)
		printf(" %.1f", lk->agg_bw[k] / 1e9);
	printf(" GB/s; %s %.1f GB/s, %.1f us; xfer ovh %.1f us; DHA shares read %.2f copy "
	       "%.2f\n",
	       lk->n_gpus > 1 ? "peer" : "d2d (no peer)", lk->peer_bw / 1e9,
	       (double)lk->peer_lat_ns / 1e3, (double)lk->xfer_ovh_ns / 1e3, lk->dha_read_share,
	       lk->dha_copy_share);
	printf("pcie-floor %s", b->g->name);
	for (k = 0; k < lk->n_gpus; k++)
		printf(" %u:%.3f", k + 1, (double)b->g->weights_size / lk->agg_bw[k] * 1e3);
	printf(" ms (all weight bytes / aggregate H2D of K GPUs)\n");
	printf("%-13s %-13s %3s %8s %8s %8s %8s %8s %8s %7s %6s %8s %8s %5s %8s %7s %2s %s\n",
	       "model", "mode", "lnk", "mean", "p50", "p99", "min", "max", "MB_load", "MB_dha",
	       "GB/s", "predict", "floor", "x_flr", "warm_md", "graphs", "rp", "bits");
}

/* "pt+dha@2": the mode and its GPU count (default: all of -d). */
static int parse_mode(const struct bench *b, char *tok, int *mode, uint32_t *k)
{
	char *at = strchr(tok, '@');
	unsigned long n = b->o->n_gpus;

	if (at) {
		*at = 0;
		n = strtoul(at + 1, NULL, 10);
	}
	*mode = plan_mode_parse(tok);
	*k = (uint32_t)n;
	if (*mode < 0)
		return err_set(-EINVAL, "unknown mode %s", tok);
	if (n < 1 || n > b->o->n_gpus)
		return err_set(-EINVAL, "mode %s@%s: 1..%u GPUs (-d)", tok, at + 1, b->o->n_gpus);
	return 0;
}

static int bench_model(struct bench *b, const char *name)
{
	const struct opts *o = b->o;
	char modes[256], *mode, *save = NULL;
	uint64_t t0 = clock_ns();
	bool first = true;
	uint32_t k;
	int ret, mo;

	ret = prog_model(name, o->dt, 1, &b->g, &b->hs);
	if (!ret)
		ret = prog_inputs(b->g, 1, 0, 0, true, 7, b->in);
	if (ret)
		goto out;
	printf("\n== %s (%s): weights made in %.1f s\n", name, dtype_name(o->dt),
	       ms_since(t0) / 1e3);
	ret = cuda_profile(b->devs, o->n_gpus, b->g, hoststore_base(b->hs), 0, &b->pf) ?:
		      warm_reference(b);
	if (ret)
		goto out_in;
	print_profile(b);
	snprintf(modes, sizeof(modes), "%s", o->modes);
	for (mode = strtok_r(modes, ",", &save); mode && !ret; mode = strtok_r(NULL, ",", &save)) {
		ret = parse_mode(b, mode, &mo, &k) ?: run_mode(b, (enum plan_mode)mo, k, first);
		first = false;
	}
out_in:
	prog_free_inputs(b->g, b->in);
out:
	if (ret)
		printf("%s: error: %s\n", name, err_msg(ret));
	plan_profile_destroy(b->pf);
	b->pf = NULL;
	hoststore_destroy(b->hs);
	graph_destroy(b->g);
	b->hs = NULL;
	b->g = NULL;
	return ret;
}

/* ------------------------------------------------------------- set-up */

static int add_gpus(struct opts *o, const char *s)
{
	char buf[128], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (o->n_gpus == MAX_GPUS || *tok < '0' || *tok > '9')
			return -EINVAL;
		o->gpus[o->n_gpus++] = atoi(tok);
	}
	return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
	int c;

	snprintf(o->modes, sizeof(o->modes), "%s", ALL_MODES);
	o->dt = DT_F32;
	o->warm = 20;
	o->runs = 200;
	o->warm_big = 10;
	o->runs_big = 50;
	o->big = 1000000000ull;
	while ((c = getopt(argc, argv, "m:e:d:t:w:n:W:N:B:c:g:")) != -1) {
		switch (c) {
		case 'm':
			snprintf(o->models, sizeof(o->models), "%s", optarg);
			break;
		case 'e':
			snprintf(o->modes, sizeof(o->modes), "%s",
				 strcmp(optarg, "all") ? optarg : ALL_MODES);
			break;
		case 'd':
			if (add_gpus(o, optarg))
				return -EINVAL;
			break;
		case 't':
			o->dt = dtype_parse(optarg);
			break;
		case 'w':
			o->warm = atoi(optarg);
			break;
		case 'n':
			o->runs = atoi(optarg);
			break;
		case 'W':
			o->warm_big = atoi(optarg);
			break;
		case 'N':
			o->runs_big = atoi(optarg);
			break;
		case 'B':
			o->big = strtoull(optarg, NULL, 10);
			break;
		case 'c':
			o->cycles = atoi(optarg);
			break;
		case 'g':
			o->gap_ms = (uint32_t)atoi(optarg);
			break;
		default:
			return -EINVAL;
		}
	}
	for (; optind < argc; optind++) /* -d 0 1 2 3 */
		if (add_gpus(o, argv[optind]))
			return -EINVAL;
	if (!o->models[0] || o->runs < 1 || o->runs_big < 1 || o->warm < 0 || o->warm_big < 0 ||
	    (o->dt != DT_F32 && o->dt != DT_F16 && o->dt != DT_BF16))
		return -EINVAL;
	if (!o->n_gpus)
		o->gpus[o->n_gpus++] = 0;
	return 0;
}

static int open_gpus(struct bench *b)
{
	uint32_t k;
	int ret = 0;

	for (k = 0; k < b->o->n_gpus && !ret; k++) {
		ret = cuda_device_open(b->o->gpus[k], &b->devs[k]);
		if (!ret && k)
			ret = cuda_link_create(b->devs[k], &b->links[k]);
	}
	return ret;
}

static void close_gpus(struct bench *b)
{
	uint32_t k;

	for (k = 0; k < b->o->n_gpus; k++) {
		cuda_link_destroy(b->links[k]);
		if (b->devs[k])
			cuda_device_close(b->devs[k]);
	}
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	struct bench b = {.o = &o};
	char *name, *save = NULL;
	uint32_t k;
	int ret;

	if (parse(argc, argv, &o))
		return usage();
	ret = open_gpus(&b);
	if (ret) {
		fprintf(stderr, "coldstart: %s\n", err_msg(ret));
		close_gpus(&b);
		return 1;
	}
	printf("coldstart: %s; target GPU %d (%s)", dtype_name(o.dt), o.gpus[0],
	       cuda_device_name(b.devs[0]));
	for (k = 1; k < o.n_gpus; k++)
		printf(", helper GPU %d", o.gpus[k]);
	printf("; %d+%d runs (%d+%d over %.1f GB); cold graphs %s, PT %s\n", o.warm, o.runs,
	       o.warm_big, o.runs_big, (double)o.big / 1e9,
	       getenv("DPRT_COLD_GRAPH") ? getenv("DPRT_COLD_GRAPH") : "1",
	       getenv("DPRT_PT_DIRECT") ? "direct" : "staged");
	for (name = strtok_r(o.models, ",", &save); name; name = strtok_r(NULL, ",", &save))
		b.fails += bench_model(&b, name) != 0;
	close_gpus(&b);
	return b.fails ? 1 : 0;
}
