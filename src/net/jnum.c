/* SPDX-License-Identifier: MIT */
/*
 * Numeric "data" arrays of KServe JSON bodies, without a JSON tree; see
 * jnum.h. The scan is permissive about the rest of the document: jansson
 * still parses it (with the data arrays emptied; where that fails, the
 * whole body again, for the error's position) and reports whatever is
 * wrong there. It empties only arrays of number characters, and reads
 * their numbers once, in jnum_decode: a token jansson would refuse there
 * sends the body down the tree path, which reports it.
 */
#include "net/jnum.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"

#define FLT_ROUND_MAX 0x1.ffffffp127 /* the smallest double that rounds to inf */

struct scan {
	const char *p, *end;
};

static void ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool eat(struct scan *s, char c)
{
	ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

/* A string at s->p ('"'); *esc: it holds a backslash. */
static bool string(struct scan *s, bool *esc)
{
	*esc = false;
	for (s->p++; s->p < s->end; s->p++) {
		if (*s->p == '"') {
			s->p++;
			return true;
		}
		if (*s->p == '\\') {
			*esc = true;
			s->p++;
		}
	}
	return false;
}

/* ---- numbers ---- */

struct num {
	bool integer; /* no fraction, no exponent */
	bool neg;
	uint64_t mant; /* first 19 significant digits */
	int digits;    /* significant digits in all */
	int exp10;     /* value = mant * 10^exp10 (with digits <= 19) */
	const char *start, *end;
};

/* A JSON number (RFC 8259 grammar) at s->p. */
static bool number(struct scan *s, struct num *n)
{
	const char *p = s->p, *e = s->end;
	int frac = 0, ex = 0, exs = 1, int_digits = 0;

	memset(n, 0, sizeof(*n));
	n->start = p;
	n->integer = true;
	if (p < e && *p == '-') {
		n->neg = true;
		p++;
	}
	if (p >= e || *p < '0' || *p > '9')
		return false;
	if (*p == '0') {
		p++;
	} else {
		for (; p < e && *p >= '0' && *p <= '9'; p++, int_digits++) {
			if (n->digits < 19)
				n->mant = n->mant * 10 + (uint64_t)(*p - '0');
			else
				frac--; /* a digit not kept: one more power of ten */
			n->digits++;
		}
	}
	if (p < e && *p == '.') {
		n->integer = false;
		if (++p >= e || *p < '0' || *p > '9')
			return false;
		for (; p < e && *p >= '0' && *p <= '9'; p++) {
			if (!n->digits && *p == '0') { /* leading zeros of 0.000x */
				frac++;
				continue;
			}
			if (n->digits < 19) {
				n->mant = n->mant * 10 + (uint64_t)(*p - '0');
				frac++;
			}
			n->digits++;
		}
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		n->integer = false;
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			exs = *p++ == '-' ? -1 : 1;
		if (p >= e || *p < '0' || *p > '9')
			return false;
		for (; p < e && *p >= '0' && *p <= '9'; p++)
			ex = ex < 100000 ? ex * 10 + (*p - '0') : ex;
	}
	n->exp10 = exs * ex - frac;
	n->end = p;
	s->p = p;
	/* beyond int64 (jansson: "too big integer"), or a real that may
	 * overflow a double ("real number overflow"): not ours */
	if (n->integer)
		return int_digits < 19 ||
		       (int_digits == 19 && n->mant <= 9223372036854775807ull + n->neg);
	return MIN(n->digits, 19) + n->exp10 < 300;
}

/* The double strtod gives for n. */
static double real_of(const struct num *n)
{
	char buf[400];
	size_t len = (size_t)(n->end - n->start);
	double v;

	/* Clinger: an exact mantissa and an exact power of ten, one rounding */
	if (n->digits <= 19 && n->mant <= (1ull << 53) && n->exp10 >= -22 && n->exp10 <= 22) {
		v = (double)n->mant;
		v = n->exp10 >= 0 ? v * pow10_exact(n->exp10) : v / pow10_exact(-n->exp10);
		return n->neg ? -v : v;
	}
	if (len >= sizeof(buf))
		return NAN; /* the caller leaves it to the tree path */
	memcpy(buf, n->start, len);
	buf[len] = 0;
	return strtod(buf, NULL);
}

/* ---- the scan ---- */

/* What an array of numbers (nested up to depth levels) at s->p ('[') may
 * hold: brackets, commas, spaces and number characters. Only its extent is
 * found here; jnum_decode reads the numbers (and leaves anything wrong in
 * them to the tree path). */
static bool num_array(struct scan *s, uint32_t depth)
{
	/* 1: a character numbers and their separators may use; 2: a digit */
	static const uint8_t kind[256] = {
		[','] = 1, ['.'] = 1,  ['-'] = 1,  ['+'] = 1,  ['e'] = 1, ['E'] = 1,
		[' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1, ['['] = 1, [']'] = 1,
		['0'] = 2, ['1'] = 2,  ['2'] = 2,  ['3'] = 2,  ['4'] = 2, ['5'] = 2,
		['6'] = 2, ['7'] = 2,  ['8'] = 2,  ['9'] = 2,
	};
	uint32_t level = 0;
	uint8_t seen = 0;

	for (; s->p < s->end; s->p++) {
		uint8_t c = (uint8_t)*s->p, k = kind[c];

		seen |= k;
		if (!k)
			return false;
		if (c == '[' && ++level > depth)
			return false;
		if (c == ']' && !--level) {
			s->p++;
			return seen & 2; /* [] and [[]]: the tree path's */
		}
	}
	return false;
}

static bool value(struct scan *s, uint32_t depth);

static bool members(struct scan *s, uint32_t depth)
{
	bool esc;

	s->p++;
	if (eat(s, '}'))
		return true;
	do {
		ws(s);
		if (s->p >= s->end || *s->p != '"' || !string(s, &esc) || !eat(s, ':') ||
		    !value(s, depth))
			return false;
	} while (eat(s, ','));
	return eat(s, '}');
}

static bool elements(struct scan *s, uint32_t depth)
{
	s->p++;
	if (eat(s, ']'))
		return true;
	do {
		if (!value(s, depth))
			return false;
	} while (eat(s, ','));
	return eat(s, ']');
}

/* Any value, loosely (jansson judges it): just its extent. */
static bool value(struct scan *s, uint32_t depth)
{
	bool esc;

	ws(s);
	if (s->p >= s->end || !depth)
		return false;
	switch (*s->p) {
	case '{':
		return members(s, depth - 1);
	case '[':
		return elements(s, depth - 1);
	case '"':
		return string(s, &esc);
	default:
		while (s->p < s->end && !strchr(" \t\r\n,]}", *s->p))
			s->p++;
		return true;
	}
}

/* A member key at s->p: is it `want` (no escapes allowed on the path)? */
static bool key_is(struct scan *s, const char *want, bool *is)
{
	const char *k = s->p + 1;
	bool esc;

	if (s->p >= s->end || *s->p != '"' || !string(s, &esc) || esc)
		return false;
	*is = (size_t)(s->p - 1 - k) == strlen(want) && !memcmp(k, want, strlen(want));
	return eat(s, ':');
}

/* One tensor object: the span of its "data" if that is a numeric array. */
static bool tensor(struct scan *s, const char *js, struct jnum_span *sp, uint32_t max_depth)
{
	bool is, seen = false;
	const char *v;

	if (!eat(s, '{'))
		return value(s, 64);
	if (eat(s, '}'))
		return true;
	do {
		ws(s);
		if (!key_is(s, "data", &is))
			return false;
		ws(s);
		v = s->p;
		if (is && seen)
			return false; /* a duplicate: jansson refuses the body */
		seen |= is;
		if (is && sp && s->p < s->end && *s->p == '[' && num_array(s, max_depth)) {
			sp->off = (size_t)(v - js);
			sp->len = (size_t)(s->p - v);
			continue;
		}
		s->p = v;
		if (!value(s, 64))
			return false;
	} while (eat(s, ','));
	return eat(s, '}');
}

bool jnum_scan(const char *js, size_t len, const char *key, struct jnum_span *spans, uint32_t max,
	       uint32_t max_depth)
{
	struct scan s = {js, js + len};
	bool is, seen = false;
	const char *v;
	uint32_t i;

	memset(spans, 0, sizeof(*spans) * max);
	if (!eat(&s, '{') || eat(&s, '}'))
		return false;
	do {
		ws(&s);
		if (!key_is(&s, key, &is) || (is && seen))
			return false;
		seen |= is;
		ws(&s);
		v = s.p;
		if (!is || !eat(&s, '[')) {
			s.p = v;
			if (!value(&s, 64))
				return false;
			continue;
		}
		if (eat(&s, ']'))
			continue;
		i = 0;
		do {
			if (!tensor(&s, js, i < max ? &spans[i] : NULL, max_depth))
				return false;
			i++;
		} while (eat(&s, ','));
		if (!eat(&s, ']'))
			return false;
	} while (eat(&s, ','));
	return eat(&s, '}') && (ws(&s), s.p == s.end);
}

/* ---- decoding ---- */

static int put(int dt, const struct num *n, char *dst)
{
	double d;
	uint16_t h;
	float f;

	if (dt == DT_F32 || dt == DT_F16 || dt == DT_BF16) {
		d = n->integer ? (double)(n->neg ? -(int64_t)(n->mant - 1) - 1 : (int64_t)n->mant) :
				 real_of(n);
		if (isnan(d) || fabs(d) >= FLT_ROUND_MAX)
			return -1;
		f = (float)d;
		if (dt == DT_F32) {
			memcpy(dst, &f, 4);
			return 0;
		}
		h = dt == DT_F16 ? f32_to_f16(f) : f32_to_bf16(f);
		if ((h & 0x7fff) == (dt == DT_F16 ? 0x7c00 : 0x7f80))
			return -1;
		memcpy(dst, &h, 2);
		return 0;
	}
	if (!n->integer)
		return -1;
	if (dt == DT_I64) {
		int64_t v = n->neg ? -(int64_t)(n->mant - 1) - 1 : (int64_t)n->mant;

		if (n->neg && !n->mant)
			v = 0;
		memcpy(dst, &v, 8);
		return 0;
	}
	if (dt == DT_I32) {
		int32_t v;

		if (n->mant > (n->neg ? 2147483648ull : 2147483647ull))
			return -1;
		v = n->neg ? (int32_t)(-(int64_t)n->mant) : (int32_t)n->mant;
		memcpy(dst, &v, 4);
		return 0;
	}
	if (dt == DT_U8 && (!n->neg || !n->mant) && n->mant <= 255) {
		*dst = (char)n->mant;
		return 0;
	}
	return -1;
}

int jnum_decode(const char *text, size_t len, int dt, uint64_t numel, void *dst)
{
	struct scan s = {text, text + len};
	uint64_t dims[64] = {0}, count[64] = {0}, n = 0;
	size_t esz = dtype_size((enum dtype)dt);
	int depth = -1, leaf = -1;
	bool comma = false; /* a value must come next */
	struct num x;

	if (dt == DT_BOOL || !esz)
		return -1;
	for (;;) {
		ws(&s);
		if (s.p >= s.end)
			return -1;
		if (*s.p == '[') {
			if (++depth >= 64 || (leaf >= 0 && depth > leaf))
				return -1; /* deeper than the first leaf: ragged */
			count[depth] = 0;
			comma = false;
			s.p++;
			continue;
		}
		if (*s.p == ']') {
			if (comma || depth < 0 || !count[depth])
				return -1; /* empty arrays: the tree path's */
			if (!dims[depth])
				dims[depth] = count[depth];
			else if (dims[depth] != count[depth])
				return -1;
			s.p++;
			if (--depth < 0)
				break;
			count[depth]++;
		} else {
			if (leaf < 0)
				leaf = depth;
			if (depth < 0 || depth != leaf || n >= numel || !number(&s, &x) ||
			    put(dt, &x, (char *)dst + n * esz))
				return -1;
			n++;
			count[depth]++;
		}
		comma = eat(&s, ',');
		ws(&s);
		if (!comma && (s.p >= s.end || *s.p != ']'))
			return -1;
	}
	ws(&s);
	return s.p == s.end && n == numel ? 0 : -1;
}
