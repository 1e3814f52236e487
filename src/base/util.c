/* SPDX-License-Identifier: MIT */
#include "base.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

uint64_t clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- CRC32C ---- */
static uint32_t crc_table[8][256];

static void crc_table_init(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (j = 1; j < 8; j++)
			crc_table[j][i] = (crc_table[j - 1][i] >> 8) ^
					  crc_table[0][crc_table[j - 1][i] & 0xff];
}

static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t w;

	while (len >= 8) {
		memcpy(&w, p, 8);
		w ^= crc;
		crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		      crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		      crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		      crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p,
							    size_t len)
{
	uint64_t c = crc, w;

	while (len >= 8) {
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	static int mode; /* 0 unknown, 1 sw, 2 hw; benign race: same result */

	crc = ~crc;
	if (!mode) {
		crc_table_init();
#if defined(__x86_64__)
		__builtin_cpu_init();
		mode = __builtin_cpu_supports("sse4.2") ? 2 : 1;
#else
		mode = 1;
#endif
	}
#if defined(__x86_64__)
	if (mode == 2)
		return ~crc32c_hw(crc, buf, len);
#endif
	return ~crc32c_sw(crc, buf, len);
}

uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len)
{
	crc32c(0, NULL, 0); /* builds the tables on first use */
	return ~crc32c_sw(~crc, buf, len);
}

uint64_t hash64(uint64_t h, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len--) {
		h ^= *p++;
		h *= 0x100000001b3ull;
	}
	return h;
}

/* ---- arena ---- */
int arena_init(struct arena *a, size_t size)
{
	a->base = malloc(size ? size : 1);
	a->size = size;
	a->used = 0;
	return a->base ? 0 : -ENOMEM;
}

void arena_fini(struct arena *a)
{
	free(a->base);
	a->base = NULL;
	a->size = a->used = 0;
}

void *arena_alloc(struct arena *a, size_t size, size_t align)
{
	/* Align the address, not the offset: malloc only promises 16 bytes. */
	uintptr_t base = (uintptr_t)a->base;
	size_t off = ALIGN_UP(base + a->used, align) - base;

	if (off > a->size || size > a->size - off)
		return NULL;
	a->used = off + size;
	return a->base + off;
}

/* ---- sizes ---- */
int parse_size(const char *s, uint64_t *out)
{
	char *end;
	double v;
	uint64_t mul = 1;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !(v >= 0)) /* !(v >= 0) also catches NaN */
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		mul = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1ull << 30;
		end++;
		break;
	case 't':
	case 'T':
		mul = 1ull << 40;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'i')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || !(v * (double)mul < 18446744073709551616.0)) /* inf, > 2^64 */
		return -EINVAL;
	*out = (uint64_t)(v * (double)mul);
	return 0;
}

const char *fmt_bytes(uint64_t n, char *buf, size_t len)
{
	if (n >= 1000000000ull)
		snprintf(buf, len, "%.2f GB", (double)n / 1e9);
	else if (n >= 1000000ull)
		snprintf(buf, len, "%.1f MB", (double)n / 1e6);
	else if (n >= 1000ull)
		snprintf(buf, len, "%.1f kB", (double)n / 1e3);
	else
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	return buf;
}

/* ---- half precision ---- */
float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	float f;

	if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13);
	} else if (exp == 0) {
		f = ldexpf((float)man, -24);
		return sign ? -f : f;
	} else {
		bits = sign | ((exp + 112) << 23) | (man << 13);
	}
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t f32_to_f16(float f)
{
	uint32_t x, sign, man;
	int exp;

	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000;
	exp = (int)((x >> 23) & 0xff) - 127 + 15;
	man = x & 0x7fffff;
	if (((x >> 23) & 0xff) == 0xff) /* inf or nan */
		return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
	if (exp >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (exp <= 0) {
		uint32_t shift, half, rest;

		if (exp < -10)
			return (uint16_t)sign;
		man |= 0x800000;
		shift = (uint32_t)(14 - exp);
		half = 1u << (shift - 1);
		rest = man & ((1u << shift) - 1);
		man >>= shift;
		if (rest > half || (rest == half && (man & 1)))
			man++;
		return (uint16_t)(sign | man);
	}
	{
		uint32_t rest = man & 0x1fff;
		uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);

		if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
			h++; /* may carry into the exponent: still correct */
		return (uint16_t)h;
	}
}

float bf16_to_f32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;

	memcpy(&f, &bits, 4);
	return f;
}

uint16_t f32_to_bf16(float f)
{
	uint32_t x;

	memcpy(&x, &f, 4);
	if ((x & 0x7fffffff) > 0x7f800000)
		return (uint16_t)((x >> 16) | 0x40);
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

void rng_seed(struct rng *r, uint64_t seed)
{
	int i;

	for (i = 0; i < 4; i++) { /* splitmix64 */
		uint64_t z = (seed += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		r->s[i] = z ^ (z >> 31);
	}
}

/* mkdir -p; see base.h. */
int mkdir_p(const char *path)
{
	char tmp[4096];
	char *p;

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return err_set(-ENAMETOOLONG, "%s: path too long", path);
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return err_set(-errno, "cannot create %s: %s", tmp, strerror(errno));
		*p = '/';
	}
	if (mkdir(tmp, 0755) && errno != EEXIST)
		return err_set(-errno, "cannot create %s: %s", tmp, strerror(errno));
	return 0;
}

/* 10^k, exact; see base.h. */
double pow10_exact(int k)
{
	static const double p[] = {1e0,	 1e1,  1e2,  1e3,  1e4,	 1e5,  1e6,  1e7,
				   1e8,	 1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
				   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

	return p[k];
}

/* 10^k for k >= 0: exact up to 22, larger powers from two factors. */
static double pow10_of(int k)
{
	return k <= 22 ? pow10_exact(k) : pow10_exact(22) * pow10_of(k - 22);
}

/* v * 10^k, k of either sign, in one rounding where 10^|k| is exact. */
static double scale10(double v, int k)
{
	if (k >= 0)
		return v * pow10_of(k);
	return -k <= 22 ? v / pow10_of(-k) : v / pow10_of(22) / pow10_of(-k - 22);
}

/* The prec significant digits of a (> 0) and its decimal exponent, rounded
 * as printf does; false where double arithmetic cannot tell (a tie within
 * its error, or a value out of its range). */
static bool digits_of(double a, int prec, uint64_t *q, int *e10)
{
	uint64_t lo = (uint64_t)pow10_of(prec - 1), hi = lo * 10;
	double m, r;
	int e2, e;

	if (a < 1e-300 || a > 1e300)
		return false;
	/* a = f * 2^e2, f in [0.5, 1): log10(a) >= (e2 - 1) log10(2), less
	 * than one above it; the loop corrects an estimate one too low */
	frexp(a, &e2);
	e = (int)floor((e2 - 1) * 0.30102999566398120);
	for (int tries = 0; tries < 2; tries++) {
		m = scale10(a, prec - 1 - e);
		r = (double)(uint64_t)m;
		/* m is within a few ulps (m * 1e-15) of a * 10^k: the rounding
		 * is right unless the fraction is that close to a half */
		if (fabs(m - r - 0.5) <= m * 1e-15)
			return false;
		*q = (uint64_t)r + (m - r > 0.5);
		if (*q >= lo && *q < hi) {
			*e10 = e;
			return true;
		}
		if (*q == hi) { /* 9.999..95 rounded up to the next decade */
			*q = lo;
			*e10 = e + 1;
			return true;
		}
		e += *q < lo ? -1 : 1; /* log10's estimate was off by one */
	}
	return false;
}

static size_t put_exp(char *o, int e)
{
	size_t n = 0;

	o[n++] = 'e';
	o[n++] = e < 0 ? '-' : '+';
	e = e < 0 ? -e : e;
	if (e >= 100)
		o[n++] = (char)('0' + e / 100);
	o[n++] = (char)('0' + e / 10 % 10);
	o[n++] = (char)('0' + e % 10);
	return n;
}

/* %g's layout of digits d[0..nd) (no trailing zeros) with exponent e. */
static size_t layout_g(char *o, const char *d, int nd, int e, int prec)
{
	size_t n = 0;
	int i;

	if (e < -4 || e >= prec) {
		o[n++] = d[0];
		if (nd > 1)
			o[n++] = '.';
		for (i = 1; i < nd; i++)
			o[n++] = d[i];
		return n + put_exp(o + n, e);
	}
	if (e < 0) {
		o[n++] = '0';
		o[n++] = '.';
		for (i = 0; i < -e - 1; i++)
			o[n++] = '0';
		for (i = 0; i < nd; i++)
			o[n++] = d[i];
		return n;
	}
	for (i = 0; i <= e; i++)
		o[n++] = i < nd ? d[i] : '0';
	if (nd > e + 1)
		o[n++] = '.';
	for (i = e + 1; i < nd; i++)
		o[n++] = d[i];
	return n;
}

/* snprintf's %.*g, faster; see base.h. */
size_t fmt_g(char *out, double v, int prec)
{
	char d[20];
	uint64_t q;
	size_t n = 0;
	int e, nd, i;

	if (prec < 1 || prec > 15 || !isfinite(v) || v == 0 || !digits_of(fabs(v), prec, &q, &e))
		return (size_t)snprintf(out, 32, "%.*g", prec, v);
	for (i = prec - 1; i >= 0; i--, q /= 10)
		d[i] = (char)('0' + q % 10);
	for (nd = prec; nd > 1 && d[nd - 1] == '0'; nd--)
		;
	if (v < 0)
		out[n++] = '-';
	n += layout_g(out + n, d, nd, e, prec);
	out[n] = 0;
	return n;
}
