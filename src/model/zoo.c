/* SPDX-License-Identifier: MIT */
/*
 * Model zoo: the paper's models (torchvision ResNets, Hugging Face BertModel,
 * RobertaModel and GPT2Model) and tiny variants of each for tests.
 *
 * The transformers are arch.c's builders with fixed configurations.
 * Layer names are PyTorch module paths; weight tensor names are the state
 * dict names written as recipes that wsrc_safetensors() interprets:
 * "a.{query,key,value}.weight" (concat on dim 0), "c_attn.weight^T"
 * (transpose), "bn1#scale" / "bn1#shift" (folded batch norm).
 */
#include "build.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct resnet_cfg {
	int blocks[4];
	int64_t width; /* channels of the stem; stage s has width << s planes */
	int64_t classes;
	int64_t image;
};

struct zoo_model {
	const char *arch; /* "resnet", "bert", "roberta", "gpt2" */
	const struct resnet_cfg *rn;
	const struct arch_cfg *tf;
};

static const struct resnet_cfg rn50 = {{3, 4, 6, 3}, 64, 1000, 224};
static const struct resnet_cfg rn101 = {{3, 4, 23, 3}, 64, 1000, 224};
static const struct resnet_cfg rn_tiny = {{1, 1, 1, 1}, 8, 10, 32};

/* BertModel / RobertaModel / GPT2Model with pooler (BERT, RoBERTa), no head. */
#define TF(fam, l, h, nh, ffn, v, pos, types, pad, eps, act_, maxs, defs)                          \
	{                                                                                          \
		.family = (fam), .layers = (l), .hidden = (h), .heads = (nh),                      \
		.intermediate = (ffn), .vocab = (v), .max_positions = (pos),                       \
		.type_vocab = (types), .pad_token_id = (pad), .layer_norm_eps = (eps),             \
		.hidden_act = (act_), .head = HEAD_BASE, .pooler = (fam) != AF_GPT2, .prefix = "", \
		.max_seq = (maxs), .def_seq = (defs),                                              \
	}

static const struct arch_cfg bert_base =
	TF(AF_BERT, 12, 768, 12, 3072, 30522, 512, 2, 0, 1e-12f, ACT_GELU, 512, 384);
static const struct arch_cfg bert_large =
	TF(AF_BERT, 24, 1024, 16, 4096, 30522, 512, 2, 0, 1e-12f, ACT_GELU, 512, 384);
static const struct arch_cfg bert_tiny =
	TF(AF_BERT, 2, 64, 4, 128, 1000, 64, 2, 0, 1e-12f, ACT_GELU, 64, 64);
static const struct arch_cfg rob_base =
	TF(AF_ROBERTA, 12, 768, 12, 3072, 50265, 514, 1, 1, 1e-5f, ACT_GELU, 512, 384);
static const struct arch_cfg rob_large =
	TF(AF_ROBERTA, 24, 1024, 16, 4096, 50265, 514, 1, 1, 1e-5f, ACT_GELU, 512, 384);
static const struct arch_cfg rob_tiny =
	TF(AF_ROBERTA, 2, 64, 4, 128, 1000, 64, 1, 1, 1e-5f, ACT_GELU, 62, 62);
static const struct arch_cfg gpt2_base =
	TF(AF_GPT2, 12, 768, 12, 3072, 50257, 1024, 0, 0, 1e-5f, ACT_GELU_TANH, 1024, 1024);
static const struct arch_cfg gpt2_medium =
	TF(AF_GPT2, 24, 1024, 16, 4096, 50257, 1024, 0, 0, 1e-5f, ACT_GELU_TANH, 1024, 1024);
static const struct arch_cfg gpt2_tiny =
	TF(AF_GPT2, 2, 64, 4, 256, 1000, 64, 0, 0, 1e-5f, ACT_GELU_TANH, 64, 64);

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

/* ---------------------------------------------------------------- ResNet */

/* conv (no bias) at `name` with a square kernel k, stride s, padding p. */
static uint32_t conv(struct graph *g, uint32_t x, const char *name, int64_t out, int64_t in_ch,
		     int64_t k, int64_t s, int64_t p)
{
	int64_t wd[4] = {out, in_ch, k, k};
	int64_t ia[7] = {s, s, p, p, 1, 1, 1};
	char w[NAME_LEN];
	uint32_t in[2];

	mb_join(w, name, ".weight");
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

	mb_join(sc, name, "#scale");
	mb_join(sh, name, "#shift");
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

	mb_join(n, p, ".conv1");
	mb_join(n2, p, ".bn1");
	y = bnorm(g, conv(g, x, n, planes, inplanes, 1, 1, 0), n2, planes, 1);
	mb_join(n, p, ".conv2");
	mb_join(n2, p, ".bn2");
	y = bnorm(g, conv(g, y, n, planes, planes, 3, stride, 1), n2, planes, 1);
	mb_join(n, p, ".conv3");
	mb_join(n2, p, ".bn3");
	y = bnorm(g, conv(g, y, n, planes * 4, planes, 1, 1, 0), n2, planes * 4, 0);
	if (stride != 1 || inplanes != planes * 4) {
		mb_join(n, p, ".downsample.0");
		mb_join(n2, p, ".downsample.1");
		id = conv(g, x, n, planes * 4, inplanes, 1, stride, 0);
		id = bnorm(g, id, n2, planes * 4, 0);
	}
	return mb_node2(g, OP_ADD, y, id, 1);
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
	x = mb_linear_plain(g, x, "fc", c->classes, inplanes);
	graph_output(g, "logits", x);
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
		arch_build(g, m->tf);
	}
	ret = graph_finalize(g);
	if (ret) {
		graph_destroy(g);
		return ret;
	}
	*out = g;
	return 0;
}
