/* SPDX-License-Identifier: MIT */
/*
 * net/kserve's internal header: what its files (kserve.c, kserve_json.c,
 * kserve_decode.c, kserve_encode.c) share. Not for other modules: they
 * include net/kserve.h.
 */
#ifndef DPRT_NET_KSERVE_INT_H
#define DPRT_NET_KSERVE_INT_H

#include "net/kserve.h"

/* ---- JSON writer (kserve_json.c) ---- */

/* Appends to p[0, cap); once a write does not fit, full is set and every
 * later write is dropped: check it (or jw_end) once at the end. */
struct jw {
	char *p;
	size_t len, cap;
	bool full;
};

/* n bytes as they are. */
void jw_raw(struct jw *w, const char *s, size_t n);
/* A C string as it is (our literals: no escaping). */
void jw_lit(struct jw *w, const char *s);
/* A JSON string; bytes that are not UTF-8 become U+FFFD. */
void jw_str(struct jw *w, const char *s);
/* "key": (keys are our literals: no escaping) */
void jw_key(struct jw *w, const char *k);
void jw_u64(struct jw *w, uint64_t v);
void jw_i64(struct jw *w, int64_t v);
/* digits significant digits; NaN and infinities as strings (kserve.h). */
void jw_float(struct jw *w, double f, int digits);
void jw_bool(struct jw *w, bool b);
/* [d0,d1,...]; negative (symbolic) dims as -1 */
void jw_dims(struct jw *w, int ndim, const int64_t *dims);
/* Bytes written, or -ENOSPC if the buffer ran out. */
int jw_end(const struct jw *w);

/* Length of the valid UTF-8 sequence at s[0, n), or 0. */
size_t kserve_utf8_len(const unsigned char *s, size_t n);

/* ---- shared helpers (kserve.c) ---- */

/* "[d0,d1,...]" into buf (truncated to n bytes), for messages. */
void kserve_fmt_shape(char *buf, size_t n, const struct shape *s);

#endif
