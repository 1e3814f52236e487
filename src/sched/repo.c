/* SPDX-License-Identifier: MIT */
/*
 * Model repository: DIR/<name>/<version>/model.dpk entries, their states,
 * and the host weight store (one copy of a model's weights in host memory,
 * shared by every device instance, dropped in LRU order when unused).
 *
 * Locking: one mutex per repository for the control path (scan, lookup,
 * load, unload) and for the host-copy reference counts, which change only
 * on cold starts and evictions, never per request. Package opens and
 * weight reads run outside the lock; LOADING and HOST_READING mark them and
 * r->cond announces their end.
 */
#define _GNU_SOURCE
#include "sched/internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* Under r->lock. */
static void set_state(struct repo_entry *e, enum repo_state st, const char *reason)
{
	snprintf(e->reason, sizeof(e->reason), "%s", reason ? reason : "");
	atomic_store_explicit(&e->state, (int)st, memory_order_release);
}

/* ------------------------------------------------------------ host store */

/*
 * The one place that makes a host copy. The host weight store of mem/
 * gives pinned, device-mapped memory where a GPU driver exists and
 * page-aligned memory elsewhere, and checks every layer's CRC. Packages of
 * the same checksum share one copy; host_used counts each copy once: the
 * entry whose read made it is charged, and the last put gives it back.
 */
static int host_read(struct repo_entry *e, struct hoststore **out, bool *made)
{
	return hoststore_load_shared(e->pkg, out, made);
}

/* Under r->lock: free e's host copy (nobody uses it). */
static void host_free(struct repo *r, struct repo_entry *e)
{
	if (lnode_linked(&e->host_lru))
		lnode_del(&e->host_lru);
	if (hoststore_put(e->hs))
		atomic_fetch_sub(&r->host_used, e->host_size);
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
		return err_set(-ENOMEM, "model '%s' version %u: %s of weights exceed the host "
			       "memory limit of %s", e->name, e->version,
			       fmt_bytes(size, a, sizeof(a)), fmt_bytes(r->host_limit, b, sizeof(b)));
	while (r->host_limit && atomic_load(&r->host_used) + size > r->host_limit &&
	       lnode_linked(&r->host_lru)) {
		struct repo_entry *v = container_of(r->host_lru.prev, struct repo_entry, host_lru);

		log_debug("host store: dropping '%s' v%u to make room", v->name, v->version);
		host_free(r, v);
	}
	used = atomic_load(&r->host_used);
	if (r->host_limit && used + size > r->host_limit)
		return err_set(DPRT_EOVERLOAD, "host memory full: %s of %s held by models in use",
			       fmt_bytes(used, a, sizeof(a)), fmt_bytes(r->host_limit, b, sizeof(b)));
	atomic_fetch_add(&r->host_used, size);
	return 0;
}

/*
 * Under r->lock (released while reading): read a new copy for e, charged
 * to host_used unless another entry's copy of the same package was made
 * meanwhile and taken instead.
 */
static int host_read_new(struct repo *r, struct repo_entry *e, struct hoststore **hs)
{
	uint64_t size = atomic_load(&e->g)->weights_size;
	bool made = false;
	int ret;

	ret = host_reserve(r, e, size);
	if (ret)
		return ret;
	e->hstate = HOST_READING;
	pthread_mutex_unlock(&r->lock);
	ret = host_read(e, hs, &made);
	pthread_mutex_lock(&r->lock);
	e->hstate = HOST_NONE;
	if (ret || !made)
		atomic_fetch_sub(&r->host_used, size);
	return ret;
}

/*
 * Under r->lock (released while reading): make sure e's weights are in
 * host memory. One reader per entry; others wait for it.
 */
static int host_ensure(struct repo *r, struct repo_entry *e)
{
	struct hoststore *hs;
	int ret = 0;

	while (e->hstate == HOST_READING)
		pthread_cond_wait(&r->cond, &r->lock);
	if (e->hstate == HOST_READY)
		return 0;
	hs = hoststore_get_shared(e->pkg);
	if (!hs)
		ret = host_read_new(r, e, &hs);
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
	}
	set_state(e, REPO_UNAVAILABLE, "not loaded");
	return e;
}

static void entry_free(struct repo_entry *e)
{
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
		r->ents[pos]->present = true;
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
	e->present = true;
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

/* Under r->lock. */
static void mark_present(struct repo *r, bool clear)
{
	uint32_t i;

	for (i = 0; i < r->n; i++) {
		struct repo_entry *e = r->ents[i];

		if (clear)
			e->present = false;
		else if (!e->present && get_state(e) == REPO_UNAVAILABLE)
			set_state(e, REPO_UNAVAILABLE, "not in the repository");
	}
}

int repo_scan(struct repo *r)
{
	struct dirent *de;
	DIR *d;
	int ret = 0;

	d = opendir(r->dir);
	if (!d)
		return err_set(-errno, "%s: cannot read the model repository: %s", r->dir,
			       strerror(errno));
	pthread_mutex_lock(&r->lock);
	mark_present(r, true);
	pthread_mutex_unlock(&r->lock);
	while (!ret && (de = readdir(d)))
		ret = scan_model(r, de->d_name);
	closedir(d);
	pthread_mutex_lock(&r->lock);
	mark_present(r, false);
	pthread_mutex_unlock(&r->lock);
	if (ret)
		return err_set(ret, "%s: scanning the model repository: %s", r->dir,
			       dprt_strerror(ret));
	return 0;
}

/* ------------------------------------------------------------ create */

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
	pthread_cond_init(&r->cond, NULL);
	ret = repo_scan(r);
	if (ret) {
		repo_destroy(r);
		return ret;
	}
	*out = r;
	return 0;
}

void repo_destroy(struct repo *r)
{
	uint32_t i;

	if (!r)
		return;
	for (i = 0; i < r->n; i++)
		entry_free(r->ents[i]);
	for (i = 0; i < r->n_retired; i++)
		pkg_close(r->retired[i]);
	free(r->retired);
	free(r->ents);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* ------------------------------------------------------------ lookup */

/* Under r->lock: the version to serve when none is named. */
static struct repo_entry *pick_default(struct repo *r, uint32_t first, uint32_t end)
{
	struct repo_entry *present = NULL;
	uint32_t i;

	for (i = end; i-- > first;) {
		struct repo_entry *e = r->ents[i];

		if (get_state(e) == REPO_READY)
			return e;
		if (!present && e->present)
			present = e;
	}
	return present ? present : r->ents[end - 1];
}

int repo_lookup(struct repo *r, const char *name, uint32_t version, struct repo_entry **out)
{
	uint32_t first, end;
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	first = entry_pos(r, name, 0);
	for (end = first; end < r->n && !strcmp(r->ents[end]->name, name); end++)
		;
	if (first == end) {
		ret = err_set(DPRT_ENOMODEL, "unknown model '%s'", name);
		goto out_unlock;
	}
	if (!version) {
		*out = pick_default(r, first, end);
		goto out_unlock;
	}
	first = entry_pos(r, name, version);
	if (first < end && r->ents[first]->version == version)
		*out = r->ents[first];
	else
		ret = err_set(DPRT_ENOMODEL, "model '%s' has no version %u", name, version);
out_unlock:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

uint32_t repo_match(struct repo *r, const char *name, uint32_t version,
		    struct repo_entry **out, uint32_t cap)
{
	uint32_t i, n = 0;

	pthread_mutex_lock(&r->lock);
	for (i = entry_pos(r, name, 0); i < r->n && !strcmp(r->ents[i]->name, name); i++) {
		if (version && r->ents[i]->version != version)
			continue;
		if (n < cap)
			out[n] = r->ents[i];
		n++;
	}
	pthread_mutex_unlock(&r->lock);
	return n;
}

uint32_t repo_entries(struct repo *r, struct repo_entry **out, uint32_t cap)
{
	uint32_t i, n;

	pthread_mutex_lock(&r->lock);
	n = r->n;
	for (i = 0; i < n && i < cap; i++)
		out[i] = r->ents[i];
	pthread_mutex_unlock(&r->lock);
	return n;
}

void repo_index(struct repo *r, struct repo_info *out, uint32_t cap, uint32_t *n)
{
	uint32_t i, k = 0;

	pthread_mutex_lock(&r->lock);
	for (i = 0; i < r->n; i++) {
		struct repo_entry *e = r->ents[i];

		if (!e->present && get_state(e) == REPO_UNAVAILABLE)
			continue;
		if (k < cap) {
			snprintf(out[k].name, sizeof(out[k].name), "%s", e->name);
			out[k].version = e->version;
			out[k].state = (uint8_t)get_state(e);
			snprintf(out[k].reason, sizeof(out[k].reason), "%s", e->reason);
		}
		k++;
	}
	pthread_mutex_unlock(&r->lock);
	*n = k;
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
	pthread_mutex_lock(&e->r->lock);
	snprintf(buf, len, "%s", e->reason);
	pthread_mutex_unlock(&e->r->lock);
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

/* ------------------------------------------------------------ load */

static bool same_file(const struct repo_entry *e, const struct stat *st)
{
	return e->st_dev == st->st_dev && e->st_ino == st->st_ino &&
	       e->st_size == st->st_size && e->st_mtim.tv_sec == st->st_mtim.tv_sec &&
	       e->st_mtim.tv_nsec == st->st_mtim.tv_nsec;
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

int repo_load_entry(struct repo *r, struct repo_entry *e)
{
	int ret;

	pthread_mutex_lock(&r->lock);
	while (get_state(e) == REPO_LOADING)
		pthread_cond_wait(&r->cond, &r->lock);
	if (get_state(e) == REPO_READY) {
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	set_state(e, REPO_LOADING, NULL);
	pthread_mutex_unlock(&r->lock);

	ret = entry_open(r, e);
	pthread_mutex_lock(&r->lock);
	if (!ret)
		ret = host_ensure(r, e);
	set_state(e, ret ? REPO_FAILED : REPO_READY, ret ? err_msg(ret) : NULL);
	host_settle(r, e);
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (ret)
		log_warn("model '%s' version %u: %s", e->name, e->version, err_msg(ret));
	return ret;
}

void repo_unload_entry(struct repo *r, struct repo_entry *e)
{
	pthread_mutex_lock(&r->lock);
	while (get_state(e) == REPO_LOADING)
		pthread_cond_wait(&r->cond, &r->lock);
	if (get_state(e) != REPO_UNAVAILABLE)
		set_state(e, REPO_UNAVAILABLE, "unloaded");
	host_settle(r, e);
	pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------------ instances */

static int not_ready(const struct repo_entry *e)
{
	return err_set(DPRT_ENOMODEL, "model '%s' version %u is not ready (%s%s%s)", e->name,
		       e->version, repo_state_name(get_state(e)), e->reason[0] ? ": " : "",
		       e->reason);
}

/* A failed re-read of a READY model's weights: the package went bad. */
static bool pkg_went_bad(int code)
{
	return code != DPRT_EOVERLOAD && code != -ENOMEM;
}

int repo_acquire(struct repo *r, struct repo_entry *e, const void **weights)
{
	int ret;

	pthread_mutex_lock(&r->lock);
	if (get_state(e) != REPO_READY) {
		ret = not_ready(e);
		goto out_unlock;
	}
	ret = host_ensure(r, e);
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
	pthread_mutex_unlock(&r->lock);
	return ret;
}

void repo_release(struct repo *r, struct repo_entry *e)
{
	pthread_mutex_lock(&r->lock);
	if (atomic_fetch_sub(&e->users, 1) == 1)
		host_settle(r, e);
	pthread_mutex_unlock(&r->lock);
}
