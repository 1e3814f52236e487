/* SPDX-License-Identifier: MIT */
#include "helpers.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cuda_dev *tgpu_open(void)
{
	struct cuda_dev *d = NULL;
	int ret = cuda_device_open(0, &d);

	if (ret == DPRT_ENODEV && !getenv("DPRT_REQUIRE_GPU"))
		cr_skip_test("no GPU here: %s", err_msg(ret));
	cr_assert_eq(ret, 0, "cuda_device_open(0): %s", err_msg(ret));
	return d;
}

uint64_t tseed(void)
{
	const char *s = getenv("DPRT_TEST_SEED");
	uint64_t seed = s ? strtoull(s, NULL, 0) : clock_ns();

	fprintf(stderr, "seed %llu (DPRT_TEST_SEED to redo)\n", (unsigned long long)seed);
	return seed;
}

/* ------------------------------------------------------------- models */

static void put(void *dst, enum dtype dt, uint64_t i, float v)
{
	if (dt == DT_F32)
		((float *)dst)[i] = v;
	else if (dt == DT_F16)
		((uint16_t *)dst)[i] = f32_to_f16(v);
	else
		((uint16_t *)dst)[i] = f32_to_bf16(v);
}

static void alloc_copies(struct tmodel *t)
{
	uint64_t size = ALIGN_UP(t->g->weights_size + 1, LAYER_ALIGN);
	int ret;

	t->page = aligned_alloc(LAYER_ALIGN, size);
	cr_assert(t->page, "out of memory for %s's weights", t->g->name);
	ret = hoststore_create(t->g->weights_size, &t->hs);
	cr_assert_eq(ret, 0, "hoststore_create: %s", err_msg(ret));
}

void tm_init(struct tmodel *t, struct graph *g, struct rng *r, float scale)
{
	uint32_t k;
	uint64_t i;

	t->g = g;
	alloc_copies(t);
	memset(t->page, 0, g->weights_size);
	for (k = 0; k < g->n_tensors; k++) {
		const struct tensor *w = &g->tensors[k];
		uint64_t n = w->nbytes / dtype_size((enum dtype)w->dtype);

		if (w->kind != TK_WEIGHT)
			continue;
		for (i = 0; i < n; i++)
			put((char *)t->page + w->offset, (enum dtype)w->dtype, i,
			    rng_unit(r) * scale);
	}
	memcpy(hoststore_base(t->hs), t->page, g->weights_size);
}

void tm_init_zoo(struct tmodel *t, const char *name, enum dtype dt, uint64_t seed)
{
	struct weight_source *ws;
	uint32_t k;
	int ret;

	ret = zoo_build(name, dt, &t->g);
	cr_assert_eq(ret, 0, "zoo_build(%s): %s", name, err_msg(ret));
	alloc_copies(t);
	memset(t->page, 0, t->g->weights_size);
	ws = wsrc_random(seed);
	cr_assert(ws);
	for (k = 0; k < t->g->n_tensors; k++) {
		if (t->g->tensors[k].kind != TK_WEIGHT)
			continue;
		ret = wsrc_fill(ws, t->g, k, (char *)t->page + t->g->tensors[k].offset);
		cr_assert_eq(ret, 0, "wsrc_fill: %s", err_msg(ret));
	}
	wsrc_destroy(ws);
	memcpy(hoststore_base(t->hs), t->page, t->g->weights_size);
}

void tm_fini(struct tmodel *t)
{
	hoststore_destroy(t->hs);
	free(t->page);
	graph_destroy(t->g);
	memset(t, 0, sizeof(*t));
}

const char *tplace_name(enum tplace p)
{
	static const char *const names[] = {"load (pageable)", "load (pinned)", "DHA",
					    "mixed load/DHA"};

	return names[p];
}

int tmodel_create_gpu(struct cuda_dev *d, const struct tmodel *t, enum tplace p,
		      struct exec_model **out)
{
	const struct graph *g = t->g;
	uint8_t *place;
	uint32_t l;
	int ret;

	if (p == TP_LOAD_PAGEABLE)
		return cuda_backend.model_create(d, g, t->page, out);
	place = calloc(g->n_layers + 1, 1);
	cr_assert(place);
	for (l = 0; l < g->n_layers; l++)
		place[l] = p == TP_DHA || (p == TP_MIXED && l % 2) ? PLACE_DHA : PLACE_LOAD;
	ret = cuda_backend.model_create_placed(d, g, hoststore_base(t->hs), place, out);
	free(place);
	return ret;
}

/* ------------------------------------------------------------- inputs */

static void fill_input(const struct graph *g, const struct io_desc *io, struct tview *tv,
		       int64_t pad, int64_t id_range, struct rng *r)
{
	int64_t n = shape_numel(&tv->shape), i, bound = graph_id_bound(g, io->tensor);
	int64_t s = tv->shape.dims[tv->shape.ndim - 1];
	bool mask = strstr(io->name, "mask") != NULL;

	if (!bound)
		bound = id_range;
	for (i = 0; i < n; i++) {
		if (io->dtype != DT_I64)
			put(tv->data, (enum dtype)io->dtype, (uint64_t)i, rng_unit(r));
		else if (mask)
			((int64_t *)tv->data)[i] = i >= s && i % s >= s - pad ? 0 : 1;
		else
			((int64_t *)tv->data)[i] = (int64_t)(rng_next(r) % (uint64_t)bound);
	}
}

void tin_make(const struct graph *g, int64_t batch, int64_t seq, int64_t pad, int64_t id_range,
	      bool omit_optional, struct rng *r, struct tview *in)
{
	uint32_t i;

	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];
		struct tview *tv = &in[i];

		memset(tv, 0, sizeof(*tv));
		if (omit_optional && (io->flags & IO_OPTIONAL))
			continue;
		tv->nbytes = io_shape(io, batch, seq, &tv->shape);
		tv->data = malloc(tv->nbytes);
		cr_assert(tv->data);
		fill_input(g, io, tv, pad, id_range, r);
	}
}

void tin_free(const struct graph *g, struct tview *in)
{
	uint32_t i;

	for (i = 0; i < g->n_inputs; i++)
		free(in[i].data);
}

/* ------------------------------------------------------------ compare */

double ttol(enum dtype dt)
{
	return dt == DT_F32 ? 1e-5 : dt == DT_F16 ? 1e-2 : 2e-2;
}

static double value(const struct tview *t, int64_t i)
{
	switch (t->shape.dtype) {
	case DT_F32:
		return ((const float *)t->data)[i];
	case DT_F16:
		return f16_to_f32(((const uint16_t *)t->data)[i]);
	case DT_BF16:
		return bf16_to_f32(((const uint16_t *)t->data)[i]);
	case DT_I64:
		return (double)((const int64_t *)t->data)[i];
	default:
		return ((const int32_t *)t->data)[i];
	}
}

double tnorm_err(const struct tview *a, const struct tview *ref)
{
	int64_t n = shape_numel(&ref->shape), i;
	double diff = 0, big = 0, d;
	bool is_int = ref->shape.dtype == DT_I64 || ref->shape.dtype == DT_I32;

	for (i = 0; i < n; i++) {
		d = fabs(value(a, i) - value(ref, i));
		if (isnan(d) || (is_int && d != 0))
			return INFINITY;
		diff = MAX(diff, d);
		big = MAX(big, fabs(value(ref, i)));
	}
	return diff / (big > 0 ? big : 1.0);
}

static void check_shape(const struct tview *a, const struct tview *ref, const char *what,
			const char *out)
{
	cr_assert(a->shape.dtype == ref->shape.dtype && a->shape.ndim == ref->shape.ndim &&
			  !memcmp(a->shape.dims, ref->shape.dims,
				  sizeof(int64_t) * ref->shape.ndim) &&
			  a->nbytes == ref->nbytes,
		  "%s: output %s: GPU shape differs from the CPU's", what, out);
}

/* Two more GPU runs with the outputs poisoned before each: both must
 * rewrite every byte exactly as the first run did. */
static void check_replay(struct exec_model *gm, const struct graph *g, const struct tview *in,
			 struct tview *go, const char *what)
{
	void **first = calloc(g->n_outputs, sizeof(*first));
	uint32_t o;
	int rep, ret;

	cr_assert(first);
	for (o = 0; o < g->n_outputs; o++) {
		first[o] = malloc(go[o].nbytes);
		cr_assert(first[o]);
		memcpy(first[o], go[o].data, go[o].nbytes);
	}
	for (rep = 0; rep < 2; rep++) {
		for (o = 0; o < g->n_outputs; o++)
			memset(go[o].data, 0xff, go[o].nbytes);
		ret = cuda_backend.model_run(gm, in, go);
		cr_assert_eq(ret, 0, "%s: GPU run %d: %s", what, rep + 2, err_msg(ret));
		for (o = 0; o < g->n_outputs; o++)
			cr_assert(!memcmp(first[o], go[o].data, go[o].nbytes),
				  "%s: output %s of GPU run %d (graph replay) differs from the "
				  "first run",
				  what, g->outputs[o].name, rep + 2);
	}
	for (o = 0; o < g->n_outputs; o++)
		free(first[o]);
	free(first);
}

void tcheck(struct cuda_dev *d, const struct tmodel *t, const struct tview *in, enum tplace p,
	    double tol, const char *what)
{
	const struct graph *g = t->g;
	struct tview *co = calloc(g->n_outputs, sizeof(*co));
	struct tview *go = calloc(g->n_outputs, sizeof(*go));
	struct exec_model *cm = NULL, *gm = NULL;
	char w[256];
	uint32_t o;
	double e;
	int ret;

	snprintf(w, sizeof(w), "%s [%s, %s]", what, dtype_name((enum dtype)g->wdtype),
		 tplace_name(p));
	cr_assert(co && go);
	ret = cpu_backend.model_create(NULL, g, t->page, &cm);
	cr_assert_eq(ret, 0, "%s: CPU model: %s", w, err_msg(ret));
	ret = cpu_backend.model_run(cm, in, co);
	cr_assert_eq(ret, 0, "%s: CPU run: %s", w, err_msg(ret));
	ret = tmodel_create_gpu(d, t, p, &gm);
	cr_assert_eq(ret, 0, "%s: GPU model: %s", w, err_msg(ret));
	ret = cuda_backend.model_run(gm, in, go);
	cr_assert_eq(ret, 0, "%s: GPU run: %s", w, err_msg(ret));
	for (o = 0; o < g->n_outputs; o++) {
		check_shape(&go[o], &co[o], w, g->outputs[o].name);
		e = tnorm_err(&go[o], &co[o]);
		fprintf(stderr, "  %-48s %-18s err %.2e (tol %.0e)\n", w, g->outputs[o].name, e,
			tol);
		cr_assert(e <= tol, "%s: output %s: normalised max error %.3g > %.3g", w,
			  g->outputs[o].name, e, tol);
	}
	check_replay(gm, g, in, go, w);
	cuda_backend.model_destroy(gm);
	cpu_backend.model_destroy(cm);
	free(co);
	free(go);
}
