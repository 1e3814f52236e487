/* SPDX-License-Identifier: MIT */
/*
 * The CUDA backend's device and cold-start members of cuda_backend
 * (device.c): exec.h's device layer over the cuda_* functions.
 */
#ifndef DPRT_EXEC_CUDA_DEVICE_H
#define DPRT_EXEC_CUDA_DEVICE_H

#include "exec/cuda/cuda.h"
#include "exec/exec.h"

int cudadev_count(void);
int cudadev_open(int ordinal, void **out);
void cudadev_close(void *dev);
const char *cudadev_label(const void *dev);
const char *cudadev_model(const void *dev);
uint64_t cudadev_used(const void *dev);
int cudadev_profile(void *const *devs, uint32_t n_devs, const struct graph *g, const void *weights,
		    uint64_t pkg_checksum, struct plan_profile **out);
int cudadev_cold_create(void *dev, const struct graph *g, const void *weights, const struct plan *p,
			struct exec_model **out);
int cudadev_cold_evict(struct exec_model *m);
bool cudadev_cold_resident(const struct exec_model *m);
int cudadev_cold_run(struct exec_model *m, const struct tview *in, struct tview *out,
		     struct exec_cold_info *info);
bool cudadev_cold_overlaps(const struct exec_model *m, const struct exec_model *other);
/* Serving's link table (cold_serve.c): join as device i on d's thread
 * (its link is made, peer access enabled with the GPUs that joined);
 * leave before d is closed (waits out a borrower's claim). */
int cudadev_join_links(void *dev, struct link_table *t, uint32_t i);
void cudadev_leave_links(struct cuda_dev *d);

#endif
