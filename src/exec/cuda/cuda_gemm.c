/* SPDX-License-Identifier: MIT */
/*
 * Linear layers through cuBLASLt: the bias, and the node after the GEMM
 * when it is a residual ADD or a tanh GELU, done in the GEMM's epilogue
 * instead of by separate kernels; each GEMM shape's algorithm chosen by
 * timing the heuristics' candidates on the program's own buffers, once per
 * device. In cuBLAS's column-major terms a linear y[rows, M] = x[rows, K] .
 * w[M, K]^T + b is D (M x rows) = op_T(A = w, K x M) . B (x, K x rows),
 * the bias running along D's rows, and a residual is C (same layout as D,
 * beta 1).
 */
#include "cuda_priv.h"

#include <stdlib.h>
#include <string.h>

#define TUNE_REPS 3

static const float one = 1.0f, zero = 0.0f;

static void *vp(uint64_t a)
{
	return (void *)(uintptr_t)a;
}

static cudaDataType_t lt_dtype(uint8_t dt)
{
	return dt == DT_F16 ? CUDA_R_16F : dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* ------------------------------------------------------------- fusion */

/* Number of reads of tensor t by nodes from `from` on; *first: the first. */
static uint32_t readers(const struct graph *g, uint32_t t, uint32_t from, uint32_t *first)
{
	uint32_t i, k, n = 0;

	for (i = from; i < g->n_nodes; i++) {
		for (k = 0; k < g->nodes[i].n_in; k++) {
			if (g->nodes[i].in[k] != t)
				continue;
			if (!n++)
				*first = i;
		}
	}
	return n;
}

static bool is_output(const struct graph *g, uint32_t t)
{
	uint32_t i;

	for (i = 0; i < g->n_outputs; i++)
		if (g->outputs[i].tensor == t)
			return true;
	return false;
}

/* The node that writes t, or -1 (inputs, weights). */
static int64_t producer(const struct graph *g, uint32_t t)
{
	uint32_t i;

	for (i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].out == t)
			return i;
	return -1;
}

/* Can node i's epilogue do the work of the only reader of its output?
 * Returns that node (0: none) and sets *epi and rt->resid. */
static uint32_t fusable(const struct exec_model *m, uint32_t i, struct node_rt *rt,
			cublasLtEpilogue_t *epi)
{
	const struct graph *g = m->g;
	uint32_t t = g->nodes[i].out, j = 0, other;
	bool bias = g->nodes[i].n_in > 2 && g->nodes[i].in[2] != NO_TENSOR;
	const struct node *c;

	if (readers(g, t, i + 1, &j) != 1 || is_output(g, t))
		return 0;
	c = &g->nodes[j];
	if (c->op == OP_ADD && !c->ia[0]) {
		other = c->in[0] == t ? c->in[1] : c->in[0];
		if (other == t || producer(g, other) >= (int64_t)i)
			return 0;
		rt->resid = other;
		return j;
	}
	/* cuBLASLt's GELU is within 16-bit rounding of the reference's, not
	 * within fp32's: fp32 keeps its own kernel. */
	if (c->op == OP_GELU && c->ia[0] == 1 && m->lt_gelu && g->wdtype != DT_F32) {
		*epi = bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
		return j;
	}
	return 0;
}

/* ------------------------------------------------------------- setup */

static int make_descs(struct exec_model *m, struct node_rt *rt, int mm, int rows, int k,
		      cublasLtEpilogue_t epi, uint64_t bias)
{
	cudaDataType_t t = lt_dtype(m->g->wdtype);
	cublasOperation_t opt = CUBLAS_OP_T, opn = CUBLAS_OP_N;
	void *bp = vp(bias);
	int ret;

	ret = CUBLASLT(cublasLtMatmulDescCreate(&rt->mm, CUBLAS_COMPUTE_32F, CUDA_R_32F)) ?:
		      CUBLASLT(cublasLtMatmulDescSetAttribute(rt->mm, CUBLASLT_MATMUL_DESC_TRANSA, &opt, sizeof(opt))) ?:
		      CUBLASLT(cublasLtMatmulDescSetAttribute(rt->mm, CUBLASLT_MATMUL_DESC_TRANSB, &opn, sizeof(opn))) ?:
		      CUBLASLT(cublasLtMatmulDescSetAttribute(rt->mm, CUBLASLT_MATMUL_DESC_EPILOGUE,
							      &epi, sizeof(epi)));
	if (!ret && bias)
		ret = CUBLASLT(cublasLtMatmulDescSetAttribute(
			rt->mm, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp)));
	return ret								    ?:
		       CUBLASLT(cublasLtMatrixLayoutCreate(&rt->la, t, k, mm, k))   ?:
		       CUBLASLT(cublasLtMatrixLayoutCreate(&rt->lb, t, k, rows, k)) ?:
		       CUBLASLT(cublasLtMatrixLayoutCreate(&rt->lc, t, mm, rows, mm));
}

static int find_gemm(const struct cuda_dev *d, const struct gemm_key *k)
{
	uint32_t i;

	for (i = 0; i < d->n_gemms; i++)
		if (!memcmp(&d->gemms[i].key, k, sizeof(*k)))
			return (int)i;
	return -1;
}

/* The heuristics' candidates for rt's GEMM: into the device cache (a new
 * entry, untimed) or, with the cache full, the best straight into rt.
 * Returns the number of candidates (0: cuBLASLt cannot do it). */
static int candidates(struct exec_model *m, struct node_rt *rt, const struct gemm_key *key)
{
	cublasLtMatmulHeuristicResult_t res[GEMM_CANDIDATES];
	cublasLtMatmulPreference_t pref = NULL;
	struct cuda_dev *d = m->d;
	uint64_t ws = CUDA_BLAS_WS;
	int n = 0, i, k, ret;

	ret = CUBLASLT(cublasLtMatmulPreferenceCreate(&pref)) ?:
		      CUBLASLT(cublasLtMatmulPreferenceSetAttribute(
			      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
	d->cnt.heuristics++;
	if (!ret && cuda_blaslt_api.cublasLtMatmulAlgoGetHeuristic(
			    d->lt, rt->mm, rt->la, rt->lb, rt->lc, rt->lc, pref, GEMM_CANDIDATES,
			    res, &n) != CUBLAS_STATUS_SUCCESS)
		n = 0;
	if (pref)
		CUBLASLT(cublasLtMatmulPreferenceDestroy(pref));
	if (ret || n <= 0)
		return ret ? ret : 0;
	for (i = k = 0; i < n; i++) /* keep the usable ones, in order */
		if (res[i].state == CUBLAS_STATUS_SUCCESS)
			res[k++] = res[i];
	if (!k)
		return 0;
	rt->algo_lt = res[0].algo;
	rt->gemm = -1;
	if (d->n_gemms == GEMM_CACHE)
		return k;
	rt->gemm = (int32_t)d->n_gemms;
	d->gemms[d->n_gemms].key = *key;
	for (i = 0; i < k; i++)
		d->gemms[d->n_gemms].algo[i] = res[i].algo;
	d->gemms[d->n_gemms].n_algo = k;
	d->gemms[d->n_gemms++].pick = -1;
	return k;
}

int cuda_gemm_setup(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct graph *g = m->g;
	const struct node *nd = &g->nodes[i];
	const struct shape *x = &pl->shapes[nd->in[0]], *w = &pl->shapes[nd->in[1]];
	struct node_rt *rt = &pl->rt[i];
	uint64_t bias = nd->n_in > 2 && nd->in[2] != NO_TENSOR ? m->waddr[nd->in[2]] : 0;
	cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
	int k = (int)w->dims[1], mm = (int)w->dims[0], rows = (int)(shape_numel(x) / k);
	struct gemm_key key;
	uint32_t j;
	int ret;

	rt->resid = NO_TENSOR;
	rt->gemm = -1;
	j = fusable(m, i, rt, &epi);
	ret = make_descs(m, rt, mm, rows, k, epi, bias);
	if (ret)
		return ret;
	memset(&key, 0, sizeof(key));
	key.m = mm;
	key.n = rows;
	key.k = k;
	key.dtype = g->wdtype;
	key.epilogue = epi;
	key.beta = rt->resid != NO_TENSOR;
	key.host_a = m->place[g->tensors[nd->in[1]].layer] == PLACE_DHA;
	rt->gemm = find_gemm(m->d, &key);
	if (rt->gemm < 0) {
		ret = candidates(m, rt, &key);
		if (ret < 0)
			return ret;
		if (!ret) { /* stays on cublasGemmEx, unfused */
			cuda_gemm_release(rt);
			rt->resid = NO_TENSOR;
			return 0;
		}
	}
	rt->lt = true;
	if (j) {
		rt->fused = j;
		pl->rt[j].skip = true;
		pl->rt[j].first = i;
	}
	return 0;
}

int cuda_gemm_rebind(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct node *nd = &m->g->nodes[i];
	struct node_rt *rt = &pl->rt[i];
	void *bp;

	if (!rt->mm || nd->n_in <= 2 || nd->in[2] == NO_TENSOR)
		return 0;
	bp = vp(m->waddr[nd->in[2]]);
	return CUBLASLT(cublasLtMatmulDescSetAttribute(rt->mm, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
						       &bp, sizeof(bp)));
}

/* ------------------------------------------------------------ tuning */

static int enqueue(struct exec_model *m, struct cuda_prog *pl, uint32_t i,
		   const cublasLtMatmulAlgo_t *algo)
{
	const struct node *nd = &m->g->nodes[i];
	const struct node_rt *rt = &pl->rt[i];
	struct cuda_dev *d = m->d;
	uint64_t dst = pl->addr[rt->fused ? m->g->nodes[rt->fused].out : nd->out];
	uint64_t c = rt->resid != NO_TENSOR ? pl->addr[rt->resid] : dst;
	const float *beta = rt->resid != NO_TENSOR ? &one : &zero;

	return CUBLASLT(cublasLtMatmul(d->lt, rt->mm, &one, vp(pl->addr[nd->in[1]]), rt->la,
				       vp(pl->addr[nd->in[0]]), rt->lb, beta, vp(c), rt->lc,
				       vp(dst), rt->lc, algo, vp(d->blas_ws), CUDA_BLAS_WS,
				       d->stream));
}

/* Milliseconds of TUNE_REPS runs of candidate a, or a negative error; a
 * candidate that fails to run gets a huge time (and no error). */
static int time_algo(struct exec_model *m, struct cuda_prog *pl, uint32_t i,
		     const cublasLtMatmulAlgo_t *a, CUevent ev[2], float *ms)
{
	CUstream st = m->d->stream;
	int r, ret;

	*ms = 1e30f;
	if (enqueue(m, pl, i, a)) { /* warm-up; refused: not a candidate */
		err_clear();
		return CU(cuStreamSynchronize(st));
	}
	ret = CU(cuEventRecord(ev[0], st));
	for (r = 0; r < TUNE_REPS && !ret; r++)
		ret = enqueue(m, pl, i, a);
	ret = ret ?: CU(cuEventRecord(ev[1], st));
	ret = ret ?: CU(cuEventSynchronize(ev[1]));
	return ret ?: CU(cuEventElapsedTime(ms, ev[0], ev[1]));
}

static int tune_one(struct exec_model *m, struct cuda_prog *pl, uint32_t i, CUevent ev[2])
{
	struct gemm_choice *gc = &m->d->gemms[pl->rt[i].gemm];
	float best = 1e30f, ms;
	int a, ret;

	for (a = 0; a < gc->n_algo; a++) {
		ret = time_algo(m, pl, i, &gc->algo[a], ev, &ms);
		if (ret)
			return ret;
		if (ms < best) {
			best = ms;
			gc->pick = a;
		}
	}
	if (gc->pick < 0)
		return err_set(DPRT_EUNSUP,
			       "%s: node %u: no cuBLASLt algorithm for a %dx%dx%d "
			       "GEMM ran",
			       m->g->name, i, gc->key.m, gc->key.n, gc->key.k);
	return 0;
}

int cuda_gemm_tune(struct exec_model *m, struct cuda_prog *pl)
{
	CUevent ev[2] = {NULL, NULL};
	uint32_t i;
	int ret;

	ret = CU(cuEventCreate(&ev[0], CU_EVENT_DEFAULT)) ?:
		      CU(cuEventCreate(&ev[1], CU_EVENT_DEFAULT));
	for (i = 0; i < m->g->n_nodes && !ret; i++) {
		struct node_rt *rt = &pl->rt[i];

		if (!rt->lt || rt->gemm < 0)
			continue;
		if (m->d->gemms[rt->gemm].pick < 0)
			ret = tune_one(m, pl, i, ev);
		if (!ret)
			rt->algo_lt = m->d->gemms[rt->gemm].algo[m->d->gemms[rt->gemm].pick];
	}
	if (ev[0])
		CU(cuEventDestroy(ev[0]));
	if (ev[1])
		CU(cuEventDestroy(ev[1]));
	return ret;
}

int cuda_gemm_enqueue(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	return enqueue(m, pl, i, &pl->rt[i].algo_lt);
}

void cuda_gemm_release(struct node_rt *rt)
{
	if (rt->mm)
		CUBLASLT(cublasLtMatmulDescDestroy(rt->mm));
	if (rt->la)
		CUBLASLT(cublasLtMatrixLayoutDestroy(rt->la));
	if (rt->lb)
		CUBLASLT(cublasLtMatrixLayoutDestroy(rt->lb));
	if (rt->lc)
		CUBLASLT(cublasLtMatrixLayoutDestroy(rt->lc));
	rt->mm = NULL;
	rt->la = rt->lb = rt->lc = NULL;
}
