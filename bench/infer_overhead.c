// SPDX-License-Identifier: MIT
/*
 * Per-request overhead of dprt's HTTP inference path: N sequential KServe v2
 * binary infer requests (bert-tiny style: INT64 input_ids [1, SEQ], output
 * pooler_output as binary) over one keep-alive TCP connection with
 * TCP_NODELAY. For each request: the round trip measured here, minus the
 * compute_us the server reports, and minus queue_us + load_us + compute_us.
 * The same is done first for GET /v2/health/live (the floor of this client
 * plus the kernel's loopback). Prints p50/p90/p99/max in microseconds.
 * With -l only the GET is timed, so it can also be pointed at another
 * server (e.g. nginx answering 200 to every path) for comparison.
 *
 *   gcc -std=gnu11 -O2 -Wall -Wextra -o /tmp/infer_overhead bench/infer_overhead.c
 *   /tmp/infer_overhead [-p PORT] [-m MODEL] [-s SEQ] [-n N] [-w WARMUP] [-l]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct resp {
	char buf[1 << 16];
	size_t len;  /* bytes held in buf */
	size_t head; /* length of the response head, with the blank line */
	size_t body; /* Content-Length */
	int status;
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int connect_to(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd, one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -errno;
	}
	return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Parse status and Content-Length once the head is complete. */
static int parse_head(struct resp *r)
{
	const char *end = memmem(r->buf, r->len, "\r\n\r\n", 4);
	const char *cl;

	if (!end)
		return 0;
	r->head = (size_t)(end - r->buf) + 4;
	r->status = atoi(r->buf + 9);
	cl = memmem(r->buf, r->head, "Content-Length:", 15);
	r->body = cl ? strtoul(cl + 15, NULL, 10) : 0;
	if (r->head + r->body >= sizeof(r->buf))
		return -1;
	return 1;
}

/* Read one whole response (head and body) into r. */
static int read_resp(int fd, struct resp *r)
{
	int have = 0;

	r->len = 0;
	r->head = 0;
	for (;;) {
		ssize_t n;

		if (have && r->len >= r->head + r->body)
			return 0;
		n = recv(fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		r->len += (size_t)n;
		r->buf[r->len] = 0;
		if (!have)
			have = parse_head(r);
		if (have < 0)
			return -1;
	}
}

/* An integer parameter "key":N from the JSON part of the body, or -1. */
static long json_param(const struct resp *r, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = memmem(r->buf + r->head, r->body, pat, strlen(pat));
	return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void report(const char *what, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
	printf("%-34s n=%d p50=%8.1f p90=%8.1f p99=%8.1f max=%8.1f us\n", what, n, v[n / 2],
	       v[(int)(n * 0.90)], v[(int)(n * 0.99)], v[n - 1]);
}

static int build_infer(char *req, size_t cap, const char *model, int seq)
{
	char json[512];
	int64_t ids[64];
	int jn, hn, i;

	for (i = 0; i < seq; i++)
		ids[i] = 101 + i * 7;
	jn = snprintf(json, sizeof(json),
		      "{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\","
		      "\"shape\":[1,%d],\"parameters\":{\"binary_data_size\":%zu}}],"
		      "\"outputs\":[{\"name\":\"pooler_output\","
		      "\"parameters\":{\"binary_data\":true}}]}",
		      seq, seq * sizeof(int64_t));
	hn = snprintf(req, cap,
		      "POST /v2/models/%s/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		      "Content-Type: application/octet-stream\r\n"
		      "Inference-Header-Content-Length: %d\r\n"
		      "Content-Length: %zu\r\n\r\n%s",
		      model, jn, jn + seq * sizeof(int64_t), json);
	memcpy(req + hn, ids, seq * sizeof(int64_t));
	return hn + seq * (int)sizeof(int64_t);
}

static int run_live(int fd, struct resp *r, int n, int warm, double *rtt)
{
	static const char req[] = "GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	int i;

	for (i = -warm; i < n; i++) {
		double t0 = now_us();

		if (send_all(fd, req, sizeof(req) - 1) || read_resp(fd, r) || r->status != 200)
			return -1;
		if (i >= 0)
			rtt[i] = now_us() - t0;
	}
	return 0;
}

static int run_infer(int fd, struct resp *r, const char *req, int len, int n, int warm,
		     double *v[5])
{
	int i;

	for (i = -warm; i < n; i++) {
		double t0 = now_us(), t;
		long q, l, c;

		if (send_all(fd, req, (size_t)len) || read_resp(fd, r))
			return -1;
		t = now_us() - t0;
		if (r->status != 200) {
			fprintf(stderr, "infer: HTTP %d: %.*s\n", r->status, (int)r->body,
				r->buf + r->head);
			return -1;
		}
		q = json_param(r, "queue_us");
		l = json_param(r, "load_us");
		c = json_param(r, "compute_us");
		if (q < 0 || l < 0 || c < 0)
			return -1;
		if (i < 0)
			continue;
		v[0][i] = t;
		v[1][i] = (double)c;
		v[2][i] = (double)(q + l);
		v[3][i] = t - (double)c;
		v[4][i] = t - (double)(q + l + c);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const char *names[5] = {
		"infer round trip",
		"server compute_us",
		"server queue_us+load_us",
		"overhead: rtt - compute",
		"overhead: rtt - queue-load-compute",
	};
	const char *model = "bert-tiny";
	int port = 9000, seq = 8, n = 10000, warm = 200, live_only = 0;
	int opt, fd, len, k;
	static struct resp r;
	static char req[4096];
	double *v[6];

	while ((opt = getopt(argc, argv, "p:m:s:n:w:l")) != -1) {
		if (opt == 'p')
			port = atoi(optarg);
		else if (opt == 'm')
			model = optarg;
		else if (opt == 's')
			seq = atoi(optarg);
		else if (opt == 'n')
			n = atoi(optarg);
		else if (opt == 'w')
			warm = atoi(optarg);
		else if (opt == 'l')
			live_only = 1;
		else
			return 2;
	}
	if (seq < 1 || seq > 64 || n < 100 || warm < 0) {
		fprintf(stderr, "need 1 <= -s <= 64, -n >= 100, -w >= 0\n");
		return 2;
	}
	for (k = 0; k < 6; k++)
		v[k] = calloc((size_t)n, sizeof(double));
	fd = connect_to(port);
	if (fd < 0) {
		fprintf(stderr, "connect 127.0.0.1:%d: %s\n", port, strerror(-fd));
		return 1;
	}
	len = build_infer(req, sizeof(req), model, seq);
	if (run_live(fd, &r, n, warm, v[5])) {
		fprintf(stderr, "GET /v2/health/live failed\n");
		return 1;
	}
	if (live_only) {
		report("GET /v2/health/live round trip", v[5], n);
		return 0;
	}
	if (run_infer(fd, &r, req, len, n, warm, v)) {
		fprintf(stderr, "infer %s failed\n", model);
		return 1;
	}
	printf("model %s, input_ids [1,%d] binary, output pooler_output binary, "
	       "one keep-alive connection, %d sequential requests after %d warm-up\n",
	       model, seq, n, warm);
	report("GET /v2/health/live round trip", v[5], n);
	for (k = 0; k < 5; k++)
		report(names[k], v[k], n);
	close(fd);
	return 0;
}
