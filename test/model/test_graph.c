/* SPDX-License-Identifier: MIT */
/* Graph builder: weight-region layout and validation. */
#include "model/model.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

/*
 * x[N,16] -> fc1 (linear 16->8, bias) -> relu -> ln (layernorm 8)
 *         -> fc2 (linear 8->3, bias, 12-byte bias forces tensor padding)
 *         -> out; plus a conv branch on img[N,3,5,5].
 */
static struct graph *base_graph(enum dtype wdtype)
{
	struct graph *g = graph_create("base", "test", wdtype);
	const int64_t xd[2] = {DIM_BATCH, 16}, imd[4] = {DIM_BATCH, 3, 5, 5};
	const int64_t w1[2] = {8, 16}, b1[1] = {8}, w2[2] = {3, 8}, b2[1] = {3};
	const int64_t cw[4] = {2, 3, 3, 3}, conv[7] = {1, 1, 0, 0, 1, 1, 1};
	uint32_t x, img, in[3];

	x = graph_input(g, "x", wdtype, 2, xd, 0, 0);
	img = graph_input(g, "img", wdtype, 4, imd, 0, 0);
	graph_layer_begin(g, "fc1");
	in[0] = x;
	in[1] = graph_weight(g, "fc1.weight", 2, w1);
	in[2] = graph_weight(g, "fc1.bias", 1, b1);
	x = graph_node(g, OP_LINEAR, in, 3, NULL, 0, NULL, 0);
	in[0] = x;
	x = graph_node(g, OP_RELU, in, 1, NULL, 0, NULL, 0);
	graph_layer_begin(g, "ln");
	in[0] = x;
	in[1] = graph_weight(g, "ln.weight", 1, b1);
	in[2] = graph_weight(g, "ln.bias", 1, b1);
	x = graph_node(g, OP_LAYERNORM, in, 3, NULL, 0, NULL, 0);
	graph_layer_begin(g, "fc2");
	in[0] = x;
	in[1] = graph_weight(g, "fc2.bias", 1, b2);
	in[2] = graph_weight(g, "fc2.weight", 2, w2);
	x = graph_node(g, OP_LINEAR, (const uint32_t[]){in[0], in[2], in[1]}, 3, NULL, 0, NULL, 0);
	graph_output(g, "logits", x);
	graph_layer_begin(g, "conv");
	in[0] = img;
	in[1] = graph_weight(g, "conv.weight", 4, cw);
	x = graph_node(g, OP_CONV2D, in, 2, conv, 7, NULL, 0);
	graph_output(g, "map", x);
	return g;
}

static struct graph *final_graph(void)
{
	struct graph *g = base_graph(DT_F32);

	cr_assert_eq(graph_finalize(g), 0, "%s", err_msg(0));
	return g;
}

static uint32_t find_tensor(const struct graph *g, const char *name)
{
	uint32_t t;

	for (t = 0; t < g->n_tensors; t++)
		if (!strcmp(g->tensors[t].name, name))
			return t;
	cr_assert_fail("no tensor %s", name);
	return NO_TENSOR;
}

static void check_layout(const struct graph *g)
{
	uint64_t end = 0, params_total = 0;
	uint32_t l, t;

	for (l = 0; l < g->n_layers; l++) {
		const struct layer *ly = &g->layers[l];
		uint64_t params = 0, used = 0;

		cr_assert_eq(ly->offset % LAYER_ALIGN, 0);
		cr_assert_eq(ly->offset, ALIGN_UP(end, LAYER_ALIGN), "layer %u", l);
		cr_assert_eq(g->nodes[ly->node].layer, l);
		for (t = 0; t < g->n_tensors; t++) {
			const struct tensor *w = &g->tensors[t];
			uint64_t n = 1;
			int d;

			if (w->kind != TK_WEIGHT || w->layer != l)
				continue;
			for (d = 0; d < w->ndim; d++)
				n *= (uint64_t)w->dims[d];
			cr_assert_eq(w->nbytes, n * dtype_size((enum dtype)g->wdtype));
			cr_assert_eq(w->offset % TENSOR_ALIGN, 0, "%s", w->name);
			cr_assert_geq(w->offset, ly->offset);
			cr_assert_leq(w->offset + w->nbytes, ly->offset + ly->nbytes);
			cr_assert_geq(w->offset - ly->offset, used, "%s overlaps", w->name);
			used = w->offset - ly->offset + w->nbytes;
			params += n;
		}
		cr_assert_eq(ly->nbytes, used, "layer %u ends at its last tensor", l);
		cr_assert_eq(ly->params, params);
		params_total += params;
		end = ly->offset + ly->nbytes;
	}
	cr_assert_eq(g->weights_size, ALIGN_UP(end, LAYER_ALIGN));
	cr_assert_eq(g->n_params, params_total);
}

Test(graph, finalize_layout)
{
	struct graph *g = final_graph();
	const struct tensor *b2, *w2;

	check_layout(g);
	cr_assert_eq(g->n_layers, 4);
	cr_assert_eq(g->n_params, 8 * 16 + 8 + 8 + 8 + 3 * 8 + 3 + 2 * 27);
	/* fc2: bias (12 bytes) first, weight at the next TENSOR_ALIGN */
	b2 = &g->tensors[find_tensor(g, "fc2.bias")];
	w2 = &g->tensors[find_tensor(g, "fc2.weight")];
	cr_assert_eq(g->layers[2].offset, 2 * 4096);
	cr_assert_eq(b2->offset, 2 * 4096);
	cr_assert_eq(w2->offset, 2 * 4096 + TENSOR_ALIGN);
	cr_assert_eq(g->layers[2].nbytes, TENSOR_ALIGN + 3 * 8 * 4);
	cr_assert_eq(g->layers[0].nbytes, ALIGN_UP(8 * 16 * 4, TENSOR_ALIGN) + 8 * 4);
	cr_assert_eq(g->weights_size, 4 * 4096);
	cr_assert_eq(g->outputs[0].dtype, DT_F32);
	cr_assert_eq(graph_validate(g, "base"), 0);
	graph_destroy(g);
}

Test(graph, finalize_f16_and_big_layers)
{
	struct graph *g = graph_create("big", "test", DT_F16);
	const int64_t xd[2] = {DIM_BATCH, 3000}, wd[2] = {5000, 3000}, bd[1] = {5000};
	uint32_t in[3], x;

	in[0] = graph_input(g, "x", DT_F16, 2, xd, 0, 0);
	graph_layer_begin(g, "fc");
	in[1] = graph_weight(g, "fc.weight", 2, wd);
	in[2] = graph_weight(g, "fc.bias", 1, bd);
	x = graph_node(g, OP_LINEAR, in, 3, NULL, 0, NULL, 0);
	graph_layer_begin(g, "ln");
	in[0] = x;
	in[1] = graph_weight(g, "ln.weight", 1, bd);
	in[2] = graph_weight(g, "ln.bias", 1, bd);
	x = graph_node(g, OP_LAYERNORM, in, 3, NULL, 0, NULL, 0);
	graph_output(g, "y", x);
	cr_assert_eq(graph_finalize(g), 0, "%s", err_msg(0));
	check_layout(g);
	cr_assert_eq(g->tensors[in[1]].nbytes, 5000 * 2);
	cr_assert_eq(g->layers[1].offset, ALIGN_UP(5000ull * 3000 * 2 + 5000 * 2, 4096));
	cr_assert_eq(g->n_params, 5000ull * 3000 + 3 * 5000);
	graph_destroy(g);
}

Test(graph, finalize_is_idempotent)
{
	struct graph *g = final_graph();
	uint64_t size = g->weights_size, params = g->n_params;

	cr_assert_eq(graph_finalize(g), 0);
	cr_assert_eq(g->weights_size, size);
	cr_assert_eq(g->n_params, params);
	check_layout(g);
	graph_destroy(g);
}

/* ------------------------------------------------------- validation */

static void expect_invalid(struct graph *g, const char *words)
{
	int ret;

	err_clear();
	ret = graph_validate(g, "broken.dpk");
	cr_assert_eq(ret, DPRT_EBADPKG, "validate returned %d", ret);
	cr_assert(strstr(err_msg(ret), "broken.dpk: invalid graph: ") == err_msg(ret), "%s",
		  err_msg(ret));
	cr_assert(strstr(err_msg(ret), words), "'%s' lacks '%s'", err_msg(ret), words);
	graph_destroy(g);
}

Test(graph, rejects_read_of_later_tensor)
{
	struct graph *g = final_graph();

	g->nodes[1].in[0] = g->nodes[2].out; /* relu reads layernorm's output */
	expect_invalid(g, "node 1 reads tensor");
}

Test(graph, rejects_missing_tensor)
{
	struct graph *g = final_graph();

	g->nodes[0].in[0] = g->n_tensors;
	expect_invalid(g, "node 0 reads tensor");
}

Test(graph, rejects_absent_required_input)
{
	struct graph *g = final_graph();

	g->nodes[0].in[1] = NO_TENSOR; /* linear's weight is not optional */
	expect_invalid(g, "node 0 reads tensor");
}

Test(graph, accepts_absent_optional_input)
{
	struct graph *g = final_graph();

	g->nodes[0].in[2] = NO_TENSOR; /* linear's bias is */
	cr_assert_eq(graph_validate(g, "ok"), 0, "%s", err_msg(0));
	graph_destroy(g);
}

Test(graph, rejects_node_writing_twice)
{
	struct graph *g = final_graph();

	g->nodes[1].out = g->nodes[0].out;
	expect_invalid(g, "writes an invalid tensor");
}

Test(graph, rejects_node_writing_an_input)
{
	struct graph *g = final_graph();

	g->nodes[1].out = 0;
	expect_invalid(g, "writes an invalid tensor");
}

Test(graph, rejects_weight_outside_layer)
{
	struct graph *g = final_graph();
	struct tensor *w = &g->tensors[find_tensor(g, "ln.bias")];

	w->offset = g->layers[1].offset + ALIGN_UP(g->layers[1].nbytes, TENSOR_ALIGN);
	expect_invalid(g, "lies outside layer 1");
}

Test(graph, rejects_weight_in_other_layer)
{
	struct graph *g = final_graph();

	g->tensors[find_tensor(g, "fc1.bias")].layer = 1;
	expect_invalid(g, "lies outside layer 1");
}

Test(graph, rejects_weight_size_mismatch)
{
	struct graph *g = final_graph();

	g->tensors[find_tensor(g, "fc1.bias")].nbytes += 4;
	expect_invalid(g, "lies outside layer 0");
}

Test(graph, rejects_weight_dims_overflow)
{
	struct graph *g = final_graph();
	struct tensor *w = &g->tensors[find_tensor(g, "fc1.bias")];

	/* 2^32 * 2^32 wraps to 0 in 64 bits; nbytes 0 would then "match" */
	w->ndim = 2;
	w->dims[0] = 1ll << 32;
	w->dims[1] = 1ll << 32;
	w->nbytes = 0;
	expect_invalid(g, "bad dim");
}

Test(graph, rejects_unaligned_weight)
{
	struct graph *g = final_graph();

	g->tensors[find_tensor(g, "fc1.bias")].offset -= 4;
	expect_invalid(g, "aligned");
}

Test(graph, rejects_overlapping_layers)
{
	struct graph *g = final_graph();

	g->layers[1].offset = g->layers[0].offset;
	expect_invalid(g, "layer 1 has a bad byte range");
}

Test(graph, rejects_unaligned_layer)
{
	struct graph *g = final_graph();

	g->layers[3].offset += 512;
	expect_invalid(g, "layer 3 has a bad byte range");
}

Test(graph, rejects_layer_past_region)
{
	struct graph *g = final_graph();

	g->weights_size -= 4096;
	expect_invalid(g, "layer 3 has a bad byte range");
}

Test(graph, rejects_layer_of_another_node)
{
	struct graph *g = final_graph();

	g->layers[1].node = 1; /* relu, which owns no layer */
	expect_invalid(g, "layer 1 is not owned");
}

Test(graph, rejects_node_claiming_wrong_layer)
{
	struct graph *g = final_graph();

	g->nodes[2].layer = 0;
	expect_invalid(g, "not owned");
}

Test(graph, rejects_layers_out_of_node_order)
{
	struct graph *g = final_graph();
	struct layer tmp = g->layers[1];

	/* swap the names/nodes of layers 1 and 2, keep the byte ranges */
	g->layers[1].node = g->layers[2].node;
	g->layers[2].node = tmp.node;
	g->nodes[g->layers[1].node].layer = 1;
	g->nodes[g->layers[2].node].layer = 2;
	expect_invalid(g, "out of node order");
}

Test(graph, rejects_weightless_op_with_layer)
{
	struct graph *g = final_graph();

	g->nodes[0].op = OP_ADD; /* arity 2..2 fails first: use n_in 2 */
	g->nodes[0].n_in = 2;
	expect_invalid(g, "does not fit its op");
}

Test(graph, rejects_weight_op_without_layer)
{
	struct graph *g = graph_create("nolayer", "test", DT_F32);
	const int64_t xd[2] = {DIM_BATCH, 4}, wd[2] = {4, 4};
	uint32_t in[2];

	in[0] = graph_input(g, "x", DT_F32, 2, xd, 0, 0);
	graph_layer_begin(g, "fc");
	in[1] = graph_weight(g, "fc.weight", 2, wd);
	graph_output(g, "y", graph_node(g, OP_LINEAR, in, 2, NULL, 0, NULL, 0));
	graph_output(g, "z", graph_node(g, OP_LINEAR, in, 2, NULL, 0, NULL, 0));
	cr_assert_eq(graph_finalize(g), DPRT_EBADPKG);
	cr_assert(strstr(err_msg(DPRT_EBADPKG), "node 1: layer"), "%s", err_msg(DPRT_EBADPKG));
	graph_destroy(g);
}

Test(graph, rejects_bad_op)
{
	struct graph *g = final_graph();

	g->nodes[1].op = OP_NONE;
	expect_invalid(g, "unknown op 0");
	g = final_graph();
	g->nodes[1].op = OP_COUNT;
	expect_invalid(g, "unknown op");
	g = final_graph();
	g->nodes[1].op = 0xffff;
	expect_invalid(g, "unknown op");
}

Test(graph, rejects_bad_arity)
{
	struct graph *g = final_graph();

	g->nodes[1].n_in = 2; /* relu takes one */
	expect_invalid(g, "node 1 has 2 inputs");
	g = final_graph();
	g->nodes[0].n_in = 1; /* linear takes 2 or 3 */
	expect_invalid(g, "node 0 has 1 inputs");
	g = final_graph();
	g->nodes[3].n_in = 4;
	expect_invalid(g, "node 3 has 4 inputs");
}

Test(graph, rejects_bad_io)
{
	struct graph *g = final_graph();

	g->n_inputs = 0;
	expect_invalid(g, "no inputs");
	g = final_graph();
	g->inputs[0].dtype = DT_I64; /* tensor is FP32 */
	expect_invalid(g, "input 0 is malformed");
	g = final_graph();
	g->inputs[1].dims[2] = -3;
	expect_invalid(g, "input 1 has a bad dim 2");
	g = final_graph();
	g->outputs[0].tensor = 0; /* an input, not an activation */
	expect_invalid(g, "output 0 is malformed");
}

Test(graph, rejects_output_never_computed)
{
	struct graph *g = final_graph();

	/* drop the conv branch's node and layer; its output stays listed */
	g->tensors[find_tensor(g, "conv.weight")].kind = TK_ACT;
	g->n_nodes--;
	g->n_layers--;
	expect_invalid(g, "output 1");
}

Test(graph, rejects_bad_weight_dtype)
{
	struct graph *g = base_graph(DT_I64);

	cr_assert_eq(graph_finalize(g), DPRT_EBADPKG);
	cr_assert(strstr(err_msg(DPRT_EBADPKG), "weight dtype"));
	graph_destroy(g);
	g = base_graph(DT_NONE); /* used to divide by zero */
	cr_assert_eq(graph_finalize(g), DPRT_EBADPKG);
	graph_destroy(g);
}

Test(graph, rejects_layer_without_node)
{
	struct graph *g = base_graph(DT_F32);
	const int64_t d[1] = {4};

	graph_layer_begin(g, "dangling");
	graph_weight(g, "dangling.weight", 1, d);
	cr_assert_eq(graph_finalize(g), DPRT_EBADPKG);
	cr_assert(strstr(err_msg(DPRT_EBADPKG), "layer 4"), "%s", err_msg(DPRT_EBADPKG));
	graph_destroy(g);
}

Test(graph, builder_rejects_too_many_inputs, .signal = SIGABRT)
{
	struct graph *g = base_graph(DT_F32);
	const uint32_t in[5] = {0, 0, 0, 0, 0};

	graph_node(g, OP_ADD, in, 5, NULL, 0, NULL, 0);
}

Test(graph, builder_rejects_bad_rank, .signal = SIGABRT)
{
	struct graph *g = base_graph(DT_F32);
	const int64_t d[MAX_DIMS + 1] = {1, 1, 1, 1, 1, 1, 1};

	graph_layer_begin(g, "l");
	graph_weight(g, "w", MAX_DIMS + 1, d);
}

Test(graph, builder_rejects_weight_outside_layer, .signal = SIGABRT)
{
	struct graph *g = base_graph(DT_F32);
	const int64_t d[1] = {4};

	graph_weight(g, "w", 1, d);
}
