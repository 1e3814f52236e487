/* SPDX-License-Identifier: MIT */
/*
 * Package file (model.dpk): reader and writer.
 *
 * Format version 1. All integers little-endian; floats are their IEEE-754
 * bit patterns (f32 / f64) stored as u32 / u64. Every field is written and
 * read one by one with a fixed width; no C struct is dumped. A string is a
 * fixed-size field that holds a NUL and only zero bytes after it.
 *
 *   [0, 4096)                 header block
 *   [4096, 4096 + meta_size)  meta section: the graph's tables
 *   ... zero bytes up to weights_offset = ALIGN_UP(4096 + meta_size, 4096)
 *   [weights_offset, +weights_size)  weight region; file ends there
 *
 * Header block (4096 bytes; bytes 248..4095 are reserved and zero):
 *     0  magic[8]        "DPRTPKG\0"      (never moves)
 *     8  version u32     1                (never moves)
 *    12  header_size u32 4096
 *    16  file_size u64   exact size of the file
 *    24  header_crc u32  CRC32C of the 4096 bytes with this field zeroed
 *    28  meta_crc u32    CRC32C of the meta section (meta_size bytes)
 *    32  meta_offset u64 4096
 *    40  meta_size u64   exactly the sum of the record sizes below
 *    48  weights_offset u64
 *    56  weights_size u64  multiple of 4096
 *    64  n_inputs u32, 68 n_outputs u32, 72 n_tensors u32,
 *    76  n_nodes u32, 80 n_layers u32
 *    84  wdtype u8, 3 zero bytes
 *    88  max_seq i64, 96 def_seq i64, 104 max_batch i64, 112 n_params u64
 *   120  name[96], 216 arch[32]
 *
 * Meta section: n_inputs input records, n_outputs output records,
 * n_tensors tensor records, n_nodes node records, n_layers layer records,
 * back to back:
 *   io (160):     name[96] tensor u32 dtype u8 ndim u8 flags u8 zero u8
 *                 dims[6] i64 fill f64
 *   tensor (168): name[96] kind u8 dtype u8 ndim u8 zero u8 layer u32
 *                 dims[6] i64 offset u64 nbytes u64
 *   node (104):   op u16 n_in u8 zero u8 out u32 layer u32 zero u32
 *                 in[4] u32 ia[8] i64 fa[2] f32
 *   layer (128):  name[96] node u32 crc u32 offset u64 nbytes u64 params u64
 * dims past ndim and in[] slots past n_in are zero. Activation tensors have
 * layer = NO_TENSOR and zero offset/nbytes.
 *
 * Weight region: layer i occupies [layers[i].offset, + nbytes), relative to
 * weights_offset; layer 0 starts at 0, each next layer starts at the
 * previous end rounded up to 4096, and a layer's nbytes ends where its last
 * tensor ends (graph_finalize's layout). Every byte not inside a weight
 * tensor is zero. layers[i].crc = CRC32C of the layer's nbytes bytes.
 * Thus every byte of a file is covered by a checksum or must be zero: an
 * accidental corruption is refused by pkg_open or by pkg_read_weights.
 *
 * pkg_checksum = hash64 over the 4096 header bytes, the meta bytes and the
 * layer CRCs (u32 LE), in that order.
 *
 * The reader checks everything above plus enum ranges, tensor ids, counts
 * against limits and the file size (overflow-safe), parameter counts and
 * graph_validate(); the writer checks the same before writing, so it never
 * writes a file the reader refuses.
 */
#include "model.h"
#include "base/lebuf.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR_SIZE 4096u
#define HDR_USED 248u
#define HDR_CRC_OFF 24u
#define IO_REC 160u
#define TENSOR_REC 168u
#define NODE_REC 104u
#define LAYER_REC 128u
#define ARCH_LEN 32u

/* Sane limits; anything larger is a corrupt count. */
#define MAX_IO 4096u
#define MAX_TENSORS (1u << 24)
#define MAX_NODES (1u << 24)

#define IO_CHUNK (16u << 20)	/* pread size of pkg_read_weights */
#define WRITE_BATCH (16u << 20) /* small layers are written in batches */

struct pkg {
	char *path;
	int fd;
	uint64_t weights_offset;
	uint64_t checksum;
	struct graph *g;
};

/* Decoded header. */
struct pkg_hdr {
	uint32_t version, header_size, header_crc, meta_crc;
	uint64_t file_size, meta_offset, meta_size, weights_offset, weights_size;
	uint32_t n_inputs, n_outputs, n_tensors, n_nodes, n_layers;
	uint8_t wdtype;
	int64_t max_seq, def_seq, max_batch;
	uint64_t n_params;
	char name[NAME_LEN], arch[ARCH_LEN];
};

static const uint8_t zero_page[4096];

/* ------------------------------------------------------ field encoding */

/* Copy a string field; false unless it holds a NUL and zeros after it. */
static bool get_str(struct rcur *c, char *dst, size_t len)
{
	size_t n = strnlen((const char *)c->p, len);
	bool ok = n < len && !memcmp(c->p + n, zero_page, len - n);

	memcpy(dst, c->p, len);
	dst[len - 1] = 0;
	c->p += len;
	return ok;
}

static bool all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len > sizeof(zero_page)) {
		if (memcmp(b, zero_page, sizeof(zero_page)))
			return false;
		b += sizeof(zero_page);
		len -= sizeof(zero_page);
	}
	return !memcmp(b, zero_page, len);
}

/* --------------------------------------------------------------- I/O */

/* Read up to len bytes at off; returns bytes read (short only at EOF). */
static int64_t pread_full(int fd, void *buf, uint64_t len, uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		done += (uint64_t)r;
	}
	return (int64_t)done;
}

static int pwrite_full(int fd, const void *buf, uint64_t len, uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		done += (uint64_t)r;
	}
	return 0;
}

/* ------------------------------------------------------------ layout */

static uint64_t meta_size_of(uint64_t n_io, uint64_t n_tensors, uint64_t n_nodes, uint64_t n_layers)
{
	return n_io * IO_REC + n_tensors * TENSOR_REC + n_nodes * NODE_REC + n_layers * LAYER_REC;
}

static uint64_t graph_meta_size(const struct graph *g)
{
	return meta_size_of((uint64_t)g->n_inputs + g->n_outputs, g->n_tensors, g->n_nodes,
			    g->n_layers);
}

/* ---------------------------------------------------------- header */

static void encode_header(uint8_t *b, const struct pkg_hdr *h)
{
	struct cur c = {b};

	memset(b, 0, HDR_SIZE);
	memcpy(c.p, PKG_MAGIC, 8);
	c.p += 8;
	put32(&c, h->version);
	put32(&c, h->header_size);
	put64(&c, h->file_size);
	put32(&c, 0); /* header_crc, filled in below */
	put32(&c, h->meta_crc);
	put64(&c, h->meta_offset);
	put64(&c, h->meta_size);
	put64(&c, h->weights_offset);
	put64(&c, h->weights_size);
	put32(&c, h->n_inputs);
	put32(&c, h->n_outputs);
	put32(&c, h->n_tensors);
	put32(&c, h->n_nodes);
	put32(&c, h->n_layers);
	put32(&c, h->wdtype);
	put64(&c, (uint64_t)h->max_seq);
	put64(&c, (uint64_t)h->def_seq);
	put64(&c, (uint64_t)h->max_batch);
	put64(&c, h->n_params);
	put_str(&c, h->name, NAME_LEN);
	put_str(&c, h->arch, ARCH_LEN);
	c.p = b + HDR_CRC_OFF;
	put32(&c, crc32c(0, b, HDR_SIZE));
}

/* Fields after magic and version; false if a padding byte or string is
 * malformed. */
static bool decode_header(const uint8_t *b, struct pkg_hdr *h)
{
	struct rcur c = {.p = b + 12};
	bool ok;

	h->header_size = get32(&c);
	h->file_size = get64(&c);
	h->header_crc = get32(&c);
	h->meta_crc = get32(&c);
	h->meta_offset = get64(&c);
	h->meta_size = get64(&c);
	h->weights_offset = get64(&c);
	h->weights_size = get64(&c);
	h->n_inputs = get32(&c);
	h->n_outputs = get32(&c);
	h->n_tensors = get32(&c);
	h->n_nodes = get32(&c);
	h->n_layers = get32(&c);
	h->wdtype = get8(&c);
	ok = !get8(&c) && !get16(&c);
	h->max_seq = (int64_t)get64(&c);
	h->def_seq = (int64_t)get64(&c);
	h->max_batch = (int64_t)get64(&c);
	h->n_params = get64(&c);
	ok &= get_str(&c, h->name, NAME_LEN);
	ok &= get_str(&c, h->arch, ARCH_LEN);
	return ok && all_zero(b + HDR_USED, HDR_SIZE - HDR_USED);
}

static uint32_t header_crc(const uint8_t *b)
{
	static const uint8_t zero4[4];
	uint32_t crc = crc32c(0, b, HDR_CRC_OFF);

	crc = crc32c(crc, zero4, 4);
	return crc32c(crc, b + HDR_CRC_OFF + 4, HDR_SIZE - HDR_CRC_OFF - 4);
}

/* ----------------------------------------------------------- records */

static void encode_io(struct cur *c, const struct io_desc *io)
{
	int d;

	put_str(c, io->name, NAME_LEN);
	put32(c, io->tensor);
	put8(c, io->dtype);
	put8(c, io->ndim);
	put8(c, io->flags);
	put8(c, 0);
	for (d = 0; d < MAX_DIMS; d++)
		put64(c, d < io->ndim ? (uint64_t)io->dims[d] : 0);
	put_f64(c, io->fill);
}

static bool decode_io(struct rcur *c, struct io_desc *io)
{
	bool ok = get_str(c, io->name, NAME_LEN);
	int d;

	io->tensor = get32(c);
	io->dtype = get8(c);
	io->ndim = get8(c);
	io->flags = get8(c);
	ok &= !get8(c);
	for (d = 0; d < MAX_DIMS; d++) {
		io->dims[d] = (int64_t)get64(c);
		ok &= d < io->ndim || !io->dims[d];
	}
	io->fill = get_f64(c);
	return ok;
}

static void encode_tensor(struct cur *c, const struct tensor *t)
{
	int d;

	put_str(c, t->name, NAME_LEN);
	put8(c, t->kind);
	put8(c, t->dtype);
	put8(c, t->ndim);
	put8(c, 0);
	put32(c, t->layer);
	for (d = 0; d < MAX_DIMS; d++)
		put64(c, d < t->ndim ? (uint64_t)t->dims[d] : 0);
	put64(c, t->offset);
	put64(c, t->nbytes);
}

static bool decode_tensor(struct rcur *c, struct tensor *t)
{
	bool ok = get_str(c, t->name, NAME_LEN);
	int d;

	t->kind = get8(c);
	t->dtype = get8(c);
	t->ndim = get8(c);
	ok &= !get8(c);
	t->layer = get32(c);
	for (d = 0; d < MAX_DIMS; d++) {
		t->dims[d] = (int64_t)get64(c);
		ok &= d < t->ndim || !t->dims[d];
	}
	t->offset = get64(c);
	t->nbytes = get64(c);
	return ok;
}

static void encode_node(struct cur *c, const struct node *nd)
{
	int k;

	put16(c, nd->op);
	put8(c, nd->n_in);
	put8(c, 0);
	put32(c, nd->out);
	put32(c, nd->layer);
	put32(c, 0);
	for (k = 0; k < NODE_MAX_IN; k++)
		put32(c, k < nd->n_in ? nd->in[k] : 0);
	for (k = 0; k < NODE_MAX_IA; k++)
		put64(c, (uint64_t)nd->ia[k]);
	for (k = 0; k < NODE_MAX_FA; k++)
		put_f32(c, nd->fa[k]);
}

static bool decode_node(struct rcur *c, struct node *nd)
{
	bool ok;
	int k;

	nd->op = get16(c);
	nd->n_in = get8(c);
	ok = !get8(c);
	nd->out = get32(c);
	nd->layer = get32(c);
	ok &= !get32(c);
	for (k = 0; k < NODE_MAX_IN; k++) {
		nd->in[k] = get32(c);
		ok &= k < nd->n_in || !nd->in[k];
	}
	for (k = 0; k < NODE_MAX_IA; k++)
		nd->ia[k] = (int64_t)get64(c);
	for (k = 0; k < NODE_MAX_FA; k++)
		nd->fa[k] = get_f32(c);
	return ok;
}

static void encode_layer(struct cur *c, const struct layer *ly)
{
	put_str(c, ly->name, NAME_LEN);
	put32(c, ly->node);
	put32(c, ly->crc);
	put64(c, ly->offset);
	put64(c, ly->nbytes);
	put64(c, ly->params);
}

static bool decode_layer(struct rcur *c, struct layer *ly)
{
	bool ok = get_str(c, ly->name, NAME_LEN);

	ly->node = get32(c);
	ly->crc = get32(c);
	ly->offset = get64(c);
	ly->nbytes = get64(c);
	ly->params = get64(c);
	return ok;
}

/* Meta section of g into b (graph_meta_size(g) bytes). */
static void encode_meta(uint8_t *b, const struct graph *g)
{
	struct cur c = {b};
	uint32_t i;

	for (i = 0; i < g->n_inputs; i++)
		encode_io(&c, &g->inputs[i]);
	for (i = 0; i < g->n_outputs; i++)
		encode_io(&c, &g->outputs[i]);
	for (i = 0; i < g->n_tensors; i++)
		encode_tensor(&c, &g->tensors[i]);
	for (i = 0; i < g->n_nodes; i++)
		encode_node(&c, &g->nodes[i]);
	for (i = 0; i < g->n_layers; i++)
		encode_layer(&c, &g->layers[i]);
	assert((uint64_t)(c.p - b) == graph_meta_size(g));
}

static int bad_rec(const char *path, const char *what, uint32_t i)
{
	return err_set(DPRT_EBADPKG,
		       "%s: %s record %u is malformed "
		       "(bad string or nonzero padding)",
		       path, what, i);
}

/* Decode the meta section into g, whose counts and arrays are set. */
static int decode_meta(const uint8_t *b, struct graph *g, const char *path)
{
	struct rcur c = {.p = b};
	uint32_t i;

	for (i = 0; i < g->n_inputs; i++)
		if (!decode_io(&c, &g->inputs[i]))
			return bad_rec(path, "input", i);
	for (i = 0; i < g->n_outputs; i++)
		if (!decode_io(&c, &g->outputs[i]))
			return bad_rec(path, "output", i);
	for (i = 0; i < g->n_tensors; i++)
		if (!decode_tensor(&c, &g->tensors[i]))
			return bad_rec(path, "tensor", i);
	for (i = 0; i < g->n_nodes; i++)
		if (!decode_node(&c, &g->nodes[i]))
			return bad_rec(path, "node", i);
	for (i = 0; i < g->n_layers; i++)
		if (!decode_layer(&c, &g->layers[i]))
			return bad_rec(path, "layer", i);
	assert((uint64_t)(c.p - b) == graph_meta_size(g));
	return 0;
}

/* ------------------------------------------------------ graph checks */

static int bad_graph(const char *path, const char *fmt, const char *what, uint32_t i)
{
	char msg[160];

	snprintf(msg, sizeof(msg), fmt, what, i);
	return err_set(DPRT_EBADPKG, "%s: %s", path, msg);
}

static bool valid_dtype(uint8_t dt)
{
	return dt > DT_NONE && dt < DT_COUNT;
}

static bool has_nul(const char *s, size_t len)
{
	return strnlen(s, len) < len;
}

static int check_counts(const struct graph *g, const char *path)
{
	if (g->n_inputs > MAX_IO || g->n_outputs > MAX_IO)
		return err_set(DPRT_EBADPKG, "%s: %u inputs and %u outputs exceed the limit of %u",
			       path, g->n_inputs, g->n_outputs, MAX_IO);
	if (g->n_tensors > MAX_TENSORS || g->n_nodes > MAX_NODES)
		return err_set(DPRT_EBADPKG, "%s: %u tensors and %u nodes exceed the limit of %u",
			       path, g->n_tensors, g->n_nodes, MAX_TENSORS);
	if (g->n_layers > g->n_nodes)
		return err_set(DPRT_EBADPKG, "%s: %u layers but only %u nodes", path, g->n_layers,
			       g->n_nodes);
	if (!has_nul(g->name, NAME_LEN) || !has_nul(g->arch, sizeof(g->arch)))
		return err_set(DPRT_EBADPKG, "%s: model name or arch is not a string", path);
	if (g->max_seq < 0 || g->def_seq < 0 || g->max_batch < 0)
		return err_set(DPRT_EBADPKG, "%s: negative sequence or batch limit", path);
	return 0;
}

static int check_io(const struct io_desc *io, uint32_t n, const char *what, const char *path)
{
	uint32_t i;

	for (i = 0; i < n; i++, io++) {
		if (!has_nul(io->name, NAME_LEN))
			return bad_graph(path, "%s %u has no valid name", what, i);
		if (!valid_dtype(io->dtype) || io->ndim > MAX_DIMS || io->flags & ~IO_OPTIONAL)
			return bad_graph(path, "%s %u has a bad dtype, rank or flags", what, i);
	}
	return 0;
}

static int check_tensors(const struct graph *g, const char *path)
{
	uint32_t i;

	for (i = 0; i < g->n_tensors; i++) {
		const struct tensor *t = &g->tensors[i];
		bool w = t->kind == TK_WEIGHT;

		if (!has_nul(t->name, NAME_LEN))
			return bad_graph(path, "%s %u has no valid name", "tensor", i);
		if (t->kind != TK_INPUT && !w && t->kind != TK_ACT)
			return bad_graph(path, "%s %u has an unknown kind", "tensor", i);
		if (!valid_dtype(t->dtype) || t->ndim > MAX_DIMS)
			return bad_graph(path, "%s %u has a bad dtype or rank", "tensor", i);
		if (w ? t->layer >= g->n_layers : (t->layer != NO_TENSOR || t->offset || t->nbytes))
			return bad_graph(path, "%s %u has a bad layer, offset or size", "tensor",
					 i);
	}
	return 0;
}

static bool tensor_id_ok(const struct graph *g, uint32_t t)
{
	return t < g->n_tensors;
}

static int check_nodes(const struct graph *g, const char *path)
{
	uint32_t i;
	int k;

	for (i = 0; i < g->n_nodes; i++) {
		const struct node *nd = &g->nodes[i];

		if (nd->op == OP_NONE || nd->op >= OP_COUNT)
			return bad_graph(path, "%s %u has an unknown op", "node", i);
		if (nd->n_in > NODE_MAX_IN || !tensor_id_ok(g, nd->out) ||
		    (nd->layer != NO_TENSOR && nd->layer >= g->n_layers))
			return bad_graph(path, "%s %u has a bad input count, output or layer",
					 "node", i);
		for (k = 0; k < nd->n_in; k++)
			if (nd->in[k] != NO_TENSOR && !tensor_id_ok(g, nd->in[k]))
				return bad_graph(path, "%s %u reads a tensor that does not exist",
						 "node", i);
	}
	return 0;
}

/* Layers contiguous from 0 as graph_finalize lays them out, each ending
 * where its last tensor ends, params consistent, weight region exactly
 * covering them. Runs after graph_validate (tensors inside their layers). */
static int check_layout(const struct graph *g, const char *path)
{
	uint64_t *params, *used, end = 0, total = 0;
	uint32_t i;
	int ret = 0;

	params = calloc(2 * (size_t)g->n_layers + 1, sizeof(*params));
	if (!params)
		return err_set(-ENOMEM, "%s: out of memory", path);
	used = params + g->n_layers;
	for (i = 0; i < g->n_tensors; i++) {
		const struct tensor *t = &g->tensors[i];
		uint64_t t_end;

		if (t->kind != TK_WEIGHT)
			continue;
		params[t->layer] += t->nbytes / dtype_size((enum dtype)t->dtype);
		t_end = t->offset + t->nbytes - g->layers[t->layer].offset;
		used[t->layer] = MAX(used[t->layer], t_end);
	}
	for (i = 0; i < g->n_layers && !ret; i++) {
		const struct layer *ly = &g->layers[i];

		if (ly->offset != ALIGN_UP(end, LAYER_ALIGN) || ly->nbytes != used[i])
			ret = bad_graph(path,
					"%s %u does not follow the previous one "
					"or does not end with its last weight",
					"layer", i);
		else if (ly->params != params[i])
			ret = bad_graph(path, "%s %u has a wrong parameter count", "layer", i);
		end = ly->offset + ly->nbytes;
		total += ly->params;
	}
	free(params);
	if (ret)
		return ret;
	if (g->weights_size != ALIGN_UP(end, LAYER_ALIGN) || g->n_params != total)
		return err_set(DPRT_EBADPKG,
			       "%s: weight region size or parameter count "
			       "does not match the layers",
			       path);
	return 0;
}

/* Everything the reader demands of a graph; the writer checks the same so
 * it never writes a file the reader refuses. */
static int check_graph(const struct graph *g, const char *path)
{
	int ret;

	ret = check_counts(g, path);
	if (!ret)
		ret = check_io(g->inputs, g->n_inputs, "input", path);
	if (!ret)
		ret = check_io(g->outputs, g->n_outputs, "output", path);
	if (!ret)
		ret = check_tensors(g, path);
	if (!ret)
		ret = check_nodes(g, path);
	if (!ret)
		ret = graph_validate(g, path);
	if (!ret)
		ret = check_layout(g, path);
	return ret;
}

/* ------------------------------------------------------------ reader */

static int check_magic(const uint8_t *b, uint64_t size, const char *path)
{
	uint32_t version;
	struct rcur c = {.p = b + 8};

	if (size == 0)
		return err_set(DPRT_EBADPKG, "%s: empty file, not a dprt package", path);
	if (size < 8 || memcmp(b, PKG_MAGIC, 8))
		return err_set(DPRT_EBADPKG, "%s: not a dprt package", path);
	if (size < HDR_SIZE)
		return err_set(DPRT_EBADPKG,
			       "%s: truncated: file has %llu bytes, "
			       "less than the %u-byte header",
			       path, (unsigned long long)size, HDR_SIZE);
	version = get32(&c);
	if (version != PKG_VERSION)
		return err_set(DPRT_EVERSION, "%s: format version %u, this dprt reads %u", path,
			       version, PKG_VERSION);
	return 0;
}

static int check_header(const uint8_t *b, struct pkg_hdr *h, uint64_t size, const char *path)
{
	bool ok = decode_header(b, h);
	uint64_t meta_end;

	if (h->header_crc != header_crc(b))
		return err_set(DPRT_EBADPKG, "%s: header is corrupt: checksum mismatch", path);
	if (!ok || h->header_size != HDR_SIZE)
		return err_set(DPRT_EBADPKG, "%s: header is malformed", path);
	if (h->file_size != size)
		return err_set(DPRT_EBADPKG, "%s: %s: file has %llu bytes, header says %llu", path,
			       size < h->file_size ? "truncated" : "trailing bytes",
			       (unsigned long long)size, (unsigned long long)h->file_size);
	if (h->n_inputs > MAX_IO || h->n_outputs > MAX_IO || h->n_tensors > MAX_TENSORS ||
	    h->n_nodes > MAX_NODES || h->n_layers > h->n_nodes)
		return err_set(DPRT_EBADPKG,
			       "%s: table sizes out of range (%u inputs, "
			       "%u outputs, %u tensors, %u nodes, %u layers)",
			       path, h->n_inputs, h->n_outputs, h->n_tensors, h->n_nodes,
			       h->n_layers);
	if (h->meta_offset != HDR_SIZE ||
	    h->meta_size != meta_size_of((uint64_t)h->n_inputs + h->n_outputs, h->n_tensors,
					 h->n_nodes, h->n_layers))
		return err_set(DPRT_EBADPKG,
			       "%s: meta section at %llu, %llu bytes, does not "
			       "match the table sizes",
			       path, (unsigned long long)h->meta_offset,
			       (unsigned long long)h->meta_size);
	meta_end = h->meta_offset + h->meta_size; /* both bounded: no overflow */
	if (meta_end > size || h->weights_offset != ALIGN_UP(meta_end, HDR_SIZE) ||
	    h->weights_offset > size || h->weights_size != size - h->weights_offset ||
	    h->weights_size % LAYER_ALIGN)
		return err_set(DPRT_EBADPKG,
			       "%s: weight region at %llu, %llu bytes, does not "
			       "fit the file",
			       path, (unsigned long long)h->weights_offset,
			       (unsigned long long)h->weights_size);
	return 0;
}

static struct graph *graph_alloc(const struct pkg_hdr *h)
{
	struct graph *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	memcpy(g->name, h->name, NAME_LEN);
	memcpy(g->arch, h->arch, ARCH_LEN);
	g->wdtype = h->wdtype;
	g->max_seq = h->max_seq;
	g->def_seq = h->def_seq;
	g->max_batch = h->max_batch;
	g->weights_size = h->weights_size;
	g->n_params = h->n_params;
	g->open_layer = NO_TENSOR;
	g->n_inputs = g->cap_io_in = h->n_inputs;
	g->n_outputs = g->cap_io_out = h->n_outputs;
	g->n_tensors = g->cap_tensors = h->n_tensors;
	g->n_nodes = g->cap_nodes = h->n_nodes;
	g->n_layers = g->cap_layers = h->n_layers;
	g->inputs = calloc(h->n_inputs + 1u, sizeof(*g->inputs));
	g->outputs = calloc(h->n_outputs + 1u, sizeof(*g->outputs));
	g->tensors = calloc(h->n_tensors + 1u, sizeof(*g->tensors));
	g->nodes = calloc(h->n_nodes + 1u, sizeof(*g->nodes));
	g->layers = calloc(h->n_layers + 1u, sizeof(*g->layers));
	if (g->inputs && g->outputs && g->tensors && g->nodes && g->layers)
		return g;
	graph_destroy(g);
	return NULL;
}

/* Read the meta section and its padding into b; check CRC and zeros. */
static int read_meta(const struct pkg *p, const struct pkg_hdr *h, uint8_t *b, uint64_t len)
{
	int64_t r = pread_full(p->fd, b, len, h->meta_offset);

	if (r < 0)
		return err_set((int)r, "%s: cannot read the meta section: %s", p->path,
			       dprt_strerror((int)r));
	if ((uint64_t)r != len)
		return err_set(DPRT_EBADPKG,
			       "%s: truncated while reading the meta section "
			       "(file shrank)",
			       p->path);
	if (crc32c(0, b, h->meta_size) != h->meta_crc)
		return err_set(DPRT_EBADPKG, "%s: meta section is corrupt: checksum mismatch",
			       p->path);
	if (!all_zero(b + h->meta_size, len - h->meta_size))
		return err_set(DPRT_EBADPKG, "%s: nonzero padding after the meta section", p->path);
	return 0;
}

/* Identity: header bytes, meta bytes, then each layer CRC (LE). */
static uint64_t checksum_of(const struct graph *g, const uint8_t *hdr, const uint8_t *meta,
			    uint64_t meta_size)
{
	uint64_t h = hash64(HASH64_INIT, hdr, HDR_SIZE);
	uint32_t i;

	h = hash64(h, meta, meta_size);
	for (i = 0; i < g->n_layers; i++) {
		uint8_t le[4];
		struct cur c = {le};

		put32(&c, g->layers[i].crc);
		h = hash64(h, le, sizeof(le));
	}
	return h;
}

/* Read, check and decode the meta section into p->g. */
static int load_meta(struct pkg *p, const struct pkg_hdr *h, const uint8_t *hdr)
{
	uint64_t len = h->weights_offset - h->meta_offset;
	uint8_t *b = malloc(len ? len : 1);
	int ret;

	if (!b)
		return err_set(-ENOMEM, "%s: out of memory", p->path);
	ret = read_meta(p, h, b, len);
	if (ret)
		goto out_free;
	p->g = graph_alloc(h);
	if (!p->g) {
		ret = err_set(-ENOMEM, "%s: out of memory for the graph", p->path);
		goto out_free;
	}
	ret = decode_meta(b, p->g, p->path);
	if (!ret)
		ret = check_graph(p->g, p->path);
	if (!ret)
		p->checksum = checksum_of(p->g, hdr, b, h->meta_size);
out_free:
	free(b);
	return ret;
}

static int open_file(struct pkg *p, uint64_t *size)
{
	struct stat st;
	int fd;

	fd = open(p->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return err_set(-errno, "%s: %s", p->path, strerror(errno));
	p->fd = fd;
	if (fstat(fd, &st))
		return err_set(-errno, "%s: %s", p->path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return err_set(DPRT_EBADPKG, "%s: is a directory, not a dprt package", p->path);
	if (!S_ISREG(st.st_mode))
		return err_set(DPRT_EBADPKG, "%s: not a regular file", p->path);
	if (fcntl(fd, F_SETFL, 0))
		return err_set(-errno, "%s: %s", p->path, strerror(errno));
	*size = (uint64_t)st.st_size;
	return 0;
}

/* Open path, validate header and tables. On error *out = NULL and err_msg
 * names the file and the problem. Any thread. */
int pkg_open(const char *path, struct pkg **out)
{
	uint8_t hdr[HDR_SIZE];
	struct pkg_hdr h;
	struct pkg *p;
	uint64_t size = 0;
	int64_t r;
	int ret;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p || !(p->path = strdup(path))) {
		free(p);
		return err_set(-ENOMEM, "%s: out of memory", path);
	}
	p->fd = -1;
	ret = open_file(p, &size);
	if (ret)
		goto out_close;
	r = pread_full(p->fd, hdr, MIN(size, (uint64_t)HDR_SIZE), 0);
	if (r < 0) {
		ret = err_set((int)r, "%s: %s", path, dprt_strerror((int)r));
		goto out_close;
	}
	ret = check_magic(hdr, (uint64_t)r, path);
	if (!ret)
		ret = check_header(hdr, &h, size, path);
	if (!ret)
		ret = load_meta(p, &h, hdr);
	if (ret)
		goto out_close;
	p->weights_offset = h.weights_offset;
	*out = p;
	return 0;
out_close:
	pkg_close(p);
	return ret;
}

/* Close a package from pkg_open (NULL is fine); frees its graph. */
void pkg_close(struct pkg *p)
{
	if (!p)
		return;
	if (p->fd >= 0)
		close(p->fd);
	graph_destroy(p->g);
	free(p->path);
	free(p);
}

/* The decoded graph; valid until pkg_close. */
const struct graph *pkg_graph(const struct pkg *p)
{
	return p->g;
}

struct graph *pkg_take_graph(struct pkg *p)
{
	struct graph *g = p->g;

	p->g = NULL;
	return g;
}

/* The path the package was opened with. */
const char *pkg_path(const struct pkg *p)
{
	return p->path;
}

/* Identity of the package (plans are keyed by it). */
uint64_t pkg_checksum(const struct pkg *p)
{
	return p->checksum;
}

/* The open descriptor; owned by the package, do not close. */
int pkg_fd(const struct pkg *p)
{
	return p->fd;
}

/* File offset of the weight region (a multiple of 4096). */
uint64_t pkg_weights_offset(const struct pkg *p)
{
	return p->weights_offset;
}

static int corrupt(const struct pkg *p, uint32_t l, const char *why)
{
	return err_set(DPRT_EBADPKG, "%s: layer %u (%s) is corrupt: %s", p->path, l,
		       p->g->layers[l].name, why);
}

/* Check one layer's CRC against its bytes in the region at base. Any
 * thread. 0, DPRT_EBADPKG or -EINVAL (no such layer), with err_set. */
int pkg_verify_layer(const struct pkg *p, uint32_t layer, const void *region)
{
	const struct layer *ly;
	uint64_t end;

	if (layer >= p->g->n_layers)
		return err_set(-EINVAL, "%s: no layer %u (the model has %u)", p->path, layer,
			       p->g->n_layers);
	ly = &p->g->layers[layer];
	end = ly->offset + ly->nbytes;
	if (crc32c(0, (const uint8_t *)region + ly->offset, ly->nbytes) != ly->crc)
		return corrupt(p, layer, "checksum mismatch");
	if (!all_zero((const uint8_t *)region + end, ALIGN_UP(end, LAYER_ALIGN) - end))
		return corrupt(p, layer, "nonzero padding after its weights");
	return 0;
}

/* Verify layers *next.. whose padded range lies inside the first done
 * bytes of the region. */
static int verify_upto(const struct pkg *p, const uint8_t *region, uint64_t done, uint32_t *next)
{
	const struct graph *g = p->g;
	int ret;

	while (*next < g->n_layers) {
		const struct layer *ly = &g->layers[*next];
		uint64_t end = ly->offset + ly->nbytes;
		uint64_t pad_end = ALIGN_UP(end, LAYER_ALIGN);

		if (pad_end > done)
			break;
		ret = pkg_verify_layer(p, *next, region);
		if (ret)
			return ret;
		(*next)++;
	}
	return 0;
}

/* Read the weight region into dst (g->weights_size bytes) and check every
 * layer. Any thread (pread). 0, DPRT_EBADPKG or -errno, with err_set. */
int pkg_read_weights(struct pkg *p, void *dst)
{
	uint64_t size = p->g->weights_size, done = 0;
	uint32_t next = 0;
	int ret;

	while (done < size) {
		uint64_t n = MIN((uint64_t)IO_CHUNK, size - done);
		int64_t r = pread_full(p->fd, (uint8_t *)dst + done, n, p->weights_offset + done);

		if (r < 0)
			return err_set((int)r, "%s: reading weights: %s", p->path,
				       dprt_strerror((int)r));
		if ((uint64_t)r != n)
			return err_set(DPRT_EBADPKG,
				       "%s: truncated while reading weights "
				       "(file shrank since it was opened)",
				       p->path);
		done += n;
		ret = verify_upto(p, dst, done, &next);
		if (ret)
			return ret;
	}
	return 0;
}

/* ------------------------------------------------------------ writer */

struct wref {
	uint64_t off;
	uint32_t id;
};

static int wref_cmp(const void *a, const void *b)
{
	const struct wref *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

struct writer {
	const char *path;
	struct graph *g;
	int fd;
	uint64_t woff;	   /* file offset of the weight region */
	struct wref *refs; /* weight tensors sorted by offset: grouped by layer */
	uint32_t n_refs, ref;
	uint8_t *buf; /* batch of consecutive layers */
	uint64_t cap, batch_off, batch_len;
	pkg_fill_fn fill;
	void *ctx;
};

static int writer_refs(struct writer *w)
{
	const struct graph *g = w->g;
	uint32_t t;

	w->refs = malloc(sizeof(*w->refs) * (g->n_tensors + 1u));
	if (!w->refs)
		return err_set(-ENOMEM, "%s: out of memory", w->path);
	for (t = 0; t < g->n_tensors; t++) {
		if (g->tensors[t].kind != TK_WEIGHT)
			continue;
		w->refs[w->n_refs].off = g->tensors[t].offset;
		w->refs[w->n_refs++].id = t;
	}
	qsort(w->refs, w->n_refs, sizeof(*w->refs), wref_cmp);
	return 0;
}

static int writer_buf(struct writer *w)
{
	uint64_t cap = WRITE_BATCH;
	uint32_t l;
	void *p;

	for (l = 0; l < w->g->n_layers; l++)
		cap = MAX(cap, ALIGN_UP(w->g->layers[l].nbytes, LAYER_ALIGN));
	if (cap > SIZE_MAX || posix_memalign(&p, LAYER_ALIGN, (size_t)cap))
		return err_set(-ENOMEM, "%s: out of memory for a %llu-byte layer buffer", w->path,
			       (unsigned long long)cap);
	w->buf = p;
	w->cap = cap;
	return 0;
}

static int writer_flush(struct writer *w)
{
	int ret;

	if (!w->batch_len)
		return 0;
	ret = pwrite_full(w->fd, w->buf, w->batch_len, w->woff + w->batch_off);
	if (ret)
		return err_set(ret, "%s: writing weights: %s", w->path, dprt_strerror(ret));
	w->batch_len = 0;
	return 0;
}

static int fill_one(struct writer *w, uint32_t t, uint8_t *dst)
{
	int ret;

	err_clear();
	ret = w->fill(w->ctx, w->g, t, dst);
	if (ret >= 0)
		return 0;
	if (err_msg(0) == dprt_strerror(0)) /* the filler left no message */
		err_set(ret, "%s: cannot get weight %s: %s", w->path, w->g->tensors[t].name,
			dprt_strerror(ret));
	return ret;
}

/* Fill layer l into dst: weights from the filler, zeros elsewhere. */
static int writer_layer(struct writer *w, uint32_t l, uint8_t *dst)
{
	const struct layer *ly = &w->g->layers[l];
	uint64_t pos = 0, padded = ALIGN_UP(ly->nbytes, LAYER_ALIGN);
	int ret;

	while (w->ref < w->n_refs && w->g->tensors[w->refs[w->ref].id].layer == l) {
		const struct tensor *t = &w->g->tensors[w->refs[w->ref++].id];
		uint64_t at = t->offset - ly->offset;

		if (at > pos)
			memset(dst + pos, 0, at - pos);
		ret = fill_one(w, (uint32_t)(t - w->g->tensors), dst + at);
		if (ret)
			return ret;
		pos = MAX(pos, at + t->nbytes);
	}
	memset(dst + pos, 0, padded - pos);
	w->g->layers[l].crc = crc32c(0, dst, ly->nbytes);
	return 0;
}

static int writer_weights(struct writer *w)
{
	uint32_t l;
	int ret;

	for (l = 0; l < w->g->n_layers; l++) {
		const struct layer *ly = &w->g->layers[l];
		uint64_t padded = ALIGN_UP(ly->nbytes, LAYER_ALIGN);

		if (w->batch_len + padded > w->cap) {
			ret = writer_flush(w);
			if (ret)
				return ret;
		}
		if (!w->batch_len)
			w->batch_off = ly->offset;
		ret = writer_layer(w, l, w->buf + w->batch_len);
		if (ret)
			return ret;
		w->batch_len += padded;
	}
	return writer_flush(w);
}

/* Meta section (and its zero padding) and the header. */
static int writer_tables(struct writer *w, struct pkg_hdr *h)
{
	uint64_t len = h->weights_offset - h->meta_offset;
	uint8_t *b = calloc(len ? len : 1, 1);
	uint8_t hdr[HDR_SIZE];
	int ret;

	if (!b)
		return err_set(-ENOMEM, "%s: out of memory", w->path);
	encode_meta(b, w->g);
	h->meta_crc = crc32c(0, b, h->meta_size);
	encode_header(hdr, h);
	ret = pwrite_full(w->fd, b, len, h->meta_offset);
	if (!ret)
		ret = pwrite_full(w->fd, hdr, HDR_SIZE, 0);
	free(b);
	if (ret)
		return err_set(ret, "%s: writing tables: %s", w->path, dprt_strerror(ret));
	return 0;
}

static void header_of(const struct graph *g, struct pkg_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->version = PKG_VERSION;
	h->header_size = HDR_SIZE;
	h->meta_offset = HDR_SIZE;
	h->meta_size = graph_meta_size(g);
	h->weights_offset = ALIGN_UP(h->meta_offset + h->meta_size, HDR_SIZE);
	h->weights_size = g->weights_size;
	h->file_size = h->weights_offset + h->weights_size;
	h->n_inputs = g->n_inputs;
	h->n_outputs = g->n_outputs;
	h->n_tensors = g->n_tensors;
	h->n_nodes = g->n_nodes;
	h->n_layers = g->n_layers;
	h->wdtype = g->wdtype;
	h->max_seq = g->max_seq;
	h->def_seq = g->def_seq;
	h->max_batch = g->max_batch;
	h->n_params = g->n_params;
	memcpy(h->name, g->name, NAME_LEN);
	memcpy(h->arch, g->arch, ARCH_LEN);
}

static int writer_run(struct writer *w, struct pkg_hdr *h)
{
	int ret;

	if (ftruncate(w->fd, (off_t)h->file_size))
		return err_set(-errno, "%s: %s", w->path, strerror(errno));
	ret = writer_refs(w);
	if (!ret)
		ret = writer_buf(w);
	if (!ret)
		ret = writer_weights(w);
	if (!ret)
		ret = writer_tables(w, h);
	/* No fsync: rename makes the name appear only for a complete file,
	 * and a file torn by a power cut is refused by the reader, whose
	 * checksums cover every byte. Syncing would tie zoo builds to disk
	 * speed instead of memory speed. */
	return ret;
}

/* Write finalized graph g and its weights (from fill) to path: a temp file
 * in the same directory, then rename. Stores each layer's CRC in g.
 * Not thread-safe per graph. 0 or negative code with err_set. */
int pkg_write(const char *path, struct graph *g, pkg_fill_fn fill, void *ctx)
{
	struct writer w = {.path = path, .g = g, .fd = -1, .fill = fill, .ctx = ctx};
	struct pkg_hdr h;
	char tmp[4096];
	int ret;

	if (!fill)
		return err_set(-EINVAL, "%s: no weight source", path);
	ret = check_graph(g, path);
	if (ret)
		return ret;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
		return err_set(-ENAMETOOLONG, "%s: path too long", path);
	header_of(g, &h);
	w.woff = h.weights_offset;
	w.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (w.fd < 0)
		return err_set(-errno, "%s: %s", tmp, strerror(errno));
	ret = writer_run(&w, &h);
	if (close(w.fd) && !ret)
		ret = err_set(-errno, "%s: close: %s", tmp, strerror(errno));
	if (!ret && rename(tmp, path))
		ret = err_set(-errno, "%s: rename: %s", path, strerror(errno));
	if (ret)
		goto out_unlink;
	goto out_free;
out_unlink:
	unlink(tmp);
out_free:
	free(w.buf);
	free(w.refs);
	return ret;
}
