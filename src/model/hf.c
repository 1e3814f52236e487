/* SPDX-License-Identifier: MIT */
/*
 * Hugging Face checkpoint directories: config.json (the architecture) and
 * model.safetensors, or model.safetensors.index.json and its shards (the
 * weights), as a graph of arch.c and a weight source. Supported:
 * model_type bert, roberta, distilbert, gpt2, vit; base models and the
 * sequence / token / image classification and GPT-2 LM heads (a masked-LM
 * or pre-training checkpoint gives its base model). Anything
 * else is refused with one message naming the key or tensor and the file.
 */
#include "model.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SHARDS 1024

struct hf_ctx {
	const char *dir;
	char cfg_path[PATH_MAX];
	json_t *cfg;
	struct arch_cfg a;
	char prefix[16];
};

/* ---------------------------------------------------------- config keys */

/* Integer key (default def when absent) in [lo, hi]. */
static int key_int(struct hf_ctx *h, const char *key, int64_t def, int64_t lo, int64_t hi,
		   int64_t *out)
{
	json_t *v = json_object_get(h->cfg, key);

	*out = def;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return err_set(DPRT_EUNSUP, "%s: %s must be an integer in [%lld, %lld]",
			       h->cfg_path, key, (long long)lo, (long long)hi);
	*out = json_integer_value(v);
	return 0;
}

static int key_float(struct hf_ctx *h, const char *key, double def, float *out)
{
	json_t *v = json_object_get(h->cfg, key);

	*out = (float)def;
	if (!v)
		return 0;
	if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) >= 1)
		return err_set(DPRT_EUNSUP, "%s: %s must be a number in (0, 1)", h->cfg_path, key);
	*out = (float)json_number_value(v);
	return 0;
}

/* String key, def when absent; NULL (with err_set) when not a string. */
static const char *key_str(struct hf_ctx *h, const char *key, const char *def)
{
	json_t *v = json_object_get(h->cfg, key);

	if (!v)
		return def;
	if (!json_is_string(v)) {
		err_set(DPRT_EUNSUP, "%s: %s must be a string", h->cfg_path, key);
		return NULL;
	}
	return json_string_value(v);
}

/* A boolean key must have the value `want` (absent: def). */
static int key_bool_is(struct hf_ctx *h, const char *key, bool def, bool want)
{
	json_t *v = json_object_get(h->cfg, key);
	bool b = v ? json_is_true(v) : def;

	if (v && !json_is_boolean(v))
		return err_set(DPRT_EUNSUP, "%s: %s must be true or false", h->cfg_path, key);
	if (b != want)
		return err_set(DPRT_EUNSUP, "%s: %s %s is not supported", h->cfg_path, key,
			       b ? "true" : "false");
	return 0;
}

static int key_act(struct hf_ctx *h, const char *key, const char *def)
{
	const char *s = key_str(h, key, def);

	if (!s)
		return DPRT_EUNSUP;
	if (!strcmp(s, "gelu"))
		h->a.hidden_act = ACT_GELU;
	else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh"))
		h->a.hidden_act = ACT_GELU_TANH;
	else if (!strcmp(s, "relu"))
		h->a.hidden_act = ACT_RELU;
	else
		return err_set(DPRT_EUNSUP,
			       "%s: %s '%s' is not supported (gelu, gelu_new, "
			       "gelu_pytorch_tanh, relu)",
			       h->cfg_path, key, s);
	return 0;
}

/* ------------------------------------------------------------ families */

#define BIG ((int64_t)1 << 31)

/* The sizes every family has, under the family's key names. */
static int key_sizes(struct hf_ctx *h, const char *const k[5], const int64_t def[5])
{
	struct arch_cfg *a = &h->a;
	int64_t layers;
	int ret;

	ret = key_int(h, k[0], def[0], 1, 4096, &layers)		     ?:
		      key_int(h, k[1], def[1], 1, 1 << 20, &a->hidden)	     ?:
		      key_int(h, k[2], def[2], 1, 4096, &a->heads)	     ?:
		      key_int(h, k[3], def[3], 1, 1 << 22, &a->intermediate) ?:
		      key_int(h, k[4], def[4], 1, BIG, &a->vocab);
	if (ret)
		return ret;
	a->layers = (int)layers;
	if (a->hidden % a->heads)
		return err_set(DPRT_EUNSUP, "%s: %s %lld is not a multiple of %s %lld", h->cfg_path,
			       k[1], (long long)a->hidden, k[2], (long long)a->heads);
	return 0;
}

static int cfg_bert(struct hf_ctx *h, bool roberta)
{
	static const char *const k[5] = {"num_hidden_layers", "hidden_size", "num_attention_heads",
					 "intermediate_size", "vocab_size"};
	const int64_t def[5] = {12, 768, 12, 3072, roberta ? 50265 : 30522};
	struct arch_cfg *a = &h->a;
	const char *pe;
	int ret;

	ret = key_sizes(h, k, def)							    ?:
		      key_act(h, "hidden_act", "gelu")					    ?:
		      key_int(h, "max_position_embeddings", 512, 1, BIG, &a->max_positions) ?:
		      key_int(h, "type_vocab_size", 2, 1, BIG, &a->type_vocab)		    ?:
		      key_int(h, "pad_token_id", roberta ? 1 : 0, 0, BIG, &a->pad_token_id) ?:
		      key_float(h, "layer_norm_eps", 1e-12, &a->layer_norm_eps);
	if (ret)
		return ret;
	pe = key_str(h, "position_embedding_type", "absolute");
	if (!pe)
		return DPRT_EUNSUP;
	if (strcmp(pe, "absolute"))
		return err_set(DPRT_EUNSUP,
			       "%s: position_embedding_type '%s' is not supported (absolute)",
			       h->cfg_path, pe);
	a->max_seq = a->max_positions;
	if (roberta) /* positions start after the padding id */
		a->max_seq = a->max_positions - a->pad_token_id - 1;
	if (a->max_seq < 1)
		return err_set(DPRT_EUNSUP,
			       "%s: max_position_embeddings %lld leaves no positions "
			       "after pad_token_id %lld",
			       h->cfg_path, (long long)a->max_positions,
			       (long long)a->pad_token_id);
	return 0;
}

static int cfg_distilbert(struct hf_ctx *h)
{
	static const char *const k[5] = {"n_layers", "dim", "n_heads", "hidden_dim", "vocab_size"};
	static const int64_t def[5] = {6, 768, 12, 3072, 30522};
	struct arch_cfg *a = &h->a;
	int ret;

	ret = key_sizes(h, k, def)							    ?:
		      key_act(h, "activation", "gelu")					    ?:
		      key_int(h, "max_position_embeddings", 512, 1, BIG, &a->max_positions) ?:
		      key_bool_is(h, "sinusoidal_pos_embds", false, false);
	a->layer_norm_eps = 1e-12f; /* DistilBERT's LayerNorms are fixed at 1e-12 */
	a->max_seq = a->max_positions;
	return ret;
}

static int cfg_gpt2(struct hf_ctx *h)
{
	static const char *const k[5] = {"n_layer", "n_embd", "n_head", "n_inner", "vocab_size"};
	int64_t def[5] = {12, 768, 12, 0, 50257}, embd = 768;
	struct arch_cfg *a = &h->a;
	int ret;

	ret = key_int(h, "n_embd", 768, 1, 1 << 20, &embd);
	if (ret)
		return ret;
	def[3] = 4 * embd; /* n_inner null: 4 * n_embd */
	ret = key_sizes(h, k, def)						      ?:
		      key_act(h, "activation_function", "gelu_new")		      ?:
		      key_int(h, "n_positions", 1024, 1, BIG, &a->max_positions)      ?:
		      key_float(h, "layer_norm_epsilon", 1e-5, &a->layer_norm_eps)    ?:
		      key_bool_is(h, "scale_attn_weights", true, true)		      ?:
		      key_bool_is(h, "scale_attn_by_inverse_layer_idx", false, false) ?:
		      key_bool_is(h, "add_cross_attention", false, false);
	a->max_seq = a->max_positions;
	return ret;
}

static int cfg_vit(struct hf_ctx *h)
{
	static const char *const k[5] = {"num_hidden_layers", "hidden_size", "num_attention_heads",
					 "intermediate_size", "num_channels"};
	static const int64_t def[5] = {12, 768, 12, 3072, 3};
	struct arch_cfg *a = &h->a;
	json_t *qkv = json_object_get(h->cfg, "qkv_bias");
	const char *pool;
	int64_t size;
	int ret;

	ret = key_sizes(h, k, def)						?:
		      key_act(h, "hidden_act", "gelu")				?:
		      key_int(h, "image_size", 224, 1, 1 << 16, &a->image_size) ?:
		      key_int(h, "patch_size", 16, 1, 1 << 16, &a->patch_size)	?:
		      key_float(h, "layer_norm_eps", 1e-12, &a->layer_norm_eps);
	if (ret)
		return ret;
	a->channels = a->vocab;
	a->vocab = 0;
	a->qkv_bias = !qkv || json_is_true(qkv);
	if (a->image_size % a->patch_size)
		return err_set(DPRT_EUNSUP,
			       "%s: image_size %lld is not a multiple of patch_size "
			       "%lld",
			       h->cfg_path, (long long)a->image_size, (long long)a->patch_size);
	pool = key_str(h, "pooler_act", "tanh");
	if (!pool)
		return DPRT_EUNSUP;
	if (strcmp(pool, "tanh"))
		return err_set(DPRT_EUNSUP, "%s: pooler_act '%s' is not supported (tanh)",
			       h->cfg_path, pool);
	ret = key_int(h, "pooler_output_size", a->hidden, 1, BIG, &size);
	if (!ret && size != a->hidden)
		ret = err_set(DPRT_EUNSUP,
			      "%s: pooler_output_size %lld other than hidden_size is "
			      "not supported",
			      h->cfg_path, (long long)size);
	return ret;
}

/* -------------------------------------------------------- architecture */

static const struct {
	const char *suffix;
	enum arch_head head;
} heads[] = {
	{"ForSequenceClassification", HEAD_SEQ_CLS},
	{"ForTokenClassification", HEAD_TOKEN_CLS},
	{"LMHeadModel", HEAD_LM},
	{"ForImageClassification", HEAD_IMAGE_CLS},
	{"Model", HEAD_BASE},
	/* pre-training heads (the published base checkpoints): the encoder */
	{"ForMaskedLM", HEAD_BASE},
	{"ForPreTraining", HEAD_BASE},
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/* Whether family f has head hd. */
static bool head_ok(enum arch_family f, enum arch_head hd)
{
	switch (hd) {
	case HEAD_BASE:
		return true;
	case HEAD_SEQ_CLS:
		return f == AF_BERT || f == AF_ROBERTA || f == AF_DISTILBERT;
	case HEAD_TOKEN_CLS:
		return f != AF_VIT;
	case HEAD_LM:
		return f == AF_GPT2;
	case HEAD_IMAGE_CLS:
		return f == AF_VIT;
	}
	return false;
}

/* The head from architectures[0] (absent: the base model). */
static int pick_head(struct hf_ctx *h)
{
	json_t *arr = json_object_get(h->cfg, "architectures");
	const char *s;
	size_t i;

	h->a.head = HEAD_BASE;
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr) || json_array_size(arr) != 1 ||
	    !json_is_string(json_array_get(arr, 0)))
		return err_set(DPRT_EUNSUP, "%s: architectures must list one class name",
			       h->cfg_path);
	s = json_string_value(json_array_get(arr, 0));
	for (i = 0; i < ARRAY_SIZE(heads); i++) {
		if (!ends_with(s, heads[i].suffix))
			continue;
		if (!head_ok(h->a.family, heads[i].head))
			break;
		h->a.head = heads[i].head;
		if (strcmp(heads[i].suffix, "Model") && heads[i].head == HEAD_BASE)
			log_info("%s: %s: its pre-training head is not imported, only the "
				 "base model (last_hidden_state, pooler_output if present)",
				 h->cfg_path, s);
		return 0;
	}
	return err_set(DPRT_EUNSUP, "%s: architectures '%s' is not supported for model_type %s",
		       h->cfg_path, s, arch_family_name(h->a.family));
}

/* Number of labels of a classification head: id2label's, else num_labels. */
static int pick_labels(struct hf_ctx *h)
{
	json_t *map = json_object_get(h->cfg, "id2label");

	if (h->a.head != HEAD_SEQ_CLS && h->a.head != HEAD_TOKEN_CLS && h->a.head != HEAD_IMAGE_CLS)
		return 0;
	if (map && json_is_object(map) && json_object_size(map)) {
		h->a.num_labels = (int64_t)json_object_size(map);
		return 0;
	}
	return key_int(h, "num_labels", 2, 1, BIG, &h->a.num_labels);
}

static int parse_config(struct hf_ctx *h)
{
	static const char *const types[] = {[AF_BERT] = "bert",
					    [AF_ROBERTA] = "roberta",
					    [AF_DISTILBERT] = "distilbert",
					    [AF_GPT2] = "gpt2",
					    [AF_VIT] = "vit"};
	json_error_t je;
	const char *mt;
	size_t i;
	int ret;

	h->cfg = json_load_file(h->cfg_path, 0, &je);
	if (!h->cfg)
		return err_set(DPRT_EUNSUP, "%s: line %d: %s", h->cfg_path, je.line, je.text);
	if (!json_is_object(h->cfg))
		return err_set(DPRT_EUNSUP, "%s: not a JSON object", h->cfg_path);
	mt = key_str(h, "model_type", NULL);
	if (!mt)
		return err_set(DPRT_EUNSUP, "%s: model_type is missing or not a string",
			       h->cfg_path);
	for (i = 0; i < ARRAY_SIZE(types) && strcmp(mt, types[i]); i++)
		;
	if (i == ARRAY_SIZE(types))
		return err_set(DPRT_EUNSUP,
			       "%s: model_type '%s' is not supported (bert, roberta, "
			       "distilbert, gpt2, vit)",
			       h->cfg_path, mt);
	h->a.family = (enum arch_family)i;
	ret = pick_head(h) ?: pick_labels(h);
	if (ret)
		return ret;
	switch (h->a.family) {
	case AF_BERT:
		return cfg_bert(h, false);
	case AF_ROBERTA:
		return cfg_bert(h, true);
	case AF_DISTILBERT:
		return cfg_distilbert(h);
	case AF_GPT2:
		h->a.tied_lm_head = !json_is_false(json_object_get(h->cfg, "tie_word_embeddings"));
		return cfg_gpt2(h);
	case AF_VIT:
		return cfg_vit(h);
	}
	return 0;
}

/* ------------------------------------------------------------- weights */

/* The shard files of an index's weight_map, each once, in first-use order. */
static int open_sharded(struct hf_ctx *h, const char *index, struct weight_source **ws)
{
	const char *files[MAX_SHARDS], *key;
	char *paths[MAX_SHARDS];
	json_t *root, *map, *v;
	json_error_t je;
	uint32_t n = 0, i;
	int ret = 0;

	root = json_load_file(index, 0, &je);
	if (!root)
		return err_set(DPRT_EWEIGHTS, "%s: line %d: %s", index, je.line, je.text);
	map = json_object_get(root, "weight_map");
	if (!json_is_object(map) || !json_object_size(map))
		ret = err_set(DPRT_EWEIGHTS, "%s: weight_map is missing or empty", index);
	json_object_foreach(map, key, v)
	{
		if (ret)
			break;
		if (!json_is_string(v) || strchr(json_string_value(v), '/'))
			ret = err_set(DPRT_EWEIGHTS, "%s: weight_map['%s'] is not a file name",
				      index, key);
		for (i = 0; !ret && i < n && strcmp(files[i], json_string_value(v)); i++)
			;
		if (!ret && i == n && n == MAX_SHARDS)
			ret = err_set(DPRT_EUNSUP, "%s: more than %d shards", index, MAX_SHARDS);
		else if (!ret && i == n)
			files[n++] = json_string_value(v);
	}
	for (i = 0; i < n; i++)
		paths[i] = NULL;
	for (i = 0; !ret && i < n; i++) {
		size_t len = strlen(h->dir) + strlen(files[i]) + 2;

		paths[i] = malloc(len);
		if (!paths[i])
			ret = err_set(-ENOMEM, "%s: out of memory", index);
		else
			snprintf(paths[i], len, "%s/%s", h->dir, files[i]);
	}
	if (!ret)
		ret = wsrc_safetensors_multi((const char *const *)paths, n, index, ws);
	for (i = 0; i < n; i++)
		free(paths[i]);
	json_decref(root);
	return ret;
}

static int open_weights(struct hf_ctx *h, struct weight_source **ws)
{
	char single[PATH_MAX], index[PATH_MAX];
	struct stat st;

	snprintf(single, sizeof(single), "%s/model.safetensors", h->dir);
	snprintf(index, sizeof(index), "%s/model.safetensors.index.json", h->dir);
	if (!stat(single, &st))
		return wsrc_safetensors(single, ws);
	if (!stat(index, &st))
		return open_sharded(h, index, ws);
	return err_set(DPRT_EWEIGHTS,
		       "%s: neither model.safetensors nor "
		       "model.safetensors.index.json is there (only safetensors "
		       "checkpoints are read)",
		       h->dir);
}

/* The base model's prefix: the family's when the checkpoint has a head
 * model's names (bert.embeddings...), else none. Also whether it has a
 * pooler. */
static void pick_prefix(struct hf_ctx *h, const struct weight_source *ws)
{
	static const char *const probe[] = {[AF_BERT] = "embeddings.word_embeddings.weight",
					    [AF_ROBERTA] = "embeddings.word_embeddings.weight",
					    [AF_DISTILBERT] = "embeddings.word_embeddings.weight",
					    [AF_GPT2] = "wte.weight",
					    [AF_VIT] = "embeddings.cls_token"};
	static const char *const fam[] = {[AF_BERT] = "bert.",
					  [AF_ROBERTA] = "roberta.",
					  [AF_DISTILBERT] = "distilbert.",
					  [AF_GPT2] = "transformer.",
					  [AF_VIT] = "vit."};
	char name[2 * NAME_LEN];

	snprintf(name, sizeof(name), "%s%s", fam[h->a.family], probe[h->a.family]);
	if (wsrc_has(ws, name) || (h->a.head != HEAD_BASE && !wsrc_has(ws, probe[h->a.family])))
		snprintf(h->prefix, sizeof(h->prefix), "%s", fam[h->a.family]);
	h->a.prefix = h->prefix;
	snprintf(name, sizeof(name), "%spooler.dense.weight", h->prefix);
	h->a.pooler = h->a.head == HEAD_BASE && h->a.family != AF_GPT2 &&
		      h->a.family != AF_DISTILBERT && wsrc_has(ws, name);
}

/* Every name must fit the package's tables uncut. */
static int check_names(const struct graph *g, const char *dir)
{
	uint32_t t;

	for (t = 0; t < g->n_tensors; t++)
		if (strlen(g->tensors[t].name) >= NAME_LEN - 1)
			return err_set(DPRT_EUNSUP,
				       "%s: tensor name '%s...' is longer than %d "
				       "characters",
				       dir, g->tensors[t].name, NAME_LEN - 2);
	return 0;
}

/* ------------------------------------------------------------------ API */

/*
 * Read the checkpoint directory dir into *g (finalized, named `name`,
 * weights of dtype dt) and *ws (its weights, checked against *g). Any
 * thread. 0, or a negative code with one message (err_set) naming the file
 * and the config key or tensor; then *g and *ws are NULL.
 */
int import_hf(const char *dir, const char *name, enum dtype dt, struct graph **g,
	      struct weight_source **ws)
{
	struct hf_ctx h = {.dir = dir};
	int ret;

	*g = NULL;
	*ws = NULL;
	if (dt != DT_F32 && dt != DT_F16 && dt != DT_BF16)
		return err_set(DPRT_EUNSUP, "import: dtype %s is not FP32, FP16 or BF16",
			       dtype_name(dt));
	snprintf(h.cfg_path, sizeof(h.cfg_path), "%s/config.json", dir);
	ret = parse_config(&h) ?: open_weights(&h, ws);
	if (ret)
		goto out_fail;
	pick_prefix(&h, *ws);
	ret = err_set(-ENOMEM, "%s: out of memory", dir);
	*g = graph_create(name, arch_family_name(h.a.family), dt);
	if (!*g)
		goto out_fail;
	arch_build(*g, &h.a);
	ret = check_names(*g, dir) ?: graph_finalize(*g) ?: wsrc_check(*ws, *g);
	if (ret)
		goto out_fail;
	json_decref(h.cfg);
	return 0;
out_fail:
	graph_destroy(*g);
	wsrc_destroy(*ws);
	*g = NULL;
	*ws = NULL;
	json_decref(h.cfg);
	return ret;
}
