/* SPDX-License-Identifier: MIT */
/*
 * One function per op: enqueue it on the device's stream with the program's
 * addresses. GEMMs go to cuBLAS (fp32 in true fp32, CUBLAS_COMPUTE_32F;
 * fp16/bf16 with fp32 accumulation), convolutions and pooling to cuDNN,
 * the rest to kernels.cu. Nothing here allocates or synchronizes, so the
 * same calls are captured into the program's CUDA graph.
 */
#include "cuda_priv.h"

#include <math.h>
#include <string.h>

typedef long long i64; /* the kernels' 64-bit integer parameters */

static const float one = 1.0f, zero = 0.0f;

static void *vp(uint64_t a)
{
	return (void *)(uintptr_t)a;
}

static cudaDataType_t blas_dtype(uint8_t dt)
{
	return dt == DT_F16 ? CUDA_R_16F : dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* Blocks for `units` work items of `per_block` each, capped: every kernel
 * loops over the grid, and a few waves fill the GPU. */
static unsigned grid_for(const struct cuda_dev *d, int64_t units, int64_t per_block)
{
	int64_t g = (units + per_block - 1) / per_block, cap = (int64_t)d->sm_count * 32;

	return (unsigned)MAX(1, MIN(g, cap));
}

static int launch(struct exec_model *m, enum kern k, unsigned gx, unsigned gy, unsigned gz,
		  void **args)
{
	struct cuda_dev *d = m->d;
	CUfunction f = d->fn[k][k < K_TYPED_COUNT ? m->dt : 0];

	return CU(cuLaunchKernel(f, gx, gy, gz, CUDA_BLOCK, 1, 1, 0, d->stream, args, NULL));
}

static uint64_t in_addr(const struct cuda_prog *pl, const struct node *nd, int k)
{
	if (k >= nd->n_in || nd->in[k] == NO_TENSOR)
		return 0;
	return pl->addr[nd->in[k]];
}

/* ---------------------------------------------------------- elementwise */

static int op_unary(struct exec_model *m, struct cuda_prog *pl, const struct node *nd, int op)
{
	uint64_t x = in_addr(pl, nd, 0), y = pl->addr[nd->out];
	i64 n = shape_numel(&pl->shapes[nd->out]);
	void *args[] = {&x, &y, &n, &op};

	return launch(m, K_UNARY, grid_for(m->d, n, CUDA_BLOCK), 1, 1, args);
}

static int op_add(struct exec_model *m, struct cuda_prog *pl, const struct node *nd)
{
	uint64_t a = in_addr(pl, nd, 0), b = in_addr(pl, nd, 1), y = pl->addr[nd->out];
	i64 n = shape_numel(&pl->shapes[nd->out]);
	int relu = nd->ia[0] != 0;
	void *args[] = {&a, &b, &y, &n, &relu};

	return launch(m, K_ADD, grid_for(m->d, n, CUDA_BLOCK), 1, 1, args);
}

/* y = x * scale[c] + shift[c] (+ relu) over x[.., c, inner]; scale/shift
 * 0 for none. */
static int chan_affine(struct exec_model *m, uint64_t x, uint64_t scale, uint64_t shift, uint64_t y,
		       i64 n, i64 c, i64 inner, int relu)
{
	void *args[] = {&x, &scale, &shift, &y, &n, &c, &inner, &relu};

	return launch(m, K_CHAN_AFFINE, grid_for(m->d, n, CUDA_BLOCK), 1, 1, args);
}

static int op_batchnorm(struct exec_model *m, struct cuda_prog *pl, const struct node *nd)
{
	const struct shape *x = &pl->shapes[nd->in[0]];
	i64 n = shape_numel(x);

	return chan_affine(m, in_addr(pl, nd, 0), in_addr(pl, nd, 1), in_addr(pl, nd, 2),
			   pl->addr[nd->out], n, x->dims[1], n / x->dims[0] / x->dims[1],
			   nd->ia[0] != 0);
}

int cuda_op_convert(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct io_desc *io = &m->g->inputs[i];
	uint64_t x = pl->raw[i], y = pl->addr[io->tensor];
	int xdt = io->dtype, ydt = m->g->wdtype;
	i64 n = shape_numel(&pl->shapes[io->tensor]);
	void *args[] = {&x, &xdt, &y, &ydt, &n};

	return launch(m, K_CVT, grid_for(m->d, n, CUDA_BLOCK), 1, 1, args);
}

/* --------------------------------------------------------------- GEMMs */

/* y[rows, M] = x[rows, K] . w[M, K]^T (+ b). In cuBLAS's column-major
 * terms: y^T (M x rows) = w (K x M stored, transposed) . x^T (K x rows). */
static int op_linear(struct exec_model *m, struct cuda_prog *pl, const struct node *nd)
{
	const struct shape *x = &pl->shapes[nd->in[0]], *w = &pl->shapes[nd->in[1]];
	cudaDataType_t t = blas_dtype(m->g->wdtype);
	int k = (int)w->dims[1], mm = (int)w->dims[0];
	int rows = (int)(shape_numel(x) / k);
	uint64_t y = pl->addr[nd->out], b = in_addr(pl, nd, 2);
	int ret;

	ret = CUBLAS(cublasGemmEx(m->d->blas, CUBLAS_OP_T, CUBLAS_OP_N, mm, rows, k, &one,
				  vp(in_addr(pl, nd, 1)), t, k, vp(in_addr(pl, nd, 0)), t, k, &zero,
				  vp(y), t, mm, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	if (ret || !b)
		return ret;
	return chan_affine(m, y, 0, b, y, (i64)rows * mm, mm, 1, 0);
}

/*
 * Self-attention over qkv[n, s, 3h] (h = heads * d), per batch row b:
 *   scores[b, head] (s x s, fp32) = q . k^T / sqrt(d)   (strided batched
 *       over heads: head j's q, k, v start j * d columns in)
 *   p = masked softmax(scores)                          (kernels.cu)
 *   y[b, :, head] = p . v
 * Column-major view of a row-major [s, ld] block is [ld, s]: so scores^T
 * = k (op T) . q, and y^T = v . p^T.
 */
static int op_attention(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct node *nd = &m->g->nodes[i];
	const struct shape *x = &pl->shapes[nd->in[0]];
	const struct node_rt *rt = &pl->rt[i];
	cudaDataType_t t = blas_dtype(m->g->wdtype);
	int s = (int)x->dims[1], heads = (int)nd->ia[0], causal = nd->ia[1] != 0;
	int h = (int)(x->dims[2] / 3), dh = h / heads, ld = 3 * h;
	uint64_t es = dtype_size((enum dtype)m->g->wdtype), qkv = in_addr(pl, nd, 0);
	uint64_t mask = in_addr(pl, nd, 1), y = pl->addr[nd->out];
	uint64_t cells = (uint64_t)heads * s * s, sc = rt->scratch;
	uint64_t p = sc + ALIGN_UP(cells * x->dims[0] * sizeof(float), DEVPOOL_ALIGN);
	float scale = (float)(1.0 / sqrt((double)dh));
	void *args[] = {&sc, &p, &mask, &s, &heads, &causal};
	int64_t b;
	int ret = 0;

	for (b = 0; b < x->dims[0] && !ret; b++) {
		uint64_t q = qkv + (uint64_t)b * s * ld * es;

		ret = CUBLAS(cublasGemmStridedBatchedEx(
			m->d->blas, CUBLAS_OP_T, CUBLAS_OP_N, s, s, dh, &scale,
			vp(q + (uint64_t)h * es), t, ld, dh, vp(q), t, ld, dh, &zero,
			vp(sc + b * cells * sizeof(float)), CUDA_R_32F, s, (i64)s * s, heads,
			CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	}
	if (!ret)
		ret = launch(m, K_ATTN_SOFTMAX, (unsigned)s, (unsigned)heads, (unsigned)x->dims[0],
			     args);
	for (b = 0; b < x->dims[0] && !ret; b++) {
		uint64_t v = qkv + ((uint64_t)b * s * ld + 2 * (uint64_t)h) * es;

		ret = CUBLAS(cublasGemmStridedBatchedEx(
			m->d->blas, CUBLAS_OP_N, CUBLAS_OP_N, dh, s, s, &one, vp(v), t, ld, dh,
			vp(p + b * cells * es), t, s, (i64)s * s, &zero,
			vp(y + (uint64_t)b * s * h * es), t, h, dh, heads, CUBLAS_COMPUTE_32F,
			CUBLAS_GEMM_DEFAULT));
	}
	return ret;
}

/* Attention in one kernel (kernels.cu dprt_flash_*) with w warps per
 * block: 16-bit activations and head sizes 16, 32, 64 (setup_attention
 * checks). timing: no mask (the tuner's buffers hold no real one). */
static int op_flash(struct exec_model *m, struct cuda_prog *pl, uint32_t i, int w, bool timing)
{
	const struct node *nd = &m->g->nodes[i];
	const struct shape *x = &pl->shapes[nd->in[0]];
	int s = (int)x->dims[1], heads = (int)nd->ia[0], causal = nd->ia[1] != 0;
	int dh = (int)(x->dims[2] / 3 / heads), di = dh == 16 ? 0 : dh == 32 ? 1 : 2;
	uint64_t qkv = in_addr(pl, nd, 0), y = pl->addr[nd->out];
	uint64_t mask = timing ? 0 : in_addr(pl, nd, 1);
	float scale = (float)(1.0 / sqrt((double)dh));
	CUfunction f = m->d->flash[m->g->wdtype == DT_BF16][di][w == 1 ? 0 : w == 2 ? 1 : 2];
	void *args[] = {&qkv, &y, &mask, &s, &heads, &causal, &scale};

	return CU(cuLaunchKernel(f, (unsigned)((s + 16 * w - 1) / (16 * w)), (unsigned)heads,
				 (unsigned)x->dims[0], 32u * (unsigned)w, 1, 1, flash_smem(dh, w),
				 m->d->stream, args, NULL));
}

/* One attention candidate: 0 unfused, else the fused kernel's W. */
static int attn_run(struct exec_model *m, struct cuda_prog *pl, uint32_t i, int cand)
{
	return cand ? op_flash(m, pl, i, cand, true) : op_attention(m, pl, i);
}

/* Milliseconds of 3 runs of candidate cand (after one untimed). */
static int attn_time(struct exec_model *m, struct cuda_prog *pl, uint32_t i, int cand,
		     CUevent ev[2], float *ms)
{
	CUstream st = m->d->stream;
	int r, ret;

	ret = attn_run(m, pl, i, cand) ?: CU(cuEventRecord(ev[0], st));
	for (r = 0; r < 3 && !ret; r++)
		ret = attn_run(m, pl, i, cand);
	ret = ret ?: CU(cuEventRecord(ev[1], st)) ?: CU(cuEventSynchronize(ev[1]));
	return ret ?: CU(cuEventElapsedTime(ms, ev[0], ev[1]));
}

static void attn_key(const struct exec_model *m, const struct cuda_prog *pl, uint32_t i,
		     struct attn_key *k)
{
	const struct node *nd = &m->g->nodes[i];
	const struct shape *x = &pl->shapes[nd->in[0]];

	memset(k, 0, sizeof(*k));
	k->n = (int32_t)x->dims[0];
	k->s = (int32_t)x->dims[1];
	k->heads = (int32_t)nd->ia[0];
	k->d = (int32_t)(x->dims[2] / 3 / nd->ia[0]);
	k->causal = nd->ia[1] != 0;
	k->dtype = m->g->wdtype;
}

/* Node i's fastest candidate: the device's earlier choice, else timed. */
static int attn_pick(struct exec_model *m, struct cuda_prog *pl, uint32_t i, CUevent ev[2],
		     int *pick)
{
	static const int cands[] = {0, 1, 2, 4};
	struct cuda_dev *d = m->d;
	struct attn_key key;
	float best = 1e30f, ms;
	uint32_t k;
	int ret;

	attn_key(m, pl, i, &key);
	for (k = 0; k < d->n_attns; k++) {
		if (!memcmp(&d->attns[k].key, &key, sizeof(key))) {
			*pick = d->attns[k].flash;
			return 0;
		}
	}
	for (k = 0; k < ARRAY_SIZE(cands); k++) {
		if (!cands[k] && !pl->rt[i].scratch_bytes) /* unfused: no scratch */
			continue;
		ret = attn_time(m, pl, i, cands[k], ev, &ms);
		if (ret)
			return ret;
		if (ms < best) {
			best = ms;
			*pick = cands[k];
		}
	}
	if (d->n_attns < ATTN_CACHE) {
		d->attns[d->n_attns].key = key;
		d->attns[d->n_attns++].flash = *pick;
	}
	return 0;
}

int cuda_attn_tune(struct exec_model *m, struct cuda_prog *pl, bool *relayout)
{
	CUevent ev[2] = {NULL, NULL};
	uint32_t i;
	int ret;

	*relayout = false;
	ret = CU(cuEventCreate(&ev[0], CU_EVENT_DEFAULT)) ?:
		      CU(cuEventCreate(&ev[1], CU_EVENT_DEFAULT));
	for (i = 0; i < m->g->n_nodes && !ret; i++) {
		struct node_rt *rt = &pl->rt[i];

		if (!rt->attn_tune)
			continue;
		ret = attn_pick(m, pl, i, ev, &rt->flash);
		if (!ret && rt->flash) { /* the unfused path's scratch is not needed */
			rt->scratch_bytes = 0;
			*relayout = true;
		}
	}
	if (ev[0])
		CU(cuEventDestroy(ev[0]));
	if (ev[1])
		CU(cuEventDestroy(ev[1]));
	return ret;
}

/* ---------------------------------------------------------------- cuDNN */

int cuda_dnn_check(const struct cuda_dev *d, const struct graph *g, uint32_t i)
{
	if (!cuda_op_needs_dnn(g, i) || cuda_dev_has_dnn(d))
		return 0;
	return err_set(DPRT_EUNSUP,
		       "%s: node %u (%s) needs cuDNN for convolutions and "
		       "pooling on the GPU: %s",
		       g->name, i, op_name((enum op)g->nodes[i].op), cudalibs_cudnn_why());
}

#if HAVE_CUDNN
static bool algo_fits(const cudnnConvolutionFwdAlgoPerf_t *p, uint64_t limit, cudnnMathType_t want)
{
	return p->status == CUDNN_STATUS_SUCCESS && p->memory <= limit &&
	       (p->mathType == want || p->mathType == CUDNN_DEFAULT_MATH);
}

/* The heuristics' best algorithm within the workspace limit, deterministic
 * ones first. */
static int conv_heuristic(struct exec_model *m, struct node_rt *rt, cudnnMathType_t want)
{
	cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
	int n = 0, k, pick = -1, ret;

	ret = CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(m->d->dnn, rt->xd, rt->wd, rt->cd,
							   rt->yd, ARRAY_SIZE(perf), &n, perf));
	if (ret)
		return ret;
	for (k = 0; k < n && pick < 0; k++)
		if (algo_fits(&perf[k], m->d->conv_ws_limit, want) &&
		    perf[k].determinism == CUDNN_DETERMINISTIC)
			pick = k;
	for (k = 0; k < n && pick < 0; k++)
		if (algo_fits(&perf[k], m->d->conv_ws_limit, want))
			pick = k;
	if (pick < 0)
		return err_set(DPRT_EUNSUP,
			       "cuDNN has no convolution algorithm for this shape "
			       "within %llu MiB of workspace",
			       (unsigned long long)(m->d->conv_ws_limit >> 20));
	rt->algo = perf[pick].algo;
	return 0;
}

static void conv_key(const struct exec_model *m, uint32_t i, const struct shape *x,
		     struct conv_key *k)
{
	const struct node *nd = &m->g->nodes[i];
	const struct tensor *w = &m->g->tensors[nd->in[1]];
	int d;

	memset(k, 0, sizeof(*k));
	for (d = 0; d < 4; d++) {
		k->x[d] = (int32_t)x->dims[d];
		k->w[d] = (int32_t)w->dims[d];
	}
	for (d = 0; d < 7; d++)
		k->geom[d] = (int32_t)nd->ia[d];
	k->dtype = m->g->wdtype;
	k->timed = m->conv_find;
}

static const struct conv_choice *conv_lookup(const struct cuda_dev *d, const struct conv_key *k)
{
	uint32_t i;

	for (i = 0; i < d->n_convs; i++)
		if (!memcmp(&d->convs[i].key, k, sizeof(*k)))
			return &d->convs[i];
	return NULL;
}

/* The fastest algorithm within the workspace limit, by cuDNN's own timing
 * of each (it allocates its buffers itself, outside the pool). */
static int conv_timed(struct exec_model *m, struct node_rt *rt, cudnnMathType_t want)
{
	cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
	int n = 0, k, ret;

	ret = CUDNN(cudnnFindConvolutionForwardAlgorithm(m->d->dnn, rt->xd, rt->wd, rt->cd, rt->yd,
							 ARRAY_SIZE(perf), &n, perf));
	if (ret)
		return ret;
	for (k = 0; k < n; k++) {
		if (!algo_fits(&perf[k], m->d->conv_ws_limit, want))
			continue;
		rt->algo = perf[k].algo;
		return 0;
	}
	return conv_heuristic(m, rt, want);
}

int cuda_conv_choose(struct exec_model *m, uint32_t i, const struct shape *x, struct node_rt *rt)
{
	/* fp32 stays fp32: CUDNN_DEFAULT_MATH would allow TF32 on sm_80+. */
	cudnnMathType_t want = m->g->wdtype == DT_F32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
	struct cuda_dev *d = m->d;
	const struct conv_choice *c;
	struct conv_key key;
	size_t ws = 0;
	int ret;

	ret = CUDNN(cudnnSetConvolutionMathType(rt->cd, want));
	if (ret)
		return ret;
	conv_key(m, i, x, &key);
	c = conv_lookup(d, &key);
	if (c)
		rt->algo = c->algo;
	else if (m->conv_find)
		ret = conv_timed(m, rt, want);
	else
		ret = conv_heuristic(m, rt, want);
	if (!ret)
		ret = CUDNN(cudnnGetConvolutionForwardWorkspaceSize(d->dnn, rt->xd, rt->wd, rt->cd,
								    rt->yd, rt->algo, &ws));
	if (ret)
		return ret;
	rt->ws_bytes = ws;
	if (!c && d->n_convs < CONV_CACHE) {
		d->convs[d->n_convs].key = key;
		d->convs[d->n_convs++].algo = rt->algo;
	}
	return 0;
}

static int op_conv(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct node *nd = &m->g->nodes[i];
	const struct node_rt *rt = &pl->rt[i];
	const struct shape *y = &pl->shapes[nd->out];
	uint64_t out = pl->addr[nd->out], b = in_addr(pl, nd, 2);
	int ret;

	ret = CUDNN(cudnnConvolutionForward(m->d->dnn, &one, rt->xd, vp(in_addr(pl, nd, 0)), rt->wd,
					    vp(in_addr(pl, nd, 1)), rt->cd, rt->algo,
					    vp(rt->scratch), rt->ws_bytes, &zero, rt->yd, vp(out)));
	if (ret || !b)
		return ret;
	return chan_affine(m, out, 0, b, out, shape_numel(y), y->dims[1], y->dims[2] * y->dims[3],
			   0);
}

static int op_pool(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct node *nd = &m->g->nodes[i];
	const struct node_rt *rt = &pl->rt[i];

	return CUDNN(cudnnPoolingForward(m->d->dnn, rt->pd, &one, rt->xd, vp(in_addr(pl, nd, 0)),
					 &zero, rt->yd, vp(pl->addr[nd->out])));
}
#else
/* Not reached: model creation refuses these nodes (cuda_dnn_check). */
static int op_conv(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	(void)pl;
	return cuda_dnn_check(m->d, m->g, i);
}

static int op_pool(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	(void)pl;
	return cuda_dnn_check(m->d, m->g, i);
}
#endif

/* ------------------------------------------------------------ row ops */

static int op_gap(struct exec_model *m, struct cuda_prog *pl, const struct node *nd)
{
	const struct shape *x = &pl->shapes[nd->in[0]];
	uint64_t a = in_addr(pl, nd, 0), y = pl->addr[nd->out];
	i64 rows = x->dims[0] * x->dims[1];
	int hw = (int)(x->dims[2] * x->dims[3]);
	void *args[] = {&a, &y, &rows, &hw};

	return launch(m, K_GAP, grid_for(m->d, rows, CUDA_BLOCK / 32), 1, 1, args);
}

static int op_layernorm(struct exec_model *m, struct cuda_prog *pl, const struct node *nd)
{
	const struct shape *x = &pl->shapes[nd->in[0]];
	uint64_t a = in_addr(pl, nd, 0), g = in_addr(pl, nd, 1), b = in_addr(pl, nd, 2);
	uint64_t y = pl->addr[nd->out];
	int h = (int)x->dims[x->ndim - 1];
	i64 rows = shape_numel(x) / h;
	float eps = nd->fa[0];
	void *args[] = {&a, &g, &b, &y, &rows, &h, &eps};

	return launch(m, K_LAYERNORM, grid_for(m->d, rows, 1), 1, 1, args);
}

static int op_softmax(struct exec_model *m, struct cuda_prog *pl, const struct node *nd)
{
	const struct shape *x = &pl->shapes[nd->in[0]];
	uint64_t a = in_addr(pl, nd, 0), y = pl->addr[nd->out];
	int cols = (int)x->dims[x->ndim - 1];
	i64 rows = shape_numel(x) / cols;
	void *args[] = {&a, &y, &rows, &cols};

	return launch(m, K_SOFTMAX, grid_for(m->d, rows, 1), 1, 1, args);
}

static int op_embedding(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct node *nd = &m->g->nodes[i];
	const struct shape *tab = &pl->shapes[nd->in[1]];
	uint64_t ids = in_addr(pl, nd, 0), t = in_addr(pl, nd, 1), y = pl->addr[nd->out];
	i64 n = shape_numel(&pl->shapes[nd->in[0]]), v = tab->dims[0];
	int h = (int)tab->dims[1], node = (int)i;
	void *args[] = {&ids, &t, &y, &n, &v, &h, &pl->err_dev, &node};

	return launch(m, K_EMBED, grid_for(m->d, n, 1), 1, 1, args);
}

static int op_posids(struct exec_model *m, struct cuda_prog *pl, const struct node *nd)
{
	const struct shape *x = &pl->shapes[nd->in[0]];
	uint64_t ids = in_addr(pl, nd, 0), pos = pl->addr[nd->out];
	i64 rows = x->dims[0], arg = nd->ia[1];
	int s = (int)x->dims[1], mode = (int)nd->ia[0];
	void *args[] = {&ids, &pos, &rows, &s, &mode, &arg};

	return launch(m, K_POSIDS, grid_for(m->d, rows, 1), 1, 1, args);
}

static int op_take_row(struct exec_model *m, struct cuda_prog *pl, const struct node *nd)
{
	const struct shape *x = &pl->shapes[nd->in[0]];
	uint64_t a = in_addr(pl, nd, 0), y = pl->addr[nd->out];
	i64 n = x->dims[0], s = x->dims[1], row = nd->ia[0];
	int h = (int)x->dims[2];
	void *args[] = {&a, &y, &n, &s, &h, &row};

	return launch(m, K_TAKE_ROW, grid_for(m->d, n, 1), 1, 1, args);
}

static int op_cls_pos(struct exec_model *m, struct cuda_prog *pl, const struct node *nd)
{
	const struct shape *x = &pl->shapes[nd->in[0]];
	uint64_t a = in_addr(pl, nd, 0), c = in_addr(pl, nd, 1), p = in_addr(pl, nd, 2);
	uint64_t y = pl->addr[nd->out];
	i64 n = x->dims[0], np = x->dims[2] * x->dims[3];
	int h = (int)x->dims[1];
	void *args[] = {&a, &c, &p, &y, &n, &h, &np};

	return launch(m, K_CLS_POS, grid_for(m->d, n * (1 + np) * h, CUDA_BLOCK), 1, 1, args);
}

int cuda_op_enqueue(struct exec_model *m, struct cuda_prog *pl, uint32_t i)
{
	const struct node *nd = &m->g->nodes[i];

	if (pl->rt[i].skip) /* an earlier GEMM's epilogue did it */
		return 0;
	switch (nd->op) {
	case OP_CONV2D:
		return op_conv(m, pl, i);
	case OP_BATCHNORM:
		return op_batchnorm(m, pl, nd);
	case OP_RELU:
		return op_unary(m, pl, nd, U_RELU);
	case OP_MAXPOOL:
	case OP_AVGPOOL:
		return op_pool(m, pl, i);
	case OP_GLOBAL_AVGPOOL:
		return op_gap(m, pl, nd);
	case OP_ADD:
		return op_add(m, pl, nd);
	case OP_LINEAR:
		return pl->rt[i].lt ? cuda_gemm_enqueue(m, pl, i) : op_linear(m, pl, nd);
	case OP_EMBEDDING:
		return op_embedding(m, pl, i);
	case OP_POSITION_IDS:
		return op_posids(m, pl, nd);
	case OP_LAYERNORM:
		return op_layernorm(m, pl, nd);
	case OP_GELU:
		return op_unary(m, pl, nd, nd->ia[0] ? U_GELU_TANH : U_GELU_ERF);
	case OP_TANH:
		return op_unary(m, pl, nd, U_TANH);
	case OP_SOFTMAX:
		return op_softmax(m, pl, nd);
	case OP_ATTENTION:
		return pl->rt[i].flash ? op_flash(m, pl, i, pl->rt[i].flash, false) :
					 op_attention(m, pl, i);
	case OP_TAKE_ROW:
		return op_take_row(m, pl, nd);
	case OP_CLS_POS:
		return op_cls_pos(m, pl, nd);
	default:
		return err_set(DPRT_EUNSUP,
			       "%s: node %u has op %u, which the CUDA backend does "
			       "not know",
			       m->g->name, i, nd->op);
	}
}
