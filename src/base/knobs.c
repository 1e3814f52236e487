/* SPDX-License-Identifier: MIT */
/*
 * knobs: the environment variables that tune dprt, read once.
 *
 * One table names every variable, its kind, its default and its meaning;
 * knobs_parse() reads them through it, knobs_help() prints it for
 * 'dprt --help', so the two cannot drift apart. A value that does not
 * parse is reported (log warning naming the variable and the default
 * taken) and the default is used.
 */
#include "base/base.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum knob_kind {
	KNOB_ON,   /* bool, default on: "0" off, "1" on */
	KNOB_OFF,  /* bool, default off: "1" on, "0" off */
	KNOB_ATTN, /* "unfused", "1", "2", "4" */
	KNOB_MIB,  /* a decimal number of MiB, kept in bytes */
	KNOB_PATH, /* a directory */
};

struct knob {
	const char *name;
	enum knob_kind kind;
	size_t off; /* of the field in struct dprt_knobs */
	const char *dflt;
	const char *help; /* lines of at most 49 columns */
};

#define KNOB(n, k, f, d, h)                                                                        \
	{                                                                                          \
		n, k, offsetof(struct dprt_knobs, f), d, h                                         \
	}

static const struct knob knobs[] = {
	KNOB("DPRT_CUDA_GRAPHS", KNOB_ON, cuda_graphs, "1",
	     "0: GPU models run eagerly, never as captured\nCUDA graphs"),
	KNOB("DPRT_CUDA_LT", KNOB_ON, cuda_lt, "1",
	     "0: GEMMs through cuBLAS instead of cuBLASLt\n(no fused epilogues, no timed algorithms)"),
	KNOB("DPRT_CUDA_LT_GELU", KNOB_ON, cuda_lt_gelu, "1",
	     "0: no GELU fused into cuBLASLt epilogues"),
	KNOB("DPRT_CUDA_FLASH", KNOB_ON, cuda_flash, "1", "0: no fused (flash) attention kernel"),
	KNOB("DPRT_CUDA_ATTN", KNOB_ATTN, cuda_attn, "timed",
	     "force the attention path: unfused, or the fused\nkernel with 1, 2 or 4 warps per "
	     "block\n(default: the fastest, timed per shape)"),
	KNOB("DPRT_CUDNN_FIND", KNOB_OFF, cudnn_find, "0",
	     "1: choose convolution algorithms by timing\n(cudnnFind) instead of heuristics"),
	KNOB("DPRT_COLD_GRAPH", KNOB_ON, cold_graph, "1",
	     "0: cold starts run eagerly, never as one\ncaptured graph"),
	KNOB("DPRT_COLD_DEFER", KNOB_ON, cold_defer, "1",
	     "0: graphs of a model whose weights moved are\nre-recorded before its cold start runs "
	     "instead\nof running it eagerly and re-recording them\nwhile the GPU is idle"),
	KNOB("DPRT_EVICT_PLACE", KNOB_ON, evict_place, "1",
	     "0: cold starts do not evict the idle models\nholding where their weights were "
	     "last time\n(so their graphs stay right)"),
	KNOB("DPRT_COLD_PROMOTE", KNOB_OFF, cold_promote, "0",
	     "1: after a cold start, move the layers its plan\nleaves in host memory into device "
	     "memory in\nthe background"),
	KNOB("DPRT_PT_DIRECT", KNOB_OFF, pt_direct, "0",
	     "1: helper links copy their layers from host\nmemory straight into the target "
	     "GPU (when\nevery helper is peer-mapped) instead of\nstaging them in helper memory"),
	KNOB("DPRT_CPU_LINK_MBS", KNOB_MIB, cpu_link_bw, "0",
	     "MiB/s each virtual CPU device's simulated link\nmoves: a cold start's transfer holds "
	     "its link\nthat long (0: as fast as memory copies)"),
	KNOB("DPRT_CUDA_POOL_MB", KNOB_MIB, cuda_pool_bytes, "0",
	     "MiB of device memory each GPU's pool reserves\nat start (0: grow on demand)"),
	KNOB("DPRT_CUDA_ARENA_MB", KNOB_MIB, cuda_arena_bytes, "0",
	     "MiB of shared activation arena each GPU\nreserves at start and keeps (0: grow on "
	     "demand)"),
	KNOB("PLAN_REPO", KNOB_PATH, plan_repo, "unset",
	     "plan repository root: a model's plans go to\n$PLAN_REPO/<model>-<id> (default: "
	     "plans/\nbeside the package; --plans overrides both)"),
	KNOB("DPRT_CACHE", KNOB_PATH, cache, "unset",
	     "where the demo repository is built\n($DPRT_CACHE/demo; default "
	     "$XDG_CACHE_HOME/dprt\nor ~/.cache/dprt)"),
};

static void set_default(const struct knob *kb, struct dprt_knobs *k)
{
	char *f = (char *)k + kb->off;

	switch (kb->kind) {
	case KNOB_ON:
	case KNOB_OFF:
		*(bool *)f = kb->kind == KNOB_ON;
		break;
	case KNOB_ATTN:
		*(int *)f = 0;
		break;
	case KNOB_MIB:
		*(uint64_t *)f = 0;
		break;
	case KNOB_PATH:
		f[0] = '\0';
		break;
	}
}

static int parse_attn(const char *v, int *out)
{
	if (!strcmp(v, "unfused"))
		*out = -1;
	else if (!strcmp(v, "1") || !strcmp(v, "2") || !strcmp(v, "4"))
		*out = v[0] - '0';
	else
		return -EINVAL;
	return 0;
}

static int parse_mib(const char *v, uint64_t *out)
{
	unsigned long long n;
	char *end;

	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || *end || n > UINT64_MAX >> 20)
		return -EINVAL;
	*out = (uint64_t)n << 20;
	return 0;
}

/* One value v (not empty) of knob kb into k: 0 or -EINVAL. */
static int parse_one(const struct knob *kb, const char *v, struct dprt_knobs *k)
{
	char *f = (char *)k + kb->off;

	switch (kb->kind) {
	case KNOB_ON:
	case KNOB_OFF:
		if (strcmp(v, "0") && strcmp(v, "1"))
			return -EINVAL;
		*(bool *)f = v[0] == '1';
		return 0;
	case KNOB_ATTN:
		return parse_attn(v, (int *)f);
	case KNOB_MIB:
		return parse_mib(v, (uint64_t *)f);
	case KNOB_PATH:
		if (strlen(v) >= KNOBS_PATH_LEN)
			return -EINVAL;
		strcpy(f, v);
		return 0;
	}
	return -EINVAL;
}

int knobs_parse(struct dprt_knobs *k, const char *(*get)(const char *name))
{
	int bad = 0;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(knobs); i++) {
		const struct knob *kb = &knobs[i];
		const char *v = get(kb->name);

		set_default(kb, k);
		if (!v || !*v || !parse_one(kb, v, k))
			continue;
		log_warn("%s: invalid value '%.64s' ignored, using the default (%s)", kb->name, v,
			 kb->dflt);
		set_default(kb, k);
		bad++;
	}
	return bad;
}

static struct dprt_knobs the_knobs;
static pthread_once_t knobs_once = PTHREAD_ONCE_INIT;

static const char *env_get(const char *name)
{
	return getenv(name);
}

static void knobs_init(void)
{
	knobs_parse(&the_knobs, env_get);
}

const struct dprt_knobs *knobs_get(void)
{
	pthread_once(&knobs_once, knobs_init);
	return &the_knobs;
}

void knobs_reload(void)
{
	pthread_once(&knobs_once, knobs_init);
	knobs_parse(&the_knobs, env_get);
}

void knobs_help(FILE *f)
{
	size_t i;

	fputs("Environment:\n", f);
	for (i = 0; i < ARRAY_SIZE(knobs); i++) {
		const char *h = knobs[i].help, *nl;

		fprintf(f, "  %-26s (default %s)\n", knobs[i].name, knobs[i].dflt);
		for (; *h; h = *nl ? nl + 1 : nl) {
			nl = strchr(h, '\n');
			if (!nl)
				nl = h + strlen(h);
			fprintf(f, "%29s%.*s\n", "", (int)(nl - h), h);
		}
	}
}
