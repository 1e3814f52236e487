/* SPDX-License-Identifier: MIT */
/*
 * `dprt run`: one inference on the CPU backend or a GPU (device.c opens
 * the device), outputs printed or saved, optionally repeated for latency.
 */
#include "cli/cli.h"
#include "exec/exec.h"
#include "mem/mem.h"
#include "model/model.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct run_opts {
	const char *path, *input, *output;
	long batch, seq, repeat, threads;
	int gpu; /* CUDA ordinal, -1 = the CPU backend */
};

static void fill_random(const struct graph *g, const struct io_desc *io, struct tview *tv,
			struct rng *r)
{
	int64_t n = shape_numel(&tv->shape), i, bound = graph_id_bound(g, io->tensor);

	for (i = 0; i < n; i++) {
		switch (io->dtype) {
		case DT_I64:
			((int64_t *)tv->data)[i] =
				bound ? (int64_t)(rng_next(r) % (uint64_t)bound) : 0;
			break;
		case DT_I32:
			((int32_t *)tv->data)[i] =
				bound ? (int32_t)(rng_next(r) % (uint64_t)bound) : 0;
			break;
		case DT_F32:
			((float *)tv->data)[i] = rng_unit(r);
			break;
		case DT_F16:
			((uint16_t *)tv->data)[i] = f32_to_f16(rng_unit(r));
			break;
		case DT_BF16:
			((uint16_t *)tv->data)[i] = f32_to_bf16(rng_unit(r));
			break;
		default:
			((uint8_t *)tv->data)[i] = (uint8_t)(rng_next(r) & 1);
			break;
		}
	}
}

static int make_random_inputs(const struct graph *g, const struct run_opts *o, struct tview *in)
{
	int64_t seq = o->seq ? o->seq : g->def_seq ? g->def_seq : MIN(g->max_seq, 128);
	struct rng r;
	uint32_t i;

	rng_seed(&r, 42);
	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];
		struct tview *tv = &in[i];

		if (io->flags & IO_OPTIONAL)
			continue;
		tv->nbytes = io_shape(io, o->batch, seq, &tv->shape);
		tv->data = malloc(tv->nbytes ? tv->nbytes : 1);
		if (!tv->data)
			return -ENOMEM;
		fill_random(g, io, tv, &r);
	}
	return 0;
}

static int load_inputs(const struct graph *g, const char *file, struct tview *in)
{
	struct st_file *f;
	uint32_t i;
	int ret = st_open(file, &f);

	if (ret)
		return ret;
	for (i = 0; i < g->n_inputs && !ret; i++) {
		const struct io_desc *io = &g->inputs[i];
		const struct st_tensor *t = st_find(f, io->name);

		if (!t) {
			if (!(io->flags & IO_OPTIONAL))
				ret = err_set(DPRT_ESHAPE,
					      "%s: has no tensor '%s' (a required "
					      "input)",
					      file, io->name);
			continue;
		}
		in[i].shape.dtype = t->dtype;
		in[i].shape.ndim = t->ndim;
		memcpy(in[i].shape.dims, t->dims, sizeof(t->dims));
		in[i].nbytes = t->nbytes;
		in[i].data = malloc(t->nbytes ? t->nbytes : 1);
		if (!in[i].data)
			ret = -ENOMEM;
		else
			memcpy(in[i].data, t->data, t->nbytes);
	}
	st_close(f);
	return ret;
}

static double out_value(const struct tview *t, int64_t i)
{
	switch (t->shape.dtype) {
	case DT_F32:
		return ((const float *)t->data)[i];
	case DT_F16:
		return f16_to_f32(((const uint16_t *)t->data)[i]);
	case DT_BF16:
		return bf16_to_f32(((const uint16_t *)t->data)[i]);
	case DT_I64:
		return (double)((const int64_t *)t->data)[i];
	case DT_I32:
		return ((const int32_t *)t->data)[i];
	default:
		return ((const uint8_t *)t->data)[i];
	}
}

static void print_output(const char *name, const struct tview *t)
{
	int64_t n = shape_numel(&t->shape), i, nonfinite = 0;
	double mn = INFINITY, mx = -INFINITY, sum = 0, v;
	char d[128];

	cli_fmt_dims(d, sizeof(d), t->shape.ndim, t->shape.dims);
	for (i = 0; i < n; i++) {
		v = out_value(t, i);
		if (!isfinite(v)) {
			nonfinite++;
			continue;
		}
		mn = MIN(mn, v);
		mx = MAX(mx, v);
		sum += v;
	}
	printf("  %-20s %-6s %-16s min %.6g max %.6g mean %.6g", name,
	       dtype_name((enum dtype)t->shape.dtype), d, mn, mx, n ? sum / (double)n : 0.0);
	if (nonfinite)
		printf("  (%lld non-finite)", (long long)nonfinite);
	printf("\n    first:");
	for (i = 0; i < MIN(n, 6); i++)
		printf(" %.6g", out_value(t, i));
	printf("\n");
}

static int save_outputs(const struct graph *g, const char *file, const struct tview *out)
{
	struct st_tensor *ts = calloc(g->n_outputs, sizeof(*ts));
	uint32_t i;
	int ret;

	if (!ts)
		return -ENOMEM;
	for (i = 0; i < g->n_outputs; i++) {
		snprintf(ts[i].name, sizeof(ts[i].name), "%s", g->outputs[i].name);
		ts[i].dtype = out[i].shape.dtype;
		ts[i].ndim = out[i].shape.ndim;
		memcpy(ts[i].dims, out[i].shape.dims, sizeof(ts[i].dims));
		ts[i].data = out[i].data;
		ts[i].nbytes = out[i].nbytes;
	}
	ret = st_write(file, ts, g->n_outputs);
	free(ts);
	return ret;
}

static void run_repeat(const struct exec_ops *be, struct exec_model *m, const struct tview *in,
		       struct tview *out, long n)
{
	double sum = 0, mn = INFINITY, ms;
	long i;

	for (i = 0; i < n; i++) {
		uint64_t t0 = clock_ns();

		if (be->model_run(m, in, out))
			return;
		ms = clock_ms_since(t0);
		sum += ms;
		mn = MIN(mn, ms);
	}
	printf("repeat: %ld runs, mean %.3f ms, min %.3f ms\n", n, sum / (double)n, mn);
}

static int run_model(const struct run_opts *o, const struct graph *g, const void *w,
		     const struct exec_ops *be, void *dev)
{
	struct tview *in = calloc(g->n_inputs, sizeof(*in));
	struct tview *out = calloc(g->n_outputs, sizeof(*out));
	struct exec_model *m = NULL;
	uint64_t t0;
	uint32_t i;
	int ret = in && out ? 0 : -ENOMEM;

	if (!ret)
		ret = o->input ? load_inputs(g, o->input, in) : make_random_inputs(g, o, in);
	if (!ret)
		ret = be->model_create(dev, g, w, &m);
	if (ret)
		goto out_free;
	t0 = clock_ns();
	ret = be->model_run(m, in, out);
	if (ret)
		goto out_destroy;
	printf("ran %s on %s in %.3f ms (first run)\noutputs:\n", g->name,
	       dev ? cli_device_label(be, dev) : be->name, clock_ms_since(t0));
	for (i = 0; i < g->n_outputs; i++)
		print_output(g->outputs[i].name, &out[i]);
	if (o->output)
		ret = save_outputs(g, o->output, out);
	if (!ret && o->repeat)
		run_repeat(be, m, in, out, o->repeat);
out_destroy:
	be->model_destroy(m);
out_free:
	for (i = 0; in && i < g->n_inputs; i++)
		free(in[i].data);
	free(in);
	free(out);
	return ret;
}

static int run_path(const struct run_opts *o)
{
	char path[4096];
	const struct exec_ops *be;
	struct hoststore *hs = NULL;
	struct pkg *p = NULL;
	void *dev = NULL;
	int ret;

	ret = cli_open_device(o->gpu, &be, &dev);
	if (ret)
		return cli_fail("run", ret);
	ret = cli_resolve_pkg(o->path, path, sizeof(path));
	if (!ret)
		ret = pkg_open(path, &p);
	/* The host weight store: pinned and device-mapped where a GPU driver
	 * is present, read with io_uring, every layer's checksum verified. */
	if (!ret)
		ret = hoststore_load(p, &hs);
	if (!ret)
		ret = run_model(o, pkg_graph(p), hoststore_base(hs), be, dev);
	hoststore_destroy(hs);
	pkg_close(p);
	cli_close_device(be, dev);
	return ret ? cli_fail("run", ret) : 0;
}

int cmd_run(int argc, char **argv)
{
	static const struct option lo[] = {
		{"random", no_argument, 0, 'r'},	{"input", required_argument, 0, 'i'},
		{"output", required_argument, 0, 'o'},	{"batch", required_argument, 0, 'b'},
		{"seq", required_argument, 0, 's'},	{"repeat", required_argument, 0, 'n'},
		{"threads", required_argument, 0, 't'}, {"gpus", required_argument, 0, 'g'},
		{"help", no_argument, 0, 'h'},		{0, 0, 0, 0},
	};
	struct run_opts o = {.batch = 1, .gpu = -1};
	long *num, gpu;
	int c;

	while ((c = getopt_long(argc, argv, "i:o:h", lo, NULL)) != -1) {
		num = NULL;
		switch (c) {
		case 'r':
			break;
		case 'i':
			o.input = optarg;
			break;
		case 'o':
			o.output = optarg;
			break;
		case 'b':
			num = &o.batch;
			break;
		case 's':
			num = &o.seq;
			break;
		case 'n':
			num = &o.repeat;
			break;
		case 't':
			num = &o.threads;
			break;
		case 'g':
			if (!strcmp(optarg, "cpu"))
				o.gpu = -1;
			else if (cli_parse_long(optarg, 0, 1023, &gpu)) {
				cli_usage_hint("run", "--gpus takes cpu or one GPU number (run "
						      "uses one device)");
				return EXIT_USAGE;
			} else
				o.gpu = (int)gpu;
			break;
		case 'h':
			fputs(cli_usage_text, stdout);
			return 0;
		default:
			cli_usage_hint("run", "unknown option");
			return EXIT_USAGE;
		}
		if (num && cli_parse_long(optarg, c == 'n' || c == 't' ? 0 : 1, 1L << 30, num)) {
			cli_usage_hint("run", "--batch/--seq/--repeat/--threads take a number");
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		cli_usage_hint("run", "usage: dprt run PATH [options]");
		return EXIT_USAGE;
	}
	o.path = argv[optind];
	if (o.threads)
		cpu_set_threads((int)o.threads);
	return run_path(&o);
}
