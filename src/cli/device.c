/* SPDX-License-Identifier: MIT */
/*
 * The devices of the command line: the one `dprt run` runs on, and the
 * ones `dprt plan` profiles on, through exec.h's device layer (the build's
 * GPU backend, exec_gpu_backend, or none).
 */
#include "cli/cli.h"
#include "exec/exec.h"
#include "mem/mem.h"

#include <stdio.h>

#define NO_GPU_BACKEND "this dprt was built without CUDA (see ./configure's summary)"

/* ---------------------------------------------------------- dprt run */

const char *cli_device_label(const struct exec_ops *be, void *dev)
{
	return dev && be->dev_label ? be->dev_label(dev) : be->name;
}

int cli_open_device(int gpu, const struct exec_ops **be, void **dev)
{
	*be = &cpu_backend;
	*dev = NULL;
	if (gpu < 0)
		return 0;
	if (!exec_gpu_backend)
		return err_set(DPRT_ENODEV, NO_GPU_BACKEND "; use --gpus cpu");
	*be = exec_gpu_backend;
	return exec_gpu_backend->dev_open(gpu, dev);
}

void cli_close_device(const struct exec_ops *be, void *dev)
{
	if (dev)
		be->dev_close(dev);
}

/* --------------------------------------------------------- dprt plan */

/* Measure the package with the GPU profiler on the GPUs of --gpus (GPU 0
 * without it), the first as the target. */
static int gpu_profile(struct plan_job *j)
{
	const struct exec_ops *be = exec_gpu_backend;
	const struct plan_opts *o = j->o;
	void *devs[PLAN_MAX_GPUS] = {0};
	struct hoststore *hs = NULL;
	uint32_t n = o->n_gpus ? o->n_gpus : 1, k;
	char why[400];
	int ret = 0;

	for (k = 0; k < n && !ret; k++)
		ret = be->dev_open(o->n_gpus ? o->gpu_ids[k] : 0, &devs[k]);
	if (ret == DPRT_ENODEV) {
		snprintf(why, sizeof(why), "%s", err_msg(ret));
		ret = err_set(ret,
			      "no GPU to profile %s on (%s); give --profile FILE (written "
			      "by the profiler on the GPU machine) or --synthetic-profile (an "
			      "estimate from PAPER.md's figures)",
			      j->pkg_path, why);
	}
	if (!ret)
		ret = hoststore_load(j->pkg, &hs);
	if (!ret && j->tty)
		fprintf(stderr, "profiling %s on %u GPU%s ... ", j->g->name, n, n == 1 ? "" : "s");
	if (!ret)
		ret = be->profile(devs, n, j->g, hoststore_base(hs), pkg_checksum(j->pkg), &j->pf);
	if (j->tty)
		fprintf(stderr, "\r%40s\r", "");
	hoststore_destroy(hs);
	for (k = 0; k < n; k++)
		if (devs[k])
			be->dev_close(devs[k]);
	return ret;
}

int cli_get_profile(struct plan_job *j)
{
	const struct plan_opts *o = j->o;
	uint64_t sum = pkg_checksum(j->pkg);
	int ret;

	if (o->synthetic)
		return plan_profile_synthetic(j->g, sum, o->n_gpus ? o->n_gpus : 1, &j->pf);
	if (!o->profile && exec_has_cold(exec_gpu_backend))
		return gpu_profile(j);
	if (!o->profile)
		return err_set(DPRT_ENODEV,
			       "this dprt has no GPU profiler (the CUDA backend is not built "
			       "in), so it cannot measure %s; give --profile FILE (written by "
			       "the profiler on the GPU machine) or --synthetic-profile (an "
			       "estimate from PAPER.md's figures)",
			       j->pkg_path);
	ret = plan_profile_read(o->profile, &j->pf);
	if (!ret)
		ret = plan_profile_match(j->pf, o->profile, sum, j->g);
	return ret;
}
