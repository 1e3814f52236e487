/* SPDX-License-Identifier: MIT */
/*
 * The CUDA backend's models: weights loaded into the device pool layer by
 * layer (PLACE_LOAD) or read in place from the host weight store through
 * its device mapping (PLACE_DHA); a small cache of shape programs, one per input
 * shape; runs that are eager the first time and replay a CUDA graph of the
 * same work afterwards.
 */
#include "cuda_priv.h"
#include "exec/cuda/device.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool dt_is_float(uint8_t dt)
{
	return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16;
}

/* ------------------------------------------------------------- weights */

/* Device address of the host region when it is pinned host memory (a
 * host weight store: mapped, as all pinned memory is under unified
 * addressing), else 0. cuPointerGetAttributes answers for any pointer,
 * pageable ones included, without an error. */
static int host_mapping(const void *weights, uint64_t *dev)
{
	CUpointer_attribute attr[2] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
				       CU_POINTER_ATTRIBUTE_DEVICE_POINTER};
	CUmemorytype type = 0;
	CUdeviceptr p = 0;
	void *data[2] = {&type, &p};
	int ret;

	*dev = 0;
	if (!weights)
		return 0;
	ret = CU(cuPointerGetAttributes(2, attr, data, (CUdeviceptr)(uintptr_t)weights));
	if (!ret && type == CU_MEMORYTYPE_HOST)
		*dev = p;
	return ret;
}

/* Layer l follows layer l - 1 in the weight region (the package lays
 * layers out in order; anything else gets a range of its own). */
static bool follows(const struct graph *g, uint32_t l)
{
	return g->layers[l].offset >= g->layers[l - 1].offset + g->layers[l - 1].nbytes;
}

/* The LOAD layers first..last-1, adjacent in the weight region: one range
 * (laid out like the host range, so each layer keeps its offset), one
 * copy; without room for one range, a range per layer. Pinned memory
 * copies asynchronously at full speed; pageable memory only synchronously
 * (the driver stages it). */
static int load_run(struct exec_model *m, uint32_t first, uint32_t last)
{
	const struct graph *g = m->g;
	struct cuda_dev *d = m->d;
	uint64_t base = g->layers[first].offset, bytes, dev;
	uint32_t l;
	int ret;

	bytes = g->layers[last - 1].offset + g->layers[last - 1].nbytes - base;
	ret = devpool_alloc(d->pool, bytes, g->layers[first].name, &dev);
	if (ret == -ENOMEM && last - first > 1) {
		err_clear();
		for (l = first; l < last && !ret; l++)
			ret = load_run(m, l, l + 1);
		return ret;
	}
	if (ret)
		return ret;
	m->wrange[m->n_wrange++] = dev;
	for (l = first; l < last; l++)
		m->layer_dev[l] = dev + (g->layers[l].offset - base);
	if (!bytes)
		return 0;
	m->load_copies++;
	if (m->host_dev)
		return CU(cuMemcpyHtoDAsync(dev, m->host + base, bytes, d->copy));
	return CU(cuMemcpyHtoD(dev, m->host + base, bytes));
}

/* Every run of adjacent LOAD layers into device memory. */
static int load_layers(struct exec_model *m)
{
	const struct graph *g = m->g;
	uint32_t l, first;
	int ret = 0;

	for (l = 0; l < g->n_layers && !ret;) {
		if (m->place[l] != PLACE_LOAD) {
			l++;
			continue;
		}
		for (first = l++; l < g->n_layers && m->place[l] == PLACE_LOAD && follows(g, l);)
			l++;
		ret = load_run(m, first, l);
	}
	return ret;
}

/* Every weight's device address from its layer's current place: its
 * layer's device range (LOAD) or the host store's mapping (DHA). */
void cuda_model_bind_weights(struct exec_model *m)
{
	const struct graph *g = m->g;
	uint32_t t;

	for (t = 0; t < g->n_tensors; t++) {
		const struct tensor *w = &g->tensors[t];
		const struct layer *ly;

		if (w->kind != TK_WEIGHT)
			continue;
		ly = &g->layers[w->layer];
		if (m->place[w->layer] == PLACE_LOAD)
			m->waddr[t] = m->layer_dev[w->layer] + (w->offset - ly->offset);
		else
			m->waddr[t] = m->host_dev + w->offset;
	}
}

static int place_weights(struct exec_model *m)
{
	const struct graph *g = m->g;
	uint32_t l;
	int ret = 0;

	for (l = 0; l < g->n_layers && !ret; l++)
		if (m->place[l] != PLACE_LOAD && !m->host_dev)
			ret = err_set(DPRT_EUNSUP,
				      "%s: layer %s is placed DHA, which needs the "
				      "weights in pinned, device-mapped host memory (a host "
				      "weight store)",
				      g->name, g->layers[l].name);
	if (!ret) { /* on a failed copy too, let those queued finish */
		ret = load_layers(m);
		ret = CU(cuStreamSynchronize(m->d->copy)) ?: ret;
	}
	if (ret)
		return ret;
	cuda_model_bind_weights(m);
	return 0;
}

/* ---------------------------------------------------------- programs */

static bool shape_same(const struct shape *a, const struct shape *b)
{
	return a->dtype == b->dtype && a->ndim == b->ndim &&
	       !memcmp(a->dims, b->dims, sizeof(int64_t) * MIN(a->ndim, MAX_DIMS));
}

static bool prog_matches(const struct exec_model *m, const struct cuda_prog *pl)
{
	uint32_t i;

	for (i = 0; i < m->g->n_inputs; i++)
		if (!shape_same(&pl->key[i], &m->given[i]))
			return false;
	return true;
}

/* The program for m->given: cached, or made in the least recently used slot
 * (its program, arena and graph are given back first). */
static int get_prog(struct exec_model *m, struct cuda_prog **out)
{
	int i, victim = 0, ret;

	for (i = 0; i < CUDA_PROGS; i++) {
		struct cuda_prog *pl = m->progs[i];

		if (pl && prog_matches(m, pl)) {
			pl->stamp = ++m->clock;
			*out = pl;
			return cuda_prog_refresh(m, pl);
		}
		if (!pl || (m->progs[victim] && pl->stamp < m->progs[victim]->stamp))
			victim = i;
	}
	/* Check the shapes before evicting anything: a bad request costs no
	 * cached program. */
	ret = graph_infer_shapes(m->g, m->given, m->check);
	if (ret)
		return ret;
	cuda_prog_destroy(m, m->progs[victim]);
	m->progs[victim] = NULL;
	ret = cuda_prog_create(m, &m->progs[victim]);
	if (ret)
		return ret;
	m->progs[victim]->stamp = ++m->clock;
	*out = m->progs[victim];
	return 0;
}

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

/* The shapes of a first program made at load: batch 1, the model's default
 * sequence length, optional inputs omitted. */
static void reference_shapes(struct exec_model *m)
{
	const struct graph *g = m->g;
	int64_t seq = graph_default_seq(g);
	uint32_t i;

	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];
		struct shape *k = &m->given[i];

		memset(k, 0, sizeof(*k));
		if (io->flags & IO_OPTIONAL)
			continue;
		io_shape(io, 1, seq, k);
	}
}

/* ------------------------------------------------------------ lifecycle */

static void cuda_model_destroy(struct exec_model *m)
{
	uint32_t i;

	if (!m)
		return;
	cuda_dev_enter(m->d);
	CU(cuStreamSynchronize(m->d->stream));
	cuda_cold_free(m);
	for (i = 0; i < CUDA_PROGS; i++)
		cuda_prog_destroy(m, m->progs[i]);
	for (i = 0; m->wrange && i < m->n_wrange; i++)
		devpool_free(m->d->pool, m->wrange[i]);
	free(m->wrange);
	free(m->place);
	free(m->layer_dev);
	free(m->waddr);
	free(m->given);
	free(m->check);
	free(m);
}

static int alloc_model(struct cuda_dev *d, const struct graph *g, struct exec_model **out)
{
	struct exec_model *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->d = d;
	m->g = g;
	m->dt = cuda_dt_slot(g->wdtype);
	m->place = calloc(g->n_layers + 1, sizeof(*m->place));
	m->layer_dev = calloc(g->n_layers + 1, sizeof(*m->layer_dev));
	m->waddr = calloc(g->n_tensors, sizeof(*m->waddr));
	m->wrange = calloc(g->n_layers + 1, sizeof(*m->wrange));
	m->given = calloc(g->n_inputs, sizeof(*m->given));
	m->check = calloc(g->n_tensors, sizeof(*m->check));
	*out = m;
	if (!m->place || !m->layer_dev || !m->waddr || !m->wrange || !m->given || !m->check)
		return -ENOMEM;
	return 0;
}

static int check_args(struct cuda_dev *d, const struct graph *g, const void *weights,
		      const uint8_t *place)
{
	uint32_t l, i;
	int ret;

	if (!d)
		return err_set(-EINVAL,
			       "%s: the CUDA backend needs a device from "
			       "cuda_device_open",
			       g->name);
	if (cuda_dt_slot(g->wdtype) < 0)
		return err_set(DPRT_EUNSUP, "%s: weight dtype %s is not supported on the GPU",
			       g->name, dtype_name((enum dtype)g->wdtype));
	if (!weights && g->weights_size)
		return err_set(-EINVAL, "%s: no weight region given", g->name);
	for (l = 0; place && l < g->n_layers; l++)
		if (place[l] != PLACE_LOAD && place[l] != PLACE_DHA)
			return err_set(-EINVAL, "%s: layer %s has placement %u", g->name,
				       g->layers[l].name, place[l]);
	/* Refused here, whatever shapes come later: without cuDNN no program
	 * of a convolution or a pooling can be made. */
	for (i = 0; i < g->n_nodes; i++) {
		ret = cuda_dnn_check(d, g, i);
		if (ret)
			return ret;
	}
	return 0;
}

/* The knobs of struct exec_model, as they are when m is made. */
static void set_knobs(struct exec_model *m)
{
	const struct dprt_knobs *k = knobs_get();

	m->no_graphs = !k->cuda_graphs;
	m->defer = k->cold_defer;
	m->use_lt = k->cuda_lt;
	m->lt_gelu = k->cuda_lt_gelu;
	m->use_flash = k->cuda_flash;
	m->conv_find = k->cudnn_find;
	m->attn_force = k->cuda_attn;
}

static int cuda_model_create_placed(void *dev, const struct graph *g, const void *weights,
				    const uint8_t *place, struct exec_model **out)
{
	struct cuda_dev *d = dev;
	struct exec_model *m = NULL;
	struct cuda_prog *pl;
	char why[512];
	int ret;

	ret = check_args(d, g, weights, place) ?: cuda_dev_enter(d);
	if (ret)
		return ret;
	ret = alloc_model(d, g, &m);
	if (ret)
		goto out_destroy;
	m->host = weights;
	ret = host_mapping(weights, &m->host_dev);
	if (ret)
		goto out_destroy;
	set_knobs(m);
	if (place)
		memcpy(m->place, place, g->n_layers);
	ret = place_weights(m);
	if (ret)
		goto out_destroy;
	/* Choose the convolution algorithms now, and have the common shape
	 * ready for the first request. Should that shape not fit the
	 * signature, the model builds its program at its first run instead. */
	reference_shapes(m);
	ret = get_prog(m, &pl);
	if (ret == DPRT_ESHAPE || ret == DPRT_EDTYPE) {
		err_clear();
		ret = 0;
	}
	if (ret)
		goto out_destroy;
	*out = m;
	return 0;
out_destroy:
	snprintf(why, sizeof(why), "%s", err_msg(ret));
	cuda_model_destroy(m);
	return err_set(ret, "%s", why);
}

static int cuda_model_create(void *dev, const struct graph *g, const void *weights,
			     struct exec_model **out)
{
	return cuda_model_create_placed(dev, g, weights, NULL, out);
}

/* ------------------------------------------------------------------ run */

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

static uint64_t nbytes(const struct shape *s, uint8_t dt)
{
	return (uint64_t)shape_numel(s) * dtype_size((enum dtype)dt);
}

/* Say which node failed to enqueue. */
static int node_error(const struct exec_model *m, uint32_t i, int ret)
{
	char why[400];

	snprintf(why, sizeof(why), "%s", err_msg(ret));
	return err_set(ret, "%s: node %u (%s): %s", m->g->name, i,
		       op_name((enum op)m->g->nodes[i].op), why);
}

/* All the work of one run, on the device's stream: eagerly, or into a
 * graph while the stream captures; h (may be NULL) sees every node first. */
static int enqueue_run(struct exec_model *m, struct cuda_prog *pl, const struct cuda_hook *h)
{
	const struct graph *g = m->g;
	CUstream st = m->d->stream;
	uint32_t i, t;
	int ret;

	ret = CU(cuMemsetD8Async(pl->err_dev, 0xff, sizeof(struct cuda_errrec), st));
	for (i = 0; i < g->n_inputs && !ret; i++) {
		t = g->inputs[i].tensor;
		ret = CU(cuMemcpyHtoDAsync(pl->raw[i], pl->stage + pl->in_off[i],
					   nbytes(&pl->shapes[t], g->inputs[i].dtype), st));
		if (!ret && dt_is_float(g->inputs[i].dtype) && g->inputs[i].dtype != g->wdtype)
			ret = cuda_op_convert(m, pl, i);
	}
	for (i = 0; i < g->n_nodes && !ret; i++) {
		ret = (h ? h->node(h->ctx, i) : 0) ?: cuda_op_enqueue(m, pl, i);
		if (ret)
			return node_error(m, i, ret);
	}
	if (!ret && h)
		ret = h->node(h->ctx, g->n_nodes);
	for (i = 0; i < g->n_outputs && !ret; i++) {
		t = g->outputs[i].tensor;
		ret = CU(cuMemcpyDtoHAsync(pl->stage + pl->out_off[i], pl->addr[t],
					   nbytes(&pl->shapes[t], g->outputs[i].dtype), st));
	}
	if (!ret)
		ret = CU(cuMemcpyDtoHAsync(pl->stage + pl->err_off, pl->err_dev,
					   sizeof(struct cuda_errrec), st));
	return ret;
}

/* Record the program's run as a CUDA graph: a new one, or, when the program's
 * addresses changed since its capture (pl->gexec_stale), the same graph
 * updated in place. On failure the program keeps running eagerly (a warning,
 * not an error). */
static void capture(struct exec_model *m, struct cuda_prog *pl)
{
	CUstream st = m->d->stream;
	CUgraph graph = NULL;
	bool updated;
	int ret, end;

	ret = CU(cuStreamBeginCapture(st, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	if (!ret) {
		ret = enqueue_run(m, pl, NULL);
		end = CU(cuStreamEndCapture(st, &graph));
		ret = ret ?: end;
	}
	if (!ret)
		ret = cuda_graph_refresh(m->d, &pl->gexec, graph, &updated);
	if (graph)
		CU(cuGraphDestroy(graph));
	pl->gexec_stale = false;
	if (!ret)
		return;
	log_warn("cuda: %s: cannot capture a CUDA graph, running eagerly: %s", m->g->name,
		 err_msg(ret));
	if (pl->gexec)
		CU(cuGraphExecDestroy(pl->gexec));
	pl->gexec = NULL;
	pl->no_graph = true;
	err_clear();
}

void cuda_model_capture(struct exec_model *m, struct cuda_prog *pl)
{
	if (!pl->gexec && !pl->no_graph && !m->no_graphs)
		capture(m, pl);
}

/* Every program takes the weights' new addresses (m->waddr): its tensors',
 * its cuBLASLt biases'; its graphs are updated before their next launch. */
int cuda_model_rebind(struct exec_model *m)
{
	const struct graph *g = m->g;
	uint32_t t, i;
	int k, ret = 0;

	for (k = 0; k < CUDA_PROGS && !ret; k++) {
		struct cuda_prog *pl = m->progs[k];

		if (!pl)
			continue;
		for (t = 0; t < g->n_tensors; t++)
			if (g->tensors[t].kind == TK_WEIGHT)
				pl->addr[t] = m->waddr[t];
		for (i = 0; i < g->n_nodes && !ret; i++)
			if (pl->rt[i].lt)
				ret = cuda_gemm_rebind(m, pl, i);
		pl->gexec_stale = pl->cold_stale = true;
	}
	return ret;
}

/* The first id an embedding refused: like the CPU backend's message. */
static int id_error(const struct exec_model *m, const struct cuda_prog *pl, const struct tview *in,
		    uint64_t key)
{
	const struct graph *g = m->g;
	uint32_t node = (uint32_t)(key >> ERRREC_SHIFT), i;
	int64_t idx = (int64_t)(key & ((1ull << ERRREC_SHIFT) - 1));
	const struct node *nd = &g->nodes[MIN(node, g->n_nodes - 1)];
	int64_t v = pl->shapes[nd->in[1]].dims[0];
	const char *name = g->tensors[nd->in[0]].name;

	for (i = 0; i < g->n_inputs; i++) {
		if (g->inputs[i].tensor != nd->in[0] || !in[i].data)
			continue;
		return err_set(DPRT_EINPUT,
			       "%s: id %lld at flat index %lld is outside the "
			       "valid range [0, %lld)",
			       name, (long long)((const int64_t *)in[i].data)[idx], (long long)idx,
			       (long long)v);
	}
	return err_set(DPRT_EINPUT,
		       "%s: the id at flat index %lld is outside the valid "
		       "range [0, %lld)",
		       name, (long long)idx, (long long)v);
}

static void set_outputs(const struct exec_model *m, const struct cuda_prog *pl, struct tview *out)
{
	uint32_t o;

	for (o = 0; o < m->g->n_outputs; o++) {
		const struct io_desc *io = &m->g->outputs[o];

		out[o].shape = pl->shapes[io->tensor];
		out[o].shape.dtype = io->dtype;
		out[o].data = pl->stage + pl->out_off[o];
		out[o].nbytes = nbytes(&out[o].shape, io->dtype);
	}
}

int cuda_model_prepare(struct exec_model *m, const struct tview *in, struct cuda_prog **out)
{
	struct cuda_prog *pl;
	uint32_t i;
	int ret;

	take_shapes(m, in);
	ret = get_prog(m, &pl) ?: check_data(m, in);
	if (ret)
		return ret;
	for (i = 0; i < m->g->n_inputs; i++)
		if (in[i].shape.ndim)
			memcpy(pl->stage + pl->in_off[i], in[i].data,
			       nbytes(&pl->key[i], pl->key[i].dtype));
	*out = pl;
	return 0;
}

int cuda_model_enqueue(struct exec_model *m, struct cuda_prog *pl, const struct cuda_hook *h)
{
	return enqueue_run(m, pl, h);
}

int cuda_model_finish(struct exec_model *m, struct cuda_prog *pl, const struct tview *in,
		      struct tview *out)
{
	struct cuda_errrec rec;

	memcpy(&rec, pl->stage + pl->err_off, sizeof(rec));
	if (rec.key != UINT64_MAX)
		return id_error(m, pl, in, rec.key);
	set_outputs(m, pl, out);
	return 0;
}

static int cuda_model_run(struct exec_model *m, const struct tview *in, struct tview *out)
{
	struct cuda_prog *pl;
	int ret;

	/* An evicted model (cold.c) first brings its weights in. */
	if (m->cold && !cuda_cold_resident(m))
		return cuda_cold_run(m, in, out, NULL);
	ret = cuda_dev_enter(m->d) ?: cuda_model_prepare(m, in, &pl);
	if (ret)
		return ret;
	if (pl->gexec && pl->gexec_stale && !m->defer)
		capture(m, pl);
	if (pl->gexec && !pl->gexec_stale)
		ret = CU(cuGraphLaunch(pl->gexec, m->d->stream));
	else
		ret = enqueue_run(m, pl, NULL);
	if (!ret)
		ret = CU(cuStreamSynchronize(m->d->stream));
	if (ret)
		return ret;
	pl->runs++;
	if (!pl->gexec && !pl->no_graph && !m->no_graphs)
		capture(m, pl);
	return cuda_model_finish(m, pl, in, out);
}

bool cuda_model_tidy(struct exec_model *m)
{
	bool did = false;
	int k;

	if (cuda_dev_enter(m->d)) {
		err_clear();
		return false;
	}
	for (k = 0; k < CUDA_PROGS; k++) {
		struct cuda_prog *pl = m->progs[k];

		if (pl && pl->gexec && pl->gexec_stale) {
			capture(m, pl);
			did = true;
		}
	}
	return cuda_cold_tidy(m) || did;
}

const struct exec_ops cuda_backend = {
	.name = "cuda",
	.dev_count = cudadev_count,
	.dev_open = cudadev_open,
	.dev_close = cudadev_close,
	.dev_label = cudadev_label,
	.dev_model = cudadev_model,
	.dev_used = cudadev_used,
	.model_create = cuda_model_create,
	.model_destroy = cuda_model_destroy,
	.model_run = cuda_model_run,
	.model_create_placed = cuda_model_create_placed,
	.profile = cudadev_profile,
	.cold_create = cudadev_cold_create,
	.cold_evict = cudadev_cold_evict,
	.cold_resident = cudadev_cold_resident,
	.cold_run = cudadev_cold_run,
	.model_tidy = cuda_model_tidy,
	.cold_overlaps = cudadev_cold_overlaps,
	.dev_join_links = cudadev_join_links,
	.cold_stream = cuda_cold_stream,
};
