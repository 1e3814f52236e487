/* SPDX-License-Identifier: MIT */
/*
 * Profiles: making, checking and matching them, and the synthetic profile.
 *
 * The synthetic profile stands in for a GPU measurement on machines without
 * a GPU. Its figures are those of PAPER.md's machine table (H100 80GB and
 * H200 hosts, measured 2026-11-26); its exec times come from FLOP and byte
 * counts of every node at the model's paper shape (batch 1, def_seq), as
 *     exec = LAUNCH_NS + max(flops / gemm_rate, bytes / HBM_BW)
 * and a layer's DHA time adds the bytes its node reads from host memory at
 * DHA_BW (see dha_bytes). DHA reads and copies on the target's link split
 * it evenly. It is an estimate and is labelled so wherever it goes.
 */
#include "plan.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYN_GPU "synthetic H100 (PAPER.md figures)"
#define SYN_MAX_GPUS 8
#define H2D_BW 54.7e9	  /* H100 x1, pinned, 1 GiB */
#define XFER_OVH_NS 5000u /* fit of 64 KiB / 1 MiB / 4 MiB copies: 6, 24, 81 us */
#define PEER_BW 396e9	  /* NVLink peer copy, H200 x4 */
#define PEER_LAT_NS 5000u /* not measured: taken equal to an H2D's */
#define DHA_BW 51.0e9	  /* kernel reading pinned host memory */
#define DHA_SHARE 0.5	  /* DHA reads and a copy split the target's link */
#define GEMM_TILE 128	  /* a DHA GEMM reads its weights once per 128 rows */
#define HBM_BW 2.0e12	  /* effective device memory bandwidth */
#define GEMM_FP32 19e12	  /* PyTorch fp32 GEMMs on the H100 (no TF32) */
#define GEMM_HALF 60e12	  /* fp16/bf16: bert-large 232 GFLOP in 3.70 ms */
#define LAUNCH_NS 2000.0  /* each kernel costs at least this */
#define MAX_TIME_NS 1e15  /* larger times are garbage (11 days) */

/* Aggregate H2D with k = 1..4 links busy (H200 x4 host); more links add
 * nothing (the host is the limit). */
static const double agg_gbs[4] = {54.7, 110.0, 157.0, 185.0};

/* Make a zeroed profile of n layers. Any thread. */
int plan_profile_create(uint32_t n_layers, struct plan_profile **out)
{
	struct plan_profile *pf;

	*out = NULL;
	if (!n_layers || n_layers > PLAN_MAX_LAYERS)
		return err_set(-EINVAL, "profile: %u layers (1..%u allowed)", n_layers,
			       PLAN_MAX_LAYERS);
	pf = calloc(1, sizeof(*pf));
	if (!pf)
		return err_set(-ENOMEM, "profile: out of memory");
	pf->layers = calloc(n_layers, sizeof(*pf->layers));
	if (!pf->layers) {
		free(pf);
		return err_set(-ENOMEM, "profile: out of memory for %u layers", n_layers);
	}
	pf->n_layers = n_layers;
	*out = pf;
	return 0;
}

/* Free a profile (NULL is ignored). */
void plan_profile_destroy(struct plan_profile *pf)
{
	if (!pf)
		return;
	free(pf->layers);
	free(pf);
}

/* Names, ops and bytes of g's layers; times and links zero. Any thread. */
int plan_profile_from_graph(const struct graph *g, uint64_t pkg_checksum, struct plan_profile **out)
{
	struct plan_profile *pf;
	uint32_t l;
	int ret;

	ret = plan_profile_create(g->n_layers, &pf);
	if (ret)
		return ret;
	pf->pkg_checksum = pkg_checksum;
	snprintf(pf->model, sizeof(pf->model), "%s", g->name);
	for (l = 0; l < g->n_layers; l++) {
		struct plan_layer_prof *lp = &pf->layers[l];

		snprintf(lp->name, sizeof(lp->name), "%s", g->layers[l].name);
		lp->op = g->nodes[g->layers[l].node].op;
		lp->bytes = g->layers[l].nbytes;
	}
	*out = pf;
	return 0;
}

/* ------------------------------------------------------------ synthetic */

/* Per node: FLOPs and device-memory bytes moved at the inferred shapes. */
struct node_cost {
	double flops, bytes;
};

static double numel_bytes(const struct shape *s)
{
	return (double)shape_numel(s) * (double)dtype_size((enum dtype)s->dtype);
}

static struct node_cost cost_of(const struct graph *g, const struct node *nd,
				const struct shape *sh)
{
	const struct shape *out = &sh[nd->out], *x = &sh[nd->in[0]];
	struct node_cost c = {0, numel_bytes(out)};
	const struct tensor *w = nd->n_in > 1 && nd->in[1] != NO_TENSOR ? &g->tensors[nd->in[1]] :
									  NULL;
	int k;

	for (k = 0; k < nd->n_in; k++)
		if (nd->in[k] != NO_TENSOR && (nd->op != OP_EMBEDDING || k == 0))
			c.bytes += numel_bytes(&sh[nd->in[k]]);
	switch (nd->op) {
	case OP_CONV2D: /* 2 * out * (C/groups * kh * kw) */
		c.flops = 2.0 * (double)shape_numel(out) *
			  (double)(w->dims[1] * w->dims[2] * w->dims[3]);
		break;
	case OP_LINEAR:
		c.flops = 2.0 * (double)shape_numel(out) * (double)w->dims[1];
		break;
	case OP_ATTENTION: /* q.k and p.v: 2 * 2 * N * S * S * H */
		c.flops = 4.0 * (double)x->dims[0] * (double)x->dims[1] * (double)x->dims[1] *
			  (double)(x->dims[2] / 3);
		break;
	case OP_EMBEDDING:
		c.bytes += numel_bytes(out);
		break; /* the rows read */
	default:
		break;
	}
	return c;
}

static double exec_of(struct node_cost c, enum dtype wdt)
{
	double rate = wdt == DT_F32 ? GEMM_FP32 : GEMM_HALF;

	return LAUNCH_NS + fmax(c.flops / rate, c.bytes / HBM_BW) * 1e9;
}

/* Bytes a layer's node reads from host memory when it runs by DHA: an
 * embedding the rows of its tokens; a GEMM (linear, convolution) its
 * weights once per GEMM_TILE rows of output; others their weights once. */
static double dha_bytes(const struct node *nd, const struct shape *sh, uint64_t layer_bytes)
{
	const struct shape *out = &sh[nd->out];
	double rows = 1;

	switch (nd->op) {
	case OP_EMBEDDING:
		return fmin((double)layer_bytes, numel_bytes(out));
	case OP_LINEAR:
		rows = (double)(shape_numel(out) / out->dims[out->ndim - 1]);
		break;
	case OP_CONV2D:
		rows = (double)(out->dims[0] * out->dims[2] * out->dims[3]);
		break;
	default:
		break;
	}
	return (double)layer_bytes * ceil(rows / GEMM_TILE);
}

/* The paper shape: batch 1, the model's default sequence length. */
static int paper_shapes(const struct graph *g, struct shape *shapes)
{
	int64_t seq = g->def_seq ? g->def_seq : g->max_seq ? MIN(g->max_seq, 128) : 1;
	struct shape *in = calloc(g->n_inputs + 1u, sizeof(*in));
	uint32_t i;
	int d, ret;

	if (!in)
		return err_set(-ENOMEM, "profile: out of memory");
	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];

		if (io->flags & IO_OPTIONAL)
			continue;
		in[i].dtype = io->dtype;
		in[i].ndim = io->ndim;
		for (d = 0; d < io->ndim; d++)
			in[i].dims[d] = io->dims[d] == DIM_BATCH ? 1 :
					io->dims[d] == DIM_SEQ	 ? seq :
								   io->dims[d];
	}
	ret = graph_infer_shapes(g, in, shapes);
	free(in);
	return ret;
}

static void synthetic_links(struct plan_links *lk, uint32_t n_gpus)
{
	uint32_t k;

	lk->n_gpus = n_gpus;
	lk->h2d_bw = H2D_BW;
	for (k = 0; k < n_gpus; k++)
		lk->agg_bw[k] = agg_gbs[MIN(k, ARRAY_SIZE(agg_gbs) - 1)] * 1e9;
	lk->peer_bw = PEER_BW;
	lk->peer_lat_ns = PEER_LAT_NS;
	lk->xfer_ovh_ns = XFER_OVH_NS;
	lk->dha_copy_share = DHA_SHARE;
	lk->dha_read_share = DHA_SHARE;
}

/* Fill the times of pf's layers from the node costs at shapes sh. */
static int synthetic_times(struct plan_profile *pf, const struct graph *g, const struct shape *sh)
{
	enum dtype wdt = (enum dtype)g->wdtype;
	uint32_t i, cur = 0;
	double *exec = calloc(g->n_layers, sizeof(*exec));

	if (!exec)
		return err_set(-ENOMEM, "synthetic profile: out of memory");
	for (i = 0; i < g->n_nodes; i++) {
		const struct node *nd = &g->nodes[i];

		if (nd->layer != NO_TENSOR)
			cur = nd->layer;
		exec[cur] += exec_of(cost_of(g, nd, sh), wdt);
	}
	for (i = 0; i < g->n_layers; i++) {
		struct plan_layer_prof *lp = &pf->layers[i];
		const struct node *nd = &g->nodes[g->layers[i].node];
		double load = (double)XFER_OVH_NS + (double)lp->bytes / H2D_BW * 1e9;
		double extra = dha_bytes(nd, sh, lp->bytes) / DHA_BW * 1e9;

		lp->load_ns = (uint64_t)llround(load);
		lp->exec_ns = (uint64_t)llround(exec[i]);
		lp->dha_ns = (uint64_t)llround(exec[i] + extra);
	}
	free(exec);
	return 0;
}

/* A profile derived from g and PAPER.md's figures; see plan.h. Any thread. */
int plan_profile_synthetic(const struct graph *g, uint64_t pkg_checksum, uint32_t n_gpus,
			   struct plan_profile **out)
{
	struct plan_profile *pf = NULL;
	struct shape *sh;
	int ret;

	*out = NULL;
	if (!n_gpus || n_gpus > SYN_MAX_GPUS)
		return err_set(-EINVAL, "synthetic profile: %u GPUs (1..%u allowed)", n_gpus,
			       SYN_MAX_GPUS);
	sh = calloc(g->n_tensors + 1u, sizeof(*sh));
	if (!sh)
		return err_set(-ENOMEM, "synthetic profile: out of memory");
	ret = paper_shapes(g, sh);
	if (!ret)
		ret = plan_profile_from_graph(g, pkg_checksum, &pf);
	if (ret)
		goto out_free;
	pf->flags = PLAN_F_SYNTHETIC;
	snprintf(pf->gpu, sizeof(pf->gpu), "%s", SYN_GPU);
	synthetic_links(&pf->link, n_gpus);
	ret = synthetic_times(pf, g, sh);
	if (ret) {
		plan_profile_destroy(pf);
		goto out_free;
	}
	*out = pf;
out_free:
	free(sh);
	return ret;
}

/* ------------------------------------------------------------ checks */

static bool has_nul(const char *s, size_t len)
{
	return strnlen(s, len) < len;
}

static bool rate_ok(double v)
{
	return isfinite(v) && v > 0 && v < 1e15;
}

static int bad(const char *what, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* DPRT_EBADPLAN with "<what>: <message>". */
static int bad(const char *what, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(DPRT_EBADPLAN, "%s: %s", what, msg);
}

/* Link facts: counts, rates finite and positive, unused slots zero. */
static int check_links(const struct plan_links *lk, const char *what)
{
	uint32_t k;

	if (!lk->n_gpus || lk->n_gpus > PLAN_MAX_GPUS)
		return bad(what, "link facts for %u GPUs (1..%u allowed)", lk->n_gpus,
			   PLAN_MAX_GPUS);
	if (!rate_ok(lk->h2d_bw) || !rate_ok(lk->peer_bw))
		return bad(what, "H2D or peer bandwidth is not a positive number");
	for (k = 0; k < PLAN_MAX_GPUS; k++) {
		if (k < lk->n_gpus && !rate_ok(lk->agg_bw[k]))
			return bad(what, "aggregate bandwidth with %u of %u links is not positive",
				   k + 1, lk->n_gpus);
		if (k >= lk->n_gpus && lk->agg_bw[k] != 0)
			return bad(what, "aggregate bandwidth for %u links, past the %u GPUs",
				   k + 1, lk->n_gpus);
	}
	if (!(lk->dha_copy_share > 0 && lk->dha_copy_share <= 1) ||
	    !(lk->dha_read_share > 0 && lk->dha_read_share <= 1))
		return bad(what, "DHA shares of the target's link are not in (0, 1]");
	if ((double)lk->peer_lat_ns >= MAX_TIME_NS || (double)lk->xfer_ovh_ns >= MAX_TIME_NS)
		return bad(what, "peer latency or transfer overhead out of range");
	return 0;
}

static int check_layer(const struct plan_layer_prof *lp, uint32_t i, const char *what)
{
	if (!has_nul(lp->name, sizeof(lp->name)))
		return bad(what, "layer %u has no valid name", i);
	if (lp->op == OP_NONE || lp->op >= OP_COUNT)
		return bad(what, "layer %u has an unknown op %u", i, lp->op);
	if ((double)lp->load_ns >= MAX_TIME_NS || (double)lp->exec_ns >= MAX_TIME_NS ||
	    (double)lp->dha_ns >= MAX_TIME_NS || lp->bytes > (1ull << 50))
		return bad(what, "layer %u has a time or size out of range", i);
	return 0;
}

/* Every rule the profile and plan readers apply to a profile. */
int plan_profile_validate(const struct plan_profile *pf, const char *what)
{
	uint32_t i;
	int ret;

	if (!pf->n_layers || pf->n_layers > PLAN_MAX_LAYERS || !pf->layers)
		return bad(what, "%u layers (1..%u allowed)", pf->n_layers, PLAN_MAX_LAYERS);
	if (!has_nul(pf->gpu, sizeof(pf->gpu)) || !pf->gpu[0] ||
	    !has_nul(pf->model, sizeof(pf->model)))
		return err_set(DPRT_EBADPLAN, "%s: GPU or model name is not a valid string", what);
	if (pf->flags & ~PLAN_F_ALL)
		return bad(what, "unknown flags %#x", pf->flags);
	ret = check_links(&pf->link, what);
	for (i = 0; i < pf->n_layers && !ret; i++)
		ret = check_layer(&pf->layers[i], i, what);
	return ret;
}

/* The profile's key and layers against this package. */
int plan_profile_match(const struct plan_profile *pf, const char *what, uint64_t pkg_checksum,
		       const struct graph *g)
{
	uint32_t l;

	if (pf->pkg_checksum != pkg_checksum)
		return err_set(DPRT_EBADPLAN,
			       "profile %s was made for package %016llx (%s), this is %016llx (%s)",
			       what, (unsigned long long)pf->pkg_checksum, pf->model,
			       (unsigned long long)pkg_checksum, g->name);
	if (pf->n_layers != g->n_layers)
		return err_set(DPRT_EBADPLAN, "profile %s has %u layers, the package %u", what,
			       pf->n_layers, g->n_layers);
	for (l = 0; l < g->n_layers; l++)
		if (pf->layers[l].bytes != g->layers[l].nbytes)
			return err_set(DPRT_EBADPLAN,
				       "profile %s: layer %u (%s) has %llu bytes, the package "
				       "%llu",
				       what, l, g->layers[l].name,
				       (unsigned long long)pf->layers[l].bytes,
				       (unsigned long long)g->layers[l].nbytes);
	return 0;
}
