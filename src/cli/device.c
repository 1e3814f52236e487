/* SPDX-License-Identifier: MIT */
/*
 * What the command line does differently with the CUDA backend built in:
 * the device `dprt run` runs on, and where `dprt plan` gets its profile
 * (the GPU profiler). Every #if HAVE_CUDA of src/cli is in this file.
 */
#include "cli/cli.h"
#include "exec/exec.h"
#include "mem/mem.h"

#include <stdio.h>

#include "config.h"

/* ---------------------------------------------------------- dprt run */

#if HAVE_CUDA
const char *cli_device_label(const struct exec_ops *be, void *dev)
{
	UNUSED(be);
	return cuda_device_name(dev);
}

int cli_open_device(int gpu, const struct exec_ops **be, void **dev)
{
	*be = &cpu_backend;
	*dev = NULL;
	if (gpu < 0)
		return 0;
	*be = &cuda_backend;
	return cuda_device_open(gpu, (struct cuda_dev **)dev);
}

void cli_close_device(void *dev)
{
	if (dev)
		cuda_device_close(dev);
}
#else
const char *cli_device_label(const struct exec_ops *be, void *dev)
{
	UNUSED(dev);
	return be->name;
}

int cli_open_device(int gpu, const struct exec_ops **be, void **dev)
{
	*be = &cpu_backend;
	*dev = NULL;
	if (gpu >= 0)
		return err_set(DPRT_ENODEV, "this dprt was built without CUDA (see "
				"./configure's summary); use --gpus cpu");
	return 0;
}

void cli_close_device(void *dev)
{
	UNUSED(dev);
}
#endif

/* --------------------------------------------------------- dprt plan */

#if HAVE_CUDA
/* Measure the package with the GPU profiler on the GPUs of --gpus (GPU 0
 * without it), the first as the target. */
static int gpu_profile(struct plan_job *j)
{
	const struct plan_opts *o = j->o;
	struct cuda_dev *devs[PLAN_MAX_GPUS] = {0};
	struct hoststore *hs = NULL;
	uint32_t n = o->n_gpus ? o->n_gpus : 1, k;
	char why[400];
	int ret = 0;

	for (k = 0; k < n && !ret; k++)
		ret = cuda_device_open(o->n_gpus ? o->gpu_ids[k] : 0, &devs[k]);
	if (ret == DPRT_ENODEV) {
		snprintf(why, sizeof(why), "%s", err_msg(ret));
		ret = err_set(ret, "no GPU to profile %s on (%s); give --profile FILE (written "
			      "by the profiler on the GPU machine) or --synthetic-profile (an "
			      "estimate from PAPER.md's figures)", j->pkg_path, why);
	}
	if (!ret)
		ret = hoststore_load(j->pkg, &hs);
	if (!ret && j->tty)
		fprintf(stderr, "profiling %s on %u GPU%s ... ", j->g->name, n, n == 1 ? "" : "s");
	if (!ret)
		ret = cuda_profile(devs, n, j->g, hoststore_base(hs), pkg_checksum(j->pkg), &j->pf);
	if (j->tty)
		fprintf(stderr, "\r%40s\r", "");
	hoststore_destroy(hs);
	for (k = 0; k < n; k++)
		if (devs[k])
			cuda_device_close(devs[k]);
	return ret;
}
#endif

int cli_get_profile(struct plan_job *j)
{
	const struct plan_opts *o = j->o;
	uint64_t sum = pkg_checksum(j->pkg);
	int ret;

	if (o->synthetic)
		return plan_profile_synthetic(j->g, sum, o->n_gpus ? o->n_gpus : 1, &j->pf);
#if HAVE_CUDA
	if (!o->profile)
		return gpu_profile(j);
#else
	if (!o->profile)
		return err_set(DPRT_ENODEV,
			       "this dprt has no GPU profiler (the CUDA backend is not built "
			       "in), so it cannot measure %s; give --profile FILE (written by "
			       "the profiler on the GPU machine) or --synthetic-profile (an "
			       "estimate from PAPER.md's figures)",
			       j->pkg_path);
#endif
	ret = plan_profile_read(o->profile, &j->pf);
	if (!ret)
		ret = plan_profile_match(j->pf, o->profile, sum, j->g);
	return ret;
}
