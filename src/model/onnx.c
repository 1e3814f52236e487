/* SPDX-License-Identifier: MIT */
/*
 * ONNX reader for 'dprt import': parse the ModelProto (protobuf-c, from
 * src/model/onnx.proto), check the opset, index the values by name, make the
 * signature from the graph's inputs and outputs, and lower the nodes that
 * the outputs depend on to dprt's fused IR (onnx_lower.c, onnx_attn.c).
 * Weights are computed in FP32 at import (transposes, concatenated qkv,
 * batch norm folded into convolutions) and written by a custom weight
 * source in the graph's dtype.
 */
#include "onnx_imp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define OPSET_MIN 14
#define OPSET_MAX 18

/* ------------------------------------------------------------ messages */

/* The refusal of a node no pattern matched. */
int ox_unsup(struct ox *x, const onode *n)
{
	return err_set(DPRT_EUNSUP, "ONNX import: op %s (node \"%s\") in %s is not supported",
		       n->op_type ? n->op_type : "?", n->name ? n->name : "", x->path);
}

/* A node whose op dprt runs, with attributes or inputs it does not. */
int ox_bad(struct ox *x, const onode *n, const char *why)
{
	return err_set(DPRT_EUNSUP, "ONNX import: op %s (node \"%s\") in %s is not supported: %s",
		       n->op_type ? n->op_type : "?", n->name ? n->name : "", x->path, why);
}

/* ---------------------------------------------------------- attributes */

const Onnx__AttributeProto *ox_attr(const onode *n, const char *name)
{
	size_t i;

	for (i = 0; i < n->n_attribute; i++)
		if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name))
			return n->attribute[i];
	return NULL;
}

int64_t ox_attr_i(const onode *n, const char *name, int64_t def)
{
	const Onnx__AttributeProto *a = ox_attr(n, name);

	return a && a->has_i ? a->i : def;
}

float ox_attr_f(const onode *n, const char *name, float def)
{
	const Onnx__AttributeProto *a = ox_attr(n, name);

	return a && a->has_f ? a->f : def;
}

/* -------------------------------------------------------------- values */

static uint32_t name_hash(const char *s)
{
	return (uint32_t)hash64(HASH64_INIT, s, strlen(s));
}

/* The value called name, or NULL. */
struct oval *ox_val(struct ox *x, const char *name)
{
	uint32_t h, k;

	if (!name || !*name)
		return NULL;
	h = name_hash(name);
	for (k = 0; k < x->cap_hash; k++) {
		uint32_t s = x->hash[(h + k) & (x->cap_hash - 1)];

		if (!s)
			return NULL;
		if (!strcmp(x->vals[s - 1].name, name))
			return &x->vals[s - 1];
	}
	return NULL;
}

/* Add (or find) the value name; later definitions replace the source. */
static struct oval *val_add(struct ox *x, const char *name)
{
	struct oval *v = ox_val(x, name);
	uint32_t h, k;

	if (v)
		return v;
	h = name_hash(name);
	for (k = 0;; k++) {
		uint32_t *s = &x->hash[(h + k) & (x->cap_hash - 1)];

		if (*s)
			continue;
		v = &x->vals[x->n_vals];
		*s = ++x->n_vals;
		v->name = name;
		v->tensor = NO_TENSOR;
		return v;
	}
}

static int index_values(struct ox *x)
{
	const Onnx__GraphProto *gp = x->gp;
	size_t i, k, n = gp->n_initializer + gp->n_input + 1;

	for (i = 0; i < gp->n_node; i++)
		n += gp->node[i]->n_output;
	x->cap_hash = 16;
	while (x->cap_hash < 2 * n)
		x->cap_hash *= 2;
	x->vals = calloc(n, sizeof(*x->vals));
	x->hash = calloc(x->cap_hash, sizeof(*x->hash));
	if (!x->vals || !x->hash)
		return err_set(-ENOMEM, "ONNX import: %s: out of memory", x->path);
	for (i = 0; i < gp->n_input; i++)
		if (gp->input[i]->name)
			val_add(x, gp->input[i]->name);
	for (i = 0; i < gp->n_initializer; i++)
		if (gp->initializer[i]->name)
			val_add(x, gp->initializer[i]->name)->init = gp->initializer[i];
	for (i = 0; i < gp->n_node; i++)
		for (k = 0; k < gp->node[i]->n_output; k++)
			if (*gp->node[i]->output[k])
				val_add(x, gp->node[i]->output[k])->prod = gp->node[i];
	return 0;
}

static void count_uses(struct ox *x)
{
	const Onnx__GraphProto *gp = x->gp;
	struct oval *v;
	size_t i, k;

	for (i = 0; i < gp->n_node; i++)
		for (k = 0; k < gp->node[i]->n_input; k++)
			if ((v = ox_val(x, gp->node[i]->input[k])))
				v->uses++;
	for (i = 0; i < gp->n_output; i++)
		if ((v = ox_val(x, gp->output[i]->name)))
			v->uses++;
}

/* ------------------------------------------------------------- weights */

static int wgrow(struct ox *x, uint32_t t)
{
	uint32_t cap = x->cap_w ? x->cap_w : 64;
	float **w;

	if (t < x->cap_w)
		return 0;
	while (cap <= t)
		cap *= 2;
	w = realloc(x->wdata, cap * sizeof(*w));
	if (!w)
		return err_set(-ENOMEM, "ONNX import: %s: out of memory", x->path);
	memset(w + x->cap_w, 0, (cap - x->cap_w) * sizeof(*w));
	x->wdata = w;
	x->cap_w = cap;
	return 0;
}

/* Keep data (FP32, taken over) as the bytes of weight tensor t. */
int ox_weight_data(struct ox *x, uint32_t t, float *data)
{
	int ret = wgrow(x, t);

	if (ret) {
		free(data);
		return ret;
	}
	free(x->wdata[t]);
	x->wdata[t] = data;
	return 0;
}

/* A weight of the open layer holding data (FP32, taken over); NO_TENSOR if
 * out of memory (err_set). */
uint32_t ox_weight(struct ox *x, const char *name, int ndim, const int64_t *dims, float *data)
{
	char nm[NAME_LEN];
	uint32_t t;

	snprintf(nm, sizeof(nm), "%s", name);
	t = graph_weight(x->g, nm, ndim, dims);
	if (t == NO_TENSOR || ox_weight_data(x, t, data)) {
		if (t == NO_TENSOR)
			free(data);
		err_set(-ENOMEM, "ONNX import: %s: out of memory", x->path);
		return NO_TENSOR;
	}
	return t;
}

/* The weights an import computed, for wsrc_custom. */
struct ox_weights {
	float **w;
	uint32_t n;
};

static void weights_free(void *ctx)
{
	struct ox_weights *ow = ctx;
	uint32_t i;

	for (i = 0; i < ow->n; i++)
		free(ow->w[i]);
	free(ow->w);
	free(ow);
}

/* pkg_fill_fn: tensor's FP32 data in the graph's dtype. */
static int weights_fill(void *ctx, const struct graph *g, uint32_t tensor, void *dst)
{
	const struct tensor *t = &g->tensors[tensor];
	struct ox_weights *ow = ctx;
	uint64_t n = t->nbytes / dtype_size((enum dtype)t->dtype), i;
	uint16_t *h = dst;
	const float *f;

	if (tensor >= ow->n || !ow->w[tensor])
		return err_set(DPRT_EWEIGHTS, "%s: no data for weight '%s'", g->name, t->name);
	f = ow->w[tensor];
	if (t->dtype == DT_F32) {
		memcpy(dst, f, t->nbytes);
		return 0;
	}
	for (i = 0; i < n; i++)
		h[i] = t->dtype == DT_F16 ? f32_to_f16(f[i]) : f32_to_bf16(f[i]);
	return 0;
}

/* ------------------------------------------------------------- reading */

static int map_model(struct ox *x)
{
	struct stat st;
	void *p;
	int fd, ret = 0;

	fd = open(x->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(-errno, "ONNX import: %s: %s", x->path, strerror(errno));
	if (fstat(fd, &st) || st.st_size == 0) {
		ret = err_set(DPRT_EUNSUP, "ONNX import: %s: empty or unreadable file", x->path);
		goto out_close;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		ret = err_set(-errno, "ONNX import: %s: mmap: %s", x->path, strerror(errno));
		goto out_close;
	}
	x->m = onnx__model_proto__unpack(NULL, (size_t)st.st_size, p);
	munmap(p, (size_t)st.st_size);
	if (!x->m || !x->m->graph)
		ret = err_set(DPRT_EUNSUP, "ONNX import: %s: not an ONNX model (bad protobuf)",
			      x->path);
out_close:
	close(fd);
	return ret;
}

static int check_opset(struct ox *x)
{
	int64_t v = -1;
	size_t i;

	for (i = 0; i < x->m->n_opset_import; i++) {
		const Onnx__OperatorSetIdProto *o = x->m->opset_import[i];

		if (!o->domain || !*o->domain || !strcmp(o->domain, "ai.onnx"))
			v = o->has_version ? o->version : -1;
	}
	if (v < OPSET_MIN || v > OPSET_MAX)
		return err_set(DPRT_EUNSUP,
			       "ONNX import: %s: opset %lld of the default domain is not "
			       "supported (%d to %d are)",
			       x->path, (long long)v, OPSET_MIN, OPSET_MAX);
	return 0;
}

static enum dtype elem_dtype(int32_t et, enum dtype fdt)
{
	switch (et) {
	case 1:	 /* FLOAT */
	case 10: /* FLOAT16 */
	case 16: /* BFLOAT16 */
		return fdt;
	case 7: /* INT64 */
		return DT_I64;
	case 6: /* INT32 */
		return DT_I32;
	case 9: /* BOOL */
		return DT_BOOL;
	case 2: /* UINT8 */
		return DT_U8;
	default:
		return DT_NONE;
	}
}

/* One graph input (not an initializer) as an input of the signature. */
static int add_input(struct ox *x, const Onnx__ValueInfoProto *vi)
{
	const Onnx__TypeProto__Tensor *tt;
	int64_t dims[MAX_DIMS];
	struct oval *v = ox_val(x, vi->name);
	enum dtype dt;
	size_t d;

	if (v->init)
		return 0;
	tt = vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ?
		     vi->type->tensor_type :
		     NULL;
	if (!tt || !tt->shape || tt->shape->n_dim > MAX_DIMS || !tt->shape->n_dim)
		return err_set(
			DPRT_EUNSUP,
			"ONNX import: %s: input '%s' is not supported: no tensor shape of rank 1 to %d",
			x->path, vi->name, MAX_DIMS);
	dt = elem_dtype(tt->elem_type, (enum dtype)x->g->wdtype);
	if (dt == DT_NONE)
		return err_set(DPRT_EUNSUP, "ONNX import: %s: input '%s' has element type %d",
			       x->path, vi->name, tt->elem_type);
	for (d = 0; d < tt->shape->n_dim; d++) {
		const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[d];

		if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
		    dm->dim_value > 0)
			dims[d] = dm->dim_value;
		else if (d < 2)
			dims[d] = d == 0 ? DIM_BATCH : DIM_SEQ;
		else
			return err_set(DPRT_EUNSUP,
				       "ONNX import: %s: input '%s': dynamic dim %zu "
				       "(only dims 0 and 1, batch and sequence, may be)",
				       x->path, vi->name, d);
	}
	v->rank = (uint8_t)tt->shape->n_dim;
	v->tensor = graph_input(x->g, vi->name, dt, (int)tt->shape->n_dim, dims, 0, 0);
	if (dt == DT_I64 && x->first_ids == NO_TENSOR)
		x->first_ids = v->tensor;
	return 0;
}

static int add_outputs(struct ox *x)
{
	size_t i;
	int ret;

	for (i = 0; i < x->gp->n_output; i++) {
		uint32_t t;

		ret = ox_lower(x, x->gp->output[i]->name, &t);
		if (ret)
			return ret;
		if (x->g->tensors[t].kind != TK_ACT)
			return err_set(DPRT_EUNSUP,
				       "ONNX import: %s: output '%s' is not supported: it is "
				       "an input, not computed",
				       x->path, x->gp->output[i]->name);
		graph_output(x->g, x->gp->output[i]->name, t);
	}
	return 0;
}

static void set_dir(struct ox *x)
{
	const char *slash = strrchr(x->path, '/');

	if (!slash)
		snprintf(x->dir, sizeof(x->dir), ".");
	else
		snprintf(x->dir, sizeof(x->dir), "%.*s", (int)(slash - x->path), x->path);
	if (!x->dir[0])
		snprintf(x->dir, sizeof(x->dir), "/");
}

static void ox_fini(struct ox *x)
{
	uint32_t i;

	for (i = 0; i < x->n_vals; i++)
		cval_free(x->vals[i].c);
	for (i = 0; x->wdata && i < x->cap_w; i++)
		free(x->wdata[i]);
	free(x->wdata);
	free(x->vals);
	free(x->hash);
	if (x->m)
		onnx__model_proto__free_unpacked(x->m, NULL);
	graph_destroy(x->g);
}

/* Decode every initializer now, so that a bad one (truncated external
 * data, a wrong size) is reported as such and not as a pattern mismatch. */
static int decode_initializers(struct ox *x)
{
	size_t i;
	int ret;

	for (i = 0; i < x->gp->n_initializer; i++) {
		struct oval *v = ox_val(x, x->gp->initializer[i]->name);

		if (!v || v->cstate || v->init != x->gp->initializer[i])
			continue;
		ret = ox_tensor_const(x, v->init, &v->c);
		if (ret)
			return ret;
		v->cstate = 1;
	}
	return 0;
}

/* "bert" or "resnet" when the graph has their signature ops, else "onnx". */
static void set_arch(struct graph *g)
{
	uint32_t i;

	for (i = 0; i < g->n_nodes; i++) {
		if (g->nodes[i].op == OP_ATTENTION) {
			snprintf(g->arch, sizeof(g->arch), "bert");
			return;
		}
		if (g->nodes[i].op == OP_CONV2D)
			snprintf(g->arch, sizeof(g->arch), "resnet");
	}
}

static int build(struct ox *x)
{
	size_t i;
	int ret;

	ret = index_values(x);
	if (!ret)
		ret = decode_initializers(x);
	if (ret)
		return ret;
	count_uses(x);
	for (i = 0; i < x->gp->n_input; i++) {
		ret = add_input(x, x->gp->input[i]);
		if (ret)
			return ret;
	}
	ret = add_outputs(x);
	if (ret)
		return ret;
	set_arch(x->g);
	return graph_finalize(x->g);
}

static int hand_over(struct ox *x, struct graph **g, struct weight_source **ws)
{
	struct ox_weights *ow = malloc(sizeof(*ow));

	if (!ow)
		return err_set(-ENOMEM, "ONNX import: %s: out of memory", x->path);
	ow->w = x->wdata;
	ow->n = x->cap_w;
	*ws = wsrc_custom(weights_fill, ow, weights_free);
	if (!*ws) {
		free(ow);
		return err_set(-ENOMEM, "ONNX import: %s: out of memory", x->path);
	}
	x->wdata = NULL;
	x->cap_w = 0;
	*g = x->g;
	x->g = NULL;
	return 0;
}

/*
 * Import the ONNX model at path (see model.h): a finalized graph of weight
 * dtype dt and its weights' source. Nothing is written. Any thread.
 */
int import_onnx(const char *path, enum dtype dt, struct graph **g, struct weight_source **ws)
{
	struct ox x;
	const char *base = strrchr(path, '/');
	char name[NAME_LEN];
	int ret;

	*g = NULL;
	*ws = NULL;
	if (dt != DT_F32 && dt != DT_F16 && dt != DT_BF16)
		return err_set(DPRT_EUNSUP,
			       "ONNX import: %s: weight dtype %s is not FP32, FP16 "
			       "or BF16",
			       path, dtype_name(dt));
	memset(&x, 0, sizeof(x));
	x.path = path;
	x.first_ids = NO_TENSOR;
	set_dir(&x);
	ret = map_model(&x);
	if (!ret)
		ret = check_opset(&x);
	if (ret)
		goto out;
	x.gp = x.m->graph;
	snprintf(name, sizeof(name), "%s", base ? base + 1 : path);
	if (strlen(name) > 5 && !strcmp(name + strlen(name) - 5, ".onnx"))
		name[strlen(name) - 5] = 0;
	x.g = graph_create(name, "onnx", dt);
	ret = x.g ? build(&x) : err_set(-ENOMEM, "ONNX import: %s: out of memory", path);
	if (!ret)
		ret = hand_over(&x, g, ws);
out:
	ox_fini(&x);
	return ret;
}
