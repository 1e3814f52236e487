/* SPDX-License-Identifier: MIT */
/*
 * exec: backends behind one vtable, and the executor.
 *
 * A backend model is made from a graph plus its weight region in host
 * memory (package layout, g->weights_size bytes). The region must outlive
 * the model: the host weight store owns it, and backends may read it in
 * place (the CPU backend does; the CUDA backend's DHA layers do).
 */
#ifndef DPRT_EXEC_H
#define DPRT_EXEC_H

#include "model/model.h"

/* A tensor passed in or out of a run. For inputs, shape.ndim == 0 (and
 * data == NULL) marks an omitted optional input. */
struct tview {
	struct shape shape;
	void *data;
	uint64_t nbytes;
};

struct exec_model;

/* Where a layer's weights are while its model runs (model_create_placed). */
enum exec_place {
	PLACE_LOAD = 0, /* copied into device memory when the model is made */
	PLACE_DHA = 1,	/* read in place from host memory by the kernels (direct
			 * host access): the weight region must be pinned and
			 * device-mapped, i.e. a host weight store (mem.h) */
};

struct exec_ops {
	const char *name;
	/* Make a runnable model. dev: backend's device handle (NULL for cpu).
	 * Called by the thread that owns the device. */
	int (*model_create)(void *dev, const struct graph *g, const void *weights,
			    struct exec_model **out);
	void (*model_destroy)(struct exec_model *m);
	/* Run one inference. in[g->n_inputs]; out[g->n_outputs] is filled with
	 * shapes and pointers to buffers owned by the model, valid until the
	 * next run or destroy. Bad input (shape, dtype, token id) returns an
	 * error with err_set and leaves the model usable. */
	int (*model_run)(struct exec_model *m, const struct tview *in, struct tview *out);
	/* Optional (NULL: the backend has no device memory; use model_create).
	 * Like model_create, with place[g->n_layers] giving each layer's enum
	 * exec_place; place == NULL means every layer PLACE_LOAD. */
	int (*model_create_placed)(void *dev, const struct graph *g, const void *weights,
				   const uint8_t *place, struct exec_model **out);
};

/* The CPU reference backend (OpenBLAS GEMMs, plain C elsewhere).
 * Computes in fp32 whatever the weight dtype; FP16/BF16 outputs are
 * rounded from fp32. */
extern const struct exec_ops cpu_backend;
/* Threads the CPU backend's GEMMs may use (0 = BLAS default). */
void cpu_set_threads(int n);

/* The CUDA backend (cuBLAS GEMMs, cuDNN convolutions and pooling, dprt's
 * own kernels elsewhere; fp32 without TF32, fp16/bf16 with fp32
 * accumulation). Its dev argument is a struct cuda_dev from
 * cuda_device_open; a model runs on its device's thread only. After the
 * first run of an input shape, runs of that shape replay a CUDA graph
 * (unless DPRT_CUDA_GRAPHS=0 was set when the model was made). */
extern const struct exec_ops cuda_backend;
struct cuda_dev;
/*
 * Open GPU `ordinal` (CUDA numbering) for the calling thread, which owns it
 * from then on: load the driver (dlopen), retain the primary context, make
 * the streams, cuBLAS and cuDNN handles, load the kernels and make the
 * device memory pool. On a machine without a driver or GPU: DPRT_ENODEV,
 * err_msg "no GPU available: ...". Other failures: an error with err_set.
 */
int cuda_device_open(int ordinal, struct cuda_dev **out);
/* Close a device; every model made on it must be destroyed first. */
void cuda_device_close(struct cuda_dev *d);
/* Number of GPUs the driver sees; 0 without driver. Any thread. */
int cuda_device_count(void);
/* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs" for logs. */
const char *cuda_device_name(const struct cuda_dev *d);
/* Bytes of device memory the device's pool has reserved / handed out. */
uint64_t cuda_device_reserved(const struct cuda_dev *d);
uint64_t cuda_device_used(const struct cuda_dev *d);

#endif
