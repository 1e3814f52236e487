/* SPDX-License-Identifier: MIT */
/* Shared helpers of the sched tests: zoo repositories and requests. */
#ifndef DPRT_TEST_SCHED_HELPERS_H
#define DPRT_TEST_SCHED_HELPERS_H

#include <limits.h>

#include "sched/sched.h"

/* Make an empty repository directory under /tmp; dir gets its path. */
void trepo_make(char *dir, size_t len);
/* Write zoo model `zoo` (fp32, wsrc_random(seed)) as dir/name/version. */
void trepo_add(const char *dir, const char *name, uint32_t version, const char *zoo, uint64_t seed);
/* Flip 16 bytes of dir/name/version/model.dpk at offset off (< 0: from
 * the end). */
void trepo_corrupt(const char *dir, const char *name, uint32_t version, long off);
/* Remove the directory tree. */
void trepo_rm(const char *dir);
/* Bytes of a package's weight region. */
uint64_t trepo_wsize(const char *dir, const char *name, uint32_t version);

/* Options for a test scheduler on dir with no threads. */
struct sched_opts topts(const char *dir, const char *gpus);
struct sched *tsched(const struct sched_opts *o);

/* A request for name/version with random inputs (batch, seq; seq 0 = the
 * model's default); its input buffers are owned by the request's ctx and
 * freed by treq_put. Asserts it could be built. */
struct sched_req *treq(struct sched *s, struct sched_chan *ch, const char *name, uint32_t version,
		       int64_t batch, int64_t seq, uint64_t seed);
void treq_put(struct sched *s, struct sched_req *req);
/* Poll every worker of s (budget each) until n completions arrived on ch;
 * stores them in out. Fails the test if they do not come. */
void tcollect(struct sched *s, struct sched_chan *ch, struct sched_req **out, unsigned n);

#endif
