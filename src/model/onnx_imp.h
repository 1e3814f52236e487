/* SPDX-License-Identifier: MIT */
/*
 * The ONNX importer's private face (src/model/onnx*.c): the parsed model,
 * its values by name, constants and the lowering to dprt's fused IR.
 */
#ifndef DPRT_ONNX_IMP_H
#define DPRT_ONNX_IMP_H

#include "model.h"
#include "onnx.pb-c.h"

typedef Onnx__NodeProto onode;

/* A constant: float (weights, scalars) or int64 (shapes, ids) data. */
struct cval {
	bool is_int;
	uint8_t ndim;
	int64_t dims[MAX_DIMS];
	int64_t n;
	float *f;
	int64_t *i;
};

/* One named value of the ONNX graph. */
struct oval {
	const char *name;
	const onode *prod;	       /* producing node, or NULL */
	const Onnx__TensorProto *init; /* initializer, or NULL */
	uint32_t tensor;	       /* dprt tensor once lowered, or NO_TENSOR */
	uint32_t uses;		       /* nodes that read it, + 1 per graph output */
	uint8_t cstate;		       /* 0 not tried, 1 constant, 2 not constant */
	uint8_t rank;		       /* of a lowered value, 0 if unknown */
	struct cval *c;
};

struct ox {
	const char *path;
	char dir[4096];
	Onnx__ModelProto *m;
	const Onnx__GraphProto *gp;
	struct graph *g;
	struct oval *vals;
	uint32_t n_vals, cap_hash;
	uint32_t *hash; /* open addressing: index + 1, 0 = empty */
	float **wdata;	/* per dprt tensor: a weight's FP32 bytes */
	uint32_t cap_w;
	uint32_t first_ids; /* first INT64 input's tensor, for position ids */
	int depth;
};

/* onnx.c */
struct oval *ox_val(struct ox *x, const char *name);
int ox_unsup(struct ox *x, const onode *n);
int ox_bad(struct ox *x, const onode *n, const char *why);
const Onnx__AttributeProto *ox_attr(const onode *n, const char *name);
int64_t ox_attr_i(const onode *n, const char *name, int64_t def);
float ox_attr_f(const onode *n, const char *name, float def);
/* Store data (FP32, numel of tensor t, taken over) as weight t's bytes. */
int ox_weight_data(struct ox *x, uint32_t t, float *data);
/* A new weight of the open layer with its FP32 data (taken over). */
uint32_t ox_weight(struct ox *x, const char *name, int ndim, const int64_t *dims, float *data);

/* onnx_const.c */
int ox_tensor_const(struct ox *x, const Onnx__TensorProto *t, struct cval **out);
/* The constant value of name, or NULL (not constant, or no such value). */
struct cval *ox_const(struct ox *x, const char *name);
void cval_free(struct cval *c);
/* Fold node n from its inputs' values in[n->n_input] (NULL: unknown): a
 * new value, or NULL if n cannot be folded. */
struct cval *ox_fold(struct ox *x, const onode *n, struct cval *const *in);
/* A float constant with one element equal to v (within rel 1e-3), or -1 if
 * not a scalar constant. */
bool ox_is_scalar(struct ox *x, const char *name, double v);
int ox_scalar(struct ox *x, const char *name, double *v);

/* onnx_lower.c */
/* The dprt tensor of value name, lowering its producers first. */
int ox_lower(struct ox *x, const char *name, uint32_t *out);
/* The producer of value name with op type op and one use, or NULL. */
const onode *ox_prod(struct ox *x, const char *name, const char *op);
/* A linear layer from MatMul(+Add) ending at value name: weights in FP32
 * [M,K] and [M]; 0 if matched, 1 if not. */
int ox_match_linear(struct ox *x, const char *name, const char **in, struct cval **w,
		    struct cval **b, const onode **last);

int ox_match_any_linear(struct ox *x, const char *name, const char **in, const char **wname,
			float **w, int64_t *m, int64_t *k, float **b);
/* A LINEAR layer lname: w [m, k] and b [m] (or NULL) FP32, taken over. */
int ox_emit_linear(struct ox *x, const char *lname, const char *wname, uint32_t in_t, float *w,
		   int64_t m, int64_t k, float *b, uint32_t *out);

/* onnx_attn.c */
/* 0 lowered, 1 not an attention pattern, else an error. */
int ox_try_attention(struct ox *x, const onode *n, uint32_t *out);

/* onnx_probe.c: a subgraph evaluated for a concrete batch, sequence and
 * INT64 [N, S] mask input. */
#define PROBE_MEMO 512
struct probe {
	struct ox *x;
	int64_t n, s;
	const int64_t *mask;
	const char *mask_in; /* the graph input the mask bound, or NULL */
	uint32_t mask_t;
	struct shape *shapes; /* of the graph built so far, or NULL */
	uint32_t n_memo;
	int steps;
	const char *name[PROBE_MEMO];
	struct cval *val[PROBE_MEMO], *own[PROBE_MEMO];
};
int ox_probe_init(struct ox *x, struct probe *p, int64_t n, int64_t s, const int64_t *mask);
void ox_probe_fini(struct probe *p);
struct cval *ox_probe(struct probe *p, const char *name);
double ox_probe_at4(const struct cval *c, int64_t b, int64_t h, int64_t i, int64_t j);

#endif
