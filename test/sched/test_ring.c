/* SPDX-License-Identifier: MIT */
/*
 * The ring contract the scheduler relies on (concurrencykit ck_ring): a
 * ring of size N holds N-1 items; MPSC with several producer threads
 * delivers every item exactly once and each producer's items in order.
 */
#include <ck_ring.h>
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "helpers.h"

#define N_PROD 3
#define PER_PROD 5000
#define RING 64

static struct ck_ring ring;
static struct ck_ring_buffer rbuf[RING];

Test(ring, size_n_holds_n_minus_1)
{
	uintptr_t i;
	void *p = NULL;

	ck_ring_init(&ring, 8);
	for (i = 1; i <= 7; i++)
		cr_assert(ck_ring_enqueue_mpsc(&ring, rbuf, (void *)i), "item %zu refused", i);
	cr_assert_not(ck_ring_enqueue_mpsc(&ring, rbuf, (void *)8), "8th item accepted");
	cr_assert_eq(ck_ring_size(&ring), 7);
	for (i = 1; i <= 7; i++) {
		cr_assert(ck_ring_dequeue_mpsc(&ring, rbuf, &p));
		cr_assert_eq((uintptr_t)p, i, "FIFO order broken");
	}
	cr_assert_not(ck_ring_dequeue_mpsc(&ring, rbuf, &p));
}

static void *producer(void *arg)
{
	uintptr_t id = (uintptr_t)arg, k;

	for (k = 0; k < PER_PROD; k++) {
		/* item = producer in the high bits, sequence below; never 0 */
		uintptr_t item = (id << 32) | (k + 1);

		/* Yield rather than spin: on a loaded machine with few cores
		 * a spinning thread only delays the one it waits for. */
		while (!ck_ring_enqueue_mpsc(&ring, rbuf, (void *)item))
			sched_yield();
	}
	return NULL;
}

Test(ring, mpsc_every_item_once)
{
	pthread_t t[N_PROD];
	uint32_t last[N_PROD] = {0};
	uint8_t *seen = calloc(N_PROD * (size_t)PER_PROD, 1);
	unsigned got = 0;
	uintptr_t i;
	void *p = NULL;

	cr_assert(seen);
	ck_ring_init(&ring, RING);
	for (i = 0; i < N_PROD; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, producer, (void *)i), 0);
	while (got < N_PROD * PER_PROD) {
		uintptr_t item, id, k;

		if (!ck_ring_dequeue_mpsc(&ring, rbuf, &p)) {
			sched_yield();
			continue;
		}
		item = (uintptr_t)p;
		id = item >> 32;
		k = item & 0xffffffffu;
		cr_assert(id < N_PROD && k >= 1 && k <= PER_PROD, "bad item %zx", item);
		cr_assert_eq(seen[id * PER_PROD + k - 1], 0, "item %zx twice", item);
		seen[id * PER_PROD + k - 1] = 1;
		cr_assert_gt(k, last[id], "producer %zu out of order", id);
		last[id] = (uint32_t)k;
		got++;
	}
	for (i = 0; i < N_PROD; i++)
		pthread_join(t[i], NULL);
	cr_assert_not(ck_ring_dequeue_mpsc(&ring, rbuf, &p), "extra item");
	free(seen);
}
