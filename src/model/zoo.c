/* SPDX-License-Identifier: MIT */
/*
 * Model zoo: the paper's models (torchvision ResNets, Hugging Face BertModel,
 * RobertaModel and GPT2Model) and tiny variants of each for tests.
 *
 * Layer names are PyTorch module paths; weight tensor names are the state
 * dict names written as recipes that wsrc_safetensors() interprets:
 * "a.{query,key,value}.weight" (concat on dim 0), "c_attn.weight^T"
 * (transpose), "bn1#scale" / "bn1#shift" (folded batch norm).
 */
#include "model.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct resnet_cfg {
	int blocks[4];
	int64_t width; /* channels of the stem; stage s has width << s planes */
	int64_t classes;
	int64_t image;
};

struct tf_cfg {
	int layers;
	int64_t hidden, heads, ffn;
	int64_t vocab, positions, types;
	int64_t pad; /* RoBERTa's padding id, for position ids */
	float eps;
	int64_t max_seq, def_seq;
};

struct zoo_model {
	const char *arch; /* "resnet", "bert", "roberta", "gpt2" */
	const struct resnet_cfg *rn;
	const struct tf_cfg *tf;
};

static const struct resnet_cfg rn50 = {{3, 4, 6, 3}, 64, 1000, 224};
static const struct resnet_cfg rn101 = {{3, 4, 23, 3}, 64, 1000, 224};
static const struct resnet_cfg rn_tiny = {{1, 1, 1, 1}, 8, 10, 32};

static const struct tf_cfg bert_base = {12, 768, 12, 3072, 30522, 512, 2, 0, 1e-12f, 512, 384};
static const struct tf_cfg bert_large = {24, 1024, 16, 4096, 30522, 512, 2, 0, 1e-12f, 512, 384};
static const struct tf_cfg bert_tiny = {2, 64, 4, 128, 1000, 64, 2, 0, 1e-12f, 64, 64};
static const struct tf_cfg rob_base = {12, 768, 12, 3072, 50265, 514, 1, 1, 1e-5f, 512, 384};
static const struct tf_cfg rob_large = {24, 1024, 16, 4096, 50265, 514, 1, 1, 1e-5f, 512, 384};
static const struct tf_cfg rob_tiny = {2, 64, 4, 128, 1000, 64, 1, 1, 1e-5f, 62, 62};
static const struct tf_cfg gpt2_base = {12, 768, 12, 3072, 50257, 1024, 0, 0, 1e-5f, 1024, 1024};
static const struct tf_cfg gpt2_medium = {24, 1024, 16, 4096, 50257, 1024, 0, 0, 1e-5f, 1024, 1024};
static const struct tf_cfg gpt2_tiny = {2, 64, 4, 256, 1000, 64, 0, 0, 1e-5f, 64, 64};

/* The list zoo_list() returns; it ends with a NULL name. */
static const struct zoo_info infos[] = {
	{"resnet50", "torchvision ResNet-50, 3x224x224 -> 1000 logits", 25557032},
	{"resnet101", "torchvision ResNet-101, 3x224x224 -> 1000 logits", 44549160},
	{"bert-base", "Hugging Face BertModel, bert-base-uncased (12x768)", 109482240},
	{"bert-large", "Hugging Face BertModel, bert-large-uncased (24x1024)", 335141888},
	{"roberta-base", "Hugging Face RobertaModel, roberta-base (12x768)", 124645632},
	{"roberta-large", "Hugging Face RobertaModel, roberta-large (24x1024)", 355359744},
	{"gpt2", "Hugging Face GPT2Model, gpt2 (12x768), no LM head", 124439808},
	{"gpt2-medium", "Hugging Face GPT2Model, gpt2-medium (24x1024), no LM head", 354823168},
	{"resnet-tiny", "ResNet bottleneck [1,1,1,1], width 8, 3x32x32 -> 10 (tests)", 0},
	{"bert-tiny", "BertModel 2x64, 4 heads, vocab 1000 (tests)", 0},
	{"roberta-tiny", "RobertaModel 2x64, 4 heads, vocab 1000 (tests)", 0},
	{"gpt2-tiny", "GPT2Model 2x64, 4 heads, vocab 1000 (tests)", 0},
	{NULL, NULL, 0},
};

/* models[i] builds infos[i]. */
static const struct zoo_model models[] = {
	{"resnet", &rn50, NULL},       /* resnet50 */
	{"resnet", &rn101, NULL},      /* resnet101 */
	{"bert", NULL, &bert_base},    /* bert-base */
	{"bert", NULL, &bert_large},   /* bert-large */
	{"roberta", NULL, &rob_base},  /* roberta-base */
	{"roberta", NULL, &rob_large}, /* roberta-large */
	{"gpt2", NULL, &gpt2_base},    /* gpt2 */
	{"gpt2", NULL, &gpt2_medium},  /* gpt2-medium */
	{"resnet", &rn_tiny, NULL},    /* resnet-tiny */
	{"bert", NULL, &bert_tiny},    /* bert-tiny */
	{"roberta", NULL, &rob_tiny},  /* roberta-tiny */
	{"gpt2", NULL, &gpt2_tiny},    /* gpt2-tiny */
};
_Static_assert(ARRAY_SIZE(models) + 1 == ARRAY_SIZE(infos), "one builder per zoo entry");

/* The zoo, NULL-terminated, in a fixed order (paper models first). Any thread. */
const struct zoo_info *zoo_list(void)
{
	return infos;
}

/* ---------------------------------------------------------------- helpers */

/* dst = a + b, cut at NAME_LEN - 1 (the zoo's names are far shorter). */
static void join(char *dst, const char *a, const char *b)
{
	size_t la = strnlen(a, NAME_LEN - 1);
	size_t lb = strnlen(b, NAME_LEN - 1 - la);

	memcpy(dst, a, la);
	memcpy(dst + la, b, lb);
	dst[la + lb] = 0;
}

static uint32_t node1(struct graph *g, enum op op, uint32_t x, int64_t ia0)
{
	return graph_node(g, op, &x, 1, &ia0, 1, NULL, 0);
}

static uint32_t node2(struct graph *g, enum op op, uint32_t a, uint32_t b, int64_t ia0)
{
	uint32_t in[2] = {a, b};

	return graph_node(g, op, in, 2, &ia0, 1, NULL, 0);
}

/*
 * A linear layer named `name`: weight `wname` [out, in] and bias `bname`
 * [out]. The tensor names are recipes (see the file comment).
 */
static uint32_t linear(struct graph *g, uint32_t x, const char *name, const char *wname,
		       const char *bname, int64_t out, int64_t in_features)
{
	int64_t wd[2] = {out, in_features};
	uint32_t in[3];

	graph_layer_begin(g, name);
	in[0] = x;
	in[1] = graph_weight(g, wname, 2, wd);
	in[2] = graph_weight(g, bname, 1, &out);
	return graph_node(g, OP_LINEAR, in, 3, NULL, 0, NULL, 0);
}

/* nn.Linear at module path `name`: "<name>.weight", "<name>.bias". */
static uint32_t linear_plain(struct graph *g, uint32_t x, const char *name, int64_t out,
			     int64_t in_features)
{
	char w[NAME_LEN], b[NAME_LEN];

	join(w, name, ".weight");
	join(b, name, ".bias");
	return linear(g, x, name, w, b, out, in_features);
}

/* GPT-2's Conv1D at `name`: the weight is stored [in, out] in the checkpoint. */
static uint32_t linear_conv1d(struct graph *g, uint32_t x, const char *name, int64_t out,
			      int64_t in_features)
{
	char w[NAME_LEN], b[NAME_LEN];

	join(w, name, ".weight^T");
	join(b, name, ".bias");
	return linear(g, x, name, w, b, out, in_features);
}

static uint32_t layernorm(struct graph *g, uint32_t x, const char *name, int64_t h, float eps)
{
	char w[NAME_LEN], b[NAME_LEN];
	uint32_t in[3];

	join(w, name, ".weight");
	join(b, name, ".bias");
	graph_layer_begin(g, name);
	in[0] = x;
	in[1] = graph_weight(g, w, 1, &h);
	in[2] = graph_weight(g, b, 1, &h);
	return graph_node(g, OP_LAYERNORM, in, 3, NULL, 0, &eps, 1);
}

static uint32_t embedding(struct graph *g, uint32_t ids, const char *name, int64_t rows, int64_t h)
{
	int64_t d[2] = {rows, h};
	char w[NAME_LEN];
	uint32_t in[2];

	join(w, name, ".weight");
	graph_layer_begin(g, name);
	in[0] = ids;
	in[1] = graph_weight(g, w, 2, d);
	return graph_node(g, OP_EMBEDDING, in, 2, NULL, 0, NULL, 0);
}

static uint32_t token_input(struct graph *g, const char *name, unsigned flags, double fill)
{
	int64_t d[2] = {DIM_BATCH, DIM_SEQ};

	return graph_input(g, name, DT_I64, 2, d, flags, fill);
}

/* ---------------------------------------------------------------- ResNet */

/* conv (no bias) at `name` with a square kernel k, stride s, padding p. */
static uint32_t conv(struct graph *g, uint32_t x, const char *name, int64_t out, int64_t in_ch,
		     int64_t k, int64_t s, int64_t p)
{
	int64_t wd[4] = {out, in_ch, k, k};
	int64_t ia[7] = {s, s, p, p, 1, 1, 1};
	char w[NAME_LEN];
	uint32_t in[2];

	join(w, name, ".weight");
	graph_layer_begin(g, name);
	in[0] = x;
	in[1] = graph_weight(g, w, 4, wd);
	return graph_node(g, OP_CONV2D, in, 2, ia, 7, NULL, 0);
}

/* BatchNorm2d at `name`, folded to scale/shift; relu = torchvision's ReLU
 * right after it. */
static uint32_t bnorm(struct graph *g, uint32_t x, const char *name, int64_t c, int relu)
{
	char sc[NAME_LEN], sh[NAME_LEN];
	int64_t ia0 = relu;
	uint32_t in[3];

	join(sc, name, "#scale");
	join(sh, name, "#shift");
	graph_layer_begin(g, name);
	in[0] = x;
	in[1] = graph_weight(g, sc, 1, &c);
	in[2] = graph_weight(g, sh, 1, &c);
	return graph_node(g, OP_BATCHNORM, in, 3, &ia0, 1, NULL, 0);
}

/* torchvision Bottleneck (v1.5: stride on the 3x3 conv). */
static uint32_t bottleneck(struct graph *g, uint32_t x, const char *p, int64_t inplanes,
			   int64_t planes, int64_t stride)
{
	char n[NAME_LEN], n2[NAME_LEN];
	uint32_t y, id = x;

	join(n, p, ".conv1");
	join(n2, p, ".bn1");
	y = bnorm(g, conv(g, x, n, planes, inplanes, 1, 1, 0), n2, planes, 1);
	join(n, p, ".conv2");
	join(n2, p, ".bn2");
	y = bnorm(g, conv(g, y, n, planes, planes, 3, stride, 1), n2, planes, 1);
	join(n, p, ".conv3");
	join(n2, p, ".bn3");
	y = bnorm(g, conv(g, y, n, planes * 4, planes, 1, 1, 0), n2, planes * 4, 0);
	if (stride != 1 || inplanes != planes * 4) {
		join(n, p, ".downsample.0");
		join(n2, p, ".downsample.1");
		id = conv(g, x, n, planes * 4, inplanes, 1, stride, 0);
		id = bnorm(g, id, n2, planes * 4, 0);
	}
	return node2(g, OP_ADD, y, id, 1);
}

static void build_resnet(struct graph *g, const struct resnet_cfg *c)
{
	int64_t dims[4] = {DIM_BATCH, 3, c->image, c->image};
	int64_t pool[6] = {3, 3, 2, 2, 1, 1};
	int64_t inplanes = c->width;
	char p[NAME_LEN];
	uint32_t x;
	int s, b;

	x = graph_input(g, "input", (enum dtype)g->wdtype, 4, dims, 0, 0);
	x = bnorm(g, conv(g, x, "conv1", c->width, 3, 7, 2, 3), "bn1", c->width, 1);
	x = graph_node(g, OP_MAXPOOL, &x, 1, pool, 6, NULL, 0);
	for (s = 0; s < 4; s++) {
		int64_t planes = c->width << s;

		for (b = 0; b < c->blocks[s]; b++) {
			snprintf(p, sizeof(p), "layer%d.%d", s + 1, b);
			x = bottleneck(g, x, p, inplanes, planes, b == 0 && s > 0 ? 2 : 1);
			inplanes = planes * 4;
		}
	}
	x = graph_node(g, OP_GLOBAL_AVGPOOL, &x, 1, NULL, 0, NULL, 0);
	x = linear_plain(g, x, "fc", c->classes, inplanes);
	graph_output(g, "logits", x);
}

/* ------------------------------------------------------------ BERT/RoBERTa */

/* One BertLayer; returns its output hidden states. */
static uint32_t bert_layer(struct graph *g, const struct tf_cfg *c, uint32_t x, uint32_t mask,
			   int i)
{
	char p[NAME_LEN], n[NAME_LEN], w[NAME_LEN], b[NAME_LEN];
	int64_t att[2] = {c->heads, 0};
	uint32_t in[2], y;

	snprintf(p, sizeof(p), "encoder.layer.%d", i);
	join(n, p, ".attention.self.qkv");
	join(w, p, ".attention.self.{query,key,value}.weight");
	join(b, p, ".attention.self.{query,key,value}.bias");
	y = linear(g, x, n, w, b, 3 * c->hidden, c->hidden);
	in[0] = y;
	in[1] = mask;
	y = graph_node(g, OP_ATTENTION, in, 2, att, 2, NULL, 0);
	join(n, p, ".attention.output.dense");
	y = node2(g, OP_ADD, linear_plain(g, y, n, c->hidden, c->hidden), x, 0);
	join(n, p, ".attention.output.LayerNorm");
	x = layernorm(g, y, n, c->hidden, c->eps);
	join(n, p, ".intermediate.dense");
	y = node1(g, OP_GELU, linear_plain(g, x, n, c->ffn, c->hidden), 0);
	join(n, p, ".output.dense");
	y = node2(g, OP_ADD, linear_plain(g, y, n, c->hidden, c->ffn), x, 0);
	join(n, p, ".output.LayerNorm");
	return layernorm(g, y, n, c->hidden, c->eps);
}

/* BertModel and RobertaModel (RoBERTa: position ids from the input ids). */
static void build_bert(struct graph *g, const struct tf_cfg *c, bool roberta)
{
	int64_t pos_ia[2] = {roberta ? 1 : 0, roberta ? c->pad : 0};
	uint32_t ids, mask, types, pos, x;
	int i;

	ids = token_input(g, "input_ids", 0, 0);
	mask = token_input(g, "attention_mask", IO_OPTIONAL, 1);
	types = token_input(g, "token_type_ids", IO_OPTIONAL, 0);
	pos = graph_node(g, OP_POSITION_IDS, &ids, 1, pos_ia, 2, NULL, 0);
	/* Hugging Face's order: (words + token types) + positions. */
	x = embedding(g, ids, "embeddings.word_embeddings", c->vocab, c->hidden);
	x = node2(g, OP_ADD, x,
		  embedding(g, types, "embeddings.token_type_embeddings", c->types, c->hidden), 0);
	x = node2(g, OP_ADD, x,
		  embedding(g, pos, "embeddings.position_embeddings", c->positions, c->hidden), 0);
	x = layernorm(g, x, "embeddings.LayerNorm", c->hidden, c->eps);
	for (i = 0; i < c->layers; i++)
		x = bert_layer(g, c, x, mask, i);
	graph_output(g, "last_hidden_state", x);
	x = node1(g, OP_TAKE_ROW, x, 0);
	x = node1(g, OP_TANH, linear_plain(g, x, "pooler.dense", c->hidden, c->hidden), 0);
	graph_output(g, "pooler_output", x);
}

/* ----------------------------------------------------------------- GPT-2 */

/* One pre-LN GPT2Block; returns the residual stream after it. */
static uint32_t gpt2_block(struct graph *g, const struct tf_cfg *c, uint32_t x, uint32_t mask,
			   int i)
{
	int64_t att[2] = {c->heads, 1};
	char n[NAME_LEN];
	uint32_t in[2], y;

	snprintf(n, sizeof(n), "h.%d.ln_1", i);
	y = layernorm(g, x, n, c->hidden, c->eps);
	snprintf(n, sizeof(n), "h.%d.attn.c_attn", i);
	in[0] = linear_conv1d(g, y, n, 3 * c->hidden, c->hidden);
	in[1] = mask;
	y = graph_node(g, OP_ATTENTION, in, 2, att, 2, NULL, 0);
	snprintf(n, sizeof(n), "h.%d.attn.c_proj", i);
	x = node2(g, OP_ADD, linear_conv1d(g, y, n, c->hidden, c->hidden), x, 0);
	snprintf(n, sizeof(n), "h.%d.ln_2", i);
	y = layernorm(g, x, n, c->hidden, c->eps);
	snprintf(n, sizeof(n), "h.%d.mlp.c_fc", i);
	y = node1(g, OP_GELU, linear_conv1d(g, y, n, c->ffn, c->hidden), 1);
	snprintf(n, sizeof(n), "h.%d.mlp.c_proj", i);
	return node2(g, OP_ADD, linear_conv1d(g, y, n, c->hidden, c->ffn), x, 0);
}

static void build_gpt2(struct graph *g, const struct tf_cfg *c)
{
	int64_t pos_ia[2] = {0, 0};
	uint32_t ids, mask, pos, x;
	int i;

	ids = token_input(g, "input_ids", 0, 0);
	mask = token_input(g, "attention_mask", IO_OPTIONAL, 1);
	pos = graph_node(g, OP_POSITION_IDS, &ids, 1, pos_ia, 2, NULL, 0);
	x = embedding(g, ids, "wte", c->vocab, c->hidden);
	x = node2(g, OP_ADD, x, embedding(g, pos, "wpe", c->positions, c->hidden), 0);
	for (i = 0; i < c->layers; i++)
		x = gpt2_block(g, c, x, mask, i);
	x = layernorm(g, x, "ln_f", c->hidden, c->eps);
	graph_output(g, "last_hidden_state", x);
}

/* ------------------------------------------------------------------ API */

/*
 * Build zoo model `name` with weights (and float inputs/activations) of
 * wdtype, finalized, without weight bytes. Any thread. Returns 0, or
 * DPRT_ENOMODEL / DPRT_EUNSUP / -ENOMEM with err_set.
 */
int zoo_build(const char *name, enum dtype wdtype, struct graph **out)
{
	const struct zoo_model *m = NULL;
	struct graph *g;
	size_t i;
	int ret;

	*out = NULL;
	for (i = 0; i < ARRAY_SIZE(models); i++)
		if (!strcmp(infos[i].name, name))
			m = &models[i];
	if (!m)
		return err_set(DPRT_ENOMODEL, "zoo: no model named '%s' (see 'dprt zoo --list')",
			       name);
	if (wdtype != DT_F32 && wdtype != DT_F16 && wdtype != DT_BF16)
		return err_set(DPRT_EUNSUP, "zoo: %s: weight dtype %s is not FP32, FP16 or BF16",
			       name, dtype_name(wdtype));
	g = graph_create(name, m->arch, wdtype);
	if (!g)
		return err_set(-ENOMEM, "zoo: %s: out of memory", name);
	if (m->rn) {
		build_resnet(g, m->rn);
	} else {
		g->max_seq = m->tf->max_seq;
		g->def_seq = m->tf->def_seq;
		if (!strcmp(m->arch, "gpt2"))
			build_gpt2(g, m->tf);
		else
			build_bert(g, m->tf, !strcmp(m->arch, "roberta"));
	}
	ret = graph_finalize(g);
	if (ret) {
		graph_destroy(g);
		return ret;
	}
	*out = g;
	return 0;
}
