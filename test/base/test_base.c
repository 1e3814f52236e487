/* SPDX-License-Identifier: MIT */
/* Tests of src/base: checksums, arena, sizes, half floats, errors, rng. */
#include "base/base.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- crc32c ---- */

/* Bit-at-a-time CRC32C, the definition itself, as an independent reference. */
static uint32_t crc32c_bitwise(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	int k;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

Test(crc32c, known_vectors)
{
	unsigned char buf[32];
	int i;

	cr_assert_eq(crc32c(0, "123456789", 9), 0xe3069283u);
	cr_assert_eq(crc32c(0, "", 0), 0);
	/* RFC 3720, appendix B.4 */
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(crc32c(0, buf, 32), 0x8a9136aau);
	memset(buf, 0xff, sizeof(buf));
	cr_assert_eq(crc32c(0, buf, 32), 0x62a8ab43u);
	for (i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	cr_assert_eq(crc32c(0, buf, 32), 0x46dd794eu);
	for (i = 0; i < 32; i++)
		buf[i] = (unsigned char)(31 - i);
	cr_assert_eq(crc32c(0, buf, 32), 0x113fdb5cu);
}

Test(crc32c, portable_path_known_vector)
{
	cr_assert_eq(crc32c_portable(0, "123456789", 9), 0xe3069283u);
}

static void fill_random(struct rng *r, unsigned char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (unsigned char)rng_next(r);
}

Test(crc32c, paths_agree_on_odd_lengths_and_offsets)
{
	enum { MAX = 4099 };
	unsigned char *buf = malloc(MAX + 8);
	struct rng r;
	size_t len, off;
	uint32_t ref;

	cr_assert_not_null(buf);
	rng_seed(&r, 42);
	fill_random(&r, buf, MAX + 8);
	for (len = 0; len <= MAX; len += 1 + len / 4) {
		for (off = 0; off < 8; off += 3) {
			ref = crc32c_bitwise(0, buf + off, len);
			cr_assert_eq(crc32c(0, buf + off, len), ref, "crc32c, len %zu off %zu", len,
				     off);
			cr_assert_eq(crc32c_portable(0, buf + off, len), ref,
				     "crc32c_portable, len %zu off %zu", len, off);
		}
	}
	free(buf);
}

Test(crc32c, chunks_chain_like_one_call)
{
	unsigned char buf[1001];
	struct rng r;
	size_t cut;
	uint32_t whole, c;

	rng_seed(&r, 7);
	fill_random(&r, buf, sizeof(buf));
	whole = crc32c(0, buf, sizeof(buf));
	for (cut = 0; cut <= sizeof(buf); cut += 37) {
		c = crc32c(0, buf, cut);
		c = crc32c(c, buf + cut, sizeof(buf) - cut);
		cr_assert_eq(c, whole, "split at %zu", cut);
		c = crc32c_portable(0, buf, cut);
		c = crc32c_portable(c, buf + cut, sizeof(buf) - cut);
		cr_assert_eq(c, whole, "portable, split at %zu", cut);
	}
}

Test(crc32c, detects_one_flipped_bit)
{
	unsigned char buf[257];
	struct rng r;
	uint32_t good;
	size_t i;

	rng_seed(&r, 3);
	fill_random(&r, buf, sizeof(buf));
	good = crc32c(0, buf, sizeof(buf));
	for (i = 0; i < sizeof(buf) * 8; i += 13) {
		buf[i / 8] ^= (unsigned char)(1u << (i % 8));
		cr_assert_neq(crc32c(0, buf, sizeof(buf)), good, "bit %zu", i);
		buf[i / 8] ^= (unsigned char)(1u << (i % 8));
	}
}

/* ---- hash64 (FNV-1a 64) ---- */

Test(hash64, known_vectors)
{
	cr_assert_eq(hash64(HASH64_INIT, "", 0), 0xcbf29ce484222325ull);
	cr_assert_eq(hash64(HASH64_INIT, "a", 1), 0xaf63dc4c8601ec8cull);
	cr_assert_eq(hash64(HASH64_INIT, "foobar", 6), 0x85944171f73967e8ull);
}

Test(hash64, chains_and_differs)
{
	uint64_t h = hash64(HASH64_INIT, "foo", 3);

	cr_assert_eq(hash64(h, "bar", 3), hash64(HASH64_INIT, "foobar", 6));
	cr_assert_neq(hash64(HASH64_INIT, "ab", 2), hash64(HASH64_INIT, "ba", 2));
}

/* ---- arena ---- */

Test(arena, aligns_pointers)
{
	static const size_t aligns[] = {1, 2, 8, 16, 64, 256, 4096};
	struct arena a;
	size_t i;
	char *p;

	cr_assert_eq(arena_init(&a, 1 << 16), 0);
	for (i = 0; i < ARRAY_SIZE(aligns); i++) {
		cr_assert_not_null(arena_alloc(&a, 3, 1)); /* misalign on purpose */
		p = arena_alloc(&a, 10, aligns[i]);
		cr_assert_not_null(p);
		cr_assert_eq((uintptr_t)p % aligns[i], 0, "align %zu: %p", aligns[i], (void *)p);
		cr_assert(p >= a.base && p + 10 <= a.base + a.size);
		memset(p, 0xab, 10);
	}
	arena_fini(&a);
}

Test(arena, allocations_do_not_overlap)
{
	struct arena a;
	char *p, *q;

	cr_assert_eq(arena_init(&a, 1024), 0);
	p = arena_alloc(&a, 100, 8);
	q = arena_alloc(&a, 100, 8);
	cr_assert(p && q);
	cr_assert(q >= p + 100);
	arena_fini(&a);
}

Test(arena, full_returns_null_and_reset_reuses)
{
	struct arena a;
	char *first;

	cr_assert_eq(arena_init(&a, 1000), 0);
	first = arena_alloc(&a, 600, 1);
	cr_assert_not_null(first);
	cr_assert_null(arena_alloc(&a, 401, 1));
	cr_assert_not_null(arena_alloc(&a, 400, 1), "exactly full must fit");
	cr_assert_null(arena_alloc(&a, 1, 1));
	cr_assert_null(arena_alloc(&a, SIZE_MAX, 1));
	arena_reset(&a);
	cr_assert_eq(arena_alloc(&a, 1000, 1), first);
	cr_assert_null(arena_alloc(&a, SIZE_MAX - 8, 16));
	arena_fini(&a);
	cr_assert_null(a.base);
}

/* ---- parse_size / fmt_bytes ---- */

Test(parse_size, good)
{
	static const struct {
		const char *s;
		uint64_t v;
	} cases[] = {
		{"0", 0},
		{"123", 123},
		{"4K", 4096},
		{"4k", 4096},
		{"2KB", 2048},
		{"1.5G", 1610612736ull},
		{"512MiB", 536870912ull},
		{"3m", 3ull << 20},
		{"1T", 1ull << 40},
		{"16GiB", 16ull << 30},
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		v = 12345;
		cr_assert_eq(parse_size(cases[i].s, &v), 0, "'%s'", cases[i].s);
		cr_assert_eq(v, cases[i].v, "'%s' gave %llu", cases[i].s, (unsigned long long)v);
	}
}

Test(parse_size, bad)
{
	static const char *const cases[] = {
		"",	"abc",	 "-1",	"4X",  "4KiBx", "1.5.5",     "K",
		"12 K", "4Ki B", "nan", "inf", "1e30",	"99999999T",
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++)
		cr_assert_eq(parse_size(cases[i], &v), -EINVAL, "'%s' accepted", cases[i]);
}

Test(fmt_bytes, units)
{
	char buf[32];

	cr_assert_str_eq(fmt_bytes(0, buf, sizeof(buf)), "0 B");
	cr_assert_str_eq(fmt_bytes(999, buf, sizeof(buf)), "999 B");
	cr_assert_str_eq(fmt_bytes(1000, buf, sizeof(buf)), "1.0 kB");
	cr_assert_str_eq(fmt_bytes(437900000, buf, sizeof(buf)), "437.9 MB");
	cr_assert_str_eq(fmt_bytes(1000000000ull, buf, sizeof(buf)), "1.00 GB");
	cr_assert_str_eq(fmt_bytes(1340000000ull, buf, sizeof(buf)), "1.34 GB");
}

Test(fmt_bytes, truncates_into_small_buffer)
{
	char buf[8];

	memset(buf, 'x', sizeof(buf));
	cr_assert_eq(fmt_bytes(437900000, buf, 4), buf);
	cr_assert_str_eq(buf, "437");
	cr_assert_eq(buf[4], 'x');
}

/* ---- fp16 / bf16 ---- */

/* Value of an fp16 bit pattern from its definition, in double. */
static double f16_value(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v;

	if (e == 0)
		v = ldexp(m, -24);
	else
		v = ldexp(1024 + m, e - 25);
	return (h & 0x8000) ? -v : v;
}

static bool f16_is_nan(uint16_t h)
{
	return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

Test(fp16, every_value_converts_exactly_and_round_trips)
{
	uint32_t i;
	uint16_t h;
	float f;

	for (i = 0; i < 65536; i++) {
		h = (uint16_t)i;
		f = f16_to_f32(h);
		if (f16_is_nan(h)) {
			cr_assert(isnan(f), "0x%04x", i);
			cr_assert(f16_is_nan(f32_to_f16(f)), "0x%04x", i);
			cr_assert_eq(f32_to_f16(f) & 0x8000, h & 0x8000, "0x%04x", i);
			continue;
		}
		if ((h & 0x7c00) == 0x7c00)
			cr_assert(isinf(f) && !!signbit(f) == !!(h & 0x8000), "0x%04x", i);
		else
			cr_assert_eq((double)f, f16_value(h), "0x%04x", i);
		cr_assert_eq(f32_to_f16(f), h, "0x%04x -> %a -> 0x%04x", i, (double)f,
			     f32_to_f16(f));
	}
}

/* Between each pair of neighbouring finite fp16 values, the midpoint (exact
 * in fp32) rounds to the even one, and one fp32 step off it rounds to the
 * nearer one. */
Test(fp16, ties_round_to_even)
{
	uint16_t lo, hi, even;
	float mid;

	for (lo = 0; lo < 0x7bff; lo++) {
		hi = (uint16_t)(lo + 1);
		mid = (float)((f16_value(lo) + f16_value(hi)) / 2);
		cr_assert_eq((double)mid, (f16_value(lo) + f16_value(hi)) / 2);
		even = (lo & 1) ? hi : lo;
		cr_assert_eq(f32_to_f16(mid), even, "mid 0x%04x/0x%04x", lo, hi);
		cr_assert_eq(f32_to_f16(-mid), even | 0x8000, "-mid 0x%04x", lo);
		cr_assert_eq(f32_to_f16(nextafterf(mid, 0)), lo, "below 0x%04x", lo);
		cr_assert_eq(f32_to_f16(nextafterf(mid, INFINITY)), hi, "above 0x%04x", lo);
	}
}

Test(fp16, overflow_and_underflow)
{
	cr_assert_eq(f32_to_f16(65504.0f), 0x7bff);
	cr_assert_eq(f32_to_f16(65519.0f), 0x7bff);
	cr_assert_eq(f32_to_f16(65520.0f), 0x7c00, "tie above max rounds to inf");
	cr_assert_eq(f32_to_f16(1e10f), 0x7c00);
	cr_assert_eq(f32_to_f16(-1e10f), 0xfc00);
	cr_assert_eq(f32_to_f16(INFINITY), 0x7c00);
	cr_assert_eq(f32_to_f16(ldexpf(1.0f, -25)), 0x0000, "tie to even zero");
	cr_assert_eq(f32_to_f16(nextafterf(ldexpf(1.0f, -25), 1)), 0x0001);
	cr_assert_eq(f32_to_f16(ldexpf(1.0f, -30)), 0x0000);
	cr_assert_eq(f32_to_f16(-ldexpf(1.0f, -30)), 0x8000);
	cr_assert_eq(f32_to_f16(1e-45f), 0x0000);
	cr_assert_eq(f32_to_f16(-0.0f), 0x8000);
}

Test(bf16, every_value_round_trips)
{
	uint32_t i, bits;
	uint16_t h;
	float f;

	for (i = 0; i < 65536; i++) {
		h = (uint16_t)i;
		f = bf16_to_f32(h);
		bits = (uint32_t)h << 16;
		if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) {
			cr_assert(isnan(f), "0x%04x", i);
			cr_assert(isnan(bf16_to_f32(f32_to_bf16(f))), "0x%04x", i);
			continue;
		}
		cr_assert_eq(memcmp(&f, &bits, 4), 0, "0x%04x", i);
		cr_assert_eq(f32_to_bf16(f), h, "0x%04x", i);
	}
}

static float f32_from_bits(uint32_t b)
{
	float f;

	memcpy(&f, &b, 4);
	return f;
}

Test(bf16, rounding)
{
	cr_assert_eq(f32_to_bf16(f32_from_bits(0x3f808000u)), 0x3f80, "tie, even below");
	cr_assert_eq(f32_to_bf16(f32_from_bits(0x3f818000u)), 0x3f82, "tie, even above");
	cr_assert_eq(f32_to_bf16(f32_from_bits(0x3f808001u)), 0x3f81);
	cr_assert_eq(f32_to_bf16(f32_from_bits(0x3f807fffu)), 0x3f80);
	cr_assert_eq(f32_to_bf16(f32_from_bits(0xbf818000u)), 0xbf82);
	cr_assert_eq(f32_to_bf16(f32_from_bits(0x7f7f8000u)), 0x7f80, "to inf");
	/* a NaN whose payload is only in the low bits stays a NaN */
	cr_assert(isnan(bf16_to_f32(f32_to_bf16(f32_from_bits(0x7f800001u)))));
	cr_assert(isnan(bf16_to_f32(f32_to_bf16(f32_from_bits(0xff800001u)))));
}

/* ---- errors ---- */

Test(err, strerror_own_codes_and_errno)
{
	static const int own[] = {
		DPRT_EBADPKG,  DPRT_EVERSION,  DPRT_ESHAPE,  DPRT_EDTYPE,   DPRT_EINPUT,
		DPRT_ENOMODEL, DPRT_ENODEV,    DPRT_EDEVICE, DPRT_EBADPLAN, DPRT_EUNSUP,
		DPRT_EWEIGHTS, DPRT_EOVERLOAD, DPRT_EUSAGE,
	};
	size_t i, j;

	for (i = 0; i < ARRAY_SIZE(own); i++) {
		cr_assert_str_neq(dprt_strerror(own[i]), "unknown error", "%d", own[i]);
		for (j = 0; j < i; j++)
			cr_assert_str_neq(dprt_strerror(own[i]), dprt_strerror(own[j]));
	}
	cr_assert_str_eq(dprt_strerror(DPRT_EBADPKG), "malformed or corrupt package");
	cr_assert_str_eq(dprt_strerror(0), "success");
	cr_assert_str_eq(dprt_strerror(-ENOENT), strerror(ENOENT));
	cr_assert_str_eq(dprt_strerror(-EINVAL), strerror(EINVAL));
	cr_assert_str_eq(dprt_strerror(-4999), "unknown error");
	cr_assert_str_eq(dprt_strerror(5), "unknown error");
}

Test(err, set_msg_clear)
{
	err_clear();
	cr_assert_str_eq(err_msg(DPRT_EBADPKG), "malformed or corrupt package");
	cr_assert_eq(err_set(DPRT_EBADPKG, "%s: bad magic %d", "m.dpk", 7), DPRT_EBADPKG);
	cr_assert_str_eq(err_msg(DPRT_EBADPKG), "m.dpk: bad magic 7");
	cr_assert_str_eq(err_msg(0), "m.dpk: bad magic 7");
	/* a different code than the one recorded gets its generic text */
	cr_assert_str_eq(err_msg(-ENOENT), strerror(ENOENT));
	err_clear();
	cr_assert_str_eq(err_msg(DPRT_EBADPKG), "malformed or corrupt package");
}

Test(err, long_message_is_truncated)
{
	char big[2000];

	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	err_set(-EIO, "%s", big);
	cr_assert_gt(strlen(err_msg(-EIO)), 100);
	cr_assert_lt(strlen(err_msg(-EIO)), sizeof(big) - 1);
	cr_assert_eq(err_msg(-EIO)[0], 'y');
	err_clear();
}

static void *set_in_thread(void *arg)
{
	err_set(-EIO, "other thread");
	return arg;
}

Test(err, message_is_per_thread)
{
	pthread_t t;

	err_set(DPRT_ESHAPE, "mine");
	cr_assert_eq(pthread_create(&t, NULL, set_in_thread, NULL), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_str_eq(err_msg(DPRT_ESHAPE), "mine");
	err_clear();
}

/* ---- logging ---- */

static void read_all(FILE *f, char *buf, size_t len)
{
	size_t n;

	cr_assert_not_null(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = 0;
}

Test(log, threshold_filters, .init = cr_redirect_stderr)
{
	char out[4096];

	log_set_level(LOG_WARN);
	log_info("hidden-info %d", 1);
	log_debug("hidden-debug %d", 2);
	log_warn("shown-warn %d", 3);
	log_error("shown-error %s", "x");
	fflush(stderr);
	read_all(cr_get_redirected_stderr(), out, sizeof(out));
	cr_assert_null(strstr(out, "hidden"), "%s", out);
	cr_assert_not_null(strstr(out, "warn  shown-warn 3\n"), "%s", out);
	cr_assert_not_null(strstr(out, "error shown-error x\n"), "%s", out);
	log_set_level(LOG_INFO);
}

/* ---- clock, rng ---- */

Test(clock, monotonic)
{
	uint64_t a = clock_ns(), b = clock_ns();

	cr_assert_geq(b, a);
	cr_assert_gt(a, 0);
}

Test(rng, deterministic_and_in_range)
{
	struct rng a, b, c;
	int i, differ = 0;
	float u;

	rng_seed(&a, 1);
	rng_seed(&b, 1);
	rng_seed(&c, 2);
	for (i = 0; i < 10000; i++) {
		uint64_t x = rng_next(&a);

		cr_assert_eq(x, rng_next(&b));
		differ += x != rng_next(&c);
	}
	cr_assert_gt(differ, 9990);
	for (i = 0; i < 100000; i++) {
		u = rng_unit(&a);
		cr_assert(u >= -1.0f && u < 1.0f, "%g", (double)u);
	}
}

/* fmt_g must print what snprintf's %.*g prints, byte for byte. */
static void same_as_printf(double v, int prec)
{
	char a[64], b[64];
	size_t n = fmt_g(a, v, prec);

	snprintf(b, sizeof(b), "%.*g", prec, v);
	cr_assert_str_eq(a, b, "%.17g at precision %d: '%s', printf '%s'", v, prec, a, b);
	cr_assert_eq(n, strlen(b));
}

Test(fmt_g, edges)
{
	static const double v[] = {1,
				   -1,
				   0.5,
				   100,
				   1e9,
				   1e8,
				   999999999,
				   9999999995.0,
				   0.0001,
				   0.00001,
				   1e-5,
				   123456789,
				   1234567890,
				   0.1,
				   1e15,
				   1e16,
				   1e-300,
				   5e-324,
				   1e300,
				   3.4028234663852886e38,
				   1.1754943508222875e-38,
				   -0.0,
				   0.0,
				   9.5,
				   0.95,
				   2.5e-7};
	static const int precs[] = {1, 4, 5, 9, 15, 17};
	size_t i, k;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		for (k = 0; k < sizeof(precs) / sizeof(precs[0]); k++)
			same_as_printf(v[i], precs[k]);
	same_as_printf(INFINITY, 9);
	same_as_printf(NAN, 9);
}

/* Random fp32 bit patterns (every magnitude), fp16 and bf16 values, and
 * random doubles, at the precisions the JSON encoder uses and more. */
Test(fmt_g, random_values_like_printf)
{
	struct rng r;
	union {
		uint32_t u;
		float f;
	} x;
	int i, k;

	rng_seed(&r, 11);
	for (i = 0; i < 300000; i++) {
		x.u = (uint32_t)rng_next(&r);
		if (!isfinite(x.f))
			continue;
		same_as_printf(x.f, 9);
		same_as_printf(f16_to_f32((uint16_t)x.u), 5);
		same_as_printf(bf16_to_f32((uint16_t)x.u), 4);
	}
	for (i = 0; i < 100000; i++) {
		double d = ldexp((double)(rng_next(&r) >> 11), (int)(rng_next(&r) % 200) - 150);

		for (k = 1; k <= 15; k += 7)
			same_as_printf(i % 2 ? -d : d, k);
		same_as_printf(d, 15);
	}
}
