/* SPDX-License-Identifier: MIT */
/*
 * cpu: private face of the CPU reference backend.
 *
 * Kernels compute in fp32 on contiguous row-major tensors. They never
 * allocate: scratch comes from the caller (the model's activation arena).
 * Every element count passed here is below 2^31 (checked when a shape program is built), so
 * BLAS int arguments cannot overflow.
 */
#ifndef DPRT_EXEC_CPU_H
#define DPRT_EXEC_CPU_H

#include <stdatomic.h>

#include "exec/exec.h"

/* ---- models (backend.c) and virtual devices (device.c) ---- */

int cpu_model_create(void *dev, const struct graph *g, const void *weights,
		     struct exec_model **out);
void cpu_model_destroy(struct exec_model *m);
int cpu_model_run(struct exec_model *m, const struct tview *in, struct tview *out);
void cpu_model_shrink(struct exec_model *m);
int cpu_cold_model_create(void *dev, const struct graph *g, const void *weights,
			  const struct plan *p, struct exec_model **out);
int cpu_cold_model_evict(struct exec_model *m);
bool cpu_cold_model_resident(const struct exec_model *m);
int cpu_cold_model_run(struct exec_model *m, const struct tview *in, struct tview *out,
		       struct exec_cold_info *info);
int cpu_cold_model_stream(struct exec_model *m, const _Atomic uint32_t *ready);

/* Simulated device memory: take bytes (-ENOMEM with err_set naming what
 * beyond the device's capacity) or give them back. dev may be NULL (the
 * implicit device: no accounting). */
int cpu_dev_charge(void *dev, uint64_t bytes, const char *what);
void cpu_dev_uncharge(void *dev, uint64_t bytes);

struct link_table;

/* A virtual device. */
struct cpu_dev {
	int id;
	uint64_t cap; /* 0: no limit */
	_Atomic uint64_t used;
	char label[32];
	struct link_table *lt; /* the links it lends and borrows, or NULL */
	uint32_t li;	       /* its index in lt */
};

/* A cold model's state: which layers its plan loads and over which plan
 * link, and their device copy while resident. */
struct cpu_cold {
	const struct graph *g;
	const uint8_t *weights;
	uint8_t *load;	     /* [n_layers]: 1 = LOAD by the plan */
	uint8_t *slot;	     /* [n_layers]: plan link of a LOAD layer */
	uint32_t width;	     /* plan links: the target's and helpers */
	uint64_t *off;	     /* [n_layers]: a LOAD layer's offset in mem */
	uint32_t *fbq;	     /* [n_layers]: transfers fallen back (scratch) */
	uint64_t load_bytes; /* LOAD layers' bytes */
	uint64_t span;	     /* bytes of mem (layers 64-byte aligned) */
	uint64_t dha_bytes;
	void *mem;		       /* the LOAD layers while resident; NULL when evicted */
	const _Atomic uint32_t *ready; /* streaming: the layers read (exec.h) */
};
int cpu_cold_init(struct cpu_cold **out, const struct graph *g, const void *weights,
		  const struct plan *p);
void cpu_cold_fini(void *dev, struct cpu_cold *c);
/* Device bytes a cold model holds while evicted. */
uint64_t cpu_cold_keep(void);
bool cpu_cold_resident(const struct cpu_cold *c);
/* Copy the LOAD layers in if evicted (info: what moved; may be NULL). */
int cpu_cold_bring_in(void *dev, struct cpu_cold *c, struct exec_cold_info *info);
void cpu_cold_evict(void *dev, struct cpu_cold *c);
/* Where layer l's weights are on the device while resident (NULL: in host
 * memory only: DHA, or evicted). */
const void *cpu_cold_layer(const struct cpu_cold *c, uint32_t l);

/* ---- simulated transfer links (cold_pt.c) ---- */

/* Join link table t as device i (exec_ops.dev_join_links). */
int cpu_dev_join_links(void *dev, struct link_table *t, uint32_t i);
/* Leave it (dev_close). */
void cpu_dev_leave_links(struct cpu_dev *d);
/* Copy c's LOAD layers into c->mem over the links: the target's own for
 * its plan link 0, an idle helper's per transfer for the others (else the
 * target's), each transfer holding its link for bytes / DPRT_CPU_LINK_MBS.
 * Fills info's links and fallbacks. Owner thread. */
void cpu_cold_transfer(struct cpu_dev *d, struct cpu_cold *c, struct exec_cold_info *info);
/* Streaming (exec_ops.cold_stream): bring_in waits for each layer. */
void cpu_cold_stream(struct cpu_cold *c, const _Atomic uint32_t *ready);

/* ---- activation memory layout (layout.c) ---- */

#define CPU_NO_OFFSET UINT64_MAX
/* Bytes tensor s takes in the arena: float dtypes are held as fp32. */
uint64_t cpu_tensor_bytes(const struct shape *s);
/* Give every input and activation of g a byte offset in one arena, sharing
 * memory between tensors whose lifetimes do not overlap (outputs live to
 * the end). off[g->n_tensors] gets CPU_NO_OFFSET for weights; work is
 * scratch of 2 * g->n_tensors entries. Returns the arena bytes needed. */
uint64_t cpu_layout_offsets(const struct graph *g, const struct shape *shapes, uint64_t *off,
			    uint32_t *work);

/* ---- convolution and pooling (conv.c) ---- */

/* x[n,c,h,w] * w[k,c/groups,kh,kw] (+ b[k]) -> y[n,k,oh,ow]. */
struct cpu_conv {
	int64_t n, c, h, w;
	int64_t k, kh, kw;
	int64_t oh, ow;
	int64_t sh, sw, ph, pw, dh, dw;
	int64_t groups;
};
/* Floats of scratch cpu_conv2d needs (0 when no im2col is needed). */
int64_t cpu_conv2d_scratch(const struct cpu_conv *p);
void cpu_conv2d(const struct cpu_conv *p, const float *x, const float *w, const float *b, float *y,
		float *col);

/* x[n,c,h,w] -> y[n,c,oh,ow]; window kh x kw, stride sh/sw, padding ph/pw. */
struct cpu_pool {
	int64_t n, c, h, w;
	int64_t kh, kw, sh, sw, ph, pw;
	int64_t oh, ow;
	bool count_include_pad; /* avg only */
};
void cpu_maxpool(const struct cpu_pool *p, const float *x, float *y);
void cpu_avgpool(const struct cpu_pool *p, const float *x, float *y);
/* x[nc, hw] -> y[nc]: mean of each row. */
void cpu_global_avgpool(const float *x, float *y, int64_t nc, int64_t hw);

/* y[n,c,inner] = x * scale[c] + shift[c], then relu if asked. */
void cpu_batchnorm(const float *x, const float *scale, const float *shift, float *y, int64_t n,
		   int64_t c, int64_t inner, bool relu);
void cpu_relu(const float *x, float *y, int64_t n);
/* y = a + b, then relu if asked. */
void cpu_add(const float *a, const float *b, float *y, int64_t n, bool relu);

/* ---- transformer ops (nn.c) ---- */

/* y[0..n) = v. */
void cpu_fill(float *y, float v, int64_t n);

/* y[rows,m] = x[rows,k] . w[m,k]^T (+ b[m]). */
void cpu_linear(const float *x, const float *w, const float *b, float *y, int64_t rows, int64_t k,
		int64_t m);
/* y[i,:] = table[ids[i],:] for i < n. An id outside [0,v) fails with
 * DPRT_EINPUT naming `what` (the ids tensor); y is then partly written. */
int cpu_embedding(const int64_t *ids, const float *table, float *y, int64_t n, int64_t v, int64_t h,
		  const char *what);
/* pos[n,s] from ids[n,s]; mode 0: arange(s) + arg; mode 1: RoBERTa's
 * cumsum(ids != arg) * (ids != arg) + arg. */
void cpu_position_ids(const int64_t *ids, int64_t *pos, int64_t n, int64_t s, int mode,
		      int64_t arg);
/* Row-wise layer norm over h, biased variance, two passes in double. */
void cpu_layernorm(const float *x, const float *gamma, const float *beta, float *y, int64_t rows,
		   int64_t h, float eps);
void cpu_gelu(const float *x, float *y, int64_t n, bool tanh_form);
void cpu_tanh(const float *x, float *y, int64_t n);
/* Max-subtracted softmax of each row of x[rows, cols]. */
void cpu_softmax(const float *x, float *y, int64_t rows, int64_t cols);

/* qkv[n,s,3*heads*d] (+ mask[n,s]) -> y[n,s,heads*d]. */
struct cpu_attn {
	int64_t n, s, heads, d;
	bool causal;
};
/* Floats of scratch cpu_attention needs. */
int64_t cpu_attention_scratch(const struct cpu_attn *p);
void cpu_attention(const struct cpu_attn *p, const float *qkv, const int64_t *mask, float *y,
		   float *scratch);
/* y[n,h] = x[n,row,h] for x[n,s,h]. */
void cpu_take_row(const float *x, float *y, int64_t n, int64_t s, int64_t h, int64_t row);
/* ViT's y[n,1+p,h]: row 0 = cls[h] + pos[0], row 1+i = x[n,:,i] + pos[1+i]
 * for patch features x[n,h,p] (OP_CLS_POS). */
void cpu_cls_pos(const float *x, const float *cls, const float *pos, float *y, int64_t n, int64_t h,
		 int64_t p);

#endif
