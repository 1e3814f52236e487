/* SPDX-License-Identifier: MIT */
/* dprt command line: subcommands and option parsing. */
#include "cli.h"
#include "exec/exec.h"
#include "mem/mem.h"
#include "model/model.h"
#include "net/server.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define EXIT_USAGE 2

static const char usage_text[] =
	"usage: dprt <command> [options]\n"
	"       dprt [serve options]      (the same as 'dprt serve [options]')\n"
	"\n"
	"Commands:\n"
	"  serve                      serve a model repository over HTTP/1.1 with the\n"
	"                             KServe v2 protocol until SIGINT or SIGTERM\n"
	"      --gpus LIST            devices: cpu, cpu:N (N virtual CPU devices), or\n"
	"                             GPU ids like 0-3 or 0,2 (default cpu)\n"
	"      --listen ADDR          :PORT (every address), HOST:PORT, [IPV6]:PORT;\n"
	"                             port 0 picks a free one (default :9000)\n"
	"      --models DIR           repository DIR/NAME/VERSION/model.dpk (default\n"
	"                             ./models if it exists, else a demo repository of\n"
	"                             bert-tiny, gpt2-tiny and resnet-tiny built on\n"
	"                             first use in $DPRT_CACHE/demo, else\n"
	"                             $XDG_CACHE_HOME/dprt/demo, else ~/.cache/dprt/demo)\n"
	"      --load all|explicit    load every model at start (default), or only on\n"
	"                             POST /v2/repository/models/NAME/load\n"
	"      --cpus LIST            cores to pin the device workers to (default: the\n"
	"                             last cores)\n"
	"      --gpu-mem-limit SIZE   device memory for models, per device; the least\n"
	"                             recently used idle model is evicted to make room\n"
	"      --host-mem-limit SIZE  host memory for weight copies\n"
	"      --max-batch N          fuse up to N queued requests of a model (default 1)\n"
	"      --batch-delay-us N     wait up to N us for a batch to fill (default 0)\n"
	"      --cold-mode MODE       how a GPU brings a model in: load (default: the\n"
	"                             whole model, then the run), auto (by a dprt\n"
	"                             plan for one GPU, made from what 'dprt plan\n"
	"                             MODEL' stored for this GPU model, else whole),\n"
	"                             or a plan mode: dprt, deepplan, deepplan-v1,\n"
	"                             pipeline, demand (with nothing stored, the\n"
	"                             first cold start profiles the model on its GPU\n"
	"                             and stores profile and plan). An evicted model\n"
	"                             keeps its plans; its next cold start moves only\n"
	"                             weights\n"
	"      --plans DIR            plan repository (default: $PLAN_REPO/<model>-<id>,\n"
	"                             else plans/ beside the model's package)\n"
	"      --spin-us N            an idle worker polls N us before it sleeps\n"
	"                             (default 50; longer trades CPU for latency)\n"
	"      --queue-depth N        requests queued per device, a power of 2\n"
	"                             (default 256); beyond it: 503\n"
	"      --max-body SIZE        largest request body (default 64M); beyond: 413\n"
	"      --max-conns N          open connections (default 1024); a connection\n"
	"                             beyond is answered 503 and closed\n"
	"      --idle-timeout S       close a connection idle for S seconds (default 60)\n"
	"      --request-timeout S    a request must be complete S seconds after its\n"
	"                             first byte, else 408 and close (default 30)\n"
	"      Endpoints: GET /v2, /v2/health/live, /v2/health/ready,\n"
	"      /v2/models/NAME[/versions/V][/ready], /metrics (Prometheus); POST\n"
	"      /v2/models/NAME[/versions/V]/infer (JSON or binary tensors),\n"
	"      /v2/repository/index, /v2/repository/models/NAME/load|unload.\n"
	"      Infer responses tell cold starts (parameter cold_start, header\n"
	"      Dprt-Cold-Start) and timings (queue_us, load_us, compute_us, header\n"
	"      Server-Timing). SIGINT/SIGTERM: stop accepting, answer the requests\n"
	"      received, exit 0. SIZE takes K, M, G suffixes; S may be fractional.\n"
	"  zoo NAME -o DIR|FILE.dpk   build a model of the zoo into a package\n"
	"      --dtype fp32|fp16|bf16 weight and activation type (default fp32)\n"
	"      --seed N               seed of the random weights (default 1)\n"
	"      --weights FILE         take weights from a safetensors file whose\n"
	"                             tensors carry the PyTorch state-dict names\n"
	"  zoo --list                 list the models the zoo can build\n"
	"  info PATH                  show a package: signature, layers, byte ranges\n"
	"  run PATH                   run one inference and print the outputs\n"
	"      --random               random inputs (the default without --input)\n"
	"      --input FILE           inputs from a safetensors file (tensor names =\n"
	"                             the model's input names)\n"
	"      --output FILE          write the outputs to a safetensors file\n"
	"      --batch N --seq N      input shape for --random (default 1 and the\n"
	"                             model's paper shape)\n"
	"      --repeat N             run N more times and report latency\n"
	"      --threads N            CPU threads for GEMMs (default: all cores)\n"
	"      --gpus cpu|N           run on the CPU backend (default) or GPU N\n"
	"  plan PATH                  profile and plan cold starts (DHA, PT)\n"
	"      --gpus 0[,1,2,3]       target GPU first, then helper GPUs\n"
	"      --mode M               dprt (default), deepplan-v1, deepplan,\n"
	"                             pipeline, pt, pt+dha, demand\n"
	"      --plans DIR            plan repository (default PATH's plans/;\n"
	"                             env PLAN_REPO)\n"
	"      --profile FILE         plan from a saved profile; --save-profile\n"
	"      --synthetic-profile    plan from a profile derived from the\n"
	"                             package and the paper's H100 figures\n"
	"      --show                 print the plan as a table\n"
	"\n"
	"PATH is a model.dpk file, a directory holding one, or a repository entry\n"
	"DIR/NAME whose highest version DIR/NAME/<v>/model.dpk is used.\n"
	"\n"
	"Options for every command:\n"
	"  -v, --verbose    more logging      -q, --quiet   errors only\n"
	"  -h, --help       this text         --version     print the version\n";

static void usage_hint(const char *cmd, const char *msg)
{
	fprintf(stderr, "dprt%s%s: %s\n(see 'dprt --help')\n", cmd ? " " : "", cmd ? cmd : "",
		msg);
}

static int fail(const char *what, int code)
{
	fprintf(stderr, "dprt: %s: %s\n", what, err_msg(code));
	return 1;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* ------------------------------------------------------------ paths */

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/* ------------------------------------------------------------- zoo */

static int zoo_print_list(void)
{
	const struct zoo_info *z;

	printf("%-16s %14s  %s\n", "model", "parameters", "description");
	for (z = zoo_list(); z->name; z++) {
		if (z->params)
			printf("%-16s %14llu  %s\n", z->name, (unsigned long long)z->params,
			       z->desc);
		else
			printf("%-16s %14s  %s\n", z->name, "-", z->desc);
	}
	return 0;
}

struct zoo_opts {
	const char *name, *out, *weights;
	enum dtype dtype;
	uint64_t seed;
};

static int zoo_write(const struct zoo_opts *o)
{
	char path[4200], dir[4096], b1[32], b2[32];
	struct weight_source *ws = NULL;
	struct graph *g = NULL;
	uint64_t t0 = clock_ns();
	double secs;
	int ret;

	if (ends_with(o->out, ".dpk")) {
		snprintf(path, sizeof(path), "%s", o->out);
		snprintf(dir, sizeof(dir), "%s", o->out);
		*strrchr(dir, '/') = 0;
		ret = strchr(o->out, '/') ? mkdir_p(dir) : 0;
	} else {
		snprintf(dir, sizeof(dir), "%s/%s/1", o->out, o->name);
		snprintf(path, sizeof(path), "%s/model.dpk", dir);
		ret = mkdir_p(dir);
	}
	if (ret)
		return fail("zoo", ret);
	ret = zoo_build(o->name, o->dtype, &g);
	if (ret)
		return fail(o->name, ret);
	if (o->weights)
		ret = wsrc_safetensors(o->weights, &ws);
	else if (!(ws = wsrc_random(o->seed)))
		ret = -ENOMEM;
	if (!ret)
		ret = pkg_write(path, g, wsrc_fill, ws);
	wsrc_destroy(ws);
	if (ret) {
		graph_destroy(g);
		return fail(o->name, ret);
	}
	secs = (double)(clock_ns() - t0) / 1e9;
	printf("%s: %llu parameters, %s %s, %u layers -> %s (%.2f s, %s/s)\n", o->name,
	       (unsigned long long)g->n_params, fmt_bytes(g->weights_size, b1, sizeof(b1)),
	       dtype_name((enum dtype)g->wdtype), g->n_layers, path, secs,
	       fmt_bytes((uint64_t)((double)g->weights_size / (secs > 0 ? secs : 1e-9)), b2,
			 sizeof(b2)));
	graph_destroy(g);
	return 0;
}

static int cmd_zoo(int argc, char **argv)
{
	static const struct option lo[] = {
		{"output", required_argument, 0, 'o'}, {"dtype", required_argument, 0, 'd'},
		{"seed", required_argument, 0, 's'},   {"weights", required_argument, 0, 'w'},
		{"list", no_argument, 0, 'l'},	       {"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	struct zoo_opts o = {.dtype = DT_F32, .seed = 1};
	bool list = false;
	long v;
	int c;

	while ((c = getopt_long(argc, argv, "o:hl", lo, NULL)) != -1) {
		switch (c) {
		case 'o': o.out = optarg; break;
		case 'w': o.weights = optarg; break;
		case 'l': list = true; break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'd':
			o.dtype = dtype_parse(optarg);
			if (o.dtype != DT_F32 && o.dtype != DT_F16 && o.dtype != DT_BF16) {
				usage_hint("zoo", "--dtype must be fp32, fp16 or bf16");
				return EXIT_USAGE;
			}
			break;
		case 's':
			if (parse_long(optarg, 0, 1L << 62, &v)) {
				usage_hint("zoo", "--seed takes a non-negative integer");
				return EXIT_USAGE;
			}
			o.seed = (uint64_t)v;
			break;
		default: usage_hint("zoo", "unknown option"); return EXIT_USAGE;
		}
	}
	if (list)
		return zoo_print_list();
	if (optind != argc - 1 || !o.out) {
		usage_hint("zoo", "usage: dprt zoo NAME -o DIR|FILE.dpk (or dprt zoo --list)");
		return EXIT_USAGE;
	}
	o.name = argv[optind];
	return zoo_write(&o);
}

/* ------------------------------------------------------------ info */

static void fmt_dims(char *buf, size_t len, int ndim, const int64_t *dims)
{
	size_t n = 0;
	int i;

	n += (size_t)snprintf(buf + n, len - n, "[");
	for (i = 0; i < ndim && n < len; i++) {
		const char *sep = i ? "," : "";

		if (dims[i] == DIM_BATCH)
			n += (size_t)snprintf(buf + n, len - n, "%sbatch", sep);
		else if (dims[i] == DIM_SEQ)
			n += (size_t)snprintf(buf + n, len - n, "%sseq", sep);
		else
			n += (size_t)snprintf(buf + n, len - n, "%s%lld", sep, (long long)dims[i]);
	}
	if (n < len)
		snprintf(buf + n, len - n, "]");
}

static void info_signature(const struct graph *g)
{
	char d[128];
	uint32_t i;

	printf("inputs:\n");
	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];

		fmt_dims(d, sizeof(d), io->ndim, io->dims);
		printf("  %-20s %-6s %s%s\n", io->name, dtype_name((enum dtype)io->dtype), d,
		       io->flags & IO_OPTIONAL ? "  (optional)" : "");
	}
	printf("outputs:\n");
	for (i = 0; i < g->n_outputs; i++)
		printf("  %-20s %s\n", g->outputs[i].name,
		       dtype_name((enum dtype)g->outputs[i].dtype));
	if (g->max_seq)
		printf("seq: up to %lld (paper shape %lld)\n", (long long)g->max_seq,
		       (long long)g->def_seq);
}

static void info_layers(const struct graph *g)
{
	char d[128], b[32];
	uint32_t l, t;

	printf("\n%5s  %-44s %-10s %12s %12s %11s  %s\n", "layer", "name", "op", "offset",
	       "bytes", "params", "weights");
	for (l = 0; l < g->n_layers; l++) {
		const struct layer *ly = &g->layers[l];

		printf("%5u  %-44s %-10s %12llu %12llu %11llu ", l, ly->name,
		       op_name((enum op)g->nodes[ly->node].op), (unsigned long long)ly->offset,
		       (unsigned long long)ly->nbytes, (unsigned long long)ly->params);
		for (t = 0; t < g->n_tensors; t++) {
			const struct tensor *w = &g->tensors[t];

			if (w->kind != TK_WEIGHT || w->layer != l)
				continue;
			fmt_dims(d, sizeof(d), w->ndim, w->dims);
			printf(" %s", d);
		}
		printf("\n");
	}
	printf("\ntotal: %u layers, %u nodes, %llu parameters, %s of weights (%s)\n",
	       g->n_layers, g->n_nodes, (unsigned long long)g->n_params,
	       fmt_bytes(g->weights_size, b, sizeof(b)), dtype_name((enum dtype)g->wdtype));
}

static int cmd_info(int argc, char **argv)
{
	char path[4096];
	struct pkg *p;
	const struct graph *g;
	int ret;

	if (argc != 2 || argv[1][0] == '-') {
		if (argc == 2 && !strcmp(argv[1], "--help")) {
			fputs(usage_text, stdout);
			return 0;
		}
		usage_hint("info", "usage: dprt info PATH");
		return EXIT_USAGE;
	}
	ret = cli_resolve_pkg(argv[1], path, sizeof(path));
	if (!ret)
		ret = pkg_open(path, &p);
	if (ret)
		return fail("info", ret);
	g = pkg_graph(p);
	printf("model: %s (%s), package %s\nchecksum: %016llx\n", g->name, g->arch, path,
	       (unsigned long long)pkg_checksum(p));
	info_signature(g);
	info_layers(g);
	pkg_close(p);
	return 0;
}

/* ------------------------------------------------------------- run */

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
		case DT_F32: ((float *)tv->data)[i] = rng_unit(r); break;
		case DT_F16: ((uint16_t *)tv->data)[i] = f32_to_f16(rng_unit(r)); break;
		case DT_BF16: ((uint16_t *)tv->data)[i] = f32_to_bf16(rng_unit(r)); break;
		default: ((uint8_t *)tv->data)[i] = (uint8_t)(rng_next(r) & 1); break;
		}
	}
}

static int make_random_inputs(const struct graph *g, const struct run_opts *o,
			      struct tview *in)
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
				ret = err_set(DPRT_ESHAPE, "%s: has no tensor '%s' (a required "
						"input)", file, io->name);
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
	case DT_F32: return ((const float *)t->data)[i];
	case DT_F16: return f16_to_f32(((const uint16_t *)t->data)[i]);
	case DT_BF16: return bf16_to_f32(((const uint16_t *)t->data)[i]);
	case DT_I64: return (double)((const int64_t *)t->data)[i];
	case DT_I32: return ((const int32_t *)t->data)[i];
	default: return ((const uint8_t *)t->data)[i];
	}
}

static void print_output(const char *name, const struct tview *t)
{
	int64_t n = shape_numel(&t->shape), i, nonfinite = 0;
	double mn = INFINITY, mx = -INFINITY, sum = 0, v;
	char d[128];

	fmt_dims(d, sizeof(d), t->shape.ndim, t->shape.dims);
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

#if HAVE_CUDA
static const char *device_label(const struct exec_ops *be, void *dev)
{
	UNUSED(be);
	return cuda_device_name(dev);
}

static int open_device(int gpu, const struct exec_ops **be, void **dev)
{
	*be = &cpu_backend;
	*dev = NULL;
	if (gpu < 0)
		return 0;
	*be = &cuda_backend;
	return cuda_device_open(gpu, (struct cuda_dev **)dev);
}

static void close_device(void *dev)
{
	if (dev)
		cuda_device_close(dev);
}
#else
static const char *device_label(const struct exec_ops *be, void *dev)
{
	UNUSED(dev);
	return be->name;
}

static int open_device(int gpu, const struct exec_ops **be, void **dev)
{
	*be = &cpu_backend;
	*dev = NULL;
	if (gpu >= 0)
		return err_set(DPRT_ENODEV, "this dprt was built without CUDA (see "
				"./configure's summary); use --gpus cpu");
	return 0;
}

static void close_device(void *dev)
{
	UNUSED(dev);
}
#endif

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
	       dev ? device_label(be, dev) : be->name, clock_ms_since(t0));
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

	ret = open_device(o->gpu, &be, &dev);
	if (ret)
		return fail("run", ret);
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
	close_device(dev);
	return ret ? fail("run", ret) : 0;
}

static int cmd_run(int argc, char **argv)
{
	static const struct option lo[] = {
		{"random", no_argument, 0, 'r'},       {"input", required_argument, 0, 'i'},
		{"output", required_argument, 0, 'o'}, {"batch", required_argument, 0, 'b'},
		{"seq", required_argument, 0, 's'},    {"repeat", required_argument, 0, 'n'},
		{"threads", required_argument, 0, 't'}, {"gpus", required_argument, 0, 'g'},
		{"help", no_argument, 0, 'h'},	       {0, 0, 0, 0},
	};
	struct run_opts o = {.batch = 1, .gpu = -1};
	long *num, gpu;
	int c;

	while ((c = getopt_long(argc, argv, "i:o:h", lo, NULL)) != -1) {
		num = NULL;
		switch (c) {
		case 'r': break;
		case 'i': o.input = optarg; break;
		case 'o': o.output = optarg; break;
		case 'b': num = &o.batch; break;
		case 's': num = &o.seq; break;
		case 'n': num = &o.repeat; break;
		case 't': num = &o.threads; break;
		case 'g':
			if (!strcmp(optarg, "cpu"))
				o.gpu = -1;
			else if (parse_long(optarg, 0, 1023, &gpu)) {
				usage_hint("run", "--gpus takes cpu or one GPU number (run "
						  "uses one device)");
				return EXIT_USAGE;
			} else
				o.gpu = (int)gpu;
			break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_hint("run", "unknown option"); return EXIT_USAGE;
		}
		if (num && parse_long(optarg, c == 'n' || c == 't' ? 0 : 1, 1L << 30, num)) {
			usage_hint("run", "--batch/--seq/--repeat/--threads take a number");
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage_hint("run", "usage: dprt run PATH [options]");
		return EXIT_USAGE;
	}
	o.path = argv[optind];
	if (o.threads)
		cpu_set_threads((int)o.threads);
	return run_path(&o);
}

/* ----------------------------------------------------------- serve */

/* Seconds (fractions allowed) into milliseconds, 1 ms .. 1 day. */
static int parse_secs(const char *s, uint32_t *ms)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.001 && v <= 86400))
		return -EINVAL;
	*ms = (uint32_t)(v * 1000 + 0.5);
	return 0;
}

static int serve_size(int c, const char *arg, struct serve_opts *o)
{
	uint64_t v;

	if (parse_size(arg, &v) || !v)
		return -EINVAL;
	if (c == 'G')
		o->sched.gpu_mem_limit = v;
	else if (c == 'H')
		o->sched.host_mem_limit = v;
	else
		o->net.max_body = v;
	return 0;
}

static int serve_num(int c, const char *arg, struct serve_opts *o)
{
	long v;

	if (c == 'i')
		return parse_secs(arg, &o->net.idle_timeout_ms);
	if (c == 'r')
		return parse_secs(arg, &o->net.request_timeout_ms);
	if (parse_long(arg, c == 'd' ? 0 : 1, 1L << 30, &v))
		return -EINVAL;
	if (c == 'b')
		o->sched.max_batch = (uint32_t)v;
	else if (c == 'd')
		o->sched.batch_delay_us = (uint32_t)v;
	else if (c == 'C')
		o->net.max_conns = (uint32_t)v;
	else if (c == 'S')
		o->sched.spin_us = (uint32_t)v;
	else
		o->sched.queue_depth = (uint32_t)v;
	return 0;
}

/* One serve option; 0, or EXIT_USAGE after a hint. */
static int serve_opt(int c, const char *arg, struct serve_opts *o)
{
	static const char *const what[128] = {
		['G'] = "--gpu-mem-limit takes a size like 512M or 8G",
		['H'] = "--host-mem-limit takes a size like 512M or 8G",
		['B'] = "--max-body takes a size like 64M",
		['b'] = "--max-batch takes a positive number",
		['d'] = "--batch-delay-us takes a number of microseconds",
		['C'] = "--max-conns takes a positive number",
		['Q'] = "--queue-depth takes a power of two",
		['S'] = "--spin-us takes a number of microseconds (1 or more)",
		['i'] = "--idle-timeout takes seconds (0.001 to 86400)",
		['r'] = "--request-timeout takes seconds (0.001 to 86400)",
	};
	int ret;

	switch (c) {
	case 'g': o->sched.gpus = arg; return 0;
	case 'l': o->net.listen = arg; return 0;
	case 'm': o->sched.models_dir = arg; return 0;
	case 'c': o->sched.cpus = arg; return 0;
	case 'p': o->sched.plans_dir = arg; return 0;
	case 'M':
		if (sched_cold_mode_parse(arg, &ret)) {
			usage_hint(NULL, err_msg(0));
			return EXIT_USAGE;
		}
		o->sched.cold_mode = arg;
		return 0;
	case 'v': log_set_level(LOG_DEBUG); return 0;
	case 'q': log_set_level(LOG_ERROR); return 0;
	case 'L':
		if (strcmp(arg, "all") && strcmp(arg, "explicit")) {
			usage_hint(NULL, "--load takes all or explicit");
			return EXIT_USAGE;
		}
		o->sched.explicit_load = !strcmp(arg, "explicit");
		return 0;
	case 'G': case 'H': case 'B':
		ret = serve_size(c, arg, o);
		break;
	default:
		ret = serve_num(c, arg, o);
		break;
	}
	if (!ret)
		return 0;
	usage_hint(NULL, what[c & 127]);
	return EXIT_USAGE;
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option lo[] = {
		{"gpus", required_argument, 0, 'g'},	   {"listen", required_argument, 0, 'l'},
		{"models", required_argument, 0, 'm'},	   {"cpus", required_argument, 0, 'c'},
		{"gpu-mem-limit", required_argument, 0, 'G'},
		{"host-mem-limit", required_argument, 0, 'H'},
		{"max-batch", required_argument, 0, 'b'},
		{"batch-delay-us", required_argument, 0, 'd'},
		{"max-body", required_argument, 0, 'B'},   {"max-conns", required_argument, 0, 'C'},
		{"idle-timeout", required_argument, 0, 'i'},
		{"request-timeout", required_argument, 0, 'r'},
		{"queue-depth", required_argument, 0, 'Q'}, {"load", required_argument, 0, 'L'},
		{"spin-us", required_argument, 0, 'S'},
		{"cold-mode", required_argument, 0, 'M'}, {"plans", required_argument, 0, 'p'},
		{"verbose", no_argument, 0, 'v'},	   {"quiet", no_argument, 0, 'q'},
		{"help", no_argument, 0, 'h'},		   {0, 0, 0, 0},
	};
	struct serve_opts o = {.net.version = DPRT_VERSION};
	int c, ret;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hvq", lo, NULL)) != -1) {
		if (c == 'h') {
			fputs(usage_text, stdout);
			return 0;
		}
		if (c == '?' || c == ':') {
			fprintf(stderr, "dprt: %s '%s'\n(see 'dprt --help')\n",
				c == ':' ? "missing value for option" : "unknown option",
				argv[optind - 1]);
			return EXIT_USAGE;
		}
		ret = serve_opt(c, optarg, &o);
		if (ret)
			return ret;
	}
	if (optind < argc) {
		fprintf(stderr, "dprt: unexpected argument '%s' (serve takes only options)\n"
			"(see 'dprt --help')\n", argv[optind]);
		return EXIT_USAGE;
	}
	ret = serve_main(&o);
	if (ret == DPRT_EUSAGE) {
		usage_hint(NULL, err_msg(ret));
		return EXIT_USAGE;
	}
	return ret ? fail("serve", ret) : 0;
}

/* ------------------------------------------------------------ main */

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{"zoo", cmd_zoo},
	{"info", cmd_info},
	{"run", cmd_run},
	{"plan", cmd_plan},
	{"serve", cmd_serve},
};

/* Take -v/-q given after the command too, and drop them from argv. */
static int strip_log_flags(int argc, char **argv)
{
	int i, n = 1;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
			log_set_level(LOG_DEBUG);
		else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
			log_set_level(LOG_ERROR);
		else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return n;
}

int main(int argc, char **argv)
{
	int first = 1;
	size_t k;

	for (; first < argc && argv[first][0] == '-'; first++) {
		const char *a = argv[first];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("dprt %s\n", DPRT_VERSION);
			return 0;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			log_set_level(LOG_DEBUG);
		} else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
			log_set_level(LOG_ERROR);
		} else {
			/* Options of the default command, serve (or unknown ones,
			 * which it names). */
			optind = 1;
			return cmd_serve(argc, argv);
		}
	}
	if (first >= argc) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	for (k = 0; k < ARRAY_SIZE(commands); k++) {
		if (strcmp(argv[first], commands[k].name))
			continue;
		optind = 1;
		return commands[k].fn(strip_log_flags(argc - first, argv + first),
				      argv + first);
	}
	fprintf(stderr, "dprt: unknown command '%s'\n(see 'dprt --help')\n", argv[first]);
	return EXIT_USAGE;
}
