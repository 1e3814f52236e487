/* SPDX-License-Identifier: MIT */
/*
 * Encoding of net/kserve: infer responses and their HTTP head, errors,
 * server and model metadata and the repository index, all through the
 * JSON writer (kserve_json.c) into caller buffers.
 */
#include "net/kserve_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- encoding ---- */

/* Bytes one element can take in JSON, comma included. */
static size_t elem_chars(uint8_t dt)
{
	switch (dt) {
	case DT_F32:
		return 17; /* -1.17549435e-38, */
	case DT_F16:
	case DT_BF16:
		return 13; /* "-Infinity", */
	case DT_I64:
		return 21;
	case DT_I32:
		return 12;
	case DT_U8:
		return 4;
	case DT_BOOL:
		return 6;
	}
	return 0;
}

static size_t str_bound(const char *s)
{
	return s ? 6 * strlen(s) + 2 : 2;
}

size_t kserve_response_bound(const struct kserve_response *res)
{
	const struct kserve_out *o;
	size_t n = 128 + str_bound(res->model_name) + str_bound(res->model_version) +
		   str_bound(res->id);
	uint32_t i;

	for (i = 0; i < res->n_params; i++)
		n += 48 + str_bound(res->params[i].name) +
		     (res->params[i].type == KP_STRING ? str_bound(res->params[i].s) : 0);
	for (i = 0; i < res->n_outputs; i++) {
		o = &res->outputs[i];
		n += 128 + str_bound(o->name) + 21 * MAX_DIMS;
		if (!o->binary)
			n += (size_t)shape_numel(&o->shape) * elem_chars(o->shape.dtype);
	}
	return n;
}

static void jw_elem(struct jw *w, uint8_t dt, const char *p)
{
	union {
		float f;
		uint16_t h;
		int64_t i64;
		int32_t i32;
	} u;

	switch (dt) {
	case DT_F32:
		memcpy(&u.f, p, 4);
		jw_float(w, u.f, 9);
		break;
	case DT_F16:
		memcpy(&u.h, p, 2);
		jw_float(w, f16_to_f32(u.h), 5);
		break;
	case DT_BF16:
		memcpy(&u.h, p, 2);
		jw_float(w, bf16_to_f32(u.h), 4);
		break;
	case DT_I64:
		memcpy(&u.i64, p, 8);
		jw_i64(w, u.i64);
		break;
	case DT_I32:
		memcpy(&u.i32, p, 4);
		jw_i64(w, u.i32);
		break;
	case DT_U8:
		jw_u64(w, (unsigned char)*p);
		break;
	default:
		jw_bool(w, *p);
	}
}

static int jw_output(struct jw *w, const struct kserve_out *o, uint64_t *bin_len)
{
	uint8_t dt = o->shape.dtype;
	size_t es = dtype_size((enum dtype)dt);
	uint64_t i, n = (uint64_t)shape_numel(&o->shape);

	if (!es || !o->shape.ndim || o->shape.ndim > MAX_DIMS)
		return -EINVAL;
	jw_lit(w, "{\"name\":");
	jw_str(w, o->name);
	jw_lit(w, ",\"datatype\":\"");
	jw_lit(w, dtype_name((enum dtype)dt));
	jw_lit(w, "\",\"shape\":");
	jw_dims(w, o->shape.ndim, o->shape.dims);
	if (o->binary) {
		jw_lit(w, ",\"parameters\":{\"binary_data_size\":");
		jw_u64(w, n * es);
		jw_lit(w, "}}");
		*bin_len += n * es;
		return 0;
	}
	jw_lit(w, ",\"data\":[");
	for (i = 0; i < n && !w->full; i++) {
		if (i)
			jw_raw(w, ",", 1);
		jw_elem(w, dt, (const char *)o->data + i * es);
	}
	jw_lit(w, "]}");
	return 0;
}

static void jw_param(struct jw *w, const struct kserve_param *p)
{
	jw_raw(w, ",", 1);
	jw_str(w, p->name);
	jw_raw(w, ":", 1);
	switch (p->type) {
	case KP_BOOL:
		jw_bool(w, p->b);
		break;
	case KP_INT:
		jw_i64(w, p->i);
		break;
	case KP_DOUBLE:
		jw_float(w, p->d, 17);
		break;
	case KP_STRING:
		jw_str(w, p->s ? p->s : "");
		break;
	}
}

int kserve_encode_response(const struct kserve_response *res, char *buf, size_t cap,
			   size_t *json_len, uint64_t *bin_len)
{
	struct jw w = {buf, 0, cap, false};
	uint32_t i;

	*bin_len = 0;
	jw_lit(&w, "{\"model_name\":");
	jw_str(&w, res->model_name ? res->model_name : "");
	if (res->model_version) {
		jw_lit(&w, ",\"model_version\":");
		jw_str(&w, res->model_version);
	}
	if (res->id && res->id[0]) {
		jw_lit(&w, ",\"id\":");
		jw_str(&w, res->id);
	}
	jw_lit(&w, ",\"parameters\":{\"cold_start\":");
	jw_bool(&w, res->cold_start);
	for (i = 0; i < res->n_params; i++)
		jw_param(&w, &res->params[i]);
	jw_lit(&w, "},\"outputs\":[");
	for (i = 0; i < res->n_outputs; i++) {
		if (i)
			jw_raw(&w, ",", 1);
		if (jw_output(&w, &res->outputs[i], bin_len))
			return -EINVAL;
	}
	jw_lit(&w, "]}");
	*json_len = w.len;
	return w.full ? -ENOSPC : 0;
}

int kserve_write_infer_head(char *buf, size_t cap, const struct kserve_response *res,
			    size_t json_len, bool keep_alive)
{
	bool binary = false;
	uint64_t bin_len = 0;
	char extra[96];
	uint32_t i;

	for (i = 0; i < res->n_outputs; i++) {
		const struct kserve_out *o = &res->outputs[i];

		if (!o->binary)
			continue;
		binary = true;
		bin_len +=
			(uint64_t)shape_numel(&o->shape) * dtype_size((enum dtype)o->shape.dtype);
	}
	if (binary)
		snprintf(extra, sizeof(extra), "Inference-Header-Content-Length: %zu\r\n",
			 json_len);
	else
		extra[0] = 0;
	strcat(extra, res->cold_start ? "Dprt-Cold-Start: true\r\n" : "Dprt-Cold-Start: false\r\n");
	return http_write_response(buf, cap, 200,
				   binary ? "application/octet-stream" : "application/json", extra,
				   json_len + bin_len, keep_alive);
}

int kserve_encode_error(char *buf, size_t cap, const char *msg)
{
	struct jw w = {buf, 0, cap, false};

	jw_lit(&w, "{\"error\":");
	jw_str(&w, msg);
	jw_lit(&w, "}");
	return jw_end(&w);
}

int kserve_encode_server_meta(char *buf, size_t cap, const char *version)
{
	struct jw w = {buf, 0, cap, false};

	jw_lit(&w, "{\"name\":\"dprt\",\"version\":");
	jw_str(&w, version);
	jw_lit(&w, ",\"extensions\":[\"binary_tensor_data\",\"model_repository\"]}");
	return jw_end(&w);
}

static void jw_io(struct jw *w, const struct io_desc *io, uint32_t n)
{
	uint32_t i;

	jw_raw(w, "[", 1);
	for (i = 0; i < n; i++) {
		jw_lit(w, i ? ",{\"name\":" : "{\"name\":");
		jw_str(w, io[i].name);
		jw_lit(w, ",\"datatype\":\"");
		jw_lit(w, dtype_name((enum dtype)io[i].dtype));
		jw_lit(w, "\",\"shape\":");
		jw_dims(w, MIN(io[i].ndim, MAX_DIMS), io[i].dims);
		jw_raw(w, "}", 1);
	}
	jw_raw(w, "]", 1);
}

int kserve_encode_model_meta(char *buf, size_t cap, const struct kserve_model_meta *m)
{
	struct jw w = {buf, 0, cap, false};
	uint32_t i;

	jw_lit(&w, "{\"name\":");
	jw_str(&w, m->name);
	jw_lit(&w, ",\"versions\":[");
	for (i = 0; i < m->n_versions; i++) {
		if (i)
			jw_raw(&w, ",", 1);
		jw_str(&w, m->versions[i]);
	}
	jw_lit(&w, "],\"platform\":\"dprt\",\"inputs\":");
	jw_io(&w, m->inputs, m->n_inputs);
	jw_lit(&w, ",\"outputs\":");
	jw_io(&w, m->outputs, m->n_outputs);
	jw_raw(&w, "}", 1);
	return jw_end(&w);
}

static void jw_opt(struct jw *w, const char *key, const char *val, bool *first)
{
	if (!val || !val[0])
		return;
	if (!*first)
		jw_raw(w, ",", 1);
	*first = false;
	jw_key(w, key);
	jw_str(w, val);
}

int kserve_encode_repo_index(char *buf, size_t cap, const struct kserve_repo_entry *e, uint32_t n)
{
	struct jw w = {buf, 0, cap, false};
	uint32_t i;
	bool first;

	jw_raw(&w, "[", 1);
	for (i = 0; i < n; i++) {
		jw_raw(&w, i ? ",{" : "{", i ? 2 : 1);
		first = true;
		jw_opt(&w, "name", e[i].name, &first);
		jw_opt(&w, "version", e[i].version, &first);
		jw_opt(&w, "state", e[i].state, &first);
		jw_opt(&w, "reason", e[i].reason, &first);
		jw_raw(&w, "}", 1);
	}
	jw_raw(&w, "]", 1);
	return jw_end(&w);
}

/* Is the leading dim of every tensor of n the batch dim? */
static bool batch_first(const struct io_desc *io, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		if (io[i].ndim < 1 || io[i].dims[0] >= 0)
			return false;
	return true;
}

static void jw_config_io(struct jw *w, const struct io_desc *io, uint32_t n, bool batched)
{
	int skip = batched ? 1 : 0;
	uint32_t i;

	jw_raw(w, "[", 1);
	for (i = 0; i < n; i++) {
		jw_lit(w, i ? ",{\"name\":" : "{\"name\":");
		jw_str(w, io[i].name);
		jw_lit(w, ",\"data_type\":\"TYPE_");
		jw_lit(w, dtype_name((enum dtype)io[i].dtype));
		jw_lit(w, "\",\"dims\":");
		jw_dims(w, MIN(io[i].ndim, MAX_DIMS) - skip, io[i].dims + skip);
		jw_raw(w, "}", 1);
	}
	jw_raw(w, "]", 1);
}

int kserve_encode_model_config(char *buf, size_t cap, const struct kserve_model_meta *m,
			       int64_t max_batch)
{
	struct jw w = {buf, 0, cap, false};
	bool batched = max_batch > 0 && batch_first(m->inputs, m->n_inputs) &&
		       batch_first(m->outputs, m->n_outputs);

	jw_lit(&w, "{\"name\":");
	jw_str(&w, m->name);
	jw_lit(&w, ",\"platform\":\"dprt\",\"backend\":\"dprt\",\"max_batch_size\":");
	jw_i64(&w, batched ? max_batch : 0);
	jw_lit(&w, ",\"input\":");
	jw_config_io(&w, m->inputs, m->n_inputs, batched);
	jw_lit(&w, ",\"output\":");
	jw_config_io(&w, m->outputs, m->n_outputs, batched);
	jw_raw(&w, "}", 1);
	return jw_end(&w);
}

int kserve_encode_flag(char *buf, size_t cap, const char *key, bool value)
{
	struct jw w = {buf, 0, cap, false};

	jw_raw(&w, "{", 1);
	jw_key(&w, key);
	jw_bool(&w, value);
	jw_raw(&w, "}", 1);
	return jw_end(&w);
}

static void jw_stat(struct jw *w, const char *key, const struct kserve_stat *st, bool comma)
{
	if (comma)
		jw_raw(w, ",", 1);
	jw_key(w, key);
	jw_lit(w, "{\"count\":");
	jw_u64(w, st->count);
	jw_lit(w, ",\"ns\":");
	jw_u64(w, st->ns);
	jw_raw(w, "}", 1);
}

static void jw_model_stats(struct jw *w, const struct kserve_model_stats *s)
{
	jw_lit(w, "{\"name\":");
	jw_str(w, s->name);
	jw_lit(w, ",\"version\":");
	jw_str(w, s->version);
	jw_lit(w, ",\"last_inference\":");
	jw_u64(w, s->last_inference);
	jw_lit(w, ",\"inference_count\":");
	jw_u64(w, s->inference_count);
	jw_lit(w, ",\"execution_count\":");
	jw_u64(w, s->execution_count);
	jw_lit(w, ",\"inference_stats\":{");
	jw_stat(w, "success", &s->success, false);
	jw_stat(w, "fail", &s->fail, true);
	jw_stat(w, "queue", &s->queue, true);
	jw_stat(w, "compute_input", &s->compute_input, true);
	jw_stat(w, "compute_infer", &s->compute_infer, true);
	jw_stat(w, "compute_output", &s->compute_output, true);
	jw_lit(w, "},\"batch_stats\":[]}");
}

int kserve_encode_model_stats(char *buf, size_t cap, const struct kserve_model_stats *s, uint32_t n)
{
	struct jw w = {buf, 0, cap, false};
	uint32_t i;

	jw_lit(&w, "{\"model_stats\":[");
	for (i = 0; i < n; i++) {
		if (i)
			jw_raw(&w, ",", 1);
		jw_model_stats(&w, &s[i]);
	}
	jw_lit(&w, "]}");
	return jw_end(&w);
}
