/* SPDX-License-Identifier: MIT */
/*
 * The CPU reference backend: a model is the graph, fp32 weights (in place
 * or one converted copy) and a small cache of shape programs (activation layouts), one per
 * recently seen input shape. A run with a cached shape allocates nothing.
 * A model is used by one thread at a time (its worker).
 */
#include "cpu.h"

#include <cblas.h>
#include <errno.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#define CPU_PROGS 4		      /* input shapes whose programs are kept */
#define ELEM_LIMIT ((int64_t)1 << 31) /* BLAS takes int sizes */

/* The activation layout for one set of input shapes. */
struct cpu_prog {
	bool valid;
	uint64_t stamp;	      /* last use, for LRU replacement */
	struct shape *key;    /* [n_inputs]: input shapes as given */
	struct shape *shapes; /* [n_tensors] */
	uint64_t *off;	      /* [n_tensors]: arena offsets */
	uint64_t scratch_off; /* float scratch for im2col / attention scores */
	uint64_t bytes;	      /* arena bytes needed */
};

struct exec_model {
	const struct graph *g;
	const float **w;		      /* [n_tensors]: fp32 weight data, NULL for others */
	float *wcopy;			      /* converted weights, when not used in place */
	void **ptr;			      /* [n_tensors]: input / activation data of this run */
	struct shape *given;		      /* [n_inputs]: this run's input shapes */
	uint32_t *work;			      /* layout scratch */
	struct cpu_prog progs[CPU_PROGS + 1]; /* the last: where a new one is built */
	uint64_t clock;
	char *arena;
	uint64_t arena_cap;
	void **out; /* [n_outputs]: output buffers in the output dtype */
	uint64_t *out_cap;
	void *dev;	       /* virtual device (device.c), or NULL */
	uint64_t charged;      /* its device bytes for this model */
	struct cpu_cold *cold; /* a cold model by plan, else NULL */
	const void *hostw;     /* the host weight region */
};

static bool dt_is_float(uint8_t dt)
{
	return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16;
}

#if defined(__x86_64__)
/* FP16 -> FP32 is exact, so the F16C instruction gives f16_to_f32's result
 * ten times faster: it matters when a large FP16 model is created. */
__attribute__((target("avx,f16c"))) static int64_t f16_to_f32_f16c(const uint16_t *h, float *dst,
								   int64_t n)
{
	int64_t i;

	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i,
				 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
	return i;
}
#endif

/* Elements converted by a fast path; the rest is left to the caller. */
static int64_t f16_to_f32_fast(const uint16_t *h, float *dst, int64_t n)
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx"))
		return f16_to_f32_f16c(h, dst, n);
#endif
	UNUSED(h);
	UNUSED(dst);
	UNUSED(n);
	return 0;
}

static void to_f32(const void *src, enum dtype dt, float *dst, int64_t n)
{
	const uint16_t *h = src;
	int64_t i;

	if (dt == DT_F32) {
		memcpy(dst, src, sizeof(float) * (size_t)n);
		return;
	}
	i = dt == DT_F16 ? f16_to_f32_fast(h, dst, n) : 0;
	for (; i < n; i++)
		dst[i] = dt == DT_F16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
}

static void from_f32(const float *src, enum dtype dt, void *dst, int64_t n)
{
	uint16_t *h = dst;
	int64_t i;

	if (dt == DT_F32) {
		memcpy(dst, src, sizeof(float) * (size_t)n);
		return;
	}
	for (i = 0; i < n; i++)
		h[i] = dt == DT_F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
}

/* ------------------------------------------------------------ lifecycle */

static int load_weights(struct exec_model *m, const void *weights)
{
	const struct graph *g = m->g;
	bool in_place = g->wdtype == DT_F32 && (uintptr_t)weights % sizeof(float) == 0;
	uint64_t total = 0;
	float *dst;
	uint32_t t;

	for (t = 0; t < g->n_tensors; t++)
		if (g->tensors[t].kind == TK_WEIGHT)
			total += g->tensors[t].nbytes / dtype_size((enum dtype)g->wdtype);
	if (!in_place) {
		m->wcopy = malloc(sizeof(float) * (total ? total : 1));
		if (!m->wcopy)
			return -ENOMEM;
	}
	dst = m->wcopy;
	for (t = 0; t < g->n_tensors; t++) {
		const struct tensor *w = &g->tensors[t];
		const char *src = (const char *)weights + w->offset;
		int64_t n = (int64_t)(w->nbytes / dtype_size((enum dtype)w->dtype));

		if (w->kind != TK_WEIGHT)
			continue;
		if (in_place) {
			m->w[t] = (const float *)(const void *)src;
			continue;
		}
		to_f32(src, (enum dtype)w->dtype, dst, n);
		m->w[t] = dst;
		dst += n;
	}
	return 0;
}

void cpu_model_destroy(struct exec_model *m)
{
	uint32_t i;

	if (!m)
		return;
	cpu_cold_fini(m->dev, m->cold);
	cpu_dev_uncharge(m->dev, m->charged);
	for (i = 0; i <= CPU_PROGS; i++) {
		free(m->progs[i].key);
		free(m->progs[i].shapes);
		free(m->progs[i].off);
	}
	for (i = 0; m->out && i < m->g->n_outputs; i++)
		free(m->out[i]);
	free(m->out);
	free(m->out_cap);
	free(m->arena);
	free(m->work);
	free(m->given);
	free(m->ptr);
	free(m->wcopy);
	free(m->w);
	free(m);
}

static int alloc_tables(struct exec_model *m)
{
	const struct graph *g = m->g;
	uint32_t nt = g->n_tensors, i;

	m->w = calloc(nt, sizeof(*m->w));
	m->ptr = calloc(nt, sizeof(*m->ptr));
	m->given = calloc(g->n_inputs, sizeof(*m->given));
	m->work = calloc(2 * (size_t)nt, sizeof(*m->work));
	m->out = calloc(g->n_outputs, sizeof(*m->out));
	m->out_cap = calloc(g->n_outputs, sizeof(*m->out_cap));
	if (!m->w || !m->ptr || !m->given || !m->work || !m->out || !m->out_cap)
		return -ENOMEM;
	for (i = 0; i <= CPU_PROGS; i++) {
		struct cpu_prog *pl = &m->progs[i];

		pl->key = calloc(g->n_inputs, sizeof(*pl->key));
		pl->shapes = calloc(nt, sizeof(*pl->shapes));
		pl->off = calloc(nt, sizeof(*pl->off));
		if (!pl->key || !pl->shapes || !pl->off)
			return -ENOMEM;
	}
	return 0;
}

/* A model computing from weights; on a virtual device it is charged
 * `charge` bytes of simulated device memory. */
static int make_model(void *dev, const struct graph *g, const void *weights, uint64_t charge,
		      struct exec_model **out)
{
	struct exec_model *m;
	int ret;

	if (!weights && g->weights_size)
		return err_set(-EINVAL, "%s: no weight region given", g->name);
	ret = cpu_dev_charge(dev, charge, g->name);
	if (ret)
		return ret;
	m = calloc(1, sizeof(*m));
	if (!m) {
		cpu_dev_uncharge(dev, charge);
		return -ENOMEM;
	}
	m->g = g;
	m->dev = dev;
	m->charged = charge;
	m->hostw = weights;
	ret = alloc_tables(m);
	if (!ret)
		ret = load_weights(m, weights);
	if (ret)
		goto out_destroy;
	*out = m;
	return 0;

out_destroy:
	cpu_model_destroy(m);
	return err_set(ret, "%s: out of memory creating the CPU model", g->name);
}

int cpu_model_create(void *dev, const struct graph *g, const void *weights, struct exec_model **out)
{
	return make_model(dev, g, weights, g->weights_size, out);
}

int cpu_cold_model_create(void *dev, const struct graph *g, const void *weights,
			  const struct plan *p, struct exec_model **out)
{
	struct exec_model *m;
	int ret;

	ret = make_model(dev, g, weights, cpu_cold_keep(), &m);
	if (ret)
		return ret;
	ret = cpu_cold_init(&m->cold, g, weights, p);
	if (ret) {
		cpu_model_destroy(m);
		return ret;
	}
	*out = m;
	return 0;
}

/* The layer whose range holds byte off of the weight region (layers lie
 * in increasing offsets). */
static uint32_t layer_at(const struct graph *g, uint64_t off)
{
	uint32_t lo = 0, hi = g->n_layers;

	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (g->layers[mid].offset <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Point the fp32 weights used in place at their layers' device copies
 * while the cold model is resident, else at the host region; so runs
 * compute from what the transfer moved. Converted weights stay. */
static void bind_cold(struct exec_model *m)
{
	const struct graph *g = m->g;
	const void *dst;
	uint32_t t, l;

	if (m->wcopy || !g->n_layers)
		return;
	for (t = 0; t < g->n_tensors; t++) {
		const struct tensor *w = &g->tensors[t];

		if (w->kind != TK_WEIGHT)
			continue;
		l = layer_at(g, w->offset);
		dst = cpu_cold_layer(m->cold, l);
		m->w[t] = dst ? (const float *)(const void *)((const char *)dst + w->offset -
							      g->layers[l].offset) :
				(const float *)(const void *)((const char *)m->hostw + w->offset);
	}
}

int cpu_cold_model_stream(struct exec_model *m, const _Atomic uint32_t *ready)
{
	if (!m->cold)
		return err_set(-EINVAL, "%s: not a cold model", m->g->name);
	if (ready && m->wcopy) /* converted to fp32 when made */
		return err_set(-EOPNOTSUPP, "%s: its weights were converted when it was made",
			       m->g->name);
	cpu_cold_stream(m->cold, ready);
	return 0;
}

int cpu_cold_model_evict(struct exec_model *m)
{
	if (!m->cold)
		return err_set(-EINVAL, "%s: not a cold model", m->g->name);
	cpu_cold_evict(m->dev, m->cold);
	bind_cold(m);
	return 0;
}

bool cpu_cold_model_resident(const struct exec_model *m)
{
	return !m->cold || cpu_cold_resident(m->cold);
}

/* ----------------------------------------------------------- parameters */

static void conv_params(const struct cpu_prog *pl, const struct node *nd, struct cpu_conv *p)
{
	const struct shape *x = &pl->shapes[nd->in[0]], *w = &pl->shapes[nd->in[1]];
	const struct shape *y = &pl->shapes[nd->out];

	*p = (struct cpu_conv){
		.n = x->dims[0],
		.c = x->dims[1],
		.h = x->dims[2],
		.w = x->dims[3],
		.k = w->dims[0],
		.kh = w->dims[2],
		.kw = w->dims[3],
		.oh = y->dims[2],
		.ow = y->dims[3],
		.sh = nd->ia[0],
		.sw = nd->ia[1],
		.ph = nd->ia[2],
		.pw = nd->ia[3],
		.dh = nd->ia[4],
		.dw = nd->ia[5],
		.groups = nd->ia[6],
	};
}

static void pool_params(const struct cpu_prog *pl, const struct node *nd, struct cpu_pool *p)
{
	const struct shape *x = &pl->shapes[nd->in[0]], *y = &pl->shapes[nd->out];

	*p = (struct cpu_pool){
		.n = x->dims[0],
		.c = x->dims[1],
		.h = x->dims[2],
		.w = x->dims[3],
		.kh = nd->ia[0],
		.kw = nd->ia[1],
		.sh = nd->ia[2],
		.sw = nd->ia[3],
		.ph = nd->ia[4],
		.pw = nd->ia[5],
		.oh = y->dims[2],
		.ow = y->dims[3],
		.count_include_pad = nd->ia[6] != 0,
	};
}

static void attn_params(const struct cpu_prog *pl, const struct node *nd, struct cpu_attn *p)
{
	const struct shape *x = &pl->shapes[nd->in[0]];

	*p = (struct cpu_attn){
		.n = x->dims[0],
		.s = x->dims[1],
		.heads = nd->ia[0],
		.d = x->dims[2] / 3 / nd->ia[0],
		.causal = nd->ia[1] != 0,
	};
}

/* Floats of scratch node nd needs. */
static int64_t node_scratch(const struct cpu_prog *pl, const struct node *nd)
{
	struct cpu_conv cp;
	struct cpu_attn ap;

	if (nd->op == OP_CONV2D) {
		conv_params(pl, nd, &cp);
		return cpu_conv2d_scratch(&cp);
	}
	if (nd->op == OP_ATTENTION) {
		attn_params(pl, nd, &ap);
		return cpu_attention_scratch(&ap);
	}
	return 0;
}

/* ------------------------------------------------------------- programs */

static bool shape_same(const struct shape *a, const struct shape *b)
{
	return a->dtype == b->dtype && a->ndim == b->ndim &&
	       !memcmp(a->dims, b->dims, sizeof(int64_t) * MIN(a->ndim, MAX_DIMS));
}

static bool prog_matches(const struct exec_model *m, const struct cpu_prog *pl)
{
	uint32_t i;

	if (!pl->valid)
		return false;
	for (i = 0; i < m->g->n_inputs; i++)
		if (!shape_same(&pl->key[i], &m->given[i]))
			return false;
	return true;
}

static int check_sizes(const struct graph *g, const struct cpu_prog *pl, int64_t scratch)
{
	uint32_t t;

	for (t = 0; t < g->n_tensors; t++)
		if (shape_numel(&pl->shapes[t]) >= ELEM_LIMIT)
			return err_set(DPRT_EUNSUP,
				       "%s: tensor %s has %lld elements, more than the CPU "
				       "backend handles",
				       g->name, g->tensors[t].name,
				       (long long)shape_numel(&pl->shapes[t]));
	if (scratch >= ELEM_LIMIT)
		return err_set(DPRT_EUNSUP,
			       "%s: a convolution or attention needs %lld "
			       "floats of scratch, more than the CPU backend handles",
			       g->name, (long long)scratch);
	return 0;
}

/* Make room for program pl: the arena and the output buffers only grow. */
static int grow_buffers(struct exec_model *m, const struct cpu_prog *pl)
{
	const struct graph *g = m->g;
	uint32_t o;

	if (pl->bytes > m->arena_cap) {
		free(m->arena);
		m->arena_cap = 0;
		m->arena = aligned_alloc(64, ALIGN_UP(pl->bytes, 64));
		if (!m->arena)
			return -ENOMEM;
		m->arena_cap = pl->bytes;
	}
	for (o = 0; o < g->n_outputs; o++) {
		const struct io_desc *io = &g->outputs[o];
		uint64_t need = (uint64_t)shape_numel(&pl->shapes[io->tensor]) *
				dtype_size((enum dtype)io->dtype);

		if (need <= m->out_cap[o])
			continue;
		free(m->out[o]);
		m->out_cap[o] = 0;
		m->out[o] = malloc(need);
		if (!m->out[o])
			return -ENOMEM;
		m->out_cap[o] = need;
	}
	return 0;
}

void cpu_model_shrink(struct exec_model *m)
{
	uint32_t o;

	if (m->arena_cap > EXEC_SHRINK_KEEP) {
		free(m->arena);
		m->arena = NULL;
		m->arena_cap = 0;
	}
	for (o = 0; o < m->g->n_outputs; o++) {
		if (m->out_cap[o] <= EXEC_SHRINK_KEEP)
			continue;
		free(m->out[o]);
		m->out[o] = NULL;
		m->out_cap[o] = 0;
	}
}

static int build_prog(struct exec_model *m, struct cpu_prog *pl)
{
	const struct graph *g = m->g;
	int64_t scratch = 0;
	uint64_t bytes;
	uint32_t i;
	int ret;

	pl->valid = false;
	ret = graph_infer_shapes(g, m->given, pl->shapes);
	if (ret)
		return ret;
	for (i = 0; i < g->n_nodes; i++)
		scratch = MAX(scratch, node_scratch(pl, &g->nodes[i]));
	ret = check_sizes(g, pl, scratch);
	if (ret)
		return ret;
	bytes = cpu_layout_offsets(g, pl->shapes, pl->off, m->work);
	pl->scratch_off = bytes;
	pl->bytes = bytes + sizeof(float) * (uint64_t)scratch;
	ret = grow_buffers(m, pl);
	if (ret)
		return err_set(ret, "%s: out of memory for %llu bytes of activations", g->name,
			       (unsigned long long)pl->bytes);
	memcpy(pl->key, m->given, sizeof(*pl->key) * g->n_inputs);
	pl->valid = true;
	return 0;
}

/* The program for this run's input shapes (m->given): cached, or built in the
 * spare slot and then swapped with the least recently used one, so input
 * that fails to build evicts nothing. */
static int get_prog(struct exec_model *m, struct cpu_prog **out)
{
	struct cpu_prog *victim = &m->progs[0], tmp;
	int i, ret;

	for (i = 0; i < CPU_PROGS; i++) {
		struct cpu_prog *pl = &m->progs[i];

		if (prog_matches(m, pl)) {
			pl->stamp = ++m->clock;
			*out = pl;
			/* no-op unless model_shrink gave the buffers back */
			ret = grow_buffers(m, pl);
			return ret ? err_set(ret,
					     "%s: out of memory for %llu bytes of "
					     "activations",
					     m->g->name, (unsigned long long)pl->bytes) :
				     0;
		}
		if (!pl->valid || (victim->valid && pl->stamp < victim->stamp))
			victim = pl;
	}
	ret = build_prog(m, &m->progs[CPU_PROGS]);
	if (ret)
		return ret;
	tmp = *victim;
	*victim = m->progs[CPU_PROGS];
	m->progs[CPU_PROGS] = tmp;
	m->progs[CPU_PROGS].valid = false;
	victim->stamp = ++m->clock;
	*out = victim;
	return 0;
}

/* ---------------------------------------------------------------- inputs */

static void take_shapes(struct exec_model *m, const struct tview *in)
{
	uint32_t i;
	int d;

	for (i = 0; i < m->g->n_inputs; i++) {
		const struct shape *s = &in[i].shape;
		struct shape *k = &m->given[i];

		memset(k, 0, sizeof(*k));
		k->dtype = s->dtype;
		k->ndim = s->ndim;
		for (d = 0; d < MIN(s->ndim, MAX_DIMS); d++)
			k->dims[d] = s->dims[d];
	}
}

static int check_data(const struct exec_model *m, const struct tview *in)
{
	uint32_t i;

	for (i = 0; i < m->g->n_inputs; i++) {
		const struct shape *s = &m->given[i];
		uint64_t need = (uint64_t)shape_numel(s) * dtype_size((enum dtype)s->dtype);

		if (!s->ndim || (in[i].data && in[i].nbytes >= need))
			continue;
		return err_set(DPRT_EINPUT, "%s: %llu bytes of data given, its shape needs %llu",
			       m->g->inputs[i].name,
			       (unsigned long long)(in[i].data ? in[i].nbytes : 0),
			       (unsigned long long)need);
	}
	return 0;
}

static void fill_input(const struct io_desc *io, void *dst, int64_t n)
{
	int64_t i;

	switch (io->dtype) {
	case DT_F32:
	case DT_F16:
	case DT_BF16:
		cpu_fill(dst, (float)io->fill, n);
		break;
	case DT_I64:
		for (i = 0; i < n; i++)
			((int64_t *)dst)[i] = (int64_t)io->fill;
		break;
	case DT_I32:
		for (i = 0; i < n; i++)
			((int32_t *)dst)[i] = (int32_t)io->fill;
		break;
	default:
		memset(dst, (int)io->fill, (size_t)n);
		break;
	}
}

/* Bring input i into its arena slot: fp32 for float inputs, else as is. */
static void load_input(struct exec_model *m, const struct cpu_prog *pl, uint32_t i,
		       const struct tview *v)
{
	const struct io_desc *io = &m->g->inputs[i];
	const struct shape *s = &pl->shapes[io->tensor];
	void *dst = m->ptr[io->tensor];
	int64_t n = shape_numel(s);

	if (!v->shape.ndim)
		fill_input(io, dst, n);
	else if (dt_is_float(io->dtype))
		to_f32(v->data, (enum dtype)io->dtype, dst, n);
	else
		memcpy(dst, v->data, (size_t)n * dtype_size((enum dtype)io->dtype));
}

/* ------------------------------------------------------------------ run */

static const void *in_ptr(const struct exec_model *m, const struct node *nd, int k)
{
	uint32_t t;

	if (k >= nd->n_in || nd->in[k] == NO_TENSOR)
		return NULL;
	t = nd->in[k];
	if (m->g->tensors[t].kind == TK_WEIGHT)
		return m->w[t];
	return m->ptr[t];
}

static void run_conv(struct exec_model *m, const struct cpu_prog *pl, const struct node *nd)
{
	struct cpu_conv p;

	conv_params(pl, nd, &p);
	cpu_conv2d(&p, in_ptr(m, nd, 0), in_ptr(m, nd, 1), in_ptr(m, nd, 2), m->ptr[nd->out],
		   (float *)(void *)(m->arena + pl->scratch_off));
}

static void run_pool(struct exec_model *m, const struct cpu_prog *pl, const struct node *nd)
{
	struct cpu_pool p;

	pool_params(pl, nd, &p);
	if (nd->op == OP_MAXPOOL)
		cpu_maxpool(&p, in_ptr(m, nd, 0), m->ptr[nd->out]);
	else
		cpu_avgpool(&p, in_ptr(m, nd, 0), m->ptr[nd->out]);
}

static void run_attention(struct exec_model *m, const struct cpu_prog *pl, const struct node *nd)
{
	struct cpu_attn p;

	attn_params(pl, nd, &p);
	cpu_attention(&p, in_ptr(m, nd, 0), in_ptr(m, nd, 1), m->ptr[nd->out],
		      (float *)(void *)(m->arena + pl->scratch_off));
}

/* Ops of the vision models. */
static void run_cnn_op(struct exec_model *m, const struct cpu_prog *pl, const struct node *nd)
{
	const struct shape *x = &pl->shapes[nd->in[0]];
	const float *a = in_ptr(m, nd, 0);
	float *y = m->ptr[nd->out];
	int64_t n = shape_numel(x);

	switch (nd->op) {
	case OP_CONV2D:
		run_conv(m, pl, nd);
		break;
	case OP_BATCHNORM:
		cpu_batchnorm(a, in_ptr(m, nd, 1), in_ptr(m, nd, 2), y, x->dims[0], x->dims[1],
			      n / x->dims[0] / x->dims[1], nd->ia[0] != 0);
		break;
	case OP_RELU:
		cpu_relu(a, y, n);
		break;
	case OP_MAXPOOL:
	case OP_AVGPOOL:
		run_pool(m, pl, nd);
		break;
	case OP_GLOBAL_AVGPOOL:
		cpu_global_avgpool(a, y, x->dims[0] * x->dims[1], x->dims[2] * x->dims[3]);
		break;
	case OP_ADD:
		cpu_add(a, in_ptr(m, nd, 1), y, n, nd->ia[0] != 0);
		break;
	}
}

/* Run one node: the transformer ops here, the vision ops in run_cnn_op. */
static int run_node(struct exec_model *m, const struct cpu_prog *pl, const struct node *nd)
{
	const struct shape *x = &pl->shapes[nd->in[0]], *w = NULL;
	const float *a = in_ptr(m, nd, 0);
	float *y = m->ptr[nd->out];
	int64_t n = shape_numel(x), last = x->dims[x->ndim - 1];

	if (nd->n_in > 1 && nd->in[1] != NO_TENSOR)
		w = &pl->shapes[nd->in[1]];
	switch (nd->op) {
	case OP_LINEAR:
		cpu_linear(a, in_ptr(m, nd, 1), in_ptr(m, nd, 2), y, n / last, last, w->dims[0]);
		break;
	case OP_EMBEDDING:
		return cpu_embedding(in_ptr(m, nd, 0), in_ptr(m, nd, 1), y, n, w->dims[0],
				     w->dims[1], m->g->tensors[nd->in[0]].name);
	case OP_POSITION_IDS:
		cpu_position_ids(in_ptr(m, nd, 0), m->ptr[nd->out], x->dims[0], x->dims[1],
				 (int)nd->ia[0], nd->ia[1]);
		break;
	case OP_LAYERNORM:
		cpu_layernorm(a, in_ptr(m, nd, 1), in_ptr(m, nd, 2), y, n / last, last, nd->fa[0]);
		break;
	case OP_GELU:
		cpu_gelu(a, y, n, nd->ia[0] != 0);
		break;
	case OP_TANH:
		cpu_tanh(a, y, n);
		break;
	case OP_SOFTMAX:
		cpu_softmax(a, y, n / last, last);
		break;
	case OP_ATTENTION:
		run_attention(m, pl, nd);
		break;
	case OP_TAKE_ROW:
		cpu_take_row(a, y, x->dims[0], x->dims[1], x->dims[2], nd->ia[0]);
		break;
	case OP_CLS_POS:
		cpu_cls_pos(a, in_ptr(m, nd, 1), in_ptr(m, nd, 2), y, x->dims[0], x->dims[1],
			    x->dims[2] * x->dims[3]);
		break;
	default:
		run_cnn_op(m, pl, nd);
		break;
	}
	return 0;
}

static void store_output(struct exec_model *m, const struct cpu_prog *pl, uint32_t o,
			 struct tview *v)
{
	const struct io_desc *io = &m->g->outputs[o];
	const void *src = m->ptr[io->tensor];
	int64_t n = shape_numel(&pl->shapes[io->tensor]);

	v->shape = pl->shapes[io->tensor];
	v->shape.dtype = io->dtype;
	v->data = m->out[o];
	v->nbytes = (uint64_t)n * dtype_size((enum dtype)io->dtype);
	if (dt_is_float(io->dtype))
		from_f32(src, (enum dtype)io->dtype, v->data, n);
	else
		memcpy(v->data, src, v->nbytes);
}

static int run(struct exec_model *m, const struct tview *in, struct tview *out)
{
	const struct graph *g = m->g;
	struct cpu_prog *pl;
	uint32_t i;
	int ret;

	take_shapes(m, in);
	ret = get_prog(m, &pl);
	if (!ret)
		ret = check_data(m, in);
	if (ret)
		return ret;
	for (i = 0; i < g->n_tensors; i++)
		m->ptr[i] = pl->off[i] == CPU_NO_OFFSET ? NULL : m->arena + pl->off[i];
	for (i = 0; i < g->n_inputs; i++)
		load_input(m, pl, i, &in[i]);
	for (i = 0; i < g->n_nodes; i++) {
		ret = run_node(m, pl, &g->nodes[i]);
		if (ret)
			return ret;
	}
	for (i = 0; i < g->n_outputs; i++)
		store_output(m, pl, i, &out[i]);
	return 0;
}

int cpu_cold_model_run(struct exec_model *m, const struct tview *in, struct tview *out,
		       struct exec_cold_info *info)
{
	int ret;

	if (info)
		*info = (struct exec_cold_info){0};
	if (m->cold) {
		ret = cpu_cold_bring_in(m->dev, m->cold, info);
		if (ret)
			return ret;
		if (info ? info->cold : true)
			bind_cold(m);
	}
	return run(m, in, out);
}

int cpu_model_run(struct exec_model *m, const struct tview *in, struct tview *out)
{
	return cpu_cold_model_run(m, in, out, NULL);
}

/* Call from the thread that sets up the backends, before workers run. */
void cpu_set_threads(int n)
{
	static int blas_default;

	if (!blas_default)
		blas_default = openblas_get_num_threads();
	openblas_set_num_threads(n > 0 ? n : blas_default);
}
