/* SPDX-License-Identifier: MIT */
/*
 * A GPU as the CUDA backend sees it: the primary context (shared with
 * cuBLAS and cuDNN, which use the runtime API on the same context), two
 * streams, the library handles, the kernels and the device pool.
 */
#include "cuda_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define POOL_CHUNK (256ull << 20)
#define BLAS_WORKSPACE CUDA_BLAS_WS
#define CONV_WS_LIMIT (256ull << 20)

static const char *const kern_names[K_COUNT] = {
	[K_UNARY] = "dprt_unary",
	[K_ADD] = "dprt_add",
	[K_CHAN_AFFINE] = "dprt_chan_affine",
	[K_LAYERNORM] = "dprt_layernorm",
	[K_SOFTMAX] = "dprt_softmax",
	[K_ATTN_SOFTMAX] = "dprt_attn_softmax",
	[K_EMBED] = "dprt_embed",
	[K_TAKE_ROW] = "dprt_take_row",
	[K_GAP] = "dprt_gap",
	[K_CLS_POS] = "dprt_cls_pos",
	[K_CVT] = "dprt_cvt",
	[K_POSIDS] = "dprt_posids",
};

static const char *const dt_suffix[DT_SLOTS] = {"_f32", "_f16", "_bf16"};
static const char *const flash_dts[FLASH_DTS] = {"f16", "bf16"};
static const int flash_ds[FLASH_DS] = {16, 32, 64};
static const int flash_ws[FLASH_WS] = {1, 2, 4};

int cuda_device_count(void)
{
	int n = 0;

	if (cudrv_load()) {
		err_clear();
		return 0;
	}
	if (CU(cuDeviceGetCount(&n)))
		return 0;
	return n;
}

int cuda_dev_enter(struct cuda_dev *d)
{
	return CU(cuCtxSetCurrent(d->ctx));
}

static int load_kernels(struct cuda_dev *d)
{
	char name[64];
	int k, s, ret;

	ret = CU(cuModuleLoadData(&d->mod, cuda_fatbin));
	if (ret)
		return ret;
	for (k = 0; k < K_COUNT; k++) {
		for (s = 0; s < (k < K_TYPED_COUNT ? DT_SLOTS : 1); s++) {
			snprintf(name, sizeof(name), "%s%s", kern_names[k],
				 k < K_TYPED_COUNT ? dt_suffix[s] : "");
			ret = CU(cuModuleGetFunction(&d->fn[k][s], d->mod, name));
			if (ret)
				return err_set(ret,
					       "cuda: kernel %s missing from the embedded "
					       "fatbin",
					       name);
		}
	}
	for (k = 0; k < FLASH_DTS * FLASH_DS * FLASH_WS; k++) {
		int t = k / (FLASH_DS * FLASH_WS), x = k / FLASH_WS % FLASH_DS, w = k % FLASH_WS;
		CUfunction *f = &d->flash[t][x][w];

		snprintf(name, sizeof(name), "dprt_flash_%s_d%d_w%d", flash_dts[t], flash_ds[x],
			 flash_ws[w]);
		ret = CU(cuModuleGetFunction(f, d->mod, name));
		if (ret)
			return err_set(ret, "cuda: kernel %s missing from the embedded fatbin",
				       name);
		ret = CU(cuFuncSetAttribute(*f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
					    (int)flash_smem(flash_ds[x], flash_ws[w])));
		if (ret)
			return ret;
	}
	return 0;
}

static int describe(struct cuda_dev *d)
{
	char *gpu = d->model;
	int ret;

	ret = CU(cuDeviceGetName(gpu, sizeof(d->model), d->dev)) ?:
		      CU(cuDeviceGetAttribute(&d->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d->dev)) ?:
		      CU(cuDeviceGetAttribute(&d->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d->dev)) ?:
		      CU(cuDeviceGetAttribute(&d->sm_count,
					      CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, d->dev));
	if (ret)
		return ret;
	snprintf(d->name, sizeof(d->name), "%s, sm_%d%d, %d SMs", gpu, d->cc_major, d->cc_minor,
		 d->sm_count);
	if (d->cc_major < 8)
		return err_set(DPRT_EUNSUP,
			       "cuda: GPU %d (%s) is older than sm_80, which "
			       "dprt's kernels need",
			       d->ordinal, d->name);
	return 0;
}

/* Pool: grows in chunks up to the memory free now, less some headroom for
 * the libraries' own allocations. */
static int make_pool(struct cuda_dev *d)
{
	size_t free_b = 0, total = 0;
	uint64_t limit;
	int ret;

	ret = CU(cuMemGetInfo(&free_b, &total));
	if (ret)
		return ret;
	limit = free_b > (2ull << 30) ? free_b - MIN(free_b / 16, 2ull << 30) : free_b / 2;
	ret = devpool_create(POOL_CHUNK, limit, POOL_CHUNK, &d->pool);
	if (ret)
		return ret;
	return devpool_alloc(d->pool, BLAS_WORKSPACE, "cuBLAS workspace", &d->blas_ws);
}

static int make_handles(struct cuda_dev *d, bool have_cudnn)
{
	int ret;

	ret = CUBLAS(cublasCreate(&d->blas));
	if (ret)
		return ret;
	/* cublasSetStream resets the workspace: set the stream first. Default
	 * math with CUBLAS_COMPUTE_32F never uses TF32. */
	ret = CUBLAS(cublasSetStream(d->blas, d->stream)) ?:
		      CUBLAS(cublasSetWorkspace(d->blas, (void *)(uintptr_t)d->blas_ws, BLAS_WORKSPACE)) ?:
		      CUBLAS(cublasSetMathMode(d->blas, CUBLAS_DEFAULT_MATH)) ?:
		      CUBLASLT(cublasLtCreate(&d->lt));
	if (ret || !have_cudnn)
		return ret;
#if HAVE_CUDNN
	ret = CUDNN(cudnnCreate(&d->dnn));
	if (ret)
		return ret;
	ret = CUDNN(cudnnSetStream(d->dnn, d->stream));
#endif
	return ret;
}

static int open_dev(struct cuda_dev *d, int ordinal)
{
	bool have_cudnn = false;
	int count = 0, ret;

	ret = CU(cuDeviceGetCount(&count));
	if (ret)
		return ret;
	if (ordinal < 0 || ordinal >= count)
		return err_set(DPRT_ENODEV, "no GPU %d: the CUDA driver sees %d GPU%s", ordinal,
			       count, count == 1 ? "" : "s");
	d->ordinal = ordinal;
	ret = CU(cuDeviceGet(&d->dev, ordinal)) ?: describe(d);
	if (ret)
		return ret;
	ret = CU(cuDevicePrimaryCtxRetain(&d->ctx, d->dev));
	if (ret)
		return ret;
	ret = CU(cuCtxSetCurrent(d->ctx))				     ?:
		      CU(cuStreamCreate(&d->stream, CU_STREAM_NON_BLOCKING)) ?:
		      CU(cuStreamCreate(&d->copy, CU_STREAM_NON_BLOCKING))   ?:
		      load_kernels(d)					     ?:
		      cudalibs_load(&have_cudnn)			     ?:
									       make_pool(d);
	if (ret)
		return ret;
#if HAVE_CUDNN
	d->conv_ws_limit = CONV_WS_LIMIT;
	d->convs = calloc(CONV_CACHE, sizeof(*d->convs));
	if (!d->convs)
		return -ENOMEM;
#endif
	d->gemms = calloc(GEMM_CACHE, sizeof(*d->gemms));
	if (!d->gemms)
		return -ENOMEM;
	return make_handles(d, have_cudnn) ?: cuda_dev_warm(d);
}

int cuda_device_open(int ordinal, struct cuda_dev **out)
{
	struct cuda_dev *d;
	char why[512];
	int ret;

	ret = cudrv_load();
	if (ret)
		return ret;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	ret = open_dev(d, ordinal);
	if (ret) {
		snprintf(why, sizeof(why), "%s", err_msg(ret));
		cuda_device_close(d);
		return err_set(ret, "%s", why);
	}
	log_info("cuda: GPU %d: %s", ordinal, d->name);
	*out = d;
	return 0;
}

void cuda_device_close(struct cuda_dev *d)
{
	if (!d)
		return;
	if (d->ctx)
		CU(cuCtxSetCurrent(d->ctx));
	if (d->stream)
		CU(cuStreamSynchronize(d->stream));
#if HAVE_CUDNN
	if (d->dnn)
		CUDNN(cudnnDestroy(d->dnn));
#endif
	if (d->lt)
		CUBLASLT(cublasLtDestroy(d->lt));
	if (d->blas)
		CUBLAS(cublasDestroy(d->blas));
	devpool_destroy(d->pool);
	if (d->mod)
		CU(cuModuleUnload(d->mod));
	if (d->copy)
		CU(cuStreamDestroy(d->copy));
	if (d->stream)
		CU(cuStreamDestroy(d->stream));
	if (d->ctx)
		CU(cuDevicePrimaryCtxRelease(d->dev));
#if HAVE_CUDNN
	free(d->convs);
#endif
	free(d->gemms);
	free(d);
}

const char *cuda_device_name(const struct cuda_dev *d)
{
	return d->name;
}

/* The GPU's model name alone (the key of profiles and plans). */
const char *cuda_device_model(const struct cuda_dev *d)
{
	return d->model;
}

uint64_t cuda_device_reserved(const struct cuda_dev *d)
{
	return devpool_reserved(d->pool);
}

uint64_t cuda_device_used(const struct cuda_dev *d)
{
	return devpool_used(d->pool);
}
