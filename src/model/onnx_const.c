/* SPDX-License-Identifier: MIT */
/*
 * ONNX constants: initializers and Constant nodes decoded to FP32 or INT64
 * (external data read relative to the model's directory, bounds-checked),
 * and folding of the shape-only ops whose inputs are all constant.
 */
#include "onnx_imp.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	ET_FLOAT = 1,
	ET_UINT8 = 2,
	ET_INT8 = 3,
	ET_INT32 = 6,
	ET_INT64 = 7,
	ET_BOOL = 9,
	ET_FLOAT16 = 10,
	ET_DOUBLE = 11,
	ET_BFLOAT16 = 16
};

void cval_free(struct cval *c)
{
	if (!c)
		return;
	free(c->f);
	free(c->i);
	free(c);
}

static struct cval *cval_new(bool is_int, int ndim, const int64_t *dims)
{
	struct cval *c = calloc(1, sizeof(*c));
	int d;

	if (!c || ndim > MAX_DIMS)
		goto fail;
	c->is_int = is_int;
	c->ndim = (uint8_t)ndim;
	c->n = 1;
	for (d = 0; d < ndim; d++) {
		if (dims[d] < 0 || (dims[d] && c->n > (INT64_C(1) << 40) / dims[d]))
			goto fail;
		c->dims[d] = dims[d];
		c->n *= dims[d];
	}
	if (is_int)
		c->i = malloc(sizeof(int64_t) * (size_t)(c->n + 1));
	else
		c->f = malloc(sizeof(float) * (size_t)(c->n + 1));
	if (c->i || c->f)
		return c;
fail:
	cval_free(c);
	return NULL;
}

static double cv_get(const struct cval *c, int64_t k)
{
	return c->is_int ? (double)c->i[k] : (double)c->f[k];
}

static void cv_set(struct cval *c, int64_t k, double v)
{
	if (c->is_int) /* saturating: INT64_MAX (Slice's "to the end") stays */
		c->i[k] = v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v;
	else
		c->f[k] = (float)v;
}

static size_t elem_size(int32_t et)
{
	switch (et) {
	case ET_FLOAT:
	case ET_INT32:
		return 4;
	case ET_INT64:
	case ET_DOUBLE:
		return 8;
	case ET_FLOAT16:
	case ET_BFLOAT16:
		return 2;
	case ET_UINT8:
	case ET_INT8:
	case ET_BOOL:
		return 1;
	default:
		return 0;
	}
}

/* Element k of little-endian raw data of type et. */
static double raw_at(const uint8_t *p, int32_t et, int64_t k)
{
	int64_t l;
	int32_t i;
	uint16_t h;
	double d;
	float f;

	switch (et) {
	case ET_FLOAT:
		memcpy(&f, p + 4 * k, 4);
		return f;
	case ET_DOUBLE:
		memcpy(&d, p + 8 * k, 8);
		return d;
	case ET_INT64:
		memcpy(&l, p + 8 * k, 8);
		return (double)l;
	case ET_INT32:
		memcpy(&i, p + 4 * k, 4);
		return i;
	case ET_FLOAT16:
		memcpy(&h, p + 2 * k, 2);
		return f16_to_f32(h);
	case ET_BFLOAT16:
		memcpy(&h, p + 2 * k, 2);
		return bf16_to_f32(h);
	case ET_INT8:
		return (int8_t)p[k];
	default:
		return p[k];
	}
}

/* Read an external tensor's bytes: location/offset/length (see onnx.proto),
 * the file relative to the model's directory. */
static int read_external(struct ox *x, const Onnx__TensorProto *t, uint64_t want, uint8_t **out)
{
	const char *loc = NULL;
	uint64_t off = 0, len = want;
	char path[8192];
	struct stat st;
	size_t i;
	int fd, ret = 0;

	for (i = 0; i < t->n_external_data; i++) {
		const Onnx__StringStringEntryProto *e = t->external_data[i];

		if (!e->key || !e->value)
			continue;
		if (!strcmp(e->key, "location"))
			loc = e->value;
		else if (!strcmp(e->key, "offset"))
			off = strtoull(e->value, NULL, 10);
		else if (!strcmp(e->key, "length"))
			len = strtoull(e->value, NULL, 10);
	}
	if (!loc || loc[0] == '/' || strstr(loc, ".."))
		return err_set(DPRT_EWEIGHTS,
			       "ONNX import: %s: tensor '%s': bad external "
			       "data location '%s'",
			       x->path, t->name, loc ? loc : "");
	snprintf(path, sizeof(path), "%s/%s", x->dir, loc);
	if (len != want)
		return err_set(DPRT_EWEIGHTS,
			       "ONNX import: %s: tensor '%s': external data "
			       "length %llu, expected %llu",
			       x->path, t->name, (unsigned long long)len, (unsigned long long)want);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(DPRT_EWEIGHTS, "ONNX import: %s: tensor '%s': %s: %s", x->path,
			       t->name, path, strerror(errno));
	if (fstat(fd, &st) || off > (uint64_t)st.st_size || len > (uint64_t)st.st_size - off) {
		ret = err_set(DPRT_EWEIGHTS,
			      "ONNX import: %s: tensor '%s': external data "
			      "[%llu, +%llu) is past the end of %s (truncated?)",
			      x->path, t->name, (unsigned long long)off, (unsigned long long)len,
			      path);
		goto out_close;
	}
	*out = malloc(len + 1);
	if (!*out) {
		ret = err_set(-ENOMEM, "ONNX import: %s: out of memory", x->path);
		goto out_close;
	}
	if (pread(fd, *out, len, (off_t)off) != (ssize_t)len) {
		free(*out);
		*out = NULL;
		ret = err_set(DPRT_EWEIGHTS, "ONNX import: %s: tensor '%s': cannot read %s",
			      x->path, t->name, path);
	}
out_close:
	close(fd);
	return ret;
}

/* Element k of t's typed fields (float_data, int64_data, ...). */
static int typed_at(const Onnx__TensorProto *t, int64_t k, double *v)
{
	size_t i = (size_t)k;

	if (t->n_float_data > i)
		*v = t->float_data[i];
	else if (t->n_int64_data > i)
		*v = (double)t->int64_data[i];
	else if (t->n_double_data > i)
		*v = t->double_data[i];
	else if (t->n_int32_data > i)
		*v = t->data_type == ET_FLOAT16	 ? f16_to_f32((uint16_t)t->int32_data[i]) :
		     t->data_type == ET_BFLOAT16 ? bf16_to_f32((uint16_t)t->int32_data[i]) :
						   t->int32_data[i];
	else
		return -1;
	return 0;
}

static int fill_cval(struct ox *x, const Onnx__TensorProto *t, struct cval *c, size_t es)
{
	uint64_t want = (uint64_t)c->n * es;
	const uint8_t *raw = NULL;
	uint8_t *ext = NULL;
	int64_t k;
	int ret;

	if (t->has_data_location &&
	    t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
		ret = read_external(x, t, want, &ext);
		if (ret)
			return ret;
		raw = ext;
	} else if (t->has_raw_data) {
		if (t->raw_data.len != want)
			return err_set(DPRT_EWEIGHTS,
				       "ONNX import: %s: tensor '%s' has %zu bytes "
				       "of data, expected %llu",
				       x->path, t->name, t->raw_data.len, (unsigned long long)want);
		raw = t->raw_data.data;
	}
	for (k = 0; k < c->n; k++) {
		double v;

		if (raw)
			v = raw_at(raw, t->data_type, k);
		else if (typed_at(t, k, &v)) {
			free(ext);
			return err_set(DPRT_EWEIGHTS,
				       "ONNX import: %s: tensor '%s' has too "
				       "little data",
				       x->path, t->name);
		}
		cv_set(c, k, v);
	}
	free(ext);
	return 0;
}

/* Decode tensor t (an initializer or an attribute's value). */
int ox_tensor_const(struct ox *x, const Onnx__TensorProto *t, struct cval **out)
{
	size_t es = elem_size(t->data_type);
	bool is_int;
	struct cval *c;
	int ret;

	*out = NULL;
	if (!es || t->n_dims > MAX_DIMS)
		return err_set(DPRT_EUNSUP,
			       "ONNX import: %s: tensor '%s' has data type %d or "
			       "rank %zu, not supported",
			       x->path, t->name ? t->name : "", t->data_type, t->n_dims);
	is_int = t->data_type != ET_FLOAT && t->data_type != ET_DOUBLE &&
		 t->data_type != ET_FLOAT16 && t->data_type != ET_BFLOAT16;
	c = cval_new(is_int, (int)t->n_dims, t->dims);
	if (!c)
		return err_set(-ENOMEM, "ONNX import: %s: tensor '%s': bad dims or out of memory",
			       x->path, t->name ? t->name : "");
	ret = fill_cval(x, t, c, es);
	if (ret) {
		cval_free(c);
		return ret;
	}
	*out = c;
	return 0;
}

/* ------------------------------------------------------------- folding */

/* Constant input k of n, or NULL. */
/* Input k of n as folded (NULL: absent or not constant). */
#define cin(x, n, k) ((void)(x), (size_t)(k) < (n)->n_input ? in[k] : NULL)

static struct cval *fold_constant(struct ox *x, const onode *n)
{
	const Onnx__AttributeProto *a = ox_attr(n, "value");
	struct cval *c = NULL;
	int64_t one = 1;
	size_t k;

	if (a && a->t) {
		ox_tensor_const(x, a->t, &c);
		return c;
	}
	if ((a = ox_attr(n, "value_float")) && (c = cval_new(false, 0, NULL)))
		c->f[0] = a->f;
	else if ((a = ox_attr(n, "value_int")) && (c = cval_new(true, 0, NULL)))
		c->i[0] = a->i;
	else if ((a = ox_attr(n, "value_ints")) && (one = (int64_t)a->n_ints, 1) &&
		 (c = cval_new(true, 1, &one)))
		for (k = 0; k < a->n_ints; k++)
			c->i[k] = a->ints[k];
	return c;
}

static struct cval *cv_copy(const struct cval *s, bool is_int, int ndim, const int64_t *dims)
{
	struct cval *c = cval_new(is_int, ndim, dims);
	int64_t k;

	if (!c || c->n != s->n) {
		cval_free(c);
		return NULL;
	}
	for (k = 0; k < c->n; k++)
		cv_set(c, k, cv_get(s, k));
	return c;
}

/* Reshape's target: 0 copies the input's dim, one -1 is inferred. */
static struct cval *fold_reshape(const struct cval *s, const struct cval *sh)
{
	int64_t dims[MAX_DIMS], known = 1;
	int d, neg = -1;

	if (!sh->is_int || sh->n > MAX_DIMS)
		return NULL;
	for (d = 0; d < sh->n; d++) {
		dims[d] = sh->i[d] == 0 && d < s->ndim ? s->dims[d] : sh->i[d];
		if (dims[d] == -1)
			neg = d;
		else
			known *= dims[d];
	}
	if (neg >= 0)
		dims[neg] = known ? s->n / known : 0;
	return cv_copy(s, s->is_int, (int)sh->n, dims);
}

/* Unsqueeze/Squeeze axes: attribute (opset < 13) or input 1. */
static int axes_of(struct ox *x, const onode *n, int64_t *ax, int max, struct cval *const *in)
{
	const Onnx__AttributeProto *a = ox_attr(n, "axes");
	struct cval *c = cin(x, n, 1);
	int k, cnt = 0;

	if (a)
		for (k = 0; k < (int)a->n_ints && cnt < max; k++)
			ax[cnt++] = a->ints[k];
	else if (c && c->is_int)
		for (k = 0; k < c->n && cnt < max; k++)
			ax[cnt++] = c->i[k];
	return cnt;
}

static struct cval *fold_unsqueeze(struct ox *x, const onode *n, const struct cval *s, bool un,
				   struct cval *const *in)
{
	int64_t ax[MAX_DIMS], dims[MAX_DIMS];
	int na = axes_of(x, n, ax, MAX_DIMS, in), nd = un ? s->ndim + na : 0, d, k, src = 0;

	if (nd > MAX_DIMS)
		return NULL;
	if (!un) {
		for (d = 0; d < s->ndim; d++) {
			bool drop = false;

			for (k = 0; k < na; k++)
				drop |= ax[k] == d || ax[k] + s->ndim == d;
			if (!drop && (na || s->dims[d] != 1))
				dims[nd++] = s->dims[d];
		}
		return cv_copy(s, s->is_int, nd, dims);
	}
	for (d = 0; d < nd; d++) {
		bool ins = false;

		for (k = 0; k < na; k++)
			ins |= ax[k] == d || ax[k] + nd == d;
		dims[d] = ins ? 1 : s->dims[src++];
	}
	return cv_copy(s, s->is_int, nd, dims);
}

/* Concat of constants along axis (1-D: the usual shape vectors). */
static struct cval *fold_concat(struct ox *x, const onode *n, struct cval *const *in)
{
	int64_t total = 0, o = 0, k;
	struct cval *c, *p;
	bool is_int = true;
	size_t i;

	for (i = 0; i < n->n_input; i++) {
		p = cin(x, n, i);
		if (!p || p->ndim != 1)
			return NULL;
		total += p->n;
		is_int &= p->is_int;
	}
	c = cval_new(is_int, 1, &total);
	for (i = 0; c && i < n->n_input; i++) {
		p = cin(x, n, i);
		for (k = 0; k < p->n; k++)
			cv_set(c, o++, cv_get(p, k));
	}
	return c;
}

/* Gather along axis 0 of a constant (shape vectors and small tables). */
static struct cval *fold_gather(struct ox *x, const onode *n, const struct cval *s,
				struct cval *const *in)
{
	struct cval *ix = cin(x, n, 1), *c;
	int64_t dims[MAX_DIMS], row = 1, k, j;
	int d, nd = 0;

	if (!ix || !ix->is_int || ox_attr_i(n, "axis", 0) != 0 || !s->ndim ||
	    ix->ndim + s->ndim - 1 > MAX_DIMS)
		return NULL;
	for (d = 0; d < ix->ndim; d++)
		dims[nd++] = ix->dims[d];
	for (d = 1; d < s->ndim; d++) {
		dims[nd++] = s->dims[d];
		row *= s->dims[d];
	}
	c = cval_new(s->is_int, nd, dims);
	for (k = 0; c && k < ix->n; k++) {
		int64_t r = ix->i[k] < 0 ? ix->i[k] + s->dims[0] : ix->i[k];

		if (r < 0 || r >= s->dims[0]) {
			cval_free(c);
			return NULL;
		}
		for (j = 0; j < row; j++)
			cv_set(c, k * row + j, cv_get(s, r * row + j));
	}
	return c;
}

static double binop(const char *op, double a, double b)
{
	if (!strcmp(op, "Add"))
		return a + b;
	if (!strcmp(op, "Sub"))
		return a - b;
	if (!strcmp(op, "Mul"))
		return a * b;
	if (!strcmp(op, "Div"))
		return b != 0 ? a / b : NAN;
	if (!strcmp(op, "Pow"))
		return pow(a, b);
	if (!strcmp(op, "And"))
		return a != 0 && b != 0;
	if (!strcmp(op, "Or"))
		return a != 0 || b != 0;
	if (!strcmp(op, "Greater"))
		return a > b;
	if (!strcmp(op, "GreaterOrEqual"))
		return a >= b;
	if (!strcmp(op, "Less"))
		return a < b;
	if (!strcmp(op, "LessOrEqual"))
		return a <= b;
	if (!strcmp(op, "Max"))
		return fmax(a, b);
	if (!strcmp(op, "Min"))
		return fmin(a, b);
	return a == b; /* Equal */
}

static bool is_compare(const char *op)
{
	static const char *const cmp[] = {"Equal",	    "And",  "Or",	  "Greater",
					  "GreaterOrEqual", "Less", "LessOrEqual"};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cmp); i++)
		if (!strcmp(op, cmp[i]))
			return true;
	return false;
}

/* Element-wise binary op with numpy broadcasting. */
static struct cval *fold_binary(const onode *n, const struct cval *a, const struct cval *b)
{
	int64_t dims[MAX_DIMS], k;
	int nd = MAX(a->ndim, b->ndim), d;
	bool is_int = is_compare(n->op_type) || (a->is_int && b->is_int);
	struct cval *c;

	for (d = 0; d < nd; d++) {
		int64_t da = d - (nd - a->ndim) >= 0 ? a->dims[d - (nd - a->ndim)] : 1;
		int64_t db = d - (nd - b->ndim) >= 0 ? b->dims[d - (nd - b->ndim)] : 1;

		if (da != db && da != 1 && db != 1)
			return NULL;
		dims[d] = MAX(da, db);
	}
	c = cval_new(is_int, nd, dims);
	for (k = 0; c && k < c->n; k++) {
		int64_t r = k, ia = 0, ib = 0, sa = 1, sb = 1;

		for (d = nd - 1; d >= 0; d--) {
			int64_t idx = r % dims[d], ad = d - (nd - a->ndim), bd = d - (nd - b->ndim);

			r /= dims[d];
			if (ad >= 0) {
				ia += (a->dims[ad] == 1 ? 0 : idx) * sa;
				sa *= a->dims[ad];
			}
			if (bd >= 0) {
				ib += (b->dims[bd] == 1 ? 0 : idx) * sb;
				sb *= b->dims[bd];
			}
		}
		cv_set(c, k, binop(n->op_type, cv_get(a, ia), cv_get(b, ib)));
	}
	return c;
}

static struct cval *fold_misc(struct ox *x, const onode *n, const struct cval *s)
{
	const char *op = n->op_type;
	struct cval *c;
	int64_t k;

	if (!strcmp(op, "Shape")) {
		int64_t nd = s->ndim;

		c = cval_new(true, 1, &nd);
		for (k = 0; c && k < nd; k++)
			c->i[k] = s->dims[k];
		return c;
	}
	if (!strcmp(op, "ConstantOfShape")) {
		const Onnx__AttributeProto *a = ox_attr(n, "value");
		struct cval *v = NULL;

		if (!s->is_int || s->n > MAX_DIMS)
			return NULL;
		if (a && a->t && ox_tensor_const(x, a->t, &v))
			return NULL;
		c = cval_new(v ? v->is_int : false, (int)s->n, s->i);
		for (k = 0; c && k < c->n; k++)
			cv_set(c, k, v ? cv_get(v, 0) : 0.0);
		cval_free(v);
		return c;
	}
	return NULL;
}

static struct cval *fold_range(struct ox *x, const onode *n, struct cval *const *in)
{
	struct cval *a = cin(x, n, 0), *b = cin(x, n, 1), *d = cin(x, n, 2), *c;
	double st, lim, dl;
	int64_t cnt, k;

	if (!a || !b || !d)
		return NULL;
	st = cv_get(a, 0);
	lim = cv_get(b, 0);
	dl = cv_get(d, 0);
	if (dl == 0)
		return NULL;
	cnt = (int64_t)MAX(ceil((lim - st) / dl), 0.0);
	c = cval_new(a->is_int, 1, &cnt);
	for (k = 0; c && k < cnt; k++)
		cv_set(c, k, st + (double)k * dl);
	return c;
}

/* The flat index into a (broadcast to c's dims) of c's element k. */
static int64_t bcast_at(const struct cval *c, const struct cval *a, int64_t k)
{
	int64_t ia = 0, sa = 1;
	int d;

	for (d = c->ndim - 1; d >= 0; d--) {
		int64_t idx = k % c->dims[d], ad = d - (c->ndim - a->ndim);

		k /= c->dims[d];
		if (ad >= 0) {
			ia += (a->dims[ad] == 1 ? 0 : idx) * sa;
			sa *= a->dims[ad];
		}
	}
	return ia;
}

/* The broadcast of the dims of a and b into dims (ndim returned), or -1. */
static int bcast_dims(const struct cval *a, const int64_t *bd, int bn, int64_t *dims)
{
	int nd = MAX(a->ndim, bn), d;

	for (d = 0; d < nd; d++) {
		int64_t da = d - (nd - a->ndim) >= 0 ? a->dims[d - (nd - a->ndim)] : 1;
		int64_t db = d - (nd - bn) >= 0 ? bd[d - (nd - bn)] : 1;

		if (da != db && da != 1 && db != 1)
			return -1;
		dims[d] = MAX(da, db);
	}
	return nd;
}

static struct cval *fold_where(struct ox *x, const onode *n, struct cval *const *in)
{
	struct cval *co = cin(x, n, 0), *a = cin(x, n, 1), *b = cin(x, n, 2), *c;
	int64_t d1[MAX_DIMS], dims[MAX_DIMS], k;
	int nd;

	if (!co || !a || !b || (nd = bcast_dims(co, a->dims, a->ndim, d1)) < 0 ||
	    (nd = bcast_dims(b, d1, nd, dims)) < 0)
		return NULL;
	c = cval_new(a->is_int && b->is_int, nd, dims);
	for (k = 0; c && k < c->n; k++)
		cv_set(c, k,
		       cv_get(co, bcast_at(c, co, k)) != 0 ? cv_get(a, bcast_at(c, a, k)) :
							     cv_get(b, bcast_at(c, b, k)));
	return c;
}

/* Expand(s, shape): s broadcast to shape (numpy rules, either way). */
static struct cval *fold_expand(const struct cval *s, const struct cval *sh)
{
	int64_t dims[MAX_DIMS], k;
	struct cval *c;
	int nd;

	if (!sh || !sh->is_int || sh->n > MAX_DIMS ||
	    (nd = bcast_dims(s, sh->i, (int)sh->n, dims)) < 0)
		return NULL;
	c = cval_new(s->is_int, nd, dims);
	for (k = 0; c && k < c->n; k++)
		cv_set(c, k, cv_get(s, bcast_at(c, s, k)));
	return c;
}

/* Flatten(s, axis) to 2-D. */
static struct cval *fold_flatten(const onode *n, const struct cval *s)
{
	int64_t ax = ox_attr_i(n, "axis", 1), dims[2] = {1, 1};
	int d;

	if (ax < 0)
		ax += s->ndim;
	if (ax < 0 || ax > s->ndim)
		return NULL;
	for (d = 0; d < s->ndim; d++)
		dims[d < ax ? 0 : 1] *= s->dims[d];
	return cv_copy(s, s->is_int, 2, dims);
}

/* Slice(s, starts, ends[, axes[, steps]]) with steps 1. */
static struct cval *fold_slice(struct ox *x, const onode *n, const struct cval *s,
			       struct cval *const *in)
{
	struct cval *st = cin(x, n, 1), *en = cin(x, n, 2), *ax = cin(x, n, 3), *sp = cin(x, n, 4);
	int64_t lo[MAX_DIMS] = {0}, dims[MAX_DIMS], k, j;
	struct cval *c;
	int d;

	if (!st || !en || st->n != en->n || (ax && ax->n != st->n) || !s->ndim)
		return NULL;
	memcpy(dims, s->dims, sizeof(dims));
	for (k = 0; k < st->n; k++) {
		int64_t a = ax ? (int64_t)cv_get(ax, k) : k, b, e;

		a += a < 0 ? s->ndim : 0;
		if (a < 0 || a >= s->ndim || (sp && cv_get(sp, k) != 1))
			return NULL;
		b = (int64_t)fmax(fmin(cv_get(st, k), 9e18), -9e18);
		e = (int64_t)fmax(fmin(cv_get(en, k), 9e18), -9e18);
		b = b < 0 ? MAX(b + s->dims[a], 0) : MIN(b, s->dims[a]);
		e = e < 0 ? MAX(e + s->dims[a], 0) : MIN(e, s->dims[a]);
		lo[a] = b;
		dims[a] = MAX(e - b, 0);
	}
	c = cval_new(s->is_int, s->ndim, dims);
	for (k = 0; c && k < c->n; k++) {
		int64_t r = k, src = 0, stride = 1;

		for (d = s->ndim - 1; d >= 0; d--) {
			j = r % dims[d];
			r /= dims[d];
			src += (j + lo[d]) * stride;
			stride *= s->dims[d];
		}
		cv_set(c, k, cv_get(s, src));
	}
	return c;
}

/* CumSum along a constant axis (no exclusive or reverse). */
static struct cval *fold_cumsum(struct ox *x, const onode *n, const struct cval *s,
				struct cval *const *in)
{
	struct cval *ax = cin(x, n, 1), *c;
	int64_t a, inner = 1, k;
	int d;

	if (!ax || ox_attr_i(n, "exclusive", 0) || ox_attr_i(n, "reverse", 0))
		return NULL;
	a = (int64_t)cv_get(ax, 0);
	a += a < 0 ? s->ndim : 0;
	if (a < 0 || a >= s->ndim)
		return NULL;
	for (d = (int)a + 1; d < s->ndim; d++)
		inner *= s->dims[d];
	c = cv_copy(s, s->is_int, s->ndim, s->dims);
	for (k = 0; c && k < c->n; k++)
		if ((k / inner) % s->dims[a])
			cv_set(c, k, cv_get(c, k) + cv_get(c, k - inner));
	return c;
}

/* Trilu(s[, k]): keep the lower (upper 0) or upper triangle. */
static struct cval *fold_trilu(struct ox *x, const onode *n, const struct cval *s,
			       struct cval *const *in)
{
	struct cval *kk = cin(x, n, 1), *c;
	int64_t off = kk ? (int64_t)cv_get(kk, 0) : 0, k, r, col, rows, cols;
	bool upper = ox_attr_i(n, "upper", 1);

	if (s->ndim < 2 || (n->n_input > 1 && *n->input[1] && !kk))
		return NULL;
	rows = s->dims[s->ndim - 2];
	cols = s->dims[s->ndim - 1];
	c = cv_copy(s, s->is_int, s->ndim, s->dims);
	for (k = 0; c && k < c->n; k++) {
		r = (k / cols) % rows;
		col = k % cols;
		if (upper ? col - r < off : col - r > off)
			cv_set(c, k, 0);
	}
	return c;
}

/* One-input element-wise ops. */
static struct cval *fold_unary(const char *op, const struct cval *s)
{
	bool to_int = !strcmp(op, "Not") || !strcmp(op, "IsNaN");
	struct cval *c = cv_copy(s, s->is_int || to_int, s->ndim, s->dims);
	int64_t k;

	for (k = 0; c && k < c->n; k++) {
		double v = cv_get(s, k);

		if (!strcmp(op, "Not"))
			v = v == 0;
		else if (!strcmp(op, "IsNaN"))
			v = isnan(v);
		else if (!strcmp(op, "Neg"))
			v = -v;
		else if (!strcmp(op, "Sqrt"))
			v = sqrt(v);
		cv_set(c, k, v);
	}
	return c;
}

static bool op_in(const char *op, const char *const *set, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(op, set[i]))
			return true;
	return false;
}

static struct cval *fold_one(struct ox *x, const onode *n, const struct cval *s,
			     struct cval *const *in)
{
	static const char *const un[] = {"Not", "IsNaN", "Neg", "Sqrt"};
	const char *op = n->op_type;

	if (op_in(op, un, ARRAY_SIZE(un)))
		return fold_unary(op, s);
	if (!strcmp(op, "Expand"))
		return fold_expand(s, cin(x, n, 1));
	if (!strcmp(op, "Flatten"))
		return fold_flatten(n, s);
	if (!strcmp(op, "Slice"))
		return fold_slice(x, n, s, in);
	if (!strcmp(op, "CumSum"))
		return fold_cumsum(x, n, s, in);
	if (!strcmp(op, "Trilu"))
		return fold_trilu(x, n, s, in);
	return fold_misc(x, n, s);
}

/*
 * Fold node n given its inputs' values in[] (NULL where not known), or
 * NULL. in has n->n_input entries. The result is new (cval_free).
 */
struct cval *ox_fold(struct ox *x, const onode *n, struct cval *const *in)
{
	static const char *const bin[] = {
		"Add",	 "Sub",		"Mul", "Div",	  "Pow",
		"Equal", "And",		"Or",  "Greater", "GreaterOrEqual",
		"Less",	 "LessOrEqual", "Max", "Min"};
	const char *op = n->op_type;
	struct cval *s;

	if (!op || n->n_output != 1)
		return NULL;
	if (!strcmp(op, "Constant"))
		return fold_constant(x, n);
	if (!strcmp(op, "Concat"))
		return fold_concat(x, n, in);
	if (!strcmp(op, "Range"))
		return fold_range(x, n, in);
	if (!strcmp(op, "Where"))
		return fold_where(x, n, in);
	if (!(s = cin(x, n, 0)))
		return NULL;
	if (!strcmp(op, "Identity"))
		return cv_copy(s, s->is_int, s->ndim, s->dims);
	if (!strcmp(op, "Cast")) {
		int64_t to = ox_attr_i(n, "to", 1);

		return cv_copy(s, to != 1 && to != 10 && to != 11 && to != 16, s->ndim, s->dims);
	}
	if (!strcmp(op, "Unsqueeze") || !strcmp(op, "Squeeze"))
		return fold_unsqueeze(x, n, s, op[0] == 'U', in);
	if (!strcmp(op, "Reshape"))
		return cin(x, n, 1) ? fold_reshape(s, cin(x, n, 1)) : NULL;
	if (!strcmp(op, "Gather"))
		return fold_gather(x, n, s, in);
	if (op_in(op, bin, ARRAY_SIZE(bin)))
		return cin(x, n, 1) ? fold_binary(n, s, cin(x, n, 1)) : NULL;
	return fold_one(x, n, s, in);
}

/* Fold n if all its inputs are constants. */
static struct cval *fold_node(struct ox *x, const onode *n)
{
	struct cval *in[16] = {0};
	size_t k;

	if (n->n_input > ARRAY_SIZE(in))
		return NULL;
	for (k = 0; k < n->n_input; k++)
		if (*n->input[k] && !(in[k] = ox_const(x, n->input[k])))
			return strcmp(n->op_type, "Constant") ? NULL : ox_fold(x, n, in);
	return ox_fold(x, n, in);
}

/* The constant value called name (memoized), or NULL. Errors decoding an
 * initializer are left in err_msg and give NULL. */
struct cval *ox_const(struct ox *x, const char *name)
{
	struct oval *v = ox_val(x, name);

	if (!v || v->cstate == 2)
		return NULL;
	if (v->cstate == 1)
		return v->c;
	v->cstate = 2;
	if (v->init) {
		if (ox_tensor_const(x, v->init, &v->c))
			return NULL;
	} else if (v->prod && v->prod->n_output == 1 && !(v->prod->domain && *v->prod->domain)) {
		v->c = fold_node(x, v->prod);
	}
	if (v->c)
		v->cstate = 1;
	return v->c;
}

/* *v = the value of the one-element constant name; -1 if it is not one. */
int ox_scalar(struct ox *x, const char *name, double *v)
{
	struct cval *c = ox_const(x, name);

	if (!c || c->n != 1)
		return -1;
	*v = cv_get(c, 0);
	return 0;
}

/* Whether name is a one-element constant equal to v (relative 1e-3). */
bool ox_is_scalar(struct ox *x, const char *name, double v)
{
	double got;

	return !ox_scalar(x, name, &got) && fabs(got - v) <= 1e-3 * fabs(v) + 1e-12;
}
