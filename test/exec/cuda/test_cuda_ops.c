/* SPDX-License-Identifier: MIT */
/*
 * Every op on the CUDA backend against the CPU reference, on fresh random
 * inputs, in FP32 (tolerance 1e-5), FP16 (1e-2) and BF16 (2e-2), with its
 * weights loaded into device memory and again read in place from host
 * memory (DHA); each check also replays the run's CUDA graph twice and
 * wants the first run's outputs bit for bit.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

struct tin {
	const char *name;
	uint8_t dtype; /* 0: the activation dtype */
	int ndim;
	int64_t dims[4];
};

/* A one-node model: inputs in[], then the weights w[] of its layer. */
struct spec {
	const char *name;
	enum op op;
	struct tin in[2];
	int n_in;
	struct tin w[3];
	int n_w;
	int64_t ia[NODE_MAX_IA];
	float fa[NODE_MAX_FA];
	int64_t pad;	  /* mask padding (attention) */
	int64_t id_range; /* ids of inputs no embedding reads */
};

static const enum dtype dtypes[] = {DT_F32, DT_F16, DT_BF16};

static struct graph *build(const struct spec *s, enum dtype dt)
{
	struct graph *g = graph_create(s->name, "test", dt);
	uint32_t ids[NODE_MAX_IN], y;
	int i, ret;

	cr_assert(g);
	for (i = 0; i < s->n_in; i++)
		ids[i] = graph_input(g, s->in[i].name,
				     (enum dtype)(s->in[i].dtype ? s->in[i].dtype : dt),
				     s->in[i].ndim, s->in[i].dims, 0, 0);
	if (s->n_w)
		graph_layer_begin(g, s->name);
	for (i = 0; i < s->n_w; i++)
		ids[s->n_in + i] = graph_weight(g, s->w[i].name, s->w[i].ndim, s->w[i].dims);
	y = graph_node(g, s->op, ids, s->n_in + s->n_w, s->ia, NODE_MAX_IA, s->fa, NODE_MAX_FA);
	graph_output(g, "y", y);
	ret = graph_finalize(g);
	cr_assert_eq(ret, 0, "%s: graph_finalize: %s", s->name, err_msg(ret));
	return g;
}

/* One spec in every dtype; LOAD from pageable memory and DHA always, LOAD
 * from pinned memory and mixed placement in FP32. */
static void check_spec(struct cuda_dev *d, const struct spec *s, struct rng *r)
{
	struct tview in[2];
	struct tmodel t;
	size_t k;

	for (k = 0; k < ARRAY_SIZE(dtypes); k++) {
		tm_init(&t, build(s, dtypes[k]), r, 1.0f);
		tin_make(t.g, 0, 0, s->pad, s->id_range ? s->id_range : 7, false, r, in);
		tcheck(d, &t, in, TP_LOAD_PAGEABLE, ttol(dtypes[k]), s->name);
		if (s->n_w)
			tcheck(d, &t, in, TP_DHA, ttol(dtypes[k]), s->name);
		if (s->n_w && dtypes[k] == DT_F32)
			tcheck(d, &t, in, TP_LOAD_PINNED, ttol(dtypes[k]), s->name);
		tin_free(t.g, in);
		tm_fini(&t);
	}
}

static void check_all(const struct spec *s, size_t n)
{
	struct cuda_dev *d = tgpu_open();
	struct rng r;
	size_t i;

	rng_seed(&r, tseed());
	for (i = 0; i < n; i++)
		check_spec(d, &s[i], &r);
	cuda_device_close(d);
}

/* clang-format off */
#define X4(n, c, h, w) {"x", 0, 4, {n, c, h, w}}
/* clang-format on */

Test(cuda_ops, conv2d)
{
	static const struct spec s[] = {
		{.name = "conv3x3",
		 .op = OP_CONV2D,
		 .in = {X4(2, 8, 12, 12)},
		 .n_in = 1,
		 .w = {{"w", 0, 4, {16, 8, 3, 3}}, {"b", 0, 1, {16}}},
		 .n_w = 2,
		 .ia = {1, 1, 1, 1, 1, 1, 1}},
		{.name = "conv-stem",
		 .op = OP_CONV2D,
		 .in = {X4(2, 3, 29, 29)},
		 .n_in = 1,
		 .w = {{"w", 0, 4, {8, 3, 7, 7}}},
		 .n_w = 1,
		 .ia = {2, 2, 3, 3, 1, 1, 1}},
		{.name = "conv1x1-s2",
		 .op = OP_CONV2D,
		 .in = {X4(3, 16, 9, 9)},
		 .n_in = 1,
		 .w = {{"w", 0, 4, {24, 16, 1, 1}}, {"b", 0, 1, {24}}},
		 .n_w = 2,
		 .ia = {2, 2, 0, 0, 1, 1, 1}},
		{.name = "conv-grouped",
		 .op = OP_CONV2D,
		 .in = {X4(2, 8, 10, 10)},
		 .n_in = 1,
		 .w = {{"w", 0, 4, {12, 2, 3, 3}}},
		 .n_w = 1,
		 .ia = {2, 1, 1, 0, 1, 1, 4}},
		{.name = "conv-dilated",
		 .op = OP_CONV2D,
		 .in = {X4(1, 4, 15, 13)},
		 .n_in = 1,
		 .w = {{"w", 0, 4, {6, 4, 3, 5}}, {"b", 0, 1, {6}}},
		 .n_w = 2,
		 .ia = {1, 2, 2, 1, 2, 1, 1}},
	};

	check_all(s, ARRAY_SIZE(s));
}

Test(cuda_ops, batchnorm)
{
	static const struct spec s[] = {
		{.name = "bn",
		 .op = OP_BATCHNORM,
		 .in = {X4(2, 16, 5, 5)},
		 .n_in = 1,
		 .w = {{"scale", 0, 1, {16}}, {"shift", 0, 1, {16}}},
		 .n_w = 2,
		 .ia = {0}},
		{.name = "bn-relu",
		 .op = OP_BATCHNORM,
		 .in = {X4(3, 6, 7, 3)},
		 .n_in = 1,
		 .w = {{"scale", 0, 1, {6}}, {"shift", 0, 1, {6}}},
		 .n_w = 2,
		 .ia = {1}},
		{.name = "bn-3d",
		 .op = OP_BATCHNORM,
		 .in = {{"x", 0, 3, {2, 5, 33}}},
		 .n_in = 1,
		 .w = {{"scale", 0, 1, {5}}, {"shift", 0, 1, {5}}},
		 .n_w = 2,
		 .ia = {1}},
	};

	check_all(s, ARRAY_SIZE(s));
}

Test(cuda_ops, elementwise)
{
	static const struct spec s[] = {
		{.name = "relu", .op = OP_RELU, .in = {{"x", 0, 3, {2, 3, 50}}}, .n_in = 1},
		{.name = "relu-big", .op = OP_RELU, .in = {{"x", 0, 3, {4, 300, 1000}}}, .n_in = 1},
		{.name = "gelu-erf",
		 .op = OP_GELU,
		 .in = {{"x", 0, 2, {7, 130}}},
		 .n_in = 1,
		 .ia = {0}},
		{.name = "gelu-tanh",
		 .op = OP_GELU,
		 .in = {{"x", 0, 2, {7, 130}}},
		 .n_in = 1,
		 .ia = {1}},
		{.name = "tanh", .op = OP_TANH, .in = {{"x", 0, 2, {9, 33}}}, .n_in = 1},
		{.name = "add",
		 .op = OP_ADD,
		 .in = {{"a", 0, 3, {2, 5, 41}}, {"b", 0, 3, {2, 5, 41}}},
		 .n_in = 2,
		 .ia = {0}},
		{.name = "add-relu",
		 .op = OP_ADD,
		 .in = {X4(2, 4, 6, 6), {"b", 0, 4, {2, 4, 6, 6}}},
		 .n_in = 2,
		 .ia = {1}},
	};

	check_all(s, ARRAY_SIZE(s));
}

Test(cuda_ops, pooling)
{
	static const struct spec s[] = {
		{.name = "maxpool",
		 .op = OP_MAXPOOL,
		 .in = {X4(2, 8, 11, 11)},
		 .n_in = 1,
		 .ia = {3, 3, 2, 2, 1, 1}},
		{.name = "avgpool-excl",
		 .op = OP_AVGPOOL,
		 .in = {X4(2, 8, 11, 11)},
		 .n_in = 1,
		 .ia = {3, 3, 2, 2, 1, 1, 0}},
		{.name = "avgpool-incl",
		 .op = OP_AVGPOOL,
		 .in = {X4(2, 8, 11, 11)},
		 .n_in = 1,
		 .ia = {3, 3, 2, 2, 1, 1, 1}},
		{.name = "avgpool-2x2",
		 .op = OP_AVGPOOL,
		 .in = {X4(1, 3, 8, 6)},
		 .n_in = 1,
		 .ia = {2, 2, 2, 2, 0, 0, 0}},
		{.name = "global-avgpool",
		 .op = OP_GLOBAL_AVGPOOL,
		 .in = {X4(2, 16, 7, 7)},
		 .n_in = 1},
		{.name = "global-avgpool-1",
		 .op = OP_GLOBAL_AVGPOOL,
		 .in = {X4(3, 70, 1, 1)},
		 .n_in = 1},
	};

	check_all(s, ARRAY_SIZE(s));
}

Test(cuda_ops, linear)
{
	static const struct spec s[] = {
		{.name = "linear",
		 .op = OP_LINEAR,
		 .in = {{"x", 0, 3, {2, 7, 48}}},
		 .n_in = 1,
		 .w = {{"w", 0, 2, {40, 48}}, {"b", 0, 1, {40}}},
		 .n_w = 2},
		{.name = "linear-nobias",
		 .op = OP_LINEAR,
		 .in = {{"x", 0, 2, {5, 33}}},
		 .n_in = 1,
		 .w = {{"w", 0, 2, {17, 33}}},
		 .n_w = 1},
		{.name = "linear-rows",
		 .op = OP_LINEAR,
		 .in = {{"x", 0, 3, {4, 130, 64}}},
		 .n_in = 1,
		 .w = {{"w", 0, 2, {192, 64}}, {"b", 0, 1, {192}}},
		 .n_w = 2},
	};

	check_all(s, ARRAY_SIZE(s));
}

Test(cuda_ops, embedding)
{
	static const struct spec s[] = {
		{.name = "embedding",
		 .op = OP_EMBEDDING,
		 .in = {{"ids", DT_I64, 2, {2, 9}}},
		 .n_in = 1,
		 .w = {{"table", 0, 2, {50, 32}}},
		 .n_w = 1},
		{.name = "embedding-wide",
		 .op = OP_EMBEDDING,
		 .in = {{"ids", DT_I64, 2, {3, 5}}},
		 .n_in = 1,
		 .w = {{"table", 0, 2, {11, 300}}},
		 .n_w = 1},
	};

	check_all(s, ARRAY_SIZE(s));
}

Test(cuda_ops, position_ids)
{
	static const struct spec s[] = {
		{.name = "posids-arange",
		 .op = OP_POSITION_IDS,
		 .in = {{"ids", DT_I64, 2, {3, 17}}},
		 .n_in = 1,
		 .ia = {0, 2}},
		{.name = "posids-roberta",
		 .op = OP_POSITION_IDS,
		 .in = {{"ids", DT_I64, 2, {3, 17}}},
		 .n_in = 1,
		 .ia = {1, 1},
		 .id_range = 3},
		{.name = "posids-roberta-long",
		 .op = OP_POSITION_IDS,
		 .in = {{"ids", DT_I64, 2, {2, 700}}},
		 .n_in = 1,
		 .ia = {1, 1},
		 .id_range = 4},
	};

	check_all(s, ARRAY_SIZE(s));
}

Test(cuda_ops, layernorm)
{
	static const struct spec s[] = {
		{.name = "layernorm",
		 .op = OP_LAYERNORM,
		 .in = {{"x", 0, 3, {2, 7, 72}}},
		 .n_in = 1,
		 .w = {{"gamma", 0, 1, {72}}, {"beta", 0, 1, {72}}},
		 .n_w = 2,
		 .fa = {1e-5f}},
		{.name = "layernorm-wide",
		 .op = OP_LAYERNORM,
		 .in = {{"x", 0, 2, {5, 1000}}},
		 .n_in = 1,
		 .w = {{"gamma", 0, 1, {1000}}, {"beta", 0, 1, {1000}}},
		 .n_w = 2,
		 .fa = {1e-12f}},
	};

	check_all(s, ARRAY_SIZE(s));
}

Test(cuda_ops, softmax)
{
	static const struct spec s[] = {
		{.name = "softmax", .op = OP_SOFTMAX, .in = {{"x", 0, 3, {3, 5, 37}}}, .n_in = 1},
		{.name = "softmax-wide", .op = OP_SOFTMAX, .in = {{"x", 0, 2, {2, 700}}}, .n_in = 1},
	};

	check_all(s, ARRAY_SIZE(s));
}

/* clang-format off */
#define QKV(n, s, h) {"qkv", 0, 3, {n, s, 3 * (h)}}
#define MASK(n, s) {"mask", DT_I64, 2, {n, s}}
/* clang-format on */

static const struct spec attn_specs[] = {
	{.name = "attention", .op = OP_ATTENTION, .in = {QKV(2, 13, 64)}, .n_in = 1, .ia = {4, 0}},
	{.name = "attention-mask",
	 .op = OP_ATTENTION,
	 .in = {QKV(2, 13, 64), MASK(2, 13)},
	 .n_in = 2,
	 .ia = {4, 0},
	 .pad = 4},
	{.name = "attention-causal",
	 .op = OP_ATTENTION,
	 .in = {QKV(2, 13, 64)},
	 .n_in = 1,
	 .ia = {4, 1}},
	{.name = "attention-causal-mask",
	 .op = OP_ATTENTION,
	 .in = {QKV(3, 9, 48), MASK(3, 9)},
	 .n_in = 2,
	 .ia = {2, 1},
	 .pad = 3},
	{.name = "attention-long",
	 .op = OP_ATTENTION,
	 .in = {QKV(1, 300, 96), MASK(1, 300)},
	 .n_in = 2,
	 .ia = {3, 0}},
	{.name = "attention-1head",
	 .op = OP_ATTENTION,
	 .in = {QKV(2, 5, 16)},
	 .n_in = 1,
	 .ia = {1, 0}},
	/* 16-bit, head size 64: the fused kernel over 4 key tiles,
	 * skipping the causal tiles past the diagonal */
	{.name = "attention-fused-causal",
	 .op = OP_ATTENTION,
	 .in = {QKV(2, 200, 128)},
	 .n_in = 1,
	 .ia = {2, 1}},
	/* padding: no tile may be skipped */
	{.name = "attention-fused-causal-pad",
	 .op = OP_ATTENTION,
	 .in = {QKV(3, 150, 128), MASK(3, 150)},
	 .n_in = 2,
	 .ia = {2, 1},
	 .pad = 70},
	/* rows after the first wholly masked: uniform over all keys */
	{.name = "attention-fused-all-masked",
	 .op = OP_ATTENTION,
	 .in = {QKV(2, 100, 64), MASK(2, 100)},
	 .n_in = 2,
	 .ia = {2, 1},
	 .pad = 100},
	{.name = "attention-fused-noncausal",
	 .op = OP_ATTENTION,
	 .in = {QKV(2, 130, 64), MASK(2, 130)},
	 .n_in = 2,
	 .ia = {1, 0},
	 .pad = 7},
};

/* Each attention path picks itself by timing; 16-bit head sizes 16/32/64
 * take a fused kernel when it is the fastest. */
Test(cuda_ops, attention)
{
	check_all(attn_specs, ARRAY_SIZE(attn_specs));
}

/* Every path forced in turn (DPRT_CUDA_ATTN), so that each is right
 * whichever the timing picks on a given GPU. */
Test(cuda_ops, attention_paths)
{
	static const char *const paths[] = {"unfused", "1", "2", "4"};
	size_t k;

	for (k = 0; k < ARRAY_SIZE(paths); k++) {
		setenv("DPRT_CUDA_ATTN", paths[k], 1);
		knobs_reload();
		fprintf(stderr, "attention path %s\n", paths[k]);
		check_all(attn_specs, ARRAY_SIZE(attn_specs));
	}
	unsetenv("DPRT_CUDA_ATTN");
	knobs_reload();
}

Test(cuda_ops, take_row)
{
	static const struct spec s[] = {
		{.name = "take-row-0",
		 .op = OP_TAKE_ROW,
		 .in = {{"x", 0, 3, {2, 9, 40}}},
		 .n_in = 1,
		 .ia = {0}},
		{.name = "take-row-5",
		 .op = OP_TAKE_ROW,
		 .in = {{"x", 0, 3, {3, 6, 300}}},
		 .n_in = 1,
		 .ia = {5}},
	};

	check_all(s, ARRAY_SIZE(s));
}

/* A float input in another dtype than the activations is converted on
 * the GPU first. */
Test(cuda_ops, input_conversion)
{
	static const struct spec s[] = {
		{.name = "cvt-f32", .op = OP_RELU, .in = {{"x", DT_F32, 2, {3, 77}}}, .n_in = 1},
		{.name = "cvt-f16", .op = OP_TANH, .in = {{"x", DT_F16, 2, {3, 77}}}, .n_in = 1},
		{.name = "cvt-bf16",
		 .op = OP_LAYERNORM,
		 .in = {{"x", DT_BF16, 2, {3, 77}}},
		 .n_in = 1,
		 .w = {{"gamma", 0, 1, {77}}, {"beta", 0, 1, {77}}},
		 .n_w = 2,
		 .fa = {1e-5f}},
	};

	check_all(s, ARRAY_SIZE(s));
}
