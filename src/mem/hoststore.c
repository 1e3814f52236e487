/* SPDX-License-Identifier: MIT */
/*
 * Host weight store: pinned, device-mapped memory filled from the package
 * with io_uring. Reads of CHUNK bytes are kept QD deep; as the read front
 * passes the end of a layer, that layer's CRC is checked, so checking
 * overlaps reading.
 */
#define _GNU_SOURCE
#include "mem/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#if HAVE_CUDA
#include "mem/cudrv.h"
#endif

#define CHUNK (4u << 20)
#define QD 16u
#define PAGE 4096u

/* A copy's memory: what a spare keeps of it (a dropped copy's buffer). */
struct hostmem {
	void *base;
	uint64_t cap;	 /* bytes allocated at base (the region, its watermark page) */
	bool mapped;	 /* pinned and device-mapped; ctx holds a primary-context reference */
	bool registered; /* mapped by pinned_map (else cuMemHostAlloc'ed) */
#if HAVE_CUDA
	CUdevice dev;
	CUcontext ctx;
#endif
};

struct hoststore {
	struct hostmem mem;
	uint64_t size;
	struct hoststore_info info;
	/* the watermark: in the page after the region (mapped with it) */
	_Atomic uint32_t *wm;
	_Atomic uint64_t bytes_ready;
	/* sharing (hoststore_load_shared); under share_lock */
	uint32_t refs;
	bool shared;
	uint64_t checksum;
	dev_t fdev; /* the file it was read from */
	ino_t ino;
	struct hoststore *next;
};

/*
 * Copies made by hoststore_load_shared, by package file: one file under
 * many model names (hard or symbolic links) is read once. The checksum is
 * checked too, so a file rewritten in place is not mistaken for its old
 * self. Copies of a file are not shared: each is read and checked against
 * its own CRCs, so a corrupt copy fails as it should. A copy is listed
 * from when it is filled until its last reference is put.
 */
static pthread_mutex_t share_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hoststore *share_list;

_Atomic(void (*)(uint32_t)) hoststore_layer_hook;

/* ------------------------------------------------------------ memory */

/*
 * Pinned, device-mapped memory when the build has CUDA and the machine a
 * driver; plain page-aligned memory otherwise (CPU backend, or a build
 * without CUDA), where DHA is impossible and nothing needs pinning.
 */
#if HAVE_CUDA
#define HUGE (2ull << 20)
#define TOUCH_SLICE (32ull << 20)
#define TOUCH_THREADS 8u

struct touch {
	char *base;
	uint64_t bytes;
};

static void *touch_main(void *arg)
{
	struct touch *t = arg;

	/* fault the slice in (zeroed by the kernel), one write per page
	 * where MADV_POPULATE_WRITE is missing */
	if (madvise(t->base, t->bytes, MADV_POPULATE_WRITE))
		for (uint64_t o = 0; o < t->bytes; o += PAGE)
			((volatile char *)t->base)[o] = 0;
	return NULL;
}

/*
 * Fault [base, base + bytes) in on up to TOUCH_THREADS threads at once:
 * the kernel zeroes every page it hands out, at a few GB/s per thread,
 * which is most of what pinning costs.
 */
static void touch_parallel(char *base, uint64_t bytes)
{
	pthread_t th[TOUCH_THREADS];
	bool started[TOUCH_THREADS] = {false};
	struct touch t[TOUCH_THREADS];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t n = MIN((uint64_t)TOUCH_THREADS, (bytes + TOUCH_SLICE - 1) / TOUCH_SLICE);
	uint64_t per;

	n = MAX(1, MIN(n, cpus > 0 ? (uint64_t)cpus : 1));
	per = ALIGN_UP((bytes + n - 1) / n, HUGE);
	n = (bytes + per - 1) / per; /* rounding per up may leave fewer slices */
	for (uint64_t i = 0; i < n; i++)
		t[i] = (struct touch){.base = base + i * per, .bytes = MIN(per, bytes - i * per)};
	/* slice 0 here, the others on threads (here too if one cannot start) */
	for (uint64_t i = 1; i < n; i++)
		started[i] = !pthread_create(&th[i], NULL, touch_main, &t[i]);
	for (uint64_t i = 0; i < n; i++)
		if (!started[i])
			touch_main(&t[i]);
	for (uint64_t i = 1; i < n; i++)
		if (started[i])
			pthread_join(th[i], NULL);
}

/*
 * Memory in 2 MiB-aligned anonymous pages (transparent huge pages where
 * the kernel gives them), faulted in by several threads, then registered
 * with the driver (device-mapped, portable). cuMemHostAlloc makes the
 * same kind of memory but faults and zeroes it on one thread in 4 KiB
 * pages: 1.8-2.0 GB/s on an H200 host against 15-20 GB/s this way
 * (bench/pinbw.c). *cap becomes the length mapped.
 */
static int pinned_map(uint64_t bytes, void **out, uint64_t *cap)
{
	uint64_t len = ALIGN_UP(bytes, HUGE);
	char *m, *base;
	int ret;

	m = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	base = (char *)ALIGN_UP((uintptr_t)m, HUGE);
	if (base > m)
		munmap(m, (size_t)(base - m));
	if (base + len < m + len + HUGE)
		munmap(base + len, (size_t)(m + len + HUGE - (base + len)));
	madvise(base, len, MADV_HUGEPAGE); /* advice: fine if refused */
	touch_parallel(base, len);
	ret = CU(cuMemHostRegister(base, len,
				   CU_MEMHOSTREGISTER_DEVICEMAP | CU_MEMHOSTREGISTER_PORTABLE));
	if (ret) {
		munmap(base, len);
		return ret;
	}
	*out = base;
	*cap = len;
	return 0;
}

static int pinned_alloc(struct hostmem *m, uint64_t bytes)
{
	CUcontext prev;
	int ret;

	ret = CU(cuDeviceGet(&m->dev, 0));
	if (!ret)
		ret = CU(cuDevicePrimaryCtxRetain(&m->ctx, m->dev));
	if (ret)
		return ret;
	ret = CU(cuCtxPushCurrent(m->ctx));
	if (ret)
		goto out_release;
	ret = pinned_map(bytes, &m->base, &m->cap);
	m->registered = !ret;
	if (ret && ret != -ENOMEM) { /* registration refused: the driver's own allocation */
		log_debug("host weight store: %s; using cuMemHostAlloc", err_msg(ret));
		m->cap = bytes;
		ret = CU(cuMemHostAlloc(&m->base, bytes,
					CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_PORTABLE));
	}
	CU(cuCtxPopCurrent(&prev));
	if (ret)
		goto out_release;
	m->mapped = true;
	return 0;
out_release:
	CU(cuDevicePrimaryCtxRelease(m->dev));
	return ret;
}

static bool pinned_possible(void)
{
	return cudrv_load() == 0;
}

static void pinned_free(struct hostmem *m)
{
	CUcontext prev;

	if (!CU(cuCtxPushCurrent(m->ctx))) {
		if (m->registered) {
			CU(cuMemHostUnregister(m->base));
			munmap(m->base, m->cap);
		} else {
			CU(cuMemFreeHost(m->base));
		}
		CU(cuCtxPopCurrent(&prev));
	}
	CU(cuDevicePrimaryCtxRelease(m->dev));
}
#else
static bool pinned_possible(void)
{
	return false;
}

static int pinned_alloc(struct hostmem *m, uint64_t bytes)
{
	UNUSED(m);
	UNUSED(bytes);
	return -ENODEV;
}

static void pinned_free(struct hostmem *m)
{
	UNUSED(m);
}
#endif

static void hostmem_free(struct hostmem *m)
{
	if (m->mapped)
		pinned_free(m);
	else
		free(m->base);
}

/*
 * Spare buffers. Pinning is not free (pages are faulted, zeroed and locked:
 * 15-20 GB/s with pinned_map, 2 GB/s by cuMemHostAlloc; plain memory is faulted and
 * zeroed on first touch), so a dropped copy's buffer is kept for the next
 * copy of about its size instead of being given back. Keeping one never
 * raises what is held (the copies the owner counts plus the spares): the
 * copy stops being counted as its buffer becomes a spare. A copy made
 * takes the smallest spare that fits it within 1/8 (2 MiB for small ones), then the spares beyond
 * the room the owner has left beside the copies it counts
 * (hoststore_spare_room) are freed, so what is held stays within the
 * owner's limit but for the moment between a copy's charge and its making.
 */
struct spare {
	struct hostmem mem;
	struct spare *next; /* newest first */
};

static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spare *spares;
static uint64_t spare_bytes;
static uint64_t (*spare_room_fn)(void *);
static void *spare_room_arg;
static _Atomic uint64_t spare_reuses;

static void spare_free(struct spare *sp)
{
	hostmem_free(&sp->mem);
	free(sp);
}

/* Under spare_lock: unlink the spares beyond room, returned to be freed. */
static struct spare *spare_trim(uint64_t room)
{
	struct spare **pp = &spares, *out = NULL, *sp;
	uint64_t kept = 0;

	while ((sp = *pp)) {
		if (kept + sp->mem.cap <= room) {
			kept += sp->mem.cap;
			pp = &sp->next;
			continue;
		}
		*pp = sp->next;
		spare_bytes -= sp->mem.cap;
		sp->next = out;
		out = sp;
	}
	return out;
}

static void spare_free_list(struct spare *sp)
{
	struct spare *next;

	for (; sp; sp = next) {
		next = sp->next;
		spare_free(sp);
	}
}

static uint64_t spare_room_now(void)
{
	return spare_room_fn ? spare_room_fn(spare_room_arg) : 0;
}

void hoststore_spare_trim(void)
{
	struct spare *dead;

	pthread_mutex_lock(&spare_lock);
	dead = spare_trim(spare_room_now());
	pthread_mutex_unlock(&spare_lock);
	spare_free_list(dead);
}

void hoststore_spare_room(uint64_t (*room)(void *arg), void *arg)
{
	pthread_mutex_lock(&spare_lock);
	spare_room_fn = room;
	spare_room_arg = arg;
	pthread_mutex_unlock(&spare_lock);
	hoststore_spare_trim();
}

uint64_t hoststore_spare_reuses(void)
{
	return atomic_load(&spare_reuses);
}

/* pinned_map rounds a copy up to 2 MiB: a small copy's own buffer fits it again */
#define SPARE_SLACK (2ull << 20)

/* A spare of cap in [bytes, bytes + max(bytes/8, 2 MiB)] for hs, the smallest; then
 * the spares beyond the room left go. */
static bool spare_take(struct hoststore *hs, uint64_t bytes, bool mapped)
{
	struct spare **pp, **best = NULL, *sp = NULL, *dead;

	pthread_mutex_lock(&spare_lock);
	for (pp = &spares; *pp; pp = &(*pp)->next)
		if ((*pp)->mem.mapped == mapped && (*pp)->mem.cap >= bytes &&
		    (*pp)->mem.cap <= bytes + MAX(bytes / 8, SPARE_SLACK) &&
		    (!best || (*pp)->mem.cap < (*best)->mem.cap))
			best = pp;
	if (best) {
		sp = *best;
		*best = sp->next;
		spare_bytes -= sp->mem.cap;
	}
	dead = spare_trim(spare_room_now());
	pthread_mutex_unlock(&spare_lock);
	spare_free_list(dead);
	if (!sp)
		return false;
	hs->mem = sp->mem;
	free(sp);
	atomic_fetch_add(&spare_reuses, 1);
	return true;
}

/* Keep hs's buffer as a spare (while an owner has set a room). */
static bool spare_keep(struct hoststore *hs)
{
	struct spare *sp = malloc(sizeof(*sp));
	bool kept = false;

	if (!sp)
		return false;
	pthread_mutex_lock(&spare_lock);
	if (spare_room_fn) {
		sp->mem = hs->mem;
		sp->next = spares;
		spares = sp;
		spare_bytes += hs->mem.cap;
		kept = true;
	}
	pthread_mutex_unlock(&spare_lock);
	if (!kept)
		free(sp);
	return kept;
}

int hoststore_create(uint64_t size, struct hoststore **out)
{
	struct hoststore *hs = calloc(1, sizeof(*hs));
	uint64_t bytes = ALIGN_UP(size, PAGE) + PAGE; /* + the watermark's page */
	uint64_t t0 = clock_ns();
	char b[32];
	int ret;

	if (!hs)
		return -ENOMEM;
	hs->size = size;
	hs->refs = 1;
	hs->mem.cap = bytes;
	if (spare_take(hs, bytes, pinned_possible())) {
		hs->info.recycled = true;
	} else if (pinned_possible()) {
		ret = pinned_alloc(&hs->mem, bytes);
		if (ret) {
			free(hs);
			return ret;
		}
	} else {
		err_clear();
		if (posix_memalign(&hs->mem.base, PAGE, bytes)) {
			free(hs);
			return err_set(-ENOMEM, "host weight store: cannot allocate %s",
				       fmt_bytes(bytes, b, sizeof(b)));
		}
	}
	hs->info.size = size;
	hs->info.mapped = hs->mem.mapped;
	hs->info.alloc_ms = clock_ms_since(t0);
	hs->wm = (_Atomic uint32_t *)(void *)((char *)hs->mem.base + ALIGN_UP(size, PAGE));
	atomic_init(hs->wm, 0);
	*out = hs;
	return 0;
}

static void store_free(struct hoststore *hs)
{
	if (!spare_keep(hs))
		hostmem_free(&hs->mem);
	free(hs);
}

bool hoststore_put(struct hoststore *hs)
{
	struct hoststore **pp;
	bool last;

	if (!hs)
		return false;
	pthread_mutex_lock(&share_lock);
	last = !--hs->refs;
	if (last && hs->shared)
		for (pp = &share_list; *pp; pp = &(*pp)->next)
			if (*pp == hs) {
				*pp = hs->next;
				break;
			}
	pthread_mutex_unlock(&share_lock);
	if (last)
		store_free(hs);
	return last;
}

bool hoststore_put_unless_last(struct hoststore *hs)
{
	bool put = false;

	if (!hs)
		return false;
	pthread_mutex_lock(&share_lock);
	if (hs->refs > 1) {
		hs->refs--;
		put = true;
	}
	pthread_mutex_unlock(&share_lock);
	return put;
}

void hoststore_unshare(struct hoststore *hs)
{
	struct hoststore **pp;

	pthread_mutex_lock(&share_lock);
	if (hs->shared)
		for (pp = &share_list; *pp; pp = &(*pp)->next)
			if (*pp == hs) {
				*pp = hs->next;
				break;
			}
	hs->shared = false;
	pthread_mutex_unlock(&share_lock);
}

void hoststore_destroy(struct hoststore *hs)
{
	hoststore_put(hs);
}

/* Under share_lock: a listed copy of p's file, with a reference taken. */
static struct hoststore *share_find(const struct pkg *p, const struct stat *st)
{
	struct hoststore *hs;

	for (hs = share_list; hs; hs = hs->next)
		if (hs->fdev == st->st_dev && hs->ino == st->st_ino &&
		    hs->checksum == pkg_checksum(p) && hs->size == pkg_graph(p)->weights_size) {
			hs->refs++;
			return hs;
		}
	return NULL;
}

struct hoststore *hoststore_get_shared(const struct pkg *p)
{
	struct hoststore *hs;
	struct stat st;

	if (fstat(pkg_fd(p), &st))
		return NULL;
	pthread_mutex_lock(&share_lock);
	hs = share_find(p, &st);
	pthread_mutex_unlock(&share_lock);
	return hs;
}

int hoststore_load_shared(struct pkg *p, struct hoststore **out, bool *made)
{
	return hoststore_load_shared_watched(p, NULL, out, made);
}

int hoststore_load_shared_watched(struct pkg *p, const struct hoststore_watch *wt,
				  struct hoststore **out, bool *made)
{
	struct hoststore *hs, *other;
	struct stat st;
	int ret;

	*made = false;
	if (fstat(pkg_fd(p), &st))
		return err_set(-errno, "%s: %s", pkg_path(p), strerror(errno));
	hs = hoststore_get_shared(p);
	if (hs)
		goto out;
	ret = hoststore_load_watched(p, wt, &hs);
	if (ret)
		return ret;
	/* another thread may have filled the same package meanwhile */
	pthread_mutex_lock(&share_lock);
	other = share_find(p, &st);
	if (!other) {
		hs->shared = true;
		hs->fdev = st.st_dev;
		hs->ino = st.st_ino;
		hs->checksum = pkg_checksum(p);
		hs->next = share_list;
		share_list = hs;
		*made = true;
	}
	pthread_mutex_unlock(&share_lock);
	if (other) { /* a watcher may still hold a reference to ours */
		hoststore_put(hs);
		hs = other;
	}
out:
	*out = hs;
	return 0;
}

void *hoststore_base(const struct hoststore *hs)
{
	return hs->mem.base;
}

void hoststore_get_info(const struct hoststore *hs, struct hoststore_info *info)
{
	*info = hs->info;
}

struct hoststore *hoststore_get(struct hoststore *hs)
{
	pthread_mutex_lock(&share_lock);
	hs->refs++;
	pthread_mutex_unlock(&share_lock);
	return hs;
}

const _Atomic uint32_t *hoststore_watermark(const struct hoststore *hs)
{
	return hs->wm;
}

uint64_t hoststore_bytes_ready(const struct hoststore *hs)
{
	return atomic_load_explicit(&hs->bytes_ready, memory_order_acquire);
}

/* ------------------------------------------------------------ reading */

struct req {
	uint64_t off, len; /* region offset and bytes still to read */
	uint32_t chunk;
};

/* One load: the region [0, size) of the file at file_off goes to base. */
struct reader {
	struct hoststore *hs;
	const struct hoststore_watch *wt;
	uint64_t t0;
	struct pkg *p;
	const struct graph *g;
	const char *path;
	int fd;
	char *base;
	uint64_t file_off, size, need; /* need: end of the last layer */
	uint64_t next, front;	       /* next byte to ask for; all done below front */
	uint32_t next_layer, n_chunks;
	uint8_t *done;
	struct req reqs[QD];
	uint32_t free_reqs[QD], n_free;
	int inflight;
};

static int rd_error(const struct reader *r, uint64_t off, int err)
{
	return err_set(err, "%s: reading weights at byte %llu: %s", r->path,
		       (unsigned long long)(r->file_off + off), strerror(-err));
}

/*
 * Layer next_layer is checked: pass the watermark over it. Release: the
 * layer's bytes (read by io_uring, checked here) before the count; pairs
 * with the acquire loads of whoever reads the layer once the count passed
 * it (a device's wait on the mapped word orders the same way: the word is
 * written after the bytes, both in host memory).
 */
static void rd_publish(struct reader *r)
{
	const struct layer *ly = &r->g->layers[r->next_layer];
	uint64_t bytes = ALIGN_UP(ly->offset + ly->nbytes, LAYER_ALIGN);

	r->next_layer++;
	if (r->next_layer <= atomic_load_explicit(r->hs->wm, memory_order_relaxed))
		return; /* a second pass (buffered after O_DIRECT) */
	atomic_store_explicit(&r->hs->bytes_ready, MIN(bytes, r->size), memory_order_release);
	atomic_store_explicit(r->hs->wm, r->next_layer, memory_order_release);
	if (r->wt)
		r->wt->fn(r->wt->arg, r->hs, r->next_layer, MIN(bytes, r->size),
			  clock_ns() - r->t0);
}

/* Check every layer whose padded range now lies wholly below the front. */
static int rd_verify(struct reader *r)
{
	void (*hook)(uint32_t) = atomic_load(&hoststore_layer_hook);
	int ret;

	while (r->front < r->size && r->done[r->front / CHUNK])
		r->front = MIN(r->size, r->front + CHUNK);
	while (r->next_layer < r->g->n_layers) {
		const struct layer *ly = &r->g->layers[r->next_layer];

		if (ALIGN_UP(ly->offset + ly->nbytes, LAYER_ALIGN) > r->front)
			break;
		if (hook)
			hook(r->next_layer);
		ret = pkg_verify_layer(r->p, r->next_layer, r->base);
		if (ret)
			return ret;
		rd_publish(r);
	}
	return 0;
}

static void rd_submit(struct reader *r, struct io_uring *ring, struct req *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	/* The ring has QD entries and at most QD requests are out. */
	io_uring_prep_read(sqe, r->fd, r->base + q->off, (unsigned)q->len, r->file_off + q->off);
	io_uring_sqe_set_data(sqe, q);
	r->inflight++;
}

static void rd_fill(struct reader *r, struct io_uring *ring)
{
	struct req *q;

	while (r->n_free && r->next < r->size) {
		q = &r->reqs[r->free_reqs[--r->n_free]];
		q->off = r->next;
		q->len = MIN(CHUNK, r->size - r->next);
		q->chunk = (uint32_t)(r->next / CHUNK);
		r->next += q->len;
		rd_submit(r, ring, q);
	}
}

/* One completion: done, short (ask for the rest), EOF or an error. A
 * regular file reads short only at its end: past the last layer that is the
 * padding of the region, which reads as zeros. */
static int rd_complete(struct reader *r, struct io_uring *ring, struct req *q, int res)
{
	r->inflight--;
	if (res < 0)
		return rd_error(r, q->off, res);
	if ((uint64_t)res < q->len && q->off + (uint64_t)res >= r->need) {
		memset(r->base + q->off + res, 0, q->len - (uint64_t)res);
		res = (int)q->len;
	}
	if (res == 0)
		return err_set(DPRT_EBADPKG,
			       "%s: truncated: the weight region ends at byte "
			       "%llu, its layers need %llu",
			       r->path, (unsigned long long)(r->file_off + q->off),
			       (unsigned long long)(r->file_off + r->need));
	q->off += (uint64_t)res;
	q->len -= (uint64_t)res;
	if (q->len) {
		rd_submit(r, ring, q);
		return 0;
	}
	r->done[q->chunk] = 1;
	r->free_reqs[r->n_free++] = (uint32_t)(q - r->reqs);
	return 0;
}

static int rd_run(struct reader *r)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	uint32_t i;
	int ret;

	ret = io_uring_queue_init(QD, &ring, 0);
	if (ret)
		return ret;
	for (i = 0; i < QD; i++)
		r->free_reqs[i] = i;
	r->n_free = QD;
	r->inflight = 0;
	while (!ret && r->next_layer < r->g->n_layers) {
		rd_fill(r, &ring);
		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0)
			break;
		ret = 0;
		while (!ret && io_uring_peek_cqe(&ring, &cqe) == 0) {
			ret = rd_complete(r, &ring, io_uring_cqe_get_data(cqe), cqe->res);
			io_uring_cqe_seen(&ring, cqe);
		}
		if (!ret)
			ret = rd_verify(r);
	}
	/* Reads still in flight (after an error, or of the padding past the
	 * last layer) finish before their memory can be freed or reused. */
	io_uring_submit(&ring);
	while (r->inflight > 0 && io_uring_wait_cqe(&ring, &cqe) == 0) {
		r->inflight--;
		io_uring_cqe_seen(&ring, cqe);
	}
	io_uring_queue_exit(&ring);
	return ret;
}

/* Mark the chunks below the read front done and check finished layers. */
static int rd_advance(struct reader *r, uint64_t to)
{
	uint64_t end;

	while (r->next < to) {
		end = MIN(to, (r->next / CHUNK + 1) * CHUNK);
		if (end % CHUNK == 0 || end == r->size)
			r->done[r->next / CHUNK] = 1;
		r->next = end;
	}
	return rd_verify(r);
}

/* Without io_uring (old kernel, seccomp): plain preads. */
static int rd_pread(struct reader *r)
{
	uint64_t len;
	ssize_t n;
	int ret;

	while (r->next < r->size && r->next_layer < r->g->n_layers) {
		len = MIN(CHUNK - r->next % CHUNK, r->size - r->next);
		n = pread(r->fd, r->base + r->next, len, (off_t)(r->file_off + r->next));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rd_error(r, r->next, -errno);
		if (n == 0 && r->next < r->need)
			return err_set(DPRT_EBADPKG,
				       "%s: truncated weight region (ends at byte "
				       "%llu)",
				       r->path, (unsigned long long)(r->file_off + r->next));
		if (n == 0) {
			memset(r->base + r->next, 0, r->size - r->next);
			n = (ssize_t)(r->size - r->next);
		}
		ret = rd_advance(r, r->next + (uint64_t)n);
		if (ret)
			return ret;
	}
	return 0;
}

static int rd_open(struct reader *r, bool direct)
{
	int flags = O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0);

	r->fd = open(r->path, flags);
	if (r->fd < 0)
		return -errno;
	return 0;
}

static void rd_reset(struct reader *r)
{
	memset(r->done, 0, r->n_chunks);
	r->next = r->front = 0;
	r->next_layer = 0;
}

/* Read with O_DIRECT where possible; if the file system refuses it (open
 * or the first read fails with EINVAL), read buffered. */
static int rd_all(struct reader *r, bool *direct)
{
	int ret = -EINVAL;

	*direct = r->file_off % PAGE == 0 && r->size % PAGE == 0 && (uintptr_t)r->base % PAGE == 0;
	if (*direct && rd_open(r, true) == 0) {
		ret = rd_run(r);
		close(r->fd);
		if (ret != -EINVAL && ret != -ENOSYS && ret != -EPERM)
			return ret;
		if (ret == -EINVAL)
			err_clear();
	}
	*direct = false;
	rd_reset(r);
	ret = rd_open(r, false);
	if (ret)
		return err_set(ret, "%s: cannot open: %s", r->path, strerror(-ret));
	ret = rd_run(r);
	if (ret == -ENOSYS || ret == -EPERM) {
		rd_reset(r);
		ret = rd_pread(r);
	}
	close(r->fd);
	return ret;
}

int hoststore_load(struct pkg *p, struct hoststore **out)
{
	return hoststore_load_watched(p, NULL, out);
}

int hoststore_load_watched(struct pkg *p, const struct hoststore_watch *wt, struct hoststore **out)
{
	const struct graph *g = pkg_graph(p);
	struct reader r = {.p = p, .g = g, .path = pkg_path(p), .wt = wt};
	struct hoststore *hs;
	uint64_t t0 = clock_ns();
	int ret;

	ret = hoststore_create(g->weights_size, &hs);
	if (ret)
		return ret;
	r.hs = hs;
	r.t0 = t0;
	if (wt)
		wt->fn(wt->arg, hs, 0, 0, 0);
	r.base = hs->mem.base;
	r.file_off = pkg_weights_offset(p);
	r.size = g->weights_size;
	if (g->n_layers)
		r.need = g->layers[g->n_layers - 1].offset + g->layers[g->n_layers - 1].nbytes;
	r.n_chunks = (uint32_t)((r.size + CHUNK - 1) / CHUNK);
	r.done = calloc(r.n_chunks ? r.n_chunks : 1, 1);
	if (!r.done) {
		ret = -ENOMEM;
		goto out_destroy;
	}
	ret = rd_all(&r, &hs->info.direct);
	free(r.done);
	if (ret)
		goto out_destroy;
	hs->info.read_ms = clock_ms_since(t0);
	hs->info.verified = r.next_layer;
	*out = hs;
	return 0;
out_destroy:
	/* Release: whoever waits on the watermark stops waiting and fails
	 * (a watcher holds its own reference, so the memory stays). */
	atomic_store_explicit(hs->wm, HOSTSTORE_WM_FAILED, memory_order_release);
	if (wt)
		wt->fn(wt->arg, hs, HOSTSTORE_WM_FAILED, 0, clock_ns() - t0);
	hoststore_destroy(hs);
	return ret;
}
