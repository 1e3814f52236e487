/* SPDX-License-Identifier: MIT */
/*
 * Parameterised transformer and ViT builders: Hugging Face BertModel,
 * RobertaModel, DistilBertModel, GPT2Model and ViTModel of any size, with
 * their task heads. The zoo's fixed models and the Hugging Face importer
 * (hf.c) both build through arch_build().
 *
 * Layer names are the checkpoint's module paths (under cfg->prefix for the
 * base model), weight names are state-dict names written as wsrc recipes.
 */
#include "build.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

void mb_join(char *dst, const char *a, const char *b)
{
	size_t la = strnlen(a, NAME_LEN - 1);
	size_t lb = strnlen(b, NAME_LEN - 1 - la);

	memcpy(dst, a, la);
	memcpy(dst + la, b, lb);
	dst[la + lb] = 0;
}

uint32_t mb_node1(struct graph *g, enum op op, uint32_t x, int64_t ia0)
{
	return graph_node(g, op, &x, 1, &ia0, 1, NULL, 0);
}

uint32_t mb_node2(struct graph *g, enum op op, uint32_t a, uint32_t b, int64_t ia0)
{
	uint32_t in[2] = {a, b};

	return graph_node(g, op, in, 2, &ia0, 1, NULL, 0);
}

uint32_t mb_linear(struct graph *g, uint32_t x, const char *name, const char *wname,
		   const char *bname, int64_t out, int64_t in_features)
{
	int64_t wd[2] = {out, in_features};
	uint32_t in[3];

	graph_layer_begin(g, name);
	in[0] = x;
	in[1] = graph_weight(g, wname, 2, wd);
	if (!bname)
		return graph_node(g, OP_LINEAR, in, 2, NULL, 0, NULL, 0);
	in[2] = graph_weight(g, bname, 1, &out);
	return graph_node(g, OP_LINEAR, in, 3, NULL, 0, NULL, 0);
}

uint32_t mb_linear_plain(struct graph *g, uint32_t x, const char *name, int64_t out,
			 int64_t in_features)
{
	char w[NAME_LEN], b[NAME_LEN];

	mb_join(w, name, ".weight");
	mb_join(b, name, ".bias");
	return mb_linear(g, x, name, w, b, out, in_features);
}

/* dst = c->prefix + printf(fmt, ...), cut at NAME_LEN - 1. */
static void pname(char *dst, const struct arch_cfg *c, const char *fmt, ...)
{
	char buf[NAME_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	mb_join(dst, c->prefix ? c->prefix : "", buf);
}

/* GPT-2's Conv1D at `name`: the weight is stored [in, out] in the checkpoint. */
static uint32_t linear_conv1d(struct graph *g, uint32_t x, const char *name, int64_t out,
			      int64_t in_features)
{
	char w[NAME_LEN], b[NAME_LEN];

	mb_join(w, name, ".weight^T");
	mb_join(b, name, ".bias");
	return mb_linear(g, x, name, w, b, out, in_features);
}

/* A query/key/value projection fused on dim 0: "<p>.{q,k,v}.weight". */
static uint32_t linear_qkv(struct graph *g, const struct arch_cfg *c, uint32_t x, const char *layer,
			   const char *p, const char *parts, bool bias)
{
	char w[2 * NAME_LEN], b[2 * NAME_LEN];

	/* cut at NAME_LEN - 1 by graph_weight, as every name here */
	snprintf(w, sizeof(w), "%s.{%s}.weight", p, parts);
	snprintf(b, sizeof(b), "%s.{%s}.bias", p, parts);
	w[NAME_LEN - 1] = b[NAME_LEN - 1] = 0;
	return mb_linear(g, x, layer, w, bias ? b : NULL, 3 * c->hidden, c->hidden);
}

static uint32_t layernorm(struct graph *g, uint32_t x, const char *name, int64_t h, float eps)
{
	char w[NAME_LEN], b[NAME_LEN];
	uint32_t in[3];

	mb_join(w, name, ".weight");
	mb_join(b, name, ".bias");
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

	mb_join(w, name, ".weight");
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

/* The activation function of the feed-forward blocks. */
static uint32_t act(struct graph *g, const struct arch_cfg *c, uint32_t x)
{
	if (c->hidden_act == ACT_RELU)
		return graph_node(g, OP_RELU, &x, 1, NULL, 0, NULL, 0);
	return mb_node1(g, OP_GELU, x, c->hidden_act == ACT_GELU_TANH);
}

/* Classifier `name` over x: logits. */
static void classifier(struct graph *g, const struct arch_cfg *c, uint32_t x, const char *name)
{
	graph_output(g, "logits", mb_linear_plain(g, x, name, c->num_labels, c->hidden));
}

/* dense + tanh on the first token, at module path `name`. */
static uint32_t pooler(struct graph *g, const struct arch_cfg *c, uint32_t x, const char *name)
{
	x = mb_node1(g, OP_TAKE_ROW, x, 0);
	return mb_node1(g, OP_TANH, mb_linear_plain(g, x, name, c->hidden, c->hidden), 0);
}

/* ------------------------------------------------------------ BERT/RoBERTa */

/* Tensor names of one post-LN encoder layer (BERT's and DistilBERT's
 * differ only in these), each after the layer's prefix. */
struct post_ln_names {
	const char *layer; /* printf format of the prefix, %d: the layer */
	const char *qkv, *self, *qkv_parts;
	const char *attn_out, *ln1, *ffn_in, *ffn_out, *ln2;
};

/* One post-LN encoder layer; returns its output hidden states. */
static uint32_t post_ln_layer(struct graph *g, const struct arch_cfg *c, uint32_t x, uint32_t mask,
			      int i, const struct post_ln_names *nm)
{
	int64_t att[2] = {c->heads, 0};
	char p[NAME_LEN], n[NAME_LEN], q[NAME_LEN];
	uint32_t in[2], y;

	pname(p, c, nm->layer, i);
	mb_join(n, p, nm->qkv);
	mb_join(q, p, nm->self);
	y = linear_qkv(g, c, x, n, q, nm->qkv_parts, true);
	in[0] = y;
	in[1] = mask;
	y = graph_node(g, OP_ATTENTION, in, 2, att, 2, NULL, 0);
	mb_join(n, p, nm->attn_out);
	y = mb_node2(g, OP_ADD, mb_linear_plain(g, y, n, c->hidden, c->hidden), x, 0);
	mb_join(n, p, nm->ln1);
	x = layernorm(g, y, n, c->hidden, c->layer_norm_eps);
	mb_join(n, p, nm->ffn_in);
	y = act(g, c, mb_linear_plain(g, x, n, c->intermediate, c->hidden));
	mb_join(n, p, nm->ffn_out);
	y = mb_node2(g, OP_ADD, mb_linear_plain(g, y, n, c->hidden, c->intermediate), x, 0);
	mb_join(n, p, nm->ln2);
	return layernorm(g, y, n, c->hidden, c->layer_norm_eps);
}

/* One BertLayer; returns its output hidden states. */
static uint32_t bert_layer(struct graph *g, const struct arch_cfg *c, uint32_t x, uint32_t mask,
			   int i)
{
	static const struct post_ln_names nm = {
		"encoder.layer.%d",    ".attention.self.qkv",	  ".attention.self",
		"query,key,value",     ".attention.output.dense", ".attention.output.LayerNorm",
		".intermediate.dense", ".output.dense",		  ".output.LayerNorm",
	};

	return post_ln_layer(g, c, x, mask, i, &nm);
}

/* RobertaClassificationHead: dense + tanh + out_proj on the first token. */
static void roberta_cls_head(struct graph *g, const struct arch_cfg *c, uint32_t x)
{
	x = mb_node1(g, OP_TAKE_ROW, x, 0);
	x = mb_node1(g, OP_TANH, mb_linear_plain(g, x, "classifier.dense", c->hidden, c->hidden),
		     0);
	classifier(g, c, x, "classifier.out_proj");
}

static void bert_heads(struct graph *g, const struct arch_cfg *c, uint32_t x)
{
	char n[NAME_LEN];
	bool roberta = c->family == AF_ROBERTA;

	pname(n, c, "pooler.dense");
	switch (c->head) {
	case HEAD_SEQ_CLS:
		if (roberta)
			roberta_cls_head(g, c, x);
		else
			classifier(g, c, pooler(g, c, x, n), "classifier");
		break;
	case HEAD_TOKEN_CLS:
		classifier(g, c, x, "classifier");
		break;
	default:
		graph_output(g, "last_hidden_state", x);
		if (c->pooler)
			graph_output(g, "pooler_output", pooler(g, c, x, n));
		break;
	}
}

/* input_ids and an optional attention_mask (*mask), then word embeddings
 * plus learned position embeddings of arange(seq): DistilBERT's and
 * GPT-2's embeddings (tables named word and pos, after the prefix). */
static uint32_t words_and_positions(struct graph *g, const struct arch_cfg *c, const char *word,
				    const char *pos_name, uint32_t *mask)
{
	int64_t pos_ia[2] = {0, 0};
	uint32_t ids, pos, x;
	char n[NAME_LEN];

	ids = token_input(g, "input_ids", 0, 0);
	*mask = token_input(g, "attention_mask", IO_OPTIONAL, 1);
	pos = graph_node(g, OP_POSITION_IDS, &ids, 1, pos_ia, 2, NULL, 0);
	pname(n, c, "%s", word);
	x = embedding(g, ids, n, c->vocab, c->hidden);
	pname(n, c, "%s", pos_name);
	return mb_node2(g, OP_ADD, x, embedding(g, pos, n, c->max_positions, c->hidden), 0);
}

/* BertModel and RobertaModel (RoBERTa: position ids from the input ids). */
static void build_bert(struct graph *g, const struct arch_cfg *c)
{
	bool roberta = c->family == AF_ROBERTA;
	int64_t pos_ia[2] = {roberta ? 1 : 0, roberta ? c->pad_token_id : 0};
	uint32_t ids, mask, types, pos, x;
	char n[NAME_LEN];
	int i;

	ids = token_input(g, "input_ids", 0, 0);
	mask = token_input(g, "attention_mask", IO_OPTIONAL, 1);
	types = token_input(g, "token_type_ids", IO_OPTIONAL, 0);
	pos = graph_node(g, OP_POSITION_IDS, &ids, 1, pos_ia, 2, NULL, 0);
	/* Hugging Face's order: (words + token types) + positions. */
	pname(n, c, "embeddings.word_embeddings");
	x = embedding(g, ids, n, c->vocab, c->hidden);
	pname(n, c, "embeddings.token_type_embeddings");
	x = mb_node2(g, OP_ADD, x, embedding(g, types, n, c->type_vocab, c->hidden), 0);
	pname(n, c, "embeddings.position_embeddings");
	x = mb_node2(g, OP_ADD, x, embedding(g, pos, n, c->max_positions, c->hidden), 0);
	pname(n, c, "embeddings.LayerNorm");
	x = layernorm(g, x, n, c->hidden, c->layer_norm_eps);
	for (i = 0; i < c->layers; i++)
		x = bert_layer(g, c, x, mask, i);
	bert_heads(g, c, x);
}

/* ------------------------------------------------------------ DistilBERT */

/* One DistilBERT TransformerBlock (post-LN, as BERT's). */
static uint32_t distil_layer(struct graph *g, const struct arch_cfg *c, uint32_t x, uint32_t mask,
			     int i)
{
	static const struct post_ln_names nm = {
		"transformer.layer.%d", ".attention.qkv", ".attention", "q_lin,k_lin,v_lin",
		".attention.out_lin",	".sa_layer_norm", ".ffn.lin1",	".ffn.lin2",
		".output_layer_norm",
	};

	return post_ln_layer(g, c, x, mask, i, &nm);
}

static void build_distilbert(struct graph *g, const struct arch_cfg *c)
{
	uint32_t mask, x;
	char n[NAME_LEN];
	int i;

	x = words_and_positions(g, c, "embeddings.word_embeddings",
				"embeddings.position_embeddings", &mask);
	pname(n, c, "embeddings.LayerNorm");
	x = layernorm(g, x, n, c->hidden, c->layer_norm_eps);
	for (i = 0; i < c->layers; i++)
		x = distil_layer(g, c, x, mask, i);
	if (c->head == HEAD_SEQ_CLS) {
		/* pre_classifier + ReLU on the first token, then classifier */
		x = mb_node1(g, OP_TAKE_ROW, x, 0);
		x = mb_linear_plain(g, x, "pre_classifier", c->hidden, c->hidden);
		x = graph_node(g, OP_RELU, &x, 1, NULL, 0, NULL, 0);
		classifier(g, c, x, "classifier");
	} else if (c->head == HEAD_TOKEN_CLS) {
		classifier(g, c, x, "classifier");
	} else {
		graph_output(g, "last_hidden_state", x);
	}
}

/* ----------------------------------------------------------------- GPT-2 */

/* One pre-LN GPT2Block; returns the residual stream after it. */
static uint32_t gpt2_block(struct graph *g, const struct arch_cfg *c, uint32_t x, uint32_t mask,
			   int i)
{
	int64_t att[2] = {c->heads, 1};
	char n[NAME_LEN];
	uint32_t in[2], y;

	pname(n, c, "h.%d.ln_1", i);
	y = layernorm(g, x, n, c->hidden, c->layer_norm_eps);
	pname(n, c, "h.%d.attn.c_attn", i);
	in[0] = linear_conv1d(g, y, n, 3 * c->hidden, c->hidden);
	in[1] = mask;
	y = graph_node(g, OP_ATTENTION, in, 2, att, 2, NULL, 0);
	pname(n, c, "h.%d.attn.c_proj", i);
	x = mb_node2(g, OP_ADD, linear_conv1d(g, y, n, c->hidden, c->hidden), x, 0);
	pname(n, c, "h.%d.ln_2", i);
	y = layernorm(g, x, n, c->hidden, c->layer_norm_eps);
	pname(n, c, "h.%d.mlp.c_fc", i);
	y = act(g, c, linear_conv1d(g, y, n, c->intermediate, c->hidden));
	pname(n, c, "h.%d.mlp.c_proj", i);
	return mb_node2(g, OP_ADD, linear_conv1d(g, y, n, c->hidden, c->intermediate), x, 0);
}

static void build_gpt2(struct graph *g, const struct arch_cfg *c)
{
	uint32_t mask, x;
	char n[NAME_LEN];
	int i;

	x = words_and_positions(g, c, "wte", "wpe", &mask);
	for (i = 0; i < c->layers; i++)
		x = gpt2_block(g, c, x, mask, i);
	pname(n, c, "ln_f");
	x = layernorm(g, x, n, c->hidden, c->layer_norm_eps);
	if (c->head == HEAD_LM) {
		/* A tied head reads the embedding matrix (a copy of it in the
		 * head's own layer: a weight belongs to one layer). */
		pname(n, c, "wte.weight");
		graph_output(g, "logits",
			     mb_linear(g, x, "lm_head", c->tied_lm_head ? n : "lm_head.weight",
				       NULL, c->vocab, c->hidden));
	} else if (c->head == HEAD_TOKEN_CLS) {
		classifier(g, c, x, "classifier");
	} else {
		graph_output(g, "last_hidden_state", x);
	}
}

/* ------------------------------------------------------------------- ViT */

/* Patch convolution, then class token and position embeddings. */
static uint32_t vit_embeddings(struct graph *g, const struct arch_cfg *c, uint32_t x)
{
	int64_t grid = c->image_size / c->patch_size;
	int64_t wd[4] = {c->hidden, c->channels, c->patch_size, c->patch_size};
	int64_t ia[7] = {c->patch_size, c->patch_size, 0, 0, 1, 1, 1};
	int64_t cd[3] = {1, 1, c->hidden}, pd[3] = {1, 1 + grid * grid, c->hidden};
	char n[NAME_LEN], w[NAME_LEN];
	uint32_t in[3];

	pname(n, c, "embeddings.patch_embeddings.projection");
	graph_layer_begin(g, n);
	in[0] = x;
	mb_join(w, n, ".weight");
	in[1] = graph_weight(g, w, 4, wd);
	mb_join(w, n, ".bias");
	in[2] = graph_weight(g, w, 1, &c->hidden);
	x = graph_node(g, OP_CONV2D, in, 3, ia, 7, NULL, 0);
	pname(n, c, "embeddings");
	graph_layer_begin(g, n);
	in[0] = x;
	pname(w, c, "embeddings.cls_token");
	in[1] = graph_weight(g, w, 3, cd);
	pname(w, c, "embeddings.position_embeddings");
	in[2] = graph_weight(g, w, 3, pd);
	return graph_node(g, OP_CLS_POS, in, 3, NULL, 0, NULL, 0);
}

/* One pre-LN ViTLayer. */
static uint32_t vit_layer(struct graph *g, const struct arch_cfg *c, uint32_t x, int i)
{
	int64_t att[2] = {c->heads, 0};
	char p[NAME_LEN], n[NAME_LEN], q[NAME_LEN];
	uint32_t y;

	pname(p, c, "encoder.layer.%d", i);
	mb_join(n, p, ".layernorm_before");
	y = layernorm(g, x, n, c->hidden, c->layer_norm_eps);
	mb_join(n, p, ".attention.attention.qkv");
	mb_join(q, p, ".attention.attention");
	y = linear_qkv(g, c, y, n, q, "query,key,value", c->qkv_bias);
	y = graph_node(g, OP_ATTENTION, &y, 1, att, 2, NULL, 0);
	mb_join(n, p, ".attention.output.dense");
	x = mb_node2(g, OP_ADD, mb_linear_plain(g, y, n, c->hidden, c->hidden), x, 0);
	mb_join(n, p, ".layernorm_after");
	y = layernorm(g, x, n, c->hidden, c->layer_norm_eps);
	mb_join(n, p, ".intermediate.dense");
	y = act(g, c, mb_linear_plain(g, y, n, c->intermediate, c->hidden));
	mb_join(n, p, ".output.dense");
	return mb_node2(g, OP_ADD, mb_linear_plain(g, y, n, c->hidden, c->intermediate), x, 0);
}

static void build_vit(struct graph *g, const struct arch_cfg *c)
{
	int64_t dims[4] = {DIM_BATCH, c->channels, c->image_size, c->image_size};
	char n[NAME_LEN];
	uint32_t x;
	int i;

	x = graph_input(g, "pixel_values", (enum dtype)g->wdtype, 4, dims, 0, 0);
	x = vit_embeddings(g, c, x);
	for (i = 0; i < c->layers; i++)
		x = vit_layer(g, c, x, i);
	pname(n, c, "layernorm");
	x = layernorm(g, x, n, c->hidden, c->layer_norm_eps);
	if (c->head == HEAD_IMAGE_CLS) {
		classifier(g, c, mb_node1(g, OP_TAKE_ROW, x, 0), "classifier");
		return;
	}
	graph_output(g, "last_hidden_state", x);
	pname(n, c, "pooler.dense");
	if (c->pooler)
		graph_output(g, "pooler_output", pooler(g, c, x, n));
}

/* ------------------------------------------------------------------ API */

/* The family's name, as graph.arch and config.json's model_type. */
const char *arch_family_name(enum arch_family f)
{
	static const char *const names[] = {
		[AF_BERT] = "bert", [AF_ROBERTA] = "roberta", [AF_DISTILBERT] = "distilbert",
		[AF_GPT2] = "gpt2", [AF_VIT] = "vit",
	};

	return (unsigned)f < ARRAY_SIZE(names) ? names[f] : "?";
}

/*
 * Add c's inputs, nodes, layers and outputs to g (empty, from
 * graph_create), and its sequence bounds. Any thread; g is the caller's.
 */
void arch_build(struct graph *g, const struct arch_cfg *c)
{
	g->max_seq = c->max_seq;
	g->def_seq = c->def_seq;
	switch (c->family) {
	case AF_BERT:
	case AF_ROBERTA:
		build_bert(g, c);
		break;
	case AF_DISTILBERT:
		build_distilbert(g, c);
		break;
	case AF_GPT2:
		build_gpt2(g, c);
		break;
	case AF_VIT:
		build_vit(g, c);
		break;
	}
}
