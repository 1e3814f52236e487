/* SPDX-License-Identifier: MIT */
/*
 * loadgen: an open-loop load generator for KServe v2 servers (dprt's
 * Figures 12 and 13). One process, one epoll loop, non-blocking keep-alive
 * HTTP/1.1 connections; binary KServe requests of a fixed shape, every
 * answer checked (status, outputs and their sizes, and with --check the
 * bytes against the model's first answer).
 *
 * Arrivals are computed up front (Poisson, uniform, or an Azure Functions
 * trace) and sent at their scheduled times whatever the replies do;
 * latency runs from the scheduled time, so a late send (a full connection
 * pool, a slow loop) shows in the latency instead of being hidden.
 *
 *   build/bench/loadgen --url http://127.0.0.1:9000 --model-prefix m \
 *       --instances 20 --rate 100 --duration 30
 *   build/bench/loadgen --help
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_IO 8
#define NS 1000000000ull

/* ------------------------------------------------------------ options */

static const char usage[] =
	"usage: loadgen --url http://HOST:PORT (--model-prefix NAME --instances N | --models A,B)\n"
	"               [arrivals] [request] [report]\n"
	"Targets:\n"
	"  --url URL            the server, http://HOST:PORT (default http://127.0.0.1:9000)\n"
	"  --model-prefix NAME  models NAME0 .. NAME<N-1> (a repository of N instances of\n"
	"  --instances N        one model, as bench/fig12.sh builds it: m0, m1, ...)\n"
	"  --models A,B,C       the models by name instead\n"
	"Request (the model's signature comes from GET /v2/models/NAME):\n"
	"  --batch B            batch dimension of every input (default 1)\n"
	"  --seq S              the other variable dimensions (default 64)\n"
	"  --input SPEC         inputs instead of the metadata's: NAME:DTYPE:D1xD2[,...],\n"
	"                       e.g. input_ids:INT64:1x384 (DTYPE INT64, INT32, FP32, FP16);\n"
	"                       the first input's dimensions replace --batch and --seq\n"
	"  --output NAMES       outputs to ask for, comma-separated, or 'all' (default the\n"
	"                       model's last output: pooler_output for BERT)\n"
	"  --vocab V            token ids are drawn from [0, V) (default 1000); masks are 1,\n"
	"                       token types 0, floats uniform in [-1, 1)\n"
	"  --check              compare every answer's bytes with the model's first answer\n"
	"                       (deterministic models); a difference is a wrong answer\n"
	"  --tolerance REL      with --check, FP32 outputs may differ by REL x max|first|\n"
	"  --timeout MS         a request not answered MS after its scheduled time is a\n"
	"                       timeout error and its connection is closed (default 30000)\n"
	"  --wait SEC           wait up to SEC for /v2/health/ready and the models' metadata\n"
	"                       while the server answers 503 (default 30)\n"
	"Arrivals:\n"
	"  --rate R             open-loop arrivals at R requests/s (default 100)\n"
	"  --uniform            evenly spaced arrivals instead of Poisson\n"
	"  --round-robin        models chosen in turn (m0, m1, ..., m0, ...): with a device\n"
	"                       memory limit that holds fewer than N, every request is a\n"
	"                       cold start\n"
	"  --zipf S             model i (from 0) chosen with weight 1/(i+1)^S instead of\n"
	"                       uniformly\n"
	"  --warmup SEC         requests before SEC are sent and checked but not in the\n"
	"                       report (default 1; 0 with --trace)\n"
	"  --duration SEC       the measured period after the warm-up (default 10)\n"
	"  --trace FILE         replay an Azure Functions 2019 invocations file (header\n"
	"                       HashOwner,HashApp,HashFunction,Trigger,1,2,..,1440; a row a\n"
	"                       function, a column its invocations in that minute); each\n"
	"                       minute's invocations at uniformly random times in it;\n"
	"                       --rate, --uniform, --zipf and --duration do not apply\n"
	"  --minutes A-B        the trace's minutes A to B (from 1; default all)\n"
	"  --time-scale X       a trace minute lasts 60/X seconds (default 1)\n"
	"  --map rr|hash        function -> model: row order round-robin (default), or a\n"
	"                       hash of HashOwner,HashApp,HashFunction\n"
	"  --conns C            connections opened at the start (default 16)\n"
	"  --max-conns M        at most M; a request that finds all busy opens one more,\n"
	"                       and once M are open waits (counted as cap-delayed;\n"
	"                       default 1024)\n"
	"  --seed N             seed of arrivals, model choice and inputs (default 1)\n"
	"Report:\n"
	"  --slo MS             goodput: the fraction of measured requests answered right\n"
	"                       within MS of their scheduled time (default 100)\n"
	"  --json FILE          the report as JSON too\n"
	"  --max-errors N       exit 1 if more than N requests fail (default 0)\n"
	"  --quiet              no per-minute rows on stdout (still in --json)\n"
	"Exit status: 0; 1 on any wrong answer, more than --max-errors errors, or a server\n"
	"that cannot be reached or lacks a model; 2 on a usage error. Latency percentiles\n"
	"are over the measured requests answered 200 with the right outputs.\n";

struct opts {
	const char *url, *prefix, *models, *input, *output, *trace, *json;
	int instances, batch, seq, conns, max_conns, max_errors;
	long vocab;
	double rate, zipf, warmup, duration, time_scale, slo_ms, timeout_ms, wait_s, tol;
	int min_a, min_b;
	bool uniform, check, quiet, map_hash, warmup_set, round_robin;
	uint64_t seed;
};

static struct opts o = {
	.url = "http://127.0.0.1:9000",
	.batch = 1,
	.seq = 64,
	.conns = 16,
	.max_conns = 1024,
	.vocab = 1000,
	.rate = 100,
	.warmup = 1,
	.duration = 10,
	.time_scale = 1,
	.slo_ms = 100,
	.timeout_ms = 30000,
	.wait_s = 30,
	.seed = 1,
};

/* ------------------------------------------------------------ basics */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_state;

/* splitmix64: the one generator of the run (arrivals, choices, inputs). */
static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(void)
{
	return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p) {
		fprintf(stderr, "loadgen: out of memory\n");
		exit(1);
	}
	return p;
}

static void *xrealloc(void *p, size_t size)
{
	p = realloc(p, size);
	if (!p) {
		fprintf(stderr, "loadgen: out of memory\n");
		exit(1);
	}
	return p;
}

static __attribute__((noreturn)) void die(const char *msg)
{
	fprintf(stderr, "loadgen: %s\n", msg);
	exit(1);
}

/* ------------------------------------------------------------ models and requests */

/* What requests for a model look like and what their answers must hold;
 * models with the same metadata share one. */
struct sig {
	char key[4096]; /* the metadata's inputs and outputs, as JSON */
	char *body;	/* JSON header then the binary inputs */
	size_t json_len, body_len;
	int n_out;
	char out_name[MAX_IO][64];
	uint64_t out_bytes[MAX_IO];
	bool out_f32[MAX_IO];
	uint64_t bin_total;
	struct sig *next;
};

struct model {
	char name[128];
	struct sig *sig;
	unsigned char *ref; /* the first answer's output bytes (--check) */
	bool have_ref;
};

static struct model *models;
static int n_models;
static struct sig *sigs;

/* Split o.models or make PREFIX0..PREFIX<N-1>. */
static void models_make(void)
{
	char *s, *tok, *save = NULL;
	int i;

	if (o.models) {
		s = strdup(o.models);
		models = xcalloc(strlen(o.models) + 1, sizeof(*models));
		for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			snprintf(models[n_models++].name, sizeof(models->name), "%s", tok);
		free(s);
		return;
	}
	models = xcalloc((size_t)o.instances, sizeof(*models));
	for (i = 0; i < o.instances; i++)
		snprintf(models[i].name, sizeof(models->name), "%s%d", o.prefix, i);
	n_models = o.instances;
}

static size_t dtype_bytes(const char *dt)
{
	if (!strcmp(dt, "INT64") || !strcmp(dt, "FP64") || !strcmp(dt, "UINT64"))
		return 8;
	if (!strcmp(dt, "INT32") || !strcmp(dt, "FP32") || !strcmp(dt, "UINT32"))
		return 4;
	if (!strcmp(dt, "FP16") || !strcmp(dt, "BF16") || !strcmp(dt, "INT16"))
		return 2;
	if (!strcmp(dt, "INT8") || !strcmp(dt, "UINT8") || !strcmp(dt, "BOOL"))
		return 1;
	return 0;
}

/* One input tensor to send. */
struct in_spec {
	char name[64], dtype[16];
	int ndim;
	int64_t dims[8];
};

/* A variable dimension: the first is the batch, the others the sequence. */
static int64_t dim_of(const json_t *d, int i)
{
	int64_t v = json_integer_value(d);

	if (v >= 0)
		return v;
	return i == 0 ? o.batch : o.seq;
}

static int spec_from_json(const json_t *t, struct in_spec *s)
{
	const json_t *sh = json_object_get(t, "shape");
	size_t i;

	if (!json_is_string(json_object_get(t, "name")) ||
	    !json_is_string(json_object_get(t, "datatype")) || !json_is_array(sh) ||
	    json_array_size(sh) > 8)
		return -1;
	snprintf(s->name, sizeof(s->name), "%s", json_string_value(json_object_get(t, "name")));
	snprintf(s->dtype, sizeof(s->dtype), "%s",
		 json_string_value(json_object_get(t, "datatype")));
	s->ndim = (int)json_array_size(sh);
	for (i = 0; i < json_array_size(sh); i++)
		s->dims[i] = dim_of(json_array_get(sh, i), (int)i);
	return 0;
}

/* --input NAME:DTYPE:D1xD2[,...] */
static int specs_parse(const char *arg, struct in_spec *s, int *n)
{
	char *copy = strdup(arg), *tok, *save = NULL, *p, *q;
	int ret = 0;

	for (*n = 0, tok = strtok_r(copy, ",", &save); tok && !ret;
	     tok = strtok_r(NULL, ",", &save)) {
		struct in_spec *x = &s[*n];

		p = strchr(tok, ':');
		q = p ? strchr(p + 1, ':') : NULL;
		if (!q || *n == MAX_IO || p - tok >= 64 || q - p > 16) {
			ret = -1;
			break;
		}
		memset(x, 0, sizeof(*x));
		memcpy(x->name, tok, (size_t)(p - tok));
		memcpy(x->dtype, p + 1, (size_t)(q - p - 1));
		for (p = q + 1; *p && x->ndim < 8; p = q + (*q == 'x')) {
			x->dims[x->ndim++] = strtoll(p, &q, 10);
			if (q == p || (*q && *q != 'x'))
				ret = -1;
			if (ret)
				break;
		}
		if (!x->ndim || !dtype_bytes(x->dtype))
			ret = -1;
		(*n)++;
	}
	free(copy);
	return ret;
}

static uint64_t spec_numel(const struct in_spec *s)
{
	uint64_t n = 1;
	int i;

	for (i = 0; i < s->ndim; i++)
		n *= (uint64_t)(s->dims[i] > 0 ? s->dims[i] : 0);
	return n;
}

/* Fill one input's bytes: ids, masks of 1, token types of 0, or floats. */
static void fill_input(const struct in_spec *s, unsigned char *p)
{
	uint64_t i, n = spec_numel(s);
	bool mask = strstr(s->name, "mask") != NULL, type = strstr(s->name, "type") != NULL;

	for (i = 0; i < n; i++) {
		int64_t id = mask ? 1 : type ? 0 : (int64_t)(rng_next() % (uint64_t)o.vocab);
		float f = (float)(rng_unit() * 2 - 1);
		uint16_t h = (uint16_t)(0x3800 | (rng_next() & 0x3ff));
		int32_t i32 = (int32_t)id;

		if (!strcmp(s->dtype, "INT64"))
			memcpy(p + 8 * i, &id, 8);
		else if (!strcmp(s->dtype, "INT32"))
			memcpy(p + 4 * i, &i32, 4);
		else if (!strcmp(s->dtype, "FP32"))
			memcpy(p + 4 * i, &f, 4);
		else if (!strcmp(s->dtype, "FP16") || !strcmp(s->dtype, "BF16"))
			memcpy(p + 2 * i, &h, 2);
		else
			p[i] = (unsigned char)(id & 1);
	}
}

/* Does the comma-separated list have name? */
static bool in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p;

	for (p = list; (p = strstr(p, name)); p += n)
		if ((p == list || p[-1] == ',') && (p[n] == ',' || !p[n]))
			return true;
	return false;
}

/* The outputs asked for and their sizes, from the metadata's outputs. */
static int sig_outputs(struct sig *g, const json_t *outs)
{
	size_t i, n = json_array_size(outs);

	for (i = 0; i < n; i++) {
		struct in_spec s;
		const char *name;

		if (spec_from_json(json_array_get(outs, i), &s))
			return -1;
		name = s.name;
		if (o.output ? !(!strcmp(o.output, "all") || in_list(o.output, name)) : i + 1 != n)
			continue;
		if (g->n_out == MAX_IO)
			return -1;
		snprintf(g->out_name[g->n_out], sizeof(g->out_name[0]), "%s", name);
		g->out_bytes[g->n_out] = spec_numel(&s) * dtype_bytes(s.dtype);
		g->out_f32[g->n_out] = !strcmp(s.dtype, "FP32");
		g->bin_total += g->out_bytes[g->n_out++];
	}
	return g->n_out ? 0 : -1;
}

static size_t json_tensor(char *b, size_t cap, const struct in_spec *s, bool first)
{
	size_t l = (size_t)snprintf(b, cap, "%s{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[",
				    first ? "" : ",", s->name, s->dtype);
	int i;

	for (i = 0; i < s->ndim && l < cap; i++)
		l += (size_t)snprintf(b + l, cap - l, "%s%lld", i ? "," : "",
				      (long long)s->dims[i]);
	if (l < cap)
		l += (size_t)snprintf(b + l, cap - l,
				      "],\"parameters\":{\"binary_data_size\":%llu}}",
				      (unsigned long long)(spec_numel(s) * dtype_bytes(s->dtype)));
	return l;
}

/* The request body: JSON header (inputs binary, outputs binary) + data. */
static void sig_body(struct sig *g, const struct in_spec *in, int n_in)
{
	char js[8192];
	size_t l = (size_t)snprintf(js, sizeof(js), "{\"inputs\":["), bin = 0, off;
	int i;

	for (i = 0; i < n_in; i++) {
		l += json_tensor(js + l, sizeof(js) - l, &in[i], i == 0);
		bin += spec_numel(&in[i]) * dtype_bytes(in[i].dtype);
	}
	l += (size_t)snprintf(js + l, sizeof(js) - l, "],\"outputs\":[");
	for (i = 0; i < g->n_out; i++)
		l += (size_t)snprintf(js + l, sizeof(js) - l,
				      "%s{\"name\":\"%s\",\"parameters\":{\"binary_data\":true}}",
				      i ? "," : "", g->out_name[i]);
	l += (size_t)snprintf(js + l, sizeof(js) - l, "]}");
	if (l >= sizeof(js))
		die("request header too long");
	g->json_len = l;
	g->body_len = l + bin;
	g->body = xcalloc(1, g->body_len);
	memcpy(g->body, js, l);
	for (i = 0, off = l; i < n_in; i++) {
		fill_input(&in[i], (unsigned char *)g->body + off);
		off += spec_numel(&in[i]) * dtype_bytes(in[i].dtype);
	}
}

/* The model's signature from its metadata (shared by equal metadata). */
static struct sig *sig_get(const json_t *meta, char *why, size_t wl)
{
	const json_t *ins = json_object_get(meta, "inputs"),
		     *outs = json_object_get(meta, "outputs");
	struct in_spec in[MAX_IO];
	char *k1 = json_dumps(ins, JSON_COMPACT), *k2 = json_dumps(outs, JSON_COMPACT);
	struct sig *g;
	int n_in = 0;
	size_t i;

	g = xcalloc(1, sizeof(*g));
	snprintf(g->key, sizeof(g->key), "%s|%s", k1 ? k1 : "", k2 ? k2 : "");
	free(k1);
	free(k2);
	for (struct sig *x = sigs; x; x = x->next)
		if (!strcmp(x->key, g->key)) {
			free(g);
			return x;
		}
	if (o.input) {
		if (specs_parse(o.input, in, &n_in))
			die("--input: NAME:DTYPE:D1xD2[,...] expected");
		/* the outputs' variable dimensions follow the first input's */
		o.batch = (int)in[0].dims[0];
		if (in[0].ndim > 1)
			o.seq = (int)in[0].dims[1];
	} else {
		for (i = 0; i < json_array_size(ins) && n_in < MAX_IO; i++)
			if (!spec_from_json(json_array_get(ins, i), &in[n_in]))
				n_in++;
	}
	if (!n_in || sig_outputs(g, outs)) {
		snprintf(why, wl,
			 "metadata without usable inputs or without the outputs asked for");
		free(g);
		return NULL;
	}
	sig_body(g, in, n_in);
	g->next = sigs;
	sigs = g;
	return g;
}

/* ------------------------------------------------------------ blocking HTTP (setup) */

static struct sockaddr_storage srv_addr;
static socklen_t srv_len;
static char srv_host[256];

static void url_parse(void)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	char host[256], port[16] = "80";
	const char *p = o.url, *c, *e;

	if (!strncmp(p, "http://", 7))
		p += 7;
	e = p + strcspn(p, "/");
	c = memchr(p, ':', (size_t)(e - p));
	if (*p == '[')
		c = strstr(p, "]:") ? strstr(p, "]:") + 1 : NULL;
	if ((size_t)(e - p) >= sizeof(host) || e == p)
		die("--url: http://HOST:PORT expected");
	snprintf(host, sizeof(host), "%.*s", (int)((c ? c : e) - p), p);
	if (c)
		snprintf(port, sizeof(port), "%.*s", (int)(e - c - 1), c + 1);
	snprintf(srv_host, sizeof(srv_host), "%.*s", (int)(e - p), p);
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = 0;
	}
	if (getaddrinfo(host, port, &hints, &ai))
		die("--url: cannot resolve the host");
	memcpy(&srv_addr, ai->ai_addr, ai->ai_addrlen);
	srv_len = ai->ai_addrlen;
	freeaddrinfo(ai);
}

/* A parsed response head. */
struct resp {
	int status;
	size_t head_len;
	long long clen, ihcl;
	bool cold, close;
	double q, l, c; /* Server-Timing, ms; -1 if absent */
};

static bool hdr_is(const char *line, const char *name)
{
	size_t n = strlen(name);

	return !strncasecmp(line, name, n) && line[n] == ':';
}

static void timing_parse(const char *v, struct resp *r)
{
	const char *p;

	if ((p = strstr(v, "queue;dur=")))
		r->q = strtod(p + 10, NULL);
	if ((p = strstr(v, "load;dur=")))
		r->l = strtod(p + 9, NULL);
	if ((p = strstr(v, "compute;dur=")))
		r->c = strtod(p + 12, NULL);
}

/* Parse a head that ends at buf[len - 4] ("\r\n\r\n"); 0 or -1. */
static int resp_parse(const char *buf, size_t len, struct resp *r)
{
	const char *p = buf, *end = buf + len, *nl;
	char line[512];

	memset(r, 0, sizeof(*r));
	r->clen = r->ihcl = -1;
	r->q = r->l = r->c = -1;
	r->head_len = len;
	if (len < 12 || strncmp(buf, "HTTP/1.", 7))
		return -1;
	r->status = atoi(buf + 9);
	r->close = buf[7] == '0';
	while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
		size_t n = (size_t)(nl - p);

		snprintf(line, sizeof(line), "%.*s", (int)(n && p[n - 1] == '\r' ? n - 1 : n), p);
		p = nl + 1;
		if (hdr_is(line, "Content-Length"))
			r->clen = atoll(line + 15);
		else if (hdr_is(line, "Inference-Header-Content-Length"))
			r->ihcl = atoll(line + 32);
		else if (hdr_is(line, "Dprt-Cold-Start"))
			r->cold = strstr(line + 16, "true") != NULL;
		else if (hdr_is(line, "Connection"))
			r->close = strcasestr(line + 11, "close") != NULL;
		else if (hdr_is(line, "Server-Timing"))
			timing_parse(line + 14, r);
	}
	return r->status >= 100 && r->clen >= 0 ? 0 : -1;
}

/* GET path on a new connection; the body (malloc'd, NUL-ended) in *body.
 * Returns the HTTP status, or -errno when the server cannot be reached. */
static int http_get(const char *path, char **body)
{
	char req[512], *buf = NULL, *hend;
	size_t len = 0, cap = 0;
	struct timeval tv = {10, 0};
	struct resp r;
	ssize_t n;
	int fd, ret = -EPROTO;

	*body = NULL;
	fd = socket(srv_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&srv_addr, srv_len)) {
		ret = -errno;
		goto out_close;
	}
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
		     path, srv_host);
	if (write(fd, req, (size_t)n) != n)
		goto out_close;
	for (;;) {
		if (len + 4096 > cap)
			buf = xrealloc(buf, cap = 2 * cap + 8192);
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (!buf)
		goto out_close;
	buf[len] = 0;
	hend = strstr(buf, "\r\n\r\n");
	if (hend && !resp_parse(buf, (size_t)(hend + 4 - buf), &r)) {
		ret = r.status;
		*body = strdup(hend + 4);
	}
out_close:
	free(buf);
	close(fd);
	return ret;
}

/* Wait for /v2/health/ready while the server says 503. */
static void wait_ready(void)
{
	uint64_t until = now_ns() + (uint64_t)(o.wait_s * 1e9);
	char *b;
	int st;

	for (;;) {
		st = http_get("/v2/health/ready", &b);
		free(b);
		if (st < 0) {
			fprintf(stderr, "loadgen: cannot reach %s: %s\n", o.url, strerror(-st));
			exit(1);
		}
		if (st == 200)
			return;
		if (now_ns() > until) {
			fprintf(stderr, "loadgen: %s/v2/health/ready answers %d\n", o.url, st);
			exit(1);
		}
		usleep(100000);
	}
}

/* Each model's metadata, hence its request; a missing model ends the run. */
static void models_setup(void)
{
	uint64_t until = now_ns() + (uint64_t)(o.wait_s * 1e9);
	char path[300], why[200];
	int i, st;

	for (i = 0; i < n_models; i++) {
		struct model *m = &models[i];
		json_t *meta;
		char *b;

		snprintf(path, sizeof(path), "/v2/models/%s", m->name);
		while ((st = http_get(path, &b)) == 503 && now_ns() < until) {
			free(b);
			usleep(100000);
		}
		if (st != 200) {
			fprintf(stderr, "loadgen: model %s: %s %d: %.200s\n", m->name,
				st < 0 ? "error" : "HTTP", st < 0 ? -st : st, b ? b : "");
			exit(1);
		}
		meta = json_loads(b, 0, NULL);
		free(b);
		m->sig = meta ? sig_get(meta, why, sizeof(why)) : NULL;
		json_decref(meta);
		if (!m->sig) {
			fprintf(stderr, "loadgen: model %s: %s\n", m->name,
				meta ? why : "metadata is not JSON");
			exit(1);
		}
		m->ref = xcalloc(1, m->sig->bin_total);
	}
}

/* ------------------------------------------------------------ the schedule */

enum kind {
	K_OK,
	K_CONNECT,
	K_TIMEOUT,
	K_HTTP4,
	K_HTTP5,
	K_CLOSED,
	K_BADRESP,
	K_BADOUT,
	K_WRONG,
	K_N,
	K_PENDING = 255,
};

static const char *const kind_name[K_N] = {
	"ok",	  "connect",	  "timeout",	"http_4xx", "http_5xx",
	"closed", "bad_response", "bad_output", "wrong",
};

/* One request: when it is due, to which model, and what became of it. */
struct ev {
	uint64_t t;    /* scheduled, ns from the start */
	uint64_t done; /* answered (or failed), ns from the start */
	float q, l, c; /* Server-Timing, ms */
	uint32_t model;
	uint16_t minute; /* trace minute (index into the range) */
	uint8_t kind;
	bool cold, sent, measured, retried, delayed;
};

static struct ev *evs;
static size_t n_evs, cap_evs;
static uint64_t window_ns; /* the measured period's length */
static int trace_minutes, trace_first;
static uint64_t *trace_counts; /* invocations per minute of the range */

static struct ev *ev_add(uint64_t t, uint32_t model)
{
	if (n_evs == cap_evs)
		evs = xrealloc(evs, (cap_evs = 2 * cap_evs + 4096) * sizeof(*evs));
	memset(&evs[n_evs], 0, sizeof(*evs));
	evs[n_evs].t = t;
	evs[n_evs].model = model;
	evs[n_evs].kind = K_PENDING;
	return &evs[n_evs++];
}

static double *zipf_cdf;

static uint32_t pick_model(void)
{
	static uint32_t next;
	double u;
	int lo = 0, hi = n_models - 1;

	if (o.round_robin)
		return next++ % (uint32_t)n_models;
	if (!zipf_cdf)
		return (uint32_t)(rng_next() % (uint64_t)n_models);
	u = rng_unit() * zipf_cdf[n_models - 1];
	while (lo < hi) {
		int mid = (lo + hi) / 2;

		if (zipf_cdf[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return (uint32_t)lo;
}

/* Poisson or uniform arrivals over warm-up + duration. */
static void schedule_rate(void)
{
	uint64_t end = (uint64_t)((o.warmup + o.duration) * 1e9), w = (uint64_t)(o.warmup * 1e9);
	double t = 0;
	int i;

	if (o.zipf > 0) {
		zipf_cdf = xcalloc((size_t)n_models, sizeof(double));
		for (i = 0; i < n_models; i++)
			zipf_cdf[i] = (i ? zipf_cdf[i - 1] : 0) + pow(i + 1, -o.zipf);
	}
	for (;;) {
		struct ev *e;

		t += o.uniform ? 1e9 / o.rate : -log(1 - rng_unit()) * 1e9 / o.rate;
		if ((uint64_t)t >= end)
			break;
		e = ev_add((uint64_t)t, pick_model());
		e->measured = e->t >= w;
	}
	window_ns = end - w;
}

static uint64_t fnv1a(const char *s, size_t n, uint64_t h)
{
	while (n--)
		h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
	return h;
}

/* One trace row: its function's model and its minutes' invocations. */
static void trace_row(char *line, long row, uint64_t minute_ns, uint64_t w)
{
	char *p = line, *f[4];
	uint32_t model;
	int i, col;

	for (i = 0; i < 4; i++) {
		f[i] = p;
		p = strchr(p, ',');
		if (!p)
			return;
		*p++ = 0;
	}
	model = o.map_hash ?
			(uint32_t)(fnv1a(f[2], strlen(f[2]),
					 fnv1a(f[1], strlen(f[1]),
					       fnv1a(f[0], strlen(f[0]), 0xcbf29ce484222325ull))) %
				   (uint64_t)n_models) :
			(uint32_t)(row % n_models);
	for (col = 1; p && *p && col <= o.min_b; col++) {
		long long c = strtoll(p, &p, 10);
		int m = col - o.min_a;

		if (*p == ',')
			p++;
		if (col < o.min_a || c <= 0)
			continue;
		trace_counts[m] += (uint64_t)c;
		while (c--) {
			uint64_t at = (uint64_t)(rng_unit() * (double)minute_ns);
			struct ev *e = ev_add((uint64_t)m * minute_ns +
						      (at < minute_ns ? at : minute_ns - 1),
					      model);

			e->minute = (uint16_t)m;
			e->measured = e->t >= w;
		}
	}
}

static int ev_cmp(const void *a, const void *b)
{
	const struct ev *x = a, *y = b;

	return x->t < y->t ? -1 : x->t > y->t;
}

/* Count the header's minute columns; check its first four names. */
static int trace_header(const char *line)
{
	int cols = 0;
	const char *p;

	if (strncmp(line, "HashOwner,HashApp,HashFunction,Trigger", 38))
		die("--trace: the header must start HashOwner,HashApp,HashFunction,Trigger");
	for (p = line + 38; (p = strchr(p, ',')); p++)
		cols++;
	return cols;
}

/* The trace's minutes, their invocations spread uniformly in each. */
static void schedule_trace(void)
{
	FILE *f = fopen(o.trace, "r");
	uint64_t minute_ns = (uint64_t)(60e9 / o.time_scale);
	size_t cap = 0;
	char *line = NULL;
	long row = 0;
	int cols;

	if (!f) {
		fprintf(stderr, "loadgen: %s: %s\n", o.trace, strerror(errno));
		exit(1);
	}
	if (getline(&line, &cap, f) < 0)
		die("--trace: empty file");
	cols = trace_header(line);
	if (!o.min_a)
		o.min_a = 1, o.min_b = cols;
	if (o.min_b > cols || o.min_a > o.min_b)
		die("--minutes: outside the trace's minutes");
	if (o.min_b - o.min_a >= 65535)
		die("--minutes: too many minutes");
	trace_first = o.min_a;
	trace_minutes = o.min_b - o.min_a + 1;
	trace_counts = xcalloc((size_t)trace_minutes, sizeof(uint64_t));
	while (getline(&line, &cap, f) > 0)
		trace_row(line, row++, minute_ns, (uint64_t)(o.warmup * 1e9));
	free(line);
	fclose(f);
	qsort(evs, n_evs, sizeof(*evs), ev_cmp);
	window_ns = (uint64_t)trace_minutes * minute_ns - (uint64_t)(o.warmup * 1e9);
}

/* ------------------------------------------------------------ connections */

enum cstate { C_FREE, C_CONNECTING, C_IDLE, C_BUSY };

struct conn {
	int fd;
	enum cstate state;
	bool want_out;
	unsigned served; /* answers on this connection */
	struct ev *ev;	 /* the request in flight */
	char head[512];
	size_t hlen, woff; /* request head length; bytes of head+body sent */
	char *rbuf;
	size_t rlen, rcap;
	struct resp r;
	bool have_head;
};

static struct conn *conns;
static int n_open, ep;
static struct conn **idle;
static int n_idle;
static struct ev **queue; /* requests waiting for a connection, FIFO */
static size_t q_head, q_tail;
static uint64_t t0, cap_delayed, reconnects, max_open;
static char first_err[K_N][240];

static uint64_t rel_now(void)
{
	return now_ns() - t0;
}

static void ev_finish(struct ev *e, enum kind k, uint64_t done)
{
	e->kind = (uint8_t)k;
	e->done = done;
}

static void note_err(enum kind k, const char *fmt, const char *detail)
{
	if (!first_err[k][0])
		snprintf(first_err[k], sizeof(first_err[k]), fmt, detail);
}

static void conn_close(struct conn *c)
{
	if (c->state == C_FREE)
		return;
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->state == C_IDLE) {
		int i;

		for (i = 0; i < n_idle; i++)
			if (idle[i] == c) {
				idle[i] = idle[--n_idle];
				break;
			}
	}
	c->state = C_FREE;
	c->ev = NULL;
	n_open--;
}

static void conn_events(struct conn *c, bool out)
{
	struct epoll_event ee = {.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0),
				 .data.ptr = c};

	if (out != c->want_out)
		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ee);
	c->want_out = out;
}

/* A new non-blocking connection (connecting); NULL on failure. */
static struct conn *conn_open(void)
{
	struct epoll_event ee = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP};
	struct conn *c = NULL;
	int i, one = 1, fd;

	for (i = 0; i < o.max_conns && !c; i++)
		if (conns[i].state == C_FREE)
			c = &conns[i];
	if (!c)
		return NULL;
	fd = socket(srv_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&srv_addr, srv_len) && errno != EINPROGRESS) {
		note_err(K_CONNECT, "connect: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	c->fd = fd;
	c->state = C_CONNECTING;
	c->want_out = true;
	c->served = 0;
	c->ev = NULL;
	ee.data.ptr = c;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ee);
	if (++n_open > (int)max_open)
		max_open = (uint64_t)n_open;
	return c;
}

static void conn_write(struct conn *c);

/* Put e on c: the head names the model; the body is the signature's. */
static void conn_start(struct conn *c, struct ev *e)
{
	const struct sig *g = models[e->model].sig;

	c->ev = e;
	c->hlen = (size_t)snprintf(c->head, sizeof(c->head),
				   "POST /v2/models/%s/infer HTTP/1.1\r\nHost: %s\r\n"
				   "Content-Type: application/octet-stream\r\n"
				   "Inference-Header-Content-Length: %zu\r\n"
				   "Content-Length: %zu\r\n\r\n",
				   models[e->model].name, srv_host, g->json_len, g->body_len);
	c->woff = 0;
	c->rlen = 0;
	c->have_head = false;
	e->sent = true;
	if (c->state == C_CONNECTING)
		return; /* written when the connection is up */
	c->state = C_BUSY;
	conn_write(c);
}

static void dispatch(struct ev *e);

/* A connection is free for the next request: a waiting one, else idle. */
static void conn_free(struct conn *c)
{
	c->ev = NULL;
	if (q_head != q_tail) {
		c->state = C_BUSY;
		conn_start(c, queue[q_head++]);
		return;
	}
	c->state = C_IDLE;
	conn_events(c, false);
	idle[n_idle++] = c;
}

/* The connection failed: its request fails, or is sent once more on a
 * fresh connection when a reused keep-alive connection was closed under
 * it before any answer (the server closed it while idle). */
static void conn_fail(struct conn *c, enum kind k, const char *why)
{
	struct ev *e = c->ev;
	bool again = e && c->served && !c->rlen && !e->retried && k == K_CLOSED;

	c->ev = NULL;
	conn_close(c);
	if (!e)
		return;
	if (again) {
		e->retried = true;
		reconnects++;
		dispatch(e);
		return;
	}
	note_err(k, "%s", why);
	ev_finish(e, k, rel_now());
}

static void conn_write(struct conn *c)
{
	const struct sig *g = models[c->ev->model].sig;
	struct iovec iov[2];
	size_t total = c->hlen + g->body_len;
	ssize_t n;

	while (c->woff < total) {
		int k = 0;

		if (c->woff < c->hlen)
			iov[k++] = (struct iovec){c->head + c->woff, c->hlen - c->woff};
		iov[k] = (struct iovec){g->body + (c->woff > c->hlen ? c->woff - c->hlen : 0),
					g->body_len - (c->woff > c->hlen ? c->woff - c->hlen : 0)};
		n = writev(c->fd, iov, k + 1);
		if (n < 0 && errno == EAGAIN) {
			conn_events(c, true);
			return;
		}
		if (n < 0) {
			conn_fail(c, K_CLOSED, strerror(errno));
			return;
		}
		c->woff += (size_t)n;
	}
	conn_events(c, false);
}

/* ------------------------------------------------------------ answers */

/* The outputs in the JSON header, in order, each of its expected size. */
static int check_outputs(const struct sig *g, const char *js, size_t jl, char *why, size_t wl)
{
	json_t *root = json_loadb(js, jl, 0, NULL), *outs, *t;
	uint64_t sum = 0;
	int i, ret = -1;

	outs = json_object_get(root, "outputs");
	if (!json_is_array(outs) || json_array_size(outs) != (size_t)g->n_out) {
		snprintf(why, wl, "%s", root ? "outputs missing" : "answer header is not JSON");
		goto out;
	}
	for (i = 0; i < g->n_out; i++) {
		json_int_t n;

		t = json_array_get(outs, (size_t)i);
		n = json_integer_value(
			json_object_get(json_object_get(t, "parameters"), "binary_data_size"));
		if (!json_is_string(json_object_get(t, "name")) ||
		    strcmp(json_string_value(json_object_get(t, "name")), g->out_name[i]) ||
		    (uint64_t)n != g->out_bytes[i]) {
			snprintf(why, wl, "output %s: %lld bytes, expected %llu", g->out_name[i],
				 (long long)n, (unsigned long long)g->out_bytes[i]);
			goto out;
		}
		sum += (uint64_t)n;
	}
	ret = sum == g->bin_total ? 0 : -1;
out:
	json_decref(root);
	return ret;
}

/* FP32 within tol x max|ref|, other outputs bit for bit. */
static bool same_answer(const struct sig *g, const unsigned char *ref, const unsigned char *p)
{
	uint64_t off = 0, j;
	int i;

	for (i = 0; i < g->n_out; off += g->out_bytes[i++]) {
		float a, b, mx = 0;

		if (!o.tol || !g->out_f32[i]) {
			if (memcmp(ref + off, p + off, g->out_bytes[i]))
				return false;
			continue;
		}
		for (j = 0; j < g->out_bytes[i]; j += 4) {
			memcpy(&a, ref + off + j, 4);
			mx = fabsf(a) > mx ? fabsf(a) : mx;
		}
		for (j = 0; j < g->out_bytes[i]; j += 4) {
			memcpy(&a, ref + off + j, 4);
			memcpy(&b, p + off + j, 4);
			if (!(fabsf(a - b) <= (float)o.tol * mx))
				return false;
		}
	}
	return true;
}

/* A whole answer is in c->rbuf: judge it. */
static enum kind judge(struct conn *c)
{
	struct ev *e = c->ev;
	struct model *m = &models[e->model];
	const struct sig *g = m->sig;
	const char *body = c->rbuf + c->r.head_len;
	size_t bl = (size_t)c->r.clen;
	char why[200];

	e->cold = c->r.cold;
	e->q = (float)c->r.q;
	e->l = (float)c->r.l;
	e->c = (float)c->r.c;
	if (c->r.status != 200) {
		enum kind k = c->r.status >= 500 ? K_HTTP5 :
			      c->r.status >= 400 ? K_HTTP4 :
						   K_BADRESP;
		char d[200];

		snprintf(d, sizeof(d), "%s: HTTP %d %.*s", m->name, c->r.status,
			 (int)(bl < 150 ? bl : 150), body);
		note_err(k, "%s", d);
		return k;
	}
	if (c->r.ihcl < 0 || (uint64_t)c->r.ihcl > bl ||
	    check_outputs(g, body, (size_t)c->r.ihcl, why, sizeof(why)) ||
	    bl - (size_t)c->r.ihcl != g->bin_total) {
		if (c->r.ihcl < 0)
			snprintf(why, sizeof(why), "no binary outputs");
		note_err(K_BADOUT, "%s", why);
		return K_BADOUT;
	}
	if (!o.check)
		return K_OK;
	if (!m->have_ref) {
		memcpy(m->ref, body + c->r.ihcl, g->bin_total);
		m->have_ref = true;
		return K_OK;
	}
	if (same_answer(g, m->ref, (const unsigned char *)body + c->r.ihcl))
		return K_OK;
	note_err(K_WRONG, "%s: the answer differs from its first", m->name);
	return K_WRONG;
}

/* Bytes in: parse the head once, then wait for Content-Length bytes. */
static void conn_read(struct conn *c)
{
	ssize_t n;

	for (;;) {
		char *hend;

		if (c->rcap - c->rlen < 65536)
			c->rbuf = xrealloc(c->rbuf, c->rcap = 2 * c->rcap + 131072);
		n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen - 1);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0 || c->state != C_BUSY) {
			conn_fail(c, K_CLOSED, n ? strerror(errno) : "closed by the server");
			return;
		}
		c->rlen += (size_t)n;
		c->rbuf[c->rlen] = 0;
		if (!c->have_head && (hend = strstr(c->rbuf, "\r\n\r\n"))) {
			if (resp_parse(c->rbuf, (size_t)(hend + 4 - c->rbuf), &c->r)) {
				conn_fail(c, K_BADRESP, "malformed response head");
				return;
			}
			c->have_head = true;
		}
		if (c->have_head && c->rcap < c->r.head_len + (size_t)c->r.clen + 1)
			/* the whole answer's room at once, not by doubling */
			c->rbuf = xrealloc(c->rbuf,
					   c->rcap = c->r.head_len + (size_t)c->r.clen + 65536);
		if (c->have_head && c->rlen >= c->r.head_len + (size_t)c->r.clen) {
			/* answered now: checking the outputs is the client's time */
			uint64_t done = rel_now();

			ev_finish(c->ev, judge(c), done);
			c->served++;
			if (c->r.close || c->rlen > c->r.head_len + (size_t)c->r.clen) {
				c->ev = NULL;
				conn_close(c);
			} else {
				conn_free(c);
			}
			return;
		}
	}
}

static void conn_ready(struct conn *c, uint32_t events)
{
	int err = 0;
	socklen_t l = sizeof(err);

	if (c->state == C_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			conn_fail(c, K_CONNECT, strerror(err));
			return;
		}
		if (c->ev) {
			c->state = C_BUSY;
			conn_write(c);
		} else {
			conn_free(c);
		}
		return;
	}
	if (c->state == C_BUSY && (events & EPOLLOUT) && c->want_out)
		conn_write(c);
	if (c->state != C_FREE && (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)))
		conn_read(c);
}

/* A request is due: an idle connection, a new one, or the queue. */
static void dispatch(struct ev *e)
{
	struct conn *c = n_idle ? idle[--n_idle] : NULL;

	if (c) {
		c->state = C_BUSY;
		conn_start(c, e);
		return;
	}
	if (n_open < o.max_conns) {
		c = conn_open();
		if (c) {
			conn_start(c, e);
			return;
		}
		if (!n_open) {
			ev_finish(e, K_CONNECT, rel_now());
			return;
		}
	}
	if (!e->delayed) {
		e->delayed = true;
		cap_delayed += e->measured;
	}
	queue[q_tail++] = e;
}

/* Requests past their deadline, in flight or still queued. */
static void expire(uint64_t now)
{
	uint64_t tmo = (uint64_t)(o.timeout_ms * 1e6);
	int i;

	for (i = 0; i < o.max_conns; i++) {
		struct conn *c = &conns[i];

		if (c->state != C_FREE && c->ev && now > c->ev->t + tmo) {
			c->served = 0;
			conn_fail(c, K_TIMEOUT, "no answer within --timeout");
		}
	}
	while (q_head != q_tail && now > queue[q_head]->t + tmo) {
		note_err(K_TIMEOUT, "%s", "no connection within --timeout");
		ev_finish(queue[q_head++], K_TIMEOUT, rel_now());
	}
}

static size_t inflight(void)
{
	size_t n = q_tail - q_head;
	int i;

	for (i = 0; i < o.max_conns; i++)
		n += conns[i].state != C_FREE && conns[i].ev;
	return n;
}

/* The loop: send what is due, take in what arrived, until all is done. */
static void run(void)
{
	struct epoll_event ee[64];
	size_t next = 0;
	int i, n;

	ep = epoll_create1(EPOLL_CLOEXEC);
	conns = xcalloc((size_t)o.max_conns, sizeof(*conns));
	idle = xcalloc((size_t)o.max_conns, sizeof(*idle));
	queue = xcalloc(n_evs + 1, sizeof(*queue));
	t0 = now_ns();
	for (i = 0; i < o.conns && i < o.max_conns; i++)
		if (!conn_open())
			break;
	/* Let the first connections come up before the clock starts. */
	while (n_open && n_idle < n_open && rel_now() < NS) {
		n = epoll_wait(ep, ee, 64, 10);
		for (i = 0; i < n; i++)
			conn_ready(ee[i].data.ptr, ee[i].events);
	}
	t0 = now_ns();
	while (next < n_evs || inflight()) {
		uint64_t now = rel_now();
		int wait = 10;

		while (next < n_evs && evs[next].t <= now)
			dispatch(&evs[next++]);
		expire(now);
		if (next < n_evs)
			wait = (int)((evs[next].t - now) / 1000000);
		n = epoll_wait(ep, ee, 64, wait < 10 ? wait : 10);
		for (i = 0; i < n; i++)
			conn_ready(ee[i].data.ptr, ee[i].events);
	}
	for (i = 0; i < o.max_conns; i++)
		conn_close(&conns[i]);
}

/* ------------------------------------------------------------ report */

struct stats {
	uint64_t sent, ok, err, wrong, cold, good, delayed, kinds[K_N], sched;
	double p[6], mean; /* p50 p90 p99 p99.9 max (ms), mean */
	double tm[3][2];   /* queue, load, compute: mean, p99 (ms) */
	double cp[3];	   /* cold requests: p50, p99, mean (ms) */
	double cc;	   /* cold requests: server compute mean (ms) */
	uint64_t n_timing;
};

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double q)
{
	size_t i;

	if (!n)
		return 0;
	i = (size_t)ceil(q * (double)n);
	return v[i ? i - 1 : 0];
}

static void mean_p99(double *v, size_t n, double *out)
{
	double s = 0;
	size_t i;

	for (i = 0; i < n; i++)
		s += v[i];
	qsort(v, n, sizeof(double), dcmp);
	out[0] = n ? s / (double)n : 0;
	out[1] = pct(v, n, 0.99);
}

/* Statistics of the measured requests (of one trace minute, or all). */
/* First event of minute m or later (a trace's events are in time order,
 * hence in minute order). */
static size_t minute_lo(int m)
{
	size_t lo = 0, hi = n_evs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (evs[mid].minute < m)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void stats_of(int minute, struct stats *s)
{
	size_t i, nl = 0, nt = 0, lo = minute < 0 ? 0 : minute_lo(minute),
		  hi = minute < 0 ? n_evs : minute_lo(minute + 1);
	double *lat = xcalloc(hi - lo, sizeof(double)), *tv[3], sum = 0;
	double *clat = xcalloc(hi - lo, sizeof(double)), csum = 0, ccomp = 0;
	size_t nc = 0, ncc = 0;
	uint64_t slo = (uint64_t)(o.slo_ms * 1e6);
	int k;

	memset(s, 0, sizeof(*s));
	for (k = 0; k < 3; k++)
		tv[k] = xcalloc(hi - lo, sizeof(double));
	for (i = lo; i < hi; i++) {
		const struct ev *e = &evs[i];
		uint64_t d = e->done > e->t ? e->done - e->t : 0;

		if (!e->measured)
			continue;
		s->sched++;
		s->sent += e->sent;
		s->delayed += e->delayed;
		if (e->kind >= K_N)
			continue;
		s->kinds[e->kind]++;
		if (e->kind != K_OK)
			continue;
		s->cold += e->cold;
		s->good += d <= slo;
		if (e->cold) {
			clat[nc++] = (double)d / 1e6;
			csum += (double)d / 1e6;
			if (e->c >= 0) {
				ccomp += e->c;
				ncc++;
			}
		}
		lat[nl++] = (double)d / 1e6;
		sum += (double)d / 1e6;
		if (e->q >= 0 && e->l >= 0 && e->c >= 0) {
			tv[0][nt] = e->q;
			tv[1][nt] = e->l;
			tv[2][nt++] = e->c;
		}
	}
	s->ok = s->kinds[K_OK];
	s->wrong = s->kinds[K_WRONG];
	for (k = K_CONNECT; k < K_WRONG; k++)
		s->err += s->kinds[k];
	qsort(lat, nl, sizeof(double), dcmp);
	s->p[0] = pct(lat, nl, 0.5);
	s->p[1] = pct(lat, nl, 0.9);
	s->p[2] = pct(lat, nl, 0.99);
	s->p[3] = pct(lat, nl, 0.999);
	s->p[4] = nl ? lat[nl - 1] : 0;
	s->mean = nl ? sum / (double)nl : 0;
	s->n_timing = nt;
	qsort(clat, nc, sizeof(double), dcmp);
	s->cp[0] = pct(clat, nc, 0.5);
	s->cp[1] = pct(clat, nc, 0.99);
	s->cp[2] = nc ? csum / (double)nc : 0;
	s->cc = ncc ? ccomp / (double)ncc : 0;
	free(clat);
	for (k = 0; k < 3; k++) {
		mean_p99(tv[k], nt, s->tm[k]);
		free(tv[k]);
	}
	free(lat);
}

static double frac(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0;
}

static void print_stats(const struct stats *s)
{
	double secs = (double)window_ns / 1e9;
	int k;

	printf("sent %llu  ok %llu  errors %llu  wrong %llu\n", (unsigned long long)s->sent,
	       (unsigned long long)s->ok, (unsigned long long)s->err, (unsigned long long)s->wrong);
	printf("errors by kind:");
	for (k = K_CONNECT; k < K_WRONG; k++)
		printf(" %s %llu", kind_name[k], (unsigned long long)s->kinds[k]);
	printf("\n");
	for (k = K_CONNECT; k < K_N; k++)
		if (first_err[k][0])
			printf("  first %s: %s\n", kind_name[k], first_err[k]);
	printf("latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
	       s->p[0], s->p[1], s->p[2], s->p[3], s->p[4], s->mean);
	printf("goodput at %.1f ms: %.4f (%llu of %llu)\n", o.slo_ms, frac(s->good, s->sched),
	       (unsigned long long)s->good, (unsigned long long)s->sched);
	printf("cold starts: %llu (rate %.4f of ok)\n", (unsigned long long)s->cold,
	       frac(s->cold, s->ok));
	if (n_evs && evs[0].kind == K_OK)
		printf("first request ms: %.3f (%s; server compute %.3f)\n",
		       (double)(evs[0].done - evs[0].t) / 1e6, evs[0].cold ? "cold" : "warm",
		       evs[0].c);
	printf("cold requests ms: p50 %.3f  p99 %.3f  mean %.3f  (server compute mean %.3f)\n",
	       s->cp[0], s->cp[1], s->cp[2], s->cc);
	printf("server ms (Server-Timing, %llu answers): queue mean %.3f p99 %.3f  load mean "
	       "%.3f p99 %.3f  compute mean %.3f p99 %.3f\n",
	       (unsigned long long)s->n_timing, s->tm[0][0], s->tm[0][1], s->tm[1][0], s->tm[1][1],
	       s->tm[2][0], s->tm[2][1]);
	printf("achieved rate: %.2f req/s sent, %.2f req/s ok over %.2f s (scheduled %.2f "
	       "req/s)\n",
	       (double)s->sent / secs, (double)s->ok / secs, secs, (double)s->sched / secs);
	printf("connections: %llu at most open, %llu cap-delayed sends, %llu resent after a "
	       "closed keep-alive\n",
	       (unsigned long long)max_open, (unsigned long long)s->delayed,
	       (unsigned long long)reconnects);
}

static void print_minutes(void)
{
	struct stats s;
	int m;

	printf("%-7s %8s %8s %8s %7s %6s %6s %10s %10s %8s\n", "minute", "trace", "sent", "ok",
	       "errors", "wrong", "cold", "p50 ms", "p99 ms", "goodput");
	for (m = 0; m < trace_minutes; m++) {
		stats_of(m, &s);
		printf("%-7d %8llu %8llu %8llu %7llu %6llu %6llu %10.3f %10.3f %8.4f\n",
		       trace_first + m, (unsigned long long)trace_counts[m],
		       (unsigned long long)s.sent, (unsigned long long)s.ok,
		       (unsigned long long)s.err, (unsigned long long)s.wrong,
		       (unsigned long long)s.cold, s.p[0], s.p[2], frac(s.good, s.sched));
	}
}

static json_t *stats_json(const struct stats *s)
{
	json_t *j = json_object(), *k = json_object();
	double secs = (double)window_ns / 1e9;
	int i;

	for (i = K_CONNECT; i < K_WRONG; i++)
		json_object_set_new(k, kind_name[i], json_integer((json_int_t)s->kinds[i]));
	json_object_set_new(j, "scheduled", json_integer((json_int_t)s->sched));
	json_object_set_new(j, "sent", json_integer((json_int_t)s->sent));
	json_object_set_new(j, "ok", json_integer((json_int_t)s->ok));
	json_object_set_new(j, "errors", json_integer((json_int_t)s->err));
	json_object_set_new(j, "errors_by_kind", k);
	json_object_set_new(j, "wrong", json_integer((json_int_t)s->wrong));
	json_object_set_new(j, "p50_ms", json_real(s->p[0]));
	json_object_set_new(j, "p90_ms", json_real(s->p[1]));
	json_object_set_new(j, "p99_ms", json_real(s->p[2]));
	json_object_set_new(j, "p999_ms", json_real(s->p[3]));
	json_object_set_new(j, "max_ms", json_real(s->p[4]));
	json_object_set_new(j, "mean_ms", json_real(s->mean));
	json_object_set_new(j, "goodput", json_real(frac(s->good, s->sched)));
	json_object_set_new(j, "cold_starts", json_integer((json_int_t)s->cold));
	json_object_set_new(j, "cold_start_rate", json_real(frac(s->cold, s->ok)));
	json_object_set_new(j, "cold_p50_ms", json_real(s->cp[0]));
	json_object_set_new(j, "cold_p99_ms", json_real(s->cp[1]));
	json_object_set_new(j, "cold_mean_ms", json_real(s->cp[2]));
	json_object_set_new(j, "cold_compute_ms_mean", json_real(s->cc));
	json_object_set_new(j, "queue_ms_mean", json_real(s->tm[0][0]));
	json_object_set_new(j, "queue_ms_p99", json_real(s->tm[0][1]));
	json_object_set_new(j, "load_ms_mean", json_real(s->tm[1][0]));
	json_object_set_new(j, "load_ms_p99", json_real(s->tm[1][1]));
	json_object_set_new(j, "compute_ms_mean", json_real(s->tm[2][0]));
	json_object_set_new(j, "compute_ms_p99", json_real(s->tm[2][1]));
	json_object_set_new(j, "achieved_rate", json_real((double)s->sent / secs));
	json_object_set_new(j, "ok_rate", json_real((double)s->ok / secs));
	json_object_set_new(j, "cap_delayed", json_integer((json_int_t)s->delayed));
	return j;
}

static void write_json(const struct stats *all)
{
	json_t *j = stats_json(all), *mins = json_array();
	struct stats s;
	int m;

	json_object_set_new(j, "url", json_string(o.url));
	json_object_set_new(j, "models", json_integer(n_models));
	json_object_set_new(j, "mode",
			    json_string(o.trace	  ? "trace" :
					o.uniform ? "uniform" :
						    "poisson"));
	json_object_set_new(j, "rate", json_real(o.trace ? 0 : o.rate));
	json_object_set_new(j, "slo_ms", json_real(o.slo_ms));
	json_object_set_new(j, "window_s", json_real((double)window_ns / 1e9));
	json_object_set_new(j, "max_conns_open", json_integer((json_int_t)max_open));
	json_object_set_new(j, "resent", json_integer((json_int_t)reconnects));
	for (m = 0; m < trace_minutes; m++) {
		json_t *x;

		stats_of(m, &s);
		x = stats_json(&s);
		json_object_set_new(x, "minute", json_integer(trace_first + m));
		json_object_set_new(x, "trace", json_integer((json_int_t)trace_counts[m]));
		json_array_append_new(mins, x);
	}
	json_object_set_new(j, "per_minute", mins);
	if (json_dump_file(j, o.json, JSON_INDENT(1) | JSON_REAL_PRECISION(6))) {
		fprintf(stderr, "loadgen: cannot write %s\n", o.json);
		exit(1);
	}
	json_decref(j);
}

/* ------------------------------------------------------------ main */

enum {
	O_URL = 256,
	O_PREFIX,
	O_INST,
	O_MODELS,
	O_BATCH,
	O_SEQ,
	O_INPUT,
	O_OUTPUT,
	O_VOCAB,
	O_CHECK,
	O_TOL,
	O_TIMEOUT,
	O_WAIT,
	O_RATE,
	O_UNIFORM,
	O_ZIPF,
	O_RR,
	O_WARMUP,
	O_DURATION,
	O_TRACE,
	O_MINUTES,
	O_SCALE,
	O_MAP,
	O_CONNS,
	O_MAXCONNS,
	O_SEED,
	O_SLO,
	O_JSON,
	O_MAXERR,
	O_QUIET,
	O_HELP,
};

static const struct option lopts[] = {
	{"url", 1, 0, O_URL},
	{"model-prefix", 1, 0, O_PREFIX},
	{"instances", 1, 0, O_INST},
	{"models", 1, 0, O_MODELS},
	{"batch", 1, 0, O_BATCH},
	{"seq", 1, 0, O_SEQ},
	{"input", 1, 0, O_INPUT},
	{"output", 1, 0, O_OUTPUT},
	{"vocab", 1, 0, O_VOCAB},
	{"check", 0, 0, O_CHECK},
	{"tolerance", 1, 0, O_TOL},
	{"timeout", 1, 0, O_TIMEOUT},
	{"wait", 1, 0, O_WAIT},
	{"rate", 1, 0, O_RATE},
	{"uniform", 0, 0, O_UNIFORM},
	{"zipf", 1, 0, O_ZIPF},
	{"round-robin", 0, 0, O_RR},
	{"warmup", 1, 0, O_WARMUP},
	{"duration", 1, 0, O_DURATION},
	{"trace", 1, 0, O_TRACE},
	{"minutes", 1, 0, O_MINUTES},
	{"time-scale", 1, 0, O_SCALE},
	{"map", 1, 0, O_MAP},
	{"conns", 1, 0, O_CONNS},
	{"max-conns", 1, 0, O_MAXCONNS},
	{"seed", 1, 0, O_SEED},
	{"slo", 1, 0, O_SLO},
	{"json", 1, 0, O_JSON},
	{"max-errors", 1, 0, O_MAXERR},
	{"quiet", 0, 0, O_QUIET},
	{"help", 0, 0, O_HELP},
	{0, 0, 0, 0},
};

static __attribute__((noreturn)) void bad_usage(const char *msg)
{
	fprintf(stderr, "loadgen: %s (loadgen --help lists the options)\n", msg);
	exit(2);
}

static double num(const char *s, double lo, double hi, const char *opt)
{
	char *end, msg[96];
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= lo && v <= hi)) {
		snprintf(msg, sizeof(msg), "--%s takes a number from %g to %g", opt, lo, hi);
		bad_usage(msg);
	}
	return v;
}

static void opt_one(int c, const char *a)
{
	switch (c) {
	case O_URL:
		o.url = a;
		break;
	case O_PREFIX:
		o.prefix = a;
		break;
	case O_INST:
		o.instances = (int)num(a, 1, 1e6, "instances");
		break;
	case O_MODELS:
		o.models = a;
		break;
	case O_BATCH:
		o.batch = (int)num(a, 1, 65536, "batch");
		break;
	case O_SEQ:
		o.seq = (int)num(a, 1, 1 << 20, "seq");
		break;
	case O_INPUT:
		o.input = a;
		break;
	case O_OUTPUT:
		o.output = a;
		break;
	case O_VOCAB:
		o.vocab = (long)num(a, 1, 1e9, "vocab");
		break;
	case O_CHECK:
		o.check = true;
		break;
	case O_TOL:
		o.tol = num(a, 0, 1, "tolerance");
		break;
	case O_TIMEOUT:
		o.timeout_ms = num(a, 1, 1e9, "timeout");
		break;
	case O_WAIT:
		o.wait_s = num(a, 0, 1e6, "wait");
		break;
	case O_RATE:
		o.rate = num(a, 1e-3, 1e7, "rate");
		break;
	case O_UNIFORM:
		o.uniform = true;
		break;
	case O_ZIPF:
		o.zipf = num(a, 0, 100, "zipf");
		break;
	case O_RR:
		o.round_robin = true;
		break;
	case O_WARMUP:
		o.warmup = num(a, 0, 1e6, "warmup"), o.warmup_set = true;
		break;
	case O_DURATION:
		o.duration = num(a, 1e-3, 1e7, "duration");
		break;
	case O_TRACE:
		o.trace = a;
		break;
	case O_MINUTES:
		if (sscanf(a, "%d-%d", &o.min_a, &o.min_b) != 2 || o.min_a < 1 || o.min_b < o.min_a)
			bad_usage("--minutes takes A-B, 1 <= A <= B");
		break;
	case O_SCALE:
		o.time_scale = num(a, 1e-3, 1e6, "time-scale");
		break;
	case O_MAP:
		if (strcmp(a, "rr") && strcmp(a, "hash"))
			bad_usage("--map takes rr or hash");
		o.map_hash = !strcmp(a, "hash");
		break;
	case O_CONNS:
		o.conns = (int)num(a, 0, 65536, "conns");
		break;
	case O_MAXCONNS:
		o.max_conns = (int)num(a, 1, 65536, "max-conns");
		break;
	case O_SEED:
		o.seed = (uint64_t)num(a, 0, 1e18, "seed");
		break;
	case O_SLO:
		o.slo_ms = num(a, 0, 1e9, "slo");
		break;
	case O_JSON:
		o.json = a;
		break;
	case O_MAXERR:
		o.max_errors = (int)num(a, 0, 1e12, "max-errors");
		break;
	case O_QUIET:
		o.quiet = true;
		break;
	case O_HELP:
		fputs(usage, stdout);
		exit(0);
	default:
		bad_usage("unknown option");
	}
}

static void opts_parse(int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1)
		opt_one(c == 'h' ? O_HELP : c, optarg);
	if (optind != argc)
		bad_usage("unexpected argument");
	if (!o.models && !(o.prefix && o.instances))
		bad_usage("--models, or --model-prefix with --instances, is required");
	if (o.trace && !o.warmup_set)
		o.warmup = 0;
	if (o.conns > o.max_conns)
		o.conns = o.max_conns;
}

int main(int argc, char **argv)
{
	struct stats all;
	bool fail;

	opts_parse(argc, argv);
	rng_state = o.seed;
	url_parse();
	signal(SIGPIPE, SIG_IGN);
	models_make();
	wait_ready();
	models_setup();
	if (o.trace)
		schedule_trace();
	else
		schedule_rate();
	printf("loadgen: %s, %d models (%s .. %s), %s, %zu requests scheduled, warm-up %.1f s, "
	       "measured %.1f s\n",
	       o.url, n_models, models[0].name, models[n_models - 1].name,
	       o.trace	 ? "trace" :
	       o.uniform ? "uniform arrivals" :
			   "Poisson arrivals",
	       n_evs, o.warmup, (double)window_ns / 1e9);
	fflush(stdout);
	run();
	if (trace_minutes && !o.quiet)
		print_minutes();
	stats_of(-1, &all);
	print_stats(&all);
	if (o.json)
		write_json(&all);
	fail = all.wrong || all.err > (uint64_t)o.max_errors;
	for (size_t i = 0; i < n_evs; i++)
		fail |= evs[i].kind == K_WRONG; /* warm-up answers count too */
	if (fail)
		printf("loadgen: FAIL (%llu wrong, %llu errors, at most %d allowed)\n",
		       (unsigned long long)all.wrong, (unsigned long long)all.err, o.max_errors);
	return fail ? 1 : 0;
}
