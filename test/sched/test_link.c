/* SPDX-License-Identifier: MIT */
/*
 * The transfer-link claim (mem/link.h): a borrower takes only an idle,
 * unwanted link and never waits; the owner takes it back between
 * transfers; under contention from threads that each own one link and
 * borrow the others', no link ever has two holders, every owner gets its
 * link within a bound, and what was lent is counted.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "base/base.h"
#include "mem/link.h"

Test(link, lend_only_idle_unwanted_links_of_others)
{
	struct link_table t;
	uint32_t used = 0;

	link_table_init(&t, 3);
	cr_assert_not(link_lend(&t, 1, 0, 0), "a link that is not up was lent");
	link_up(&t, 0);
	link_up(&t, 1);
	link_up(&t, 2);
	cr_assert_not(link_lend(&t, 0, 0, 0), "a device borrowed its own link");
	cr_assert(link_lend(&t, 1, 0, 0));
	cr_assert_not(link_lend(&t, 1, 2, 0), "a held link was lent twice");
	cr_assert_not(link_take_own(&t, 1, 0), "the owner took a lent link");
	link_release(&t, 1, 0, 4096);
	cr_assert_eq(atomic_load(&t.link[1].lent_bytes), 4096);
	cr_assert_eq(atomic_load(&t.link[1].lent_xfers), 1);
	link_want(&t, 2, true);
	cr_assert_not(link_lend(&t, 2, 0, 0), "a wanted link was lent");
	cr_assert(link_take_own(&t, 2, 0), "the owner could not take its wanted link");
	link_release(&t, 2, 2, 1);
	cr_assert_eq(atomic_load(&t.link[2].lent_xfers), 0, "an own transfer counted as lent");
	cr_assert_eq(atomic_load(&t.link[2].own_xfers), 1);
	/* lend_any skips self, wanted and used links */
	cr_assert_eq(link_lend_any(&t, 0, 1, &used, 0), 1);
	cr_assert_eq(used, 2u);
	cr_assert_eq(link_lend_any(&t, 0, 1, &used, 0), LINK_NONE, "wanted link 2 was lent");
	link_release(&t, 1, 0, 1);
	link_want(&t, 2, false);
	used = 0;
	cr_assert_eq(link_lend_any(&t, 0, 2, &used, 0), 2, "the search starts at who + first");
	link_release(&t, 2, 0, 1);
	link_down(&t, 1);
	cr_assert_not(link_lend(&t, 1, 0, 0), "a link that went down was lent");
}

#define THREADS 4
#define ROUNDS 3000

struct dev_thread {
	struct link_table *t;
	_Atomic uint32_t *inside; /* [THREADS]: holders of each link now */
	uint32_t id;
	uint64_t borrowed, fallbacks, own, max_own_wait_ns;
	bool overlap;
};

/* Hold link i for a moment, checking that nobody else does. */
static void hold(struct dev_thread *d, uint32_t i)
{
	uint32_t k;

	if (atomic_fetch_add(&d->inside[i], 1) != 0)
		d->overlap = true;
	for (k = 0; k < 50; k++)
		__asm__ volatile("" ::: "memory");
	atomic_fetch_sub(&d->inside[i], 1);
}

/* A device: every round, an own transfer (wanting its link, taking it
 * back from borrowers) or a borrowed one (falling back to its own). */
static void *dev_main(void *arg)
{
	struct dev_thread *d = arg;
	uint64_t t0, w;
	uint32_t r, i, used;

	for (r = 0; r < ROUNDS; r++) {
		if (r % 3 == 0) {
			link_want(d->t, d->id, true);
			t0 = clock_ns();
			while (!link_take_own(d->t, d->id, 0))
				;
			w = clock_ns() - t0;
			d->max_own_wait_ns = MAX(d->max_own_wait_ns, w);
			hold(d, d->id);
			link_release(d->t, d->id, d->id, 1);
			link_want(d->t, d->id, false);
			d->own++;
			continue;
		}
		used = 0;
		i = link_lend_any(d->t, d->id, 1 + r % (THREADS - 1), &used, 0);
		if (i == LINK_NONE) {
			d->fallbacks++;
			continue;
		}
		hold(d, i);
		link_release(d->t, i, d->id, 1);
		d->borrowed++;
	}
	return NULL;
}

Test(link, contention_exclusive_bounded_and_counted)
{
	static struct link_table t;
	_Atomic uint32_t inside[THREADS] = {0};
	struct dev_thread d[THREADS];
	pthread_t th[THREADS];
	uint64_t borrowed = 0, lent = 0, own = 0, own_counted = 0;
	uint32_t i;

	link_table_init(&t, THREADS);
	for (i = 0; i < THREADS; i++)
		link_up(&t, i);
	for (i = 0; i < THREADS; i++) {
		d[i] = (struct dev_thread){.t = &t, .inside = inside, .id = i};
		cr_assert_eq(pthread_create(&th[i], NULL, dev_main, &d[i]), 0);
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < THREADS; i++) {
		cr_assert_not(d[i].overlap, "link %u had two holders at once", i);
		cr_assert_eq(d[i].own, (ROUNDS + 2) / 3);
		/* an owner waits out at most one borrowed transfer at a time */
		cr_assert_lt(d[i].max_own_wait_ns, 500000000ull, "device %u waited %llu ns", i,
			     (unsigned long long)d[i].max_own_wait_ns);
		borrowed += d[i].borrowed;
		own += d[i].own;
		lent += atomic_load(&t.link[i].lent_xfers);
		own_counted += atomic_load(&t.link[i].own_xfers);
		cr_assert_eq(atomic_load(&t.link[i].holder), 0, "link %u left held", i);
	}
	cr_assert_eq(lent, borrowed, "lent %llu, borrowed %llu", (unsigned long long)lent,
		     (unsigned long long)borrowed);
	cr_assert_eq(own_counted, own);
	cr_assert_gt(borrowed, 0, "nothing was ever lent");
}

/* A borrower that holds a link while its owner goes down: down waits for
 * the release, and the link is never lent afterwards. */
struct downer {
	struct link_table *t;
	_Atomic int done;
};

static void *down_main(void *arg)
{
	struct downer *x = arg;

	link_down(x->t, 1);
	atomic_store(&x->done, 1);
	return NULL;
}

Test(link, down_waits_for_the_borrower)
{
	static struct link_table t;
	struct downer x = {&t, 0};
	pthread_t th;

	link_table_init(&t, 2);
	link_up(&t, 0);
	link_up(&t, 1);
	cr_assert(link_lend(&t, 1, 0, 0));
	cr_assert_eq(pthread_create(&th, NULL, down_main, &x), 0);
	link_pause(20000000);
	cr_assert_eq(atomic_load(&x.done), 0, "link_down did not wait for the borrower");
	link_release(&t, 1, 0, 1);
	pthread_join(th, NULL);
	cr_assert_eq(atomic_load(&x.done), 1);
	cr_assert_not(link_lend(&t, 1, 0, 0));
	cr_assert_not(link_take_own(&t, 1, 0));
}
