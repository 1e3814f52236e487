/* SPDX-License-Identifier: MIT */
#include "model/model.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/dprt-st-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

/* dir/name, in one of 4 rotating buffers */
static const char *path_of(const char *name)
{
	static char p[4][160];
	static unsigned k;

	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
	return p[k];
}

/* A file of the safetensors layout with any header text and data. */
static void write_raw(const char *path, const char *header, const void *data, size_t len)
{
	uint64_t n = strlen(header);
	FILE *f = fopen(path, "wb");
	unsigned char le[8];
	int i;

	cr_assert_not_null(f);
	for (i = 0; i < 8; i++)
		le[i] = (unsigned char)(n >> (8 * i));
	cr_assert_eq(fwrite(le, 1, 8, f), 8);
	cr_assert_eq(fwrite(header, 1, n, f), n);
	if (len)
		cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static int64_t numel(const struct st_tensor *t)
{
	int64_t n = 1;
	int d;

	for (d = 0; d < t->ndim; d++)
		n *= t->dims[d];
	return n;
}

/* ------------------------------------------------------- st_write/st_open */

TestSuite(safetensors, .init = make_dir, .fini = remove_dir);

Test(safetensors, round_trip)
{
	float f32[6] = {1, -2, 3.5f, 0, 1e-3f, 6};
	uint16_t f16[4] = {0x3c00, 0xc000, 0x0001, 0x7bff}, bf16[2] = {0x3f80, 0xbf80};
	int64_t i64[3] = {-1, 0, 1ll << 40};
	int32_t scalar = 7;
	uint8_t u8[5] = {1, 2, 3, 4, 255}, b[2] = {1, 0};
	struct st_tensor ts[8] = {
		{"a.weight", DT_F32, 2, {2, 3}, f32, sizeof(f32)},
		{"half", DT_F16, 1, {4}, f16, sizeof(f16)},
		{"brain", DT_BF16, 3, {1, 2, 1}, bf16, sizeof(bf16)},
		{"ids", DT_I64, 1, {3}, i64, sizeof(i64)},
		{"scalar", DT_I32, 0, {0}, &scalar, 4},
		{"bytes", DT_U8, 1, {5}, u8, 5},
		{"mask", DT_BOOL, 2, {1, 2}, b, 2},
		{"empty", DT_F32, 2, {0, 4}, NULL, 0},
	};
	const char *p = path_of("rt.safetensors");
	struct st_file *f;
	unsigned char head[8];
	uint64_t hlen = 0;
	struct stat sb;
	FILE *fp;
	uint32_t i;
	int k;

	cr_assert_eq(st_write(p, ts, 8), 0, "%s", err_msg(0));
	cr_assert_eq(st_open(p, &f), 0, "%s", err_msg(0));
	cr_assert_eq(st_count(f), 8);
	for (i = 0; i < 8; i++) {
		const struct st_tensor *t = st_get(f, i);

		cr_expect_str_eq(t->name, ts[i].name, "file order is kept");
		cr_expect_eq(t->dtype, ts[i].dtype, "%s", t->name);
		cr_expect_eq(t->ndim, ts[i].ndim, "%s", t->name);
		for (k = 0; k < t->ndim; k++)
			cr_expect_eq(t->dims[k], ts[i].dims[k], "%s", t->name);
		cr_expect_eq(t->nbytes, ts[i].nbytes, "%s", t->name);
		if (t->nbytes)
			cr_expect_eq(memcmp(t->data, ts[i].data, t->nbytes), 0, "%s", t->name);
		cr_expect_eq(st_find(f, ts[i].name), t, "%s", t->name);
	}
	cr_expect_null(st_get(f, 8));
	cr_expect_null(st_find(f, "nope"));
	cr_expect_null(st_find(f, "a.weigh"));
	cr_expect_str_eq(st_dtype_str(f, st_find(f, "brain")), "BF16");
	cr_expect_str_eq(st_dtype_str(f, st_find(f, "mask")), "BOOL");
	st_close(f);

	/* the layout of the reference implementation */
	fp = fopen(p, "rb");
	cr_assert_not_null(fp);
	cr_assert_eq(fread(head, 1, 8, fp), 8);
	for (k = 7; k >= 0; k--)
		hlen = hlen << 8 | head[k];
	cr_expect_eq(hlen % 8, 0);
	cr_assert_eq(fgetc(fp), '{');
	cr_assert_eq(fseek(fp, (long)(8 + hlen - 1), SEEK_SET), 0);
	k = fgetc(fp);
	cr_expect(k == ' ' || k == '}');
	fclose(fp);
	cr_assert_eq(stat(p, &sb), 0);
	cr_expect_eq((uint64_t)sb.st_size, 8 + hlen + 24 + 8 + 4 + 24 + 4 + 5 + 2);
	cr_expect_eq(sb.st_mode & 0777, 0644);
}

Test(safetensors, write_refuses_bad_tensors)
{
	float v[2] = {1, 2};
	struct st_tensor ok = {"x", DT_F32, 1, {2}, v, 8};
	struct st_tensor ts[2] = {ok, ok};
	char p[160];

	snprintf(p, sizeof(p), "%s", path_of("bad.safetensors"));
	cr_expect_eq(st_write(p, ts, 2), -EINVAL, "duplicate name");
	cr_expect_not_null(strstr(err_msg(-EINVAL), "'x'"));
	ts[1].name[0] = 'y';
	ts[1].nbytes = 4;
	cr_expect_eq(st_write(p, ts, 2), -EINVAL, "size does not fit the shape");
	ts[1].nbytes = 8;
	ts[1].dtype = DT_NONE;
	cr_expect_eq(st_write(p, ts, 2), -EINVAL, "no dtype");
	cr_expect_neq(access(p, F_OK), 0, "nothing written");
	ts[1].dtype = DT_F32;
	cr_expect_eq(st_write(path_of("no/such/dir.safetensors"), ts, 2), -ENOENT);
	cr_expect_eq(st_write(p, ts, 2), 0);
	cr_expect_eq(st_write(p, ts, 0), 0, "an empty file is valid");
}

Test(safetensors, exotic_dtypes_are_listed)
{
	const char *p = path_of("exotic.safetensors");
	const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
			  "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
			  "\"i\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[16,19]},"
			  "\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[19,20]},"
			  "\"x\":{\"dtype\":\"X99\",\"shape\":[7],\"data_offsets\":[20,21]}}";
	double d[2] = {0.5, -1.25};
	char data[24] = {0};
	struct st_file *f;
	const struct st_tensor *t;

	memcpy(data, d, 16);
	write_raw(p, hdr, data, 21);
	cr_assert_eq(st_open(p, &f), 0, "%s", err_msg(0));
	cr_assert_eq(st_count(f), 4);
	t = st_find(f, "d");
	cr_assert_not_null(t);
	cr_expect_eq(t->dtype, DT_NONE);
	cr_expect_str_eq(st_dtype_str(f, t), "F64");
	cr_expect_eq(t->nbytes, 16);
	cr_expect_eq(memcmp(t->data, d, 16), 0);
	cr_expect_eq(st_find(f, "i")->dtype, DT_NONE);
	cr_expect_str_eq(st_dtype_str(f, st_find(f, "f8")), "F8_E4M3");
	cr_expect_str_eq(st_dtype_str(f, st_find(f, "x")), "X99");
	st_close(f);
}

/* Each header must be refused with DPRT_EBADPKG and a message naming the file. */
static const struct {
	const char *header;
	size_t data_len;
	const char *why;
} corrupt[] = {
	{"", 0, "empty header"},
	{"[1]", 0, "not an object"},
	{"{nope", 0, "not JSON"},
	{"{\"a\":1}", 0, "entry not an object"},
	{"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "no dtype"},
	{"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "no shape"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "negative dim"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "real dim"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "no offsets"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "3 offsets"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "begin > end"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 4, "past the data"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "size mismatch"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}", 4,
	 "offset overflow"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}",
	 4, "element count overflow"},
	{"{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 4, "half a byte"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
	 4, "duplicate name"},
	{"{\"__metadata__\":{\"format\":1}}", 0, "metadata value not a string"},
	{"{\"__metadata__\":[]}", 0, "metadata not an object"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "trailing text"},
};

Test(safetensors, corrupt_headers_refused)
{
	const char *p = path_of("corrupt.safetensors");
	char data[8] = {0};
	struct st_file *f;
	size_t i;

	for (i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
		int ret;

		write_raw(p, corrupt[i].header, data, corrupt[i].data_len);
		f = (struct st_file *)1;
		ret = st_open(p, &f);
		cr_expect_eq(ret, DPRT_EBADPKG, "%s: got %d", corrupt[i].why, ret);
		cr_expect_null(f, "%s", corrupt[i].why);
		cr_expect_not_null(strstr(err_msg(ret), p), "%s: %s", corrupt[i].why, err_msg(ret));
		if (!ret)
			st_close(f);
	}
}

Test(safetensors, too_many_dims_unsupported)
{
	const char *p = path_of("dims.safetensors");
	char data[4] = {0};
	struct st_file *f;

	write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
		  data, 4);
	cr_expect_eq(st_open(p, &f), DPRT_EUNSUP);
}

Test(safetensors, truncated_files_refused)
{
	float v[64] = {0};
	struct st_tensor t = {"v", DT_F32, 1, {64}, v, sizeof(v)};
	const char *p = path_of("trunc.safetensors");
	struct st_file *f;
	struct stat sb;
	int ret;

	cr_assert_eq(st_write(p, &t, 1), 0);
	cr_assert_eq(stat(p, &sb), 0);
	cr_assert_eq(truncate(p, sb.st_size - 1), 0);
	cr_expect_eq(st_open(p, &f), DPRT_EBADPKG, "data cut short");
	cr_assert_eq(truncate(p, 20), 0);
	cr_expect_eq(st_open(p, &f), DPRT_EBADPKG, "header cut short");
	cr_assert_eq(truncate(p, 5), 0);
	ret = st_open(p, &f);
	cr_expect_eq(ret, DPRT_EBADPKG, "no header length");
	cr_expect_not_null(strstr(err_msg(ret), p));
	ret = st_open(path_of("missing.safetensors"), &f);
	cr_expect_eq(ret, -ENOENT);
	cr_expect_not_null(strstr(err_msg(ret), "missing.safetensors"));
	cr_expect_eq(st_open(dir, &f), DPRT_EBADPKG, "a directory");
}

/* --------------------------------------------------- wsrc_safetensors */

/*
 * A PyTorch state dict written independently of the zoo's recipes: the
 * names and shapes of torchvision's and Hugging Face's modules.
 */
#define SD_MAX 160
struct sd {
	struct st_tensor t[SD_MAX];
	char base[SD_MAX][NAME_LEN]; /* name without the prefix */
	double *ref[SD_MAX];	     /* values as stored (decoded), NULL for extras */
	bool param[SD_MAX];	     /* a model parameter (not a buffer/extra) */
	uint32_t n;
	const char *prefix;
	enum dtype dt;
	struct rng rng;
};

static void sd_init(struct sd *sd, const char *prefix, enum dtype dt)
{
	memset(sd, 0, sizeof(*sd));
	sd->prefix = prefix;
	sd->dt = dt;
	rng_seed(&sd->rng, 99);
}

static void sd_free(struct sd *sd)
{
	uint32_t i;

	for (i = 0; i < sd->n; i++) {
		free((void *)sd->t[i].data);
		free(sd->ref[i]);
	}
}

/* A float tensor of sd->dt; running_var gets positive values. */
static void sd_add(struct sd *sd, const char *name, int ndim, const int64_t *dims)
{
	struct st_tensor *t = &sd->t[sd->n];
	uint64_t n = 1, i;
	void *data;
	int d;

	cr_assert_lt(sd->n, SD_MAX);
	for (d = 0; d < ndim; d++)
		n *= (uint64_t)dims[d];
	snprintf(t->name, sizeof(t->name), "%s%s", sd->prefix, name);
	snprintf(sd->base[sd->n], NAME_LEN, "%s", name);
	t->dtype = (uint8_t)sd->dt;
	t->ndim = (uint8_t)ndim;
	memcpy(t->dims, dims, sizeof(int64_t) * (size_t)ndim);
	t->nbytes = n * dtype_size(sd->dt);
	data = malloc(t->nbytes + 1);
	sd->ref[sd->n] = malloc(n * sizeof(double) + 1);
	cr_assert(data && sd->ref[sd->n]);
	for (i = 0; i < n; i++) {
		float v = rng_unit(&sd->rng);
		uint16_t h;

		if (strstr(name, "running_var"))
			v = 0.5f + fabsf(v);
		if (sd->dt == DT_F32) {
			((float *)data)[i] = v;
		} else {
			h = sd->dt == DT_F16 ? f32_to_f16(v) : f32_to_bf16(v);
			((uint16_t *)data)[i] = h;
			v = sd->dt == DT_F16 ? f16_to_f32(h) : bf16_to_f32(h);
		}
		sd->ref[sd->n][i] = v;
	}
	t->data = data;
	sd->param[sd->n] = !strstr(name, "running_");
	sd->n++;
}

#define ADD(sd, name, ...)                                                                         \
	sd_add(sd, name, sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t),                       \
	       (int64_t[]){__VA_ARGS__})

/* A tensor the model does not use (a buffer or a head). */
static void sd_extra(struct sd *sd, const char *name, enum dtype dt, int64_t n)
{
	struct st_tensor *t = &sd->t[sd->n];

	cr_assert_lt(sd->n, SD_MAX);
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->dtype = (uint8_t)dt;
	t->ndim = 1;
	t->dims[0] = n;
	t->nbytes = (uint64_t)n * dtype_size(dt);
	t->data = calloc(1, t->nbytes + 1);
	sd->base[sd->n][0] = 0;
	sd->n++;
}

static void sd_linear(struct sd *sd, const char *name, int64_t out, int64_t in)
{
	char n[2 * NAME_LEN];

	snprintf(n, sizeof(n), "%s.weight", name);
	ADD(sd, n, out, in);
	snprintf(n, sizeof(n), "%s.bias", name);
	ADD(sd, n, out);
}

static void sd_norm(struct sd *sd, const char *name, int64_t c, bool batch)
{
	static const char *const parts[4] = {"weight", "bias", "running_mean", "running_var"};
	char n[2 * NAME_LEN];
	int k;

	for (k = 0; k < (batch ? 4 : 2); k++) {
		snprintf(n, sizeof(n), "%s.%s", name, parts[k]);
		ADD(sd, n, c);
	}
}

/* BertModel / RobertaModel, tiny: hidden 64, 2 layers, FFN 128. */
static void sd_bert(struct sd *sd, int64_t positions, int64_t types)
{
	static const char *const qkv[3] = {"query", "key", "value"};
	char p[32], n[NAME_LEN];
	int i, k;

	ADD(sd, "embeddings.word_embeddings.weight", 1000, 64);
	ADD(sd, "embeddings.position_embeddings.weight", positions, 64);
	ADD(sd, "embeddings.token_type_embeddings.weight", types, 64);
	sd_norm(sd, "embeddings.LayerNorm", 64, false);
	for (i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "encoder.layer.%d.", i);
		for (k = 0; k < 3; k++) {
			snprintf(n, sizeof(n), "%sattention.self.%s", p, qkv[k]);
			sd_linear(sd, n, 64, 64);
		}
		snprintf(n, sizeof(n), "%sattention.output.dense", p);
		sd_linear(sd, n, 64, 64);
		snprintf(n, sizeof(n), "%sattention.output.LayerNorm", p);
		sd_norm(sd, n, 64, false);
		snprintf(n, sizeof(n), "%sintermediate.dense", p);
		sd_linear(sd, n, 128, 64);
		snprintf(n, sizeof(n), "%soutput.dense", p);
		sd_linear(sd, n, 64, 128);
		snprintf(n, sizeof(n), "%soutput.LayerNorm", p);
		sd_norm(sd, n, 64, false);
	}
	sd_linear(sd, "pooler.dense", 64, 64);
	sd_extra(sd, "cls.predictions.bias", DT_F32, 1000);
	sd_extra(sd, "bert.embeddings.position_ids", DT_I64, positions);
}

/* GPT2Model, tiny: Conv1D weights stored [in, out]. */
static void sd_gpt2(struct sd *sd)
{
	char n[NAME_LEN];
	int i;

	ADD(sd, "wte.weight", 1000, 64);
	ADD(sd, "wpe.weight", 64, 64);
	for (i = 0; i < 2; i++) {
		snprintf(n, sizeof(n), "h.%d.ln_1", i);
		sd_norm(sd, n, 64, false);
		snprintf(n, sizeof(n), "h.%d.attn.c_attn.weight", i);
		ADD(sd, n, 64, 192);
		snprintf(n, sizeof(n), "h.%d.attn.c_attn.bias", i);
		ADD(sd, n, 192);
		snprintf(n, sizeof(n), "h.%d.attn.c_proj.weight", i);
		ADD(sd, n, 64, 64);
		snprintf(n, sizeof(n), "h.%d.attn.c_proj.bias", i);
		ADD(sd, n, 64);
		snprintf(n, sizeof(n), "h.%d.ln_2", i);
		sd_norm(sd, n, 64, false);
		snprintf(n, sizeof(n), "h.%d.mlp.c_fc.weight", i);
		ADD(sd, n, 64, 256);
		snprintf(n, sizeof(n), "h.%d.mlp.c_fc.bias", i);
		ADD(sd, n, 256);
		snprintf(n, sizeof(n), "h.%d.mlp.c_proj.weight", i);
		ADD(sd, n, 256, 64);
		snprintf(n, sizeof(n), "h.%d.mlp.c_proj.bias", i);
		ADD(sd, n, 64);
		snprintf(n, sizeof(n), "transformer.h.%d.attn.bias", i);
		sd_extra(sd, n, DT_U8, 64 * 64);
	}
	sd_norm(sd, "ln_f", 64, false);
	sd_extra(sd, "lm_head.weight", DT_F32, 64000);
}

/* torchvision Bottleneck ResNet, tiny: [1,1,1,1], width 8, 10 classes. */
static void sd_resnet(struct sd *sd)
{
	char p[32], n[NAME_LEN];
	int64_t in = 8, planes;
	int s;

	ADD(sd, "conv1.weight", 8, 3, 7, 7);
	sd_norm(sd, "bn1", 8, true);
	sd_extra(sd, "bn1.num_batches_tracked", DT_I64, 1);
	for (s = 0; s < 4; s++) {
		planes = 8 << s;
		snprintf(p, sizeof(p), "layer%d.0.", s + 1);
		snprintf(n, sizeof(n), "%sconv1.weight", p);
		ADD(sd, n, planes, in, 1, 1);
		snprintf(n, sizeof(n), "%sbn1", p);
		sd_norm(sd, n, planes, true);
		snprintf(n, sizeof(n), "%sconv2.weight", p);
		ADD(sd, n, planes, planes, 3, 3);
		snprintf(n, sizeof(n), "%sbn2", p);
		sd_norm(sd, n, planes, true);
		snprintf(n, sizeof(n), "%sconv3.weight", p);
		ADD(sd, n, planes * 4, planes, 1, 1);
		snprintf(n, sizeof(n), "%sbn3", p);
		sd_norm(sd, n, planes * 4, true);
		snprintf(n, sizeof(n), "%sdownsample.0.weight", p);
		ADD(sd, n, planes * 4, in, 1, 1);
		snprintf(n, sizeof(n), "%sdownsample.1", p);
		sd_norm(sd, n, planes * 4, true);
		in = planes * 4;
	}
	sd_linear(sd, "fc", 10, 256);
}

static const double *sd_ref(const struct sd *sd, const char *base)
{
	uint32_t i;

	for (i = 0; i < sd->n; i++)
		if (sd->ref[i] && !strcmp(sd->base[i], base))
			return sd->ref[i];
	cr_assert_fail("state dict has no %s", base);
	return NULL;
}

static uint64_t sd_params(const struct sd *sd)
{
	uint64_t n = 0;
	uint32_t i;

	for (i = 0; i < sd->n; i++)
		if (sd->ref[i] && sd->param[i])
			n += (uint64_t)numel(&sd->t[i]);
	return n;
}

/* Element i of model tensor t by its recipe, computed from the state dict. */
static double expected(const struct sd *sd, const struct tensor *t, uint64_t i)
{
	const char *name = t->name, *hash = strchr(name, '#'), *brace = strchr(name, '{');
	size_t len = strlen(name);
	char base[NAME_LEN], part[16];
	uint64_t numel_t = t->nbytes / dtype_size((enum dtype)t->dtype), rows, cols;
	double scale;

	if (hash) {
		snprintf(base, sizeof(base), "%.*s.weight", (int)(hash - name), name);
		scale = sd_ref(sd, base)[i];
		snprintf(base, sizeof(base), "%.*s.running_var", (int)(hash - name), name);
		scale /= sqrt(sd_ref(sd, base)[i] + 1e-5);
		if (!strcmp(hash, "#scale"))
			return scale;
		snprintf(base, sizeof(base), "%.*s.running_mean", (int)(hash - name), name);
		scale *= sd_ref(sd, base)[i];
		snprintf(base, sizeof(base), "%.*s.bias", (int)(hash - name), name);
		return sd_ref(sd, base)[i] - scale;
	}
	if (len > 2 && !strcmp(name + len - 2, "^T")) {
		rows = (uint64_t)t->dims[0];
		cols = (uint64_t)t->dims[1];
		snprintf(base, sizeof(base), "%.*s", (int)(len - 2), name);
		return sd_ref(sd, base)[(i % cols) * rows + i / cols];
	}
	if (brace) {
		/* only the zoo's "{query,key,value}" */
		static const char *const qkv[3] = {"query", "key", "value"};
		uint64_t each = numel_t / 3;

		cr_assert(!strncmp(brace, "{query,key,value}", 17), "%s", name);
		snprintf(part, sizeof(part), "%s", qkv[i / each]);
		snprintf(base, sizeof(base), "%.*s%s%s", (int)(brace - name), name, part,
			 brace + 17);
		return sd_ref(sd, base)[i % each];
	}
	return sd_ref(sd, name)[i];
}

/* Value of element i of a filled tensor, decoded. */
static double filled(const struct tensor *t, const uint8_t *p, uint64_t i)
{
	if (t->dtype == DT_F32)
		return ((const float *)p)[i];
	if (t->dtype == DT_F16)
		return f16_to_f32(((const uint16_t *)p)[i]);
	return bf16_to_f32(((const uint16_t *)p)[i]);
}

static double round_to(enum dtype dt, double v)
{
	float f = (float)v;

	if (dt == DT_F16)
		return f16_to_f32(f32_to_f16(f));
	if (dt == DT_BF16)
		return bf16_to_f32(f32_to_bf16(f));
	return f;
}

/*
 * Fill every weight of zoo model `model` (dtype dt) from a file holding sd
 * and compare each element with its recipe. Returns the weights compared.
 */
static uint32_t check_model(const char *model, enum dtype dt, const struct sd *sd, const char *file)
{
	const char *p = path_of(file);
	struct weight_source *ws;
	struct graph *g;
	uint8_t *buf;
	uint32_t t, n = 0;
	uint64_t i, bad = 0;
	int ret;

	cr_assert_eq(st_write(p, sd->t, sd->n), 0, "%s", err_msg(0));
	cr_assert_eq(zoo_build(model, dt, &g), 0);
	cr_expect_eq(sd_params(sd), g->n_params, "%s: the state dict has %llu params", model,
		     (unsigned long long)sd_params(sd));
	cr_assert_eq(wsrc_safetensors(p, &ws), 0, "%s", err_msg(0));
	for (t = 0; t < g->n_tensors; t++) {
		const struct tensor *w = &g->tensors[t];

		if (w->kind != TK_WEIGHT)
			continue;
		buf = malloc(w->nbytes);
		ret = wsrc_fill(ws, g, t, buf);
		cr_assert_eq(ret, 0, "%s: %s", w->name, err_msg(ret));
		for (i = 0; i < w->nbytes / dtype_size(dt); i++) {
			double want = round_to(dt, expected(sd, w, i)), got = filled(w, buf, i);

			/* the fold may round differently once (FMA contraction) */
			bad += strchr(w->name, '#') ? fabs(got - want) > 1e-6 * fabs(want) :
						      got != want;
		}
		free(buf);
		n++;
	}
	cr_expect_eq(bad, 0, "%s: %llu elements differ from their recipe", model,
		     (unsigned long long)bad);
	wsrc_destroy(ws);
	graph_destroy(g);
	return n;
}

TestSuite(wsrc_safetensors, .init = make_dir, .fini = remove_dir);

Test(wsrc_safetensors, bert_tiny_concat_with_and_without_prefix)
{
	const char *prefixes[2] = {"", "bert."};
	struct sd sd;
	int i;

	for (i = 0; i < 2; i++) {
		sd_init(&sd, prefixes[i], DT_F32);
		sd_bert(&sd, 64, 2);
		cr_expect_eq(check_model("bert-tiny", DT_F32, &sd, "bert.safetensors"), 31);
		sd_free(&sd);
	}
}

Test(wsrc_safetensors, roberta_tiny_prefix)
{
	struct sd sd;

	sd_init(&sd, "roberta.", DT_F32);
	sd_bert(&sd, 64, 1);
	check_model("roberta-tiny", DT_F32, &sd, "roberta.safetensors");
	sd_free(&sd);
}

Test(wsrc_safetensors, gpt2_tiny_transpose)
{
	struct sd sd;

	sd_init(&sd, "transformer.", DT_F32);
	sd_gpt2(&sd);
	cr_expect_eq(check_model("gpt2-tiny", DT_F32, &sd, "gpt2.safetensors"), 28);
	sd_free(&sd);
}

Test(wsrc_safetensors, resnet_tiny_batchnorm_fold)
{
	const char *prefixes[2] = {"", "model."};
	struct sd sd;
	int i;

	for (i = 0; i < 2; i++) {
		sd_init(&sd, prefixes[i], DT_F32);
		sd_resnet(&sd);
		cr_expect_eq(check_model("resnet-tiny", DT_F32, &sd, "resnet.safetensors"),
			     3 + 4 * 12 + 2);
		sd_free(&sd);
	}
}

Test(wsrc_safetensors, dtype_conversions)
{
	struct sd sd;

	sd_init(&sd, "bert.", DT_F32);
	sd_bert(&sd, 64, 2);
	check_model("bert-tiny", DT_F16, &sd, "a.safetensors");
	check_model("bert-tiny", DT_BF16, &sd, "a.safetensors");
	sd_free(&sd);
	sd_init(&sd, "", DT_F16);
	sd_gpt2(&sd);
	check_model("gpt2-tiny", DT_F32, &sd, "b.safetensors");
	check_model("gpt2-tiny", DT_BF16, &sd, "b.safetensors");
	sd_free(&sd);
	sd_init(&sd, "", DT_BF16);
	sd_resnet(&sd);
	check_model("resnet-tiny", DT_F32, &sd, "c.safetensors");
	check_model("resnet-tiny", DT_F16, &sd, "c.safetensors");
	sd_free(&sd);
}

static uint32_t weight_id(const struct graph *g, const char *name)
{
	uint32_t t;

	for (t = 0; t < g->n_tensors; t++)
		if (!strcmp(g->tensors[t].name, name))
			return t;
	cr_assert_fail("no weight %s", name);
	return 0;
}

Test(wsrc_safetensors, f64_source)
{
	const char *p = path_of("f64.safetensors");
	char hdr[256];
	double v[64];
	float out[64];
	struct weight_source *ws;
	struct graph *g;
	int i;

	for (i = 0; i < 64; i++)
		v[i] = 1.0 / (i + 3);
	snprintf(
		hdr, sizeof(hdr),
		"{\"pooler.dense.bias\":{\"dtype\":\"F64\",\"shape\":[64],\"data_offsets\":[0,512]}}");
	write_raw(p, hdr, v, sizeof(v));
	cr_assert_eq(zoo_build("bert-tiny", DT_F32, &g), 0);
	cr_assert_eq(wsrc_safetensors(p, &ws), 0, "%s", err_msg(0));
	cr_assert_eq(wsrc_fill(ws, g, weight_id(g, "pooler.dense.bias"), out), 0, "%s", err_msg(0));
	for (i = 0; i < 64; i++)
		cr_expect_eq(out[i], (float)v[i]);
	wsrc_destroy(ws);
	graph_destroy(g);
}

Test(wsrc_safetensors, layernorm_gamma_beta_names)
{
	const char *p = path_of("gamma.safetensors");
	float gam[64], bet[64], out[64];
	struct st_tensor ts[2] = {
		{"bert.embeddings.LayerNorm.gamma", DT_F32, 1, {64}, gam, sizeof(gam)},
		{"bert.embeddings.LayerNorm.beta", DT_F32, 1, {64}, bet, sizeof(bet)},
	};
	struct weight_source *ws;
	struct graph *g;
	int i;

	for (i = 0; i < 64; i++) {
		gam[i] = 1.0f + (float)i / 64;
		bet[i] = -(float)i;
	}
	cr_assert_eq(st_write(p, ts, 2), 0);
	cr_assert_eq(zoo_build("bert-tiny", DT_F32, &g), 0);
	cr_assert_eq(wsrc_safetensors(p, &ws), 0);
	cr_assert_eq(wsrc_fill(ws, g, weight_id(g, "embeddings.LayerNorm.weight"), out), 0);
	cr_expect_arr_eq(out, gam, sizeof(gam));
	cr_assert_eq(wsrc_fill(ws, g, weight_id(g, "embeddings.LayerNorm.bias"), out), 0);
	cr_expect_arr_eq(out, bet, sizeof(bet));
	wsrc_destroy(ws);
	graph_destroy(g);
}

/* Remove state-dict entry `base` (the file then lacks it). */
static void sd_drop(struct sd *sd, const char *base)
{
	uint32_t i;

	for (i = 0; i < sd->n; i++)
		if (sd->ref[i] && !strcmp(sd->base[i], base))
			sd->t[i].name[0] = '~'; /* keep the memory; rename out of reach */
}

static void expect_fill_error(struct sd *sd, const char *model, const char *tensor,
			      const char *needles[3])
{
	const char *p = path_of("err.safetensors");
	struct weight_source *ws;
	struct graph *g;
	uint8_t *buf;
	uint32_t t;
	int ret, k;

	cr_assert_eq(st_write(p, sd->t, sd->n), 0);
	cr_assert_eq(zoo_build(model, DT_F32, &g), 0);
	cr_assert_eq(wsrc_safetensors(p, &ws), 0);
	t = weight_id(g, tensor);
	buf = malloc(1 << 20); /* any tiny-model tensor */
	ret = wsrc_fill(ws, g, t, buf);
	cr_expect_eq(ret, DPRT_EWEIGHTS, "%s", tensor);
	cr_expect_not_null(strstr(err_msg(ret), p), "%s", err_msg(ret));
	for (k = 0; k < 3 && needles[k]; k++)
		cr_expect_not_null(strstr(err_msg(ret), needles[k]), "'%s' not in: %s", needles[k],
				   err_msg(ret));
	/* the rest of the model still fills */
	cr_expect_eq(wsrc_fill(ws, g, weight_id(g, "pooler.dense.weight"), buf), 0);
	free(buf);
	wsrc_destroy(ws);
	graph_destroy(g);
}

Test(wsrc_safetensors, missing_tensor)
{
	const char *needles[3] = {"encoder.layer.1.attention.self.key.weight", "not found", NULL};
	struct sd sd;

	sd_init(&sd, "bert.", DT_F32);
	sd_bert(&sd, 64, 2);
	sd_drop(&sd, "encoder.layer.1.attention.self.key.weight");
	expect_fill_error(&sd, "bert-tiny",
			  "encoder.layer.1.attention.self.{query,key,value}.weight", needles);
	sd_free(&sd);
}

Test(wsrc_safetensors, wrong_shape)
{
	const char *needles[3] = {"encoder.layer.0.intermediate.dense.weight", "[64, 128]",
				  "[128, 64]"};
	struct sd sd;
	uint32_t i;

	sd_init(&sd, "", DT_F32);
	sd_bert(&sd, 64, 2);
	for (i = 0; i < sd.n; i++)
		if (!strcmp(sd.base[i], "encoder.layer.0.intermediate.dense.weight")) {
			sd.t[i].dims[0] = 64;
			sd.t[i].dims[1] = 128;
		}
	expect_fill_error(&sd, "bert-tiny", "encoder.layer.0.intermediate.dense.weight", needles);
	sd_free(&sd);
}

Test(wsrc_safetensors, non_float_source)
{
	const char *needles[3] = {"pooler.dense.bias", "I32", NULL};
	struct sd sd;
	uint32_t i;

	sd_init(&sd, "", DT_F32);
	sd_bert(&sd, 64, 2);
	for (i = 0; i < sd.n; i++)
		if (!strcmp(sd.base[i], "pooler.dense.bias"))
			sd.t[i].dtype = DT_I32;
	expect_fill_error(&sd, "bert-tiny", "pooler.dense.bias", needles);
	sd_free(&sd);
}

Test(wsrc_safetensors, bad_files)
{
	struct weight_source *ws = (struct weight_source *)1;
	char junk[4] = {0};

	cr_expect_eq(wsrc_safetensors(path_of("none.safetensors"), &ws), -ENOENT);
	cr_expect_null(ws);
	write_raw(path_of("junk.safetensors"), "{junk", junk, 4);
	cr_expect_eq(wsrc_safetensors(path_of("junk.safetensors"), &ws), DPRT_EBADPKG);
	cr_expect_null(ws);
}
