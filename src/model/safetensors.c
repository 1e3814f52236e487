/* SPDX-License-Identifier: MIT */
/*
 * safetensors files: an 8-byte little-endian header length N, N bytes of
 * JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}, then the data area; offsets are
 * relative to the data area. The file is mapped read-only and every field is
 * checked before a tensor is handed out.
 */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB. */
#define ST_MAX_HEADER (100u << 20)

/* The file's dtype names; bits per element, 0 = no fixed size known. */
static const struct {
	const char *name;
	uint8_t dt;
	uint8_t bits;
} st_dtypes[] = {
	{"F64", DT_NONE, 64},	 {"F32", DT_F32, 32},	  {"F16", DT_F16, 16},
	{"BF16", DT_BF16, 16},	 {"I64", DT_I64, 64},	  {"I32", DT_I32, 32},
	{"I16", DT_NONE, 16},	 {"I8", DT_NONE, 8},	  {"U64", DT_NONE, 64},
	{"U32", DT_NONE, 32},	 {"U16", DT_NONE, 16},	  {"U8", DT_U8, 8},
	{"BOOL", DT_BOOL, 8},	 {"C64", DT_NONE, 64},	  {"F8_E5M2", DT_NONE, 8},
	{"F8_E4M3", DT_NONE, 8}, {"F8_E8M0", DT_NONE, 8}, {"F6_E2M3", DT_NONE, 6},
	{"F6_E3M2", DT_NONE, 6}, {"F4", DT_NONE, 4},
};

#define ST_DTYPE_LEN 16

/* Invariant: tensors[i].data + nbytes lies inside the mapping; names are
 * unique (JSON keys, duplicates refused). */
struct st_file {
	char *path;
	void *map;
	size_t map_size;
	uint32_t n;
	struct st_tensor *tensors;
	char (*dtypes)[ST_DTYPE_LEN];	 /* the file's dtype name of each tensor */
	const struct st_tensor **byname; /* sorted by name */
};

static int st_bad(const struct st_file *f, const char *fmt, ...) PRINTF_LIKE(2, 3);

static int st_bad(const struct st_file *f, const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(DPRT_EBADPKG, "%s: not a valid safetensors file: %s", f->path, msg);
}

static int find_dtype(const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(st_dtypes); i++)
		if (!strcmp(st_dtypes[i].name, name))
			return (int)i;
	return -1;
}

/* A JSON integer in [0, 2^62] (jansson refuses larger literals). */
static bool get_u64(const json_t *v, uint64_t *out)
{
	json_int_t x;

	if (!json_is_integer(v))
		return false;
	x = json_integer_value(v);
	if (x < 0 || (uint64_t)x > (1ull << 62))
		return false;
	*out = (uint64_t)x;
	return true;
}

static int parse_shape(struct st_file *f, const char *key, const json_t *shape, struct st_tensor *t,
		       uint64_t *numel)
{
	size_t i, n;

	if (!json_is_array(shape))
		return st_bad(f, "tensor '%s' has no \"shape\" array", key);
	n = json_array_size(shape);
	if (n > MAX_DIMS)
		return err_set(DPRT_EUNSUP, "%s: tensor '%s' has %zu dimensions (at most %d)",
			       f->path, key, n, MAX_DIMS);
	*numel = 1;
	for (i = 0; i < n; i++) {
		uint64_t d;

		if (!get_u64(json_array_get(shape, i), &d))
			return st_bad(f, "tensor '%s' has a bad dimension %zu", key, i);
		if (__builtin_mul_overflow(*numel, d, numel) || *numel > (1ull << 62))
			return st_bad(f, "tensor '%s' has too many elements", key);
		t->dims[i] = (int64_t)d;
	}
	t->ndim = (uint8_t)n;
	return 0;
}

/* Check [begin, end) against the data area and the size the shape implies. */
static int parse_offsets(struct st_file *f, const char *key, const json_t *offs, int dti,
			 uint64_t numel, uint64_t data_size, uint64_t be[2])
{
	uint64_t bits;

	if (!json_is_array(offs) || json_array_size(offs) != 2 ||
	    !get_u64(json_array_get(offs, 0), &be[0]) || !get_u64(json_array_get(offs, 1), &be[1]))
		return st_bad(f, "tensor '%s' has no valid \"data_offsets\" [begin, end]", key);
	if (be[0] > be[1] || be[1] > data_size)
		return st_bad(
			f,
			"tensor '%s' has data_offsets [%llu, %llu] outside the %llu bytes of data",
			key, (unsigned long long)be[0], (unsigned long long)be[1],
			(unsigned long long)data_size);
	if (dti < 0)
		return 0; /* a dtype we do not know: its size cannot be checked */
	if (__builtin_mul_overflow(numel, (uint64_t)st_dtypes[dti].bits, &bits) || bits % 8)
		return st_bad(f, "tensor '%s' has a size that is not whole bytes", key);
	if (be[1] - be[0] != bits / 8)
		return st_bad(f,
			      "tensor '%s' holds %llu bytes but its dtype %s and shape need %llu",
			      key, (unsigned long long)(be[1] - be[0]), st_dtypes[dti].name,
			      (unsigned long long)(bits / 8));
	return 0;
}

static int parse_entry(struct st_file *f, const char *key, const json_t *val, const char *data,
		       uint64_t data_size)
{
	struct st_tensor *t = &f->tensors[f->n];
	const json_t *dt = json_object_get(val, "dtype");
	uint64_t numel = 0, be[2] = {0, 0};
	int dti, ret;

	if (!json_is_object(val))
		return st_bad(f, "entry '%s' is not an object", key);
	if (!json_is_string(dt))
		return st_bad(f, "tensor '%s' has no \"dtype\" string", key);
	dti = find_dtype(json_string_value(dt));
	ret = parse_shape(f, key, json_object_get(val, "shape"), t, &numel);
	if (!ret)
		ret = parse_offsets(f, key, json_object_get(val, "data_offsets"), dti, numel,
				    data_size, be);
	if (ret)
		return ret;
	if (strlen(key) >= NAME_LEN) {
		log_warn("%s: tensor name '%.40s...' is longer than %d bytes; ignored", f->path,
			 key, NAME_LEN - 1);
		return 0;
	}
	snprintf(t->name, sizeof(t->name), "%s", key);
	snprintf(f->dtypes[f->n], ST_DTYPE_LEN, "%s", json_string_value(dt));
	t->dtype = dti < 0 ? DT_NONE : st_dtypes[dti].dt;
	t->data = data + be[0];
	t->nbytes = be[1] - be[0];
	f->n++;
	return 0;
}

static int check_metadata(struct st_file *f, const json_t *meta)
{
	const json_t *v;
	const char *k;

	if (!json_is_object(meta))
		return st_bad(f, "\"__metadata__\" is not an object");
	json_object_foreach((json_t *)meta, k, v) if (!json_is_string(v)) return st_bad(
		f, "\"__metadata__\" value '%s' is not a string", k);
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	const struct st_tensor *x = *(const struct st_tensor *const *)a;
	const struct st_tensor *y = *(const struct st_tensor *const *)b;

	return strcmp(x->name, y->name);
}

static int index_names(struct st_file *f)
{
	uint32_t i;

	f->byname = malloc(sizeof(*f->byname) * (f->n ? f->n : 1));
	if (!f->byname)
		return -ENOMEM;
	for (i = 0; i < f->n; i++)
		f->byname[i] = &f->tensors[i];
	qsort(f->byname, f->n, sizeof(*f->byname), cmp_name);
	return 0;
}

static int parse_header(struct st_file *f, const char *hdr, size_t hlen, const char *data,
			uint64_t data_size)
{
	json_error_t jerr;
	json_t *root, *v;
	const char *k;
	size_t n;
	int ret = 0;

	if (!hlen || hdr[0] != '{')
		return st_bad(f, "the header does not start with '{'");
	root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return st_bad(f, "the header is not valid JSON (%s, at byte %d)", jerr.text,
			      jerr.position);
	n = json_object_size(root);
	f->tensors = calloc(n ? n : 1, sizeof(*f->tensors));
	f->dtypes = calloc(n ? n : 1, sizeof(*f->dtypes));
	if (!f->tensors || !f->dtypes) {
		ret = err_set(-ENOMEM, "%s: out of memory for %zu tensors", f->path, n);
		goto out_put;
	}
	json_object_foreach(root, k, v)
	{
		if (!strcmp(k, "__metadata__"))
			ret = check_metadata(f, v);
		else
			ret = parse_entry(f, k, v, data, data_size);
		if (ret)
			break;
	}
out_put:
	json_decref(root);
	return ret;
}

static int map_file(struct st_file *f, int fd)
{
	struct stat sb;
	int e;

	if (fstat(fd, &sb)) {
		e = errno;
		return err_set(-e, "%s: cannot stat: %s", f->path, strerror(e));
	}
	if (!S_ISREG(sb.st_mode))
		return st_bad(f, "not a regular file");
	if (sb.st_size < 8)
		return st_bad(f, "%lld bytes, too short for the header length",
			      (long long)sb.st_size);
	f->map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (f->map == MAP_FAILED) {
		e = errno;
		f->map = NULL;
		return err_set(-e, "%s: cannot map: %s", f->path, strerror(e));
	}
	f->map_size = (size_t)sb.st_size;
	return 0;
}

static int parse_file(struct st_file *f)
{
	const unsigned char *p = f->map;
	uint64_t hlen = 0;
	int i;

	for (i = 7; i >= 0; i--)
		hlen = hlen << 8 | p[i];
	if (hlen > f->map_size - 8)
		return st_bad(f, "the header length %llu exceeds the file size %zu",
			      (unsigned long long)hlen, f->map_size);
	if (hlen > ST_MAX_HEADER)
		return st_bad(f, "the header length %llu is above the limit of %u",
			      (unsigned long long)hlen, ST_MAX_HEADER);
	return parse_header(f, (const char *)p + 8, hlen, (const char *)p + 8 + hlen,
			    f->map_size - 8 - hlen);
}

/*
 * Map and validate the safetensors file at path. Any thread. Returns 0 and
 * *out, -errno (cannot open or map), DPRT_EBADPKG (malformed) or DPRT_EUNSUP
 * (more than MAX_DIMS dims), with err_set naming the file.
 */
int st_open(const char *path, struct st_file **out)
{
	struct st_file *f;
	int fd, ret;

	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return err_set(-ENOMEM, "%s: out of memory", path);
	f->path = strdup(path);
	if (!f->path) {
		ret = err_set(-ENOMEM, "%s: out of memory", path);
		goto out_close;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		err_set(ret, "%s: cannot open: %s", path, strerror(-ret));
		goto out_close;
	}
	ret = map_file(f, fd);
	close(fd);
	if (!ret)
		ret = parse_file(f);
	if (!ret)
		ret = index_names(f);
	if (ret)
		goto out_close;
	*out = f;
	return 0;
out_close:
	st_close(f);
	return ret;
}

/* Unmap and free; NULL is fine. The tensors' data pointers die with it. */
void st_close(struct st_file *f)
{
	if (!f)
		return;
	if (f->map)
		munmap(f->map, f->map_size);
	free(f->byname);
	free(f->dtypes);
	free(f->tensors);
	free(f->path);
	free(f);
}

/* Number of tensors (in the header's order). */
uint32_t st_count(const struct st_file *f)
{
	return f->n;
}

/* Tensor i < st_count(f), or NULL. */
const struct st_tensor *st_get(const struct st_file *f, uint32_t i)
{
	return i < f->n ? &f->tensors[i] : NULL;
}

/* Tensor named `name`, or NULL (binary search). */
const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
	struct st_tensor key;
	const struct st_tensor *kp = &key;
	const struct st_tensor **hit;

	if (strlen(name) >= NAME_LEN)
		return NULL;
	snprintf(key.name, sizeof(key.name), "%s", name);
	hit = bsearch(&kp, f->byname, f->n, sizeof(*f->byname), cmp_name);
	return hit ? *hit : NULL;
}

/* The file's own dtype name of t ("F64", "I8", ...); "" if t is not f's. */
const char *st_dtype_str(const struct st_file *f, const struct st_tensor *t)
{
	if (t < f->tensors || t >= f->tensors + f->n)
		return "";
	return f->dtypes[t - f->tensors];
}

/* ---------------------------------------------------------------- write */

static const char *st_dtype_of(uint8_t dt)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(st_dtypes); i++)
		if (dt != DT_NONE && st_dtypes[i].dt == dt)
			return st_dtypes[i].name;
	return NULL;
}

/* {"dtype": ..., "shape": [...], "data_offsets": [begin, end]} */
static json_t *entry_json(const char *path, const struct st_tensor *t, uint64_t begin)
{
	const char *dts = st_dtype_of(t->dtype);
	json_t *e, *shape;
	uint64_t numel = 1;
	int d;

	if (!dts || t->ndim > MAX_DIMS) {
		err_set(-EINVAL, "%s: tensor '%s': cannot write dtype %s with %u dims", path,
			t->name, dtype_name((enum dtype)t->dtype), t->ndim);
		return NULL;
	}
	shape = json_array();
	for (d = 0; d < t->ndim; d++) {
		if (t->dims[d] < 0)
			break;
		numel *= (uint64_t)t->dims[d];
		json_array_append_new(shape, json_integer(t->dims[d]));
	}
	if (d < t->ndim || t->nbytes != numel * dtype_size((enum dtype)t->dtype) ||
	    (t->nbytes && !t->data)) {
		json_decref(shape);
		err_set(-EINVAL, "%s: tensor '%s': shape, size and data do not agree", path,
			t->name);
		return NULL;
	}
	e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", dts, "shape", shape, "data_offsets",
		      (json_int_t)begin, (json_int_t)(begin + t->nbytes));
	if (!e)
		err_set(-ENOMEM, "%s: tensor '%s': cannot build its header entry", path, t->name);
	return e;
}

/* The JSON header, padded with spaces to a multiple of 8 bytes, in *out. */
static int build_header(const char *path, const struct st_tensor *ts, uint32_t n, char **out,
			size_t *len)
{
	json_t *root = json_pack("{s:{s:s}}", "__metadata__", "format", "pt");
	uint64_t off = 0;
	char *s, *p;
	uint32_t i;
	int ret = -ENOMEM;

	if (!root)
		return err_set(ret, "%s: out of memory", path);
	for (i = 0; i < n; i++) {
		json_t *e;

		ret = -EINVAL;
		if (json_object_get(root, ts[i].name)) {
			err_set(ret, "%s: tensor name '%s' is used twice", path, ts[i].name);
			goto out_put;
		}
		e = entry_json(path, &ts[i], off);
		if (!e)
			goto out_put;
		if (json_object_set_new(root, ts[i].name, e)) {
			err_set(ret, "%s: tensor name '%s' is not valid UTF-8", path, ts[i].name);
			goto out_put;
		}
		off += ts[i].nbytes;
	}
	ret = -ENOMEM;
	s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	p = s ? realloc(s, ALIGN_UP(strlen(s), 8) + 1) : NULL;
	if (!p) {
		free(s);
		err_set(ret, "%s: out of memory for the header", path);
		goto out_put;
	}
	*len = ALIGN_UP(strlen(p), 8);
	memset(p + strlen(p), ' ', *len - strlen(p));
	p[*len] = 0;
	*out = p;
	ret = 0;
out_put:
	json_decref(root);
	return ret;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int write_body(int fd, const char *hdr, size_t hlen, const struct st_tensor *ts, uint32_t n)
{
	unsigned char lenbuf[8];
	uint32_t i;
	int k, ret;

	for (k = 0; k < 8; k++)
		lenbuf[k] = (unsigned char)((uint64_t)hlen >> (8 * k));
	ret = write_all(fd, lenbuf, 8);
	if (!ret)
		ret = write_all(fd, hdr, hlen);
	for (i = 0; i < n && !ret; i++)
		ret = write_all(fd, ts[i].data, ts[i].nbytes);
	if (!ret && fsync(fd))
		ret = -errno;
	return ret;
}

/*
 * Write n tensors (data in host byte order = little-endian) to a new
 * safetensors file at path, atomically (temporary file + rename). Any
 * thread. Returns 0, -EINVAL (a tensor that cannot be written: DT_NONE,
 * size mismatch, duplicate name) or -errno, with err_set.
 */
int st_write(const char *path, const struct st_tensor *ts, uint32_t n)
{
	char *hdr = NULL, *tmp;
	size_t hlen = 0;
	int fd, ret;

	ret = build_header(path, ts, n, &hdr, &hlen);
	if (ret)
		return ret;
	ret = -ENOMEM;
	tmp = malloc(strlen(path) + 8);
	if (!tmp)
		goto out_free_hdr;
	sprintf(tmp, "%s.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		ret = -errno;
		goto out_free_tmp;
	}
	ret = fchmod(fd, 0644) ? -errno : 0;
	if (!ret)
		ret = write_body(fd, hdr, hlen, ts, n);
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
out_free_tmp:
	free(tmp);
out_free_hdr:
	free(hdr);
	if (ret)
		err_set(ret, "%s: cannot write: %s", path, strerror(-ret));
	return ret;
}
