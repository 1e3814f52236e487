/* SPDX-License-Identifier: MIT */
/*
 * The CPU backend's virtual devices and its cold models by plan. A device
 * simulates device memory with a byte budget; a cold model's cold start
 * copies its plan's LOAD layers from the host weight region into memory of
 * its own (the transfer a GPU would make) and leaves the DHA layers in
 * place; an eviction gives that memory back. Runs compute from the host
 * weights either way, so answers equal the backend's whole-model ones. The
 * scheduler drives these exactly as it drives the CUDA backend, so its
 * cold-start path is tested without a GPU.
 */
#include "cpu.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem/link.h"
#include "plan/plan.h"

static int cpu_dev_count(void)
{
	return 1024; /* virtual: as many as asked for */
}

static int cpu_dev_open(int ordinal, void **out)
{
	struct cpu_dev *d;

	if (ordinal < 0)
		return err_set(DPRT_ENODEV, "cpu%d: no such device", ordinal);
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->id = ordinal;
	snprintf(d->label, sizeof(d->label), "cpu%d (virtual)", ordinal);
	*out = d;
	return 0;
}

static void cpu_dev_close(void *dev)
{
	if (dev)
		cpu_dev_leave_links(dev);
	free(dev);
}

static const char *cpu_dev_label(const void *dev)
{
	return dev ? ((const struct cpu_dev *)dev)->label : "cpu";
}

static const char *cpu_dev_model(const void *dev)
{
	UNUSED(dev);
	return "cpu";
}

static uint64_t cpu_dev_used(const void *dev)
{
	return dev ? atomic_load_explicit(&((const struct cpu_dev *)dev)->used,
					  memory_order_relaxed) :
		     0;
}

void cpu_dev_set_capacity(void *dev, uint64_t bytes)
{
	((struct cpu_dev *)dev)->cap = bytes;
}

int cpu_dev_charge(void *dev, uint64_t bytes, const char *what)
{
	struct cpu_dev *d = dev;
	uint64_t used;
	char a[32], b[32];

	if (!d || !bytes)
		return 0;
	used = atomic_load_explicit(&d->used, memory_order_relaxed);
	if (d->cap && used + bytes > d->cap)
		return err_set(-ENOMEM, "%s: out of device memory: %s needs %s, %s free", d->label,
			       what, fmt_bytes(bytes, a, sizeof(a)),
			       fmt_bytes(d->cap - used, b, sizeof(b)));
	atomic_store_explicit(&d->used, used + bytes, memory_order_relaxed);
	return 0;
}

void cpu_dev_uncharge(void *dev, uint64_t bytes)
{
	struct cpu_dev *d = dev;

	if (d)
		atomic_store_explicit(&d->used,
				      atomic_load_explicit(&d->used, memory_order_relaxed) - bytes,
				      memory_order_relaxed);
}

/* ---------------------------------------------------------- cold models */

static int cpu_profile(void *const *devs, uint32_t n_devs, const struct graph *g,
		       const void *weights, uint64_t pkg_checksum, struct plan_profile **out)
{
	UNUSED(devs);
	UNUSED(weights);
	return plan_profile_synthetic(g, pkg_checksum, n_devs ? n_devs : 1, out);
}

int cpu_cold_init(struct cpu_cold **out, const struct graph *g, const void *weights,
		  const struct plan *p)
{
	struct cpu_cold *c;
	uint32_t i;

	if (p->prof.n_layers != g->n_layers)
		return err_set(DPRT_EBADPLAN, "%s: the plan has %u layers, the model %u", g->name,
			       p->prof.n_layers, g->n_layers);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->load = calloc(g->n_layers + 1, 1);
	c->slot = calloc(g->n_layers + 1, 1);
	c->off = calloc(g->n_layers + 1, sizeof(*c->off));
	c->fbq = calloc(g->n_layers + 1, sizeof(*c->fbq));
	if (!c->load || !c->slot || !c->off || !c->fbq) {
		cpu_cold_fini(NULL, c);
		return -ENOMEM;
	}
	c->g = g;
	c->weights = weights;
	c->width = p->width ? p->width : 1;
	for (i = 0; i < g->n_layers; i++) {
		c->load[i] = p->rows[i].place == PLAN_LOAD;
		if (!c->load[i]) {
			c->dha_bytes += g->layers[i].nbytes;
			continue;
		}
		c->slot[i] = (uint8_t)(p->rows[i].link < c->width ? p->rows[i].link : 0);
		c->off[i] = c->span;
		c->span += ALIGN_UP(g->layers[i].nbytes, 64);
		c->load_bytes += g->layers[i].nbytes;
	}
	*out = c;
	return 0;
}

void cpu_cold_evict(void *dev, struct cpu_cold *c)
{
	if (!c || !c->mem)
		return;
	free(c->mem);
	c->mem = NULL;
	cpu_dev_uncharge(dev, c->load_bytes);
}

void cpu_cold_fini(void *dev, struct cpu_cold *c)
{
	if (!c)
		return;
	cpu_cold_evict(dev, c);
	free(c->load);
	free(c->slot);
	free(c->off);
	free(c->fbq);
	free(c);
}

uint64_t cpu_cold_keep(void)
{
	return CPU_COLD_KEEP;
}

bool cpu_cold_resident(const struct cpu_cold *c)
{
	return c->mem != NULL;
}

void cpu_cold_stream(struct cpu_cold *c, const _Atomic uint32_t *ready)
{
	c->ready = ready;
}

/* Streaming: wait until layer i is read (runs read every layer in place,
 * so DHA layers are waited for too). */
static int wait_layer(const struct cpu_cold *c, uint32_t i)
{
	uint32_t v, spins = 0;

	/* Acquire: pairs with the reader's release of the watermark. */
	while ((v = atomic_load_explicit(c->ready, memory_order_acquire)) <= i) {
		if (++spins > 64)
			usleep(20);
	}
	if (v == EXEC_STREAM_FAILED)
		return err_set(DPRT_EBADPKG, "%s: reading its weights failed at or before layer %u",
			       c->g->name, i);
	return 0;
}

const void *cpu_cold_layer(const struct cpu_cold *c, uint32_t l)
{
	return c->mem && c->load[l] ? (const char *)c->mem + c->off[l] : NULL;
}

/* The transfer: the LOAD layers' ranges into device memory, over the
 * links of the plan (cold_pt.c). */
int cpu_cold_bring_in(void *dev, struct cpu_cold *c, struct exec_cold_info *info)
{
	const struct graph *g = c->g;
	struct exec_cold_info local;
	uint32_t i;
	int ret;

	if (!info)
		info = &local;
	*info = (struct exec_cold_info){.bytes_dha = c->dha_bytes};
	if (c->mem)
		return 0;
	ret = cpu_dev_charge(dev, c->load_bytes, g->name);
	if (ret)
		return ret;
	c->mem = aligned_alloc(64, c->span ? c->span : 64);
	if (!c->mem) {
		cpu_dev_uncharge(dev, c->load_bytes);
		return err_set(-ENOMEM, "%s: out of memory for its device copy", g->name);
	}
	if (c->ready) { /* streamed from disk: in order, each layer once read */
		for (i = 0; i < g->n_layers; i++) {
			ret = wait_layer(c, i);
			if (ret) {
				cpu_cold_evict(dev, c);
				return ret;
			}
			if (c->load[i])
				memcpy((char *)c->mem + c->off[i], c->weights + g->layers[i].offset,
				       g->layers[i].nbytes);
		}
		info->links = c->load_bytes ? 1 : 0;
	} else {
		cpu_cold_transfer(dev, c, info);
	}
	info->cold = true;
	info->bytes_loaded = c->load_bytes;
	return 0;
}

const struct exec_ops cpu_backend = {
	.name = "cpu",
	.dev_count = cpu_dev_count,
	.dev_open = cpu_dev_open,
	.dev_close = cpu_dev_close,
	.dev_label = cpu_dev_label,
	.dev_model = cpu_dev_model,
	.dev_used = cpu_dev_used,
	.model_create = cpu_model_create,
	.model_destroy = cpu_model_destroy,
	.model_run = cpu_model_run,
	.model_shrink = cpu_model_shrink,
	.profile = cpu_profile,
	.cold_create = cpu_cold_model_create,
	.cold_evict = cpu_cold_model_evict,
	.cold_resident = cpu_cold_model_resident,
	.cold_run = cpu_cold_model_run,
	.dev_join_links = cpu_dev_join_links,
	.cold_stream = cpu_cold_model_stream,
};
