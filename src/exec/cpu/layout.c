/* SPDX-License-Identifier: MIT */
/*
 * Activation memory layout: every input and activation tensor gets a byte
 * offset in one arena; tensors whose lifetimes do not overlap share memory.
 * First fit over the live tensors kept sorted by offset: O(tensors^2) once
 * per new shape, never per run.
 */
#include "cpu.h"

#include <string.h>

#define SLOT_ALIGN 64u /* a cache line; also what AVX-512 loads like */

struct layout {
	const struct graph *g;
	const struct shape *shapes;
	uint64_t *off;
	uint32_t *last; /* last node that reads a tensor; UINT32_MAX: kept */
	uint32_t *live; /* tensors holding memory, by ascending offset */
	uint32_t n_live;
	uint64_t end; /* high-water mark */
};

uint64_t cpu_tensor_bytes(const struct shape *s)
{
	bool is_float = s->dtype == DT_F32 || s->dtype == DT_F16 || s->dtype == DT_BF16;

	return (uint64_t)shape_numel(s) * (is_float ? sizeof(float) : dtype_size(s->dtype));
}

static uint64_t slot_bytes(const struct layout *p, uint32_t t)
{
	return ALIGN_UP(cpu_tensor_bytes(&p->shapes[t]), SLOT_ALIGN);
}

static void place(struct layout *p, uint32_t t)
{
	uint64_t size = slot_bytes(p, t), cur = 0;
	uint32_t k;

	for (k = 0; k < p->n_live; k++) {
		uint32_t l = p->live[k];

		if (p->off[l] >= cur + size)
			break;
		cur = MAX(cur, p->off[l] + slot_bytes(p, l));
	}
	memmove(&p->live[k + 1], &p->live[k], sizeof(uint32_t) * (p->n_live - k));
	p->live[k] = t;
	p->n_live++;
	p->off[t] = cur;
	p->end = MAX(p->end, cur + size);
}

/* Give back the memory of tensors nobody reads after node i. */
static void release(struct layout *p, uint32_t i)
{
	uint32_t k, n = 0;

	for (k = 0; k < p->n_live; k++)
		if (p->last[p->live[k]] > i)
			p->live[n++] = p->live[k];
	p->n_live = n;
}

static void find_lifetimes(struct layout *p)
{
	const struct graph *g = p->g;
	uint32_t i, k;

	memset(p->last, 0, sizeof(uint32_t) * g->n_tensors);
	for (i = 0; i < g->n_nodes; i++) {
		const struct node *nd = &g->nodes[i];

		for (k = 0; k < nd->n_in; k++)
			if (nd->in[k] != NO_TENSOR)
				p->last[nd->in[k]] = i;
		p->last[nd->out] = i;
	}
	for (i = 0; i < g->n_outputs; i++)
		p->last[g->outputs[i].tensor] = UINT32_MAX;
}

uint64_t cpu_layout_offsets(const struct graph *g, const struct shape *shapes, uint64_t *off,
			    uint32_t *work)
{
	struct layout p = {
		.g = g,
		.shapes = shapes,
		.off = off,
		.last = work,
		.live = work + g->n_tensors,
	};
	uint32_t i;

	for (i = 0; i < g->n_tensors; i++)
		off[i] = CPU_NO_OFFSET;
	find_lifetimes(&p);
	for (i = 0; i < g->n_inputs; i++)
		place(&p, g->inputs[i].tensor);
	for (i = 0; i < g->n_nodes; i++) {
		place(&p, g->nodes[i].out);
		release(&p, i);
	}
	return ALIGN_UP(p.end, SLOT_ALIGN);
}
