/* SPDX-License-Identifier: MIT */
/* `dprt zoo`: build a model of the zoo into a package, or list the zoo. */
#include "cli/cli.h"
#include "model/model.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

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
	char path[4200], dir[4096], b1[32], b2[32], *slash;
	struct weight_source *ws = NULL;
	struct graph *g = NULL;
	uint64_t t0 = clock_ns();
	double secs;
	int ret;

	if (ends_with(o->out, ".dpk")) {
		snprintf(path, sizeof(path), "%s", o->out);
		snprintf(dir, sizeof(dir), "%s", o->out);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = 0;
		ret = slash && slash != dir ? mkdir_p(dir) : 0;
	} else {
		snprintf(dir, sizeof(dir), "%s/%s/1", o->out, o->name);
		snprintf(path, sizeof(path), "%s/model.dpk", dir);
		ret = mkdir_p(dir);
	}
	if (ret)
		return cli_fail("zoo", ret);
	ret = zoo_build(o->name, o->dtype, &g);
	if (ret)
		return cli_fail(o->name, ret);
	if (o->weights)
		ret = wsrc_safetensors(o->weights, &ws);
	else if (!(ws = wsrc_random(o->seed)))
		ret = -ENOMEM;
	if (!ret)
		ret = pkg_write(path, g, wsrc_fill, ws);
	wsrc_destroy(ws);
	if (ret) {
		graph_destroy(g);
		return cli_fail(o->name, ret);
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

int cmd_zoo(int argc, char **argv)
{
	static const struct option lo[] = {
		{"output", required_argument, 0, 'o'},
		{"dtype", required_argument, 0, 'd'},
		{"seed", required_argument, 0, 's'},
		{"weights", required_argument, 0, 'w'},
		{"list", no_argument, 0, 'l'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	struct zoo_opts o = {.dtype = DT_F32, .seed = 1};
	bool list = false;
	long v;
	int c;

	while ((c = getopt_long(argc, argv, "o:hl", lo, NULL)) != -1) {
		switch (c) {
		case 'o':
			o.out = optarg;
			break;
		case 'w':
			o.weights = optarg;
			break;
		case 'l':
			list = true;
			break;
		case 'h':
			fputs(cli_usage_text, stdout);
			return 0;
		case 'd':
			o.dtype = dtype_parse(optarg);
			if (o.dtype != DT_F32 && o.dtype != DT_F16 && o.dtype != DT_BF16) {
				cli_usage_hint("zoo", "--dtype must be fp32, fp16 or bf16");
				return EXIT_USAGE;
			}
			break;
		case 's':
			if (cli_parse_long(optarg, 0, 1L << 62, &v)) {
				cli_usage_hint("zoo", "--seed takes a non-negative integer");
				return EXIT_USAGE;
			}
			o.seed = (uint64_t)v;
			break;
		default:
			cli_usage_hint("zoo", "unknown option");
			return EXIT_USAGE;
		}
	}
	if (list)
		return zoo_print_list();
	if (optind != argc - 1 || !o.out) {
		cli_usage_hint("zoo", "usage: dprt zoo NAME -o DIR|FILE.dpk (or dprt zoo --list)");
		return EXIT_USAGE;
	}
	o.name = argv[optind];
	return zoo_write(&o);
}
