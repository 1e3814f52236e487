/* SPDX-License-Identifier: MIT */
/*
 * Little-endian fixed-width fields of dprt's binary files (packages,
 * profiles, plans): cursors over buffers whose size the caller checked
 * beforehand, so no call here fails. Any thread.
 */
#ifndef DPRT_BASE_LEBUF_H
#define DPRT_BASE_LEBUF_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Writing cursor. */
struct cur {
	uint8_t *p;
};

/* Reading cursor; nonzero is for readers that check reserved fields. */
struct rcur {
	const uint8_t *p;
	bool nonzero; /* a field that must be zero was not */
};

static inline void put8(struct cur *c, uint8_t v)
{
	*c->p++ = v;
}

static inline void put16(struct cur *c, uint16_t v)
{
	put8(c, (uint8_t)v);
	put8(c, (uint8_t)(v >> 8));
}

static inline void put32(struct cur *c, uint32_t v)
{
	put16(c, (uint16_t)v);
	put16(c, (uint16_t)(v >> 16));
}

static inline void put64(struct cur *c, uint64_t v)
{
	put32(c, (uint32_t)v);
	put32(c, (uint32_t)(v >> 32));
}

static inline void put_f32(struct cur *c, float f)
{
	uint32_t v;

	memcpy(&v, &f, sizeof(v));
	put32(c, v);
}

static inline void put_f64(struct cur *c, double f)
{
	uint64_t v;

	memcpy(&v, &f, sizeof(v));
	put64(c, v);
}

/* A fixed len-byte string field: s must hold a NUL within len (the
 * writers validate that first); the rest of the field is zero. */
static inline void put_str(struct cur *c, const char *s, size_t len)
{
	size_t n = strnlen(s, len);

	memcpy(c->p, s, n);
	memset(c->p + n, 0, len - n);
	c->p += len;
}

static inline uint8_t get8(struct rcur *c)
{
	return *c->p++;
}

static inline uint16_t get16(struct rcur *c)
{
	uint16_t v = get8(c);

	return (uint16_t)(v | (uint16_t)get8(c) << 8);
}

static inline uint32_t get32(struct rcur *c)
{
	uint32_t v = get16(c);

	return v | (uint32_t)get16(c) << 16;
}

static inline uint64_t get64(struct rcur *c)
{
	uint64_t v = get32(c);

	return v | (uint64_t)get32(c) << 32;
}

static inline float get_f32(struct rcur *c)
{
	uint32_t v = get32(c);
	float f;

	memcpy(&f, &v, sizeof(f));
	return f;
}

static inline double get_f64(struct rcur *c)
{
	uint64_t v = get64(c);
	double f;

	memcpy(&f, &v, sizeof(f));
	return f;
}

#endif
