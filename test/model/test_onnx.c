/* SPDX-License-Identifier: MIT */
/*
 * ONNX import (import_onnx) against onnxruntime: test/model/onnx_cases.py
 * builds small models with onnx.helper and onnxruntime's outputs for fixed
 * inputs; each is imported, written with pkg_write, read back with
 * pkg_open, run on the CPU backend and compared (max abs error / max abs
 * value <= 1e-5 in FP32). Refusals (an unsupported op, opsets out of range,
 * a corrupt protobuf, truncated external data) must name the problem and
 * leave no package. Without python3's onnx and onnxruntime the tests that
 * need them are skipped.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "exec/exec.h"

#define TOL 1e-5

static bool have_python(void)
{
	return system("python3 -c 'import onnx, onnxruntime, numpy' >/dev/null 2>&1") == 0;
}

static void need_onnx(void)
{
	if (!HAVE_PROTOBUF_C)
		cr_skip_test("built without protobuf-c: no ONNX import (see ./configure)");
}

/* A fresh directory holding case c's model, inputs and reference. */
static void make_case(const char *c, char *dir)
{
	char cmd[512];

	need_onnx();
	if (!have_python())
		cr_skip_test(
			"python3 onnx/onnxruntime/numpy not installed (test/requirements.txt)");
	strcpy(dir, "/tmp/dprt-onnx.XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "python3 test/model/onnx_cases.py %s %s", c, dir);
	cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

static void rm_dir(const char *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_expect_eq(system(cmd), 0);
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* What 'dprt import' does: import, then write the package only on success. */
static int convert(const char *dir, enum dtype dt)
{
	struct weight_source *ws;
	char in[300], out[300];
	struct graph *g;
	int ret;

	snprintf(in, sizeof(in), "%s/model.onnx", dir);
	snprintf(out, sizeof(out), "%s/model.dpk", dir);
	ret = import_onnx(in, dt, &g, &ws);
	if (ret)
		return ret;
	ret = pkg_write(out, g, wsrc_fill, ws);
	wsrc_destroy(ws);
	graph_destroy(g);
	return ret;
}

static float out_at(const struct tview *v, int64_t i)
{
	const uint16_t *h = v->data;

	if (v->shape.dtype == DT_F32)
		return ((const float *)v->data)[i];
	return v->shape.dtype == DT_F16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
}

/* Compare output o with the reference of the same name. */
static void compare(const struct io_desc *io, const struct tview *o, const struct st_file *ref,
		    double tol)
{
	const struct st_tensor *r = st_find(ref, io->name);
	double num = 0, den = 0;
	int64_t i, n = shape_numel(&o->shape);
	int d;

	cr_assert(r, "no reference for output %s", io->name);
	cr_assert_eq(o->shape.ndim, r->ndim, "%s: rank", io->name);
	for (d = 0; d < r->ndim; d++)
		cr_assert_eq(o->shape.dims[d], r->dims[d], "%s: dim %d", io->name, d);
	for (i = 0; i < n; i++) {
		float want;

		memcpy(&want, (const char *)r->data + 4 * i, 4);
		cr_assert(isfinite(out_at(o, i)), "%s[%lld] is not finite", io->name, (long long)i);
		num = fmax(num, fabs((double)out_at(o, i) - want));
		den = fmax(den, fabs((double)want));
	}
	cr_expect_leq(num / den, tol, "%s: max abs err %g / max abs %g > %g", io->name, num, den,
		      tol);
}

/* FP32 inputs converted for a package of dtype dt. */
static void *input_data(const struct st_tensor *s, enum dtype dt, uint64_t *nbytes)
{
	uint64_t n = s->nbytes / 4, i;
	uint16_t *h;

	*nbytes = s->nbytes;
	if (s->dtype != DT_F32 || dt == DT_F32)
		return NULL;
	h = malloc(2 * n);
	cr_assert(h);
	for (i = 0; i < n; i++) {
		float f;

		memcpy(&f, (const char *)s->data + 4 * i, 4);
		h[i] = dt == DT_F16 ? f32_to_f16(f) : f32_to_bf16(f);
	}
	*nbytes = 2 * n;
	return h;
}

/* Run the package in dir on the inputs and compare with the reference. */
static void run_package(const char *dir, enum dtype dt, double tol)
{
	struct tview in[8], out[8];
	void *conv[8] = {0};
	struct st_file *sin, *sref;
	struct exec_model *m;
	const struct graph *g;
	char path[300];
	struct pkg *p;
	void *w;
	uint32_t i;
	int ret;

	snprintf(path, sizeof(path), "%s/model.dpk", dir);
	cr_assert_eq(pkg_open(path, &p), 0, "%s", err_msg(0));
	g = pkg_graph(p);
	w = aligned_alloc(LAYER_ALIGN, MAX(g->weights_size, LAYER_ALIGN));
	cr_assert(w);
	cr_assert_eq(pkg_read_weights(p, w), 0, "%s", err_msg(0));
	ret = cpu_backend.model_create(NULL, g, w, &m);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	snprintf(path, sizeof(path), "%s/in.safetensors", dir);
	cr_assert_eq(st_open(path, &sin), 0, "%s", err_msg(0));
	snprintf(path, sizeof(path), "%s/ref.safetensors", dir);
	cr_assert_eq(st_open(path, &sref), 0, "%s", err_msg(0));
	cr_assert_leq(g->n_inputs, 8);
	for (i = 0; i < g->n_inputs; i++) {
		const struct st_tensor *s = st_find(sin, g->inputs[i].name);

		cr_assert(s, "no data for input %s", g->inputs[i].name);
		in[i].shape.dtype = s->dtype == DT_F32 ? (uint8_t)dt : s->dtype;
		in[i].shape.ndim = s->ndim;
		memcpy(in[i].shape.dims, s->dims, sizeof(s->dims));
		conv[i] = input_data(s, dt, &in[i].nbytes);
		in[i].data = conv[i] ? conv[i] : (void *)s->data;
	}
	ret = cpu_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	for (i = 0; i < g->n_outputs; i++)
		compare(&g->outputs[i], &out[i], sref, tol);
	for (i = 0; i < 8; i++)
		free(conv[i]);
	st_close(sin);
	st_close(sref);
	cpu_backend.model_destroy(m);
	free(w);
	pkg_close(p);
}

static void check_case(const char *c, enum dtype dt, double tol)
{
	char dir[64];
	int ret;

	make_case(c, dir);
	ret = convert(dir, dt);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	run_package(dir, dt, tol);
	rm_dir(dir);
}

/* The graph an import makes, for checks on its nodes. */
static struct graph *import_case(const char *c, char *dir)
{
	struct weight_source *ws;
	struct graph *g;
	char path[300];
	int ret;

	make_case(c, dir);
	snprintf(path, sizeof(path), "%s/model.onnx", dir);
	ret = import_onnx(path, DT_F32, &g, &ws);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	wsrc_destroy(ws);
	return g;
}

static uint32_t count_op(const struct graph *g, enum op op)
{
	uint32_t i, n = 0;

	for (i = 0; i < g->n_nodes; i++)
		n += g->nodes[i].op == op;
	return n;
}

Test(onnx, bert_matches_onnxruntime)
{
	check_case("bert", DT_F32, TOL);
}

Test(onnx, bert_opset18_matches_onnxruntime)
{
	check_case("bert18", DT_F32, TOL);
}

Test(onnx, bert_lowers_to_fused_ops)
{
	char dir[64];
	struct graph *g = import_case("bert", dir);
	uint32_t i, qkv = 0;

	/* 3 embeddings + positions, 5 LayerNorms, per layer 4 linears
	 * (fused qkv, out, ffn in/out), 1 attention and 1 GELU; the pooler's
	 * first token, linear and tanh. */
	cr_expect_eq(count_op(g, OP_EMBEDDING), 3);
	cr_expect_eq(count_op(g, OP_POSITION_IDS), 1);
	cr_expect_eq(count_op(g, OP_LAYERNORM), 5);
	cr_expect_eq(count_op(g, OP_LINEAR), 9);
	cr_expect_eq(count_op(g, OP_TAKE_ROW), 1);
	cr_expect_eq(g->n_outputs, 2);
	cr_expect_eq(count_op(g, OP_ATTENTION), 2);
	cr_expect_eq(count_op(g, OP_GELU), 2);
	cr_expect_eq(g->n_nodes, 3 + 1 + 2 + 1 + 2 * (4 + 1 + 1 + 2 + 2) + 3);
	for (i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == OP_ATTENTION)
			qkv += g->tensors[g->nodes[i - 1].in[1]].dims[0] == 3 * 32 &&
			       g->nodes[i - 1].op == OP_LINEAR &&
			       g->nodes[i].in[0] == g->nodes[i - 1].out;
	cr_expect_eq(qkv, 2, "each attention reads a fused qkv linear [3H, H]");
	cr_expect_eq(g->max_seq, 16);
	graph_destroy(g);
	rm_dir(dir);
}

Test(onnx, resnet_matches_onnxruntime)
{
	check_case("resnet", DT_F32, TOL);
}

Test(onnx, resnet_folds_batch_norm)
{
	char dir[64];
	struct graph *g = import_case("resnet", dir);

	cr_expect_eq(count_op(g, OP_CONV2D), 3);
	cr_expect_eq(count_op(g, OP_BATCHNORM), 0);
	cr_expect_eq(count_op(g, OP_ADD), 1);
	cr_expect_eq(g->n_layers, 4);
	cr_expect_eq(g->inputs[0].dims[0], DIM_BATCH);
	graph_destroy(g);
	rm_dir(dir);
}

Test(onnx, resnet_fp16)
{
	check_case("resnet", DT_F16, 1e-2);
}

Test(onnx, mlp_gemm_layernorm_op_tanh_gelu)
{
	check_case("mlp", DT_F32, TOL);
}

Test(onnx, pool_grouped_conv_batchnorm)
{
	check_case("pool", DT_F32, TOL);
}

Test(onnx, external_data)
{
	check_case("external", DT_F32, TOL);
}

/* ONNX's node tests (libonnx-testdata) of the ops dprt lowers, through
 * 'dprt import' and 'dprt run' (test/model/onnx_nodes.py): every one
 * imported must match its stored outputs; the refused ones are listed in
 * build/test-logs/onnx_nodes.log with dprt's message. */
Test(onnx, onnx_node_tests, .timeout = 300)
{
	const char *dprt = getenv("DPRT") ? getenv("DPRT") : "./dprt";
	char cmd[600];
	int rc;

	need_onnx();
	if (!have_python())
		cr_skip_test("python3 onnx/onnxruntime/numpy not installed");
	if (!exists(dprt))
		cr_skip_test("no dprt binary at %s", dprt);
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p build/test-logs && python3 test/model/onnx_nodes.py '%s' "
		 ">build/test-logs/onnx_nodes.log 2>&1",
		 dprt);
	rc = system(cmd);
	if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77)
		cr_skip_test("libonnx-testdata is not installed");
	cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0,
		  "node tests failed: see build/test-logs/onnx_nodes.log");
}

/* Import fails with a message holding want, and no package is left. */
static void refused(const char *dir, const char *want)
{
	char out[300];
	int ret = convert(dir, DT_F32);

	cr_assert_neq(ret, 0, "import of %s did not fail", dir);
	cr_expect(strstr(err_msg(ret), want), "message '%s' lacks '%s'", err_msg(ret), want);
	snprintf(out, sizeof(out), "%s/model.dpk", dir);
	cr_expect(!exists(out), "%s was written", out);
}

/* torch.onnx exports of transformers 5 (SDPA attention, its mask built
 * from Range/Gather/And/Where), node for node. */
Test(onnx, roberta_sdpa_cumsum_positions_padding_mask)
{
	char dir[64];
	struct graph *g;

	check_case("roberta_sdpa", DT_F32, TOL);
	g = import_case("roberta_sdpa", dir);
	cr_expect_eq(count_op(g, OP_ATTENTION), 1);
	cr_expect_eq(count_op(g, OP_POSITION_IDS), 1);
	for (uint32_t i = 0; i < g->n_nodes; i++) {
		if (g->nodes[i].op == OP_POSITION_IDS)
			cr_expect(g->nodes[i].ia[0] == 1 && g->nodes[i].ia[1] == 1,
				  "RoBERTa's position ids with pad 1");
		if (g->nodes[i].op == OP_ATTENTION)
			cr_expect(g->nodes[i].n_in == 2 && g->nodes[i].ia[1] == 0,
				  "padding mask, not causal");
	}
	cr_expect_eq(g->max_seq, 18);
	graph_destroy(g);
	rm_dir(dir);
}

Test(onnx, gpt2_sdpa_causal_split_qkv_addmm)
{
	char dir[64];
	struct graph *g;
	uint32_t i;

	check_case("gpt2_sdpa", DT_F32, TOL);
	check_case("gpt2_sdpa18", DT_F32, TOL);
	g = import_case("gpt2_sdpa", dir);
	cr_expect_eq(count_op(g, OP_ATTENTION), 1);
	cr_expect_eq(count_op(g, OP_LINEAR), 4, "c_attn, c_proj, c_fc, mlp c_proj");
	for (i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == OP_ATTENTION)
			cr_expect(g->nodes[i].n_in == 2 && g->nodes[i].ia[1] == 1 &&
					  g->nodes[i].ia[0] == 4,
				  "4 heads, causal, padding mask");
	graph_destroy(g);
	rm_dir(dir);
}

Test(onnx, vit_sdpa_cls_positions)
{
	char dir[64];
	struct graph *g;

	check_case("vit_sdpa", DT_F32, TOL);
	g = import_case("vit_sdpa", dir);
	cr_expect_eq(count_op(g, OP_CLS_POS), 1);
	cr_expect_eq(count_op(g, OP_ATTENTION), 1);
	graph_destroy(g);
	rm_dir(dir);
}

/* A ViT whose attention carries an all-true mask of its own shape (some
 * transformers 5 releases): no mask, one single-input attention node. */
Test(onnx, vit_sdpa_all_true_mask_is_none)
{
	char dir[64];
	struct graph *g;
	uint32_t i;

	check_case("vit_sdpa_mask", DT_F32, TOL);
	g = import_case("vit_sdpa_mask", dir);
	cr_expect_eq(count_op(g, OP_ATTENTION), 1);
	for (i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == OP_ATTENTION)
			cr_expect(g->nodes[i].n_in == 1 && g->nodes[i].ia[1] == 0,
				  "no mask input, not causal");
	graph_destroy(g);
	rm_dir(dir);
}

/* transformers 4's eager attention: a Trilu causal mask selecting scores
 * plus an additive padding bias (GPT-2), q scaled before the MatMul and
 * masked_fill by Where (DistilBERT). */
Test(onnx, eager_trilu_causal_and_masked_fill)
{
	static const char *const cases[] = {"gpt2_eager", "distilbert_eager"};
	char dir[64];
	uint32_t i, k;

	for (k = 0; k < 2; k++) {
		struct graph *g;

		check_case(cases[k], DT_F32, TOL);
		g = import_case(cases[k], dir);
		cr_expect_eq(count_op(g, OP_ATTENTION), 1);
		for (i = 0; i < g->n_nodes; i++)
			if (g->nodes[i].op == OP_ATTENTION)
				cr_expect(g->nodes[i].n_in == 2 && g->nodes[i].ia[1] == (k == 0),
					  "%s: padding mask, causal %u", cases[k], k == 0);
		graph_destroy(g);
		rm_dir(dir);
	}
}

Test(onnx, refuses_unknown_attention_mask)
{
	char dir[64];

	make_case("anticausal", dir);
	refused(dir, "op Reshape (node \"h.0/Reshape_4\")");
	refused(dir, "the attention mask is neither padding");
	rm_dir(dir);
}

Test(onnx, refuses_unsupported_op)
{
	char dir[64], want[256];

	make_case("unsup", dir);
	snprintf(want, sizeof(want),
		 "ONNX import: op Sin (node \"my_sine\") in %s/model.onnx is not supported", dir);
	refused(dir, want);
	rm_dir(dir);
}

Test(onnx, refuses_unsupported_attributes)
{
	char dir[64];

	make_case("gemm_alpha", dir);
	refused(dir, "op Gemm (node \"scaled_fc\")");
	refused(dir, "not supported: only alpha = beta = 1");
	rm_dir(dir);
}

Test(onnx, refuses_opsets_out_of_range)
{
	char dir[64];

	make_case("opset13", dir);
	refused(dir, "opset 13 of the default domain is not supported (14 to 18 are)");
	rm_dir(dir);
	make_case("opset19", dir);
	refused(dir, "opset 19 of the default domain is not supported");
	rm_dir(dir);
}

Test(onnx, refuses_truncated_external_data)
{
	char dir[64], path[300];

	make_case("external", dir);
	snprintf(path, sizeof(path), "%s/model.data", dir);
	cr_assert_eq(truncate(path, 100), 0);
	refused(dir, "is past the end of");
	rm_dir(dir);
}

Test(onnx, refuses_without_protobuf_c)
{
	struct weight_source *ws;
	struct graph *g;
	int ret;

	if (HAVE_PROTOBUF_C)
		cr_skip_test("built with protobuf-c");
	ret = import_onnx("m.onnx", DT_F32, &g, &ws);
	cr_expect_eq(ret, DPRT_EUNSUP);
	cr_expect(strstr(err_msg(ret), "built without protobuf-c"));
}

Test(onnx, refuses_corrupt_protobuf)
{
	char dir[] = "/tmp/dprt-onnx.XXXXXX", path[300];
	FILE *f;

	need_onnx();
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/model.onnx", dir);
	f = fopen(path, "wb");
	cr_assert(f);
	fputs("\x3a\xff\xff\xff\x0f not a protobuf", f);
	fclose(f);
	refused(dir, "not an ONNX model (bad protobuf)");
	rm_dir(dir);
}

Test(onnx, refuses_missing_file)
{
	need_onnx();
	refused("/nonexistent-dir", "/nonexistent-dir/model.onnx");
}
