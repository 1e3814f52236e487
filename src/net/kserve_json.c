/* SPDX-License-Identifier: MIT */
/*
 * The JSON writer of net/kserve: appends to a caller buffer, never
 * allocates, and remembers when the buffer ran out (jw->full).
 */
#include "net/kserve_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void jw_raw(struct jw *w, const char *s, size_t n)
{
	if (w->full || w->cap - w->len < n) {
		w->full = true;
		return;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

void jw_lit(struct jw *w, const char *s)
{
	jw_raw(w, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s[0, n), or 0. */
size_t kserve_utf8_len(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1fu;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0fu;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07u;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static void jw_esc(struct jw *w, unsigned char c)
{
	char e[8];

	switch (c) {
	case '"':
		jw_lit(w, "\\\"");
		return;
	case '\\':
		jw_lit(w, "\\\\");
		return;
	case '\n':
		jw_lit(w, "\\n");
		return;
	case '\r':
		jw_lit(w, "\\r");
		return;
	case '\t':
		jw_lit(w, "\\t");
		return;
	}
	snprintf(e, sizeof(e), "\\u%04x", c);
	jw_lit(w, e);
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD. */
void jw_str(struct jw *w, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, k;

	jw_raw(w, "\"", 1);
	while (i < n) {
		k = kserve_utf8_len(p + i, n - i);
		if (!k) {
			jw_lit(w, "\\ufffd");
			k = 1;
		} else if (k == 1 && (p[i] < 0x20 || p[i] == '"' || p[i] == '\\' || p[i] == 0x7f)) {
			jw_esc(w, p[i]);
		} else {
			jw_raw(w, s + i, k);
		}
		i += k;
	}
	jw_raw(w, "\"", 1);
}

/* "key": (keys are our literals: no escaping) */
void jw_key(struct jw *w, const char *k)
{
	jw_raw(w, "\"", 1);
	jw_lit(w, k);
	jw_raw(w, "\":", 2);
}

void jw_u64(struct jw *w, uint64_t v)
{
	char tmp[24];
	int i = (int)sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	jw_raw(w, tmp + i, sizeof(tmp) - (size_t)i);
}

void jw_i64(struct jw *w, int64_t v)
{
	if (v < 0) {
		jw_raw(w, "-", 1);
		jw_u64(w, -(uint64_t)v);
	} else {
		jw_u64(w, (uint64_t)v);
	}
}

void jw_float(struct jw *w, double f, int digits)
{
	char tmp[40];

	if (isnan(f))
		jw_lit(w, "\"NaN\"");
	else if (isinf(f))
		jw_lit(w, f > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else if (f == 0 && signbit(f))
		jw_lit(w, "-0.0"); /* "-0" would read back as the integer 0 */
	else
		jw_raw(w, tmp, fmt_g(tmp, f, digits));
}

void jw_bool(struct jw *w, bool b)
{
	jw_lit(w, b ? "true" : "false");
}

/* [d0,d1,...]; negative (symbolic) dims as -1 */
void jw_dims(struct jw *w, int ndim, const int64_t *dims)
{
	int i;

	jw_raw(w, "[", 1);
	for (i = 0; i < ndim; i++) {
		if (i)
			jw_raw(w, ",", 1);
		jw_i64(w, dims[i] < 0 ? -1 : dims[i]);
	}
	jw_raw(w, "]", 1);
}

int jw_end(const struct jw *w)
{
	return w->full || w->len > INT32_MAX ? -ENOSPC : (int)w->len;
}
