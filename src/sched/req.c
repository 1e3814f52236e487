/* SPDX-License-Identifier: MIT */
/*
 * Request records (a lock-free pool sized at start), their validation
 * against the model's signature, and completion channels.
 */
#define _GNU_SOURCE
#include "sched/internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define OUT_ALIGN 64u

/* ------------------------------------------------------------ pool */

struct sched_req *sched_req_get(struct sched *s)
{
	struct sched_req *req;
	void *buf;
	uint64_t cap;

	if (!ck_ring_dequeue_mpmc(&s->pool, s->pool_buf, &req))
		return NULL;
	HANDOFF_ACQUIRE(req);
	buf = req->pool_buf;
	cap = req->pool_cap;
	memset(req, 0, sizeof(*req));
	req->pool_buf = req->obuf = buf;
	req->pool_cap = req->ocap = cap;
	return req;
}

void sched_req_put(struct sched *s, struct sched_req *req)
{
	/* The ring holds every record, so this cannot fail. */
	HANDOFF_RELEASE(req);
	if (!ck_ring_enqueue_mpmc(&s->pool, s->pool_buf, req))
		log_error("request pool: record %p put twice", (void *)req);
}

void sched_req_set_output(struct sched_req *req, void *buf, uint64_t cap)
{
	req->obuf = buf ? buf : req->pool_buf;
	req->ocap = buf ? cap : req->pool_cap;
}

void req_fail(struct sched_req *req, int code)
{
	req->status = code;
	snprintf(req->msg, sizeof(req->msg), "%s", err_msg(code));
}

/* ------------------------------------------------------------ prepare */

/*
 * Shape scratch for graph_infer_shapes, one per poster thread. It grows
 * when a model with more tensors than any before is first prepared on the
 * thread, never per request; freed when the thread exits.
 */
struct shape_scratch {
	struct shape *v;
	uint32_t cap;
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
	struct shape_scratch *sc = p;

	free(sc->v);
	free(sc);
}

static void scratch_init(void)
{
	if (pthread_key_create(&scratch_key, scratch_free))
		log_error("sched: pthread_key_create failed");
}

static struct shape *scratch_get(uint32_t n)
{
	struct shape_scratch *sc;
	struct shape *v;

	pthread_once(&scratch_once, scratch_init);
	sc = pthread_getspecific(scratch_key);
	if (!sc) {
		sc = calloc(1, sizeof(*sc));
		if (!sc || pthread_setspecific(scratch_key, sc)) {
			free(sc);
			return NULL;
		}
	}
	if (n <= sc->cap)
		return sc->v;
	v = realloc(sc->v, sizeof(*v) * n);
	if (!v)
		return NULL;
	sc->v = v;
	sc->cap = n;
	return v;
}

static int check_inputs(const struct graph *g, const struct sched_req *req)
{
	uint32_t i;

	for (i = 0; i < g->n_inputs; i++) {
		const struct tview *v = &req->in[i];
		uint64_t need;

		if (!v->shape.ndim)
			continue;
		need = (uint64_t)shape_numel(&v->shape) * dtype_size((enum dtype)v->shape.dtype);
		if (v->nbytes != need || (need && !v->data))
			return err_set(DPRT_EINPUT,
				       "input '%s': %llu bytes given, its shape "
				       "needs %llu",
				       g->inputs[i].name, (unsigned long long)v->nbytes,
				       (unsigned long long)need);
	}
	for (; i < SCHED_MAX_IO; i++)
		if (req->in[i].shape.ndim)
			return err_set(DPRT_EINPUT, "model '%s' takes %u inputs; input #%u given",
				       repo_entry_name(req->model), g->n_inputs, i);
	return 0;
}

/* Tokens of the request: batch x sequence length, from the first input
 * whose signature has a sequence dim; 0 for models without one. */
static uint64_t req_tokens(const struct graph *g, const struct shape *shapes)
{
	uint32_t i;
	int d;

	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];
		uint64_t n = 1;
		bool seq = false;

		for (d = 0; d < io->ndim; d++) {
			if (io->dims[d] != DIM_BATCH && io->dims[d] != DIM_SEQ)
				continue;
			n *= (uint64_t)shapes[io->tensor].dims[d];
			seq |= io->dims[d] == DIM_SEQ;
		}
		if (seq)
			return n;
	}
	return 0;
}

static int check_model(const struct sched_req *req, const struct graph **out)
{
	const struct repo_entry *e = req->model;
	char why[SCHED_MSG_LEN];
	const struct graph *g;

	if (!e)
		return err_set(DPRT_ENOMODEL, "the request names no model");
	g = repo_entry_graph(e);
	if (!g || repo_entry_state(e) != REPO_READY) {
		repo_entry_reason(e, why, sizeof(why));
		return err_set(DPRT_ENOMODEL, "model '%s' version %u is not ready (%s%s%s)",
			       repo_entry_name(e), repo_entry_version(e),
			       repo_state_name(repo_entry_state(e)), why[0] ? ": " : "", why);
	}
	if (g->n_inputs > SCHED_MAX_IO || g->n_outputs > SCHED_MAX_IO)
		return err_set(DPRT_ETOOMANY, "model '%s' has more than %u inputs or outputs",
			       repo_entry_name(e), SCHED_MAX_IO);
	if (req->out_mask >> g->n_outputs)
		return err_set(DPRT_EINPUT, "model '%s' has %u outputs; output #%u requested",
			       repo_entry_name(e), g->n_outputs,
			       31 - (unsigned)__builtin_clz(req->out_mask));
	*out = g;
	return 0;
}

/* Output shapes from the inferred tensor shapes; out_need in bytes. */
static void set_outputs(struct sched_req *req, const struct graph *g, const struct shape *shapes)
{
	uint32_t i;

	req->out_need = 0;
	memset(req->out, 0, sizeof(req->out));
	for (i = 0; i < g->n_outputs; i++) {
		struct tview *o = &req->out[i];

		if (!(req->out_mask >> i & 1))
			continue;
		o->shape = shapes[g->outputs[i].tensor];
		o->nbytes =
			(uint64_t)shape_numel(&o->shape) * dtype_size((enum dtype)o->shape.dtype);
		req->out_need += ALIGN_UP(o->nbytes, OUT_ALIGN);
	}
}

int sched_req_prepare(struct sched_req *req)
{
	struct shape in[SCHED_MAX_IO], *shapes;
	const struct graph *g = NULL;
	uint32_t i;
	int ret;

	req->flags &= ~(uint32_t)SCHED_F_PREPARED;
	ret = check_model(req, &g);
	if (!ret)
		ret = check_inputs(g, req);
	if (ret)
		goto out_fail;
	for (i = 0; i < g->n_inputs; i++)
		in[i] = req->in[i].shape;
	/* shapes, then graph_act_peak's work[n_tensors] in the same scratch */
	shapes = scratch_get(g->n_tensors * 2);
	if (!shapes) {
		ret = err_set(-ENOMEM, "no memory to check the request's shapes");
		goto out_fail;
	}
	ret = graph_infer_shapes(g, in, shapes);
	if (ret)
		goto out_fail;
	req->act_need = graph_act_peak(g, shapes, (uint32_t *)(void *)(shapes + g->n_tensors));
	req->tokens = req_tokens(g, shapes);
	if (!req->out_mask)
		req->out_mask = g->n_outputs >= 32 ? UINT32_MAX : (1u << g->n_outputs) - 1;
	req->n_in = g->n_inputs;
	req->n_out = g->n_outputs;
	set_outputs(req, g, shapes);
	req->flags |= SCHED_F_PREPARED;
	return 0;
out_fail:
	req_fail(req, ret);
	return ret;
}

int req_bind_outputs(struct sched_req *req)
{
	uint64_t off = 0;
	char a[32], b[32];
	uint32_t i;

	if (req->out_need > req->ocap || ((uintptr_t)req->obuf & (OUT_ALIGN - 1)))
		return err_set(DPRT_EOUTBUF,
			       "outputs of model '%s' need %s; the request's output "
			       "buffer holds %s",
			       repo_entry_name(req->model), fmt_bytes(req->out_need, a, sizeof(a)),
			       fmt_bytes(req->ocap, b, sizeof(b)));
	for (i = 0; i < req->n_out; i++) {
		if (!(req->out_mask >> i & 1))
			continue;
		req->out[i].data = (char *)req->obuf + off;
		off += ALIGN_UP(req->out[i].nbytes, OUT_ALIGN);
	}
	return 0;
}

/* ------------------------------------------------------------ channels */

struct chan_ring {
	struct ck_ring ring;
	struct ck_ring_buffer *buf;
} __attribute__((aligned(CACHELINE)));

/*
 * One SPSC ring per worker (producer: that worker; consumer: the channel's
 * owner), each able to hold every record of the pool, so a push never
 * finds it full; one eventfd for all of them.
 */
struct sched_chan {
	int efd;
	uint32_t n_rings, cap, next;
	struct chan_ring *rings;
};

int sched_chan_create(struct sched *s, struct sched_chan **out)
{
	struct sched_chan *ch = calloc(1, sizeof(*ch));
	uint32_t i;
	int ret = -ENOMEM;

	if (!ch)
		return -ENOMEM;
	ch->n_rings = s->n_workers;
	ch->cap = s->chan_cap;
	ch->rings = aligned_alloc(CACHELINE, sizeof(*ch->rings) * ch->n_rings);
	if (!ch->rings)
		goto out_free;
	memset(ch->rings, 0, sizeof(*ch->rings) * ch->n_rings);
	for (i = 0; i < ch->n_rings; i++) {
		ch->rings[i].buf = calloc(ch->cap, sizeof(*ch->rings[i].buf));
		if (!ch->rings[i].buf)
			goto out_free;
		ck_ring_init(&ch->rings[i].ring, ch->cap);
	}
	ch->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ch->efd < 0) {
		ret = err_set(-errno, "eventfd: %s", strerror(errno));
		goto out_free;
	}
	*out = ch;
	return 0;
out_free:
	ch->efd = -1;
	sched_chan_destroy(ch);
	return ret;
}

void sched_chan_destroy(struct sched_chan *ch)
{
	uint32_t i;

	if (!ch)
		return;
	for (i = 0; ch->rings && i < ch->n_rings; i++)
		free(ch->rings[i].buf);
	free(ch->rings);
	if (ch->efd >= 0)
		close(ch->efd);
	free(ch);
}

int sched_chan_fd(const struct sched_chan *ch)
{
	return ch->efd;
}

void chan_push(struct sched_chan *ch, uint32_t worker, struct sched_req *req)
{
	struct chan_ring *cr = &ch->rings[worker];
	uint64_t one = 1;

	/* Cannot be full (see struct sched_chan); if a caller broke that by
	 * sharing records between schedulers, wait rather than lose one. */
	HANDOFF_RELEASE(req);
	while (!ck_ring_enqueue_spsc(&cr->ring, cr->buf, req))
		ck_pr_stall();
	if (write(ch->efd, &one, sizeof(one)) < 0)
		log_error("completion channel: eventfd write: %s", strerror(errno));
}

unsigned sched_complete_poll(struct sched_chan *ch, struct sched_req **out, unsigned max)
{
	unsigned n = 0, k;
	uint64_t v, one = 1;

	/* Reset the eventfd before draining: a push after the drain writes
	 * it again, so no completion is left without a signal. */
	if (read(ch->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_error("completion channel: eventfd read: %s", strerror(errno));
	for (k = 0; k < ch->n_rings && n < max; k++) {
		struct chan_ring *cr = &ch->rings[(ch->next + k) % ch->n_rings];

		while (n < max && ck_ring_dequeue_spsc(&cr->ring, cr->buf, &out[n]))
			HANDOFF_ACQUIRE(out[n++]);
	}
	ch->next = (ch->next + 1) % ch->n_rings;
	for (k = 0; n == max && k < ch->n_rings; k++) {
		if (!ck_ring_size(&ch->rings[k].ring))
			continue;
		/* Left some behind: keep the channel signalled. */
		if (write(ch->efd, &one, sizeof(one)) < 0)
			log_error("completion channel: eventfd write: %s", strerror(errno));
		break;
	}
	return n;
}

void sched_chan_wait(struct sched_chan *ch, int timeout_ms)
{
	struct pollfd pfd = {.fd = ch->efd, .events = POLLIN};

	poll(&pfd, 1, timeout_ms);
}
