/* SPDX-License-Identifier: MIT */
/*
 * link: claims of the devices' transfer links (see link.h).
 *
 * holder is the claim: a CAS from 0 with acquire ordering takes it, a
 * store of 0 with release ordering gives it back, so whatever a holder did
 * with the link (its staging area, its stream's position) happens before
 * the next holder's use. want is a hint read before the CAS: a borrower
 * that read it clear just before the owner set it may still take one
 * transfer, which the owner then waits out (link_busy_until says how
 * long). The counters are relaxed: /metrics reads snapshots.
 */
#include "mem/link.h"

#include <string.h>
#include <time.h>

#include "base/base.h"

void link_pause(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};

	nanosleep(&ts, NULL);
}

void link_table_init(struct link_table *t, uint32_t n)
{
	memset(t, 0, sizeof(*t));
	t->n = n < LINK_MAX ? n : LINK_MAX;
}

void link_up(struct link_table *t, uint32_t i)
{
	if (i >= t->n)
		return;
	/* release: pairs with the acquire in link_lend; the backend's object
	 * (be) is set before */
	atomic_store_explicit(&t->link[i].up, 1, memory_order_release);
}

void link_down(struct link_table *t, uint32_t i)
{
	struct link *l = &t->link[i];
	uint32_t zero = 0;

	if (i >= t->n)
		return;
	atomic_store_explicit(&l->up, 0, memory_order_relaxed);
	atomic_store_explicit(&l->want, 1, memory_order_relaxed);
	/* a borrower's hold is one transfer: wait it out, then keep the link
	 * held by its owner for good (acquire: pairs with link_release) */
	while (!atomic_compare_exchange_weak_explicit(&l->holder, &zero, i + 1,
						      memory_order_acquire, memory_order_relaxed)) {
		zero = 0;
		link_pause(10000);
	}
}

static bool claim(struct link *l, uint32_t who, uint64_t until)
{
	uint32_t zero = 0;

	/* acquire: pairs with the release in link_release */
	if (!atomic_compare_exchange_strong_explicit(&l->holder, &zero, who + 1,
						     memory_order_acquire, memory_order_relaxed))
		return false;
	atomic_store_explicit(&l->since, clock_ns(), memory_order_relaxed);
	atomic_store_explicit(&l->until, until, memory_order_relaxed);
	return true;
}

bool link_lend(struct link_table *t, uint32_t i, uint32_t who, uint64_t until)
{
	struct link *l = &t->link[i];

	if (i >= t->n || i == who)
		return false;
	/* acquire: pairs with link_up's release (the backend's object) */
	if (!atomic_load_explicit(&l->up, memory_order_acquire) ||
	    atomic_load_explicit(&l->want, memory_order_relaxed) ||
	    atomic_load_explicit(&l->holder, memory_order_relaxed))
		return false;
	if (!claim(l, who, until))
		return false;
	/* the owner may have wanted it or gone down meanwhile: give it back
	 * rather than delay it (seq_cst on neither side: a late look only
	 * costs the owner one transfer) */
	if (atomic_load_explicit(&l->want, memory_order_relaxed) ||
	    !atomic_load_explicit(&l->up, memory_order_relaxed)) {
		atomic_store_explicit(&l->holder, 0, memory_order_release);
		return false;
	}
	return true;
}

uint32_t link_lend_any(struct link_table *t, uint32_t who, uint32_t first, uint32_t *used,
		       uint64_t until)
{
	uint32_t j, i;

	for (j = 0; j < t->n; j++) {
		i = (who + first + j) % t->n;
		if (i == who || (*used >> i) & 1)
			continue;
		if (link_lend(t, i, who, until)) {
			*used |= 1u << i;
			return i;
		}
	}
	return LINK_NONE;
}

void link_want(struct link_table *t, uint32_t i, bool want)
{
	if (i < t->n)
		atomic_store_explicit(&t->link[i].want, want, memory_order_relaxed);
}

bool link_take_own(struct link_table *t, uint32_t i, uint64_t until)
{
	if (i >= t->n)
		return true; /* a device outside the table lends nothing */
	if (atomic_load_explicit(&t->link[i].holder, memory_order_relaxed))
		return false;
	return claim(&t->link[i], i, until);
}

uint64_t link_busy_until(const struct link_table *t, uint32_t i)
{
	const struct link *l = &t->link[i];

	if (i >= t->n || !atomic_load_explicit(&l->holder, memory_order_relaxed))
		return 0;
	return atomic_load_explicit(&l->until, memory_order_relaxed);
}

void link_release(struct link_table *t, uint32_t i, uint32_t who, uint64_t bytes)
{
	struct link *l = &t->link[i];
	uint64_t held;

	if (i >= t->n)
		return;
	if (who == i) {
		atomic_fetch_add_explicit(&l->own_xfers, 1, memory_order_relaxed);
	} else {
		held = clock_ns() - atomic_load_explicit(&l->since, memory_order_relaxed);
		atomic_fetch_add_explicit(&l->lent_ns, held, memory_order_relaxed);
		atomic_fetch_add_explicit(&l->lent_bytes, bytes, memory_order_relaxed);
		atomic_fetch_add_explicit(&l->lent_xfers, 1, memory_order_relaxed);
	}
	/* release: pairs with the acquire in claim */
	atomic_store_explicit(&l->holder, 0, memory_order_release);
}

void link_count_pt(struct link_table *t, bool used_helpers, bool fell_back)
{
	if (used_helpers)
		atomic_fetch_add_explicit(&t->pt_cold, 1, memory_order_relaxed);
	if (fell_back)
		atomic_fetch_add_explicit(&t->pt_fallbacks, 1, memory_order_relaxed);
}
