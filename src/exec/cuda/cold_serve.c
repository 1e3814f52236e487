/* SPDX-License-Identifier: MIT */
/*
 * Parallel transmission in serving on the CUDA backend: a GPU joins the
 * scheduler's link table (mem/link.h, exec_ops.dev_join_links) when its
 * worker opens it. Joining makes its struct cuda_link (H2D and peer copy
 * streams, two staging slots, events; cold_link.c) on the owner's thread
 * and enables peer access both ways with every GPU that joined before
 * (where the hardware allows; else peer copies go through the driver's
 * staging). A cold start of a model by a plan with helpers claims, for
 * each helper slot, an idle link of another GPU through the table's
 * atomic (never waiting; a slot that finds none falls back to the
 * target's link) and holds it while it queues that link's copies; stream
 * order and the link's events keep the next claimer's copies behind them,
 * so no thread waits on another GPU's work. While a GPU's own cold start
 * runs, its link is marked wanted, so no other GPU claims it then.
 *
 * Claims here cover one cold start's copies on a link (queued at once,
 * asynchronous), not each group as on the CPU backend's simulated links.
 */
#include "cold_priv.h"
#include "exec/cuda/device.h"
#include "mem/link.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

/* Which table and index each joined GPU has. */
struct joined {
	struct cuda_dev *d;
	struct link_table *t;
	uint32_t i;
};

static pthread_mutex_t joined_mu = PTHREAD_MUTEX_INITIALIZER;
static struct joined joined[LINK_MAX * 4];

static struct joined *find(const struct cuda_dev *d)
{
	uint32_t k;

	for (k = 0; k < ARRAY_SIZE(joined); k++)
		if (joined[k].d == d)
			return &joined[k];
	return NULL;
}

/* Peer access both ways between d and every GPU of t that joined. */
static void enable_peers(struct cuda_dev *d, struct link_table *t)
{
	uint32_t k;
	int can = 0;

	for (k = 0; k < ARRAY_SIZE(joined); k++) {
		struct cuda_dev *x = joined[k].d;

		if (!x || joined[k].t != t || x == d)
			continue;
		if (CU(cuDeviceCanAccessPeer(&can, x->dev, d->dev)) || !can) {
			err_clear();
			continue;
		}
		if (cold_enable_peer(x, d) || cold_enable_peer(d, x)) {
			log_warn("cuda: GPU %d and GPU %d: no peer access: %s", d->ordinal,
				 x->ordinal, err_msg(0));
			err_clear();
		}
	}
	cuda_dev_enter(d);
}

int cudadev_join_links(void *dev, struct link_table *t, uint32_t i)
{
	struct cuda_dev *d = dev;
	struct cuda_link *lk;
	struct joined *slot;
	int ret;

	ret = cuda_link_create(d, &lk);
	if (ret)
		return ret;
	pthread_mutex_lock(&joined_mu);
	slot = find(NULL);
	if (slot) {
		enable_peers(d, t);
		*slot = (struct joined){d, t, i};
		atomic_store_explicit(&t->link[i].be, lk, memory_order_relaxed);
		link_up(t, i); /* release: the link is made before it is lent */
	}
	pthread_mutex_unlock(&joined_mu);
	if (!slot) {
		cuda_link_destroy(lk);
		return err_set(-ENOSPC, "cuda: GPU %d: too many GPUs lend links", d->ordinal);
	}
	return 0;
}

void cudadev_leave_links(struct cuda_dev *d)
{
	struct cuda_link *lk = NULL;
	struct joined *j;

	pthread_mutex_lock(&joined_mu);
	j = find(d);
	if (j) {
		/* waits for a borrower that holds it to have queued its copies */
		link_down(j->t, j->i);
		lk = atomic_exchange_explicit(&j->t->link[j->i].be, NULL, memory_order_relaxed);
		memset(j, 0, sizeof(*j));
	}
	pthread_mutex_unlock(&joined_mu);
	cuda_link_destroy(lk); /* synchronizes its streams */
}

void cold_find_table(struct cuda_cold *c)
{
	struct joined *j;

	pthread_mutex_lock(&joined_mu);
	j = find(c->m->d);
	c->lt = j ? j->t : NULL;
	c->lt_i = j ? j->i : 0;
	pthread_mutex_unlock(&joined_mu);
}

/* Lend helper slots 1..width-1 idle links of the table. */
void cold_claim_table(struct cuda_cold *c, struct cuda_cold_stats *st)
{
	uint32_t k, i, used = 0;

	memset(c->slot, 0, sizeof(c->slot));
	for (k = 1; k < c->width; k++) {
		i = link_lend_any(c->lt, c->lt_i, k, &used, 0);
		if (i != LINK_NONE) {
			/* acquire in the claim: be was set before the link went up */
			c->slot[k] = atomic_load_explicit(&c->lt->link[i].be, memory_order_relaxed);
			c->slot_i[k] = i;
		}
		if (i != LINK_NONE && !c->slot[k]) /* going down */
			link_release(c->lt, i, c->lt_i, 0);
		st->fallbacks += !c->slot[k];
	}
}

/* Bytes this run's groups put on plan slot k. */
static uint64_t slot_bytes(const struct cuda_cold *c, uint32_t k)
{
	uint64_t n = 0;
	uint32_t g;

	for (g = 0; g < c->n_grp; g++)
		n += c->grp[g].link == k ? c->grp[g].bytes : 0;
	return n;
}

void cold_release_table(struct cuda_cold *c)
{
	uint32_t k;

	for (k = 1; k < CUDA_COLD_LINKS; k++) {
		if (c->slot[k])
			link_release(c->lt, c->slot_i[k], c->lt_i, slot_bytes(c, k));
		c->slot[k] = NULL;
	}
}
