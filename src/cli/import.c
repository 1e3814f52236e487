/* SPDX-License-Identifier: MIT */
/*
 * `dprt import`: a Hugging Face checkpoint directory (or, where the build
 * has a reader, an ONNX file) into the next version of a repository entry,
 * REPO/NAME/<v>/model.dpk. The version directory appears whole (written
 * under a hidden name, then renamed) or not at all.
 */
#include "cli/cli.h"
#include "model/model.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct import_opts {
	const char *src, *out, *name;
	enum dtype dtype;
	long seq; /* --seq: the reference sequence length, 0: the default */
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/* 1 + the highest all-digit entry of dir (1 if none). */
static long next_version(const char *dir)
{
	struct dirent *e;
	long best = 0, v;
	char *end;
	DIR *d = opendir(dir);

	if (!d)
		return 1;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		v = strtol(e->d_name, &end, 10);
		if (!*end && v > best)
			best = v;
	}
	closedir(d);
	return best + 1;
}

/* The entry's name: --name, else the last component of -o. */
static const char *entry_name(const struct import_opts *o)
{
	const char *s = strrchr(o->out, '/');

	if (o->name)
		return o->name;
	return s && s[1] ? s + 1 : o->out;
}

/* --seq: g's reference shape (graph_default_seq), which profiles,
 * warm-ups and benchmarks use, for a model with a sequence axis. */
static int set_seq(struct graph *g, long seq)
{
	bool has_seq = false;
	uint32_t i;
	int d;

	for (i = 0; i < g->n_inputs; i++)
		for (d = 0; d < g->inputs[i].ndim; d++)
			has_seq |= g->inputs[i].dims[d] == DIM_SEQ;
	if (!has_seq)
		return err_set(-EINVAL, "--seq %ld: %s has no sequence axis", seq, g->name);
	if (g->max_seq && seq > g->max_seq)
		return err_set(-EINVAL, "--seq %ld: %s takes sequences up to %lld", seq, g->name,
			       (long long)g->max_seq);
	g->def_seq = seq;
	return 0;
}

/* Write g to tmp/model.dpk, then rename tmp to dst. */
static int write_version(struct graph *g, struct weight_source *ws, const char *tmp,
			 const char *dst)
{
	char path[4300];
	int ret;

	if (mkdir(tmp, 0755))
		return err_set(-errno, "%s: %s", tmp, strerror(errno));
	snprintf(path, sizeof(path), "%s/model.dpk", tmp);
	ret = pkg_write(path, g, wsrc_fill, ws);
	if (!ret && rename(tmp, dst))
		ret = err_set(-errno, "%s: rename: %s", dst, strerror(errno));
	if (ret) {
		unlink(path);
		rmdir(tmp);
	}
	return ret;
}

static int import_read(const struct import_opts *o, struct graph **g, struct weight_source **ws)
{
	struct stat st;

	if (ends_with(o->src, ".onnx"))
		return import_onnx(o->src, o->dtype, g, ws);
	if (stat(o->src, &st) || !S_ISDIR(st.st_mode))
		return err_set(-ENOENT,
			       "%s: not a checkpoint directory (config.json and "
			       "model.safetensors) nor an .onnx file",
			       o->src);
	return import_hf(o->src, entry_name(o), o->dtype, g, ws);
}

static int import_run(const struct import_opts *o)
{
	char tmp[4200], dst[4200], b1[32];
	struct weight_source *ws = NULL;
	struct graph *g = NULL;
	struct stat st;
	bool made;
	long v;
	int ret;

	ret = import_read(o, &g, &ws);
	if (ret)
		return cli_fail("import", ret);
	snprintf(g->name, sizeof(g->name), "%s", entry_name(o));
	if (o->seq) {
		ret = set_seq(g, o->seq);
		if (ret)
			goto out_free;
	}
	made = stat(o->out, &st) != 0;
	ret = mkdir_p(o->out);
	if (ret)
		goto out_free;
	v = next_version(o->out);
	snprintf(tmp, sizeof(tmp), "%s/.import.%ld", o->out, (long)getpid());
	snprintf(dst, sizeof(dst), "%s/%ld", o->out, v);
	ret = write_version(g, ws, tmp, dst);
	if (ret && made)
		rmdir(o->out);
	if (ret)
		goto out_free;
	printf("%s: %s, %llu parameters, %s %s, %u layers -> %s/model.dpk\n", g->name, g->arch,
	       (unsigned long long)g->n_params, fmt_bytes(g->weights_size, b1, sizeof(b1)),
	       dtype_name((enum dtype)g->wdtype), g->n_layers, dst);
out_free:
	wsrc_destroy(ws);
	graph_destroy(g);
	return ret ? cli_fail("import", ret) : 0;
}

int cmd_import(int argc, char **argv)
{
	static const struct option lo[] = {
		{"output", required_argument, 0, 'o'}, {"dtype", required_argument, 0, 'd'},
		{"name", required_argument, 0, 'n'},   {"seq", required_argument, 0, 's'},
		{"help", no_argument, 0, 'h'},	       {0, 0, 0, 0},
	};
	struct import_opts o = {.dtype = DT_F32};
	int c;

	while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
		switch (c) {
		case 'o':
			o.out = optarg;
			break;
		case 'n':
			o.name = optarg;
			break;
		case 's': {
			char *end;

			o.seq = strtol(optarg, &end, 10);
			if (*end || o.seq < 1 || o.seq > 1000000) {
				cli_usage_hint("import", "--seq must be a positive length");
				return EXIT_USAGE;
			}
			break;
		}
		case 'h':
			fputs(cli_usage_text, stdout);
			return 0;
		case 'd':
			o.dtype = dtype_parse(optarg);
			if (o.dtype != DT_F32 && o.dtype != DT_F16 && o.dtype != DT_BF16) {
				cli_usage_hint("import", "--dtype must be fp32, fp16 or bf16");
				return EXIT_USAGE;
			}
			break;
		default:
			cli_usage_hint("import", "unknown option");
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || !o.out || !*o.out || (o.name && !*o.name)) {
		cli_usage_hint("import", "usage: dprt import PATH -o REPO/NAME [--dtype "
					 "fp32|fp16|bf16] [--name NAME] [--seq N]");
		return EXIT_USAGE;
	}
	o.src = argv[optind];
	return import_run(&o);
}
