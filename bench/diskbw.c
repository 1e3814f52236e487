/* SPDX-License-Identifier: MIT */
/*
 * Raw read bandwidth of a set of files, the way the host weight store
 * reads them: O_DIRECT (buffered where the file system refuses it)
 * io_uring reads of 4 MiB kept QD deep, files spread over T threads.
 *
 *   diskbw [-t THREADS] [-q QD] [-c CHUNK_MIB] FILE...
 *
 * Prints "bytes B seconds S GBps G direct D" (D: files read with O_DIRECT).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_QD 256u

static char **files;
static int n_files;
static _Atomic int next_file;
static _Atomic uint64_t total_bytes;
static _Atomic int n_direct, failed;
static unsigned qd = 16, chunk = 4u << 20;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Read one file whole into bufs (qd chunks, reused); bytes read or < 0. */
static int64_t read_file(struct io_uring *ring, int fd, uint64_t size, char **bufs)
{
	uint64_t next = 0, done = 0;
	unsigned inflight = 0, i, free_n = qd, freel[MAX_QD];
	struct io_uring_cqe *cqe;

	for (i = 0; i < qd; i++)
		freel[i] = i;
	while (done < size) {
		while (free_n && next < size) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
			unsigned b = freel[--free_n];
			uint64_t len = size - next < chunk ? size - next : chunk;

			/* O_DIRECT: whole pages (the tail reads short at EOF) */
			len = (len + 4095) & ~4095ull;
			io_uring_prep_read(sqe, fd, bufs[b], (unsigned)len, next);
			io_uring_sqe_set_data64(sqe, b);
			next += chunk;
			inflight++;
		}
		if (!inflight) /* a short read before the end */
			return -EIO;
		if (io_uring_submit_and_wait(ring, 1) < 0)
			return -1;
		while (io_uring_peek_cqe(ring, &cqe) == 0) {
			if (cqe->res < 0)
				return cqe->res;
			done += (uint64_t)cqe->res;
			freel[free_n++] = (unsigned)cqe->user_data;
			inflight--;
			io_uring_cqe_seen(ring, cqe);
			if (done >= size)
				break;
		}
	}
	while (inflight-- && io_uring_wait_cqe(ring, &cqe) == 0)
		io_uring_cqe_seen(ring, cqe);
	return (int64_t)(done < size ? done : size);
}

static int open_file(const char *path, int *direct)
{
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);

	*direct = fd >= 0;
	return fd >= 0 ? fd : open(path, O_RDONLY | O_CLOEXEC);
}

static void *reader(void *arg)
{
	struct io_uring ring;
	char *bufs[MAX_QD];
	unsigned i;
	int f;

	(void)arg;
	if (io_uring_queue_init(qd, &ring, 0))
		return NULL;
	for (i = 0; i < qd; i++)
		if (posix_memalign((void **)&bufs[i], 4096, chunk))
			return NULL;
	while ((f = atomic_fetch_add(&next_file, 1)) < n_files) {
		struct stat st;
		int64_t n;
		int fd, direct;

		fd = open_file(files[f], &direct);
		if (fd < 0 || fstat(fd, &st)) {
			fprintf(stderr, "diskbw: %s: %s\n", files[f], strerror(errno));
			atomic_store(&failed, 1);
			continue;
		}
		n = read_file(&ring, fd, (uint64_t)st.st_size, bufs);
		if (n < 0 && direct) { /* the file system refuses O_DIRECT reads */
			close(fd);
			fd = open(files[f], O_RDONLY | O_CLOEXEC);
			direct = 0;
			n = fd < 0 ? -1 : read_file(&ring, fd, (uint64_t)st.st_size, bufs);
		}
		if (n < 0) {
			fprintf(stderr, "diskbw: %s: read failed\n", files[f]);
			atomic_store(&failed, 1);
		} else {
			atomic_fetch_add(&total_bytes, (uint64_t)n);
			atomic_fetch_add(&n_direct, direct);
		}
		if (fd >= 0)
			close(fd);
	}
	for (i = 0; i < qd; i++)
		free(bufs[i]);
	io_uring_queue_exit(&ring);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th[64];
	int opt, t, n_threads = 4;
	double t0, s;

	while ((opt = getopt(argc, argv, "t:q:c:")) != -1) {
		if (opt == 't')
			n_threads = atoi(optarg);
		else if (opt == 'q')
			qd = (unsigned)atoi(optarg);
		else if (opt == 'c')
			chunk = (unsigned)atoi(optarg) << 20;
		else
			goto usage;
	}
	if (optind >= argc || n_threads < 1 || n_threads > 64 || !qd || qd > MAX_QD || !chunk)
		goto usage;
	files = argv + optind;
	n_files = argc - optind;
	t0 = now_s();
	for (t = 0; t < n_threads; t++)
		pthread_create(&th[t], NULL, reader, NULL);
	for (t = 0; t < n_threads; t++)
		pthread_join(th[t], NULL);
	s = now_s() - t0;
	printf("bytes %llu seconds %.6f GBps %.3f direct %d\n",
	       (unsigned long long)atomic_load(&total_bytes), s,
	       (double)atomic_load(&total_bytes) / s / 1e9, atomic_load(&n_direct));
	return atomic_load(&failed);
usage:
	fprintf(stderr, "usage: diskbw [-t THREADS] [-q QD] [-c CHUNK_MIB] FILE...\n");
	return 2;
}
