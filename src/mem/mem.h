/* SPDX-License-Identifier: MIT */
/*
 * mem: the host weight store and per-GPU device memory pools.
 *
 * Host weight store: ONE copy of a model's weight region (package layout,
 * g->weights_size bytes) in pinned, device-mapped host memory
 * (huge-page memory registered with DEVICEMAP | PORTABLE), so any GPU can copy from it at
 * full PCIe speed or read it in place (DHA). Filled from the package file
 * with io_uring reads (O_DIRECT where the file system allows it) and checked
 * layer by layer against the package's CRCs. On a machine without a CUDA
 * driver the store is plain page-aligned memory (good for the CPU backend).
 *
 * Device pool: one per GPU, owned by that GPU's worker thread. It reserves
 * device memory in large chunks (cuMemAlloc at start or when it must grow)
 * and sub-allocates layer ranges and activation arenas from them; nothing on
 * a request's path allocates device memory. Addresses are CUdeviceptr values
 * carried as uint64_t, so this header holds no CUDA type.
 */
#ifndef DPRT_MEM_H
#define DPRT_MEM_H

#include "model/model.h"

/* ---- host weight store ---- */
struct hoststore;

struct hoststore_info {
	uint64_t size;	   /* bytes of the region */
	bool mapped;	   /* pinned and device-mapped (DHA and fast copies) */
	bool direct;	   /* read with O_DIRECT (hoststore_load only) */
	double read_ms;	   /* reading and checking the file (with alloc_ms) */
	double alloc_ms;   /* getting the memory (pinning it, unless recycled) */
	bool recycled;	   /* a dropped copy's pinned buffer (hoststore_spare_room) */
	uint32_t verified; /* layers whose CRC was checked */
};

/*
 * Make an empty store of size bytes (contents undefined), pinned and
 * device-mapped when a CUDA driver and GPU are present. The store holds a
 * reference on GPU 0's primary context while it lives (a pinned allocation
 * belongs to a context), so it works from any thread. 0 or -ENOMEM /
 * DPRT_EDEVICE with err_set. Any thread.
 */
int hoststore_create(uint64_t size, struct hoststore **out);

/*
 * Make a store for package p and read its whole weight region into it with
 * io_uring, checking every layer's CRC as its bytes arrive. Errors name the
 * file (truncated, I/O error, CRC mismatch of a layer). Any thread; p must
 * not be used by another thread meanwhile.
 */
int hoststore_load(struct pkg *p, struct hoststore **out);

/*
 * Shared copies: a package file under many model names (hard or symbolic
 * links; same file and checksum) has one store. load_shared returns a listed copy of p's
 * checksum with a reference taken (*made false), else loads one as
 * hoststore_load does and lists it (*made true). get_shared only looks:
 * a reference to a listed copy, or NULL. Any thread.
 */
int hoststore_load_shared(struct pkg *p, struct hoststore **out, bool *made);
struct hoststore *hoststore_get_shared(const struct pkg *p);
/* Drop a reference; the last one frees the store (no device may still
 * read it). Returns whether it was the last. NULL is ignored. Any thread. */
bool hoststore_put(struct hoststore *hs);
/* Drop a reference unless it is the last (which a caller then frees out
 * of its locks); whether it dropped one. */
bool hoststore_put_unless_last(struct hoststore *hs);
/* Take a copy off the shared list (hoststore_get_shared no longer finds
 * it): one that is being dropped. Any thread. */
void hoststore_unshare(struct hoststore *hs);
/* hoststore_put, ignoring the result. */
void hoststore_destroy(struct hoststore *hs);
/*
 * Recycle pinned buffers: while room is set, a freed store's buffer is kept
 * as a spare, a new store takes the smallest spare that fits it within 1/8
 * instead of pinning memory anew, and then the spares beyond room(arg)
 * bytes (the host memory the owner has left beside the copies it counts)
 * are freed. Asked on every create, any thread: room must be cheap and
 * lock-free. NULL (the default) keeps none and frees the spares. One owner
 * at a time.
 */
void hoststore_spare_room(uint64_t (*room)(void *arg), void *arg);
/* Free the spares beyond room(arg). */
void hoststore_spare_trim(void);
/* Stores made on a spare buffer so far (process-wide). Spares are pinned
 * where stores are (hoststore_create), plain memory elsewhere. */
uint64_t hoststore_spare_reuses(void);

void *hoststore_base(const struct hoststore *hs);
void hoststore_get_info(const struct hoststore *hs, struct hoststore_info *info);
/* Take a reference (put it with hoststore_put). Any thread. */
struct hoststore *hoststore_get(struct hoststore *hs);

/*
 * Streamed reads. A store's watermark is a 32-bit word in the page after
 * its region (so in the same pinned, device-mapped allocation: a GPU can
 * wait on it with cuStreamWaitValue32): the number of layers, in execution
 * order, whose bytes are read and whose CRC is checked. A reader may use
 * layer i once the word (loaded with acquire) exceeds i and is not
 * HOSTSTORE_WM_FAILED, which a failed read leaves so that no one waits for
 * good. A store made by hoststore_create stays at 0; a loaded one is at
 * the package's layer count.
 */
/* Above any layer count, and >= any as cuStreamWaitValue32 compares
 * (cyclic: (int32_t)(word - value) >= 0). */
#define HOSTSTORE_WM_FAILED 0x7fffffffu
const _Atomic uint32_t *hoststore_watermark(const struct hoststore *hs);
/* Bytes of the region below the watermark (acquire). Any thread. */
uint64_t hoststore_bytes_ready(const struct hoststore *hs);

/* What a streamed read tells its caller, on the reading thread. */
struct hoststore_watch {
	/*
	 * Called with layers == 0 once the store exists (before any read;
	 * take a reference with hoststore_get to use it while it fills), then
	 * each time the watermark passes a layer (bytes: below the watermark,
	 * ns: since the read began), and with HOSTSTORE_WM_FAILED when the
	 * read failed (the store is put after). Must be quick.
	 */
	void (*fn)(void *arg, struct hoststore *hs, uint32_t layers, uint64_t bytes, uint64_t ns);
	void *arg;
};

/* hoststore_load and hoststore_load_shared with a watch (NULL: none; a
 * listed copy found by load_shared is not read and calls nothing). */
int hoststore_load_watched(struct pkg *p, const struct hoststore_watch *wt, struct hoststore **out);
int hoststore_load_shared_watched(struct pkg *p, const struct hoststore_watch *wt,
				  struct hoststore **out, bool *made);
/* Tests: called on the reading thread before each layer is checked (it
 * may sleep to slow the read down). */
extern _Atomic(void (*)(uint32_t layer)) hoststore_layer_hook;

/* ---- device pool ---- */
struct devpool;

#define DEVPOOL_ALIGN 256u

/*
 * Make a pool for the GPU whose context is current on the calling thread.
 * It grows by chunk bytes at a time (a request larger than chunk gets a
 * chunk of its own) up to limit bytes reserved in all (0 = no limit but the
 * GPU's memory). Reserves nothing until the first allocation unless
 * reserve > 0. 0 or an error with err_set. Owner thread only (all calls).
 */
int devpool_create(uint64_t chunk, uint64_t limit, uint64_t reserve, struct devpool **out);
/* Return every chunk to the driver; all allocations die with it. */
void devpool_destroy(struct devpool *p);

/*
 * Sub-allocate size bytes (DEVPOOL_ALIGN-aligned) for what (named in the
 * error). Returns 0 and the device address, or -ENOMEM with err_set when
 * the limit or the GPU's memory would be exceeded.
 */
int devpool_alloc(struct devpool *p, uint64_t size, const char *what, uint64_t *addr);
/* Give back an allocation (0 is ignored). The chunk stays reserved. */
void devpool_free(struct devpool *p, uint64_t addr);
/*
 * Sub-allocate exactly [addr, addr + size) (size rounded up as by
 * devpool_alloc) if that range lies in one free block: for a model whose
 * weights should land where they were before its eviction. Never grows
 * the pool and sets no error: 0, -EBUSY (not free, or outside the pool),
 * -EINVAL (addr 0 or not DEVPOOL_ALIGN-aligned) or -ENOMEM.
 */
int devpool_alloc_at(struct devpool *p, uint64_t addr, uint64_t size);

/* Reserve from the driver up front until bytes are reserved in all (one
 * chunk; nothing if already), so that later allocations up to there never
 * call cuMemAlloc. 0 or -ENOMEM / DPRT_EDEVICE with err_set. */
int devpool_reserve(struct devpool *p, uint64_t bytes);
/* Bytes reserved from the driver, and bytes handed out. */
uint64_t devpool_reserved(const struct devpool *p);
uint64_t devpool_used(const struct devpool *p);
/* Chunks reserved from the driver (cuMemAlloc calls) since creation. */
uint64_t devpool_grows(const struct devpool *p);

#endif
