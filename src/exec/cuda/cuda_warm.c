/* SPDX-License-Identifier: MIT */
/*
 * Once at device open, what the libraries and the driver would otherwise
 * do lazily at the first request (loading cuBLAS's and cuDNN's kernels and
 * sub-libraries, cuBLASLt's heuristics, the graph machinery): tiny GEMMs
 * in fp32, fp16 and bf16 through the calls the models make (cublasGemmEx,
 * cublasGemmStridedBatchedEx, cublasLtMatmul with the bias and GELU
 * epilogues after a heuristic query), a cuDNN convolution and max pooling
 * in each dtype, a launch of one of dprt's kernels (all are looked up by
 * load_kernels already), pinned copies both ways, and a graph captured,
 * instantiated, updated and launched. Buffers come from the device pool
 * and go back to it; the time is logged and kept (cnt.warm_ns).
 *
 * A warm-up step that fails is logged and skipped: the device still
 * opens, and the model that needs that path fails or pays it later.
 *
 * Read here too: DPRT_CUDA_POOL_MB=N reserves N MiB for the device pool up
 * front (as cuda_device_reserve does), DPRT_CUDA_ARENA_MB=N the shared
 * activation arena at N MiB, so that it never grows (struct cuda_arena).
 */
#include "cuda_priv.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WARM_N 64		/* GEMM sides */
#define WARM_SLOT (64ull << 10) /* bytes of each of the four buffers */

static const float one = 1.0f, zero = 0.0f;

struct warm {
	struct cuda_dev *d;
	uint64_t buf; /* four slots: A, B, C, bias */
};

static void *slot(const struct warm *w, int i)
{
	return (void *)(uintptr_t)(w->buf + (uint64_t)i * WARM_SLOT);
}

static cudaDataType_t blas_dtype(uint8_t dt)
{
	return dt == DT_F16 ? CUDA_R_16F : dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* The GEMMs of a linear layer and of attention's two products. */
static int warm_blas(struct warm *w, uint8_t dt)
{
	cudaDataType_t t = blas_dtype(dt);
	struct cuda_dev *d = w->d;
	int n = WARM_N, s = 16;

	return CUBLAS(cublasGemmEx(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, slot(w, 0), t, n, slot(w, 1), t, n, &zero, slot(w, 2), t, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)) ?:
		       CUBLAS(cublasGemmStridedBatchedEx(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, s, s, s, &one, slot(w, 0), t, s, s * s, slot(w, 1), t, s, s * s, &zero, slot(w, 2), CUDA_R_32F, s, s * s, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)) ?:
		       CUBLAS(cublasGemmStridedBatchedEx(
			       d->blas, CUBLAS_OP_N, CUBLAS_OP_N, s, s, s, &one, slot(w, 0), t, s,
			       s * s, slot(w, 1), t, s, s * s, &zero, slot(w, 2), t, s, s * s, 2,
			       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void lt_release(cublasLtMatmulDesc_t mm, cublasLtMatrixLayout_t *l,
		       cublasLtMatmulPreference_t pref)
{
	int i;

	if (mm)
		CUBLASLT(cublasLtMatmulDescDestroy(mm));
	for (i = 0; i < 3; i++)
		if (l[i])
			CUBLASLT(cublasLtMatrixLayoutDestroy(l[i]));
	if (pref)
		CUBLASLT(cublasLtMatmulPreferenceDestroy(pref));
}

/* A cuBLASLt GEMM with epilogue epi as cuda_gemm.c makes them: the
 * heuristic query, then the matmul with its first candidate. */
static int warm_lt(struct warm *w, uint8_t dt, cublasLtEpilogue_t epi)
{
	cublasOperation_t opt = CUBLAS_OP_T, opn = CUBLAS_OP_N;
	cublasLtMatrixLayout_t l[3] = {NULL, NULL, NULL};
	cublasLtMatmulPreference_t pref = NULL;
	cublasLtMatmulHeuristicResult_t res;
	cublasLtMatmulDesc_t mm = NULL;
	cudaDataType_t t = blas_dtype(dt);
	struct cuda_dev *d = w->d;
	uint64_t ws = CUDA_BLAS_WS;
	void *bias = slot(w, 3);
	int n = WARM_N, found = 0, ret;

	memset(&res, 0, sizeof(res));
	ret = CUBLASLT(cublasLtMatmulDescCreate(&mm, CUBLAS_COMPUTE_32F, CUDA_R_32F)) ?:
		      CUBLASLT(cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_TRANSA, &opt, sizeof(opt))) ?:
		      CUBLASLT(cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_TRANSB, &opn, sizeof(opn))) ?:
		      CUBLASLT(cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi))) ?:
		      CUBLASLT(cublasLtMatmulDescSetAttribute(mm, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias))) ?:
		      CUBLASLT(cublasLtMatrixLayoutCreate(&l[0], t, n, n, n)) ?:
		      CUBLASLT(cublasLtMatrixLayoutCreate(&l[1], t, n, n, n)) ?:
		      CUBLASLT(cublasLtMatrixLayoutCreate(&l[2], t, n, n, n)) ?:
		      CUBLASLT(cublasLtMatmulPreferenceCreate(&pref))	      ?:
		      CUBLASLT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws))) ?:
		      CUBLASLT(cublasLtMatmulAlgoGetHeuristic(d->lt, mm, l[0], l[1], l[2], l[2],
							      pref, 1, &res, &found));
	if (!ret && found > 0 && res.state == CUBLAS_STATUS_SUCCESS)
		ret = CUBLASLT(cublasLtMatmul(d->lt, mm, &one, slot(w, 0), l[0], slot(w, 1), l[1],
					      &zero, slot(w, 2), l[2], slot(w, 2), l[2], &res.algo,
					      (void *)(uintptr_t)d->blas_ws, CUDA_BLAS_WS,
					      d->stream));
	lt_release(mm, l, pref);
	return ret;
}

#if HAVE_CUDNN
static cudnnDataType_t dnn_dtype(uint8_t dt)
{
	return dt == DT_F16  ? CUDNN_DATA_HALF :
	       dt == DT_BF16 ? CUDNN_DATA_BFLOAT16 :
			       CUDNN_DATA_FLOAT;
}

struct dnn_descs {
	cudnnTensorDescriptor_t xd, yd;
	cudnnFilterDescriptor_t wd;
	cudnnConvolutionDescriptor_t cd;
	cudnnPoolingDescriptor_t pd;
};

static void dnn_release(struct dnn_descs *s)
{
	if (s->xd)
		CUDNN(cudnnDestroyTensorDescriptor(s->xd));
	if (s->yd)
		CUDNN(cudnnDestroyTensorDescriptor(s->yd));
	if (s->wd)
		CUDNN(cudnnDestroyFilterDescriptor(s->wd));
	if (s->cd)
		CUDNN(cudnnDestroyConvolutionDescriptor(s->cd));
	if (s->pd)
		CUDNN(cudnnDestroyPoolingDescriptor(s->pd));
}

/* A 3x3 convolution of 8 channels on 8x8 (the heuristics' choice, in the
 * cuBLAS workspace, which nothing else uses meanwhile on this stream),
 * then a 2x2 max pooling. */
static int warm_dnn(struct warm *w, uint8_t dt)
{
	cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
	cudnnDataType_t t = dnn_dtype(dt);
	struct cuda_dev *d = w->d;
	struct dnn_descs s;
	int n = 0, k, pick = -1, ret;

	memset(&s, 0, sizeof(s));
	ret = CUDNN(cudnnCreateTensorDescriptor(&s.xd))						?:
		      CUDNN(cudnnSetTensor4dDescriptor(s.xd, CUDNN_TENSOR_NCHW, t, 1, 8, 8, 8)) ?:
		      CUDNN(cudnnCreateTensorDescriptor(&s.yd))					?:
		      CUDNN(cudnnSetTensor4dDescriptor(s.yd, CUDNN_TENSOR_NCHW, t, 1, 8, 8, 8)) ?:
		      CUDNN(cudnnCreateFilterDescriptor(&s.wd))					?:
		      CUDNN(cudnnSetFilter4dDescriptor(s.wd, t, CUDNN_TENSOR_NCHW, 8, 8, 3, 3)) ?:
		      CUDNN(cudnnCreateConvolutionDescriptor(&s.cd))				?:
		      CUDNN(cudnnSetConvolution2dDescriptor(s.cd, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT)) ?:
		      CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(d->dnn, s.xd, s.wd, s.cd, s.yd,
								   ARRAY_SIZE(perf), &n, perf));
	for (k = 0; !ret && k < n && pick < 0; k++)
		if (perf[k].status == CUDNN_STATUS_SUCCESS && perf[k].memory <= CUDA_BLAS_WS)
			pick = k;
	if (!ret && pick >= 0)
		ret = CUDNN(cudnnConvolutionForward(
			d->dnn, &one, s.xd, slot(w, 0), s.wd, slot(w, 1), s.cd, perf[pick].algo,
			(void *)(uintptr_t)d->blas_ws, perf[pick].memory, &zero, s.yd, slot(w, 2)));
	ret = ret										?:
		      CUDNN(cudnnSetTensor4dDescriptor(s.yd, CUDNN_TENSOR_NCHW, t, 1, 8, 4, 4)) ?:
		      CUDNN(cudnnCreatePoolingDescriptor(&s.pd))				?:
		      CUDNN(cudnnSetPooling2dDescriptor(s.pd, CUDNN_POOLING_MAX, CUDNN_PROPAGATE_NAN, 2, 2, 0, 0, 2, 2)) ?:
		      CUDNN(cudnnPoolingForward(d->dnn, s.pd, &one, s.xd, slot(w, 0), &zero, s.yd,
						slot(w, 2)));
	dnn_release(&s);
	return ret;
}
#endif

/* One launch of the conversion kernel over no elements (its grid loop
 * does nothing): the launch path of the embedded module. */
static int warm_kernel(struct warm *w)
{
	void *x = slot(w, 0), *y = slot(w, 1);
	int xdt = DT_F32, ydt = DT_F16;
	long long n = 0;
	void *args[] = {&x, &xdt, &y, &ydt, &n};

	return CU(cuLaunchKernel(w->d->fn[K_CVT][0], 1, 1, 1, CUDA_BLOCK, 1, 1, 0, w->d->stream,
				 args, NULL));
}

/* Capture a kernel and a GEMM, instantiate, capture again and update,
 * launch. */
static int warm_graph(struct warm *w)
{
	struct cuda_dev *d = w->d;
	CUgraphExec exec = NULL;
	CUgraph graph = NULL;
	bool updated;
	int i, ret = 0, end;

	for (i = 0; i < 2 && !ret; i++) {
		ret = CU(cuStreamBeginCapture(d->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
		if (ret)
			break;
		ret = warm_kernel(w)		   ?:
			      warm_blas(w, DT_F16) ?:
			      CU(cuMemsetD8Async(w->buf + 2 * WARM_SLOT, 0, WARM_SLOT, d->stream));
		end = CU(cuStreamEndCapture(d->stream, &graph));
		ret = ret ?: end ?: cuda_graph_refresh(d, &exec, graph, &updated);
		if (graph)
			CU(cuGraphDestroy(graph));
		graph = NULL;
	}
	ret = ret ?: CU(cuGraphLaunch(exec, d->stream)) ?: CU(cuStreamSynchronize(d->stream));
	if (exec)
		CU(cuGraphExecDestroy(exec));
	return ret;
}

/* Pinned copies both ways on the exec stream and one on the copy stream. */
static int warm_copies(struct warm *w)
{
	struct cuda_dev *d = w->d;
	void *host = NULL;
	int ret;

	ret = CU(cuMemHostAlloc(&host, 4096, 0));
	if (ret)
		return ret;
	memset(host, 0, 4096);
	ret = CU(cuMemcpyHtoDAsync(w->buf, host, 4096, d->stream))		     ?:
		      CU(cuMemcpyDtoHAsync(host, w->buf, 4096, d->stream))	     ?:
		      CU(cuMemcpyHtoDAsync(w->buf + WARM_SLOT, host, 4096, d->copy)) ?:
		      CU(cuStreamSynchronize(d->copy))				     ?:
		      CU(cuStreamSynchronize(d->stream));
	CU(cuMemFreeHost(host));
	return ret;
}

static void step(struct cuda_dev *d, int ret, const char *what)
{
	if (!ret)
		return;
	log_warn("cuda: GPU %d: warm-up of %s failed (it will be paid later): %s", d->ordinal, what,
		 err_msg(ret));
	err_clear();
}

int cuda_device_reserve(struct cuda_dev *d, uint64_t bytes)
{
	return cuda_dev_enter(d) ?: devpool_reserve(d->pool, bytes);
}

/* DPRT_CUDA_POOL_MB and DPRT_CUDA_ARENA_MB (exec.h). */
static int reserve(struct cuda_dev *d)
{
	uint64_t pool = knobs_get()->cuda_pool_bytes, arena = knobs_get()->cuda_arena_bytes;
	int ret;

	ret = pool ? devpool_reserve(d->pool, pool) : 0;
	if (ret || !arena)
		return ret;
	ret = cuda_arena_reserve(d, arena);
	if (!ret)
		d->act.keep = true;
	return ret;
}

int cuda_dev_warm(struct cuda_dev *d)
{
	static const uint8_t dts[] = {DT_F32, DT_F16, DT_BF16};
	struct warm w = {d, 0};
	uint64_t t0 = clock_ns();
	size_t i;
	int ret;

	ret = reserve(d) ?: devpool_alloc(d->pool, 4 * WARM_SLOT, "warm-up", &w.buf);
	if (ret)
		return ret;
	step(d, CU(cuMemsetD8Async(w.buf, 0, 4 * WARM_SLOT, d->stream)), "a memset");
	step(d, warm_copies(&w), "pinned copies");
	step(d, warm_kernel(&w), "a kernel launch");
	for (i = 0; i < ARRAY_SIZE(dts); i++) {
		step(d, warm_blas(&w, dts[i]), "cuBLAS GEMMs");
		step(d, warm_lt(&w, dts[i], CUBLASLT_EPILOGUE_BIAS), "a cuBLASLt GEMM");
		if (dts[i] != DT_F32)
			step(d, warm_lt(&w, dts[i], CUBLASLT_EPILOGUE_GELU_BIAS),
			     "a cuBLASLt GELU GEMM");
#if HAVE_CUDNN
		if (d->dnn)
			step(d, warm_dnn(&w, dts[i]), "a cuDNN convolution and pooling");
#endif
	}
	step(d, warm_graph(&w), "a CUDA graph");
	ret = CU(cuStreamSynchronize(d->stream));
	devpool_free(d->pool, w.buf);
	d->cnt.warm_ns = clock_ns() - t0;
	log_info("cuda: GPU %d: libraries, kernels and graphs initialised in %.1f ms", d->ordinal,
		 (double)d->cnt.warm_ns / 1e6);
	return ret;
}
