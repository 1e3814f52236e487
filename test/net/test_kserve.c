/* SPDX-License-Identifier: MIT */
/* KServe v2 codec: request decoding and its errors, response encoding. */
#include <criterion/criterion.h>

#include "net/kserve.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct arena arena;
static struct kserve_request req;

static void setup(void)
{
	cr_assert_eq(arena_init(&arena, 1 << 20), 0);
}

static void teardown(void)
{
	arena_fini(&arena);
}

TestSuite(kserve, .init = setup, .fini = teardown);

static int decode(const char *json)
{
	arena_reset(&arena);
	err_clear();
	return kserve_decode_request(json, strlen(json), -1, &arena, &req);
}

/* JSON header followed by nbin binary bytes. */
static int decode_bin(const char *json, const void *bin, size_t nbin, char *body)
{
	size_t jl = strlen(json);

	memcpy(body, json, jl);
	memcpy(body + jl, bin, nbin);
	arena_reset(&arena);
	err_clear();
	return kserve_decode_request(body, jl + nbin, (int64_t)jl, &arena, &req);
}

static void expect_error(const char *json, const char *msg_part)
{
	int ret = decode(json);

	cr_assert_eq(ret, DPRT_EINPUT, "%s: got %d", json, ret);
	cr_assert_eq(kserve_http_status(ret), 400);
	cr_assert_not_null(strstr(err_msg(ret), msg_part), "%s: message \"%s\" lacks \"%s\"", json,
			   err_msg(ret), msg_part);
}

Test(kserve, decode_json_fp32)
{
	const float *f;

	cr_assert_eq(decode("{\"id\":\"r1\",\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],"
			    "\"datatype\":\"FP32\",\"data\":[1,2.5,-3e-3,1e30,0,-0.0]}]}"),
		     0, "%s", err_msg(0));
	cr_assert_str_eq(req.id, "r1");
	cr_assert_eq(req.n_inputs, 1);
	cr_assert_eq(req.n_outputs, 0);
	cr_assert_str_eq(req.inputs[0].name, "x");
	cr_assert_eq(req.inputs[0].shape.dtype, DT_F32);
	cr_assert_eq(req.inputs[0].shape.ndim, 2);
	cr_assert_eq(req.inputs[0].shape.dims[1], 3);
	cr_assert_eq(req.inputs[0].nbytes, 24);
	cr_assert(!req.inputs[0].binary);
	f = req.inputs[0].data;
	cr_assert_eq(f[0], 1.0f);
	cr_assert_eq(f[1], 2.5f);
	cr_assert_eq(f[2], -3e-3f);
	cr_assert_eq(f[3], 1e30f);
	cr_assert(signbit(f[5]) && f[5] == 0);
	/* the tensor lives in the caller's arena */
	cr_assert((const char *)f >= arena.base && (const char *)f < arena.base + arena.used);
}

Test(kserve, decode_nested_and_ints)
{
	const int64_t *ids;
	const int32_t *i32;
	const uint8_t *u8, *b;

	cr_assert_eq(
		decode("{\"inputs\":["
		       "{\"name\":\"input_ids\",\"shape\":[2,3],\"datatype\":\"INT64\","
		       "\"data\":[[101,-5,9223372036854775807],[1,2,-9223372036854775808]]},"
		       "{\"name\":\"i\",\"shape\":[1,2,2],\"datatype\":\"INT32\","
		       "\"data\":[[[2147483647,-2147483648],[0,7]]]},"
		       "{\"name\":\"u\",\"shape\":[4],\"datatype\":\"UINT8\",\"data\":[0,1,128,255]},"
		       "{\"name\":\"b\",\"shape\":[2,1],\"datatype\":\"BOOL\",\"data\":[true,false]}"
		       "]}"),
		0, "%s", err_msg(0));
	cr_assert_eq(req.n_inputs, 4);
	ids = req.inputs[0].data;
	cr_assert_eq(ids[0], 101);
	cr_assert_eq(ids[1], -5);
	cr_assert_eq(ids[2], INT64_MAX);
	cr_assert_eq(ids[5], INT64_MIN);
	i32 = req.inputs[1].data;
	cr_assert_eq(i32[0], INT32_MAX);
	cr_assert_eq(i32[1], INT32_MIN);
	cr_assert_eq(i32[3], 7);
	u8 = req.inputs[2].data;
	cr_assert_eq(u8[3], 255);
	b = req.inputs[3].data; /* flat data for a [2,1] shape is fine too */
	cr_assert_eq(b[0], 1);
	cr_assert_eq(b[1], 0);
	/* unused dims are 0, whatever the struct held before */
	cr_assert_eq(decode("{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"BOOL\","
			    "\"data\":[true]},{\"name\":\"b\",\"shape\":[2],\"datatype\":\"BOOL\","
			    "\"data\":[true,false]}]}"),
		     0);
	cr_assert_eq(req.inputs[1].shape.ndim, 1);
	cr_assert_eq(req.inputs[1].shape.dims[1], 0);
	cr_assert_eq(req.inputs[1].shape.dims[2], 0);
}

Test(kserve, decode_fp16_bf16)
{
	const uint16_t *h;

	cr_assert_eq(decode("{\"inputs\":["
			    "{\"name\":\"h\",\"shape\":[6],\"datatype\":\"FP16\","
			    "\"data\":[0.1,-2,65504,6e-8,\"NaN\",\"-Infinity\"]},"
			    "{\"name\":\"bf\",\"shape\":[3],\"datatype\":\"BF16\","
			    "\"data\":[0.1,3e38,\"Infinity\"]}]}"),
		     0, "%s", err_msg(0));
	h = req.inputs[0].data;
	cr_assert_eq(h[0], f32_to_f16(0.1f));
	cr_assert_eq(h[1], 0xc000);
	cr_assert_eq(h[2], 0x7bff);
	cr_assert_eq(h[3], 0x0001); /* rounds to the smallest subnormal */
	cr_assert(isnan(f16_to_f32(h[4])));
	cr_assert_eq(h[5], 0xfc00);
	h = req.inputs[1].data;
	cr_assert_eq(h[0], f32_to_bf16(0.1f));
	cr_assert_eq(h[1], f32_to_bf16(3e38f));
	cr_assert_eq(h[2], 0x7f80);
}

Test(kserve, decode_outputs_and_params)
{
	bool bin;

	cr_assert_eq(
		decode("{\"parameters\":{\"binary_data_output\":true,\"other\":1},"
		       "\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}],"
		       "\"outputs\":[{\"name\":\"logits\"},"
		       "{\"name\":\"pooled\",\"parameters\":{\"binary_data\":false}}]}"),
		0, "%s", err_msg(0));
	cr_assert(req.binary_output);
	cr_assert_eq(req.n_outputs, 2);
	cr_assert_str_eq(req.id, "");
	cr_assert(kserve_want_output(&req, "logits", &bin) && bin);
	cr_assert(kserve_want_output(&req, "pooled", &bin) && !bin);
	cr_assert(!kserve_want_output(&req, "hidden", &bin));
	cr_assert_eq(decode("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\","
			    "\"data\":[1]}],\"outputs\":[{\"name\":\"a\",\"parameters\":"
			    "{\"binary_data\":true}}]}"),
		     0);
	cr_assert(!req.binary_output);
	cr_assert(kserve_want_output(&req, "a", &bin) && bin);
	cr_assert_eq(decode("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\","
			    "\"data\":[1]}]}"),
		     0);
	cr_assert(kserve_want_output(&req, "anything", &bin) && !bin);
}

Test(kserve, decode_binary_and_mixed)
{
	const char *json = "{\"inputs\":["
			   "{\"name\":\"a\",\"shape\":[2],\"datatype\":\"INT64\","
			   "\"parameters\":{\"binary_data_size\":16}},"
			   "{\"name\":\"j\",\"shape\":[2],\"datatype\":\"INT32\",\"data\":[5,6]},"
			   "{\"name\":\"m\",\"shape\":[1,2],\"datatype\":\"BOOL\","
			   "\"parameters\":{\"binary_data_size\":2}},"
			   "{\"name\":\"f\",\"shape\":[3],\"datatype\":\"FP32\","
			   "\"parameters\":{\"binary_data_size\":12}}]}";
	int64_t a[2] = {7, -8};
	float f[3] = {1.5f, NAN, -INFINITY};
	char bin[30], *body = aligned_alloc(64, 4096);
	size_t jl = strlen(json);
	const float *fo;

	memcpy(bin, a, 16);
	bin[16] = 1;
	bin[17] = 0;
	memcpy(bin + 18, f, 12);
	cr_assert_eq(decode_bin(json, bin, 30, body), 0, "%s", err_msg(0));
	cr_assert_eq(req.n_inputs, 4);
	cr_assert(req.inputs[0].binary && !req.inputs[1].binary);
	cr_assert_eq(memcmp(req.inputs[0].data, a, 16), 0);
	cr_assert_eq(((const int32_t *)req.inputs[1].data)[1], 6);
	cr_assert_eq(((const uint8_t *)req.inputs[2].data)[0], 1);
	fo = req.inputs[3].data;
	cr_assert_eq(fo[0], 1.5f);
	cr_assert(isnan(fo[1]));
	cr_assert_eq(fo[2], -INFINITY);
	/* data is aligned: zero copy when the body already was, else a copy */
	cr_assert_eq((uintptr_t)req.inputs[3].data % 4, 0);
	cr_assert_eq((uintptr_t)req.inputs[0].data % 8, 0);
	if ((jl + 18) % 4 == 0)
		cr_assert(req.inputs[3].data == body + jl + 18);
	else
		cr_assert((const char *)req.inputs[3].data >= arena.base);
	cr_assert(req.inputs[2].data == body + jl + 16); /* bytes never need aligning */
	free(body);
}

Test(kserve, decode_binary_zero_copy)
{
	const char *json = "{\"inputs\":[{\"name\":\"x\",\"shape\":[4],\"datatype\":\"FP32\","
			   "\"parameters\":{\"binary_data_size\":16}}]}  ";
	char *body = aligned_alloc(64, 4096);
	float x[4] = {1, 2, 3, 4};
	size_t jl = strlen(json);

	/* pad the JSON with blanks so the binary part starts 16-aligned */
	memcpy(body, json, jl);
	while (jl % 16)
		body[jl++] = ' ';
	memcpy(body + jl, x, 16);
	arena_reset(&arena);
	cr_assert_eq(kserve_decode_request(body, jl + 16, (int64_t)jl, &arena, &req), 0, "%s",
		     err_msg(0));
	cr_assert(req.inputs[0].data == body + jl);
	cr_assert_eq(arena.used, 0);
	free(body);
}

Test(kserve, validation_errors)
{
	static const struct {
		const char *json, *msg;
	} cases[] = {
		{"", "not valid JSON"},
		{"{\"inputs\":[}", "not valid JSON"},
		{"[1]", "not a JSON object"},
		{"{\"inputs\":{}}", "no \"inputs\" array"},
		{"{}", "no \"inputs\" array"},
		{"{\"inputs\":[]}", "no inputs"},
		{"{\"id\":5,\"inputs\":[]}", "\"id\" must be a string"},
		{"{\"parameters\":[],\"inputs\":[]}", "\"parameters\" must be an object"},
		{"{\"parameters\":{\"binary_data_output\":1},\"inputs\":[]}", "binary_data_output"},
		{"{\"inputs\":[5]}", "inputs[0] is not an object"},
		{"{\"inputs\":[{\"shape\":[1]}]}", "inputs[0] has no \"name\""},
		{"{\"inputs\":[{\"name\":\"\"}]}", "name must have 1 to 95 bytes"},
		{"{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"data\":[1]}]}",
		 "x: \"datatype\" missing"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP33\",\"shape\":[1],\"data\":[1]}]}",
		 "x: unknown datatype \"FP33\""},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP64\",\"shape\":[1],\"data\":[1]}]}",
		 "x: datatype FP64 is not supported"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"a\"]}]}",
		 "datatype BYTES is not supported"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"data\":[1]}]}",
		 "\"shape\" missing"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[],\"data\":[1]}]}",
		 "scalar tensors"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,1,1,1,1,1,1],\"data\":[1]}]}",
		 "shape has 7 dims"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1],\"data\":[1]}]}",
		 "non-negative integers"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1.5],\"data\":[1]}]}",
		 "non-negative integers"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1048576,1048576,2],\"data\":[1]}]}",
		 "more than 2^40 elements"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1099511627776,"
		 "1099511627776],\"data\":[]}]}",
		 "more than 2^40 elements"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2199023255552,0],"
		 "\"data\":[]}]}",
		 "more than 2^40 elements"},
		{"{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\",\"shape\":[1,8],"
		 "\"data\":[1,2,3,4,5,6,7]}]}",
		 "input_ids: shape [1,8] needs 8 elements, data has 7"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT64\",\"shape\":[2,2],"
		 "\"data\":[[1,2],[3]]}]}",
		 "x: data is ragged"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT64\",\"shape\":[2,2],"
		 "\"data\":[[1,2],3,4]}]}",
		 "x: data is ragged"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT64\",\"shape\":[3],"
		 "\"data\":[1,[2],3]}]}",
		 "x: data is ragged"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT64\",\"shape\":[0],"
		 "\"data\":[[],[1]]}]}",
		 "x: data is ragged"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT64\",\"shape\":[2],\"data\":5}]}",
		 "\"data\" must be an array"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT64\",\"shape\":[2],\"data\":[1,2.5]}]}",
		 "x: element 1 (2.5) is not an integer"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT32\",\"shape\":[1],\"data\":[\"1\"]}]}",
		 "x: element 0 (\"1\") is not an integer"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT32\",\"shape\":[2],\"data\":[1,2147483648]}]}",
		 "x: element 1 (2147483648) is out of range for INT32"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT32\",\"shape\":[1],\"data\":[-2147483649]}]}",
		 "out of range for INT32"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"UINT8\",\"shape\":[1],\"data\":[256]}]}",
		 "(256) is out of range for UINT8"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"UINT8\",\"shape\":[1],\"data\":[-1]}]}",
		 "out of range for UINT8"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP16\",\"shape\":[1],\"data\":[65520]}]}",
		 "(65520) is out of range for FP16"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1e39]}]}",
		 "out of range for FP32"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"BF16\",\"shape\":[1],\"data\":[3.4e38]}]}",
		 "out of range for BF16"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[\"nan\"]}]}",
		 "is not a number"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[true]}]}",
		 "is not a number"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"BOOL\",\"shape\":[1],\"data\":[1]}]}",
		 "is not true or false"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]},"
		 "{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}",
		 "two inputs are named x"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1]}]}",
		 "x has neither \"data\" nor binary_data_size"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1],"
		 "\"parameters\":{\"binary_data_size\":4}}]}",
		 "x has both"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],"
		 "\"parameters\":{\"binary_data_size\":4}}]}",
		 "no Inference-Header-Content-Length"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"parameters\":5}]}",
		 "\"parameters\" must be an object"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],"
		 "\"parameters\":{\"shared_memory_region\":\"r\"}}]}",
		 "shared-memory tensors are not supported"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}],"
		 "\"outputs\":{}}",
		 "\"outputs\" must be an array"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}],"
		 "\"outputs\":[{\"name\":\"y\"},{\"name\":\"y\"}]}",
		 "output y is requested twice"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}],"
		 "\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":\"yes\"}}]}",
		 "binary_data must be true or false"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}],"
		 "\"outputs\":[{\"name\":\"y\",\"parameters\":{\"classification\":3}}]}",
		 "classification"},
		{"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}],"
		 "\"outputs\":[{}]}",
		 "outputs[0] has no \"name\""},
		{"{\"inputs\":[], \"inputs\":[]}", "duplicate object key"},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++)
		expect_error(cases[i].json, cases[i].msg);
}

Test(kserve, too_many_and_too_deep)
{
	char json[8192];
	int i, n;

	n = snprintf(json, sizeof(json), "{\"inputs\":[");
	for (i = 0; i <= KSERVE_MAX_TENSORS; i++)
		n += snprintf(
			json + n, sizeof(json) - (size_t)n,
			"%s{\"name\":\"x%d\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}",
			i ? "," : "", i);
	snprintf(json + n, sizeof(json) - (size_t)n, "]}");
	expect_error(json, "17 inputs, at most 16");
	n = snprintf(json, sizeof(json),
		     "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":");
	for (i = 0; i < 40; i++)
		json[n++] = '[';
	json[n++] = '1';
	for (i = 0; i < 40; i++)
		json[n++] = ']';
	snprintf(json + n, sizeof(json) - (size_t)n, "}]}");
	expect_error(json, "nested more than 32 deep");
}

Test(kserve, binary_errors)
{
	char body[1024];
	char bin[64];
	int ret;

	memset(bin, 0, sizeof(bin));
	ret = decode_bin("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT32\",\"shape\":[1,8],"
			 "\"parameters\":{\"binary_data_size\":28}}]}",
			 bin, 28, body);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_str_eq(err_msg(ret),
			 "x: binary_data_size 28 does not match shape [1,8] of INT32 (32 bytes)");
	ret = decode_bin("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT32\",\"shape\":[8],"
			 "\"parameters\":{\"binary_data_size\":32}}]}",
			 bin, 31, body);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_not_null(strstr(err_msg(ret), "runs past the end of the body"));
	ret = decode_bin("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT32\",\"shape\":[8],"
			 "\"parameters\":{\"binary_data_size\":32}}]}",
			 bin, 33, body);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_str_eq(err_msg(ret),
			 "33 bytes of binary data follow the JSON, but the inputs use 32");
	ret = decode_bin("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],"
			 "\"data\":[1]}]}",
			 bin, 4, body);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_not_null(strstr(err_msg(ret), "4 bytes of binary data follow the JSON"));
	ret = decode_bin("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT32\",\"shape\":[8],"
			 "\"parameters\":{\"binary_data_size\":-32}}]}",
			 bin, 32, body);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_not_null(strstr(err_msg(ret), "non-negative integer"));
	bin[1] = 2;
	ret = decode_bin("{\"inputs\":[{\"name\":\"m\",\"datatype\":\"BOOL\",\"shape\":[2],"
			 "\"parameters\":{\"binary_data_size\":2}}]}",
			 bin, 2, body);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_str_eq(err_msg(ret), "m: binary BOOL element 1 is 2, not 0 or 1");
	/* header length beyond the body */
	strcpy(body, "{\"inputs\":[]}");
	ret = kserve_decode_request(body, 13, 14, &arena, &req);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_not_null(strstr(err_msg(ret), "larger than the body"));
	ret = kserve_decode_request(body, 13, 0, &arena, &req);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_not_null(strstr(err_msg(ret), "not valid JSON"));
}

Test(kserve, arena_too_small)
{
	struct arena small;
	const char *json = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[64],"
			   "\"data\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,"
			   "24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,"
			   "47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64]}]}";
	int ret;

	cr_assert_eq(arena_init(&small, 128), 0);
	ret = kserve_decode_request(json, strlen(json), -1, &small, &req);
	cr_assert_eq(ret, -E2BIG);
	cr_assert_eq(kserve_http_status(ret), 413);
	cr_assert_not_null(strstr(err_msg(ret), "128-byte decode arena"));
	arena_fini(&small);
}

/* ---- responses ---- */

/* Encode res, decode it back into out with the client decoder. Returns the
 * body, which binary outputs point into: free it after use. */
static char *round_trip(const struct kserve_response *res, struct kserve_result *out)
{
	size_t bound = kserve_response_bound(res), jl, off;
	char *buf = malloc(bound + 1), *body;
	bool any_binary = false;
	uint64_t bl;
	uint32_t i;
	int ret;

	ret = kserve_encode_response(res, buf, bound, &jl, &bl);
	cr_assert_eq(ret, 0, "encode: %d", ret);
	cr_assert_leq(jl, bound);
	body = malloc(jl + bl + 1);
	memcpy(body, buf, jl);
	off = jl;
	for (i = 0; i < res->n_outputs; i++) {
		const struct kserve_out *o = &res->outputs[i];
		size_t n = (size_t)shape_numel(&o->shape) * dtype_size(o->shape.dtype);

		if (!o->binary)
			continue;
		any_binary = true;
		memcpy(body + off, o->data, n);
		off += n;
	}
	cr_assert_eq(off, jl + bl);
	arena_reset(&arena);
	ret = kserve_decode_response(body, off, any_binary ? (int64_t)jl : -1, &arena, out);
	cr_assert_eq(ret, 0, "decode: %s\n%.*s", err_msg(ret), (int)jl, buf);
	free(buf);
	return body;
}

Test(kserve, encode_round_trip)
{
	float f32[7] = {1.0f / 3, -1.17549435e-38f, 3.40282347e38f, NAN, INFINITY, 1.4e-45f, -0.0f};
	uint16_t f16[4] = {0x3555, 0x0001, 0x7bff, 0xfc00};
	uint16_t bf16[3] = {0x3eab, 0xff80, 0x0001};
	int64_t i64[3] = {INT64_MIN, INT64_MAX, 0};
	int32_t i32[2] = {INT32_MIN, 42};
	uint8_t u8[3] = {0, 200, 255};
	uint8_t b[2] = {1, 0};
	struct kserve_out outs[] = {
		{"f32", {DT_F32, 1, {7}}, f32, false},
		{"f16", {DT_F16, 1, {4}}, f16, false},
		{"bf16", {DT_BF16, 1, {3}}, bf16, false},
		{"i64", {DT_I64, 1, {3}}, i64, false},
		{"i32", {DT_I32, 2, {1, 2}}, i32, false},
		{"u8", {DT_U8, 1, {3}}, u8, false},
		{"b", {DT_BOOL, 1, {2}}, b, false},
		{"f32bin", {DT_F32, 1, {7}}, f32, true},
		{"i64bin", {DT_I64, 3, {1, 1, 3}}, i64, true},
		{"empty", {DT_F32, 2, {0, 4}}, f32, true},
		{"empty_json", {DT_I32, 2, {3, 0}}, i32, false},
	};
	struct kserve_param params[] = {
		{.name = "queue_us", .type = KP_INT, .i = 17},
		{.name = "note", .type = KP_STRING, .s = "a \"quoted\"\n\x01 \xff text"},
	};
	struct kserve_response res = {
		.model_name = "bert-base",
		.model_version = "1",
		.id = "req-9",
		.cold_start = true,
		.n_params = 2,
		.params = params,
		.n_outputs = ARRAY_SIZE(outs),
		.outputs = outs,
	};
	struct kserve_result *out = malloc(sizeof(*out));
	char *body = round_trip(&res, out);
	uint32_t i;

	cr_assert_str_eq(out->model_name, "bert-base");
	cr_assert_str_eq(out->model_version, "1");
	cr_assert_str_eq(out->id, "req-9");
	cr_assert_eq(out->n_outputs, ARRAY_SIZE(outs));
	for (i = 0; i < ARRAY_SIZE(outs); i++) {
		const struct kserve_tensor *t = &out->outputs[i];
		size_t n = (size_t)shape_numel(&outs[i].shape) * dtype_size(outs[i].shape.dtype);

		cr_assert_str_eq(t->name, outs[i].name);
		cr_assert_eq(t->shape.dtype, outs[i].shape.dtype);
		cr_assert_eq(t->shape.ndim, outs[i].shape.ndim);
		cr_assert_eq(memcmp(t->shape.dims, outs[i].shape.dims,
				    sizeof(int64_t) * t->shape.ndim),
			     0);
		cr_assert_eq(t->binary, outs[i].binary, "%s", t->name);
		cr_assert_eq(t->nbytes, n);
		/* bit-exact, NaN and infinities included */
		cr_assert_eq(memcmp(t->data, outs[i].data, n), 0, "%s differs", t->name);
	}
	free(body);
	free(out);
}

/* Every FP16 and BF16 value survives JSON (5 and 4 digits). */
Test(kserve, half_round_trip_exhaustive)
{
	static uint16_t h[65536];
	struct kserve_out o = {"h", {DT_F16, 1, {65536}}, h, false};
	struct kserve_response res = {.model_name = "m", .n_outputs = 1, .outputs = &o};
	struct kserve_result *out = malloc(sizeof(*out));
	const uint16_t *back;
	uint32_t i;
	int dt;

	for (dt = DT_F16; dt <= DT_BF16; dt++) {
		for (i = 0; i < 65536; i++)
			h[i] = (uint16_t)i;
		o.shape.dtype = (uint8_t)dt;
		free(round_trip(&res, out));
		back = out->outputs[0].data;
		for (i = 0; i < 65536; i++) {
			float x = dt == DT_F16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);

			if (isnan(x))
				cr_assert((back[i] & 0x7fff) > (dt == DT_F16 ? 0x7c00 : 0x7f80));
			else
				cr_assert_eq(back[i], h[i], "%s %04x came back as %04x",
					     dt == DT_F16 ? "FP16" : "BF16", i, back[i]);
		}
	}
	free(out);
}

/* Random FP32 bit patterns survive JSON with 9 digits. */
Test(kserve, fp32_round_trip_random)
{
	static uint32_t v[20000];
	struct kserve_out o = {"x", {DT_F32, 1, {20000}}, v, false};
	struct kserve_response res = {.model_name = "m", .n_outputs = 1, .outputs = &o};
	struct kserve_result *out = malloc(sizeof(*out));
	struct rng r;
	uint32_t i;

	rng_seed(&r, 7);
	for (i = 0; i < 20000; i++) {
		v[i] = (uint32_t)rng_next(&r);
		if ((v[i] & 0x7f800000) == 0x7f800000 && (v[i] & 0x7fffff))
			v[i] = 0x7fc00000; /* the NaN we write back */
	}
	free(round_trip(&res, out));
	cr_assert_eq(memcmp(out->outputs[0].data, v, sizeof(v)), 0);
	free(out);
}

Test(kserve, encode_json_shape)
{
	float x[2] = {0.5f, -2};
	struct kserve_out o = {"out\"put", {DT_F32, 2, {1, 2}}, x, false};
	struct kserve_response res = {.model_name = "m", .n_outputs = 1, .outputs = &o};
	char buf[512], head[512];
	size_t jl;
	uint64_t bl;
	int n;

	cr_assert_eq(kserve_encode_response(&res, buf, sizeof(buf), &jl, &bl), 0);
	buf[jl] = 0;
	cr_assert_str_eq(buf, "{\"model_name\":\"m\",\"parameters\":{\"cold_start\":false},"
			      "\"outputs\":[{\"name\":\"out\\\"put\",\"datatype\":\"FP32\","
			      "\"shape\":[1,2],\"data\":[0.5,-2]}]}");
	cr_assert_eq(bl, 0);
	n = kserve_write_infer_head(head, sizeof(head), &res, jl, true);
	cr_assert_gt(n, 0);
	head[n] = 0;
	cr_assert_not_null(strstr(head, "Content-Type: application/json\r\n"));
	cr_assert_null(strstr(head, "Inference-Header-Content-Length"));
	cr_assert_not_null(strstr(head, "Dprt-Cold-Start: false\r\n"));
	/* too small a buffer */
	cr_assert_eq(kserve_encode_response(&res, buf, 40, &jl, &bl), -ENOSPC);
	/* binary output: header announces the JSON length */
	o.binary = true;
	res.cold_start = true;
	cr_assert_eq(kserve_encode_response(&res, buf, sizeof(buf), &jl, &bl), 0);
	cr_assert_eq(bl, 8);
	n = kserve_write_infer_head(head, sizeof(head), &res, jl, false);
	head[n] = 0;
	snprintf(buf, sizeof(buf), "Inference-Header-Content-Length: %zu\r\n", jl);
	cr_assert_not_null(strstr(head, buf));
	snprintf(buf, sizeof(buf), "Content-Length: %zu\r\n", jl + 8);
	cr_assert_not_null(strstr(head, buf));
	cr_assert_not_null(strstr(head, "application/octet-stream"));
	cr_assert_not_null(strstr(head, "Dprt-Cold-Start: true\r\n"));
	/* an output with no dtype is a caller bug */
	o.shape.dtype = DT_NONE;
	cr_assert_eq(kserve_encode_response(&res, buf, sizeof(buf), &jl, &bl), -EINVAL);
}

/* The bound holds for the widest values of every dtype. */
Test(kserve, bound_is_enough)
{
	static char data[8 * 1000];
	static const uint8_t dts[] = {DT_F32, DT_F16, DT_BF16, DT_I64, DT_I32, DT_U8, DT_BOOL};
	struct kserve_out o = {"o", {DT_F32, 1, {1000}}, data, false};
	struct kserve_response res = {.model_name = "m", .n_outputs = 1, .outputs = &o};
	static char buf[64 * 1000];
	size_t i, jl, bound;
	uint64_t bl;

	for (i = 0; i < ARRAY_SIZE(dts); i++) {
		o.shape.dtype = dts[i];
		if (dts[i] == DT_F32)
			for (jl = 0; jl < 1000; jl++)
				memcpy(data + 4 * jl, &(float){-1.17549435e-38f}, 4);
		else if (dts[i] == DT_I64)
			for (jl = 0; jl < 1000; jl++)
				memcpy(data + 8 * jl, &(int64_t){INT64_MIN}, 8);
		else if (dts[i] == DT_I32)
			for (jl = 0; jl < 1000; jl++)
				memcpy(data + 4 * jl, &(int32_t){INT32_MIN}, 4);
		else
			memset(data, dts[i] == DT_BOOL ? 0 : 0xff, sizeof(data));
		if (dts[i] == DT_F16)
			for (jl = 0; jl < 1000; jl++)
				memcpy(data + 2 * jl, &(uint16_t){0x8401}, 2); /* -6.1095e-05 */
		bound = kserve_response_bound(&res);
		cr_assert_eq(kserve_encode_response(&res, buf, bound, &jl, &bl), 0, "%s",
			     dtype_name(dts[i]));
	}
}

static json_t *parse_back(const char *buf, int n)
{
	json_error_t e;
	json_t *j;

	cr_assert_gt(n, 0);
	j = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &e);
	cr_assert_not_null(j, "%s: %.*s", e.text, n, buf);
	return j;
}

Test(kserve, model_config)
{
	struct io_desc in[1] = {
		{.name = "input_ids", .dtype = DT_I64, .ndim = 2, .dims = {DIM_BATCH, DIM_SEQ}}};
	struct io_desc out[1] = {{.name = "logits", .dtype = DT_F32, .ndim = 2, .dims = {-1, 10}}};
	struct io_desc fixed[1] = {{.name = "x", .dtype = DT_F32, .ndim = 2, .dims = {4, 10}}};
	struct kserve_model_meta m = {"bert", NULL, 0, 1, 1, in, out};
	char buf[1024];
	json_t *j, *io;

	/* batched: max_batch_size, dims without the batch dim */
	j = parse_back(buf, kserve_encode_model_config(buf, sizeof(buf), &m, 8));
	cr_assert_str_eq(json_string_value(json_object_get(j, "platform")), "dprt");
	cr_assert_eq(json_integer_value(json_object_get(j, "max_batch_size")), 8);
	io = json_array_get(json_object_get(j, "input"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(io, "data_type")), "TYPE_INT64");
	cr_assert_eq(json_array_size(json_object_get(io, "dims")), 1);
	cr_assert_eq(json_integer_value(json_array_get(json_object_get(io, "dims"), 0)), -1);
	io = json_array_get(json_object_get(j, "output"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(io, "data_type")), "TYPE_FP32");
	cr_assert_eq(json_integer_value(json_array_get(json_object_get(io, "dims"), 0)), 10);
	json_decref(j);
	/* no bound, or an output without a batch dim: 0 and full dims */
	j = parse_back(buf, kserve_encode_model_config(buf, sizeof(buf), &m, 0));
	cr_assert_eq(json_integer_value(json_object_get(j, "max_batch_size")), 0);
	io = json_array_get(json_object_get(j, "input"), 0);
	cr_assert_eq(json_array_size(json_object_get(io, "dims")), 2);
	json_decref(j);
	m.outputs = fixed;
	j = parse_back(buf, kserve_encode_model_config(buf, sizeof(buf), &m, 8));
	cr_assert_eq(json_integer_value(json_object_get(j, "max_batch_size")), 0);
	json_decref(j);
	cr_assert_eq(kserve_encode_model_config(buf, 40, &m, 8), -ENOSPC);
}

Test(kserve, model_stats)
{
	struct kserve_model_stats st[2] = {
		{.name = "a\"b",
		 .version = "1",
		 .last_inference = 5,
		 .inference_count = 7,
		 .execution_count = 3,
		 .success = {3, 300},
		 .fail = {1, 10},
		 .queue = {3, 30},
		 .compute_input = {3, 1},
		 .compute_infer = {3, 200},
		 .compute_output = {3, 2}},
		{.name = "c", .version = "2"},
	};
	char buf[2048];
	json_t *j, *m, *is;

	j = parse_back(buf, kserve_encode_model_stats(buf, sizeof(buf), st, 2));
	cr_assert_eq(json_array_size(json_object_get(j, "model_stats")), 2);
	m = json_array_get(json_object_get(j, "model_stats"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(m, "name")), "a\"b");
	cr_assert_eq(json_integer_value(json_object_get(m, "inference_count")), 7);
	cr_assert_eq(json_integer_value(json_object_get(m, "execution_count")), 3);
	is = json_object_get(m, "inference_stats");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(is, "fail"), "ns")), 10);
	cr_assert_eq(
		json_integer_value(json_object_get(json_object_get(is, "compute_infer"), "count")),
		3);
	m = json_array_get(json_object_get(j, "model_stats"), 1);
	cr_assert_str_eq(json_string_value(json_object_get(m, "version")), "2");
	json_decref(j);
	j = parse_back(buf, kserve_encode_flag(buf, sizeof(buf), "live", true));
	cr_assert(json_is_true(json_object_get(j, "live")));
	json_decref(j);
}

Test(kserve, metadata_encoders)
{
	struct io_desc in[2] = {
		{.name = "input_ids", .dtype = DT_I64, .ndim = 2, .dims = {DIM_BATCH, DIM_SEQ}},
		{.name = "mask", .dtype = DT_I64, .ndim = 2, .dims = {DIM_BATCH, DIM_SEQ}},
	};
	struct io_desc out[1] = {
		{.name = "logits", .dtype = DT_F16, .ndim = 2, .dims = {-1, 1000}}};
	const char *versions[] = {"1", "2"};
	struct kserve_model_meta m = {"bert-base", versions, 2, 2, 1, in, out};
	char buf[2048];
	json_t *j, *io;

	j = parse_back(buf, kserve_encode_model_meta(buf, sizeof(buf), &m));
	cr_assert_str_eq(json_string_value(json_object_get(j, "name")), "bert-base");
	cr_assert_str_eq(json_string_value(json_object_get(j, "platform")), "dprt");
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "versions"), 1)), "2");
	io = json_array_get(json_object_get(j, "inputs"), 1);
	cr_assert_str_eq(json_string_value(json_object_get(io, "name")), "mask");
	cr_assert_str_eq(json_string_value(json_object_get(io, "datatype")), "INT64");
	cr_assert_eq(json_integer_value(json_array_get(json_object_get(io, "shape"), 1)), -1);
	io = json_array_get(json_object_get(j, "outputs"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(io, "datatype")), "FP16");
	cr_assert_eq(json_integer_value(json_array_get(json_object_get(io, "shape"), 1)), 1000);
	json_decref(j);
	cr_assert_eq(kserve_encode_model_meta(buf, 30, &m), -ENOSPC);

	j = parse_back(buf, kserve_encode_server_meta(buf, sizeof(buf), "0.1.0"));
	cr_assert_str_eq(json_string_value(json_object_get(j, "name")), "dprt");
	cr_assert_str_eq(json_string_value(json_object_get(j, "version")), "0.1.0");
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "extensions"), 0)),
			 "binary_tensor_data");
	json_decref(j);

	j = parse_back(buf,
		       kserve_encode_error(buf, sizeof(buf), "bad \"x\"\\\t\x01 caf\xc3\xa9 \xc3"));
	cr_assert_str_eq(json_string_value(json_object_get(j, "error")),
			 "bad \"x\"\\\t\x01 caf\xc3\xa9 \xef\xbf\xbd");
	json_decref(j);
}

Test(kserve, repo_index)
{
	struct kserve_repo_entry e[3] = {
		{"bert-base", "1", "READY", NULL},
		{"gpt2", NULL, "UNAVAILABLE", "failed to load: no space"},
		{"resnet", "", "LOADING", ""},
	};
	char buf[1024];
	json_t *j, *row;
	bool ready;

	j = parse_back(buf, kserve_encode_repo_index(buf, sizeof(buf), e, 3));
	cr_assert_eq(json_array_size(j), 3);
	row = json_array_get(j, 1);
	cr_assert_str_eq(json_string_value(json_object_get(row, "name")), "gpt2");
	cr_assert_null(json_object_get(row, "version"));
	cr_assert_str_eq(json_string_value(json_object_get(row, "reason")),
			 "failed to load: no space");
	row = json_array_get(j, 2);
	cr_assert_eq(json_object_size(row), 2);
	json_decref(j);
	j = parse_back(buf, kserve_encode_repo_index(buf, sizeof(buf), e, 0));
	cr_assert_eq(json_array_size(j), 0);
	json_decref(j);

	cr_assert_eq(kserve_decode_repo_index("", 0, &ready), 0);
	cr_assert(!ready);
	cr_assert_eq(kserve_decode_repo_index("{\"ready\":true}", 14, &ready), 0);
	cr_assert(ready);
	cr_assert_eq(kserve_decode_repo_index("{\"ready\":1}", 11, &ready), DPRT_EINPUT);
	cr_assert_eq(kserve_decode_repo_index("{", 1, &ready), DPRT_EINPUT);
}

Test(kserve, bind_to_signature)
{
	struct io_desc in[3] = {
		{.name = "input_ids", .dtype = DT_I64, .ndim = 2, .dims = {DIM_BATCH, DIM_SEQ}},
		{.name = "attention_mask",
		 .dtype = DT_I64,
		 .ndim = 2,
		 .dims = {DIM_BATCH, DIM_SEQ},
		 .flags = IO_OPTIONAL},
		{.name = "pixel",
		 .dtype = DT_F32,
		 .ndim = 2,
		 .dims = {DIM_BATCH, 3},
		 .flags = IO_OPTIONAL},
	};
	struct io_desc out[1] = {{.name = "logits", .dtype = DT_F32}};
	int order[3], ret;

	cr_assert_eq(
		decode("{\"inputs\":[{\"name\":\"pixel\",\"datatype\":\"FP32\",\"shape\":[1,3],"
		       "\"data\":[1,2,3]},{\"name\":\"input_ids\",\"datatype\":\"INT64\","
		       "\"shape\":[1,2],\"data\":[1,2]}],\"outputs\":[{\"name\":\"logits\"}]}"),
		0);
	cr_assert_eq(kserve_bind(&req, in, 3, out, 1, order), 0, "%s", err_msg(0));
	cr_assert_eq(order[0], 1);
	cr_assert_eq(order[1], -1);
	cr_assert_eq(order[2], 0);

	decode("{\"inputs\":[{\"name\":\"ids\",\"datatype\":\"INT64\",\"shape\":[1,2],\"data\":[1,2]}]}");
	ret = kserve_bind(&req, in, 3, out, 1, order);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_str_eq(
		err_msg(ret),
		"the model has no input ids (its inputs: input_ids, attention_mask, pixel)");
	decode("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT32\",\"shape\":[1,2],\"data\":[1,2]}]}");
	ret = kserve_bind(&req, in, 3, out, 1, order);
	cr_assert_eq(ret, DPRT_EDTYPE);
	cr_assert_str_eq(err_msg(ret), "input input_ids: datatype INT32, the model takes INT64");
	cr_assert_eq(kserve_http_status(ret), 400);
	decode("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\",\"shape\":[2],\"data\":[1,2]}]}");
	ret = kserve_bind(&req, in, 3, out, 1, order);
	cr_assert_eq(ret, DPRT_ESHAPE);
	cr_assert_str_eq(err_msg(ret), "input input_ids: shape [2], the model takes [-1,-1]");
	decode("{\"inputs\":[{\"name\":\"pixel\",\"datatype\":\"FP32\",\"shape\":[1,4],"
	       "\"data\":[1,2,3,4]}]}");
	ret = kserve_bind(&req, in, 3, out, 1, order);
	cr_assert_eq(ret, DPRT_ESHAPE);
	cr_assert_str_eq(err_msg(ret), "input pixel: shape [1,4], the model takes [-1,3]");
	decode("{\"inputs\":[{\"name\":\"pixel\",\"datatype\":\"FP32\",\"shape\":[1,3],\"data\":[1,2,3]}]}");
	ret = kserve_bind(&req, in, 3, out, 1, order);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_str_eq(err_msg(ret), "missing input input_ids");
	decode("{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\",\"shape\":[1,1],\"data\":[1]}],"
	       "\"outputs\":[{\"name\":\"hidden\"}]}");
	ret = kserve_bind(&req, in, 3, out, 1, order);
	cr_assert_eq(ret, DPRT_EINPUT);
	cr_assert_str_eq(err_msg(ret), "the model has no output hidden (its outputs: logits)");
}

Test(kserve, http_status_map)
{
	cr_assert_eq(kserve_http_status(0), 200);
	cr_assert_eq(kserve_http_status(DPRT_ESHAPE), 400);
	cr_assert_eq(kserve_http_status(DPRT_ENOMODEL), 404);
	cr_assert_eq(kserve_http_status(DPRT_EOVERLOAD), 503);
	cr_assert_eq(kserve_http_status(DPRT_EUNSUP), 501);
	cr_assert_eq(kserve_http_status(DPRT_ETOOMANY), 501);
	cr_assert_eq(kserve_http_status(DPRT_EOUTBUF), 413);
	cr_assert_eq(kserve_http_status(DPRT_EDEVICE), 500);
	cr_assert_eq(kserve_http_status(-ENOMEM), 500);
}

/* ---- the numeric fast path (net/jnum.h) against the tree path ---- */

struct rnd {
	uint64_t s;
};

static uint32_t rn(struct rnd *r, uint32_t n)
{
	r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(r->s >> 33) % n;
}

/* One element, spelt in one of many ways, of the type's range (dt: index
 * in dtypes below); with bad, sometimes a wrong one. */
static int put_num(struct rnd *r, char *p, int bad, int dt)
{
	static const char *const odd[] = {"\"NaN\"",
					  "true",
					  "null",
					  "\"1\"",
					  "1e400",
					  "-1e999",
					  "99999999999999999999",
					  "01",
					  "1.",
					  "-",
					  "[]",
					  "{}",
					  "1e",
					  "0x10",
					  "9223372036854775808",
					  "-9223372036854775809",
					  "65504.1",
					  "3.5e38",
					  "70000",
					  "2147483648",
					  "-1",
					  "256",
					  "0.5",
					  "1e2"};
	double v;

	if (bad && !rn(r, bad))
		return sprintf(p, "%s", odd[rn(r, ARRAY_SIZE(odd))]);
	if (dt == 6)
		return sprintf(p, rn(r, 2) ? "true" : "false");
	if (dt == 5)
		return sprintf(p, "%u", rn(r, 256));
	if (dt == 4)
		return sprintf(p, "%s%u", rn(r, 2) ? "-" : "", rn(r, 1u << 31));
	if (dt == 3)
		return sprintf(p, "%lld",
			       (long long)(((uint64_t)rn(r, 1u << 31) << 32 | rn(r, 1u << 31)) *
					   (rn(r, 2) ? 1 : -1)) >>
				       rn(r, 40));
	switch (rn(r, 9)) {
	case 0:
		return sprintf(p, "%d", (int)rn(r, 600) - 300);
	case 1:
		return sprintf(p, "%d", (int)rn(r, 60000) - 30000);
	case 2:
		return sprintf(p, "-0");
	case 3:
		return sprintf(p, "-0.0");
	case 4:
		v = ((double)rn(r, 1u << 30) - (1 << 29)) / (1 << rn(r, 30));
		break;
	case 5:
		v = ldexp((double)rn(r, 1u << 30),
			  (int)rn(r, dt == 1 ? 40 : 200) - (dt == 1 ? 60 : 130));
		break;
	case 6:
		return sprintf(p, "%u.%0*u", rn(r, 100), (int)rn(r, 25) + 1, rn(r, 1000000));
	case 7:
		return sprintf(p, "%ue%d", rn(r, 100), (int)rn(r, dt == 1 ? 10 : 60) - 40);
	default:
		return sprintf(p, "12345678901234567890.125e-%u", rn(r, 20) + (dt == 1 ? 16 : 0));
	}
	if (dt == 1 && fabs(v) > 60000)
		v = 1 / v;
	return sprintf(p, rn(r, 2) ? "%.17g" : "%.9g", v);
}

static const char *const dtypes[] = {"FP32", "FP16", "BF16", "INT64", "INT32", "UINT8", "BOOL"};

/* A random request: 1-3 inputs, nested or flat data, sometimes ragged,
 * short or miscounted, sometimes broken JSON elsewhere. */
static size_t make_body(struct rnd *r, char *b)
{
	uint32_t n_in = rn(r, 3) + 1, i, k, rows, cols, nest, bad = rn(r, 3) ? 0 : 40;
	size_t l = 0;
	int dt;

	l += (size_t)sprintf(b + l, "{%s\"inputs\":[", rn(r, 4) ? "" : "\"id\":\"x\",\n");
	for (i = 0; i < n_in; i++) {
		rows = rn(r, 4) + 1;
		cols = rn(r, 40) + 1;
		nest = rn(r, 3);
		dt = (int)rn(r, ARRAY_SIZE(dtypes));
		l += (size_t)sprintf(b + l,
				     "%s{\"name\":\"in%u\",\"datatype\":\"%s\","
				     "\"shape\":[%u,%u],\"data\":[",
				     i ? ",\n" : "", i, dtypes[dt], rows,
				     cols + (rn(r, 20) ? 0 : 1));
		for (k = 0; k < rows; k++) {
			uint32_t c, cn = cols - (bad && !rn(r, 8) ? 1 : 0);

			l += (size_t)sprintf(b + l, "%s%s", k ? (rn(r, 5) ? "," : " ,\n ") : "",
					     nest == 2 ? "[" : "");
			for (c = 0; c < cn; c++) {
				if (c)
					b[l++] = ',';
				l += (size_t)put_num(r, b + l, bad, dt);
			}
			l += (size_t)sprintf(b + l, "%s", nest == 2 ? "]" : "");
		}
		l += (size_t)sprintf(b + l, "]%s}", rn(r, 30) ? "" : ",\"data\":[1]");
	}
	l += (size_t)sprintf(b + l, "]%s}", rn(r, 25) ? "" : ",\"outputs\":[{\"name\":tru}]");
	if (!rn(r, 40))
		l -= 1 + rn(r, 3); /* cut short */
	b[l] = 0;
	return l;
}

struct outcome {
	int ret;
	char msg[512];
	uint32_t n;
	struct kserve_tensor t[KSERVE_MAX_TENSORS];
	char *data[KSERVE_MAX_TENSORS];
};

static void decode_with(const char *b, size_t l, size_t fast_min, struct outcome *o)
{
	uint32_t i;

	kserve_set_fast_min(fast_min);
	arena_reset(&arena);
	err_clear();
	memset(o, 0, sizeof(*o));
	o->ret = kserve_decode_request(b, l, -1, &arena, &req);
	snprintf(o->msg, sizeof(o->msg), "%s", o->ret ? err_msg(o->ret) : "");
	o->n = o->ret ? 0 : req.n_inputs;
	for (i = 0; i < o->n; i++) {
		o->t[i] = req.inputs[i];
		o->data[i] = malloc(req.inputs[i].nbytes + 1);
		memcpy(o->data[i], req.inputs[i].data, req.inputs[i].nbytes);
	}
	kserve_set_fast_min(0);
}

Test(kserve, fast_path_decodes_like_the_tree, .timeout = 120)
{
	static char b[1 << 20];
	struct outcome *fast = malloc(sizeof(*fast)), *tree = malloc(sizeof(*tree));
	struct rnd r = {20261126};
	int i, fast_ok = 0, errors = 0;
	uint32_t k;
	size_t l;

	for (i = 0; i < 3000; i++) {
		l = make_body(&r, b);
		decode_with(b, l, 0, fast);
		decode_with(b, l, SIZE_MAX, tree);
		cr_assert_eq(fast->ret, tree->ret, "case %d: %d vs %d (%s | %s)\n%s", i, fast->ret,
			     tree->ret, fast->msg, tree->msg, b);
		cr_assert_str_eq(fast->msg, tree->msg, "case %d\n%s", i, b);
		cr_assert_eq(fast->n, tree->n);
		for (k = 0; k < fast->n; k++) {
			cr_assert_str_eq(fast->t[k].name, tree->t[k].name);
			cr_assert(!memcmp(&fast->t[k].shape, &tree->t[k].shape,
					  sizeof(fast->t[k].shape)));
			cr_assert_eq(fast->t[k].nbytes, tree->t[k].nbytes);
			cr_assert(!memcmp(fast->data[k], tree->data[k], fast->t[k].nbytes),
				  "case %d: input %u decodes differently\n%s", i, k, b);
			free(fast->data[k]);
			free(tree->data[k]);
		}
		fast_ok += !fast->ret;
		errors += fast->ret != 0;
	}
	/* both kinds of outcome are exercised */
	cr_assert(fast_ok > 300 && errors > 300, "%d decoded, %d refused", fast_ok, errors);
	free(fast);
	free(tree);
}

/* A big request, and the numbers land. */
Test(kserve, fast_path_big_request)
{
	static char b[4 << 20];
	size_t l = 0;
	int i;

	l += (size_t)sprintf(b, "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\","
				"\"shape\":[1,3,224,224],\"data\":[");
	for (i = 0; i < 3 * 224 * 224; i++)
		l += (size_t)sprintf(b + l, "%s%.9g", i ? "," : "", (i % 1000) * 0.001 - 0.5);
	l += (size_t)sprintf(b + l, "]}]}");
	cr_assert_eq(decode(b), 0, "%s", err_msg(0));
	cr_assert_eq(req.inputs[0].nbytes, 3 * 224 * 224 * 4);
	for (i = 0; i < 3 * 224 * 224; i += 997)
		cr_assert_eq(((const float *)req.inputs[0].data)[i],
			     (float)((i % 1000) * 0.001 - 0.5));
}

/* Bodies that stress the scan: escaped keys, keys elsewhere named like the
 * path, data before datatype, odd spacing, deep nesting, broken tails. */
Test(kserve, fast_path_tricky_bodies)
{
	static const char *const bodies[] = {
		"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"d\\u0061ta\":[1,2]}]}",
		"{\"parameters\":{\"inputs\":[{\"data\":[9]}]},\"inputs\":[{\"name\":\"x\","
		"\"datatype\":\"INT64\",\"shape\":[2],\"data\":[1,2]}]}",
		"{\"inputs\":[{\"data\":[[1.5, -2e3],\n [ 3 , 4 ]],\"shape\":[2,2],"
		"\"name\":\"x\",\"datatype\":\"FP32\"}]}",
		"{ \"inputs\" : [ { \"name\" : \"x\" , \"datatype\" : \"FP16\" , \"shape\" : [ 3 ] ,"
		" \"data\" : [ 1 , 2.5 , -0 ] } ] }",
		"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[[[[[[[[[[["
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]}",
		"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1,2]}],"
		"\"inputs\":[]}",
		"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1,2]}]} x",
		"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1,2]},"
		"{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[3,4]}]}",
		"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"INT32\",\"shape\":[2],\"data\":[1,2.0]}]}",
		"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1,2]}],"
		"\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":true}}]}",
		"{\"inputs\":[\"x\",{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}",
		"{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1,\"2\"]}]}",
	};
	struct outcome *fast = malloc(sizeof(*fast)), *tree = malloc(sizeof(*tree));
	size_t i;
	uint32_t k;

	for (i = 0; i < ARRAY_SIZE(bodies); i++) {
		decode_with(bodies[i], strlen(bodies[i]), 0, fast);
		decode_with(bodies[i], strlen(bodies[i]), SIZE_MAX, tree);
		cr_assert_eq(fast->ret, tree->ret, "body %zu: %d vs %d (%s | %s)", i, fast->ret,
			     tree->ret, fast->msg, tree->msg);
		cr_assert_str_eq(fast->msg, tree->msg, "body %zu", i);
		cr_assert_eq(fast->n, tree->n);
		for (k = 0; k < fast->n; k++) {
			cr_assert_eq(fast->t[k].nbytes, tree->t[k].nbytes);
			cr_assert(!memcmp(fast->data[k], tree->data[k], fast->t[k].nbytes),
				  "body %zu input %u", i, k);
			free(fast->data[k]);
			free(tree->data[k]);
		}
	}
	free(fast);
	free(tree);
}
