/* SPDX-License-Identifier: MIT */
#include "model/model.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	uint64_t params;
	uint32_t layers;
} paper[] = {
	{"resnet50", 25557032, 107},	 {"resnet101", 44549160, 209},
	{"bert-base", 109482240, 77},	 {"bert-large", 335141888, 149},
	{"roberta-base", 124645632, 77}, {"roberta-large", 355359744, 149},
	{"gpt2", 124439808, 75},	 {"gpt2-medium", 354823168, 147},
};

static const char *const tiny[] = {"resnet-tiny", "bert-tiny", "roberta-tiny", "gpt2-tiny"};

static struct graph *build(const char *name, enum dtype dt)
{
	struct graph *g = NULL;
	int ret = zoo_build(name, dt, &g);

	cr_assert_eq(ret, 0, "zoo_build %s: %s", name, err_msg(ret));
	cr_assert_not_null(g);
	return g;
}

static uint64_t weight_bytes(const struct graph *g)
{
	uint64_t n = 0;
	uint32_t t;

	for (t = 0; t < g->n_tensors; t++)
		if (g->tensors[t].kind == TK_WEIGHT)
			n += g->tensors[t].nbytes;
	return n;
}

static const struct tensor *tensor_named(const struct graph *g, const char *name)
{
	uint32_t t;

	for (t = 0; t < g->n_tensors; t++)
		if (!strcmp(g->tensors[t].name, name))
			return &g->tensors[t];
	return NULL;
}

static const struct layer *layer_named(const struct graph *g, const char *name)
{
	uint32_t l;

	for (l = 0; l < g->n_layers; l++)
		if (!strcmp(g->layers[l].name, name))
			return &g->layers[l];
	return NULL;
}

Test(zoo, paper_param_counts_fp32)
{
	size_t i;

	for (i = 0; i < sizeof(paper) / sizeof(paper[0]); i++) {
		struct graph *g = build(paper[i].name, DT_F32);

		cr_expect_eq(g->n_params, paper[i].params, "%s: %llu params", paper[i].name,
			     (unsigned long long)g->n_params);
		cr_expect_eq(g->n_layers, paper[i].layers, "%s: %u layers", paper[i].name,
			     g->n_layers);
		cr_expect_eq(weight_bytes(g), paper[i].params * 4, "%s", paper[i].name);
		cr_expect_geq(g->weights_size, paper[i].params * 4, "%s", paper[i].name);
		cr_expect_eq(g->wdtype, DT_F32);
		cr_expect_eq(graph_validate(g, paper[i].name), 0);
		graph_destroy(g);
	}
}

Test(zoo, paper_param_counts_fp16_bf16)
{
	size_t i;

	for (i = 0; i < sizeof(paper) / sizeof(paper[0]); i++) {
		struct graph *h = build(paper[i].name, DT_F16);
		struct graph *b = build(paper[i].name, DT_BF16);

		cr_expect_eq(h->n_params, paper[i].params, "%s", paper[i].name);
		cr_expect_eq(weight_bytes(h), paper[i].params * 2, "%s", paper[i].name);
		cr_expect_geq(h->weights_size, paper[i].params * 2);
		cr_expect_eq(b->n_params, paper[i].params, "%s", paper[i].name);
		cr_expect_eq(weight_bytes(b), paper[i].params * 2, "%s", paper[i].name);
		graph_destroy(h);
		graph_destroy(b);
	}
}

Test(zoo, list_matches_builds)
{
	const struct zoo_info *zi = zoo_list();
	size_t i, n = 0, found = 0;

	for (; zi[n].name; n++) {
		struct graph *g = build(zi[n].name, DT_F32);

		cr_expect_not_null(zi[n].desc);
		if (zi[n].params)
			cr_expect_eq(zi[n].params, g->n_params, "%s", zi[n].name);
		graph_destroy(g);
		for (i = 0; i < sizeof(paper) / sizeof(paper[0]); i++)
			if (!strcmp(zi[n].name, paper[i].name)) {
				cr_expect_eq(zi[n].params, paper[i].params);
				found++;
			}
	}
	cr_expect_eq(n, 12);
	cr_expect_eq(found, 8);
}

Test(zoo, unknown_model_and_bad_dtype)
{
	struct graph *g = (struct graph *)1;
	int ret = zoo_build("resnet51", DT_F32, &g);

	cr_expect_eq(ret, DPRT_ENOMODEL);
	cr_expect_null(g);
	cr_expect_not_null(strstr(err_msg(ret), "resnet51"));
	ret = zoo_build("bert-tiny", DT_I64, &g);
	cr_expect_eq(ret, DPRT_EUNSUP);
	cr_expect_null(g);
}

Test(zoo, tiny_variants_build_and_validate)
{
	enum dtype dts[3] = {DT_F32, DT_F16, DT_BF16};
	size_t i, d;

	for (i = 0; i < 4; i++)
		for (d = 0; d < 3; d++) {
			struct graph *g = build(tiny[i], dts[d]);

			cr_expect_eq(graph_validate(g, tiny[i]), 0, "%s: %s", tiny[i], err_msg(0));
			cr_expect_gt(g->n_params, 1000);
			cr_expect_lt(g->n_params, 400000, "%s: %llu", tiny[i],
				     (unsigned long long)g->n_params);
			cr_expect_eq(weight_bytes(g), g->n_params * (dts[d] == DT_F32 ? 4 : 2));
			graph_destroy(g);
		}
}

static void expect_token_input(const struct io_desc *io, const char *name, unsigned flags,
			       double fill)
{
	cr_expect_str_eq(io->name, name);
	cr_expect_eq(io->dtype, DT_I64, "%s", name);
	cr_expect_eq(io->ndim, 2, "%s", name);
	cr_expect_eq(io->dims[0], DIM_BATCH, "%s", name);
	cr_expect_eq(io->dims[1], DIM_SEQ, "%s", name);
	cr_expect_eq(io->flags, flags, "%s", name);
	cr_expect_eq(io->fill, fill, "%s", name);
}

Test(zoo, bert_roberta_signature_and_limits)
{
	const char *names[4] = {"bert-base", "roberta-large", "bert-tiny", "roberta-tiny"};
	const int64_t max_seq[4] = {512, 512, 64, 62};
	int i;

	for (i = 0; i < 4; i++) {
		struct graph *g = build(names[i], DT_F16);

		cr_assert_eq(g->n_inputs, 3);
		expect_token_input(&g->inputs[0], "input_ids", 0, 0);
		expect_token_input(&g->inputs[1], "attention_mask", IO_OPTIONAL, 1);
		expect_token_input(&g->inputs[2], "token_type_ids", IO_OPTIONAL, 0);
		cr_assert_eq(g->n_outputs, 2);
		cr_expect_str_eq(g->outputs[0].name, "last_hidden_state");
		cr_expect_str_eq(g->outputs[1].name, "pooler_output");
		cr_expect_eq(g->outputs[0].dtype, DT_F16);
		cr_expect_eq(g->max_seq, max_seq[i], "%s", names[i]);
		cr_expect_eq(g->def_seq, i < 2 ? 384 : max_seq[i], "%s", names[i]);
		cr_expect_str_eq(g->arch, strncmp(names[i], "bert", 4) ? "roberta" : "bert");
		graph_destroy(g);
	}
}

Test(zoo, gpt2_and_resnet_signature)
{
	struct graph *g = build("gpt2-medium", DT_F32);
	int64_t img[4] = {DIM_BATCH, 3, 224, 224};

	cr_assert_eq(g->n_inputs, 2);
	expect_token_input(&g->inputs[0], "input_ids", 0, 0);
	expect_token_input(&g->inputs[1], "attention_mask", IO_OPTIONAL, 1);
	cr_assert_eq(g->n_outputs, 1);
	cr_expect_str_eq(g->outputs[0].name, "last_hidden_state");
	cr_expect_eq(g->max_seq, 1024);
	cr_expect_eq(g->def_seq, 1024);
	graph_destroy(g);

	g = build("resnet101", DT_BF16);
	cr_assert_eq(g->n_inputs, 1);
	cr_expect_str_eq(g->inputs[0].name, "input");
	cr_expect_eq(g->inputs[0].dtype, DT_BF16);
	cr_expect_arr_eq(g->inputs[0].dims, img, sizeof(img));
	cr_expect_eq(g->inputs[0].flags, 0);
	cr_assert_eq(g->n_outputs, 1);
	cr_expect_str_eq(g->outputs[0].name, "logits");
	cr_expect_eq(g->outputs[0].dtype, DT_BF16);
	cr_expect_eq(g->max_seq, 0);
	cr_expect_eq(g->def_seq, 0);
	graph_destroy(g);

	g = build("resnet-tiny", DT_F32);
	img[2] = img[3] = 32;
	cr_expect_arr_eq(g->inputs[0].dims, img, sizeof(img));
	graph_destroy(g);
}

/* The node that owns layer `name`, checked to have op `op`. */
static const struct node *owner(const struct graph *g, const char *name, enum op op)
{
	const struct layer *l = layer_named(g, name);
	const struct node *nd;

	cr_assert_not_null(l, "layer %s", name);
	nd = &g->nodes[l->node];
	cr_assert_eq(nd->op, op, "layer %s has op %s", name, op_name((enum op)nd->op));
	return nd;
}

static void expect_dims(const struct graph *g, const char *name, int ndim, int64_t d0, int64_t d1)
{
	const struct tensor *t = tensor_named(g, name);

	cr_assert_not_null(t, "tensor %s", name);
	cr_expect_eq(t->kind, TK_WEIGHT, "%s", name);
	cr_expect_eq(t->ndim, ndim, "%s", name);
	cr_expect_eq(t->dims[0], d0, "%s", name);
	if (ndim > 1)
		cr_expect_eq(t->dims[1], d1, "%s", name);
}

Test(zoo, bert_structure)
{
	struct graph *g = build("bert-base", DT_F32);
	const struct node *nd;
	uint32_t i, n_attn = 0;

	expect_dims(g, "embeddings.word_embeddings.weight", 2, 30522, 768);
	expect_dims(g, "embeddings.position_embeddings.weight", 2, 512, 768);
	expect_dims(g, "embeddings.token_type_embeddings.weight", 2, 2, 768);
	expect_dims(g, "encoder.layer.11.attention.self.{query,key,value}.weight", 2, 2304, 768);
	expect_dims(g, "encoder.layer.11.attention.self.{query,key,value}.bias", 1, 2304, 0);
	expect_dims(g, "encoder.layer.0.intermediate.dense.weight", 2, 3072, 768);
	expect_dims(g, "encoder.layer.0.output.dense.weight", 2, 768, 3072);
	expect_dims(g, "pooler.dense.weight", 2, 768, 768);
	nd = owner(g, "embeddings.LayerNorm", OP_LAYERNORM);
	cr_expect_float_eq(nd->fa[0], 1e-12f, 1e-18);
	owner(g, "encoder.layer.3.attention.self.qkv", OP_LINEAR);
	owner(g, "encoder.layer.3.output.LayerNorm", OP_LAYERNORM);
	cr_expect_str_eq(g->layers[0].name, "embeddings.word_embeddings");
	for (i = 0; i < g->n_nodes; i++) {
		nd = &g->nodes[i];
		if (nd->op == OP_POSITION_IDS)
			cr_expect(nd->ia[0] == 0 && nd->ia[1] == 0);
		if (nd->op == OP_GELU)
			cr_expect_eq(nd->ia[0], 0);
		if (nd->op != OP_ATTENTION)
			continue;
		n_attn++;
		cr_expect(nd->ia[0] == 12 && nd->ia[1] == 0);
		cr_expect_eq(nd->n_in, 2);
		cr_expect_eq(nd->in[1], g->inputs[1].tensor); /* attention_mask */
	}
	cr_expect_eq(n_attn, 12);
	/* the pooler: take_row(0) -> linear -> tanh is the second output */
	nd = &g->nodes[g->n_nodes - 1];
	cr_expect_eq(nd->op, OP_TANH);
	cr_expect_eq(nd->out, g->outputs[1].tensor);
	cr_expect_eq(g->nodes[g->n_nodes - 3].op, OP_TAKE_ROW);
	cr_expect_eq(g->nodes[g->n_nodes - 3].ia[0], 0);
	graph_destroy(g);
}

Test(zoo, roberta_structure)
{
	struct graph *g = build("roberta-base", DT_F32);
	const struct node *nd;
	uint32_t i, n_pos = 0;

	expect_dims(g, "embeddings.word_embeddings.weight", 2, 50265, 768);
	expect_dims(g, "embeddings.position_embeddings.weight", 2, 514, 768);
	expect_dims(g, "embeddings.token_type_embeddings.weight", 2, 1, 768);
	nd = owner(g, "encoder.layer.0.output.LayerNorm", OP_LAYERNORM);
	cr_expect_float_eq(nd->fa[0], 1e-5f, 1e-12);
	for (i = 0; i < g->n_nodes; i++) {
		nd = &g->nodes[i];
		if (nd->op != OP_POSITION_IDS)
			continue;
		n_pos++;
		cr_expect(nd->ia[0] == 1 && nd->ia[1] == 1, "mode 1, pad 1");
		cr_expect_eq(nd->in[0], g->inputs[0].tensor);
	}
	cr_expect_eq(n_pos, 1);
	graph_destroy(g);
}

Test(zoo, gpt2_structure)
{
	struct graph *g = build("gpt2", DT_F32);
	const struct node *nd;
	uint32_t i, n_attn = 0;

	expect_dims(g, "wte.weight", 2, 50257, 768);
	expect_dims(g, "wpe.weight", 2, 1024, 768);
	expect_dims(g, "h.0.attn.c_attn.weight^T", 2, 2304, 768);
	expect_dims(g, "h.0.attn.c_attn.bias", 1, 2304, 0);
	expect_dims(g, "h.11.mlp.c_fc.weight^T", 2, 3072, 768);
	expect_dims(g, "h.11.mlp.c_proj.weight^T", 2, 768, 3072);
	expect_dims(g, "ln_f.weight", 1, 768, 0);
	owner(g, "h.5.attn.c_proj", OP_LINEAR);
	owner(g, "h.5.ln_2", OP_LAYERNORM);
	cr_expect_str_eq(g->layers[g->n_layers - 1].name, "ln_f");
	cr_expect_eq(g->nodes[g->n_nodes - 1].out, g->outputs[0].tensor);
	for (i = 0; i < g->n_nodes; i++) {
		nd = &g->nodes[i];
		if (nd->op == OP_GELU)
			cr_expect_eq(nd->ia[0], 1, "tanh GELU");
		if (nd->op == OP_POSITION_IDS)
			cr_expect(nd->ia[0] == 0 && nd->ia[1] == 0);
		if (nd->op != OP_ATTENTION)
			continue;
		n_attn++;
		cr_expect(nd->ia[0] == 12 && nd->ia[1] == 1, "12 heads, causal");
		cr_expect_eq(nd->in[1], g->inputs[1].tensor);
	}
	cr_expect_eq(n_attn, 12);
	graph_destroy(g);
}

Test(zoo, resnet_structure)
{
	struct graph *g = build("resnet50", DT_F32);
	const struct node *nd;
	uint32_t i, relu_adds = 0;

	expect_dims(g, "conv1.weight", 4, 64, 3);
	expect_dims(g, "layer1.0.downsample.0.weight", 4, 256, 64);
	expect_dims(g, "layer4.2.conv3.weight", 4, 2048, 512);
	expect_dims(g, "fc.weight", 2, 1000, 2048);
	expect_dims(g, "fc.bias", 1, 1000, 0);
	expect_dims(g, "layer2.0.bn2#scale", 1, 128, 0);
	expect_dims(g, "layer2.0.bn2#shift", 1, 128, 0);
	cr_expect_null(layer_named(g, "layer1.1.downsample.0"));
	nd = owner(g, "layer2.0.conv2", OP_CONV2D);
	cr_expect(nd->ia[0] == 2 && nd->ia[1] == 2 && nd->ia[2] == 1, "stride on the 3x3");
	cr_expect_eq(nd->n_in, 2, "no bias");
	nd = owner(g, "layer2.0.conv1", OP_CONV2D);
	cr_expect_eq(nd->ia[0], 1);
	nd = owner(g, "layer2.0.downsample.0", OP_CONV2D);
	cr_expect(nd->ia[0] == 2 && nd->ia[2] == 0);
	nd = owner(g, "conv1", OP_CONV2D);
	cr_expect(nd->ia[0] == 2 && nd->ia[2] == 3 && nd->ia[6] == 1);
	cr_expect_eq(owner(g, "bn1", OP_BATCHNORM)->ia[0], 1);
	cr_expect_eq(owner(g, "layer3.4.bn2", OP_BATCHNORM)->ia[0], 1);
	cr_expect_eq(owner(g, "layer3.4.bn3", OP_BATCHNORM)->ia[0], 0);
	cr_expect_eq(owner(g, "layer3.0.downsample.1", OP_BATCHNORM)->ia[0], 0);
	for (i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == OP_ADD && g->nodes[i].ia[0] == 1)
			relu_adds++;
	cr_expect_eq(relu_adds, 16);
	cr_expect_eq(g->nodes[2].op, OP_MAXPOOL);
	cr_expect(g->nodes[2].ia[0] == 3 && g->nodes[2].ia[2] == 2 && g->nodes[2].ia[4] == 1);
	cr_expect_eq(g->nodes[g->n_nodes - 2].op, OP_GLOBAL_AVGPOOL);
	cr_expect_str_eq(g->layers[g->n_layers - 1].name, "fc");
	graph_destroy(g);
}

/* ---------------------------------------------------------- wsrc_random */

/* All weights of g filled by ws, visiting tensors forwards or backwards. */
static uint8_t *fill_all(const struct graph *g, struct weight_source *ws, bool backwards)
{
	uint8_t *region = calloc(1, g->weights_size);
	uint32_t i;

	cr_assert_not_null(region);
	for (i = 0; i < g->n_tensors; i++) {
		uint32_t t = backwards ? g->n_tensors - 1 - i : i;
		int ret;

		if (g->tensors[t].kind != TK_WEIGHT)
			continue;
		ret = wsrc_fill(ws, g, t, region + g->tensors[t].offset);
		cr_assert_eq(ret, 0, "%s: %s", g->tensors[t].name, err_msg(ret));
	}
	return region;
}

Test(wsrc_random, deterministic_per_seed_and_name)
{
	struct graph *g = build("bert-tiny", DT_F32);
	struct weight_source *a = wsrc_random(42), *b = wsrc_random(42), *c = wsrc_random(43);
	uint8_t *ra, *rb, *rc;
	uint32_t t;

	cr_assert(a && b && c);
	ra = fill_all(g, a, false);
	rb = fill_all(g, b, true);
	rc = fill_all(g, c, false);
	cr_expect_eq(memcmp(ra, rb, g->weights_size), 0, "same seed, other order");
	for (t = 0; t < g->n_tensors; t++) {
		const struct tensor *w = &g->tensors[t];

		if (w->kind == TK_WEIGHT)
			cr_expect_neq(memcmp(ra + w->offset, rc + w->offset, w->nbytes), 0,
				      "seed 43 equals 42 on %s", w->name);
	}
	free(ra);
	free(rb);
	free(rc);
	wsrc_destroy(a);
	wsrc_destroy(b);
	wsrc_destroy(c);
	graph_destroy(g);
}

/* min, max and mean of an FP32 tensor. */
static void stats(const float *v, uint64_t n, double *lo, double *hi, double *mean)
{
	uint64_t i;

	*lo = INFINITY;
	*hi = -INFINITY;
	*mean = 0;
	for (i = 0; i < n; i++) {
		cr_assert(isfinite(v[i]));
		*lo = fmin(*lo, v[i]);
		*hi = fmax(*hi, v[i]);
		*mean += v[i];
	}
	*mean /= (double)n;
}

static void expect_law(const struct graph *g, const uint8_t *region, const char *name,
		       double center, double bound)
{
	const struct tensor *w = tensor_named(g, name);
	double lo, hi, mean;

	cr_assert_not_null(w, "%s", name);
	stats((const float *)(region + w->offset), w->nbytes / 4, &lo, &hi, &mean);
	cr_expect(lo >= center - bound && hi <= center + bound, "%s: [%g, %g] outside %g+-%g", name,
		  lo, hi, center, bound);
	cr_expect(lo < center - 0.8 * bound && hi > center + 0.8 * bound,
		  "%s: [%g, %g] does not fill %g+-%g", name, lo, hi, center, bound);
	cr_expect(fabs(mean - center) < 0.1 * bound, "%s: mean %g", name, mean);
}

Test(wsrc_random, scales_follow_the_role)
{
	struct graph *g = build("bert-tiny", DT_F32);
	struct weight_source *ws = wsrc_random(7);
	uint8_t *r = fill_all(g, ws, false);

	expect_law(g, r, "embeddings.word_embeddings.weight", 0, 0.02 * sqrt(3));
	expect_law(g, r, "embeddings.LayerNorm.weight", 1, 0.1);
	expect_law(g, r, "embeddings.LayerNorm.bias", 0, 0.1);
	expect_law(g, r, "encoder.layer.1.attention.self.{query,key,value}.weight", 0,
		   1 / sqrt(64));
	expect_law(g, r, "encoder.layer.1.output.dense.weight", 0, 1 / sqrt(128));
	expect_law(g, r, "encoder.layer.1.intermediate.dense.weight", 0, 1 / sqrt(64));
	free(r);
	graph_destroy(g);

	g = build("resnet-tiny", DT_F32);
	r = fill_all(g, ws, false);
	expect_law(g, r, "conv1.weight", 0, 1 / sqrt(3 * 7 * 7));
	expect_law(g, r, "layer2.0.conv2.weight", 0, 1 / sqrt(16 * 9));
	expect_law(g, r, "fc.weight", 0, 1 / sqrt(256));
	/* BN ahead of a ReLU scales by about 2, ahead of the residual add by 1 */
	expect_law(g, r, "layer4.0.bn1#scale", 2, 0.2);
	expect_law(g, r, "layer4.0.bn3#scale", 1, 0.1);
	expect_law(g, r, "layer4.0.downsample.1#scale", 1, 0.1);
	expect_law(g, r, "layer4.0.bn3#shift", 0, 0.1);
	free(r);
	graph_destroy(g);
	wsrc_destroy(ws);
}

/* FP16/BF16 fills are the FP32 fill rounded: one seed, one model. */
Test(wsrc_random, half_dtypes_round_the_fp32_values)
{
	struct graph *g32 = build("gpt2-tiny", DT_F32), *g16 = build("gpt2-tiny", DT_F16);
	struct graph *gb = build("gpt2-tiny", DT_BF16);
	struct weight_source *ws = wsrc_random(3);
	uint8_t *r32 = fill_all(g32, ws, false), *r16 = fill_all(g16, ws, true);
	uint8_t *rb = fill_all(gb, ws, false);
	uint32_t t;
	uint64_t i, bad = 0;

	for (t = 0; t < g32->n_tensors; t++) {
		const struct tensor *w = &g32->tensors[t];
		const float *f = (const float *)(r32 + w->offset);
		const uint16_t *h = (const uint16_t *)(r16 + g16->tensors[t].offset);
		const uint16_t *b = (const uint16_t *)(rb + gb->tensors[t].offset);

		if (w->kind != TK_WEIGHT)
			continue;
		for (i = 0; i < w->nbytes / 4; i++)
			bad += h[i] != f32_to_f16(f[i]) || b[i] != f32_to_bf16(f[i]);
	}
	cr_expect_eq(bad, 0);
	free(r32);
	free(r16);
	free(rb);
	wsrc_destroy(ws);
	graph_destroy(g32);
	graph_destroy(g16);
	graph_destroy(gb);
}

Test(wsrc_random, refuses_non_weights)
{
	struct graph *g = build("gpt2-tiny", DT_F32);
	struct weight_source *ws = wsrc_random(1);
	float dst[4];

	cr_expect_eq(wsrc_fill(ws, g, g->inputs[0].tensor, dst), -EINVAL);
	cr_expect_eq(wsrc_fill(ws, g, g->n_tensors, dst), -EINVAL);
	wsrc_destroy(ws);
	graph_destroy(g);
}
