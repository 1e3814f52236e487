/* SPDX-License-Identifier: MIT */
/*
 * base: errors, logging, clock, checksums, arenas and small helpers.
 *
 * Error convention (whole project): an action returns 0 or a negative code,
 * either -errno or one of enum dprt_err (include/dprt.h). A function that fails for a reason a
 * user must read (a bad file, a wrong shape) also records a message with
 * err_set(); the caller that reports to the user prints err_msg().
 * Thread-safe: the message buffer is per thread.
 */
#ifndef DPRT_BASE_H
#define DPRT_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a)-1) / (a) * (a))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define UNUSED(x) ((void)(x))

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* enum dprt_err and dprt_strerror() are public: include/dprt.h (its error
 * part alone; the embedding API's names stay out of dprt's sources). */
#define DPRT_ERRORS_ONLY
#include "dprt.h"
#undef DPRT_ERRORS_ONLY

/* Record a message for this thread's last error; returns code. */
int err_set(int code, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* This thread's last message, or dprt_strerror(code) if none was set
 * since err_clear(). Never NULL. */
const char *err_msg(int code);
void err_clear(void);

/* ---- logging ---- */
enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
extern enum log_level log_threshold;
void log_set_level(enum log_level lvl);
void log_msg(enum log_level lvl, const char *fmt, ...) PRINTF_LIKE(2, 3);
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_threshold >= LOG_DEBUG)                                                    \
			log_msg(LOG_DEBUG, __VA_ARGS__);                                           \
	} while (0)

/* ---- clock ---- */
/* Monotonic time in nanoseconds. Any thread, never fails. */
uint64_t clock_ns(void);
static inline double clock_ms_since(uint64_t t0)
{
	return (double)(clock_ns() - t0) / 1e6;
}

/* ---- checksums ---- */
/* CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2.
 * Start with crc = 0; feed chunks by passing the previous result. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
/* The same CRC by the portable table path, whatever the CPU: lets tests
 * check the hardware path against it. */
uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len);
/* 64-bit FNV-1a, for keys and combined checksums. */
uint64_t hash64(uint64_t h, const void *buf, size_t len);
#define HASH64_INIT 0xcbf29ce484222325ull

/* ---- arena: bump allocator, freed all at once ---- */
struct arena {
	char *base;
	size_t size, used;
};
int arena_init(struct arena *a, size_t size);
void arena_fini(struct arena *a);
/* Returns NULL when full; align must be a power of two. */
void *arena_alloc(struct arena *a, size_t size, size_t align);
static inline void arena_reset(struct arena *a)
{
	a->used = 0;
}

/* ---- small helpers ---- */
/* Parse "123", "4K", "1.5G", "512MiB" into bytes. Returns 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out);
/* 10^k for 0 <= k <= 22: the powers of ten a double holds exactly. */
double pow10_exact(int k);
/* snprintf(out, 32, "%.*g", prec, v), byte for byte, for finite v and prec
 * 1..17; ~10x faster for prec <= 15 (JSON tensors). Returns the length. */
size_t fmt_g(char *out, double v, int prec);
/* mkdir -p: make path and its missing parents (0755). 0, or an error with
 * err_set naming the directory that could not be made. */
int mkdir_p(const char *path);
/* Format bytes as "437.9 MB" (decimal, like the paper). */
const char *fmt_bytes(uint64_t n, char *buf, size_t len);
/* fp16/bf16 <-> fp32, exact round-to-nearest-even. */
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/* xoshiro256** PRNG, deterministic from a seed. */
struct rng {
	uint64_t s[4];
};
void rng_seed(struct rng *r, uint64_t seed);
static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t x = s[1] * 5;
	uint64_t res = ((x << 7) | (x >> 57)) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = (s[3] << 45) | (s[3] >> 19);
	return res;
}
/* Uniform float in [-1, 1). */
static inline float rng_unit(struct rng *r)
{
	return (float)((int64_t)rng_next(r) >> 40) * (1.0f / 8388608.0f);
}

/* ---- knobs: dprt's environment variables (knobs.c) ---- */

#define KNOBS_PATH_LEN 4096

/*
 * Every environment variable that tunes dprt, parsed. 'dprt --help' lists
 * them with their defaults (knobs_help). A variable unset or empty takes
 * its default; an invalid value is reported once (log warning naming the
 * variable and the default) and takes the default.
 */
struct dprt_knobs {
	/* CUDA backend, read when a model is made */
	bool cuda_graphs;  /* DPRT_CUDA_GRAPHS (1): replay runs as CUDA graphs */
	bool cuda_lt;	   /* DPRT_CUDA_LT (1): cuBLASLt GEMMs, fused epilogues */
	bool cuda_lt_gelu; /* DPRT_CUDA_LT_GELU (1): GELU epilogue too (16-bit) */
	bool cuda_flash;   /* DPRT_CUDA_FLASH (1): fused attention candidates */
	int cuda_attn;	   /* DPRT_CUDA_ATTN: 0 by timing (default), -1
			    * "unfused", 1, 2 or 4: fused with W warps */
	bool cudnn_find;   /* DPRT_CUDNN_FIND (0): conv algorithms by timing */
	/* CUDA cold starts, read when a cold model is made */
	bool cold_graph;   /* DPRT_COLD_GRAPH (1): one captured graph */
	bool cold_promote; /* DPRT_COLD_PROMOTE (0): promote DHA layers */
	bool cold_defer;   /* DPRT_COLD_DEFER (1): moved weights' graphs are
			    * re-recorded when idle, the run eager */
	bool evict_place;  /* DPRT_EVICT_PLACE (1): evict the idle models
			    * where a cold model's weights were */
	bool pt_direct;	   /* DPRT_PT_DIRECT (0): helpers copy host to target */
	/* CUDA devices, read when a device is warmed up; 0: none */
	uint64_t cuda_pool_bytes;  /* DPRT_CUDA_POOL_MB: pool reserved, bytes */
	uint64_t cuda_arena_bytes; /* DPRT_CUDA_ARENA_MB: arena reserved, bytes */
	/* virtual CPU devices, read at each cold start; 0: unpaced */
	uint64_t cpu_link_bw; /* DPRT_CPU_LINK_MBS: a simulated link, bytes/s */
	/* Paths; "" when unset */
	char plan_repo[KNOBS_PATH_LEN]; /* PLAN_REPO: root of plan directories */
	char cache[KNOBS_PATH_LEN];	/* DPRT_CACHE: demo repository's parent */
};

/*
 * Fill k from get (getenv or a stand-in), every field its default where
 * the variable is unset, empty or invalid; each invalid value is logged as
 * a warning. Returns the number of invalid values. Any thread.
 */
int knobs_parse(struct dprt_knobs *k, const char *(*get)(const char *name));
/* The process's knobs, parsed from the environment at the first call
 * (pthread_once); read-only afterwards. Any thread. */
const struct dprt_knobs *knobs_get(void);
/* Parse the environment again (tests and benchmarks that change it with
 * setenv). Not while any other thread may call knobs_get. */
void knobs_reload(void);
/* Print the "Environment:" section of 'dprt --help': every variable, its
 * default and its meaning. Any thread. */
void knobs_help(FILE *f);

#endif
