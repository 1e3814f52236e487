/* SPDX-License-Identifier: MIT */
/* The CUDA Driver API table, filled through dlopen, and CUresult conversion. */
#include "mem/cudrv.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define STR(s) #s
#define XSTR(s) STR(s) /* expands cuda.h's renames: cuMemAlloc_v2 */

struct cudrv cudrv_api;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_ret;
static char load_msg[256];

static int load_fail(const char *fmt, const char *a, const char *b)
{
	snprintf(load_msg, sizeof(load_msg), fmt, a, b);
	return DPRT_ENODEV;
}

static int load_syms(void *h)
{
	void *sym;

#define CUDRV_LOAD(f)                                                                              \
	sym = dlsym(h, XSTR(f));                                                                   \
	if (!sym)                                                                                  \
		return load_fail("no GPU available: libcuda.so.1 lacks %s%s "                      \
				 "(driver too old)",                                               \
				 XSTR(f), "");                                                     \
	memcpy(&cudrv_api.f, &sym, sizeof(sym));
	CUDRV_FUNCS(CUDRV_LOAD)
#undef CUDRV_LOAD
	return 0;
}

static void load_once_fn(void)
{
	const char *name = "?", *text = "?";
	int count = 0, version = 0;
	CUresult r;
	void *h;

	h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		load_ret = load_fail("no GPU available: cannot load libcuda.so.1 (%s)%s", dlerror(),
				     "");
		return;
	}
	load_ret = load_syms(h);
	if (load_ret)
		return;
	r = cudrv_api.cuInit(0);
	if (r == CUDA_SUCCESS)
		r = cudrv_api.cuDeviceGetCount(&count);
	if (r != CUDA_SUCCESS) {
		cudrv_api.cuGetErrorName(r, &name);
		cudrv_api.cuGetErrorString(r, &text);
		load_ret = load_fail("no GPU available: cuInit failed: %s (%s)", name, text);
		return;
	}
	cudrv_api.cuDriverGetVersion(&version);
	if (version < 12000) {
		snprintf(load_msg, sizeof(load_msg),
			 "no GPU available: the CUDA driver supports CUDA %d.%d, dprt needs 12.0 "
			 "or later",
			 version / 1000, version % 1000 / 10);
		load_ret = DPRT_ENODEV;
		return;
	}
	if (!count)
		load_ret =
			load_fail("no GPU available: the CUDA driver finds no device%s%s", "", "");
}

int cudrv_load(void)
{
	pthread_once(&load_once, load_once_fn);
	if (load_ret)
		return err_set(load_ret, "%s", load_msg);
	return 0;
}

int cudrv_check(CUresult r, const char *call)
{
	const char *name = NULL, *text = NULL;
	int code = DPRT_EDEVICE;

	if (r == CUDA_SUCCESS)
		return 0;
	if (r == CUDA_ERROR_OUT_OF_MEMORY)
		code = -ENOMEM;
	else if (r == CUDA_ERROR_NO_DEVICE || r == CUDA_ERROR_INVALID_DEVICE)
		code = DPRT_ENODEV;
	if (cudrv_api.cuGetErrorName)
		cudrv_api.cuGetErrorName(r, &name);
	if (cudrv_api.cuGetErrorString)
		cudrv_api.cuGetErrorString(r, &text);
	return err_set(code, "CUDA call %s failed: %s (%s)", call, name ? name : "?",
		       text ? text : "unknown error");
}
