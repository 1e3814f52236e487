/* SPDX-License-Identifier: MIT */
/*
 * `dprt plan`: make cold-start plans for a package and store them in its
 * plan repository; --show prints one as a table (like the paper's Table 3)
 * with the predicted totals of the other modes beside it.
 *
 * Profiles come from the GPU profiler: run here on the GPUs of --gpus when
 * the CUDA backend is built in and a GPU is there, or earlier (--profile
 * FILE, written with --save-profile on the GPU machine); for
 * demonstrations on a machine without a GPU, --synthetic-profile, which
 * every output labels as an estimate.
 */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODE_ALL (-2)
#define SYNTHETIC_NOTE "synthetic profile: an estimate from PAPER.md's figures, not a measurement"

static const char plan_usage[] =
	"usage: dprt plan MODEL [options]\n"
	"\n"
	"Plan cold starts of MODEL (a model.dpk, a directory holding one, or a\n"
	"repository entry DIR/NAME) and store the plans in its plan repository,\n"
	"with the measured profile (from which `dprt serve` makes other plans).\n"
	"\n"
	"  --gpus LIST           GPUs to plan for, e.g. 0 or 0,1,2,3 or 0-3 (only\n"
	"                        their number matters; default: the profile's)\n"
	"  --mode MODE           dprt (default), deepplan-v1, pipeline, pt, pt+dha,\n"
	"                        demand, deepplan, or all\n"
	"  --plans DIR           plan repository (default: $PLAN_REPO/<model>-<id>,\n"
	"                        else <package dir>/plans)\n"
	"  --profile FILE        plan from a profile made by the GPU profiler\n"
	"  --synthetic-profile   derive a profile from the package and PAPER.md's\n"
	"                        H100 figures (an estimate, for machines without GPU)\n"
	"  --save-profile FILE   also write the profile used to FILE\n"
	"  --show                print the plan and the other modes' predictions\n";

static void usage_hint(const char *msg)
{
	fprintf(stderr, "dprt plan: %s\n(see 'dprt plan --help')\n", msg);
}

/* Every message names the file or the option it is about. */
static int fail(int code)
{
	fprintf(stderr, "dprt plan: %s\n", err_msg(code));
	return 1;
}

/* ------------------------------------------------------------ paths */

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int parse_ulong(const char *s, unsigned long hi, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Highest numeric version subdirectory of dir holding a model.dpk, or -1. */
static long highest_version(const char *dir)
{
	char p[4200];
	struct dirent *de;
	unsigned long v;
	long best = -1;
	DIR *d = opendir(dir);

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		if (parse_ulong(de->d_name, 1ul << 40, &v) || (long)v <= best)
			continue;
		snprintf(p, sizeof(p), "%s/%s/model.dpk", dir, de->d_name);
		if (is_file(p))
			best = (long)v;
	}
	closedir(d);
	return best;
}

/* Resolve a model argument like `dprt run`; see cli.h. */
int cli_resolve_pkg(const char *path, char *out, size_t len)
{
	long v;

	if (is_file(path)) {
		snprintf(out, len, "%s", path);
		return 0;
	}
	if (!is_dir(path))
		return err_set(-ENOENT, "%s: no such package or directory", path);
	snprintf(out, len, "%s/model.dpk", path);
	if (is_file(out))
		return 0;
	v = highest_version(path);
	if (v < 0)
		return err_set(-ENOENT,
			       "%s: no model.dpk in it nor in a version directory "
			       "(expected %s/1/model.dpk)",
			       path, path);
	snprintf(out, len, "%s/%ld/model.dpk", path, v);
	return 0;
}

/* ---------------------------------------------------------- options */

/* "0", "0,1,2,3", "0-3", "1,3-4": the number of distinct GPUs (ids[]
 * gets them in ascending order), or 0. */
static uint32_t parse_gpus(const char *s, int *ids)
{
	bool seen[PLAN_MAX_GPUS] = {0};
	unsigned long a, b, i;
	uint32_t n = 0;
	char buf[256], *tok, *save = NULL, *dash;

	if (strlen(s) >= sizeof(buf))
		return 0;
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		dash = strchr(tok, '-');
		if (dash)
			*dash = 0;
		if (parse_ulong(tok, PLAN_MAX_GPUS - 1, &a) ||
		    parse_ulong(dash ? dash + 1 : tok, PLAN_MAX_GPUS - 1, &b) || b < a)
			return 0;
		for (i = a; i <= b; i++) {
			n += !seen[i];
			seen[i] = true;
		}
	}
	for (i = 0, a = 0; i < PLAN_MAX_GPUS; i++)
		if (seen[i])
			ids[a++] = (int)i;
	return n;
}

static int parse_mode(const char *s, int *mode)
{
	if (!strcmp(s, "all")) {
		*mode = MODE_ALL;
		return 0;
	}
	*mode = plan_mode_parse(s);
	return *mode < 0 ? -EINVAL : 0;
}

static int parse_opt(struct plan_opts *o, int c)
{
	switch (c) {
	case 'g':
		o->n_gpus = parse_gpus(optarg, o->gpu_ids);
		if (!o->n_gpus) {
			usage_hint("--gpus takes GPU numbers 0..15: 0,1,2,3 or 0-3");
			return EXIT_USAGE;
		}
		return 0;
	case 'm':
		if (!parse_mode(optarg, &o->mode))
			return 0;
		usage_hint("--mode must be dprt, deepplan-v1, pipeline, pt, pt+dha, demand, "
			   "deepplan or all");
		return EXIT_USAGE;
	case 'p':
		o->plans = optarg;
		return 0;
	case 'f':
		o->profile = optarg;
		return 0;
	case 'y':
		o->synthetic = true;
		return 0;
	case 'w':
		o->save_profile = optarg;
		return 0;
	case 's':
		o->show = true;
		return 0;
	default:
		usage_hint("unknown option");
		return EXIT_USAGE;
	}
}

static int parse_args(int argc, char **argv, struct plan_opts *o)
{
	static const struct option lo[] = {
		{"gpus", required_argument, 0, 'g'},
		{"mode", required_argument, 0, 'm'},
		{"plans", required_argument, 0, 'p'},
		{"profile", required_argument, 0, 'f'},
		{"synthetic-profile", no_argument, 0, 'y'},
		{"save-profile", required_argument, 0, 'w'},
		{"show", no_argument, 0, 's'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	int c, ret;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			fputs(plan_usage, stdout);
			return -1;
		}
		ret = parse_opt(o, c);
		if (ret)
			return ret;
	}
	if (optind != argc - 1) {
		usage_hint("usage: dprt plan MODEL [options]");
		return EXIT_USAGE;
	}
	if (o->profile && o->synthetic) {
		usage_hint("--profile and --synthetic-profile exclude each other");
		return EXIT_USAGE;
	}
	o->model = argv[optind];
	return 0;
}

/* ---------------------------------------- profile (got in device.c) */

static bool synthetic(const struct plan_profile *pf)
{
	return pf->flags & PLAN_F_SYNTHETIC;
}

/* ---------------------------------------------------------- output */

static void progress(const struct plan_job *j, const char *mode)
{
	if (!j->tty)
		return;
	if (mode)
		fprintf(stderr, "\rplanning %s ... ", mode);
	else
		fprintf(stderr, "\r%40s\r", "");
}

static void print_summary(const struct plan_job *j, const struct plan *p, const char *path,
			  double pipeline_ns)
{
	struct plan_stats st;
	char b[32];

	plan_get_stats(p, &st);
	printf("%s: %s plan for %u x %s: %u link%s, DHA %s (%.1f%% of bytes, %u layers), "
	       "predicted %.3f ms (pipeline %.3f ms)\n  -> %s\n",
	       j->g->name, plan_mode_name((enum plan_mode)p->mode), p->prof.link.n_gpus,
	       p->prof.gpu, p->width, p->width == 1 ? "" : "s",
	       fmt_bytes(st.dha_bytes, b, sizeof(b)),
	       st.total_bytes ? 100.0 * (double)st.dha_bytes / (double)st.total_bytes : 0.0,
	       st.dha_layers, p->total_ns / 1e6, pipeline_ns / 1e6, path);
	if (synthetic(&p->prof))
		printf("  (%s)\n", SYNTHETIC_NOTE);
}

static void print_row(const struct plan *p, uint32_t i)
{
	const struct plan_layer_prof *lp = &p->prof.layers[i];
	const struct plan_row *r = &p->rows[i];
	bool dha = r->place == PLAN_DHA;
	char link[16] = "-", order[16] = "-";

	if (!dha) {
		snprintf(link, sizeof(link), "%u", r->link);
		snprintf(order, sizeof(order), "%u", r->order);
	}
	printf("%5u  %-44.44s %-10s %11llu  %-4s %4s %5s %9.1f %9.1f %9.1f %10.1f %10.1f "
	       "%10.1f\n",
	       i, lp->name, op_name((enum op)lp->op), (unsigned long long)lp->bytes,
	       dha ? "DHA" : "LOAD", link, order, (double)lp->load_ns / 1e3,
	       (double)lp->exec_ns / 1e3, (double)lp->dha_ns / 1e3, r->arrival_ns / 1e3,
	       r->start_ns / 1e3, r->end_ns / 1e3);
}

static void print_totals(const struct plan *p)
{
	struct plan_stats st;
	char b[32];
	uint32_t l;

	plan_get_stats(p, &st);
	printf("\n");
	for (l = 0; l < p->width; l++)
		printf("link %u (%s): %u layers, %s\n", l, l ? "helper" : "target",
		       st.link_layers[l], fmt_bytes(st.link_bytes[l], b, sizeof(b)));
	printf("DHA: %u layers, %s (%.1f%% of bytes)\n", st.dha_layers,
	       fmt_bytes(st.dha_bytes, b, sizeof(b)),
	       st.total_bytes ? 100.0 * (double)st.dha_bytes / (double)st.total_bytes : 0.0);
	printf("predicted: total %.3f ms, stalls %.3f ms, %s mode, %u of %u links\n",
	       p->total_ns / 1e6, p->stall_ns / 1e6, plan_mode_name((enum plan_mode)p->mode),
	       p->width, p->prof.link.n_gpus);
}

static void print_plan(const struct plan *p)
{
	uint32_t i;

	printf("\n%s on %u x %s, %s mode%s\n", p->prof.model, p->prof.link.n_gpus, p->prof.gpu,
	       plan_mode_name((enum plan_mode)p->mode),
	       synthetic(&p->prof) ? " (" SYNTHETIC_NOTE ")" : "");
	printf("%5s  %-44s %-10s %11s  %-4s %4s %5s %9s %9s %9s %10s %10s %10s\n", "layer", "name",
	       "op", "bytes", "plc", "link", "order", "load_us", "exec_us", "dha_us", "arrive_us",
	       "start_us", "end_us");
	for (i = 0; i < p->prof.n_layers; i++)
		print_row(p, i);
	print_totals(p);
}

/* ---------------------------------------------------------- planning */

static int build(struct plan_job *j, enum plan_mode m, struct plan **out)
{
	int ret;

	progress(j, plan_mode_name(m));
	ret = plan_build(j->pf, m, j->n_gpus, out);
	progress(j, NULL);
	return ret;
}

static int store(struct plan_job *j, const struct plan *p, double pipeline_ns)
{
	char path[4400];
	int ret;

	ret = plan_store(j->dir, p, path, sizeof(path));
	if (!ret)
		print_summary(j, p, path, pipeline_ns);
	return ret;
}

/* Predicted totals of every mode for --show, else of pipeline only (the
 * summary's reference). */
static int compare(struct plan_job *j, double *totals)
{
	struct plan *p;
	int m, ret;

	for (m = 0; m < PLAN_MODE_COUNT; m++) {
		if (!j->o->show && m != PLAN_PIPELINE)
			continue;
		ret = build(j, (enum plan_mode)m, &p);
		if (ret)
			return ret;
		totals[m] = p->total_ns;
		plan_destroy(p);
	}
	return 0;
}

static void print_compare(const struct plan_job *j, const double *totals)
{
	static const enum plan_mode order[] = {PLAN_DEMAND,	 PLAN_PIPELINE, PLAN_DEEPPLAN,
					       PLAN_DEEPPLAN_V1, PLAN_PT,	PLAN_PT_DHA,
					       PLAN_DPRT};
	size_t k;

	printf("predicted totals on %u x %s:", j->n_gpus, j->pf->gpu);
	for (k = 0; k < ARRAY_SIZE(order); k++)
		printf("%s %s %.3f ms", k ? "," : "", plan_mode_name(order[k]),
		       totals[order[k]] / 1e6);
	printf("\n");
	if (synthetic(j->pf))
		printf("(%s)\n", SYNTHETIC_NOTE);
}

static int plan_modes(struct plan_job *j)
{
	double totals[PLAN_MODE_COUNT];
	struct plan *p = NULL;
	int m, first = j->o->mode == MODE_ALL ? 0 : j->o->mode;
	int last = j->o->mode == MODE_ALL ? PLAN_MODE_COUNT - 1 : first;
	int ret = compare(j, totals);

	for (m = first; m <= last && !ret; m++) {
		ret = build(j, (enum plan_mode)m, &p);
		if (!ret)
			ret = store(j, p, totals[PLAN_PIPELINE]);
		if (!ret && j->o->show && m == first)
			print_plan(p);
		plan_destroy(p);
		p = NULL;
	}
	if (!ret && j->o->show)
		print_compare(j, totals);
	return ret;
}

/* A measured profile goes into the plan repository too, where the server
 * makes any other plan from it (plan_get); an estimate does not. */
static int store_profile(struct plan_job *j)
{
	char path[4400];

	return synthetic(j->pf) ? 0 : plan_profile_store(j->dir, j->pf, path, sizeof(path));
}

static int run_job(struct plan_job *j)
{
	const struct plan_opts *o = j->o;
	int ret;

	ret = cli_resolve_pkg(o->model, j->pkg_path, sizeof(j->pkg_path));
	if (!ret)
		ret = pkg_open(j->pkg_path, &j->pkg);
	if (ret)
		return ret;
	j->g = pkg_graph(j->pkg);
	ret = cli_get_profile(j);
	if (ret)
		return ret;
	j->n_gpus = o->n_gpus ? o->n_gpus : j->pf->link.n_gpus;
	if (j->n_gpus > j->pf->link.n_gpus)
		return err_set(DPRT_EUSAGE, "%u GPUs asked for, but profile %s has the links of %u",
			       j->n_gpus, o->profile ? o->profile : "(synthetic)",
			       j->pf->link.n_gpus);
	if (o->save_profile) {
		ret = plan_profile_write(o->save_profile, j->pf);
		if (ret)
			return ret;
		printf("profile of %s -> %s%s\n", j->g->name, o->save_profile,
		       synthetic(j->pf) ? " (" SYNTHETIC_NOTE ")" : "");
	}
	ret = plan_repo_dir(o->plans, j->pkg_path, j->g->name, pkg_checksum(j->pkg), j->dir,
			    sizeof(j->dir));
	return ret ?: store_profile(j) ?: plan_modes(j);
}

/* `dprt plan`; see cli.h. Main thread. */
int cmd_plan(int argc, char **argv)
{
	struct plan_opts o = {.mode = PLAN_DPRT};
	struct plan_job j = {.o = &o, .tty = isatty(STDERR_FILENO)};
	int ret;

	ret = parse_args(argc, argv, &o);
	if (ret)
		return ret < 0 ? 0 : ret;
	ret = run_job(&j);
	plan_profile_destroy(j.pf);
	if (j.pkg)
		pkg_close(j.pkg);
	return ret ? fail(ret) : 0;
}
