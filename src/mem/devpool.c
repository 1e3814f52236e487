/* SPDX-License-Identifier: MIT */
/*
 * Device pool: chunks reserved with cuMemAlloc, sub-allocated first-fit
 * with coalescing. Allocations happen at model load and when a new input
 * shape gets its program, never per request, so a list walk is cheap enough.
 */
#include "mem/mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "mem/cudrv.h"

/* One range of a chunk, free or in use; the ranges of a chunk tile it in
 * address order. */
struct blk {
	uint64_t addr, size;
	bool used;
	struct blk *prev, *next;
};

struct chunk {
	CUdeviceptr base;
	uint64_t size;
	struct blk *head;
	struct chunk *next;
};

struct devpool {
	uint64_t chunk, limit, reserved, used;
	uint64_t grows; /* chunks reserved with cuMemAlloc so far */
	struct chunk *chunks;
};

static int add_chunk(struct devpool *p, uint64_t size)
{
	struct chunk *c = calloc(1, sizeof(*c));
	struct blk *b = calloc(1, sizeof(*b));
	char b1[32], b2[32];
	int ret = -ENOMEM;

	if (!c || !b)
		goto out_free;
	if (p->limit && p->reserved + size > p->limit) {
		ret = err_set(-ENOMEM, "device pool: growing by %s would pass its limit of %s",
			      fmt_bytes(size, b1, sizeof(b1)), fmt_bytes(p->limit, b2, sizeof(b2)));
		goto out_free;
	}
	ret = CU(cuMemAlloc(&c->base, size));
	if (ret)
		goto out_free;
	c->size = size;
	b->addr = c->base;
	b->size = size;
	c->head = b;
	c->next = p->chunks;
	p->chunks = c;
	p->reserved += size;
	p->grows++;
	return 0;
out_free:
	free(b);
	free(c);
	return ret;
}

int devpool_create(uint64_t chunk, uint64_t limit, uint64_t reserve, struct devpool **out)
{
	struct devpool *p = calloc(1, sizeof(*p));
	int ret;

	if (!p)
		return -ENOMEM;
	p->chunk = ALIGN_UP(chunk ? chunk : (256ull << 20), 2ull << 20);
	p->limit = limit;
	if (reserve) {
		ret = add_chunk(p, ALIGN_UP(reserve, 2ull << 20));
		if (ret) {
			free(p);
			return ret;
		}
	}
	*out = p;
	return 0;
}

void devpool_destroy(struct devpool *p)
{
	struct chunk *c, *cn;
	struct blk *b, *bn;

	if (!p)
		return;
	for (c = p->chunks; c; c = cn) {
		cn = c->next;
		for (b = c->head; b; b = bn) {
			bn = b->next;
			free(b);
		}
		CU(cuMemFree(c->base));
		free(c);
	}
	free(p);
}

/* Carve size bytes from the front of free block b. */
static int take(struct devpool *p, struct blk *b, uint64_t size, uint64_t *addr)
{
	struct blk *rest;

	if (b->size > size) {
		rest = calloc(1, sizeof(*rest));
		if (!rest)
			return -ENOMEM;
		rest->addr = b->addr + size;
		rest->size = b->size - size;
		rest->prev = b;
		rest->next = b->next;
		if (b->next)
			b->next->prev = rest;
		b->next = rest;
		b->size = size;
	}
	b->used = true;
	p->used += size;
	*addr = b->addr;
	return 0;
}

static struct blk *find_free(struct devpool *p, uint64_t size)
{
	struct chunk *c;
	struct blk *b;

	for (c = p->chunks; c; c = c->next)
		for (b = c->head; b; b = b->next)
			if (!b->used && b->size >= size)
				return b;
	return NULL;
}

int devpool_alloc(struct devpool *p, uint64_t size, const char *what, uint64_t *addr)
{
	char b1[32], b2[32], why[256];
	struct blk *b;
	int ret;

	size = ALIGN_UP(size ? size : 1, DEVPOOL_ALIGN);
	b = find_free(p, size);
	if (!b) {
		ret = add_chunk(p, size > p->chunk ? ALIGN_UP(size, 2ull << 20) : p->chunk);
		if (ret) {
			snprintf(why, sizeof(why), "%s", err_msg(ret));
			return err_set(ret, "%s: cannot get %s of GPU memory (%s in use): %s", what,
				       fmt_bytes(size, b1, sizeof(b1)),
				       fmt_bytes(p->used, b2, sizeof(b2)), why);
		}
		b = p->chunks->head; /* the new chunk is one free block */
	}
	return take(p, b, size, addr);
}

/* The block of a chunk of p that holds addr, or NULL. */
static struct blk *find_at(struct devpool *p, uint64_t addr)
{
	struct chunk *c;
	struct blk *b;

	for (c = p->chunks; c; c = c->next) {
		if (addr < c->base || addr >= c->base + c->size)
			continue;
		for (b = c->head; b; b = b->next)
			if (addr >= b->addr && addr < b->addr + b->size)
				return b;
	}
	return NULL;
}

int devpool_alloc_at(struct devpool *p, uint64_t addr, uint64_t size)
{
	struct blk *b, *mid;

	size = ALIGN_UP(size ? size : 1, DEVPOOL_ALIGN);
	if (!addr || addr % DEVPOOL_ALIGN)
		return -EINVAL;
	b = find_at(p, addr);
	if (!b || b->used || addr + size > b->addr + b->size)
		return -EBUSY;
	if (addr > b->addr) { /* split off the free front [b->addr, addr) */
		mid = calloc(1, sizeof(*mid));
		if (!mid)
			return -ENOMEM;
		mid->addr = addr;
		mid->size = b->addr + b->size - addr;
		mid->prev = b;
		mid->next = b->next;
		if (b->next)
			b->next->prev = mid;
		b->next = mid;
		b->size = addr - b->addr;
		b = mid;
	}
	return take(p, b, size, &addr);
}

static void merge_next(struct blk *b)
{
	struct blk *n = b->next;

	if (!n || n->used)
		return;
	b->size += n->size;
	b->next = n->next;
	if (n->next)
		n->next->prev = b;
	free(n);
}

void devpool_free(struct devpool *p, uint64_t addr)
{
	struct chunk *c;
	struct blk *b;

	if (!addr)
		return;
	for (c = p->chunks; c; c = c->next) {
		if (addr < c->base || addr >= c->base + c->size)
			continue;
		for (b = c->head; b && b->addr != addr; b = b->next)
			;
		if (!b || !b->used)
			break;
		b->used = false;
		p->used -= b->size;
		merge_next(b);
		if (b->prev && !b->prev->used)
			merge_next(b->prev);
		return;
	}
	log_error("device pool: freeing %#llx, which it never handed out",
		  (unsigned long long)addr);
}

int devpool_reserve(struct devpool *p, uint64_t bytes)
{
	char b[32], why[256];
	int ret;

	if (bytes <= p->reserved)
		return 0;
	ret = add_chunk(p, ALIGN_UP(bytes - p->reserved, 2ull << 20));
	if (!ret)
		return 0;
	snprintf(why, sizeof(why), "%s", err_msg(ret));
	return err_set(ret, "device pool: cannot reserve %s: %s", fmt_bytes(bytes, b, sizeof(b)),
		       why);
}

uint64_t devpool_reserved(const struct devpool *p)
{
	return p->reserved;
}

uint64_t devpool_used(const struct devpool *p)
{
	return p->used;
}

uint64_t devpool_grows(const struct devpool *p)
{
	return p->grows;
}
