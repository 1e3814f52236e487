/* SPDX-License-Identifier: MIT */
/*
 * cudrv: the CUDA Driver API through dlopen("libcuda.so.1").
 *
 * For src/mem and src/exec/cuda only (CUDA types never go higher). The
 * binary never links libcuda: cudrv_load() fills the table `cudrv_api`
 * once, and a machine without a driver gets DPRT_ENODEV ("no GPU
 * available ...").
 *
 * Every CUresult becomes a dprt error in exactly one place, cudrv_check(),
 * normally through the CU() macro, which names the failed call:
 *
 *	ret = CU(cuMemAlloc(&ptr, size));
 *
 * cuda.h maps some names to versioned symbols (cuMemAlloc -> cuMemAlloc_v2);
 * the table's members and the dlsym() names go through the same macros, so
 * each entry is the symbol that the header's prototype describes.
 */
#ifndef DPRT_MEM_CUDRV_H
#define DPRT_MEM_CUDRV_H

#include <cuda.h>

#include "base/base.h"

#define CUDRV_FUNCS(X)                                                                             \
	X(cuInit)                                                                                  \
	X(cuDriverGetVersion)                                                                      \
	X(cuGetErrorName)                                                                          \
	X(cuGetErrorString)                                                                        \
	X(cuDeviceGetCount)                                                                        \
	X(cuDeviceGet)                                                                             \
	X(cuDeviceGetName)                                                                         \
	X(cuDeviceGetAttribute)                                                                    \
	X(cuDeviceTotalMem)                                                                        \
	X(cuDevicePrimaryCtxRetain)                                                                \
	X(cuDevicePrimaryCtxRelease)                                                               \
	X(cuCtxSetCurrent)                                                                         \
	X(cuCtxGetCurrent)                                                                         \
	X(cuCtxPushCurrent)                                                                        \
	X(cuCtxPopCurrent)                                                                         \
	X(cuMemAlloc)                                                                              \
	X(cuMemFree)                                                                               \
	X(cuMemGetInfo)                                                                            \
	X(cuMemHostAlloc)                                                                          \
	X(cuMemFreeHost)                                                                           \
	X(cuMemHostGetDevicePointer)                                                               \
	X(cuMemHostRegister)                                                                       \
	X(cuMemHostUnregister)                                                                     \
	X(cuPointerGetAttributes)                                                                  \
	X(cuMemcpyHtoD)                                                                            \
	X(cuMemcpyDtoH)                                                                            \
	X(cuMemcpyHtoDAsync)                                                                       \
	X(cuMemcpyDtoHAsync)                                                                       \
	X(cuMemsetD8Async)                                                                         \
	X(cuMemcpyDtoDAsync)                                                                       \
	X(cuMemcpyPeerAsync)                                                                       \
	X(cuDeviceCanAccessPeer)                                                                   \
	X(cuCtxEnablePeerAccess)                                                                   \
	X(cuStreamCreate)                                                                          \
	X(cuStreamDestroy)                                                                         \
	X(cuStreamSynchronize)                                                                     \
	X(cuStreamBeginCapture)                                                                    \
	X(cuStreamEndCapture)                                                                      \
	X(cuEventCreate)                                                                           \
	X(cuEventDestroy)                                                                          \
	X(cuEventRecord)                                                                           \
	X(cuEventRecordWithFlags)                                                                  \
	X(cuEventQuery)                                                                            \
	X(cuStreamWaitEvent)                                                                       \
	X(cuStreamWaitValue32)                                                                     \
	X(cuEventSynchronize)                                                                      \
	X(cuEventElapsedTime)                                                                      \
	X(cuModuleLoadData)                                                                        \
	X(cuModuleUnload)                                                                          \
	X(cuModuleGetFunction)                                                                     \
	X(cuFuncSetAttribute)                                                                      \
	X(cuLaunchKernel)                                                                          \
	X(cuGraphInstantiate)                                                                      \
	X(cuGraphLaunch)                                                                           \
	X(cuGraphDestroy)                                                                          \
	X(cuGraphExecDestroy)

#define CUDRV_MEMBER(f) __typeof__(f) *f;
/* Filled by cudrv_load(); read-only afterwards. */
struct cudrv {
	CUDRV_FUNCS(CUDRV_MEMBER)
};
#undef CUDRV_MEMBER

extern struct cudrv cudrv_api;

/*
 * Load libcuda.so.1 and call cuInit(0), once per process (thread-safe).
 * Returns 0, or DPRT_ENODEV with err_set("no GPU available: ...") when the
 * driver is missing, too old, or finds no device. Any thread.
 */
int cudrv_load(void);

/*
 * The one conversion of a CUresult: 0 for CUDA_SUCCESS, else DPRT_EDEVICE
 * (DPRT_ENODEV for "no device", -ENOMEM for out of memory) with err_set
 * naming the call and the driver's error name and text. Never aborts.
 */
int cudrv_check(CUresult r, const char *call);

#define CU(call) cudrv_check(cudrv_api.call, #call)

/* Device pointers travel above this layer as uint64_t. */
static inline CUdeviceptr cudrv_ptr(uint64_t a)
{
	return (CUdeviceptr)a;
}

#endif
