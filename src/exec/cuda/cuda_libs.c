/* SPDX-License-Identifier: MIT */
/*
 * cuBLAS and cuDNN through dlopen, so the binary needs neither to start;
 * and the one place where their status codes become dprt errors. A build
 * without cuDNN (HAVE_CUDNN 0) has only the cuBLAS half and says so.
 */
#include "cuda_priv.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define STR(s) #s
#define XSTR(s) STR(s) /* cublas_v2.h renames: cublasCreate_v2 */

struct cublas_api cuda_blas_api;
struct cublaslt_api cuda_blaslt_api;
#if HAVE_CUDNN
struct cudnn_api cuda_dnn_api;
#endif

static pthread_once_t libs_once = PTHREAD_ONCE_INIT;
static int libs_ret;
static bool libs_cudnn;
static char libs_msg[320];
static char cudnn_why[320]; /* why libs_cudnn is false, once loaded */

/* Where the CUDA 13 libraries live when the binary's rpath and
 * LD_LIBRARY_PATH do not find them. */
static const char *const cublas_dirs[] = {"", "/usr/local/cuda/lib64/",
					  "/usr/local/cuda/targets/x86_64-linux/lib/"};
#if HAVE_CUDNN
static const char *const cudnn_dirs[] = {"", "/usr/lib/x86_64-linux-gnu/",
					 "/usr/local/cuda/lib64/"};
#endif

static void *open_lib(const char *const *dirs, size_t n, const char *name, int flags)
{
	char path[256];
	void *h = NULL;
	size_t i;

	for (i = 0; i < n && !h; i++) {
		snprintf(path, sizeof(path), "%s%s", dirs[i], name);
		h = dlopen(path, flags);
	}
	return h;
}

static int load_cublaslt(void)
{
	void *h, *sym;

	/* cuBLAS needs cuBLASLt: loaded first and global, the dynamic linker
	 * finds it by soname whatever cuBLAS's own search path says. */
	h = open_lib(cublas_dirs, ARRAY_SIZE(cublas_dirs), "libcublasLt.so.13",
		     RTLD_NOW | RTLD_GLOBAL);
	if (!h) {
		snprintf(libs_msg, sizeof(libs_msg), "cannot load libcublasLt.so.13 (%s)",
			 dlerror());
		return DPRT_ENODEV;
	}
#define LOAD_CUBLASLT(f)                                                                           \
	sym = dlsym(h, #f);                                                                        \
	if (!sym) {                                                                                \
		snprintf(libs_msg, sizeof(libs_msg), "libcublasLt.so.13 lacks %s", #f);            \
		return DPRT_ENODEV;                                                                \
	}                                                                                          \
	memcpy(&cuda_blaslt_api.f, &sym, sizeof(sym));
	CUBLASLT_FUNCS(LOAD_CUBLASLT)
#undef LOAD_CUBLASLT
	return 0;
}

static int load_cublas(void)
{
	void *h, *sym;
	int ret;

	ret = load_cublaslt();
	if (ret)
		return ret;
	h = open_lib(cublas_dirs, ARRAY_SIZE(cublas_dirs), "libcublas.so.13",
		     RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(libs_msg, sizeof(libs_msg), "cannot load libcublas.so.13 (%s)", dlerror());
		return DPRT_ENODEV;
	}
#define LOAD_CUBLAS(f)                                                                             \
	sym = dlsym(h, XSTR(f));                                                                   \
	if (!sym) {                                                                                \
		snprintf(libs_msg, sizeof(libs_msg), "libcublas.so.13 lacks %s", XSTR(f));         \
		return DPRT_ENODEV;                                                                \
	}                                                                                          \
	memcpy(&cuda_blas_api.f, &sym, sizeof(sym));
	CUBLAS_FUNCS(LOAD_CUBLAS)
#undef LOAD_CUBLAS
	return 0;
}

#if HAVE_CUDNN
/* Load cuDNN, or leave the reason in cudnn_why (and a warning in the log). */
static bool load_cudnn(void)
{
	void *h, *sym;

	h = open_lib(cudnn_dirs, ARRAY_SIZE(cudnn_dirs), "libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(cudnn_why, sizeof(cudnn_why), "cannot load libcudnn.so.9 (%s)", dlerror());
		goto out_warn;
	}
#define LOAD_CUDNN(f)                                                                              \
	sym = dlsym(h, XSTR(f));                                                                   \
	if (!sym) {                                                                                \
		snprintf(cudnn_why, sizeof(cudnn_why), "libcudnn.so.9 lacks %s", XSTR(f));         \
		goto out_warn;                                                                     \
	}                                                                                          \
	memcpy(&cuda_dnn_api.f, &sym, sizeof(sym));
	CUDNN_FUNCS(LOAD_CUDNN)
#undef LOAD_CUDNN
	if (cuda_dnn_api.cudnnGetVersion() < 90000) {
		snprintf(cudnn_why, sizeof(cudnn_why), "cuDNN %zu is older than 9.0",
			 cuda_dnn_api.cudnnGetVersion());
		goto out_warn;
	}
	return true;
out_warn:
	log_warn("cuda: %s: convolutions and pooling are unavailable", cudnn_why);
	return false;
}
#else
static bool load_cudnn(void)
{
	snprintf(cudnn_why, sizeof(cudnn_why),
		 "this build of dprt has no cuDNN (./configure --without-cudnn, or no "
		 "cudnn.h found)");
	log_info("cuda: %s: convolutions and pooling are unavailable", cudnn_why);
	return false;
}
#endif

static void libs_once_fn(void)
{
	libs_ret = load_cublas();
	if (!libs_ret)
		libs_cudnn = load_cudnn();
}

int cudalibs_load(bool *have_cudnn)
{
	pthread_once(&libs_once, libs_once_fn);
	*have_cudnn = libs_cudnn;
	if (libs_ret)
		return err_set(libs_ret, "cuda: %s", libs_msg);
	return 0;
}

const char *cudalibs_cudnn_why(void)
{
	return cudnn_why;
}

int cublas_check(cublasStatus_t s, const char *call)
{
	const char *name = "?", *text = "?";
	int code = DPRT_EDEVICE;

	if (s == CUBLAS_STATUS_SUCCESS)
		return 0;
	if (s == CUBLAS_STATUS_ALLOC_FAILED)
		code = -ENOMEM;
	else if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_ARCH_MISMATCH)
		code = DPRT_EUNSUP;
	if (cuda_blas_api.cublasGetStatusName)
		name = cuda_blas_api.cublasGetStatusName(s);
	if (cuda_blas_api.cublasGetStatusString)
		text = cuda_blas_api.cublasGetStatusString(s);
	return err_set(code, "cuBLAS call %s failed: %s (%s)", call, name, text);
}

#if HAVE_CUDNN
int cudnn_check(cudnnStatus_t s, const char *call)
{
	int code = DPRT_EDEVICE;

	if (s == CUDNN_STATUS_SUCCESS)
		return 0;
	if (s == CUDNN_STATUS_ALLOC_FAILED)
		code = -ENOMEM;
	else if (s == CUDNN_STATUS_NOT_SUPPORTED)
		code = DPRT_EUNSUP;
	return err_set(code, "cuDNN call %s failed: %s (status %d)", call,
		       cuda_dnn_api.cudnnGetErrorString ? cuda_dnn_api.cudnnGetErrorString(s) : "?",
		       (int)s);
}
#endif
