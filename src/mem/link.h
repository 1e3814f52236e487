/* SPDX-License-Identifier: MIT */
/*
 * link: the transfer links of a server's devices, lent for parallel
 * transmission (PT).
 *
 * A device's link is its host-to-device copy path (on a GPU: its H2D copy
 * stream and staging area). A cold start by a plan with helpers moves some
 * layers over other devices' links. A link is claimed for the duration of
 * one transfer (one layer, or one group of adjacent layers) through an
 * atomic: a borrower takes only an idle link (not held, its owner not
 * wanting it) and never waits for one; when it finds none, that transfer
 * goes over the borrower's own link instead (a fallback). The owner marks
 * its link wanted while its own cold start has transfers to make, so no
 * borrower takes it then, and takes it back between a borrower's transfers:
 * its wait is bounded by one transfer, never by another device's worker.
 *
 * The table is shared by every worker (any thread). Counters are atomics.
 * Backends keep their own per-link objects (CUDA streams, staging) in the
 * table's `be` slots.
 */
#ifndef DPRT_MEM_LINK_H
#define DPRT_MEM_LINK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define LINK_MAX 16 /* devices of one table (plan.h: PLAN_MAX_GPUS) */
#define LINK_NONE UINT32_MAX

struct link {
	/* 0: free; else the holder's device index + 1 */
	_Atomic uint32_t holder __attribute__((aligned(64)));
	_Atomic uint32_t want;	     /* its owner has transfers to make */
	_Atomic uint32_t up;	     /* its device joined the table */
	_Atomic uint64_t until;	     /* clock_ns the holder's transfer ends */
	_Atomic uint64_t since;	     /* clock_ns the holder took it */
	_Atomic uint64_t lent_ns;    /* held by other devices, in all */
	_Atomic uint64_t lent_bytes; /* moved for other devices */
	_Atomic uint64_t lent_xfers; /* transfers for other devices */
	_Atomic uint64_t own_xfers;  /* transfers for its owner */
	void *_Atomic be;	     /* the backend's object for the link */
};

struct link_table {
	uint32_t n; /* devices: indexes 0..n-1 */
	struct link link[LINK_MAX];
	_Atomic uint64_t pt_cold;      /* cold starts that used helpers */
	_Atomic uint64_t pt_fallbacks; /* PT cold starts that fell back */
};

/* Make t a table of n devices (1..LINK_MAX), none up. One thread, before
 * any other use. */
void link_table_init(struct link_table *t, uint32_t n);
/* Device i joins / leaves (its owner thread). Leaving waits for the
 * transfer of a borrower that holds the link to end (bounded) and leaves
 * the link held by nobody, so it is never lent again. */
void link_up(struct link_table *t, uint32_t i);
void link_down(struct link_table *t, uint32_t i);

/* Borrower `who` takes device i's link for one transfer ending by about
 * until (clock_ns): only if i != who is up, idle and not wanted by its
 * owner. Never waits. true: taken (release it with link_release). */
bool link_lend(struct link_table *t, uint32_t i, uint32_t who, uint64_t until);
/* Borrower `who` takes the first idle link of the other devices, starting
 * at device (who + first) % n and skipping the devices set in *used
 * (bit i: device i; the device taken is set in it). LINK_NONE if none. */
uint32_t link_lend_any(struct link_table *t, uint32_t who, uint32_t first, uint32_t *used,
		       uint64_t until);
/* The owner i marks its link wanted (want) or not: while wanted no
 * borrower takes it. */
void link_want(struct link_table *t, uint32_t i, bool want);
/* Owner i takes its own link for one transfer if no borrower holds it;
 * never waits. true: taken. */
bool link_take_own(struct link_table *t, uint32_t i, uint64_t until);
/* When the borrower's transfer on link i should end (clock_ns; 0 if free). */
uint64_t link_busy_until(const struct link_table *t, uint32_t i);
/* Give link i back after a transfer of bytes taken by who (the owner or a
 * borrower); a borrower's hold counts as lent time. */
void link_release(struct link_table *t, uint32_t i, uint32_t who, uint64_t bytes);

/* Sleep about ns (a claimer waiting out a transfer). */
void link_pause(uint64_t ns);

/* Count one cold start by a plan with helpers: whether it used one, and
 * whether some transfer of it fell back to fewer links. */
void link_count_pt(struct link_table *t, bool used_helpers, bool fell_back);

#endif
