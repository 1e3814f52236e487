/* SPDX-License-Identifier: MIT */
/*
 * model: graph IR, package format (model.dpk), zoo builders, importers.
 *
 * A graph is a list of nodes in execution order over a table of tensors.
 * A *layer* is one weight-owning node: its weight tensors form one
 * contiguous, 4 KiB-aligned byte range of the weight region, and layers are
 * laid out in execution order. A layer is the unit that is loaded to a GPU or
 * run in place from host memory (DHA).
 *
 * Activation shapes are not stored: they follow from the input shapes by
 * graph_infer_shapes(). Weight shapes are static.
 */
#ifndef DPRT_MODEL_H
#define DPRT_MODEL_H

#include "base/base.h"

enum dtype {
	DT_NONE = 0,
	DT_F32 = 1,
	DT_F16 = 2,
	DT_BF16 = 3,
	DT_I64 = 4,
	DT_I32 = 5,
	DT_U8 = 6,
	DT_BOOL = 7,
	DT_COUNT
};
size_t dtype_size(enum dtype dt);
/* KServe v2 names: "FP32", "FP16", "BF16", "INT64", "INT32", "UINT8",
 * "BOOL". dtype_parse also takes "fp32"/"fp16"/"bf16". DT_NONE if unknown. */
const char *dtype_name(enum dtype dt);
enum dtype dtype_parse(const char *s);

#define MAX_DIMS 6
#define NO_TENSOR UINT32_MAX
#define NAME_LEN 96
/* Symbolic dims in the IO signature. */
#define DIM_BATCH (-1)
#define DIM_SEQ (-2)

#define LAYER_ALIGN 4096u /* each layer's range; O_DIRECT-friendly */
#define TENSOR_ALIGN 256u /* each tensor inside its layer */

enum op {
	OP_NONE = 0,
	/* in: x[N,C,H,W], w[K,C/groups,kh,kw], b[K]?   out: [N,K,OH,OW]
	 * ia: 0 stride_h 1 stride_w 2 pad_h 3 pad_w 4 dil_h 5 dil_w 6 groups */
	OP_CONV2D = 1,
	/* inference batch norm as a per-channel affine: y = x*scale + shift.
	 * in: x[N,C,...], scale[C], shift[C]. ia0: 1 = relu after. */
	OP_BATCHNORM = 2,
	OP_RELU = 3, /* in: x; out: same shape */
	/* in: x[N,C,H,W]. ia: 0 kh 1 kw 2 sh 3 sw 4 ph 5 pw
	 * (avg: ia6 count_include_pad). Out-of-bounds cells are -inf (max). */
	OP_MAXPOOL = 4,
	OP_AVGPOOL = 5,
	OP_GLOBAL_AVGPOOL = 6, /* in: x[N,C,H,W]; out: [N,C] */
	OP_ADD = 7,	       /* in: a, b (same shape); ia0: 1 = relu after */
	/* in: x[...,K], w[M,K] (PyTorch nn.Linear layout), b[M]?; out [...,M] */
	OP_LINEAR = 8,
	/* in: ids[N,S] (INT64), table[V,H]; out [N,S,H]. An id outside
	 * [0,V) fails the request with DPRT_EINPUT. */
	OP_EMBEDDING = 9,
	/* in: ids[N,S] (INT64); out [N,S] INT64 position ids.
	 * ia0 mode: 0 = arange(S) + ia1; 1 = RoBERTa's from input ids:
	 *   pos = cumsum(ids != pad) * (ids != pad) + pad, with pad = ia1. */
	OP_POSITION_IDS = 10,
	/* in: x[...,H], gamma[H], beta[H]; fa0 eps */
	OP_LAYERNORM = 11,
	OP_GELU = 12, /* ia0: 0 = erf form, 1 = tanh approximation */
	OP_TANH = 13,
	OP_SOFTMAX = 14, /* over the last dim */
	/* Multi-head self-attention on a fused projection.
	 * in: qkv[N,S,3H] laid out [q | k | v] per token, each H = heads*d,
	 *     mask[N,S]? (INT64, 1 = attend, 0 = padding).
	 * out: [N,S,H]. ia0 heads, ia1 causal (1 = token i sees j <= i).
	 * scores = q.k / sqrt(d); masked scores get the dtype's lowest value
	 * added (as Hugging Face does), then softmax over keys. */
	OP_ATTENTION = 15,
	/* in: x[N,S,H]; out [N,H] = x[:, ia0, :]  (BERT pooler's first token) */
	OP_TAKE_ROW = 16,
	/* ViT's embeddings after the patch convolution.
	 * in: x[N,H,GH,GW] (patch features), cls[1,1,H], pos[1,1+GH*GW,H];
	 * out [N,1+GH*GW,H]: row 0 = cls + pos[0], row 1+p = x[:,:,p] + pos[1+p]
	 * (patches in row-major order, as flatten(2).transpose(1, 2)). */
	OP_CLS_POS = 17,
	OP_COUNT
};
const char *op_name(enum op op);
/* Number of weight inputs an op may take (for layer accounting). */
bool op_has_weights(enum op op);

enum tensor_kind {
	TK_INPUT = 1,  /* a model input (see io_desc) */
	TK_WEIGHT = 2, /* static, in the weight region */
	TK_ACT = 3,    /* produced by a node (outputs are activations too) */
};

struct tensor {
	char name[NAME_LEN];
	uint8_t kind;
	uint8_t dtype;
	uint8_t ndim; /* weights only; activations: inferred */
	int64_t dims[MAX_DIMS];
	uint32_t layer;	 /* weights: owning layer; else NO_TENSOR */
	uint64_t offset; /* weights: byte offset in the weight region */
	uint64_t nbytes; /* weights: exact bytes (no padding) */
};

#define NODE_MAX_IN 4
#define NODE_MAX_IA 8
#define NODE_MAX_FA 2
struct node {
	uint16_t op;
	uint8_t n_in;
	uint32_t in[NODE_MAX_IN]; /* NO_TENSOR for an absent optional input */
	uint32_t out;
	uint32_t layer; /* NO_TENSOR when the node owns no weights */
	int64_t ia[NODE_MAX_IA];
	float fa[NODE_MAX_FA];
};

struct layer {
	char name[NAME_LEN];
	uint32_t node;	 /* the node that owns it */
	uint64_t offset; /* in the weight region, multiple of LAYER_ALIGN */
	uint64_t nbytes; /* bytes used (tensors incl. their padding) */
	uint64_t params; /* number of weight elements */
	uint32_t crc;	 /* CRC32C of [offset, offset + nbytes) */
};

#define IO_OPTIONAL 1u /* may be omitted; filled with io_desc.fill */
struct io_desc {
	char name[NAME_LEN];
	uint32_t tensor;
	uint8_t dtype;
	uint8_t ndim;
	uint8_t flags;
	int64_t dims[MAX_DIMS]; /* > 0 fixed, or DIM_BATCH / DIM_SEQ */
	double fill;
};

/*
 * Invariants after graph_finalize() or pkg_open():
 *  - nodes are in execution order; every node input is a weight, an input
 *    or the output of an earlier node;
 *  - layers are in the order of their nodes; layer ranges are disjoint,
 *    ascending, LAYER_ALIGN-aligned and inside [0, weights_size);
 *  - every weight tensor lies inside its layer's range.
 */
struct graph {
	char name[NAME_LEN];
	char arch[32];	   /* "resnet", "bert", "roberta", "gpt2", ... */
	uint8_t wdtype;	   /* weight (and activation) dtype: F32/F16/BF16 */
	int64_t max_seq;   /* upper bound of DIM_SEQ (0 if none) */
	int64_t def_seq;   /* the paper's shape (run/bench default) */
	int64_t max_batch; /* upper bound of DIM_BATCH (0 = none) */
	uint32_t n_tensors, n_nodes, n_layers, n_inputs, n_outputs;
	struct tensor *tensors;
	struct node *nodes;
	struct layer *layers;
	struct io_desc *inputs, *outputs;
	uint64_t weights_size; /* bytes of the weight region (aligned) */
	uint64_t n_params;
	/* builder state */
	uint32_t cap_tensors, cap_nodes, cap_layers, cap_io_in, cap_io_out;
	uint32_t open_layer;
};

/* ---- building (zoo, importers); not thread-safe per graph ---- */
struct graph *graph_create(const char *name, const char *arch, enum dtype wdtype);
void graph_destroy(struct graph *g);
/* Add an input of the signature; returns its tensor id. */
uint32_t graph_input(struct graph *g, const char *name, enum dtype dt, int ndim,
		     const int64_t *dims, unsigned flags, double fill);
/* Open a layer; weights added until graph_layer_end belong to it, and the
 * next node added is its owner. */
void graph_layer_begin(struct graph *g, const char *name);
/* Add a weight tensor of the open layer, dtype = g->wdtype. */
uint32_t graph_weight(struct graph *g, const char *name, int ndim, const int64_t *dims);
/* Add a node; returns its output tensor id. Closes the open layer. */
uint32_t graph_node(struct graph *g, enum op op, const uint32_t *in, int n_in, const int64_t *ia,
		    int n_ia, const float *fa, int n_fa);
void graph_output(struct graph *g, const char *name, uint32_t tensor);
/* Number of rows of the smallest embedding table that reads tensor t (an
 * input of token ids): ids must lie in [0, that). 0 if no embedding reads
 * it. Any thread. */
int64_t graph_id_bound(const struct graph *g, uint32_t t);
/* Lay out the weight region, count params, check invariants. 0 or -errno
 * with err_set. */
int graph_finalize(struct graph *g);
/* Check the invariants above (used by the package reader). */
int graph_validate(const struct graph *g, const char *what);

/* ---- shapes ---- */
struct shape {
	uint8_t dtype;
	uint8_t ndim;
	int64_t dims[MAX_DIMS];
};
static inline int64_t shape_numel(const struct shape *s)
{
	int64_t n = 1;
	int i;

	for (i = 0; i < s->ndim; i++)
		n *= s->dims[i];
	return n;
}
/* The concrete shape of signature entry io for a batch and a sequence
 * length (DIM_BATCH -> batch, DIM_SEQ -> seq); returns its bytes. */
uint64_t io_shape(const struct io_desc *io, int64_t batch, int64_t seq, struct shape *out);
/* The sequence length runs use when none is given (profiles, warm-ups):
 * the package's default, else up to 128 within its bound. */
int64_t graph_default_seq(const struct graph *g);
/*
 * Check the given input shapes against the signature (dtype, rank, fixed
 * dims, one batch and one seq value across inputs, limits) and infer every
 * tensor's shape into shapes[g->n_tensors]. in[i] is the shape of input i;
 * in[i].ndim == 0 means an optional input was omitted (it then takes the
 * inferred batch/seq shape). 0 or DPRT_ESHAPE/DPRT_EDTYPE with err_set.
 */
int graph_infer_shapes(const struct graph *g, const struct shape *in, struct shape *shapes);

/*
 * Activation memory a run of these shapes needs (shapes from
 * graph_infer_shapes): the peak over the nodes, in execution order, of the
 * bytes of the tensors alive then (inputs and activations from their
 * producer to their last reader, outputs to the end) plus the node's
 * scratch (attention scores, im2col). Floats count 4 bytes, as the CPU
 * backend holds them; the backends' arenas need about this much. Used to
 * refuse requests over a device's activation budget. work[g->n_tensors]
 * is scratch. Any thread.
 */
uint64_t graph_act_peak(const struct graph *g, const struct shape *shapes, uint32_t *work);

/* ---- package file ---- */
#define PKG_MAGIC "DPRTPKG\0"
#define PKG_VERSION 1

struct pkg;
/* Open and validate a package's header and tables (not the weights).
 * Errors name the file and the problem (err_msg). Any thread. */
int pkg_open(const char *path, struct pkg **out);
void pkg_close(struct pkg *p);
const struct graph *pkg_graph(const struct pkg *p);
/* The decoded graph, now the caller's (graph_destroy); p keeps none. */
struct graph *pkg_take_graph(struct pkg *p);
const char *pkg_path(const struct pkg *p);
/* 64-bit identity of the package: hash of header, tables, layer CRCs. */
uint64_t pkg_checksum(const struct pkg *p);
/* File descriptor and file offset of the weight region (for direct I/O). */
int pkg_fd(const struct pkg *p);
uint64_t pkg_weights_offset(const struct pkg *p);
/* Read the whole weight region into dst (g->weights_size bytes) and check
 * every layer's CRC. */
int pkg_read_weights(struct pkg *p, void *dst);
/* Check one layer against bytes already in memory (region base): its CRC,
 * and that its padding up to the next LAYER_ALIGN boundary is zero. */
int pkg_verify_layer(const struct pkg *p, uint32_t layer, const void *region);

/* Weight filler for pkg_write: write tensor t's bytes (t->nbytes, dtype
 * g->wdtype) to dst. 0 or negative error. */
typedef int (*pkg_fill_fn)(void *ctx, const struct graph *g, uint32_t tensor, void *dst);
/* Write a finalized graph and its weights to path (atomically: temp + rename).
 * Computes and stores every layer's CRC. */
int pkg_write(const char *path, struct graph *g, pkg_fill_fn fill, void *ctx);

/* ---- safetensors files (weights, and run's --input/--output) ---- */
struct st_tensor {
	char name[NAME_LEN];
	uint8_t dtype; /* DT_*; DT_NONE for a dtype we do not read */
	uint8_t ndim;
	int64_t dims[MAX_DIMS];
	const void *data; /* into the mapped file (reader) or caller's (writer) */
	uint64_t nbytes;
};
struct st_file;
/* Map and validate a safetensors file (header JSON, offsets, sizes). */
int st_open(const char *path, struct st_file **out);
void st_close(struct st_file *f);
uint32_t st_count(const struct st_file *f);
const struct st_tensor *st_get(const struct st_file *f, uint32_t i);
/* NULL if absent. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);
/* The file's dtype name of t ("F64", "I8", ...: also those without a DT_
 * value); t from st_get/st_find of f. */
const char *st_dtype_str(const struct st_file *f, const struct st_tensor *t);
/* Write tensors to a new safetensors file (atomically). */
int st_write(const char *path, const struct st_tensor *ts, uint32_t n);

/* ---- zoo ---- */
struct zoo_info {
	const char *name;
	const char *desc;
	uint64_t params; /* exact, for the paper's models; 0 for small ones */
};
/* The list of zoo models, NULL-terminated. */
const struct zoo_info *zoo_list(void);
/* Build a model's graph (no weights). */
int zoo_build(const char *name, enum dtype wdtype, struct graph **out);

/* ---- parameterised architectures (arch.c): the zoo's and imported ones */
enum arch_family { AF_BERT, AF_ROBERTA, AF_DISTILBERT, AF_GPT2, AF_VIT };
enum arch_act { ACT_GELU, ACT_GELU_TANH, ACT_RELU };
enum arch_head {
	HEAD_BASE,	/* last_hidden_state (+ pooler_output with pooler) */
	HEAD_SEQ_CLS,	/* *ForSequenceClassification: logits [N,labels] */
	HEAD_TOKEN_CLS, /* *ForTokenClassification: logits [N,S,labels] */
	HEAD_LM,	/* GPT2LMHeadModel: logits [N,S,vocab] */
	HEAD_IMAGE_CLS, /* ViTForImageClassification: logits [N,labels] */
};
struct arch_cfg {
	enum arch_family family;
	int layers;
	int64_t hidden, heads, intermediate;
	int64_t vocab, max_positions, type_vocab; /* text models */
	float layer_norm_eps;
	enum arch_act hidden_act;
	int64_t pad_token_id;			  /* RoBERTa's position ids */
	int64_t image_size, patch_size, channels; /* ViT */
	bool qkv_bias;				  /* ViT: query/key/value biases */
	enum arch_head head;
	int64_t num_labels; /* classification heads */
	bool pooler;	    /* HEAD_BASE of BERT/RoBERTa/ViT: pooler_output */
	bool tied_lm_head;  /* HEAD_LM: the head reads wte.weight */
	/* Prefix of the base model's module paths ("bert.", "" ...); the heads
	 * are at the top level. Layer and tensor names carry it. */
	const char *prefix;
	int64_t max_seq, def_seq; /* text models: bounds of DIM_SEQ */
};
/* "bert", "roberta", "distilbert", "gpt2", "vit". */
const char *arch_family_name(enum arch_family f);
/* Build the graph of c into g (created by the caller with the model's
 * name, arch and dtype; not finalized). Any thread. */
void arch_build(struct graph *g, const struct arch_cfg *c);

/* ---- importers (hf.c; import_onnx*.c) */
struct weight_source;
/*
 * A Hugging Face checkpoint directory (config.json and model.safetensors,
 * or model.safetensors.index.json and its shards) as a finalized graph of
 * weight dtype dt (named `name`) and the source of its weights, checked:
 * every weight is there with the shape the config gives. Any thread.
 * 0, or DPRT_EUNSUP / DPRT_EWEIGHTS / -errno with one message naming the
 * config key or tensor and the file.
 */
int import_hf(const char *dir, const char *name, enum dtype dt, struct graph **g,
	      struct weight_source **ws);
/*
 * Import the ONNX model at path (opsets 14-18 of the default domain) as a
 * finalized graph of weight dtype dt (F32/F16/BF16), and a source of its
 * weights for pkg_write(wsrc_fill). Any thread. 0, or DPRT_EUNSUP (an op or
 * pattern dprt does not run, an opset out of range, a build without
 * protobuf-c: import_onnx_none.c), DPRT_EWEIGHTS / -errno with err_set
 * naming the file.
 */
int import_onnx(const char *path, enum dtype dt, struct graph **g, struct weight_source **ws);

/* Where weights come from when writing a zoo package. */
struct weight_source;
/* Seeded random weights, deterministic for (model, seed). */
struct weight_source *wsrc_random(uint64_t seed);
/* A safetensors file whose tensors are named as the PyTorch state dict. */
int wsrc_safetensors(const char *path, struct weight_source **out);
/* Weights from an importer's own fill function (see wsrc.c). */
struct weight_source *wsrc_custom(pkg_fill_fn fill, void *ctx, void (*free_ctx)(void *ctx));
/* Several safetensors files (a sharded checkpoint) searched in order;
 * `what` names them in messages (the index file). */
int wsrc_safetensors_multi(const char *const *paths, uint32_t n, const char *what,
			   struct weight_source **out);
/* Whether tensor `name` (a plain state-dict name, no recipe) is in the
 * files of ws, exactly so named. */
bool wsrc_has(const struct weight_source *ws, const char *name);
/* Check that every weight of g is found, with its shape, without reading
 * it. 0 or DPRT_EWEIGHTS naming the tensor and the file. */
int wsrc_check(struct weight_source *ws, const struct graph *g);
void wsrc_destroy(struct weight_source *ws);
/* pkg_fill_fn for a weight_source (ctx = the source). */
int wsrc_fill(void *ctx, const struct graph *g, uint32_t tensor, void *dst);

#endif
