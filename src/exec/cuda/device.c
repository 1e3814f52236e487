/* SPDX-License-Identifier: MIT */
/*
 * exec.h's device layer for the CUDA backend: thin members over the
 * cuda_* functions, so the scheduler and the command line reach GPUs
 * through cuda_backend like any backend. This file also names the build's
 * GPU backend (a build without CUDA links src/exec/nogpu.c instead).
 */
#include "exec/cuda/device.h"

const struct exec_ops *const exec_gpu_backend = &cuda_backend;

int cudadev_count(void)
{
	return cuda_device_count();
}

int cudadev_open(int ordinal, void **out)
{
	return cuda_device_open(ordinal, (struct cuda_dev **)out);
}

void cudadev_close(void *dev)
{
	cudadev_leave_links(dev);
	cuda_device_close(dev);
}

const char *cudadev_label(const void *dev)
{
	return cuda_device_name(dev);
}

const char *cudadev_model(const void *dev)
{
	return cuda_device_model(dev);
}

uint64_t cudadev_used(const void *dev)
{
	return dev ? cuda_device_used(dev) : 0;
}

int cudadev_profile(void *const *devs, uint32_t n_devs, const struct graph *g, const void *weights,
		    uint64_t pkg_checksum, struct plan_profile **out)
{
	return cuda_profile((struct cuda_dev *const *)devs, n_devs, g, weights, pkg_checksum, out);
}

int cudadev_cold_create(void *dev, const struct graph *g, const void *weights, const struct plan *p,
			struct exec_model **out)
{
	return cuda_cold_model_create(dev, g, weights, p, NULL, 0, out);
}

int cudadev_cold_evict(struct exec_model *m)
{
	return cuda_cold_evict(m);
}

bool cudadev_cold_resident(const struct exec_model *m)
{
	return cuda_cold_resident(m);
}

int cudadev_cold_run(struct exec_model *m, const struct tview *in, struct tview *out,
		     struct exec_cold_info *info)
{
	struct cuda_cold_stats st;
	int ret;

	ret = cuda_cold_run(m, in, out, &st);
	if (info)
		*info = ret ? (struct exec_cold_info){0} :
			      (struct exec_cold_info){.cold = st.cold,
						      .links = st.links,
						      .bytes_loaded = st.bytes_loaded,
						      .bytes_dha = st.bytes_dha,
						      .moved = st.moved,
						      .deferred = st.deferred,
						      .fixup_ns = st.fixup_ns,
						      .fallbacks = st.fallbacks};
	return ret;
}

bool cudadev_cold_overlaps(const struct exec_model *m, const struct exec_model *other)
{
	return cuda_cold_overlaps(m, other);
}
