/* SPDX-License-Identifier: MIT */
/*
 * Profile files (*.dpprof) and plan files (*.dpp): writers, readers, the
 * plan's invariants, its key, and the plan repository.
 *
 * Format version 1. All integers little-endian; a double is its IEEE-754
 * bit pattern stored as u64. Every field is written and read one by one; no
 * C struct is dumped. A string is a fixed-size field holding a NUL and only
 * zero bytes after it. Reserved bytes and padding are zero.
 *
 * Header (512 bytes) of both kinds; bytes 408..511 reserved:
 *     0  magic[8]          "DPRTPRF\0" (profile) or "DPRTPLN\0" (plan)
 *     8  version u32       1
 *    12  header_size u32   512
 *    16  file_size u64     512 + n_layers * record size
 *    24  crc u32           CRC32C of the whole file with this field zero
 *    28  n_layers u32      1..PLAN_MAX_LAYERS
 *    32  pkg_checksum u64
 *    40  flags u32         PLAN_F_*
 *    44  n_gpus u32        profile: GPUs measured; plan: GPUs planned for
 *    48  h2d_bw f64, 56 peer_bw f64, 64 peer_lat_ns u64, 72 xfer_ovh_ns u64
 *    80  dha_copy_share f64, 88 dha_read_share f64
 *    96  agg_bw[16] f64
 *   224  gpu[64], 288 model[96]
 *   plan only (zero in a profile):
 *   384  mode u32, 388 width u32, 392 total_ns f64, 400 stall_ns f64
 *
 * Then n_layers records, in layer order:
 *   profile layer (136): name[96] op u16 zero u16 zero u32 bytes u64
 *                        load_ns u64 exec_ns u64 dha_ns u64
 *   plan row (176):      the profile layer record, then place u8 zero[3]
 *                        link u32 order u32 zero u32 arrival_ns f64
 *                        start_ns f64 end_ns f64
 *
 * The readers check the magic, version, sizes (truncation and trailing
 * bytes), the CRC, every zero field, then plan_profile_validate or
 * plan_validate; the writers validate first, so they never write a file the
 * readers refuse.
 */
#include "plan.h"
#include "base/lebuf.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROF_MAGIC "DPRTPRF\0"
#define PLAN_MAGIC "DPRTPLN\0"
#define FILE_VERSION 1u
#define HDR_SIZE 512u
#define HDR_USED 408u
#define HDR_CRC_OFF 24u
#define PLAN_FIELDS_OFF 384u
#define LAYER_REC 136u
#define ROW_REC 176u

enum file_kind { KIND_PROFILE, KIND_PLAN };

struct kind_info {
	const char *magic, *what;
	uint32_t rec;
};

static const struct kind_info kinds[] = {
	[KIND_PROFILE] = {PROF_MAGIC, "profile", LAYER_REC},
	[KIND_PLAN] = {PLAN_MAGIC, "plan", ROW_REC},
};

/* ------------------------------------------------------ field encoding */

/* Skip n bytes that must be zero. */
static void get_zero(struct rcur *c, size_t n)
{
	while (n--)
		c->nonzero |= get8(c) != 0;
}

/* A string field: a NUL, then only zeros (else it is left unterminated
 * for the validators to refuse). */
static void get_str(struct rcur *c, char *s, size_t len)
{
	size_t n;

	memcpy(s, c->p, len);
	c->p += len;
	n = strnlen(s, len);
	if (n < len)
		for (; n < len; n++)
			c->nonzero |= s[n] != 0;
}

/* ------------------------------------------------------------ records */

static void put_header(struct cur *c, const struct plan_profile *pf, enum file_kind k,
		       uint64_t file_size)
{
	const struct plan_links *lk = &pf->link;
	uint32_t i;

	memcpy(c->p, kinds[k].magic, 8);
	c->p += 8;
	put32(c, FILE_VERSION);
	put32(c, HDR_SIZE);
	put64(c, file_size);
	put32(c, 0); /* crc, filled last */
	put32(c, pf->n_layers);
	put64(c, pf->pkg_checksum);
	put32(c, pf->flags);
	put32(c, lk->n_gpus);
	put_f64(c, lk->h2d_bw);
	put_f64(c, lk->peer_bw);
	put64(c, lk->peer_lat_ns);
	put64(c, lk->xfer_ovh_ns);
	put_f64(c, lk->dha_copy_share);
	put_f64(c, lk->dha_read_share);
	for (i = 0; i < PLAN_MAX_GPUS; i++)
		put_f64(c, lk->agg_bw[i]);
	put_str(c, pf->gpu, PLAN_GPU_LEN);
	put_str(c, pf->model, NAME_LEN);
}

static void get_header(struct rcur *c, struct plan_profile *pf)
{
	struct plan_links *lk = &pf->link;
	uint32_t i;

	c->p += 28; /* magic, version, sizes, crc: checked by check_frame */
	pf->n_layers = get32(c);
	pf->pkg_checksum = get64(c);
	pf->flags = get32(c);
	lk->n_gpus = get32(c);
	lk->h2d_bw = get_f64(c);
	lk->peer_bw = get_f64(c);
	lk->peer_lat_ns = get64(c);
	lk->xfer_ovh_ns = get64(c);
	lk->dha_copy_share = get_f64(c);
	lk->dha_read_share = get_f64(c);
	for (i = 0; i < PLAN_MAX_GPUS; i++)
		lk->agg_bw[i] = get_f64(c);
	get_str(c, pf->gpu, PLAN_GPU_LEN);
	get_str(c, pf->model, NAME_LEN);
}

static void put_layer(struct cur *c, const struct plan_layer_prof *lp)
{
	put_str(c, lp->name, NAME_LEN);
	put16(c, lp->op);
	put16(c, 0);
	put32(c, 0);
	put64(c, lp->bytes);
	put64(c, lp->load_ns);
	put64(c, lp->exec_ns);
	put64(c, lp->dha_ns);
}

static void get_layer(struct rcur *c, struct plan_layer_prof *lp)
{
	get_str(c, lp->name, NAME_LEN);
	lp->op = get16(c);
	get_zero(c, 6);
	lp->bytes = get64(c);
	lp->load_ns = get64(c);
	lp->exec_ns = get64(c);
	lp->dha_ns = get64(c);
}

static void put_row(struct cur *c, const struct plan_row *r)
{
	put8(c, r->place);
	put8(c, 0);
	put16(c, 0);
	put32(c, r->link);
	put32(c, r->order);
	put32(c, 0);
	put_f64(c, r->arrival_ns);
	put_f64(c, r->start_ns);
	put_f64(c, r->end_ns);
}

static void get_row(struct rcur *c, struct plan_row *r)
{
	r->place = get8(c);
	get_zero(c, 3);
	r->link = get32(c);
	r->order = get32(c);
	get_zero(c, 4);
	r->arrival_ns = get_f64(c);
	r->start_ns = get_f64(c);
	r->end_ns = get_f64(c);
}

/* ------------------------------------------------------------- writing */

static int write_full(int fd, const uint8_t *b, size_t len, const char *path)
{
	ssize_t w;

	while (len) {
		w = write(fd, b, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return err_set(-errno, "%s: write: %s", path, strerror(errno));
		b += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Write b to path through a temporary file in the same directory. */
static int write_atomic(const char *path, const uint8_t *b, size_t len)
{
	char tmp[4096];
	int fd, ret;

	/* pid and thread: the workers of one server may store one plan at once */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%lx", path, (long)getpid(),
			     (unsigned long)pthread_self()) >= sizeof(tmp))
		return err_set(-ENAMETOOLONG, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(-errno, "%s: %s", tmp, strerror(errno));
	ret = write_full(fd, b, len, tmp);
	if (close(fd) && !ret)
		ret = err_set(-errno, "%s: close: %s", tmp, strerror(errno));
	if (!ret && rename(tmp, path))
		ret = err_set(-errno, "%s: rename: %s", path, strerror(errno));
	if (ret)
		unlink(tmp);
	return ret;
}

/* Header + records of pf (and p, for a plan) into a new buffer. */
static uint8_t *encode(const struct plan_profile *pf, const struct plan *p, size_t *len)
{
	enum file_kind k = p ? KIND_PLAN : KIND_PROFILE;
	size_t size = HDR_SIZE + (size_t)pf->n_layers * kinds[k].rec;
	uint8_t *b = calloc(1, size);
	struct cur c = {b};
	uint32_t i, crc;

	if (!b)
		return NULL;
	put_header(&c, pf, k, size);
	if (p) {
		put32(&c, p->mode);
		put32(&c, p->width);
		put_f64(&c, p->total_ns);
		put_f64(&c, p->stall_ns);
	}
	c.p = b + HDR_SIZE;
	for (i = 0; i < pf->n_layers; i++) {
		put_layer(&c, &pf->layers[i]);
		if (p)
			put_row(&c, &p->rows[i]);
	}
	crc = crc32c(0, b, size);
	c.p = b + HDR_CRC_OFF;
	put32(&c, crc);
	*len = size;
	return b;
}

static int write_file(const char *path, const struct plan_profile *pf, const struct plan *p)
{
	size_t len;
	uint8_t *b = encode(pf, p, &len);
	int ret;

	if (!b)
		return err_set(-ENOMEM, "%s: out of memory", path);
	ret = write_atomic(path, b, len);
	free(b);
	return ret;
}

/* Write a profile file (validated first). Any thread. */
int plan_profile_write(const char *path, const struct plan_profile *pf)
{
	int ret = plan_profile_validate(pf, path);

	return ret ? ret : write_file(path, pf, NULL);
}

/* Write a plan file (validated first). Any thread. */
int plan_write(const char *path, const struct plan *p)
{
	int ret = plan_validate(p, path);

	return ret ? ret : write_file(path, &p->prof, p);
}

/* ------------------------------------------------------------- reading */

static int read_full(int fd, uint8_t *b, size_t len, const char *path)
{
	ssize_t r;
	size_t got = 0;

	while (got < len) {
		r = pread(fd, b + got, len - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return err_set(-errno, "%s: read: %s", path, strerror(errno));
		if (r == 0)
			return err_set(DPRT_EBADPLAN, "%s: truncated while reading (file shrank)",
				       path);
		got += (size_t)r;
	}
	return 0;
}

/* Magic, version, header size, layer count, exact file size. */
static int check_frame(const uint8_t *b, uint64_t size, enum file_kind k, const char *path)
{
	const char *what = kinds[k].what;
	struct rcur c = {b + 8, false};
	uint32_t version, hsize, n;
	uint64_t fsize, want;

	if (size == 0)
		return err_set(DPRT_EBADPLAN, "%s: empty file, not a dprt %s", path, what);
	if (size < 8 || memcmp(b, kinds[k].magic, 8))
		return err_set(DPRT_EBADPLAN, "%s: not a dprt %s file", path, what);
	if (size < 32)
		return err_set(DPRT_EBADPLAN, "%s: truncated: %llu bytes, less than a header", path,
			       (unsigned long long)size);
	version = get32(&c);
	if (version != FILE_VERSION)
		return err_set(DPRT_EVERSION, "%s: %s format version %u, this dprt reads %u", path,
			       what, version, FILE_VERSION);
	hsize = get32(&c);
	fsize = get64(&c);
	c.p += 4;
	n = get32(&c);
	if (hsize != HDR_SIZE || !n || n > PLAN_MAX_LAYERS)
		return err_set(DPRT_EBADPLAN, "%s: header is malformed (size %u, %u layers)", path,
			       hsize, n);
	want = HDR_SIZE + (uint64_t)n * kinds[k].rec;
	if (fsize != want || size != want)
		return err_set(DPRT_EBADPLAN, "%s: %s: file has %llu bytes, %u layers need %llu",
			       path, size < want ? "truncated" : "wrong size",
			       (unsigned long long)size, n, (unsigned long long)want);
	return 0;
}

static int check_crc(uint8_t *b, size_t size, const char *path)
{
	struct rcur c = {b + HDR_CRC_OFF, false};
	uint32_t stored = get32(&c);

	memset(b + HDR_CRC_OFF, 0, 4);
	if (crc32c(0, b, size) != stored)
		return err_set(DPRT_EBADPLAN, "%s: corrupt: checksum mismatch", path);
	return 0;
}

/* Open path and read it whole, checking frame and CRC. */
static int load(const char *path, enum file_kind k, uint8_t **out, size_t *len)
{
	uint8_t head[HDR_SIZE] = {0}, *b;
	struct stat st;
	size_t size, n;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(-errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st)) {
		ret = err_set(-errno, "%s: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = err_set(DPRT_EBADPLAN, "%s: not a regular file", path);
		goto out_close;
	}
	size = (size_t)st.st_size;
	n = MIN(size, (size_t)HDR_SIZE);
	ret = read_full(fd, head, n, path);
	if (!ret)
		ret = check_frame(head, size, k, path);
	if (ret)
		goto out_close;
	b = malloc(size);
	if (!b) {
		ret = err_set(-ENOMEM, "%s: out of memory", path);
		goto out_close;
	}
	ret = read_full(fd, b, size, path);
	if (!ret)
		ret = check_crc(b, size, path);
	if (ret) {
		free(b);
		goto out_close;
	}
	*out = b;
	*len = size;
out_close:
	close(fd);
	return ret;
}

/* Decode the layer records (and plan rows) after the header. */
static bool decode_records(const uint8_t *b, struct plan_profile *pf, struct plan_row *rows)
{
	struct rcur c = {b + HDR_SIZE, false};
	uint32_t i;

	for (i = 0; i < pf->n_layers; i++) {
		get_layer(&c, &pf->layers[i]);
		if (rows)
			get_row(&c, &rows[i]);
	}
	return !c.nonzero;
}

/* Read and validate a profile file. Any thread. */
int plan_profile_read(const char *path, struct plan_profile **out)
{
	struct plan_profile hdr = {0}, *pf = NULL;
	struct rcur c;
	uint8_t *b;
	size_t len;
	int ret;

	*out = NULL;
	ret = load(path, KIND_PROFILE, &b, &len);
	if (ret)
		return ret;
	c = (struct rcur){b, false};
	get_header(&c, &hdr);
	get_zero(&c, HDR_SIZE - PLAN_FIELDS_OFF);
	ret = plan_profile_create(hdr.n_layers, &pf);
	if (ret)
		goto out_free;
	hdr.layers = pf->layers;
	*pf = hdr;
	if (!decode_records(b, pf, NULL) || c.nonzero)
		ret = err_set(DPRT_EBADPLAN, "%s: nonzero reserved bytes or padding", path);
	if (!ret)
		ret = plan_profile_validate(pf, path);
	if (ret) {
		plan_profile_destroy(pf);
		goto out_free;
	}
	*out = pf;
out_free:
	free(b);
	return ret;
}

/* An empty plan of n rows, for the reader. */
static struct plan *plan_alloc(uint32_t n)
{
	struct plan *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->prof.layers = calloc(n, sizeof(*p->prof.layers));
	p->rows = calloc(n, sizeof(*p->rows));
	if (p->prof.layers && p->rows)
		return p;
	plan_destroy(p);
	return NULL;
}

/* Read and validate a plan file. Any thread. */
int plan_read(const char *path, struct plan **out)
{
	struct plan_profile hdr = {0};
	struct plan *p;
	struct rcur c;
	uint8_t *b;
	size_t len;
	int ret;

	*out = NULL;
	ret = load(path, KIND_PLAN, &b, &len);
	if (ret)
		return ret;
	c = (struct rcur){b, false};
	get_header(&c, &hdr);
	p = plan_alloc(hdr.n_layers);
	if (!p) {
		ret = err_set(-ENOMEM, "%s: out of memory for %u layers", path, hdr.n_layers);
		goto out_free;
	}
	hdr.layers = p->prof.layers;
	p->prof = hdr;
	p->mode = get32(&c);
	p->width = get32(&c);
	p->total_ns = get_f64(&c);
	p->stall_ns = get_f64(&c);
	get_zero(&c, HDR_SIZE - HDR_USED);
	if (!decode_records(b, &p->prof, p->rows) || c.nonzero)
		ret = err_set(DPRT_EBADPLAN, "%s: nonzero reserved bytes or padding", path);
	if (!ret)
		ret = plan_validate(p, path);
	if (ret) {
		plan_destroy(p);
		goto out_free;
	}
	*out = p;
out_free:
	free(b);
	return ret;
}

/* ---------------------------------------------------------- validation */

static int bad_row(const char *what, uint32_t i, const char *problem)
{
	return err_set(DPRT_EBADPLAN, "%s: layer %u: %s", what, i, problem);
}

/* Placement of row i against the mode and width. */
static int check_place(const struct plan *p, uint32_t i, const char *what)
{
	const struct plan_row *r = &p->rows[i];
	bool one_link = p->mode == PLAN_PIPELINE || p->mode == PLAN_DEMAND ||
			p->mode == PLAN_DEEPPLAN;
	bool no_dha = p->mode == PLAN_PIPELINE || p->mode == PLAN_DEMAND || p->mode == PLAN_PT;

	if (r->place == PLAN_DHA) {
		if (no_dha)
			return bad_row(what, i, "DHA in a mode without DHA");
		if (r->link || r->order != PLAN_NO_ORDER)
			return bad_row(what, i, "a DHA layer with a link or an order");
		return 0;
	}
	if (r->place != PLAN_LOAD)
		return bad_row(what, i, "unknown placement");
	if (r->link >= p->width || (one_link && r->link))
		return bad_row(what, i, "link out of range");
	return 0;
}

/* Each link's orders are a permutation of 0..count-1; every helper below
 * width carries a layer. */
static int check_orders(const struct plan *p, const char *what)
{
	uint32_t cnt[PLAN_MAX_GPUS] = {0}, first[PLAN_MAX_GPUS + 1], i, l, n = p->prof.n_layers;
	uint8_t *seen;
	int ret = 0;

	for (i = 0; i < n; i++)
		if (p->rows[i].place == PLAN_LOAD)
			cnt[p->rows[i].link]++;
	first[0] = 0;
	for (l = 0; l < p->width; l++) {
		first[l + 1] = first[l] + cnt[l];
		if (l && !cnt[l])
			return err_set(DPRT_EBADPLAN, "%s: helper link %u of %u carries no layer",
				       what, l, p->width);
	}
	seen = calloc(n, 1);
	if (!seen)
		return err_set(-ENOMEM, "%s: out of memory", what);
	for (i = 0; i < n && !ret; i++) {
		const struct plan_row *r = &p->rows[i];

		if (r->place != PLAN_LOAD)
			continue;
		if (r->order >= cnt[r->link] || seen[first[r->link] + r->order]++)
			ret = bad_row(what, i, "its order on its link is out of range or taken");
	}
	free(seen);
	return ret;
}

static bool time_ok(double t)
{
	return isfinite(t) && t >= 0;
}

/* The predicted timeline obeys the model: in order, after arrival, each
 * LOAD layer for exactly its exec time, each DHA layer at least its DHA
 * time. */
static int check_times(const struct plan *p, const char *what)
{
	double prev = 0;
	uint32_t i;

	for (i = 0; i < p->prof.n_layers; i++) {
		const struct plan_row *r = &p->rows[i];
		const struct plan_layer_prof *lp = &p->prof.layers[i];
		bool load = r->place == PLAN_LOAD;

		if (!time_ok(r->arrival_ns) || !time_ok(r->start_ns) || !time_ok(r->end_ns))
			return bad_row(what, i, "a predicted time is not a finite positive number");
		if (r->start_ns < prev || (load && r->start_ns < r->arrival_ns) ||
		    (!load && r->arrival_ns != 0))
			return bad_row(what, i, "predicted to start too early");
		if (load ? r->end_ns != r->start_ns + (double)lp->exec_ns :
			   r->end_ns - r->start_ns < (double)lp->dha_ns * (1 - 1e-9))
			return bad_row(what, i, "predicted run time is not its profiled time");
		prev = r->end_ns;
	}
	if (p->total_ns != prev || !time_ok(p->stall_ns) || p->stall_ns > p->total_ns)
		return err_set(DPRT_EBADPLAN, "%s: predicted total or stall is wrong", what);
	return 0;
}

/* Every invariant of a plan (the reader's rules). Any thread. */
int plan_validate(const struct plan *p, const char *what)
{
	uint32_t i;
	int ret;

	ret = plan_profile_validate(&p->prof, what);
	if (ret)
		return ret;
	if (p->mode >= PLAN_MODE_COUNT)
		return err_set(DPRT_EBADPLAN, "%s: unknown mode %u", what, p->mode);
	if (!p->width || p->width > p->prof.link.n_gpus)
		return err_set(DPRT_EBADPLAN, "%s: width %u for %u GPUs", what, p->width,
			       p->prof.link.n_gpus);
	for (i = 0; i < p->prof.n_layers && !ret; i++)
		ret = check_place(p, i, what);
	if (!ret)
		ret = check_orders(p, what);
	if (!ret)
		ret = check_times(p, what);
	return ret;
}

/* Refuse a plan made for another package, GPU model or GPU count. */
int plan_check_key(const struct plan *p, const char *what, uint64_t pkg_checksum, const char *gpu,
		   uint32_t n_gpus)
{
	if (p->prof.pkg_checksum != pkg_checksum)
		return err_set(DPRT_EBADPLAN,
			       "plan %s was made for package %016llx (%s), this is %016llx", what,
			       (unsigned long long)p->prof.pkg_checksum, p->prof.model,
			       (unsigned long long)pkg_checksum);
	if (strcmp(p->prof.gpu, gpu))
		return err_set(DPRT_EBADPLAN, "plan %s was made for GPU '%s', this is '%s'", what,
			       p->prof.gpu, gpu);
	if (p->prof.link.n_gpus != n_gpus)
		return err_set(DPRT_EBADPLAN, "plan %s was made for %u GPUs, this is %u", what,
			       p->prof.link.n_gpus, n_gpus);
	return 0;
}

/* ---------------------------------------------------------- repository */

/* Lower case [a-z0-9], each run of other characters one '-', none at the
 * ends. Returns the length written (out holds len bytes). */
static size_t slug(const char *s, char *out, size_t len)
{
	size_t n = 0;
	bool dash = false;

	for (; *s && n + 2 < len; s++) {
		char ch = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) {
			if (dash && n)
				out[n++] = '-';
			out[n++] = ch;
			dash = false;
		} else {
			dash = true;
		}
	}
	out[n] = 0;
	return n;
}

/* File name of a plan. Any thread. */
int plan_file_name(const char *gpu, uint32_t n_gpus, enum plan_mode mode, char *out, size_t len)
{
	char g[PLAN_GPU_LEN], m[32];

	slug(gpu, g, sizeof(g));
	slug(plan_mode_name(mode), m, sizeof(m));
	if ((size_t)snprintf(out, len, "%s-%ugpu-%s.dpp", g[0] ? g : "gpu", n_gpus, m) >= len)
		return err_set(-ENAMETOOLONG, "plan file name for '%s' is too long", gpu);
	return 0;
}

/* Directory of a package's plans. Any thread (reads the knobs). */
int plan_repo_dir(const char *dir, const char *pkg_path, const char *model, uint64_t pkg_checksum,
		  char *out, size_t len)
{
	const char *env = knobs_get()->plan_repo, *slash;
	char m[NAME_LEN];
	size_t n;

	if (dir)
		n = (size_t)snprintf(out, len, "%s", dir);
	else if (env && *env)
		n = (size_t)snprintf(out, len, "%s/%.*s-%08llx", env,
				     (int)slug(model, m, sizeof(m)), m,
				     (unsigned long long)(pkg_checksum >> 32));
	else if ((slash = strrchr(pkg_path, '/')))
		n = (size_t)snprintf(out, len, "%.*s/plans", (int)(slash - pkg_path), pkg_path);
	else
		n = (size_t)snprintf(out, len, "plans");
	if (n >= len)
		return err_set(-ENAMETOOLONG, "plan directory for %s is too long", pkg_path);
	return 0;
}

/* Read the plan for a package, GPU, count and mode from dir. Any thread. */
int plan_find(const char *dir, uint64_t pkg_checksum, const char *gpu, uint32_t n_gpus,
	      enum plan_mode mode, struct plan **out)
{
	char name[256], path[4096];
	struct plan *p;
	int ret;

	*out = NULL;
	ret = plan_file_name(gpu, n_gpus, mode, name, sizeof(name));
	if (ret)
		return ret;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return err_set(-ENAMETOOLONG, "%s/%s: path too long", dir, name);
	if (access(path, F_OK))
		return err_set(-ENOENT, "no %s plan for %u x %s in %s (make one with 'dprt plan')",
			       plan_mode_name(mode), n_gpus, gpu, dir);
	ret = plan_read(path, &p);
	if (!ret)
		ret = plan_check_key(p, path, pkg_checksum, gpu, n_gpus);
	if (!ret && p->mode != (uint32_t)mode)
		ret = err_set(DPRT_EBADPLAN, "plan %s holds mode %s, not %s", path,
			      plan_mode_name((enum plan_mode)p->mode), plan_mode_name(mode));
	if (ret) {
		plan_destroy(p);
		return ret;
	}
	*out = p;
	return 0;
}

/* File name of a stored profile. Any thread. */
int plan_profile_file_name(const char *gpu, uint32_t n_gpus, char *out, size_t len)
{
	char g[PLAN_GPU_LEN];

	slug(gpu, g, sizeof(g));
	if ((size_t)snprintf(out, len, "%s-%ugpu.dpprof", g[0] ? g : "gpu", n_gpus) >= len)
		return err_set(-ENAMETOOLONG, "profile file name for '%s' is too long", gpu);
	return 0;
}

/* The stored profile of the most GPUs (at least min_gpus) for a package
 * and GPU model in dir. Any thread. */
int plan_profile_find(const char *dir, uint64_t pkg_checksum, const char *gpu, uint32_t min_gpus,
		      struct plan_profile **out)
{
	char name[256], path[4096];
	struct plan_profile *pf;
	uint32_t n;
	int ret;

	*out = NULL;
	for (n = PLAN_MAX_GPUS; n >= MAX(min_gpus, 1); n--) {
		ret = plan_profile_file_name(gpu, n, name, sizeof(name));
		if (ret)
			return ret;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
			return err_set(-ENAMETOOLONG, "%s/%s: path too long", dir, name);
		if (access(path, F_OK))
			continue;
		ret = plan_profile_read(path, &pf);
		if (ret)
			return ret;
		if (pf->pkg_checksum != pkg_checksum || strcmp(pf->gpu, gpu) ||
		    pf->link.n_gpus != n) {
			plan_profile_destroy(pf);
			return err_set(DPRT_EBADPLAN,
				       "profile %s was made for another package or GPU", path);
		}
		*out = pf;
		return 0;
	}
	return err_set(-ENOENT, "no profile for %s in %s (make one with 'dprt plan')", gpu, dir);
}

/* dir/name into out. */
static int join(const char *dir, const char *name, char *out, size_t len)
{
	if ((size_t)snprintf(out, len, "%s/%s", dir, name) >= len)
		return err_set(-ENAMETOOLONG, "%s/%s: path too long", dir, name);
	return 0;
}

/* Write p into dir under its key. Any thread. */
int plan_store(const char *dir, const struct plan *p, char *path, size_t len)
{
	char name[256];

	return plan_file_name(p->prof.gpu, p->prof.link.n_gpus, (enum plan_mode)p->mode, name, sizeof(name)) ?:
		       join(dir, name, path, len) ?:
		       mkdir_p(dir)		  ?:
						    plan_write(path, p);
}

/* Write pf into dir under its key. Any thread. */
int plan_profile_store(const char *dir, const struct plan_profile *pf, char *path, size_t len)
{
	char name[256];

	return plan_profile_file_name(pf->gpu, pf->link.n_gpus, name, sizeof(name)) ?:
		       join(dir, name, path, len)				    ?:
		       mkdir_p(dir)						    ?:
		       plan_profile_write(path, pf);
}

/* The stored plan, else one made from the stored profile (and stored, if
 * store); see plan.h. Any thread. */
int plan_get(const char *dir, uint64_t pkg_checksum, const char *gpu, uint32_t n_gpus,
	     enum plan_mode mode, bool store, struct plan **out)
{
	struct plan_profile *pf = NULL;
	char path[4096];
	int ret;

	ret = plan_find(dir, pkg_checksum, gpu, n_gpus, mode, out);
	if (ret != -ENOENT)
		return ret;
	err_clear();
	ret = plan_profile_find(dir, pkg_checksum, gpu, n_gpus, &pf);
	if (ret)
		return ret;
	ret = plan_build(pf, mode, n_gpus, out);
	plan_profile_destroy(pf);
	if (!ret && store && plan_store(dir, *out, path, sizeof(path)))
		err_clear(); /* a plan not stored is made again next time */
	return ret;
}
