/* SPDX-License-Identifier: MIT */
/*
 * Model repository: DIR/<name>/<version>/model.dpk entries, their states,
 * and the host weight store (one copy of a model's weights in host memory,
 * shared by every device instance, dropped in LRU order when unused).
 *
 * Locking. Writers (scans, loads, unloads, failures, and the host-copy
 * reference counts of cold starts and evictions) serialize on r->lock;
 * package opens and weight reads run outside it, with LOADING and
 * HOST_READING marking them and r->cond announcing their end. Host copies
 * dropped under the lock are freed after it is released (repo_unlock), so
 * the lock is never held across freeing pinned memory.
 *
 * The published index. Readers never take r->lock: the network loop
 * thread (lookups on every request, /metrics, readiness, the index), the
 * workers (repo_entries in their background scans), the embedding API and
 * the statistics all read the same published objects:
 *   - r->snap, an immutable sorted array of entry pointers, replaced as a
 *     whole when a scan adds entries;
 *   - e->st, an entry's immutable {state, reason}, replaced on every state
 *     change (e->state mirrors its state for the hot path);
 *   - e->present and e->g, plain atomics.
 * A reader brackets its reads with repo_snap_enter/exit, which count it in
 * r->readers. A writer, under r->lock, builds the new object, publishes it
 * with a seq_cst store (release for its contents) and puts the old one on
 * r->deferred. Deferred objects are freed, under r->lock, only by a thread
 * that read r->readers == 0 after they were unpublished: the writer right
 * after publishing (reclaim), or the last reader to leave, which tries the
 * lock and does the same when it gets it (it never waits for it).
 * Why that is safe: a reader's seq_cst increment comes before its seq_cst
 * load of the pointer; if that load saw the old object, it precedes the
 * writer's store, which precedes the writer's seq_cst load of r->readers,
 * so that load counts the reader until its release decrement, which pairs
 * with the acquire of that load before the free. Entries themselves live
 * until repo_destroy.
 */
#define _GNU_SOURCE
#include "sched/internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define PKG_FILE "model.dpk"

static const char *const state_names[] = {
	[REPO_UNAVAILABLE] = "UNAVAILABLE",
	[REPO_LOADING] = "LOADING",
	[REPO_READY] = "READY",
	[REPO_FAILED] = "FAILED",
};

const char *repo_state_name(enum repo_state st)
{
	if ((unsigned)st >= ARRAY_SIZE(state_names))
		return "?";
	return state_names[st];
}

static enum repo_state get_state(const struct repo_entry *e)
{
	return (enum repo_state)atomic_load_explicit(&e->state, memory_order_acquire);
}

/* ------------------------------------------------------------ publishing */

const struct repo_snap *repo_snap_enter(struct repo *r)
{
	/* seq_cst: the count goes up before the pointer is read; pairs with
	 * the writer's seq_cst publish and its load of readers (reclaim). */
	atomic_fetch_add(&r->readers, 1);
	return atomic_load(&r->snap);
}

/* Under r->lock: free what was replaced if no reader can hold it. */
static void reclaim(struct repo *r)
{
	struct repo_defer *d, *next;

	/* seq_cst: pairs with repo_snap_enter's increment and, as an
	 * acquire, with repo_snap_exit's release decrement. */
	if (!r->deferred || atomic_load(&r->readers))
		return;
	for (d = r->deferred; d; d = next) {
		next = d->next;
		free(d);
	}
	r->deferred = NULL;
	atomic_store_explicit(&r->has_deferred, false, memory_order_relaxed);
}

void repo_snap_exit(struct repo *r)
{
	/* Release: the section's reads happen before a free by a thread
	 * that reads the count this leaves (acquire in reclaim). */
	if (atomic_fetch_sub_explicit(&r->readers, 1, memory_order_release) != 1 ||
	    !atomic_load_explicit(&r->has_deferred, memory_order_relaxed))
		return;
	if (pthread_mutex_trylock(&r->lock))
		return;
	reclaim(r);
	pthread_mutex_unlock(&r->lock);
}

/* Under r->lock: d was unpublished; free it once no reader holds it. */
static void defer(struct repo *r, struct repo_defer *d)
{
	d->next = r->deferred;
	r->deferred = d;
	atomic_store_explicit(&r->has_deferred, true, memory_order_relaxed);
}

/* Under r->lock: publish a copy of the writers' array as the index. */
static int snap_publish(struct repo *r)
{
	struct repo_snap *sn = malloc(sizeof(*sn) + sizeof(sn->ents[0]) * (r->n + 1u)), *old;

	if (!sn)
		return -ENOMEM;
	sn->n = r->n;
	if (r->n)
		memcpy(sn->ents, r->ents, sizeof(sn->ents[0]) * r->n);
	old = atomic_load_explicit(&r->snap, memory_order_relaxed);
	/* seq_cst: pairs with repo_snap_enter (release: sn's contents). */
	atomic_store(&r->snap, sn);
	if (old)
		defer(r, &old->d);
	reclaim(r);
	return 0;
}

/* Out of r->lock: put the host copies dropped under it (taken off r->dead). */
static void free_dead(struct repo *r, struct repo_dead *d)
{
	struct repo_dead *next;

	for (; d; d = next) {
		next = d->next;
		/* not the last after all: an entry of the same package took
		 * the copy meanwhile (host_read_new), which it did not pay for */
		if (!hoststore_put(d->hs))
			atomic_fetch_add(&r->host_used, d->size);
		free(d);
	}
}

/* Unlock r->lock, then free the host copies dropped under it. */
static void repo_unlock(struct repo *r)
{
	struct repo_dead *d = r->dead;

	r->dead = NULL;
	pthread_mutex_unlock(&r->lock);
	free_dead(r, d);
}

/* Under r->lock (or before e is published): new state and reason. */
static void set_status(struct repo_entry *e, enum repo_state st, bool unfit, const char *reason)
{
	size_t len = reason ? strlen(reason) : 0;
	struct repo_status *ns = malloc(sizeof(*ns) + len + 1), *old;

	if (ns) {
		ns->state = (int)st;
		ns->unfit = unfit;
		memcpy(ns->reason, reason ? reason : "", len + 1);
		/* seq_cst (release: ns's contents); pairs with the acquire
		 * loads of readers (status_get). */
		old = atomic_exchange(&e->st, ns);
		if (old)
			defer(e->r, &old->d);
	} else {
		log_warn("model '%s' version %u: out of memory recording its state", e->name,
			 e->version);
	}
	atomic_store_explicit(&e->state, (int)st, memory_order_release);
	if (ns)
		reclaim(e->r);
}

static void set_state(struct repo_entry *e, enum repo_state st, const char *reason)
{
	set_status(e, st, false, reason);
}

/* Inside a snap section or under r->lock: e's published status (an entry
 * has one from entry_new on). */
static const struct repo_status *status_get(const struct repo_entry *e)
{
	return atomic_load_explicit(&e->st, memory_order_acquire);
}

/* ------------------------------------------------------------ host store */

_Atomic(void (*)(const struct repo_entry *)) repo_read_hook;

/*
 * The one place that makes a host copy. The host weight store of mem/
 * gives pinned, device-mapped memory where a GPU driver exists and
 * page-aligned memory elsewhere, and checks every layer's CRC. Entries of
 * one package file (links) share one copy; host_used counts each copy
 * once: the entry whose read made it is charged, the last put gives it
 * back.
 */
static int host_read(struct repo_entry *e, const struct hoststore_watch *wt, struct hoststore **out,
		     bool *made)
{
	void (*hook)(const struct repo_entry *) = atomic_load(&repo_read_hook);

	if (hook)
		hook(e);
	return hoststore_load_shared_watched(e->pkg, wt, out, made);
}

/* Under r->lock: drop e's host copy (nobody uses it); repo_unlock frees it. */
static void host_free(struct repo *r, struct repo_entry *e)
{
	struct repo_dead *d = malloc(sizeof(*d));

	if (lnode_linked(&e->host_lru))
		lnode_del(&e->host_lru);
	if (hoststore_put_unless_last(e->hs)) { /* another entry keeps the copy */
		free(d);
	} else if (d) {
		/* Its last reference goes after the lock: no acquire may find
		 * it meanwhile and keep it uncharged (over the limit). */
		hoststore_unshare(e->hs);
		ctr_add(&r->host_drops, 1);
		atomic_fetch_sub(&r->host_used, e->host_size);
		d->hs = e->hs;
		d->size = e->host_size;
		d->next = r->dead;
		r->dead = d;
	} else if (hoststore_put(e->hs)) {
		ctr_add(&r->host_drops, 1);
		atomic_fetch_sub(&r->host_used, e->host_size);
	}
	e->hs = NULL;
	atomic_store(&e->host, NULL);
	e->host_size = 0;
	e->hstate = HOST_NONE;
}

/*
 * Under r->lock: put an unused host copy where it belongs. A READY model's
 * copy stays cached (most recent end of the LRU); any other state frees it.
 */
static void host_settle(struct repo *r, struct repo_entry *e)
{
	if (e->hstate != HOST_READY || atomic_load(&e->users))
		return;
	if (get_state(e) != REPO_READY) {
		host_free(r, e);
		return;
	}
	if (lnode_linked(&e->host_lru))
		lnode_del(&e->host_lru);
	lnode_add_head(&r->host_lru, &e->host_lru);
}

/* Under r->lock: make room for size bytes, dropping unused copies LRU first. */
static int host_reserve(struct repo *r, struct repo_entry *e, uint64_t size)
{
	char a[32], b[32];
	uint64_t used;

	if (r->host_limit && size > r->host_limit)
		return err_set(-ENOMEM,
			       "model '%s' version %u: %s of weights exceed the host "
			       "memory limit of %s",
			       e->name, e->version, fmt_bytes(size, a, sizeof(a)),
			       fmt_bytes(r->host_limit, b, sizeof(b)));
	/* Copies being read may be droppable once read (loads at start run
	 * in parallel): wait for them before giving up. */
	while (r->host_limit && atomic_load(&r->host_used) + size > r->host_limit &&
	       (lnode_linked(&r->host_lru) || r->host_reads)) {
		struct repo_entry *v = container_of(r->host_lru.prev, struct repo_entry, host_lru);

		if (!lnode_linked(&r->host_lru)) {
			pthread_cond_wait(&r->cond, &r->lock);
			continue;
		}
		log_debug("host store: dropping '%s' v%u to make room", v->name, v->version);
		host_free(r, v);
	}
	used = atomic_load(&r->host_used);
	if (r->host_limit && used + size > r->host_limit) {
		atomic_store(&r->host_wanted, size);
		return err_set(DPRT_EOVERLOAD, "host memory full: %s of %s held by models in use",
			       fmt_bytes(used, a, sizeof(a)),
			       fmt_bytes(r->host_limit, b, sizeof(b)));
	}
	atomic_store(&r->host_wanted, 0);
	atomic_fetch_add(&r->host_used, size);
	return 0;
}

bool repo_host_short(struct repo *r)
{
	uint64_t want = atomic_load(&r->host_wanted);

	return want && atomic_load(&r->host_used) + want > r->host_limit;
}

/*
 * Under r->lock (released while reading): read a new copy for e, charged
 * to host_used unless another entry's copy of the same package was made
 * meanwhile and taken instead.
 */
static int host_read_new(struct repo *r, struct repo_entry *e, const struct hoststore_watch *wt,
			 struct hoststore **hs)
{
	uint64_t size = atomic_load(&e->g)->weights_size;
	struct repo_dead *d;
	bool made = false;
	int ret;

	ret = host_reserve(r, e, size);
	if (ret)
		return ret;
	e->hstate = HOST_READING;
	r->host_reads++;
	d = r->dead;
	r->dead = NULL;
	/* put before the read: the buffers of copies dropped for room may
	 * serve it (hoststore_spare_room) */
	pthread_mutex_unlock(&r->lock);
	free_dead(r, d);
	ret = host_read(e, wt, hs, &made);
	if (!made) /* a made copy trimmed the spares already */
		hoststore_spare_trim();
	pthread_mutex_lock(&r->lock);
	r->host_reads--;
	e->hstate = HOST_NONE;
	if (ret || !made)
		atomic_fetch_sub(&r->host_used, size);
	if (!ret)
		ctr_add(made ? &r->host_misses : &r->host_hits, 1);
	if (made) {
		struct hoststore_info in;
		char b[32];

		hoststore_get_info(*hs, &in);
		ctr_add(&r->disk_bytes, size);
		log_info("'%s' v%u: %s read from disk in %.1f ms (%.2f GB/s), of which %.1f ms "
			 "getting %s memory",
			 e->name, e->version, fmt_bytes(size, b, sizeof(b)), in.read_ms,
			 in.read_ms > 0 ? (double)size / (in.read_ms * 1e6) : 0.0, in.alloc_ms,
			 in.recycled ? "recycled pinned" :
			 in.mapped   ? "pinned" :
				       "host");
	}
	return ret;
}

/*
 * Under r->lock (released while reading): make sure e's weights are in
 * host memory. One reader per entry; others wait for it.
 */
static int host_ensure(struct repo *r, struct repo_entry *e, const struct hoststore_watch *wt)
{
	struct hoststore *hs;
	int ret = 0;

	while (e->hstate == HOST_READING)
		pthread_cond_wait(&r->cond, &r->lock);
	if (e->hstate == HOST_READY) {
		ctr_add(&r->host_hits, 1);
		return 0;
	}
	hs = hoststore_get_shared(e->pkg);
	if (hs)
		ctr_add(&r->host_hits, 1);
	else
		ret = host_read_new(r, e, wt, &hs);
	if (!ret) {
		e->hs = hs;
		e->host_size = atomic_load(&e->g)->weights_size;
		atomic_store(&e->host, hoststore_base(hs));
		e->hstate = HOST_READY;
	}
	pthread_cond_broadcast(&r->cond);
	return ret;
}

/* ------------------------------------------------------------ entries */

static struct repo_entry *entry_new(struct repo *r, const char *name, uint32_t version,
				    const char *path)
{
	struct repo_entry *e = calloc(1, sizeof(*e));
	size_t wsz = ALIGN_UP(sizeof(struct wslot) * r->n_workers, CACHELINE);
	uint32_t i;

	if (!e)
		return NULL;
	e->ws = aligned_alloc(CACHELINE, wsz);
	if (!e->ws) {
		free(e);
		return NULL;
	}
	memset(e->ws, 0, wsz);
	snprintf(e->name, sizeof(e->name), "%s", name);
	snprintf(e->path, sizeof(e->path), "%s", path);
	e->version = version;
	e->hash = hash64(HASH64_INIT, name, strlen(name));
	e->r = r;
	lnode_init(&e->host_lru);
	for (i = 0; i < r->n_workers; i++) {
		e->ws[i].e = e;
		lnode_init(&e->ws[i].lru);
		lnode_init(&e->ws[i].park);
	}
	set_state(e, REPO_UNAVAILABLE, "not loaded");
	if (!atomic_load(&e->st)) {
		free(e->ws);
		free(e);
		return NULL;
	}
	return e;
}

static void entry_free(struct repo_entry *e)
{
	free(atomic_load(&e->st));
	hoststore_put(e->hs);
	pkg_close(e->pkg);
	free(e->ws);
	free(e);
}

static int entry_cmp(const struct repo_entry *e, const char *name, uint32_t version)
{
	int c = strcmp(e->name, name);

	if (c)
		return c;
	return e->version < version ? -1 : e->version > version;
}

/* Under r->lock: index where (name, version) is or would go (sorted). */
static uint32_t entry_pos(struct repo *r, const char *name, uint32_t version)
{
	uint32_t lo = 0, hi = r->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (entry_cmp(r->ents[mid], name, version) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Under r->lock: find or add the entry for a package seen on disk. */
static int entry_found(struct repo *r, const char *name, uint32_t version, const char *path)
{
	uint32_t pos = entry_pos(r, name, version);
	struct repo_entry *e;

	if (pos < r->n && !entry_cmp(r->ents[pos], name, version)) {
		r->ents[pos]->seen = true;
		return 0;
	}
	if (r->n == r->cap) {
		uint32_t cap = r->cap ? r->cap * 2 : 16;
		struct repo_entry **n = realloc(r->ents, sizeof(*n) * cap);

		if (!n)
			return -ENOMEM;
		r->ents = n;
		r->cap = cap;
	}
	e = entry_new(r, name, version, path);
	if (!e)
		return -ENOMEM;
	e->seen = true;
	memmove(&r->ents[pos + 1], &r->ents[pos], sizeof(*r->ents) * (r->n - pos));
	r->ents[pos] = e;
	r->n++;
	return 0;
}

/* ------------------------------------------------------------ scanning */

/* A version directory: a positive decimal without leading zeros. */
static bool parse_version(const char *s, uint32_t *out)
{
	uint64_t v = 0;
	const char *p;

	if (!*s || *s == '0')
		return false;
	for (p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

static int scan_version(struct repo *r, const char *name, const char *vdir)
{
	char path[PATH_MAX];
	struct stat st;
	uint32_t version;
	int ret, n;

	if (!parse_version(vdir, &version))
		return 0;
	n = snprintf(path, sizeof(path), "%s/%s/%s/" PKG_FILE, r->dir, name, vdir);
	if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &st) || !S_ISREG(st.st_mode))
		return 0;
	pthread_mutex_lock(&r->lock);
	ret = entry_found(r, name, version, path);
	pthread_mutex_unlock(&r->lock);
	return ret;
}

static int scan_model(struct repo *r, const char *name)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int ret = 0, n;

	if (name[0] == '.' || strlen(name) >= NAME_LEN)
		return 0;
	n = snprintf(path, sizeof(path), "%s/%s", r->dir, name);
	if (n < 0 || (size_t)n >= sizeof(path))
		return 0;
	d = opendir(path);
	if (!d)
		return 0;
	while (!ret && (de = readdir(d)))
		ret = scan_version(r, name, de->d_name);
	closedir(d);
	return ret;
}

/* Under r->lock: start a scan (clear) or publish what it saw. */
static void mark_present(struct repo *r, bool clear)
{
	static const char gone[] = "not in the repository";
	uint32_t i;

	for (i = 0; i < r->n; i++) {
		struct repo_entry *e = r->ents[i];

		if (clear) {
			e->seen = false;
			continue;
		}
		atomic_store_explicit(&e->present, e->seen || e->registered, memory_order_relaxed);
		if (!e->seen && !e->registered && get_state(e) == REPO_UNAVAILABLE &&
		    strcmp(status_get(e)->reason, gone))
			set_state(e, REPO_UNAVAILABLE, gone);
	}
}

int repo_scan(struct repo *r)
{
	struct dirent *de;
	DIR *d;
	int ret = 0;

	pthread_mutex_lock(&r->scan_lock);
	d = opendir(r->dir);
	if (!d) {
		ret = -errno;
		pthread_mutex_unlock(&r->scan_lock);
		return err_set(ret, "%s: cannot read the model repository: %s", r->dir,
			       strerror(-ret));
	}
	pthread_mutex_lock(&r->lock);
	mark_present(r, true);
	pthread_mutex_unlock(&r->lock);
	while (!ret && (de = readdir(d)))
		ret = scan_model(r, de->d_name);
	closedir(d);
	pthread_mutex_lock(&r->lock);
	mark_present(r, false);
	if (snap_publish(r) && !ret)
		ret = -ENOMEM;
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_unlock(&r->scan_lock);
	if (ret)
		return err_set(ret, "%s: scanning the model repository: %s", r->dir,
			       dprt_strerror(ret));
	return 0;
}

/* ------------------------------------------------------------ registering */

/* Under r->lock: point registered entry e at path, if nothing uses it (a
 * host copy of the old package would be taken for the new one). */
static int entry_repoint(struct repo_entry *e, const char *path)
{
	enum repo_state st = get_state(e);

	if (!strcmp(e->path, path))
		return 0;
	if (!e->registered)
		return err_set(-EEXIST, "model '%s' version 1 is %s of the repository already",
			       e->name, e->path);
	if (st == REPO_LOADING || st == REPO_READY)
		return err_set(-EBUSY, "model '%s' is %s from %s", e->name,
			       st == REPO_READY ? "loaded" : "loading", e->path);
	if (e->hstate != HOST_NONE || atomic_load(&e->users))
		return err_set(-EBUSY, "model '%s' from %s is still in use", e->name, e->path);
	snprintf(e->path, sizeof(e->path), "%s", path);
	return 0;
}

int repo_register(struct repo *r, const char *name, const char *path)
{
	uint32_t pos;
	int ret;

	if (!name[0] || strlen(name) >= NAME_LEN || strchr(name, '/'))
		return err_set(-EINVAL, "'%.64s': a model name is 1 to %d bytes, no '/'", name,
			       NAME_LEN - 1);
	if (!path[0] || strlen(path) >= PATH_MAX)
		return err_set(-EINVAL, "model '%s': the package path is empty or too long", name);
	pthread_mutex_lock(&r->lock);
	pos = entry_pos(r, name, 1);
	if (pos < r->n && !entry_cmp(r->ents[pos], name, 1)) {
		ret = entry_repoint(r->ents[pos], path);
		goto out_unlock;
	}
	ret = entry_found(r, name, 1, path);
	if (ret)
		goto out_unlock;
	r->ents[pos]->registered = true;
	atomic_store_explicit(&r->ents[pos]->present, true, memory_order_relaxed);
	ret = snap_publish(r);
out_unlock:
	pthread_mutex_unlock(&r->lock);
	if (ret == -ENOMEM)
		return err_set(ret, "out of memory");
	return ret;
}

/* ------------------------------------------------------------ create */

/* Host memory left under the limit beside the copies counted: the room
 * for spare pinned buffers (hoststore_spare_room). */
static uint64_t host_room(void *arg)
{
	struct repo *r = arg;
	uint64_t used = atomic_load(&r->host_used);

	return used < r->host_limit ? r->host_limit - used : 0;
}

int repo_create(const char *dir, uint32_t n_workers, uint64_t host_limit, struct repo **out)
{
	struct repo *r;
	struct stat st;
	int ret;

	if (stat(dir, &st) || !S_ISDIR(st.st_mode))
		return err_set(-ENOENT, "%s: model repository is not a directory", dir);
	if (strlen(dir) >= sizeof(r->dir))
		return err_set(-ENAMETOOLONG, "%s: path too long", dir);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	r->n_workers = n_workers;
	r->host_limit = host_limit;
	lnode_init(&r->host_lru);
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->scan_lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	ret = snap_publish(r) ? err_set(-ENOMEM, "out of memory") : repo_scan(r);
	if (ret) {
		repo_destroy(r);
		return ret;
	}
	if (host_limit)
		hoststore_spare_room(host_room, r);
	*out = r;
	return 0;
}

void repo_destroy(struct repo *r)
{
	uint32_t i;

	if (!r)
		return;
	if (r->host_limit)
		hoststore_spare_room(NULL, NULL);
	for (i = 0; i < r->n; i++)
		entry_free(r->ents[i]);
	for (i = 0; i < r->n_retired; i++)
		pkg_close(r->retired[i]);
	atomic_store(&r->readers, 0);
	reclaim(r);
	free(atomic_load(&r->snap));
	free(r->retired);
	free(r->ents);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->scan_lock);
	free(r);
}

/* ------------------------------------------------------------ lookup */

static int snap_cmp(const struct repo_entry *e, const char *name, uint32_t version)
{
	int c = strcmp(e->name, name);

	if (c)
		return c;
	return e->version < version ? -1 : e->version > version;
}

/* Index where (name, version) is or would go in sn. */
static uint32_t snap_pos(const struct repo_snap *sn, const char *name, uint32_t version)
{
	uint32_t lo = 0, hi = sn->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (snap_cmp(sn->ents[mid], name, version) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint32_t repo_snap_first(const struct repo_snap *sn, const char *name)
{
	uint32_t pos = snap_pos(sn, name, 0);

	return pos < sn->n && !strcmp(sn->ents[pos]->name, name) ? pos : sn->n;
}

/* The version to serve when none is named: the highest READY one, else
 * the highest present one, else the highest. */
static struct repo_entry *pick_default(const struct repo_snap *sn, uint32_t first, uint32_t end)
{
	struct repo_entry *present = NULL;
	uint32_t i;

	for (i = end; i-- > first;) {
		struct repo_entry *e = sn->ents[i];

		if (get_state(e) == REPO_READY)
			return e;
		if (!present && atomic_load_explicit(&e->present, memory_order_relaxed))
			present = e;
	}
	return present ? present : sn->ents[end - 1];
}

int repo_lookup(struct repo *r, const char *name, uint32_t version, struct repo_entry **out)
{
	const struct repo_snap *sn = repo_snap_enter(r);
	uint32_t first, end;
	int ret = 0;

	first = repo_snap_first(sn, name);
	for (end = first; end < sn->n && !strcmp(sn->ents[end]->name, name); end++)
		;
	if (first == end) {
		ret = err_set(DPRT_ENOMODEL, "unknown model '%s'", name);
		goto out_exit;
	}
	if (!version) {
		*out = pick_default(sn, first, end);
		goto out_exit;
	}
	first = snap_pos(sn, name, version);
	if (first < end && sn->ents[first]->version == version)
		*out = sn->ents[first];
	else
		ret = err_set(DPRT_ENOMODEL, "model '%s' has no version %u", name, version);
out_exit:
	repo_snap_exit(r);
	return ret;
}

uint32_t repo_entries(struct repo *r, struct repo_entry **out, uint32_t cap)
{
	const struct repo_snap *sn = repo_snap_enter(r);
	uint32_t i, n = sn->n;

	for (i = 0; i < n && i < cap; i++)
		out[i] = sn->ents[i];
	repo_snap_exit(r);
	return n;
}

void repo_index(struct repo *r, struct repo_info *out, uint32_t cap, uint32_t *n)
{
	const struct repo_snap *sn = repo_snap_enter(r);
	uint32_t i, k = 0;

	for (i = 0; i < sn->n; i++) {
		const struct repo_entry *e = sn->ents[i];
		const struct repo_status *st = status_get(e);

		if (!atomic_load_explicit(&e->present, memory_order_relaxed) &&
		    st->state == REPO_UNAVAILABLE)
			continue;
		if (k < cap) {
			snprintf(out[k].name, sizeof(out[k].name), "%s", e->name);
			out[k].version = e->version;
			out[k].state = (uint8_t)st->state;
			out[k].registered = e->registered;
			snprintf(out[k].reason, sizeof(out[k].reason), "%s", st->reason);
		}
		k++;
	}
	repo_snap_exit(r);
	*n = k;
}

struct repo_entry *repo_unfit(struct repo *r, char *why, size_t len)
{
	const struct repo_snap *sn = repo_snap_enter(r);
	struct repo_entry *found = NULL;
	uint32_t i;

	for (i = 0; i < sn->n && !found; i++) {
		const struct repo_status *st = status_get(sn->ents[i]);

		if (st->state != REPO_FAILED || !st->unfit)
			continue;
		found = sn->ents[i];
		snprintf(why, len, "model '%s' version %u: %s", found->name, found->version,
			 st->reason);
	}
	repo_snap_exit(r);
	return found;
}

const char *repo_entry_name(const struct repo_entry *e)
{
	return e->name;
}

uint32_t repo_entry_version(const struct repo_entry *e)
{
	return e->version;
}

enum repo_state repo_entry_state(const struct repo_entry *e)
{
	return get_state(e);
}

const struct graph *repo_entry_graph(const struct repo_entry *e)
{
	return atomic_load_explicit(&e->g, memory_order_acquire);
}

void repo_entry_reason(const struct repo_entry *e, char *buf, size_t len)
{
	repo_snap_enter(e->r);
	snprintf(buf, len, "%s", status_get(e)->reason);
	repo_snap_exit(e->r);
}

const void *repo_entry_host(const struct repo_entry *e, uint32_t *users)
{
	if (users)
		*users = atomic_load(&e->users);
	return atomic_load(&e->host);
}

uint64_t repo_host_used(const struct repo *r)
{
	return atomic_load(&r->host_used);
}

uint64_t repo_host_limit(const struct repo *r)
{
	return r->host_limit;
}

void repo_disk_counts(const struct repo *r, uint64_t *cold_starts, uint64_t *streamed,
		      uint64_t *bytes)
{
	*cold_starts = ctr_get(&r->disk_colds);
	*streamed = ctr_get(&r->disk_streamed);
	*bytes = ctr_get(&r->disk_bytes);
}

void repo_host_counts(const struct repo *r, uint64_t *hits, uint64_t *misses, uint64_t *drops)
{
	*hits = ctr_get(&r->host_hits);
	*misses = ctr_get(&r->host_misses);
	*drops = ctr_get(&r->host_drops);
}

/* ------------------------------------------------------------ load */

static bool same_file(const struct repo_entry *e, const struct stat *st)
{
	return e->st_dev == st->st_dev && e->st_ino == st->st_ino && e->st_size == st->st_size &&
	       e->st_mtim.tv_sec == st->st_mtim.tv_sec && e->st_mtim.tv_nsec == st->st_mtim.tv_nsec;
}

/* Under r->lock: keep the old package's graph alive for whoever holds it. */
static int retire_pkg(struct repo *r, struct pkg *p)
{
	if (r->n_retired == r->cap_retired) {
		uint32_t cap = r->cap_retired ? r->cap_retired * 2 : 4;
		struct pkg **n = realloc(r->retired, sizeof(*n) * cap);

		if (!n)
			return -ENOMEM;
		r->retired = n;
		r->cap_retired = cap;
	}
	r->retired[r->n_retired++] = p;
	return 0;
}

/*
 * State LOADING (so nobody else opens or reads e): open the package, or
 * reopen it when the file changed since and no device uses the old one.
 */
static int entry_open(struct repo *r, struct repo_entry *e)
{
	struct pkg *p = NULL;
	struct stat st;
	int ret;

	if (stat(e->path, &st))
		return err_set(-errno, "%s: %s", e->path, strerror(errno));
	if (e->pkg && (same_file(e, &st) || e->hstate != HOST_NONE))
		return 0;
	ret = pkg_open(e->path, &p);
	if (ret)
		return ret;
	pthread_mutex_lock(&r->lock);
	ret = e->pkg ? retire_pkg(r, e->pkg) : 0;
	if (!ret) {
		e->pkg = p;
		e->st_dev = st.st_dev;
		e->st_ino = st.st_ino;
		e->st_size = st.st_size;
		e->st_mtim = st.st_mtim;
		atomic_store_explicit(&e->g, pkg_graph(p), memory_order_release);
	}
	pthread_mutex_unlock(&r->lock);
	if (ret)
		pkg_close(p);
	return ret;
}

bool repo_queue_load(struct repo *r, struct repo_entry *e)
{
	bool queued = false;

	pthread_mutex_lock(&r->lock);
	if (get_state(e) != REPO_LOADING && get_state(e) != REPO_READY) {
		set_state(e, REPO_LOADING, "queued for loading");
		e->queued = true;
		queued = true;
	}
	pthread_mutex_unlock(&r->lock);
	return queued;
}

void repo_cancel_load(struct repo *r, struct repo_entry *e)
{
	pthread_mutex_lock(&r->lock);
	if (e->queued) {
		e->queued = false;
		set_state(e, REPO_UNAVAILABLE, "not loaded");
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
}

/* Under r->lock: become e's loader (false: it is READY already). */
static bool load_begin(struct repo *r, struct repo_entry *e, bool queued)
{
	if (queued && e->queued) { /* LOADING, on the caller's behalf */
		e->queued = false;
		set_state(e, REPO_LOADING, "loading");
		return true;
	}
	while (get_state(e) == REPO_LOADING)
		pthread_cond_wait(&r->cond, &r->lock);
	if (get_state(e) == REPO_READY)
		return false;
	set_state(e, REPO_LOADING, NULL);
	return true;
}

static int load_entry(struct repo *r, struct repo_entry *e, bool queued)
{
	int ret;

	pthread_mutex_lock(&r->lock);
	if (!load_begin(r, e, queued)) {
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	pthread_mutex_unlock(&r->lock);

	ret = entry_open(r, e);
	pthread_mutex_lock(&r->lock);
	if (!ret)
		ret = host_ensure(r, e, NULL);
	set_state(e, ret ? REPO_FAILED : REPO_READY, ret ? err_msg(ret) : NULL);
	host_settle(r, e);
	pthread_cond_broadcast(&r->cond);
	repo_unlock(r);
	if (ret)
		log_warn("model '%s' version %u: %s", e->name, e->version, err_msg(ret));
	return ret;
}

int repo_load_entry(struct repo *r, struct repo_entry *e)
{
	return load_entry(r, e, false);
}

int repo_load_queued(struct repo *r, struct repo_entry *e)
{
	return load_entry(r, e, true);
}

void repo_unload_entry(struct repo *r, struct repo_entry *e)
{
	pthread_mutex_lock(&r->lock);
	while (get_state(e) == REPO_LOADING)
		pthread_cond_wait(&r->cond, &r->lock);
	if (get_state(e) != REPO_UNAVAILABLE)
		set_state(e, REPO_UNAVAILABLE, "unloaded");
	host_settle(r, e);
	repo_unlock(r);
}

void repo_fail_entry(struct repo *r, struct repo_entry *e, bool unfit, const char *reason)
{
	pthread_mutex_lock(&r->lock);
	if (get_state(e) == REPO_READY)
		set_status(e, REPO_FAILED, unfit, reason);
	host_settle(r, e);
	repo_unlock(r);
	log_warn("model '%s' version %u: %s", e->name, e->version, reason);
}

/* ------------------------------------------------------------ instances */

/* Under r->lock (which keeps e's status from being freed). */
static int not_ready(const struct repo_entry *e)
{
	const char *why = status_get(e)->reason;

	return err_set(DPRT_ENOMODEL, "model '%s' version %u is not ready (%s%s%s)", e->name,
		       e->version, repo_state_name(get_state(e)), why[0] ? ": " : "", why);
}

/* A failed re-read of a READY model's weights: the package went bad. */
static bool pkg_went_bad(int code)
{
	return code != DPRT_EOVERLOAD && code != -ENOMEM;
}

int repo_acquire(struct repo *r, struct repo_entry *e, const void **weights)
{
	return repo_acquire_watched(r, e, NULL, weights);
}

int repo_acquire_watched(struct repo *r, struct repo_entry *e, const struct hoststore_watch *wt,
			 const void **weights)
{
	int ret;

	pthread_mutex_lock(&r->lock);
	if (get_state(e) != REPO_READY) {
		ret = not_ready(e);
		goto out_unlock;
	}
	ret = host_ensure(r, e, wt);
	if (ret && pkg_went_bad(ret) && get_state(e) == REPO_READY)
		set_state(e, REPO_FAILED, err_msg(ret));
	if (!ret && get_state(e) != REPO_READY)
		ret = not_ready(e);
	if (ret) {
		host_settle(r, e);
		goto out_unlock;
	}
	if (atomic_fetch_add(&e->users, 1) == 0 && lnode_linked(&e->host_lru))
		lnode_del(&e->host_lru);
	*weights = hoststore_base(e->hs);
out_unlock:
	repo_unlock(r);
	return ret;
}

void repo_release(struct repo *r, struct repo_entry *e)
{
	pthread_mutex_lock(&r->lock);
	if (atomic_fetch_sub(&e->users, 1) == 1) {
		/* A read waits for room: the copy goes now, not into the LRU
		 * (from which a worker dropping more idle models for room
		 * would not see it go). */
		if (e->hstate == HOST_READY && repo_host_short(r))
			host_free(r, e);
		else
			host_settle(r, e);
		pthread_cond_broadcast(&r->cond); /* repo_wait_room */
	}
	repo_unlock(r);
}

void repo_wait_room(struct repo *r, uint64_t ns)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(ns % 1000000000u);
	ts.tv_sec += (time_t)(ns / 1000000000u) + ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_mutex_lock(&r->lock);
	if (repo_host_short(r))
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	pthread_mutex_unlock(&r->lock);
}
