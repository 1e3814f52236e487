/* SPDX-License-Identifier: MIT */
/* Package file: round trip, identity, and refusal of bad files. */
#define _GNU_SOURCE /* nftw */
#include "model/model.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Header field offsets, as documented at the top of src/model/pkg.c. */
#define H_VERSION 8
#define H_FILE_SIZE 16
#define H_CRC 24
#define H_META_CRC 28
#define H_META_OFF 32
#define H_META_SIZE 40
#define H_WEIGHTS_OFF 48
#define H_WEIGHTS_SIZE 56
#define H_N_INPUTS 64
#define H_N_TENSORS 72
#define H_N_NODES 76
#define H_N_LAYERS 80
#define IO_REC 160
#define TENSOR_REC 168
#define NODE_REC 104
#define LAYER_REC 128

static char dir[64];
static char model[128];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void setup(void)
{
	strcpy(dir, "/tmp/dprt-pkg-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(model, sizeof(model), "%s/model.dpk", dir);
}

static void teardown(void)
{
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(pkg, .init = setup, .fini = teardown);

/* ------------------------------------------------------------ graphs */

static struct graph *tiny_graph(enum dtype wdtype)
{
	struct graph *g = graph_create("tiny", "test", wdtype);
	const int64_t seq[2] = {DIM_BATCH, DIM_SEQ}, img[4] = {DIM_BATCH, 3, 8, 8};
	const int64_t d_tab[2] = {100, 16}, d_h[1] = {16}, d_qkv[2] = {48, 16};
	const int64_t d_qkvb[1] = {48}, d_cw[4] = {4, 3, 3, 3}, d_cb[1] = {4};
	const int64_t attn[2] = {2, 0}, conv[7] = {1, 1, 1, 1, 1, 1, 1};
	const float eps = 1e-12f;
	uint32_t ids, mask, pic, x, in[3];

	ids = graph_input(g, "input_ids", DT_I64, 2, seq, 0, 0);
	mask = graph_input(g, "attention_mask", DT_I64, 2, seq, IO_OPTIONAL, 1.0);
	pic = graph_input(g, "pixels", wdtype, 4, img, 0, 0);
	g->max_seq = 32;
	g->def_seq = 16;
	g->max_batch = 4;

	graph_layer_begin(g, "embeddings.word_embeddings");
	in[0] = ids;
	in[1] = graph_weight(g, "embeddings.word_embeddings.weight", 2, d_tab);
	x = graph_node(g, OP_EMBEDDING, in, 2, NULL, 0, NULL, 0);

	graph_layer_begin(g, "embeddings.LayerNorm");
	in[0] = x;
	in[1] = graph_weight(g, "embeddings.LayerNorm.weight", 1, d_h);
	in[2] = graph_weight(g, "embeddings.LayerNorm.bias", 1, d_h);
	x = graph_node(g, OP_LAYERNORM, in, 3, NULL, 0, &eps, 1);

	graph_layer_begin(g, "encoder.layer.0.attention.qkv");
	in[0] = x;
	in[1] = graph_weight(g, "encoder.layer.0.attention.qkv.weight", 2, d_qkv);
	in[2] = graph_weight(g, "encoder.layer.0.attention.qkv.bias", 1, d_qkvb);
	x = graph_node(g, OP_LINEAR, in, 3, NULL, 0, NULL, 0);
	in[0] = x;
	in[1] = mask;
	x = graph_node(g, OP_ATTENTION, in, 2, attn, 2, NULL, 0);
	graph_output(g, "last_hidden_state", x);

	graph_layer_begin(g, "conv1");
	in[0] = pic;
	in[1] = graph_weight(g, "conv1.weight", 4, d_cw);
	in[2] = graph_weight(g, "conv1.bias", 1, d_cb);
	x = graph_node(g, OP_CONV2D, in, 3, conv, 7, NULL, 0);
	in[0] = x;
	x = graph_node(g, OP_GLOBAL_AVGPOOL, in, 1, NULL, 0, NULL, 0);
	graph_output(g, "features", x);
	cr_assert_eq(graph_finalize(g), 0, "%s", err_msg(0));
	return g;
}

/* --------------------------------------------------------- weights */

struct fill_ctx {
	uint64_t seed;
	uint32_t flip_tensor; /* NO_TENSOR: none */
	int fail_tensor;      /* -1: none */
};

static int fill(void *ctx, const struct graph *g, uint32_t t, void *dst)
{
	struct fill_ctx *c = ctx;
	uint8_t *b = dst;
	struct rng r;
	uint64_t i, v = 0;

	if ((int)t == c->fail_tensor)
		return -EIO;
	rng_seed(&r, c->seed * 1000003u + t);
	for (i = 0; i < g->tensors[t].nbytes; i++) {
		if (i % 8 == 0)
			v = rng_next(&r);
		b[i] = (uint8_t)(v >> (i % 8 * 8));
	}
	if (t == c->flip_tensor)
		b[0] ^= 1;
	return 0;
}

/* The expected weight region: filled tensors, zero elsewhere. */
static uint8_t *expected_region(const struct graph *g, struct fill_ctx *c)
{
	uint8_t *b = calloc(1, g->weights_size + 1);
	uint32_t t;

	cr_assert_not_null(b);
	for (t = 0; t < g->n_tensors; t++)
		if (g->tensors[t].kind == TK_WEIGHT)
			cr_assert_eq(fill(c, g, t, b + g->tensors[t].offset), 0);
	return b;
}

static void write_model(const char *path, struct graph *g, uint64_t seed)
{
	struct fill_ctx c = {seed, NO_TENSOR, -1};

	cr_assert_eq(pkg_write(path, g, fill, &c), 0, "%s", err_msg(0));
}

/* ----------------------------------------------------------- compare */

static bool io_equal(const struct io_desc *a, const struct io_desc *b)
{
	return !strcmp(a->name, b->name) && a->tensor == b->tensor && a->dtype == b->dtype &&
	       a->ndim == b->ndim && a->flags == b->flags &&
	       !memcmp(a->dims, b->dims, sizeof(a->dims[0]) * a->ndim) &&
	       !memcmp(&a->fill, &b->fill, sizeof(a->fill));
}

static bool tensor_equal(const struct tensor *a, const struct tensor *b)
{
	return !strcmp(a->name, b->name) && a->kind == b->kind && a->dtype == b->dtype &&
	       a->ndim == b->ndim && a->layer == b->layer &&
	       !memcmp(a->dims, b->dims, sizeof(a->dims[0]) * a->ndim) && a->offset == b->offset &&
	       a->nbytes == b->nbytes;
}

static bool node_equal(const struct node *a, const struct node *b)
{
	return a->op == b->op && a->n_in == b->n_in && a->out == b->out && a->layer == b->layer &&
	       !memcmp(a->in, b->in, sizeof(a->in[0]) * a->n_in) &&
	       !memcmp(a->ia, b->ia, sizeof(a->ia)) && !memcmp(a->fa, b->fa, sizeof(a->fa));
}

static bool layer_equal(const struct layer *a, const struct layer *b)
{
	return !strcmp(a->name, b->name) && a->node == b->node && a->offset == b->offset &&
	       a->nbytes == b->nbytes && a->params == b->params && a->crc == b->crc;
}

static bool graph_equal(const struct graph *a, const struct graph *b)
{
	uint32_t i;
	bool eq;

	eq = !strcmp(a->name, b->name) && !strcmp(a->arch, b->arch) && a->wdtype == b->wdtype &&
	     a->max_seq == b->max_seq && a->def_seq == b->def_seq && a->max_batch == b->max_batch &&
	     a->n_tensors == b->n_tensors && a->n_nodes == b->n_nodes &&
	     a->n_layers == b->n_layers && a->n_inputs == b->n_inputs &&
	     a->n_outputs == b->n_outputs && a->weights_size == b->weights_size &&
	     a->n_params == b->n_params;
	for (i = 0; eq && i < a->n_inputs; i++)
		eq = io_equal(&a->inputs[i], &b->inputs[i]);
	for (i = 0; eq && i < a->n_outputs; i++)
		eq = io_equal(&a->outputs[i], &b->outputs[i]);
	for (i = 0; eq && i < a->n_tensors; i++)
		eq = tensor_equal(&a->tensors[i], &b->tensors[i]);
	for (i = 0; eq && i < a->n_nodes; i++)
		eq = node_equal(&a->nodes[i], &b->nodes[i]);
	for (i = 0; eq && i < a->n_layers; i++)
		eq = layer_equal(&a->layers[i], &b->layers[i]);
	return eq;
}

/* ------------------------------------------------------ file helpers */

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(b);
	cr_assert_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void spit(const char *path, const void *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, b, len), (ssize_t)len);
	close(fd);
}

static uint32_t rd32(const uint8_t *b, size_t off)
{
	return (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 | (uint32_t)b[off + 2] << 16 |
	       (uint32_t)b[off + 3] << 24;
}

static uint64_t rd64(const uint8_t *b, size_t off)
{
	return rd32(b, off) | (uint64_t)rd32(b, off + 4) << 32;
}

static void wr32(uint8_t *b, size_t off, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		b[off + i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *b, size_t off, uint64_t v)
{
	wr32(b, off, (uint32_t)v);
	wr32(b, off + 4, (uint32_t)(v >> 32));
}

/* Recompute the meta and header CRCs after a deliberate edit. */
static void fix_crcs(uint8_t *b)
{
	wr32(b, H_META_CRC, crc32c(0, b + rd64(b, H_META_OFF), rd64(b, H_META_SIZE)));
	wr32(b, H_CRC, 0);
	wr32(b, H_CRC, crc32c(0, b, 4096));
}

/* pkg_open must refuse path with code, naming the file. */
static void expect_refused(const char *path, int code, const char *words)
{
	struct pkg *p = (struct pkg *)1;
	int ret;

	err_clear();
	ret = pkg_open(path, &p);
	cr_assert_eq(ret, code, "%s: got %d (%s), want %d", path, ret, err_msg(ret), code);
	cr_assert_null(p);
	cr_log_info("%s", err_msg(ret));
	cr_assert(strstr(err_msg(ret), path) == err_msg(ret),
		  "message '%s' does not "
		  "begin with the path",
		  err_msg(ret));
	if (words)
		cr_assert(strstr(err_msg(ret), words), "message '%s' lacks '%s'", err_msg(ret),
			  words);
}

/* Write a variant of the model file and expect it refused. */
static void expect_variant_refused(const uint8_t *b, size_t len, int code, const char *words)
{
	char path[192];

	snprintf(path, sizeof(path), "%s/variant.dpk", dir);
	spit(path, b, len);
	expect_refused(path, code, words);
}

static struct pkg *open_ok(const char *path)
{
	struct pkg *p = NULL;

	cr_assert_eq(pkg_open(path, &p), 0, "%s", err_msg(0));
	cr_assert_not_null(p);
	return p;
}

/* ------------------------------------------------------------- tests */

static void round_trip(enum dtype wdtype)
{
	struct graph *g = tiny_graph(wdtype);
	struct fill_ctx c = {7, NO_TENSOR, -1};
	const struct graph *h;
	struct stat st;
	uint8_t *want, *got;
	struct pkg *p;
	uint32_t l;

	write_model(model, g, 7);
	p = open_ok(model);
	h = pkg_graph(p);
	cr_assert(graph_equal(g, h), "decoded graph differs");
	cr_assert_str_eq(h->inputs[1].name, "attention_mask");
	cr_assert_eq(h->inputs[1].flags, IO_OPTIONAL);
	cr_assert_eq(h->inputs[1].fill, 1.0);
	cr_assert_eq(h->nodes[1].fa[0], 1e-12f);
	cr_assert_eq(h->nodes[3].ia[0], 2);
	cr_assert_str_eq(pkg_path(p), model);
	cr_assert_geq(pkg_fd(p), 0);
	cr_assert_eq(pkg_weights_offset(p) % 4096, 0);
	cr_assert_eq(stat(model, &st), 0);
	cr_assert_eq(pkg_weights_offset(p) + h->weights_size, (uint64_t)st.st_size);

	want = expected_region(g, &c);
	got = malloc(h->weights_size);
	cr_assert_eq(pkg_read_weights(p, got), 0, "%s", err_msg(0));
	cr_assert_eq(memcmp(want, got, h->weights_size), 0, "weights differ");
	for (l = 0; l < h->n_layers; l++) {
		cr_assert_eq(pkg_verify_layer(p, l, got), 0);
		cr_assert_eq(h->layers[l].crc,
			     crc32c(0, want + h->layers[l].offset, h->layers[l].nbytes));
	}
	cr_assert_eq(pkg_verify_layer(p, h->n_layers, got), -EINVAL);
	free(want);
	free(got);
	pkg_close(p);
	graph_destroy(g);
}

Test(pkg, round_trip_f32)
{
	round_trip(DT_F32);
}

Test(pkg, round_trip_f16)
{
	round_trip(DT_F16);
}

Test(pkg, round_trip_bf16)
{
	round_trip(DT_BF16);
}

/* Layers larger than the writer's batch and the reader's chunk, and small
 * layers between them, so batching and chunk boundaries are crossed. */
Test(pkg, large_layers)
{
	struct graph *g = graph_create("big", "test", DT_F32);
	const int64_t seq[2] = {DIM_BATCH, DIM_SEQ}, tab[2] = {70001, 64};
	const int64_t tab2[2] = {40000, 64}, h[1] = {64};
	struct fill_ctx c = {3, NO_TENSOR, -1};
	uint32_t in[3], x;
	uint8_t *want, *got;
	struct pkg *p;
	int i;

	in[0] = graph_input(g, "ids", DT_I64, 2, seq, 0, 0);
	graph_layer_begin(g, "emb");
	in[1] = graph_weight(g, "emb.weight", 2, tab);
	x = graph_node(g, OP_EMBEDDING, in, 2, NULL, 0, NULL, 0);
	for (i = 0; i < 3; i++) {
		graph_layer_begin(g, i == 1 ? "mid" : "ln");
		in[0] = x;
		if (i == 1) {
			in[1] = graph_weight(g, "mid.weight", 2, tab2);
			x = graph_node(g, OP_LINEAR, in, 2, NULL, 0, NULL, 0);
			continue;
		}
		in[1] = graph_weight(g, "ln.weight", 1, h);
		in[2] = graph_weight(g, "ln.bias", 1, h);
		x = graph_node(g, OP_LAYERNORM, in, 3, NULL, 0, NULL, 0);
	}
	graph_output(g, "out", x);
	cr_assert_eq(graph_finalize(g), 0, "%s", err_msg(0));
	cr_assert_gt(g->weights_size, 16u << 20);

	write_model(model, g, 3);
	p = open_ok(model);
	cr_assert(graph_equal(g, pkg_graph(p)));
	want = expected_region(g, &c);
	got = malloc(g->weights_size);
	cr_assert_eq(pkg_read_weights(p, got), 0, "%s", err_msg(0));
	cr_assert_eq(memcmp(want, got, g->weights_size), 0);
	free(want);
	free(got);
	pkg_close(p);
	graph_destroy(g);
}

Test(pkg, checksum_identity)
{
	struct graph *g = tiny_graph(DT_F32), *g2 = tiny_graph(DT_F32);
	struct fill_ctx c = {7, 5, -1};
	char path2[192], path3[192];
	struct pkg *a, *b, *d;
	uint8_t *x, *y;
	size_t lx, ly;

	snprintf(path2, sizeof(path2), "%s/again.dpk", dir);
	snprintf(path3, sizeof(path3), "%s/other.dpk", dir);
	cr_assert_eq(g->tensors[5].kind, TK_WEIGHT);
	write_model(model, g, 7);
	write_model(path2, g2, 7);
	cr_assert_eq(pkg_write(path3, g2, fill, &c), 0, "%s", err_msg(0));
	a = open_ok(model);
	b = open_ok(path2);
	d = open_ok(path3);
	cr_assert_eq(pkg_checksum(a), pkg_checksum(b));
	cr_assert_neq(pkg_checksum(a), pkg_checksum(d));
	cr_assert_neq(pkg_checksum(a), 0);
	x = slurp(model, &lx);
	y = slurp(path2, &ly);
	cr_assert_eq(lx, ly);
	cr_assert_eq(memcmp(x, y, lx), 0, "two writes of one model differ");
	free(x);
	free(y);
	pkg_close(a);
	pkg_close(b);
	pkg_close(d);
	graph_destroy(g);
	graph_destroy(g2);
}

/* The directory holds only the named entry (or nothing). */
static void expect_dir(const char *only)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		cr_assert(only && !strcmp(e->d_name, only), "unexpected file %s", e->d_name);
		n++;
	}
	closedir(d);
	cr_assert_eq(n, only ? 1 : 0);
}

Test(pkg, write_is_atomic)
{
	struct graph *g = tiny_graph(DT_F32);
	struct fill_ctx c = {1, NO_TENSOR, 6};
	struct pkg *p;
	int ret;

	ret = pkg_write(model, g, fill, &c);
	cr_assert_eq(ret, -EIO);
	cr_assert(strstr(err_msg(ret), model), "%s", err_msg(ret));
	cr_assert(strstr(err_msg(ret), g->tensors[6].name), "%s", err_msg(ret));
	expect_dir(NULL);

	write_model(model, g, 1);
	expect_dir("model.dpk");
	/* A failed rewrite leaves the old file in place. */
	cr_assert_eq(pkg_write(model, g, fill, &c), -EIO);
	expect_dir("model.dpk");
	p = open_ok(model);
	pkg_close(p);
	graph_destroy(g);
}

Test(pkg, write_refuses_unfinalized)
{
	struct graph *g = tiny_graph(DT_F32);
	struct fill_ctx c = {1, NO_TENSOR, -1};
	int ret;

	g->layers[1].offset += 4096; /* not graph_finalize's layout */
	ret = pkg_write(model, g, fill, &c);
	cr_assert_eq(ret, DPRT_EBADPKG);
	cr_assert(strstr(err_msg(ret), model));
	expect_dir(NULL);
	graph_destroy(g);
}

/* A written model, its bytes, and its weight offset. */
struct sample {
	uint8_t *b;
	size_t len;
	uint64_t woff, meta_size;
	struct graph *g;
};

static void sample_make(struct sample *s)
{
	s->g = tiny_graph(DT_F32);
	write_model(model, s->g, 11);
	s->b = slurp(model, &s->len);
	s->woff = rd64(s->b, H_WEIGHTS_OFF);
	s->meta_size = rd64(s->b, H_META_SIZE);
	cr_assert_eq(s->len, rd64(s->b, H_FILE_SIZE));
}

static void sample_free(struct sample *s)
{
	free(s->b);
	graph_destroy(s->g);
}

Test(pkg, truncated)
{
	struct sample s;
	size_t cut[9];
	size_t i;

	sample_make(&s);
	cut[0] = 0;
	cut[1] = 1;
	cut[2] = 8;
	cut[3] = 4095;
	cut[4] = 4096;
	cut[5] = 4096 + s.meta_size / 2;
	cut[6] = s.woff;
	cut[7] = s.woff + (s.len - s.woff) / 2;
	cut[8] = s.len - 1;
	for (i = 0; i < ARRAY_SIZE(cut); i++)
		expect_variant_refused(s.b, cut[i], DPRT_EBADPKG, cut[i] >= 8 ? "truncated" : NULL);
	expect_variant_refused(s.b, 0, DPRT_EBADPKG, "empty");
	expect_variant_refused(s.b, 5000, DPRT_EBADPKG, "file has 5000 bytes, header says");
	sample_free(&s);
}

Test(pkg, appended_garbage)
{
	struct sample s;
	uint8_t *b;

	sample_make(&s);
	b = calloc(1, s.len + 4096);
	memcpy(b, s.b, s.len);
	expect_variant_refused(b, s.len + 1, DPRT_EBADPKG, "header says");
	expect_variant_refused(b, s.len + 4096, DPRT_EBADPKG, "header says");
	free(b);
	sample_free(&s);
}

Test(pkg, header_bit_flips)
{
	static const size_t at[] = {0,	3,  7,	12, 16, 24,  28,  33,  40,  48,	 56,   64,
				    72, 80, 84, 85, 88, 112, 120, 216, 247, 248, 2000, 4095};
	struct sample s;
	size_t i;
	int bit;

	sample_make(&s);
	for (i = 0; i < ARRAY_SIZE(at); i++)
		for (bit = 0; bit < 8; bit += 3) {
			s.b[at[i]] ^= (uint8_t)(1 << bit);
			expect_variant_refused(s.b, s.len, DPRT_EBADPKG, NULL);
			s.b[at[i]] ^= (uint8_t)(1 << bit);
		}
	for (bit = 0; bit < 32; bit += 5) { /* the version field */
		wr32(s.b, H_VERSION, 1u ^ (1u << bit));
		expect_variant_refused(s.b, s.len, DPRT_EVERSION, "format version");
	}
	sample_free(&s);
}

Test(pkg, meta_bit_flips)
{
	struct sample s;
	size_t i, pos;

	sample_make(&s);
	for (i = 0; i < 64; i++) {
		pos = 4096 + i * (s.woff - 4096) / 64; /* meta and its padding */
		s.b[pos] ^= (uint8_t)(1u << (i % 8));
		expect_variant_refused(s.b, s.len, DPRT_EBADPKG,
				       pos < 4096 + s.meta_size ? "checksum" : "padding");
		s.b[pos] ^= (uint8_t)(1u << (i % 8));
	}
	sample_free(&s);
}

Test(pkg, version_bumped)
{
	struct sample s;

	sample_make(&s);
	wr32(s.b, H_VERSION, 2);
	fix_crcs(s.b);
	expect_variant_refused(s.b, s.len, DPRT_EVERSION, "format version 2, this dprt reads 1");
	wr32(s.b, H_VERSION, 0);
	fix_crcs(s.b);
	expect_variant_refused(s.b, s.len, DPRT_EVERSION, "format version 0");
	sample_free(&s);
}

/* Set a header field, fix the CRCs and expect a refusal. */
static void expect_field_refused(struct sample *s, size_t off, int width, uint64_t v)
{
	uint8_t *b = malloc(s->len);

	memcpy(b, s->b, s->len);
	if (width == 4)
		wr32(b, off, (uint32_t)v);
	else
		wr64(b, off, v);
	wr32(b, H_CRC, 0);
	wr32(b, H_CRC, crc32c(0, b, 4096));
	expect_variant_refused(b, s->len, DPRT_EBADPKG, NULL);
	free(b);
}

Test(pkg, header_fields_out_of_range)
{
	struct sample s;
	uint32_t n_tensors;
	int k;

	sample_make(&s);
	n_tensors = rd32(s.b, H_N_TENSORS);
	for (k = 0; k < 5; k++) {
		expect_field_refused(&s, H_N_INPUTS + 4 * k, 4, UINT32_MAX);
		expect_field_refused(&s, H_N_INPUTS + 4 * k, 4, 1u << 23);
		expect_field_refused(&s, H_N_INPUTS + 4 * k, 4, rd32(s.b, H_N_INPUTS + 4 * k) + 1);
	}
	expect_field_refused(&s, H_N_TENSORS, 4, n_tensors - 1);
	expect_field_refused(&s, H_N_LAYERS, 4, 0);
	expect_field_refused(&s, H_META_OFF, 8, UINT64_MAX - 100);
	expect_field_refused(&s, H_META_SIZE, 8, UINT64_MAX - 100);
	expect_field_refused(&s, H_META_SIZE, 8, s.meta_size + 4096);
	expect_field_refused(&s, H_WEIGHTS_OFF, 8, UINT64_MAX - 4095);
	expect_field_refused(&s, H_WEIGHTS_OFF, 8, s.woff + 4096);
	expect_field_refused(&s, H_WEIGHTS_OFF, 8, s.woff - 4096);
	expect_field_refused(&s, H_WEIGHTS_SIZE, 8, UINT64_MAX - 4095);
	expect_field_refused(&s, H_WEIGHTS_SIZE, 8, s.len - s.woff - 4096);
	expect_field_refused(&s, H_FILE_SIZE, 8, UINT64_MAX);
	expect_field_refused(&s, 84, 4, DT_I64);	 /* wdtype */
	expect_field_refused(&s, 84, 4, 0x100 | DT_F32); /* padding */
	expect_field_refused(&s, 88, 8, (uint64_t)-5);	 /* max_seq */
	expect_field_refused(&s, 112, 8, 12345);	 /* n_params */
	expect_field_refused(&s, 4000, 4, 1);		 /* reserved */
	sample_free(&s);
}

/* Edit a meta byte, fix the CRCs and expect a refusal: exercises the
 * decoder's checks past the checksums. */
static void expect_meta_edit_refused(struct sample *s, size_t off, uint8_t v)
{
	uint8_t *b = malloc(s->len);

	memcpy(b, s->b, s->len);
	b[off] = v;
	if (off == 0) { /* two edits that keep a sum: params of layers 0, 1 */
		size_t l0 = 4096 + s->meta_size - (size_t)s->g->n_layers * LAYER_REC;

		wr64(b, l0 + 120, rd64(b, l0 + 120) + 1);
		wr64(b, l0 + LAYER_REC + 120, rd64(b, l0 + LAYER_REC + 120) - 1);
	}
	fix_crcs(b);
	expect_variant_refused(b, s->len, DPRT_EBADPKG, NULL);
	free(b);
}

Test(pkg, meta_records_out_of_range)
{
	struct sample s;
	const struct graph *g;
	size_t io, tens, nodes, layers, w;
	uint32_t n_io;

	sample_make(&s);
	g = s.g;
	n_io = g->n_inputs + g->n_outputs;
	io = 4096;
	tens = io + (size_t)n_io * IO_REC;
	nodes = tens + (size_t)g->n_tensors * TENSOR_REC;
	layers = nodes + (size_t)g->n_nodes * NODE_REC;
	cr_assert_eq(layers + (size_t)g->n_layers * LAYER_REC, 4096 + s.meta_size);
	w = tens + TENSOR_REC * (size_t)g->inputs[0].tensor;

	expect_meta_edit_refused(&s, io + 96, 200); /* input tensor id */
	expect_meta_edit_refused(&s, io + 100, 0);  /* input dtype */
	expect_meta_edit_refused(&s, io + 100, DT_COUNT);
	expect_meta_edit_refused(&s, io + 101, MAX_DIMS + 1);  /* ndim */
	expect_meta_edit_refused(&s, io + 102, 4);	       /* flags */
	expect_meta_edit_refused(&s, io + 103, 1);	       /* padding */
	expect_meta_edit_refused(&s, io + 95, 'x');	       /* no NUL */
	expect_meta_edit_refused(&s, io + 90, 'x');	       /* junk after NUL */
	expect_meta_edit_refused(&s, io + IO_REC * 3 + 96, 1); /* output reads input */
	expect_meta_edit_refused(&s, w + 96, 9);	       /* kind */
	expect_meta_edit_refused(&s, w + 97, 99);	       /* dtype */
	expect_meta_edit_refused(&s, w + 98, 7);	       /* ndim */
	expect_meta_edit_refused(&s, w + 103, 0);	       /* layer of an input */
	expect_meta_edit_refused(&s, w + 104 + 8 * 5, 1);      /* dim past ndim */
	w = tens + TENSOR_REC * (size_t)g->nodes[0].in[1];     /* a weight */
	expect_meta_edit_refused(&s, w + 100, 9);	       /* layer */
	expect_meta_edit_refused(&s, w + 104, 3);	       /* dim 0 */
	expect_meta_edit_refused(&s, w + 152, 1);	       /* offset */
	expect_meta_edit_refused(&s, w + 160, 1);	       /* nbytes */
	expect_meta_edit_refused(&s, nodes + 0, OP_COUNT);     /* op */
	expect_meta_edit_refused(&s, nodes + 0, 0);
	expect_meta_edit_refused(&s, nodes + 1, 1);	/* op high byte */
	expect_meta_edit_refused(&s, nodes + 2, 3);	/* arity */
	expect_meta_edit_refused(&s, nodes + 2, 200);	/* n_in */
	expect_meta_edit_refused(&s, nodes + 2, 1);	/* stale in[1] */
	expect_meta_edit_refused(&s, nodes + 7, 0x10);	/* out id */
	expect_meta_edit_refused(&s, nodes + 8, 5);	/* layer */
	expect_meta_edit_refused(&s, nodes + 12, 1);	/* reserved */
	expect_meta_edit_refused(&s, nodes + 16, 0xfe); /* input id */
	expect_meta_edit_refused(&s, nodes + 28, 1);	/* unused in[3] */
	expect_meta_edit_refused(&s, nodes + 16, (uint8_t)g->nodes[1].out);
	expect_meta_edit_refused(&s, layers + 96, 1);		      /* node */
	expect_meta_edit_refused(&s, layers + 104, 1);		      /* offset */
	expect_meta_edit_refused(&s, layers + LAYER_REC + 105, 0x30); /* offset */
	expect_meta_edit_refused(&s, layers + 112, 1);		      /* nbytes */
	expect_meta_edit_refused(&s, layers + 120, 7);		      /* params */
	expect_meta_edit_refused(&s, 0, 'D');			      /* params, same sum */
	sample_free(&s);
}

/* The layer whose padded range holds region byte off. */
static uint32_t layer_at(const struct graph *g, uint64_t off)
{
	uint32_t l = 0;

	while (l + 1 < g->n_layers && g->layers[l + 1].offset <= off)
		l++;
	return l;
}

/* Open must succeed; reading weights must fail naming the layer. */
static void expect_weights_refused(struct sample *s, uint64_t off, const char *why)
{
	char path[192], name[160];
	const struct graph *g;
	struct pkg *p;
	uint8_t *dst;
	uint32_t l, k;
	int ret;

	snprintf(path, sizeof(path), "%s/variant.dpk", dir);
	spit(path, s->b, s->len);
	p = open_ok(path);
	g = pkg_graph(p);
	dst = malloc(g->weights_size);
	ret = pkg_read_weights(p, dst);
	l = layer_at(g, off);
	snprintf(name, sizeof(name), "layer %u (%s) is corrupt: %s", l, g->layers[l].name, why);
	cr_assert_eq(ret, DPRT_EBADPKG, "byte %llu: %d", (unsigned long long)off, ret);
	cr_assert(strstr(err_msg(ret), path) == err_msg(ret), "%s", err_msg(ret));
	cr_assert(strstr(err_msg(ret), name), "'%s' lacks '%s'", err_msg(ret), name);
	cr_log_info("%s", err_msg(ret));
	for (k = 0; k <= l; k++)
		cr_assert_eq(pkg_verify_layer(p, k, dst), k == l ? DPRT_EBADPKG : 0);
	free(dst);
	pkg_close(p);
}

Test(pkg, weight_bit_flips)
{
	struct sample s;
	uint32_t l;

	sample_make(&s);
	for (l = 0; l < s.g->n_layers; l++) {
		const struct layer *ly = &s.g->layers[l];
		uint64_t pos[3] = {ly->offset, ly->offset + ly->nbytes / 2,
				   ly->offset + ly->nbytes - 1};
		int k;

		for (k = 0; k < 3; k++) {
			s.b[s.woff + pos[k]] ^= 0x10;
			expect_weights_refused(&s, pos[k], "checksum mismatch");
			s.b[s.woff + pos[k]] ^= 0x10;
		}
		if (ALIGN_UP(ly->nbytes, 4096) > ly->nbytes) {
			uint64_t pad = ly->offset + ly->nbytes;

			s.b[s.woff + pad] ^= 1;
			expect_weights_refused(&s, pad, "nonzero padding");
			s.b[s.woff + pad] ^= 1;
		}
	}
	sample_free(&s);
}

Test(pkg, foreign_files)
{
	char path[192];
	uint8_t junk[10000];
	struct rng r;
	size_t i;

	snprintf(path, sizeof(path), "%s/empty", dir);
	spit(path, "", 0);
	expect_refused(path, DPRT_EBADPKG, "empty file");

	snprintf(path, sizeof(path), "%s/readme.txt", dir);
	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t) "hello, world\n"[i % 13];
	spit(path, junk, sizeof(junk));
	expect_refused(path, DPRT_EBADPKG, "not a dprt package");
	spit(path, junk, 5);
	expect_refused(path, DPRT_EBADPKG, "not a dprt package");

	snprintf(path, sizeof(path), "%s/random.bin", dir);
	rng_seed(&r, 42);
	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)rng_next(&r);
	spit(path, junk, sizeof(junk));
	expect_refused(path, DPRT_EBADPKG, "not a dprt package");
	memcpy(junk, PKG_MAGIC, 8); /* right magic and version, random rest */
	junk[8] = 1;
	junk[9] = junk[10] = junk[11] = 0;
	spit(path, junk, sizeof(junk));
	expect_refused(path, DPRT_EBADPKG, NULL);
	spit(path, junk, 4096);
	expect_refused(path, DPRT_EBADPKG, NULL);

	snprintf(path, sizeof(path), "%s/subdir", dir);
	cr_assert_eq(mkdir(path, 0755), 0);
	expect_refused(path, DPRT_EBADPKG, "directory");

	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0644), 0);
	expect_refused(path, DPRT_EBADPKG, "not a regular file");

	snprintf(path, sizeof(path), "%s/missing.dpk", dir);
	expect_refused(path, -ENOENT, NULL);
}

/* Every single-bit flip anywhere is refused (by pkg_open or by
 * pkg_read_weights), because every byte is under a checksum or must be
 * zero; a flip that went unnoticed would have to leave the graph and
 * weights identical, which no flip can. */
Test(pkg, random_bit_flips)
{
	struct sample s;
	char path[192];
	uint8_t *dst;
	struct rng r;
	int i, fd, opened = 0;

	sample_make(&s);
	snprintf(path, sizeof(path), "%s/flipped.dpk", dir);
	spit(path, s.b, s.len);
	fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	dst = malloc(s.g->weights_size);
	rng_seed(&r, 1234);
	for (i = 0; i < 400; i++) {
		size_t pos = rng_next(&r) % s.len;
		uint8_t v = s.b[pos] ^ (uint8_t)(1u << (rng_next(&r) % 8));
		struct pkg *p = NULL;
		int ret;

		cr_assert_eq(pwrite(fd, &v, 1, (off_t)pos), 1);
		ret = pkg_open(path, &p);
		if (!ret) {
			opened++;
			cr_assert_geq(pos, s.woff, "flip at %zu passed pkg_open", pos);
			ret = pkg_read_weights(p, dst);
			cr_assert(graph_equal(s.g, pkg_graph(p)));
			pkg_close(p);
		}
		cr_assert(ret == DPRT_EBADPKG || ret == DPRT_EVERSION, "flip at byte %zu: %d", pos,
			  ret);
		cr_assert(strstr(err_msg(ret), path) == err_msg(ret), "%s", err_msg(ret));
		cr_assert_eq(pwrite(fd, &s.b[pos], 1, (off_t)pos), 1);
	}
	cr_assert_gt(opened, 0);
	close(fd);
	free(dst);
	sample_free(&s);
}
