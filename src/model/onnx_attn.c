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
 * Scores may be scaled on either side of the MatMul (SDPA exports scale q
 * and k by d^-1/4 each), k may come as Transpose(Reshape) [0,2,3,1] or
 * twice transposed, q, k and v may be one linear split in three (GPT-2),
 * the probabilities may be guarded by Where(IsNaN(p), 0, p) and the
 * context reshaped once more before its transpose. Mask terms are added
 * (Add) or selected (Where against a large negative constant) on the
 * scores; whatever subgraph builds them, they are evaluated on a probe
 * mask (onnx_probe.c) and must mean padding from an INT64 [N, S] input,
 * causal, or both: what ATTENTION's mask input and causal flag do.
 */
#include "onnx_imp.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TERMS 4

struct attn {
	const char *lin[3];	     /* q, k, v linear outputs (or Split outputs) */
	const char *term[MAX_TERMS]; /* mask terms on the scores */
	int kind[MAX_TERMS];	     /* TERM_* */
	int n_terms;
	double scale;  /* scores are divided by it */
	int64_t heads; /* from q's reshape, or 0 */
};

enum { TERM_ADD, TERM_KEEP_TRUE, TERM_KEEP_FALSE };

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

/* Strip Mul/Div by scalar constants off name, multiplying *mul. */
static const char *peel(struct ox *x, const char *name, double *mul)
{
	int steps;

	for (steps = 0; steps < 4; steps++) {
		const onode *m = ox_prod(x, name, "Mul"), *d = ox_prod(x, name, "Div");
		double c;

		if (m && !ox_scalar(x, in_name(m, 1), &c) && c > 0) {
			*mul *= c;
			name = in_name(m, 0);
		} else if (m && !ox_scalar(x, in_name(m, 0), &c) && c > 0) {
			*mul *= c;
			name = in_name(m, 1);
		} else if (d && !ox_scalar(x, in_name(d, 1), &c) && c > 0) {
			*mul /= c;
			name = in_name(d, 0);
		} else {
			return name;
		}
	}
	return name;
}

/* Transpose(Reshape(v), perm 0,2,1,3): v's name (and the reshape), or NULL. */
static const char *split_heads(struct ox *x, const char *name, const onode **rs)
{
	const onode *t = ox_prod(x, name, "Transpose");

	if (!t || !perm_is(t, 0, 2, 1, 3) || !(*rs = ox_prod(x, in_name(t, 0), "Reshape")))
		return NULL;
	return in_name(*rs, 0);
}

static const char *split_heads_kt(struct ox *x, const char *name, double *mul)
{
	const onode *t = ox_prod(x, name, "Transpose"), *rs;

	if (!t)
		return NULL;
	if (perm_is(t, 0, 1, 3, 2))
		return split_heads(x, peel(x, in_name(t, 0), mul), &rs);
	if (!perm_is(t, 0, 2, 3, 1) || !(rs = ox_prod(x, in_name(t, 0), "Reshape")))
		return NULL;
	return in_name(rs, 0);
}

/* Scores value: MatMul(q, kt), each side and the product scaled by
 * constants. */
static int match_scores(struct ox *x, const char *name, struct attn *a)
{
	const onode *qk, *rs;
	double mul = 1;
	struct cval *sh;

	qk = ox_prod(x, peel(x, name, &mul), "MatMul");
	if (!qk || !(a->lin[0] = split_heads(x, peel(x, in_name(qk, 0), &mul), &rs)) ||
	    !(a->lin[1] = split_heads_kt(x, peel(x, in_name(qk, 1), &mul), &mul)))
		return 1;
	a->scale = 1 / mul;
	sh = ox_const(x, in_name(rs, 1));
	a->heads = sh && sh->is_int && sh->n == 4 && sh->i[2] > 0 ? sh->i[2] : 0;
	return 0;
}

/* A scalar constant no larger than -1e4 (a masked score). */
static bool is_masked_value(struct ox *x, const char *name)
{
	double v;

	return !ox_scalar(x, name, &v) && v <= -1e4;
}

/* Softmax input: scores with mask terms added (Add) or selected (Where). */
static int match_probs(struct ox *x, const char *name, struct attn *a, int depth)
{
	const onode *add = ox_prod(x, name, "Add"), *wh = ox_prod(x, name, "Where");
	int k;

	if (!match_scores(x, name, a))
		return 0;
	if (depth >= MAX_TERMS)
		return 1;
	for (k = 0; add && k < 2; k++) {
		a->term[depth] = in_name(add, (size_t)(1 - k));
		a->kind[depth] = TERM_ADD;
		a->n_terms = depth + 1;
		if (!match_probs(x, in_name(add, (size_t)k), a, depth + 1))
			return 0;
	}
	for (k = 1; wh && k < 3; k++) {
		if (!is_masked_value(x, in_name(wh, (size_t)(3 - k))))
			continue;
		a->term[depth] = in_name(wh, 0);
		a->kind[depth] = k == 1 ? TERM_KEEP_TRUE : TERM_KEEP_FALSE;
		a->n_terms = depth + 1;
		if (!match_probs(x, in_name(wh, (size_t)k), a, depth + 1))
			return 0;
	}
	a->n_terms = depth;
	return 1;
}

/* Where(IsNaN(p), 0, p) (fully masked rows as zeros): p; else name. */
static const char *nan_guard(struct ox *x, const char *name)
{
	const onode *w = ox_prod(x, name, "Where"), *nan;

	if (!w || !(nan = ox_prod(x, in_name(w, 0), "IsNaN")) ||
	    strcmp(in_name(nan, 0), in_name(w, 2)) || !ox_is_scalar(x, in_name(w, 1), 0.0))
		return name;
	return in_name(w, 2);
}

static int match(struct ox *x, const onode *r, struct attn *a)
{
	const onode *t = ox_prod(x, in_name(r, 0), "Transpose"), *pv, *sm, *rs, *mid;

	memset(a, 0, sizeof(*a));
	if (!t || !perm_is(t, 0, 2, 1, 3))
		return 1;
	pv = ox_prod(x, in_name(t, 0), "MatMul");
	mid = ox_prod(x, in_name(t, 0), "Reshape");
	if (!pv && mid) /* [N*heads.., S, d] back to [N, heads, S, d] */
		pv = ox_prod(x, in_name(mid, 0), "MatMul");
	if (!pv || !(sm = ox_prod(x, nan_guard(x, in_name(pv, 0)), "Softmax")) ||
	    (ox_attr_i(sm, "axis", -1) != -1 && ox_attr_i(sm, "axis", -1) != 3) ||
	    !(a->lin[2] = split_heads(x, in_name(pv, 1), &rs)))
		return 1;
	return match_probs(x, in_name(sm, 0), a, 0);
}

/* ------------------------------------------------------------- masks */

#define PB 2 /* probe batch and sequence */
#define PS 5

/* Whether mask term c of kind keeps every score (it masks nothing). */
static bool keeps_all(int kind, const struct cval *c)
{
	int64_t k;

	for (k = 0; k < c->n; k++) {
		double v = c->is_int ? (double)c->i[k] : (double)c->f[k];

		if (kind == TERM_KEEP_TRUE ? v == 0 : v != 0)
			return false;
	}
	return true;
}

/* Which scores (b, i, j) the mask terms keep, for the probe's mask; a term
 * that keeps all of them, whatever its shape, is no mask. */
static int probe_terms(struct ox *x, const struct attn *a, struct probe *p, bool keep[PB][PS][PS])
{
	int t, b, i, j, h;

	memset(keep, 1, sizeof(bool) * PB * PS * PS);
	for (t = 0; t < a->n_terms; t++) {
		struct cval *c = ox_probe(p, a->term[t]);
		int64_t want[4] = {PB, 0, PS, PS}, heads;

		if (!c || c->ndim > 4)
			return -1;
		if (keeps_all(a->kind[t], c)) /* e.g. ViT's all-true mask of its own shape */
			continue;
		for (h = 0; h < c->ndim; h++)
			if (c->dims[h] != 1 && want[h + 4 - c->ndim] &&
			    c->dims[h] != want[h + 4 - c->ndim])
				return -1;
		heads = c->ndim == 4 ? c->dims[1] : c->ndim == 3 ? c->dims[0] : 1;
		for (b = 0; b < PB; b++)
			for (h = 0; h < heads; h++)
				for (i = 0; i < PS; i++)
					for (j = 0; j < PS; j++) {
						double v = ox_probe_at4(c, b, h, i, j);
						bool k = a->kind[t] == TERM_ADD	      ? v == 0 :
							 a->kind[t] == TERM_KEEP_TRUE ? v != 0 :
											v == 0;

						if (a->kind[t] == TERM_ADD && v != 0 && v > -1e4)
							return -1;
						keep[b][i][j] &= k;
					}
	}
	(void)x;
	return 0;
}

/* Whether keep is mask[b][j] (if from an input) and j <= i (if causal). */
static bool keep_is(bool keep[PB][PS][PS], const int64_t *mask, bool use_mask, bool causal)
{
	int b, i, j;

	for (b = 0; b < PB; b++)
		for (i = 0; i < PS; i++)
			for (j = 0; j < PS; j++)
				if (keep[b][i][j] !=
				    ((!use_mask || mask[b * PS + j]) && (!causal || j <= i)))
					return false;
	return true;
}

/*
 * What the mask terms do, found by evaluating them for a probe mask: pad
 * keys of the INT64 input *t (NO_TENSOR: none) and/or causal. 0, or 1 if
 * they do anything else.
 */
static int mask_semantics(struct ox *x, const struct attn *a, uint32_t *t, int64_t *causal)
{
	static const int64_t mask[PB * PS] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
	bool keep[PB][PS][PS];
	struct probe p;
	int ret = 1, c;

	*t = NO_TENSOR;
	*causal = 0;
	if (!a->n_terms)
		return 0;
	if (ox_probe_init(x, &p, PB, PS, mask))
		return -ENOMEM;
	if (probe_terms(x, a, &p, keep))
		goto out;
	for (c = 0; c < 2 && ret; c++)
		if (keep_is(keep, mask, p.mask_in != NULL, c)) {
			*causal = c;
			*t = p.mask_in ? p.mask_t : NO_TENSOR;
			ret = 0;
		}
out:
	ox_probe_fini(&p);
	return ret;
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

/* The three projections: separate linears (weights [K, H] each), or one
 * linear split in three (GPT-2's c_attn). w [3H, K] and b [3H] or NULL. */
struct qkv {
	const char *xin, *wname;
	float *w, *b;
	int64_t h, k;
};

static int qkv_separate(struct ox *x, const struct attn *a, struct qkv *q)
{
	struct cval *w[3], *b[3];
	const char *xin[3];
	const onode *mm[3];
	int i;

	for (i = 0; i < 3; i++)
		if (ox_match_linear(x, a->lin[i], &xin[i], &w[i], &b[i], &mm[i]))
			return 1;
	q->h = w[0]->dims[1];
	q->k = w[0]->dims[0];
	for (i = 1; i < 3; i++)
		if (strcmp(xin[i], xin[0]) || w[i]->dims[0] != q->k || w[i]->dims[1] != q->h ||
		    !b[i] != !b[0])
			return 1;
	q->xin = xin[0];
	q->wname = in_name(mm[0], 1);
	if (concat_qkv(x, w, b, q->h, q->k, &q->w, &q->b))
		return -ENOMEM;
	if (!b[0]) {
		free(q->b);
		q->b = NULL;
	}
	return 0;
}

/* Split(y, axis -1, three equal parts) with q, k, v its outputs 0, 1, 2. */
static const onode *qkv_split(struct ox *x, const struct attn *a)
{
	struct oval *v = ox_val(x, a->lin[0]);
	const onode *sp = v ? v->prod : NULL;
	struct cval *sz;
	int i;

	if (!sp || strcmp(sp->op_type, "Split") || sp->n_output != 3 ||
	    (ox_attr_i(sp, "axis", 0) != 2 && ox_attr_i(sp, "axis", 0) != -1))
		return NULL;
	for (i = 0; i < 3; i++)
		if (strcmp(sp->output[i], a->lin[i]))
			return NULL;
	sz = sp->n_input > 1 && *sp->input[1] ? ox_const(x, sp->input[1]) : NULL;
	if (sp->n_input > 1 && *sp->input[1] &&
	    (!sz || !sz->is_int || sz->n != 3 || sz->i[0] != sz->i[1] || sz->i[1] != sz->i[2]))
		return NULL;
	return sp;
}

static int qkv_fused(struct ox *x, const struct attn *a, struct qkv *q)
{
	const onode *sp = qkv_split(x, a);
	int64_t m;

	if (!sp ||
	    ox_match_any_linear(x, sp->input[0], &q->xin, &q->wname, &q->w, &m, &q->k, &q->b))
		return 1;
	q->h = m / 3;
	if (m % 3) {
		free(q->w);
		free(q->b);
		return 1;
	}
	return 0;
}

/*
 * Lower the self-attention ending at Reshape r: 0 and *out, 1 if r does not
 * end one, else an error.
 */
int ox_try_attention(struct ox *x, const onode *r, uint32_t *out)
{
	struct qkv q;
	struct attn a;
	char lname[NAME_LEN];
	int64_t ia[2] = {0, 0};
	uint32_t in[2] = {NO_TENSOR, NO_TENSOR}, t;
	int ret;

	if (match(x, r, &a))
		return 1;
	memset(&q, 0, sizeof(q));
	ret = qkv_separate(x, &a, &q);
	if (ret > 0)
		ret = qkv_fused(x, &a, &q);
	if (ret)
		return ret;
	ret = check_heads(x, r, &a, q.h);
	if (!ret)
		ret = ox_lower(x, q.xin, &t);
	if (!ret && (ret = mask_semantics(x, &a, &in[1], &ia[1])) > 0)
		ret = ox_bad(x, r,
			     "the attention mask is neither padding from an INT64 [N, S] "
			     "input nor causal (evaluated on a probe mask)");
	if (ret) {
		free(q.w);
		free(q.b);
		return ret;
	}
	qkv_name(lname, q.wname);
	ret = ox_emit_linear(x, lname, lname, t, q.w, 3 * q.h, q.k, q.b, &in[0]);
	if (ret)
		return ret;
	ia[0] = a.heads;
	*out = graph_node(x->g, OP_ATTENTION, in, in[1] != NO_TENSOR ? 2 : 1, ia, 2, NULL, 0);
	return 0;
}
