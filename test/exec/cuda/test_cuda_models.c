/* SPDX-License-Identifier: MIT */
/*
 * The CUDA backend end to end: the zoo's tiny models against the CPU
 * reference (also on the fallback paths), graph replay across several
 * cached shapes, bad requests, device memory over 1,000 runs, and the mem
 * module (host weight store read from a real package, device pool).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "mem/cudrv.h"

static void check_zoo(const char *name, enum dtype dt)
{
	static const enum tplace places[] = {TP_LOAD_PAGEABLE, TP_DHA, TP_MIXED};
	struct cuda_dev *d = tgpu_open();
	struct tview in[4], in2[4];
	struct tmodel t;
	struct rng r;
	size_t p;

	rng_seed(&r, tseed());
	tm_init_zoo(&t, name, dt, rng_next(&r));
	cr_assert(t.g->n_inputs <= 4);
	tin_make(t.g, 2, 16, 4, 0, false, &r, in);
	tin_make(t.g, 3, 11, 0, 0, true, &r, in2);
	for (p = 0; p < ARRAY_SIZE(places); p++)
		tcheck(d, &t, in, places[p], ttol(dt), name);
	tcheck(d, &t, in2, TP_LOAD_PINNED, ttol(dt), name);
	tin_free(t.g, in);
	tin_free(t.g, in2);
	tm_fini(&t);
	cuda_device_close(d);
}

Test(cuda_models, resnet_tiny)
{
	check_zoo("resnet-tiny", DT_F32);
}
Test(cuda_models, resnet_tiny_fp16)
{
	check_zoo("resnet-tiny", DT_F16);
}
Test(cuda_models, bert_tiny)
{
	check_zoo("bert-tiny", DT_F32);
}
Test(cuda_models, bert_tiny_fp16)
{
	check_zoo("bert-tiny", DT_F16);
}
Test(cuda_models, roberta_tiny)
{
	check_zoo("roberta-tiny", DT_F32);
}
Test(cuda_models, roberta_tiny_fp16)
{
	check_zoo("roberta-tiny", DT_F16);
}
Test(cuda_models, gpt2_tiny)
{
	check_zoo("gpt2-tiny", DT_F32);
}
Test(cuda_models, gpt2_tiny_fp16)
{
	check_zoo("gpt2-tiny", DT_F16);
}
Test(cuda_models, gpt2_tiny_bf16)
{
	check_zoo("gpt2-tiny", DT_BF16);
}
Test(cuda_models, bert_tiny_bf16)
{
	check_zoo("bert-tiny", DT_BF16);
}

/* The paths the DPRT_CUDA_* variables fall back to (cublasGemmEx with a
 * separate bias kernel, three-step attention, heuristic convolution
 * algorithms; no GELU epilogue) stay right too. */
Test(cuda_models, legacy_paths)
{
	setenv("DPRT_CUDA_LT", "0", 1);
	setenv("DPRT_CUDA_FLASH", "0", 1);
	setenv("DPRT_CUDNN_FIND", "0", 1);
	knobs_reload();
	check_zoo("gpt2-tiny", DT_F16);
	check_zoo("bert-tiny", DT_F32);
	check_zoo("resnet-tiny", DT_F32);
	setenv("DPRT_CUDA_LT", "1", 1);
	setenv("DPRT_CUDA_LT_GELU", "0", 1);
	knobs_reload();
	check_zoo("gpt2-tiny", DT_F16);
}

/* ------------------------------------------------------------ replay */

struct saved {
	void *data[4];
	uint64_t n[4];
};

static void save(const struct graph *g, const struct tview *out, struct saved *s)
{
	uint32_t o;

	for (o = 0; o < g->n_outputs; o++) {
		s->n[o] = out[o].nbytes;
		s->data[o] = malloc(out[o].nbytes);
		cr_assert(s->data[o]);
		memcpy(s->data[o], out[o].data, out[o].nbytes);
	}
}

/* Interleaved shapes keep their own programs and graphs: every run of a shape
 * gives that shape's first outputs, bit for bit. */
Test(cuda_models, replay_across_shapes)
{
	static const int64_t shapes[3][2] = {{1, 16}, {2, 9}, {4, 32}};
	struct cuda_dev *d = tgpu_open();
	struct tview in[3][4], out[2];
	struct saved first[3];
	struct exec_model *m;
	struct tmodel t;
	struct rng r;
	int i, k, ret;
	uint32_t o;

	rng_seed(&r, tseed());
	tm_init_zoo(&t, "bert-tiny", DT_F32, 7);
	ret = cuda_backend.model_create(d, t.g, t.page, &m);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	for (k = 0; k < 3; k++) {
		tin_make(t.g, shapes[k][0], shapes[k][1], 2, 0, false, &r, in[k]);
		ret = cuda_backend.model_run(m, in[k], out);
		cr_assert_eq(ret, 0, "%s", err_msg(ret));
		save(t.g, out, &first[k]);
	}
	for (i = 0; i < 30; i++) {
		k = (int)(rng_next(&r) % 3);
		ret = cuda_backend.model_run(m, in[k], out);
		cr_assert_eq(ret, 0, "%s", err_msg(ret));
		for (o = 0; o < t.g->n_outputs; o++)
			cr_assert(out[o].nbytes == first[k].n[o] &&
					  !memcmp(out[o].data, first[k].data[o], out[o].nbytes),
				  "run %d (shape %d): output %s differs from the shape's first "
				  "run",
				  i, k, t.g->outputs[o].name);
	}
	for (k = 0; k < 3; k++) {
		tin_free(t.g, in[k]);
		for (o = 0; o < t.g->n_outputs; o++)
			free(first[k].data[o]);
	}
	cuda_backend.model_destroy(m);
	tm_fini(&t);
	cuda_device_close(d);
}

/* ---------------------------------------------------------- bad input */

Test(cuda_models, bad_requests_leave_the_model_usable)
{
	struct cuda_dev *d = tgpu_open();
	struct tview in[4], out[2], bad;
	struct exec_model *m;
	struct tmodel t;
	struct rng r;
	int64_t keep;
	int ret;

	rng_seed(&r, tseed());
	tm_init_zoo(&t, "gpt2-tiny", DT_F32, 3);
	tin_make(t.g, 2, 8, 0, 0, false, &r, in);
	ret = cuda_backend.model_create(d, t.g, t.page, &m);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));

	/* a token id past the vocabulary, in the graph's eager first run */
	keep = ((int64_t *)in[0].data)[11];
	((int64_t *)in[0].data)[11] = 1000;
	ret = cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, DPRT_EINPUT, "got %d: %s", ret, err_msg(ret));
	cr_assert(strstr(err_msg(ret), "input_ids: id 1000 at flat index 11"), "%s", err_msg(ret));
	((int64_t *)in[0].data)[11] = keep;
	ret = cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));

	/* a negative one, now through the captured graph */
	((int64_t *)in[0].data)[3] = -5;
	ret = cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, DPRT_EINPUT, "%s", err_msg(ret));
	cr_assert(strstr(err_msg(ret), "id -5 at flat index 3"), "%s", err_msg(ret));
	((int64_t *)in[0].data)[3] = 1;

	/* a shape the signature refuses */
	bad = in[0];
	bad.shape.ndim = 3;
	bad.shape.dims[2] = 1;
	ret = cuda_backend.model_run(m, (struct tview[]){bad, in[1]}, out);
	cr_assert_eq(ret, DPRT_ESHAPE, "%s", err_msg(ret));
	/* too few bytes for the shape */
	bad = in[0];
	bad.nbytes = 8;
	ret = cuda_backend.model_run(m, (struct tview[]){bad, in[1]}, out);
	cr_assert_eq(ret, DPRT_EINPUT, "%s", err_msg(ret));
	ret = cuda_backend.model_run(m, in, out);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	cuda_backend.model_destroy(m);

	/* DHA needs pinned, mapped weights */
	ret = cuda_backend.model_create_placed(d, t.g, t.page, (uint8_t[64]){PLACE_DHA, PLACE_DHA},
					       &m);
	cr_assert_eq(ret, DPRT_EUNSUP, "%s", err_msg(ret));
	cr_assert(strstr(err_msg(ret), "pinned"), "%s", err_msg(ret));
	tin_free(t.g, in);
	tm_fini(&t);
	cuda_device_close(d);
}

/* ------------------------------------------------------------- memory */

static uint64_t gpu_free(void)
{
	size_t f = 0, total = 0;

	cr_assert_eq(CU(cuMemGetInfo(&f, &total)), 0, "%s", err_msg(DPRT_EDEVICE));
	return f;
}

/* 1,000 runs over three shapes (each with its cached program and graph) take
 * no device memory after the first run of each shape. */
Test(cuda_models, thousand_runs_no_memory_growth, .timeout = 300)
{
	struct cuda_dev *d = tgpu_open();
	struct tview in[3][4], out[2];
	struct exec_model *m;
	struct tmodel t;
	uint64_t free0, res0, used0;
	struct rng r;
	int i, ret;

	rng_seed(&r, tseed());
	tm_init_zoo(&t, "bert-tiny", DT_F16, 5);
	ret = cuda_backend.model_create(d, t.g, t.page, &m);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	for (i = 0; i < 3; i++) {
		tin_make(t.g, i + 1, 8 << i, 1, 0, false, &r, in[i]);
		ret = cuda_backend.model_run(m, in[i], out) ?:
							      cuda_backend.model_run(m, in[i], out);
		cr_assert_eq(ret, 0, "%s", err_msg(ret));
	}
	free0 = gpu_free();
	res0 = cuda_device_reserved(d);
	used0 = cuda_device_used(d);
	for (i = 0; i < 1000; i++) {
		ret = cuda_backend.model_run(m, in[i % 3], out);
		cr_assert_eq(ret, 0, "run %d: %s", i, err_msg(ret));
	}
	cr_assert_eq(gpu_free(), free0, "free device memory went from %llu to %llu",
		     (unsigned long long)free0, (unsigned long long)gpu_free());
	cr_assert_eq(cuda_device_reserved(d), res0);
	cr_assert_eq(cuda_device_used(d), used0);
	for (i = 0; i < 3; i++)
		tin_free(t.g, in[i]);
	cuda_backend.model_destroy(m);
	tm_fini(&t);
	cuda_device_close(d);
}

/* More shapes than the program cache holds: programs are evicted and remade,
 * and their memory returns to the pool every time. */
Test(cuda_models, prog_eviction_returns_memory)
{
	struct cuda_dev *d = tgpu_open();
	struct tview in[6][4], out[2];
	struct exec_model *m;
	struct tmodel t;
	uint64_t res0 = 0, used0 = 0;
	struct rng r;
	int i, round, ret;

	rng_seed(&r, tseed());
	tm_init_zoo(&t, "roberta-tiny", DT_F32, 9);
	ret = cuda_backend.model_create(d, t.g, t.page, &m);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	for (i = 0; i < 6; i++)
		tin_make(t.g, 1 + i % 2, 5 + 3 * i, 1, 0, false, &r, in[i]);
	for (round = 0; round < 4; round++) {
		for (i = 0; i < 6; i++) {
			ret = cuda_backend.model_run(m, in[i], out);
			cr_assert_eq(ret, 0, "%s", err_msg(ret));
		}
		if (round == 1) {
			res0 = cuda_device_reserved(d);
			used0 = cuda_device_used(d);
		}
	}
	cr_assert_eq(cuda_device_reserved(d), res0);
	cr_assert_eq(cuda_device_used(d), used0);
	cuda_backend.model_destroy(m);
	for (i = 0; i < 6; i++)
		tin_free(t.g, in[i]);
	tm_fini(&t);
	cuda_device_close(d);
}

/* ---------------------------------------------------------------- mem */

/* hoststore_load reads a real package with io_uring into pinned memory
 * (plain memory without a GPU), byte for byte, and refuses one whose layer
 * CRC does not match. */
Test(cuda_mem, hoststore_load_and_crc)
{
	char path[] = "/tmp/dprt-cuda-test-XXXXXX";
	struct hoststore_info info;
	struct weight_source *ws;
	struct hoststore *hs;
	struct tmodel t;
	struct pkg *p;
	uint64_t at;
	FILE *f;
	int fd, byte, ret;

	tm_init_zoo(&t, "resnet-tiny", DT_F32, 11);
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	close(fd);
	ws = wsrc_random(11);
	ret = pkg_write(path, t.g, wsrc_fill, ws);
	wsrc_destroy(ws);
	cr_assert_eq(ret, 0, "pkg_write: %s", err_msg(ret));
	ret = pkg_open(path, &p);
	cr_assert_eq(ret, 0, "pkg_open: %s", err_msg(ret));
	ret = hoststore_load(p, &hs);
	cr_assert_eq(ret, 0, "hoststore_load: %s", err_msg(ret));
	hoststore_get_info(hs, &info);
	cr_assert_eq(info.mapped, cuda_device_count() > 0, "pinned and mapped iff a GPU");
	cr_assert_eq(info.verified, t.g->n_layers);
	cr_assert(!memcmp(hoststore_base(hs), t.page, t.g->weights_size));
	fprintf(stderr, "hoststore_load: %llu bytes in %.2f ms (O_DIRECT %s)\n",
		(unsigned long long)info.size, info.read_ms, info.direct ? "yes" : "no");
	hoststore_destroy(hs);
	at = pkg_weights_offset(p) + t.g->layers[t.g->n_layers / 2].offset + 3;
	pkg_close(p);

	f = fopen(path, "r+b");
	cr_assert(f);
	cr_assert_eq(fseek(f, (long)at, SEEK_SET), 0);
	byte = fgetc(f);
	cr_assert(byte >= 0);
	cr_assert_eq(fseek(f, (long)at, SEEK_SET), 0);
	cr_assert_eq(fputc(~byte & 0xff, f), ~byte & 0xff);
	fclose(f);
	ret = pkg_open(path, &p);
	cr_assert_eq(ret, 0, "pkg_open: %s", err_msg(ret));
	ret = hoststore_load(p, &hs);
	cr_assert_neq(ret, 0, "a corrupt layer was not noticed");
	cr_assert(strstr(err_msg(ret), t.g->layers[t.g->n_layers / 2].name) ||
			  strstr(err_msg(ret), "CRC") || strstr(err_msg(ret), "crc"),
		  "%s", err_msg(ret));
	pkg_close(p);
	unlink(path);
	tm_fini(&t);
}

Test(cuda_mem, devpool_suballocates_and_coalesces)
{
	struct cuda_dev *d = tgpu_open();
	struct devpool *p;
	uint64_t a, b, c, e, big;
	int ret;

	ret = devpool_create(4 << 20, 16 << 20, 0, &p);
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	cr_assert_eq(devpool_reserved(p), 0);
	cr_assert_eq(devpool_alloc(p, 1000, "a", &a), 0);
	cr_assert_eq(devpool_reserved(p), 4 << 20);
	cr_assert_eq(devpool_alloc(p, 1 << 20, "b", &b), 0);
	cr_assert_eq(devpool_alloc(p, 300, "c", &c), 0);
	cr_assert_eq(a % DEVPOOL_ALIGN, 0);
	cr_assert_eq(b, a + 1024);
	cr_assert_eq(c, b + (1 << 20));
	devpool_free(p, b);
	cr_assert_eq(devpool_alloc(p, 512, "e", &e), 0);
	cr_assert_eq(e, b, "a freed range is reused first-fit");
	devpool_free(p, e);
	devpool_free(p, a);
	devpool_free(p, c);
	cr_assert_eq(devpool_used(p), 0);
	cr_assert_eq(devpool_alloc(p, 4 << 20, "whole", &a), 0);
	cr_assert_eq(devpool_reserved(p), 4 << 20, "freed neighbours coalesce");
	cr_assert_eq(devpool_alloc(p, 10 << 20, "big", &big), 0);
	cr_assert_eq(devpool_reserved(p), 14 << 20);
	ret = devpool_alloc(p, 4 << 20, "over", &e);
	cr_assert_eq(ret, -ENOMEM);
	cr_assert(strstr(err_msg(ret), "over"), "%s", err_msg(ret));
	cr_assert_eq(CU(cuMemsetD8Async(big, 0x11, 10 << 20, NULL)), 0);
	cr_assert_eq(CU(cuStreamSynchronize(NULL)), 0);
	devpool_destroy(p);
	cuda_device_close(d);
}

/* Without a driver the device reports "no GPU available"; with one, it
 * opens and names itself. */
Test(cuda_dev, open_or_report_no_gpu)
{
	struct cuda_dev *d = NULL;
	int ret = cuda_device_open(0, &d);

	if (ret == DPRT_ENODEV && !getenv("DPRT_REQUIRE_GPU")) {
		cr_assert(strstr(err_msg(ret), "no GPU available"), "%s", err_msg(ret));
		cr_assert_eq(cuda_device_count(), 0);
		return;
	}
	cr_assert_eq(ret, 0, "%s", err_msg(ret));
	cr_assert(cuda_device_count() >= 1);
	cr_assert(strstr(cuda_device_name(d), "sm_"), "%s", cuda_device_name(d));
	fprintf(stderr, "GPU 0: %s\n", cuda_device_name(d));
	cuda_device_close(d);
	ret = cuda_device_open(cuda_device_count(), &d);
	cr_assert_eq(ret, DPRT_ENODEV, "%s", err_msg(ret));
}
