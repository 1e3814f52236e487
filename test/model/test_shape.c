/* SPDX-License-Identifier: MIT */
/* graph_infer_shapes: signature checks and inferred activation shapes. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

static struct shape shp(enum dtype dt, int ndim, ...)
{
	struct shape s = {.dtype = (uint8_t)dt, .ndim = (uint8_t)ndim};
	va_list ap;
	int i;

	va_start(ap, ndim);
	for (i = 0; i < ndim; i++)
		s.dims[i] = va_arg(ap, int64_t);
	va_end(ap);
	return s;
}

static const struct shape omitted = {0};

static void expect_shape(const struct shape *s, enum dtype dt, int ndim, ...)
{
	va_list ap;
	int i;

	cr_expect_eq(s->dtype, dt, "dtype %d, expected %d", s->dtype, dt);
	cr_assert_eq(s->ndim, ndim, "rank %d, expected %d", s->ndim, ndim);
	va_start(ap, ndim);
	for (i = 0; i < ndim; i++) {
		int64_t d = va_arg(ap, int64_t);

		cr_expect_eq(s->dims[i], d, "dim %d is %lld, expected %lld", i,
			     (long long)s->dims[i], (long long)d);
	}
	va_end(ap);
}

/* A small BERT-like graph: three id inputs (two optional), embeddings,
 * layernorm, fused QKV, attention, pooler. Tensor ids are returned. */
struct tgraph {
	struct graph *g;
	uint32_t ids, mask, types, emb, ln, qkv, attn, row, pool;
};

static struct tgraph bert_like(int64_t heads)
{
	const int64_t sig[2] = {DIM_BATCH, DIM_SEQ};
	const int64_t tab[2] = {30, 8}, ttab[2] = {2, 8}, vec[1] = {8};
	const int64_t wq[2] = {24, 8}, bq[1] = {24}, wp[2] = {8, 8};
	const float eps = 1e-12f;
	struct tgraph t;
	uint32_t in[3], tt;
	int64_t ia[2] = {heads, 0};

	t.g = graph_create("tbert", "bert", DT_F32);
	t.g->max_seq = 16;
	t.g->max_batch = 4;
	t.ids = graph_input(t.g, "input_ids", DT_I64, 2, sig, 0, 0);
	t.mask = graph_input(t.g, "attention_mask", DT_I64, 2, sig, IO_OPTIONAL, 1);
	t.types = graph_input(t.g, "token_type_ids", DT_I64, 2, sig, IO_OPTIONAL, 0);
	graph_layer_begin(t.g, "word");
	in[0] = t.ids;
	in[1] = graph_weight(t.g, "word.weight", 2, tab);
	t.emb = graph_node(t.g, OP_EMBEDDING, in, 2, NULL, 0, NULL, 0);
	graph_layer_begin(t.g, "type");
	in[0] = t.types;
	in[1] = graph_weight(t.g, "type.weight", 2, ttab);
	tt = graph_node(t.g, OP_EMBEDDING, in, 2, NULL, 0, NULL, 0);
	in[0] = t.emb;
	in[1] = tt;
	tt = graph_node(t.g, OP_ADD, in, 2, NULL, 0, NULL, 0);
	graph_layer_begin(t.g, "ln");
	in[0] = tt;
	in[1] = graph_weight(t.g, "ln.weight", 1, vec);
	in[2] = graph_weight(t.g, "ln.bias", 1, vec);
	t.ln = graph_node(t.g, OP_LAYERNORM, in, 3, NULL, 0, &eps, 1);
	graph_layer_begin(t.g, "qkv");
	in[0] = t.ln;
	in[1] = graph_weight(t.g, "qkv.weight", 2, wq);
	in[2] = graph_weight(t.g, "qkv.bias", 1, bq);
	t.qkv = graph_node(t.g, OP_LINEAR, in, 3, NULL, 0, NULL, 0);
	in[0] = t.qkv;
	in[1] = t.mask;
	t.attn = graph_node(t.g, OP_ATTENTION, in, 2, ia, 2, NULL, 0);
	ia[0] = 0;
	in[0] = t.attn;
	t.row = graph_node(t.g, OP_TAKE_ROW, in, 1, ia, 1, NULL, 0);
	graph_layer_begin(t.g, "pool");
	in[0] = t.row;
	in[1] = graph_weight(t.g, "pool.weight", 2, wp);
	t.pool = graph_node(t.g, OP_LINEAR, in, 2, NULL, 0, NULL, 0);
	graph_output(t.g, "last_hidden_state", t.attn);
	graph_output(t.g, "pooler_output", t.pool);
	cr_assert_eq(graph_finalize(t.g), 0, "%s", err_msg(0));
	return t;
}

/* Run inference of shapes; returns the code, shapes in *out (caller frees). */
static int infer(const struct graph *g, const struct shape *in, struct shape **out)
{
	*out = calloc(g->n_tensors, sizeof(**out));
	cr_assert(*out);
	err_clear();
	return graph_infer_shapes(g, in, *out);
}

static void expect_fail(const struct graph *g, const struct shape *in, int code, const char *needle)
{
	struct shape *s;
	int ret = infer(g, in, &s);

	cr_expect_eq(ret, code, "code %d, expected %d (%s)", ret, code, err_msg(ret));
	cr_expect(strstr(err_msg(ret), needle), "message \"%s\" lacks \"%s\"", err_msg(ret),
		  needle);
	free(s);
}

Test(shape, bert_like_all_inputs)
{
	struct tgraph t = bert_like(2);
	struct shape in[3] = {shp(DT_I64, 2, 2ll, 5ll), shp(DT_I64, 2, 2ll, 5ll),
			      shp(DT_I64, 2, 2ll, 5ll)};
	struct shape *s;

	cr_assert_eq(infer(t.g, in, &s), 0, "%s", err_msg(0));
	expect_shape(&s[t.emb], DT_F32, 3, 2ll, 5ll, 8ll);
	expect_shape(&s[t.qkv], DT_F32, 3, 2ll, 5ll, 24ll);
	expect_shape(&s[t.attn], DT_F32, 3, 2ll, 5ll, 8ll);
	expect_shape(&s[t.row], DT_F32, 2, 2ll, 8ll);
	expect_shape(&s[t.pool], DT_F32, 2, 2ll, 8ll);
	expect_shape(&s[t.g->nodes[0].in[1]], DT_F32, 2, 30ll, 8ll);
	free(s);
	graph_destroy(t.g);
}

Test(shape, omitted_optional_inputs_follow_the_others)
{
	struct tgraph t = bert_like(2);
	struct shape in[3] = {shp(DT_I64, 2, 3ll, 16ll), omitted, omitted};
	struct shape *s;

	cr_assert_eq(infer(t.g, in, &s), 0, "%s", err_msg(0));
	expect_shape(&s[t.mask], DT_I64, 2, 3ll, 16ll);
	expect_shape(&s[t.types], DT_I64, 2, 3ll, 16ll);
	expect_shape(&s[t.attn], DT_F32, 3, 3ll, 16ll, 8ll);
	free(s);
	graph_destroy(t.g);
}

Test(shape, wrong_dtype)
{
	struct tgraph t = bert_like(2);
	struct shape in[3] = {shp(DT_F32, 2, 1ll, 5ll), omitted, omitted};

	expect_fail(t.g, in, DPRT_EDTYPE,
		    "input_ids: expected INT64 [batch<=4, seq<=16], got FP32 [1,5]");
	in[0] = shp(DT_I64, 2, 1ll, 5ll);
	in[1] = shp(DT_I32, 2, 1ll, 5ll);
	expect_fail(t.g, in, DPRT_EDTYPE, "attention_mask: expected INT64");
	graph_destroy(t.g);
}

Test(shape, wrong_rank)
{
	struct tgraph t = bert_like(2);
	struct shape in[3] = {shp(DT_I64, 3, 1ll, 5ll, 1ll), omitted, omitted};

	expect_fail(t.g, in, DPRT_ESHAPE,
		    "input_ids: expected INT64 [batch<=4, seq<=16], "
		    "got INT64 [1,5,1] (rank 3, expected 2)");
	in[0] = shp(DT_I64, 1, 5ll);
	expect_fail(t.g, in, DPRT_ESHAPE, "rank 1, expected 2");
	graph_destroy(t.g);
}

Test(shape, seq_limits)
{
	struct tgraph t = bert_like(2);
	struct shape in[3] = {shp(DT_I64, 2, 1ll, 17ll), omitted, omitted};

	expect_fail(t.g, in, DPRT_ESHAPE, "seq 17 > max 16");
	in[0] = shp(DT_I64, 2, 1ll, 0ll);
	expect_fail(t.g, in, DPRT_ESHAPE, "dim 1 is 0");
	in[0] = shp(DT_I64, 2, 1ll, 16ll);
	expect_fail(t.g, in, 0, "");
	graph_destroy(t.g);
}

Test(shape, batch_limits)
{
	struct tgraph t = bert_like(2);
	struct shape in[3] = {shp(DT_I64, 2, 5ll, 3ll), omitted, omitted};

	expect_fail(t.g, in, DPRT_ESHAPE, "batch 5 > max 4");
	in[0] = shp(DT_I64, 2, -1ll, 3ll);
	expect_fail(t.g, in, DPRT_ESHAPE, "dim 0 is -1");
	graph_destroy(t.g);
}

Test(shape, batch_and_seq_agree_across_inputs)
{
	struct tgraph t = bert_like(2);
	struct shape in[3] = {shp(DT_I64, 2, 2ll, 5ll), shp(DT_I64, 2, 1ll, 5ll), omitted};

	expect_fail(t.g, in, DPRT_ESHAPE,
		    "attention_mask: expected INT64 [batch<=4, seq<=16], got INT64 [1,5] "
		    "(batch 1, but input_ids gives 2)");
	in[1] = shp(DT_I64, 2, 2ll, 5ll);
	in[2] = shp(DT_I64, 2, 2ll, 6ll);
	expect_fail(t.g, in, DPRT_ESHAPE,
		    "token_type_ids: expected INT64 [batch<=4, seq<=16], "
		    "got INT64 [2,6] (seq 6, but attention_mask gives 5)");
	graph_destroy(t.g);
}

Test(shape, required_input_missing)
{
	struct tgraph t = bert_like(2);
	struct shape in[3] = {omitted, shp(DT_I64, 2, 1ll, 5ll), omitted};

	expect_fail(t.g, in, DPRT_ESHAPE, "input_ids: required input missing");
	graph_destroy(t.g);
}

Test(shape, attention_heads_must_divide)
{
	struct tgraph t = bert_like(5); /* 24 = 3 * 8 is not 3 * 5 * d */
	struct shape in[3] = {shp(DT_I64, 2, 1ll, 5ll), omitted, omitted};

	expect_fail(t.g, in, DPRT_ESHAPE, "node 5 (attention)");
	graph_destroy(t.g);
}

/* Image graph: conv, batchnorm, pools, global pool, linear. */
struct igraph {
	struct graph *g;
	uint32_t conv, bn, maxp, avgp, dil, grp, gap, fc;
};

static uint32_t add_conv(struct graph *g, const char *name, uint32_t x, int64_t k, int64_t cg,
			 int64_t kh, const int64_t *ia)
{
	const int64_t wd[4] = {k, cg, kh, kh}, bd[1] = {k};
	uint32_t in[3] = {x};
	char n[64];

	graph_layer_begin(g, name);
	snprintf(n, sizeof(n), "%s.weight", name);
	in[1] = graph_weight(g, n, 4, wd);
	snprintf(n, sizeof(n), "%s.bias", name);
	in[2] = graph_weight(g, n, 1, bd);
	return graph_node(g, OP_CONV2D, in, 3, ia, 7, NULL, 0);
}

static struct igraph image_graph(void)
{
	const int64_t sig[4] = {DIM_BATCH, 3, 17, 12}, vec[1] = {4}, fcw[2] = {10, 6};
	const int64_t c1[7] = {2, 2, 1, 1, 1, 1, 1}; /* 3x3 s2 p1 */
	const int64_t c2[7] = {1, 1, 2, 2, 2, 2, 1}; /* 3x3 dil 2 p2 */
	const int64_t c3[7] = {1, 1, 0, 0, 1, 1, 2}; /* 1x1 groups 2 */
	const int64_t mp[6] = {3, 3, 2, 2, 1, 1};
	const int64_t ap[7] = {2, 3, 1, 2, 0, 1, 1};
	struct igraph t;
	uint32_t in[3], x;
	int64_t relu = 1;

	t.g = graph_create("timg", "resnet", DT_F32);
	x = graph_input(t.g, "pixel_values", DT_F32, 4, sig, 0, 0);
	t.conv = add_conv(t.g, "conv1", x, 4, 3, 3, c1);
	graph_layer_begin(t.g, "bn1");
	in[0] = t.conv;
	in[1] = graph_weight(t.g, "bn1.scale", 1, vec);
	in[2] = graph_weight(t.g, "bn1.shift", 1, vec);
	t.bn = graph_node(t.g, OP_BATCHNORM, in, 3, &relu, 1, NULL, 0);
	in[0] = t.bn;
	t.maxp = graph_node(t.g, OP_MAXPOOL, in, 1, mp, 6, NULL, 0);
	in[0] = t.maxp;
	t.avgp = graph_node(t.g, OP_AVGPOOL, in, 1, ap, 7, NULL, 0);
	t.dil = add_conv(t.g, "conv2", t.bn, 4, 4, 3, c2);
	t.grp = add_conv(t.g, "conv3", t.dil, 6, 2, 1, c3);
	in[0] = t.grp;
	t.gap = graph_node(t.g, OP_GLOBAL_AVGPOOL, in, 1, NULL, 0, NULL, 0);
	graph_layer_begin(t.g, "fc");
	in[0] = t.gap;
	in[1] = graph_weight(t.g, "fc.weight", 2, fcw);
	t.fc = graph_node(t.g, OP_LINEAR, in, 2, NULL, 0, NULL, 0);
	graph_output(t.g, "logits", t.fc);
	graph_output(t.g, "pooled", t.avgp);
	cr_assert_eq(graph_finalize(t.g), 0, "%s", err_msg(0));
	return t;
}

Test(shape, image_ops)
{
	struct igraph t = image_graph();
	struct shape in[1] = {shp(DT_F32, 4, 2ll, 3ll, 17ll, 12ll)};
	struct shape *s;

	cr_assert_eq(infer(t.g, in, &s), 0, "%s", err_msg(0));
	/* conv 3x3 s2 p1: (17 + 2 - 3) / 2 + 1 = 9, (12 + 2 - 3) / 2 + 1 = 6 */
	expect_shape(&s[t.conv], DT_F32, 4, 2ll, 4ll, 9ll, 6ll);
	expect_shape(&s[t.bn], DT_F32, 4, 2ll, 4ll, 9ll, 6ll);
	/* maxpool 3x3 s2 p1: (9 + 2 - 3) / 2 + 1 = 5, (6 + 2 - 3) / 2 + 1 = 3 */
	expect_shape(&s[t.maxp], DT_F32, 4, 2ll, 4ll, 5ll, 3ll);
	/* avgpool 2x3 s1x2 p0x1: (5 - 2) / 1 + 1 = 4, (3 + 2 - 3) / 2 + 1 = 2 */
	expect_shape(&s[t.avgp], DT_F32, 4, 2ll, 4ll, 4ll, 2ll);
	/* dilation 2, pad 2: 9 + 4 - 2 * 2 - 1 + 1 = 9 */
	expect_shape(&s[t.dil], DT_F32, 4, 2ll, 4ll, 9ll, 6ll);
	expect_shape(&s[t.grp], DT_F32, 4, 2ll, 6ll, 9ll, 6ll);
	expect_shape(&s[t.gap], DT_F32, 2, 2ll, 6ll);
	expect_shape(&s[t.fc], DT_F32, 2, 2ll, 10ll);
	free(s);
	graph_destroy(t.g);
}

Test(shape, fixed_dims_must_match)
{
	struct igraph t = image_graph();
	struct shape in[1] = {shp(DT_F32, 4, 1ll, 3ll, 17ll, 13ll)};

	expect_fail(t.g, in, DPRT_ESHAPE,
		    "pixel_values: expected FP32 [batch, 3, 17, 12], got FP32 [1,3,17,13] "
		    "(dim 3 is 13, expected 12)");
	in[0] = shp(DT_F16, 4, 1ll, 3ll, 17ll, 12ll);
	expect_fail(t.g, in, DPRT_EDTYPE, "got FP16 [1,3,17,12]");
	graph_destroy(t.g);
}

/* One-node graph over two FP32 inputs a[B,ka] and b[B,kb]. */
static struct graph *two_input_graph(enum op op, int64_t ka, int64_t kb, int64_t wk)
{
	const int64_t da[2] = {DIM_BATCH, ka}, db[2] = {DIM_BATCH, kb}, wd[2] = {3, wk};
	struct graph *g = graph_create("t2", "test", DT_F32);
	uint32_t in[2], y;

	in[0] = graph_input(g, "a", DT_F32, 2, da, 0, 0);
	in[1] = graph_input(g, "b", DT_F32, 2, db, 0, 0);
	if (op == OP_LINEAR) {
		graph_layer_begin(g, "fc");
		in[1] = graph_weight(g, "fc.weight", 2, wd);
	}
	y = graph_node(g, op, in, 2, NULL, 0, NULL, 0);
	graph_output(g, "y", y);
	cr_assert_eq(graph_finalize(g), 0, "%s", err_msg(0));
	return g;
}

Test(shape, add_of_different_shapes)
{
	struct graph *g = two_input_graph(OP_ADD, 4, 5, 0);
	struct shape in[2] = {shp(DT_F32, 2, 2ll, 4ll), shp(DT_F32, 2, 2ll, 5ll)};

	expect_fail(g, in, DPRT_ESHAPE, "operands differ in shape");
	graph_destroy(g);
	g = two_input_graph(OP_ADD, 4, 4, 0);
	expect_fail(g, (struct shape[2]){shp(DT_F32, 2, 2ll, 4ll), shp(DT_F32, 2, 2ll, 4ll)}, 0,
		    "");
	graph_destroy(g);
}

Test(shape, linear_k_mismatch)
{
	struct graph *g = two_input_graph(OP_LINEAR, 4, 4, 5);
	struct shape in[2] = {shp(DT_F32, 2, 2ll, 4ll), shp(DT_F32, 2, 2ll, 4ll)};
	struct shape *s;

	expect_fail(g, in, DPRT_ESHAPE, "fc.weight=FP32 [3,5]");
	graph_destroy(g);
	g = two_input_graph(OP_LINEAR, 5, 4, 5);
	in[0] = shp(DT_F32, 2, 2ll, 5ll);
	cr_assert_eq(infer(g, in, &s), 0, "%s", err_msg(0));
	expect_shape(&s[g->outputs[0].tensor], DT_F32, 2, 2ll, 3ll);
	free(s);
	graph_destroy(g);
}

Test(shape, take_row_outside_sequence)
{
	const int64_t d[3] = {DIM_BATCH, DIM_SEQ, 4}, ia[1] = {2};
	struct graph *g = graph_create("tr", "test", DT_F32);
	uint32_t x = graph_input(g, "x", DT_F32, 3, d, 0, 0);
	struct shape in[1] = {shp(DT_F32, 3, 1ll, 2ll, 4ll)};

	graph_output(g, "y", graph_node(g, OP_TAKE_ROW, &x, 1, ia, 1, NULL, 0));
	cr_assert_eq(graph_finalize(g), 0, "%s", err_msg(0));
	expect_fail(g, in, DPRT_ESHAPE, "row index outside the sequence");
	in[0].dims[1] = 3;
	expect_fail(g, in, 0, "");
	graph_destroy(g);
}

Test(shape, embedding_ids_must_be_int64)
{
	const int64_t d[2] = {DIM_BATCH, DIM_SEQ}, td[2] = {10, 4};
	struct graph *g = graph_create("te", "test", DT_F32);
	uint32_t in[2];
	struct shape sh[1] = {shp(DT_F32, 2, 1ll, 3ll)};

	in[0] = graph_input(g, "ids", DT_F32, 2, d, 0, 0);
	graph_layer_begin(g, "emb");
	in[1] = graph_weight(g, "emb.weight", 2, td);
	graph_output(g, "y", graph_node(g, OP_EMBEDDING, in, 2, NULL, 0, NULL, 0));
	cr_assert_eq(graph_finalize(g), 0, "%s", err_msg(0));
	expect_fail(g, sh, DPRT_EDTYPE, "must be INT64");
	graph_destroy(g);
}

Test(shape, omitted_input_without_a_source_of_its_batch)
{
	const int64_t d1[2] = {DIM_BATCH, 3}, d2[1] = {3};
	struct graph *g = graph_create("to", "test", DT_F32);
	uint32_t in[2];
	struct shape sh[2] = {omitted, shp(DT_F32, 1, 3ll)};

	in[0] = graph_input(g, "opt", DT_F32, 2, d1, IO_OPTIONAL, 0);
	in[1] = graph_input(g, "req", DT_F32, 1, d2, 0, 0);
	graph_output(g, "y", graph_node(g, OP_RELU, in, 1, NULL, 0, NULL, 0));
	graph_output(g, "z", graph_node(g, OP_TANH, &in[1], 1, NULL, 0, NULL, 0));
	cr_assert_eq(graph_finalize(g), 0, "%s", err_msg(0));
	expect_fail(g, sh, DPRT_ESHAPE, "opt: omitted, and no given input fixes its shape");
	graph_destroy(g);
}

Test(shape, kernel_larger_than_input)
{
	const int64_t d[4] = {1, 2, DIM_SEQ, 5};
	const int64_t mp[6] = {3, 3, 1, 1, 0, 0};
	struct graph *g = graph_create("tk", "test", DT_F32);
	uint32_t x = graph_input(g, "x", DT_F32, 4, d, 0, 0);
	struct shape sh[1] = {shp(DT_F32, 4, 1ll, 2ll, 2ll, 5ll)};
	struct shape *s;

	graph_output(g, "y", graph_node(g, OP_MAXPOOL, &x, 1, mp, 6, NULL, 0));
	cr_assert_eq(graph_finalize(g), 0, "%s", err_msg(0));
	expect_fail(g, sh, DPRT_ESHAPE, "kernel larger than the padded input");
	sh[0].dims[2] = 3;
	cr_assert_eq(infer(g, sh, &s), 0, "%s", err_msg(0));
	expect_shape(&s[g->outputs[0].tensor], DT_F32, 4, 1ll, 2ll, 1ll, 3ll);
	free(s);
	graph_destroy(g);
}

/* The peak counted by hand for bert_like(2) at [2,5]: before attention's
 * inputs are released, mask (128) + qkv (960) + attn (320) are alive with
 * the scores of one sequence (2 heads x 5 x 5 floats = 200 bytes). */
Test(shape, activation_peak_by_hand)
{
	struct tgraph t = bert_like(2);
	struct shape in[3] = {shp(DT_I64, 2, 2ll, 5ll), shp(DT_I64, 2, 2ll, 5ll),
			      shp(DT_I64, 2, 2ll, 5ll)};
	struct shape *s;
	uint64_t small, big;
	uint32_t work[64];

	cr_assert_eq(infer(t.g, in, &s), 0, "%s", err_msg(0));
	cr_assert_leq(t.g->n_tensors, 64);
	small = graph_act_peak(t.g, s, work);
	cr_expect_eq(small, 1608, "peak %llu, expected 1608", (unsigned long long)small);
	free(s);
	in[0] = in[1] = in[2] = shp(DT_I64, 2, 4ll, 16ll);
	cr_assert_eq(infer(t.g, in, &s), 0, "%s", err_msg(0));
	big = graph_act_peak(t.g, s, work);
	cr_expect_gt(big, 6 * small, "peak %llu at [4,16] against %llu at [2,5]",
		     (unsigned long long)big, (unsigned long long)small);
	free(s);
	graph_destroy(t.g);
}
