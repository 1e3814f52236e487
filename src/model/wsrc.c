/* SPDX-License-Identifier: MIT */
/*
 * Weight sources for pkg_write: seeded random weights, or a safetensors file
 * named as the PyTorch state dict. A model's weight tensor names are recipes
 * over state-dict names:
 *   "a.weight"                      plain
 *   "a.{query,key,value}.weight"    concatenation on dim 0
 *   "a.c_attn.weight^T"             transpose of a 2-D tensor
 *   "bn1#scale", "bn1#shift"        batch norm folded into an affine map
 */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_EPS 1e-5 /* torch.nn.BatchNorm2d's default, torchvision's ResNets */

/* Exactly one of: random (n_files == 0, fill == NULL), safetensors files,
 * or an importer's own fill function (fill != NULL). */
struct weight_source {
	uint64_t seed;
	uint32_t n_files;
	struct st_file **st;
	char **paths;
	uint8_t **used; /* per tensor of st[i]: read by some fill */
	char *path;	/* names the files in messages */
	pkg_fill_fn fill;
	void *fill_ctx;
	void (*fill_free)(void *ctx);
};

/* ---------------------------------------------------------------- random */

/*
 * center + bound * u, u uniform in [-1, 1), two values per rng step. The
 * product is exact in double, so the result does not depend on whether the
 * compiler fuses the multiply-add. The FP16/BF16 fills round these same FP32
 * values, so one seed gives one model whatever the dtype.
 */
static void rand_span(struct rng *r, float *dst, size_t n, float center, float bound)
{
	const double k = (double)bound / 8388608.0, c = center;
	size_t i;

	for (i = 0; i + 1 < n; i += 2) {
		uint64_t x = rng_next(r);

		dst[i] = (float)(c + k * (double)((int32_t)(x >> 32) >> 8));
		dst[i + 1] = (float)(c + k * (double)((int32_t)x >> 8));
	}
	if (i < n)
		dst[i] = (float)(c + k * (double)((int32_t)(rng_next(r) >> 32) >> 8));
}

static double fan_in(const struct tensor *w)
{
	double n = 1;
	int d;

	for (d = 1; d < w->ndim; d++)
		n *= (double)w->dims[d];
	return n;
}

/*
 * The distribution of weight t by its role in its owning node: PyTorch's
 * default bound 1/sqrt(fan_in) for linear and conv (weight and bias),
 * BERT's 0.02 std for embeddings, affine maps near identity for norms.
 * The scales keep activations finite and input-dependent through the 24
 * layers of the large models and the 33 blocks of ResNet-101.
 */
static void rand_law(const struct graph *g, uint32_t t, float *center, float *bound)
{
	const struct node *nd = &g->nodes[g->layers[g->tensors[t].layer].node];
	int k;

	*center = 0;
	*bound = 0.02f;
	for (k = 0; k < nd->n_in && nd->in[k] != t; k++)
		;
	switch (nd->op) {
	case OP_LINEAR:
	case OP_CONV2D:
		*bound = (float)(1 / sqrt(fan_in(&g->tensors[nd->in[1]])));
		break;
	case OP_EMBEDDING:
		*bound = 0.02f * 1.7320508f; /* std 0.02 */
		break;
	case OP_LAYERNORM:
		*center = k == 1 ? 1.0f : 0.0f;
		*bound = 0.1f;
		break;
	case OP_BATCHNORM:
		/* A scale near 2 ahead of a ReLU keeps a deep ResNet's activations
		 * O(1) (near 1 they shrink stage by stage until the shifts
		 * dominate); near 1 ahead of the residual add, so the sum does
		 * not grow with depth. */
		*center = k != 1 ? 0.0f : nd->ia[0] ? 2.0f : 1.0f;
		*bound = 0.1f * (k == 1 ? *center : 1.0f);
		break;
	default:
		break;
	}
}

#define RAND_CHUNK 2048 /* even: chunking keeps the FP32 sequence */

/*
 * f32_to_f16 without branches in FP16's normal range (random mantissas make
 * a rounding branch mispredict half the time); other values go to
 * f32_to_f16. A carry out of the mantissa rounds correctly to the next
 * exponent, or to infinity.
 */
static inline uint16_t to_f16(float f)
{
	uint32_t x, e, h, rest;

	memcpy(&x, &f, 4);
	e = (x >> 23) & 0xff;
	if (e < 113 || e > 142)
		return f32_to_f16(f);
	h = ((x >> 16) & 0x8000) | ((e - 112) << 10) | ((x >> 13) & 0x3ff);
	rest = x & 0x1fff;
	h += (uint32_t)(rest > 0x1000) | ((uint32_t)(rest == 0x1000) & h);
	return (uint16_t)h;
}

/* f32_to_bf16 for finite values, inline. */
static inline uint16_t to_bf16(float f)
{
	uint32_t x;

	memcpy(&x, &f, 4);
	if ((x & 0x7f800000) == 0x7f800000)
		return f32_to_bf16(f);
	return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

static void rand_fill(uint64_t seed, const struct graph *g, uint32_t t, void *dst)
{
	const struct tensor *w = &g->tensors[t];
	uint64_t n = w->nbytes / dtype_size((enum dtype)w->dtype), i, k;
	float buf[RAND_CHUNK], center, bound;
	uint16_t *h = dst;
	struct rng r;

	rand_law(g, t, &center, &bound);
	rng_seed(&r, hash64(HASH64_INIT, w->name, strlen(w->name)) ^ seed);
	if (w->dtype == DT_F32) {
		rand_span(&r, dst, n, center, bound);
		return;
	}
	for (i = 0; i < n; i += RAND_CHUNK) {
		uint64_t m = MIN(n - i, RAND_CHUNK);

		rand_span(&r, buf, m, center, bound);
		if (w->dtype == DT_F16)
			for (k = 0; k < m; k++)
				h[i + k] = to_f16(buf[k]);
		else
			for (k = 0; k < m; k++)
				h[i + k] = to_bf16(buf[k]);
	}
}

/*
 * A source of random weights, deterministic for (seed, tensor name): the
 * bytes of a tensor do not depend on the order of fills. NULL if out of
 * memory. Any thread.
 */
struct weight_source *wsrc_random(uint64_t seed)
{
	struct weight_source *ws = calloc(1, sizeof(*ws));

	if (ws)
		ws->seed = seed;
	return ws;
}

/* ----------------------------------------------------- safetensors reading */

enum src_kind { SK_F32, SK_F16, SK_BF16, SK_F64 };

/* A float tensor of the file, as found for one recipe part. */
struct src {
	const char *data;
	enum src_kind kind;
};

static double src_at(const struct src *s, uint64_t i)
{
	uint16_t h;
	double d;
	float f;

	switch (s->kind) {
	case SK_F32:
		memcpy(&f, s->data + 4 * i, 4);
		return f;
	case SK_F16:
		memcpy(&h, s->data + 2 * i, 2);
		return f16_to_f32(h);
	case SK_BF16:
		memcpy(&h, s->data + 2 * i, 2);
		return bf16_to_f32(h);
	default:
		memcpy(&d, s->data + 8 * i, 8);
		return d;
	}
}

/* Store v as element i of dst (dtype dt; F64 goes through FP32). */
static void dst_put(void *dst, enum dtype dt, uint64_t i, double v)
{
	float f = (float)v;
	uint16_t h;

	if (dt == DT_F32) {
		memcpy((char *)dst + 4 * i, &f, 4);
		return;
	}
	h = dt == DT_F16 ? f32_to_f16(f) : f32_to_bf16(f);
	memcpy((char *)dst + 2 * i, &h, 2);
}

/* dst[doff + i] = src[soff + i] for i < n, converting the dtype. */
static void copy_span(void *dst, enum dtype dt, uint64_t doff, const struct src *s, uint64_t soff,
		      uint64_t n)
{
	static const enum dtype same[] = {
		[SK_F32] = DT_F32, [SK_F16] = DT_F16, [SK_BF16] = DT_BF16, [SK_F64] = DT_NONE};
	size_t es = dtype_size(dt);
	uint64_t i;

	if (same[s->kind] == dt) {
		memcpy((char *)dst + doff * es, s->data + soff * es, n * es);
		return;
	}
	for (i = 0; i < n; i++)
		dst_put(dst, dt, doff + i, src_at(s, soff + i));
}

static void fmt_shape(char *buf, size_t len, int ndim, const int64_t *dims)
{
	size_t o = 0;
	int d;

	o += (size_t)snprintf(buf, len, "[");
	for (d = 0; d < ndim && o < len; d++)
		o += (size_t)snprintf(buf + o, len - o, d ? ", %lld" : "%lld", (long long)dims[d]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

static const char *const prefixes[] = {"",	 "bert.",	"roberta.", "transformer.",
				       "model.", "distilbert.", "vit."};

/* Hugging Face renames old checkpoints' LayerNorm gamma/beta on load. */
static const struct st_tensor *find_renamed(const struct st_file *f, const char *name)
{
	static const char *const from[] = {".weight", ".bias"}, *const to[] = {".gamma", ".beta"};
	size_t len = strlen(name), k, lf;
	char alt[NAME_LEN];

	for (k = 0; k < 2; k++) {
		lf = strlen(from[k]);
		if (len < lf || strcmp(name + len - lf, from[k]) ||
		    len - lf + strlen(to[k]) >= NAME_LEN)
			continue;
		snprintf(alt, sizeof(alt), "%.*s%s", (int)(len - lf), name, to[k]);
		return st_find(f, alt);
	}
	return NULL;
}

/* The state-dict tensor `name` in f, as is or under a known prefix. */
static const struct st_tensor *find_in(const struct st_file *f, const char *name)
{
	const struct st_tensor *s = NULL;
	char full[2 * NAME_LEN];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(prefixes) && !s; i++) {
		snprintf(full, sizeof(full), "%s%s", prefixes[i], name);
		s = st_find(f, full);
		if (!s)
			s = find_renamed(f, full);
	}
	return s;
}

/* The tensor `name` in the first file of ws that has it; *file its index. */
static const struct st_tensor *find_any(const struct weight_source *ws, const char *name,
					uint32_t *file)
{
	const struct st_tensor *s = NULL;
	uint32_t i;

	for (i = 0; i < ws->n_files && !s; i++) {
		s = find_in(ws->st[i], name);
		*file = i;
	}
	return s;
}

/* Whether a file of ws holds a tensor exactly named `name`. Any thread. */
bool wsrc_has(const struct weight_source *ws, const char *name)
{
	uint32_t i;

	for (i = 0; i < ws->n_files; i++)
		if (st_find(ws->st[i], name))
			return true;
	return false;
}

static int src_kind_of(const struct st_file *f, const struct st_tensor *s, enum src_kind *k)
{
	switch (s->dtype) {
	case DT_F32:
		*k = SK_F32;
		return 0;
	case DT_F16:
		*k = SK_F16;
		return 0;
	case DT_BF16:
		*k = SK_BF16;
		return 0;
	default:
		*k = SK_F64;
		return strcmp(st_dtype_str(f, s), "F64") ? -1 : 0;
	}
}

/*
 * Find state-dict tensor `name` of the expected shape for model tensor
 * `what` and mark it used. 0 or DPRT_EWEIGHTS naming file and tensor.
 */
static int lookup(struct weight_source *ws, const char *name, const char *what, int ndim,
		  const int64_t *dims, struct src *out)
{
	char want[128], got[128];
	const struct st_tensor *s;
	struct st_file *f;
	uint32_t i = 0;

	s = find_any(ws, name, &i);
	if (!s)
		return err_set(DPRT_EWEIGHTS, "%s: tensor '%s' not found (needed for %s)", ws->path,
			       name, what);
	f = ws->st[i];
	if (src_kind_of(f, s, &out->kind))
		return err_set(DPRT_EWEIGHTS,
			       "%s: tensor '%s' has dtype %s, not F32, F16, BF16 or F64",
			       ws->paths[i], s->name, st_dtype_str(f, s));
	fmt_shape(want, sizeof(want), ndim, dims);
	fmt_shape(got, sizeof(got), s->ndim, s->dims);
	if (strcmp(want, got))
		return err_set(DPRT_EWEIGHTS, "%s: tensor '%s' has shape %s, expected %s (for %s)",
			       ws->paths[i], s->name, got, want, what);
	out->data = s->data;
	ws->used[i][s - st_get(f, 0)] = 1;
	return 0;
}

static int fill_plain(struct weight_source *ws, const struct tensor *t, void *dst)
{
	uint64_t n = t->nbytes / dtype_size((enum dtype)t->dtype);
	struct src s;
	int ret;

	ret = lookup(ws, t->name, t->name, t->ndim, t->dims, &s);
	if (!ret && dst)
		copy_span(dst, (enum dtype)t->dtype, 0, &s, 0, n);
	return ret;
}

/* "pre{a,b,c}post": pre+a+post, pre+b+post, ... stacked on dim 0. */
static int fill_concat(struct weight_source *ws, const struct tensor *t, void *dst)
{
	const char *open = strchr(t->name, '{'), *close = strchr(t->name, '}');
	const char *part = open + 1;
	uint64_t n = t->nbytes / dtype_size((enum dtype)t->dtype), each;
	int64_t dims[MAX_DIMS];
	int parts = 1, i, ret;
	char name[NAME_LEN];
	struct src s;

	if (!close || close < open || !t->ndim)
		return err_set(DPRT_EWEIGHTS, "%s: bad recipe '%s'", ws->path, t->name);
	for (i = 0; open + 1 + i < close; i++)
		parts += open[1 + i] == ',';
	if (t->dims[0] % parts)
		return err_set(DPRT_EWEIGHTS, "%s: cannot split '%s' in %d parts", ws->path,
			       t->name, parts);
	memcpy(dims, t->dims, sizeof(dims));
	dims[0] /= parts;
	each = n / (uint64_t)parts;
	for (i = 0; i < parts; i++) {
		size_t plen = strcspn(part, ",}");

		snprintf(name, sizeof(name), "%.*s%.*s%s", (int)(open - t->name), t->name,
			 (int)plen, part, close + 1);
		ret = lookup(ws, name, t->name, t->ndim, dims, &s);
		if (ret)
			return ret;
		if (dst)
			copy_span(dst, (enum dtype)t->dtype, each * (uint64_t)i, &s, 0, each);
		part += plen + 1;
	}
	return 0;
}

#define TILE 32

/* dst[r][c] = src[c][r] for the tile at (r0, c0) of dst [rows, cols]. */
static void transpose_tile(void *dst, enum dtype dt, const struct src *s, uint64_t rows,
			   uint64_t cols, uint64_t r0, uint64_t c0)
{
	uint64_t r, c;

	for (r = r0; r < MIN(r0 + TILE, rows); r++)
		for (c = c0; c < MIN(c0 + TILE, cols); c++)
			dst_put(dst, dt, r * cols + c, src_at(s, c * rows + r));
}

/* "name^T": the file holds the 2-D transpose of the model's tensor. */
static int fill_transpose(struct weight_source *ws, const struct tensor *t, void *dst)
{
	int64_t dims[2];
	char name[NAME_LEN];
	uint64_t r, c;
	struct src s;
	int ret;

	if (t->ndim != 2)
		return err_set(DPRT_EWEIGHTS, "%s: bad recipe '%s' (not 2-D)", ws->path, t->name);
	snprintf(name, sizeof(name), "%.*s", (int)(strlen(t->name) - 2), t->name);
	dims[0] = t->dims[1];
	dims[1] = t->dims[0];
	ret = lookup(ws, name, t->name, 2, dims, &s);
	if (ret || !dst)
		return ret;
	for (r = 0; r < (uint64_t)t->dims[0]; r += TILE)
		for (c = 0; c < (uint64_t)t->dims[1]; c += TILE)
			transpose_tile(dst, (enum dtype)t->dtype, &s, (uint64_t)t->dims[0],
				       (uint64_t)t->dims[1], r, c);
	return 0;
}

/*
 * "bn#scale" = weight / sqrt(running_var + eps),
 * "bn#shift" = bias - running_mean * scale, computed in double.
 */
static int fill_bnfold(struct weight_source *ws, const struct tensor *t, void *dst)
{
	static const char *const parts[4] = {"weight", "bias", "running_mean", "running_var"};
	const char *hash = strchr(t->name, '#');
	bool shift = !strcmp(hash, "#shift");
	char name[NAME_LEN];
	struct src s[4];
	uint64_t i;
	int k, ret;

	if (t->ndim != 1 || (!shift && strcmp(hash, "#scale")))
		return err_set(DPRT_EWEIGHTS, "%s: bad recipe '%s'", ws->path, t->name);
	for (k = 0; k < 4; k++) {
		snprintf(name, sizeof(name), "%.*s.%s", (int)(hash - t->name), t->name, parts[k]);
		ret = lookup(ws, name, t->name, 1, t->dims, &s[k]);
		if (ret)
			return ret;
	}
	for (i = 0; dst && i < (uint64_t)t->dims[0]; i++) {
		double scale = src_at(&s[0], i) / sqrt(src_at(&s[3], i) + BN_EPS);

		dst_put(dst, (enum dtype)t->dtype, i,
			shift ? src_at(&s[1], i) - src_at(&s[2], i) * scale : scale);
	}
	return 0;
}

static int st_fill(struct weight_source *ws, const struct tensor *t, void *dst)
{
	size_t len = strlen(t->name);

	if (strchr(t->name, '#'))
		return fill_bnfold(ws, t, dst);
	if (len > 2 && !strcmp(t->name + len - 2, "^T"))
		return fill_transpose(ws, t, dst);
	if (strchr(t->name, '{'))
		return fill_concat(ws, t, dst);
	return fill_plain(ws, t, dst);
}

/*
 * A source reading safetensors files (the shards of one checkpoint, in
 * order), whose tensors are named as the PyTorch state dict, possibly under
 * a prefix ("bert.", "roberta.", "transformer.", "model.", "distilbert.",
 * "vit."); `what` names them in messages. Any thread. 0 and *out, or
 * st_open's errors.
 */
int wsrc_safetensors_multi(const char *const *paths, uint32_t n, const char *what,
			   struct weight_source **out)
{
	struct weight_source *ws;
	uint32_t i;
	int ret = err_set(-ENOMEM, "%s: out of memory", what);

	*out = NULL;
	ws = calloc(1, sizeof(*ws));
	if (!ws)
		return ret;
	ws->st = calloc(n, sizeof(*ws->st));
	ws->paths = calloc(n, sizeof(*ws->paths));
	ws->used = calloc(n, sizeof(*ws->used));
	ws->path = strdup(what);
	if (!ws->st || !ws->paths || !ws->used || !ws->path)
		goto out_free;
	for (i = 0; i < n; i++, ws->n_files++) {
		ret = st_open(paths[i], &ws->st[i]);
		if (ret)
			goto out_free;
		ret = err_set(-ENOMEM, "%s: out of memory", paths[i]);
		ws->paths[i] = strdup(paths[i]);
		ws->used[i] = calloc(st_count(ws->st[i]) + 1, 1);
		if (!ws->paths[i] || !ws->used[i])
			goto out_free;
	}
	*out = ws;
	return 0;
out_free:
	ws->n_files += ws->n_files < n && ws->st[ws->n_files]; /* the half-made one */
	wsrc_destroy(ws);
	return ret;
}

/*
 * A source whose bytes come from fill(ctx, ...) (an importer's weights,
 * e.g. ONNX initializers); wsrc_destroy calls free_ctx(ctx) when not NULL.
 * NULL if out of memory (ctx is then not freed). Any thread.
 */
struct weight_source *wsrc_custom(pkg_fill_fn fill, void *ctx, void (*free_ctx)(void *ctx))
{
	struct weight_source *ws = calloc(1, sizeof(*ws));

	if (!ws)
		return NULL;
	ws->fill = fill;
	ws->fill_ctx = ctx;
	ws->fill_free = free_ctx;
	return ws;
}

/* One safetensors file; see wsrc_safetensors_multi. */
int wsrc_safetensors(const char *path, struct weight_source **out)
{
	return wsrc_safetensors_multi(&path, 1, path, out);
}

/* Free a source; a file source logs (debug) the tensors no fill used. */
void wsrc_destroy(struct weight_source *ws)
{
	uint32_t f, i;

	if (!ws)
		return;
	for (f = 0; f < ws->n_files; f++) {
		for (i = 0; ws->used[f] && i < st_count(ws->st[f]); i++)
			if (!ws->used[f][i])
				log_debug("%s: tensor '%s' is not used by the model", ws->paths[f],
					  st_get(ws->st[f], i)->name);
		st_close(ws->st[f]);
		free(ws->used[f]);
		free(ws->paths[f]);
	}
	if (ws->fill_free)
		ws->fill_free(ws->fill_ctx);
	free(ws->st);
	free(ws->used);
	free(ws->paths);
	free(ws->path);
	free(ws);
}

/*
 * Check that every weight of g is in the files of ws with its shape and a
 * float dtype, reading no data. One thread at a time per source. 0, or
 * DPRT_EWEIGHTS with err_set naming the tensor and the file.
 */
int wsrc_check(struct weight_source *ws, const struct graph *g)
{
	uint32_t t;
	int ret;

	for (t = 0; ws->n_files && t < g->n_tensors; t++) {
		if (g->tensors[t].kind != TK_WEIGHT)
			continue;
		ret = st_fill(ws, &g->tensors[t], NULL);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * pkg_fill_fn: write weight tensor `tensor` of g (t->nbytes bytes of
 * g->wdtype) to dst from source ctx. One thread at a time per source.
 * Returns 0, -EINVAL (not a weight tensor) or DPRT_EWEIGHTS, with err_set.
 */
int wsrc_fill(void *ctx, const struct graph *g, uint32_t tensor, void *dst)
{
	struct weight_source *ws = ctx;
	const struct tensor *t;

	if (tensor >= g->n_tensors || g->tensors[tensor].kind != TK_WEIGHT)
		return err_set(-EINVAL, "%s: tensor %u is not a weight", g->name, tensor);
	t = &g->tensors[tensor];
	if (t->dtype != DT_F32 && t->dtype != DT_F16 && t->dtype != DT_BF16)
		return err_set(DPRT_EUNSUP, "%s: weight '%s' has dtype %s", g->name, t->name,
			       dtype_name((enum dtype)t->dtype));
	if (ws->fill)
		return ws->fill(ws->fill_ctx, g, tensor, dst);
	if (!ws->n_files) {
		rand_fill(ws->seed, g, tensor, dst);
		return 0;
	}
	return st_fill(ws, t, dst);
}
