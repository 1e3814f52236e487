/* SPDX-License-Identifier: MIT */
/*
 * The BERT self-attention subgraph (torch.onnx export of Hugging Face's
 * BertSelfAttention) lowered to one LINEAR with the concatenated q|k|v
 * weight and one ATTENTION:
 *
 *   q = Transpose(Reshape(Linear_q(x)), [0,2,1,3]), v likewise,
 *   k = Transpose(Reshape(Linear_k(x)), [0,2,3,1])  (or [0,2,1,3] then [0,1,3,2]),
 *   p = Softmax(MatMul(q, k) / sqrt(d) [+ mask bias]),
 *   out = Reshape(Transpose(MatMul(p, v), [0,2,1,3]))
 *
 * The mask bias is a chain of Unsqueeze/Cast/Reshape/Expand/Squeeze, a
 * Sub(1, .) and a Mul by a large negative constant from an INT64 graph
 * input: (1 - mask) * -10000 or * the dtype's lowest, which ATTENTION's
 * mask input reproduces.
 */
#include "onnx_imp.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct attn {
	const char *lin[3]; /* q, k, v linear outputs */
	const char *mask;   /* mask bias value, or NULL */
	double scale;	    /* scores are divided by it */
	int64_t heads;	    /* from q's reshape, or 0 */
};

static const char *in_name(const onode *n, size_t k)
{
	return k < n->n_input ? n->input[k] : "";
}

static bool perm_is(const onode *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
	const Onnx__AttributeProto *p = ox_attr(t, "perm");

	return p && p->n_ints == 4 && p->ints[0] == a && p->ints[1] == b && p->ints[2] == c &&
	       p->ints[3] == d;
}

/* Transpose(Reshape(v), perm 0,2,1,3): v's name (and the reshape), or NULL. */
static const char *split_heads(struct ox *x, const char *name, const onode **rs)
{
	const onode *t = ox_prod(x, name, "Transpose");

	if (!t || !perm_is(t, 0, 2, 1, 3) || !(*rs = ox_prod(x, in_name(t, 0), "Reshape")))
		return NULL;
	return in_name(*rs, 0);
}

static const char *split_heads_kt(struct ox *x, const char *name)
{
	const onode *t = ox_prod(x, name, "Transpose"), *rs;

	if (!t)
		return NULL;
	if (perm_is(t, 0, 1, 3, 2))
		return split_heads(x, in_name(t, 0), &rs);
	if (!perm_is(t, 0, 2, 3, 1) || !(rs = ox_prod(x, in_name(t, 0), "Reshape")))
		return NULL;
	return in_name(rs, 0);
}

/* Scores value: Div(MatMul(q, kt), s) or Mul(MatMul, 1/s). */
static int match_scores(struct ox *x, const char *name, struct attn *a)
{
	const onode *d = ox_prod(x, name, "Div"), *m = ox_prod(x, name, "Mul"), *qk, *rs;
	struct cval *sh;
	double c;

	if (d && !ox_scalar(x, in_name(d, 1), &c) && c > 0)
		a->scale = c;
	else if (m && !ox_scalar(x, in_name(m, 1), &c) && c > 0)
		a->scale = 1 / c;
	else
		return 1;
	qk = ox_prod(x, in_name(d ? d : m, 0), "MatMul");
	if (!qk || !(a->lin[0] = split_heads(x, in_name(qk, 0), &rs)) ||
	    !(a->lin[1] = split_heads_kt(x, in_name(qk, 1))))
		return 1;
	sh = ox_const(x, in_name(rs, 1));
	a->heads = sh && sh->is_int && sh->n == 4 && sh->i[2] > 0 ? sh->i[2] : 0;
	return 0;
}

/* Softmax input: scores [+ mask bias] in either order. */
static int match_probs(struct ox *x, const char *name, struct attn *a)
{
	const onode *add = ox_prod(x, name, "Add");
	int k;

	if (!match_scores(x, name, a))
		return 0;
	for (k = 0; add && k < 2; k++)
		if (!match_scores(x, in_name(add, (size_t)k), a)) {
			a->mask = in_name(add, (size_t)(1 - k));
			return 0;
		}
	return 1;
}

static int match(struct ox *x, const onode *r, struct attn *a)
{
	const onode *t = ox_prod(x, in_name(r, 0), "Transpose"), *pv, *sm, *rs;

	memset(a, 0, sizeof(*a));
	if (!t || !perm_is(t, 0, 2, 1, 3) || !(pv = ox_prod(x, in_name(t, 0), "MatMul")) ||
	    !(sm = ox_prod(x, in_name(pv, 0), "Softmax")) || ox_attr_i(sm, "axis", -1) != -1 ||
	    !(a->lin[2] = split_heads(x, in_name(pv, 1), &rs)))
		return 1;
	return match_probs(x, in_name(sm, 0), a);
}

/* Follow the mask bias back to its INT64 input: 0 and *t, or 1. */
static int mask_input(struct ox *x, const char *name, uint32_t *t)
{
	static const char *const pass[] = {"Unsqueeze", "Cast", "Reshape", "Expand", "Squeeze"};
	bool negative = false, one_minus = false;
	int steps;

	for (steps = 0; steps < 32; steps++) {
		struct oval *v = ox_val(x, name);
		const onode *n = v ? v->prod : NULL;
		struct cval *c;
		size_t i;
		double s;

		if (v && !n && v->tensor != NO_TENSOR) {
			*t = v->tensor;
			return negative && one_minus && x->g->tensors[*t].dtype == DT_I64 ? 0 : 1;
		}
		if (!n)
			return 1;
		for (i = 0; i < ARRAY_SIZE(pass) && strcmp(n->op_type, pass[i]); i++)
			;
		if (i < ARRAY_SIZE(pass)) {
			name = in_name(n, 0);
			continue;
		}
		if (strcmp(n->op_type, "Mul") && strcmp(n->op_type, "Sub"))
			return 1;
		c = ox_const(x, in_name(n, 0));
		i = c ? 1 : 0;
		if (!ox_scalar(x, in_name(n, 1 - i), &s) && n->op_type[0] == 'M')
			negative |= s <= -1000;
		if (!ox_scalar(x, in_name(n, 1 - i), &s) && n->op_type[0] == 'S')
			one_minus |= i == 1 && s == 1.0;
		name = in_name(n, i);
	}
	return 1;
}

static void qkv_name(char *dst, const char *wq)
{
	size_t l = strlen(wq);

	if (l > 7 && !strcmp(wq + l - 7, ".weight"))
		l -= 7;
	if (l > 6 && !strncmp(wq + l - 6, ".query", 6))
		snprintf(dst, NAME_LEN, "%.*s.qkv", (int)(l - 6), wq);
	else
		snprintf(dst, NAME_LEN, "%.*s.qkv", (int)MIN(l, NAME_LEN - 5), wq);
}

/* w [3H, K] (rows of q, k, v) and b [3H] from the three matched linears. */
static int concat_qkv(struct ox *x, struct cval *const *w, struct cval *const *b, int64_t h,
		      int64_t k, float **wo, float **bo)
{
	int64_t i, r, c;

	*wo = malloc(sizeof(float) * (size_t)(3 * h * k));
	*bo = calloc((size_t)(3 * h), sizeof(float));
	if (!*wo || !*bo) {
		free(*wo);
		free(*bo);
		return err_set(-ENOMEM, "ONNX import: %s: out of memory", x->path);
	}
	for (i = 0; i < 3; i++) {
		for (r = 0; r < h; r++)
			for (c = 0; c < k; c++)
				(*wo)[(i * h + r) * k + c] = w[i]->f[c * h + r];
		if (b[i])
			memcpy(*bo + i * h, b[i]->f, sizeof(float) * (size_t)h);
	}
	return 0;
}

static int check_heads(struct ox *x, const onode *r, struct attn *a, int64_t h)
{
	double d;

	if (!a->heads)
		a->heads = (int64_t)llround((double)h / (a->scale * a->scale));
	if (a->heads <= 0 || h % a->heads)
		return ox_bad(x, r, "cannot tell the number of attention heads");
	d = (double)(h / a->heads);
	if (fabs(a->scale - sqrt(d)) > 1e-3 * sqrt(d))
		return ox_bad(x, r, "attention scores are not scaled by 1/sqrt(head size)");
	return 0;
}

/*
 * Lower the self-attention ending at Reshape r: 0 and *out, 1 if r does not
 * end one, else an error.
 */
int ox_try_attention(struct ox *x, const onode *r, uint32_t *out)
{
	struct cval *w[3], *b[3];
	const char *xin[3];
	const onode *mm[3];
	struct attn a;
	char lname[NAME_LEN];
	int64_t h, k, ia[2] = {0, 0};
	uint32_t in[2] = {NO_TENSOR, NO_TENSOR}, t;
	float *wf, *bf;
	int i, ret;

	if (match(x, r, &a))
		return 1;
	for (i = 0; i < 3; i++)
		if (ox_match_linear(x, a.lin[i], &xin[i], &w[i], &b[i], &mm[i]))
			return 1;
	h = w[0]->dims[1];
	k = w[0]->dims[0];
	for (i = 1; i < 3; i++)
		if (strcmp(xin[i], xin[0]) || w[i]->dims[0] != k || w[i]->dims[1] != h ||
		    !b[i] != !b[0])
			return 1;
	if (a.mask && mask_input(x, a.mask, &in[1]))
		return ox_bad(x, r,
			      "the attention mask bias does not come from an INT64 input "
			      "as (1 - mask) * large negative");
	ret = check_heads(x, r, &a, h);
	if (ret)
		return ret;
	ret = ox_lower(x, xin[0], &t);
	if (!ret)
		ret = concat_qkv(x, w, b, h, k, &wf, &bf);
	if (ret)
		return ret;
	if (!b[0]) {
		free(bf);
		bf = NULL;
	}
	qkv_name(lname, in_name(mm[0], 1));
	ret = ox_emit_linear(x, lname, lname, t, wf, 3 * h, k, bf, &in[0]);
	if (ret)
		return ret;
	ia[0] = a.heads;
	*out = graph_node(x->g, OP_ATTENTION, in, a.mask ? 2 : 1, ia, 2, NULL, 0);
	return 0;
}
