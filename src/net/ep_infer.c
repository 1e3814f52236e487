/* SPDX-License-Identifier: MIT */
/*
 * net/ep_infer: POST .../infer. Decode the request into the connection's
 * arena, bind it to the model's signature, post a request record to the
 * scheduler; infer_done (on the completion channel) encodes the answer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"

#define OBUF_LIMIT (1ull << 30) /* outputs of one request, at most */

/* ------------------------------------------------------------ inference */

/* The decode arena, sized for the worst case of this body: a JSON number
 * takes at least 2 bytes and becomes at most 8. */
static int conn_arena(struct conn *c, size_t body)
{
	size_t need = 4 * body + 8192;

	if (c->arena.size >= need)
		return 0;
	arena_fini(&c->arena);
	if (arena_init(&c->arena, need))
		return err_set(-ENOMEM, "cannot allocate %zu bytes to decode the request", need);
	return 0;
}

/* Point the record's outputs into c->obuf (64-byte aligned, grown). */
static int conn_obuf(struct conn *c, uint64_t need)
{
	void *p;

	if (need > OBUF_LIMIT)
		return err_set(-E2BIG, "the outputs need %llu bytes; at most %llu per request",
			       (unsigned long long)need, (unsigned long long)OBUF_LIMIT);
	if (need > c->ocap && !conn_spare_take(c, need)) {
		p = aligned_alloc(64, ALIGN_UP(need, 64));
		if (!p)
			return err_set(-ENOMEM, "cannot allocate %llu bytes for the outputs",
				       (unsigned long long)need);
		conn_unkeep(c, &c->okept); /* the old one */
		free(c->obuf);
		c->obuf = p;
		c->ocap = ALIGN_UP(need, 64);
	}
	sched_req_set_output(c->sreq, c->obuf, c->ocap);
	return 0;
}

static void infer_fill(struct conn *c, const struct graph *g, const int *order)
{
	struct sched_req *r = c->sreq;
	uint32_t i;
	bool bin;

	r->model = c->e;
	r->chan = c->srv->chan;
	r->ctx = c;
	r->t_post = c->t_done;
	for (i = 0; i < g->n_inputs; i++) {
		const struct kserve_tensor *t;

		if (order[i] < 0)
			continue;
		t = &c->kr.inputs[order[i]];
		r->in[i] = (struct tview){t->shape, (void *)t->data, t->nbytes};
	}
	c->out_bin = 0;
	for (i = 0; i < g->n_outputs; i++) {
		if (!kserve_want_output(&c->kr, g->outputs[i].name, &bin))
			continue;
		r->out_mask |= 1u << i;
		c->out_bin |= (uint32_t)bin << i;
	}
}

/* Submit; when the outputs do not fit the record's own buffer, give it
 * one of this connection's and submit again. */
static int infer_submit(struct conn *c)
{
	struct sched_req *r = c->sreq;
	int ret = sched_req_prepare(r);

	if (!ret)
		ret = sched_submit(c->srv->s, r);
	if (ret != DPRT_EOUTBUF || !r->out_need)
		return ret;
	ret = conn_obuf(c, r->out_need);
	if (ret) {
		r->status = ret;
		snprintf(r->msg, sizeof(r->msg), "%s", err_msg(ret));
		return ret;
	}
	return sched_submit(c->srv->s, r);
}

/* Status of a failed infer: a model the lookup found but that does not
 * serve (any more) is 503, not 404. */
static int infer_status(int code)
{
	if (code == DPRT_ENOMODEL || code == -ESHUTDOWN)
		return 503;
	return kserve_http_status(code);
}

/* Checks before a record is taken; 0 or the code (message in err_msg). */
static int infer_check(struct conn *c, const struct graph **g, int *order)
{
	const struct http_req *q = &c->req;
	int ret;

	ret = conn_arena(c, q->body.len);
	if (!ret)
		ret = kserve_decode_request(q->body.p, q->body.len, q->infer_header_len, &c->arena,
					    &c->kr);
	if (!ret)
		ret = ep_lookup(c, &c->e);
	if (ret)
		return ret;
	*g = repo_entry_graph(c->e);
	if (repo_entry_state(c->e) != REPO_READY || !*g)
		return DPRT_ENOMODEL;
	if ((*g)->n_inputs > SCHED_MAX_IO || (*g)->n_outputs > SCHED_MAX_IO)
		return err_set(DPRT_ETOOMANY, "model '%s' has more than %u inputs or outputs",
			       (*g)->name, SCHED_MAX_IO);
	return kserve_bind(&c->kr, (*g)->inputs, (*g)->n_inputs, (*g)->outputs, (*g)->n_outputs,
			   order);
}

void ep_infer(struct conn *c)
{
	int order[SCHED_MAX_IO + 1];
	const struct graph *g = NULL;
	int ret = infer_check(c, &g, order);

	if (ret == DPRT_ENOMODEL && c->e) {
		c->srv->cnt.infer_rejected++;
		stats_fail(c);
		conn_not_ready(c, c->e, "not ready");
		return;
	}
	if (!ret && !(c->sreq = sched_req_get(c->srv->s)))
		ret = err_set(DPRT_EOVERLOAD, "overloaded: every request record is in use");
	if (!ret) {
		infer_fill(c, g, order);
		c->t_submit = clock_ns();
		ret = infer_submit(c);
	}
	if (ret) {
		c->srv->cnt.infer_rejected++;
		conn_error(c, c->sreq ? infer_status(ret) : kserve_http_status(ret),
			   c->sreq ? c->sreq->msg : err_msg(ret), false);
		stats_fail(c); /* after: its lookup may set the message */
		return;
	}
	snprintf(c->ver, sizeof(c->ver), "%u", repo_entry_version(c->e));
	c->inflight = true;
}

/* Response head with Server-Timing added after kserve's headers. */
static int infer_head(struct conn *c, const struct kserve_response *res, size_t json_len)
{
	const struct sched_req *r = c->sreq;
	int n = kserve_write_infer_head(c->head, sizeof(c->head) - 128, res, json_len,
					!c->close_after);

	if (n < 2)
		return -ENOSPC;
	n -= 2; /* before the blank line */
	n += snprintf(c->head + n, sizeof(c->head) - (size_t)n,
		      "Server-Timing: queue;dur=%.3f, load;dur=%.3f, compute;dur=%.3f\r\n\r\n",
		      (double)r->t_queue / 1e6, (double)r->t_load / 1e6, (double)r->t_exec / 1e6);
	return n;
}

static void infer_reply(struct conn *c)
{
	const struct sched_req *r = c->sreq;
	const struct graph *g = repo_entry_graph(r->model);
	struct kserve_out outs[SCHED_MAX_IO];
	struct kserve_param par[4] = {
		{.name = "queue_us", .type = KP_INT, .i = (int64_t)(r->t_queue / 1000)},
		{.name = "load_us", .type = KP_INT, .i = (int64_t)(r->t_load / 1000)},
		{.name = "compute_us", .type = KP_INT, .i = (int64_t)(r->t_exec / 1000)},
		{.name = "device", .type = KP_STRING, .s = c->srv->dev[r->worker]},
	};
	struct kserve_response res = {.model_name = repo_entry_name(r->model),
				      .model_version = c->ver,
				      .id = c->kr.id,
				      .cold_start = r->flags & SCHED_F_COLD,
				      .n_params = 4,
				      .params = par,
				      .outputs = outs};
	uint64_t bin_len, t_out = clock_ns();
	uint32_t i, nb = 1;
	size_t jl;
	int hl;

	for (i = 0; i < r->n_out; i++)
		if (r->out_mask >> i & 1)
			outs[res.n_outputs++] = (struct kserve_out){g->outputs[i].name,
								    r->out[i].shape, r->out[i].data,
								    c->out_bin >> i & 1};
	c->close_after = !conn_keep_alive(c);
	if (buf_grow(&c->wbuf, &c->wcap, kserve_response_bound(&res)) ||
	    kserve_encode_response(&res, c->wbuf, c->wcap, &jl, &bin_len) ||
	    (hl = infer_head(c, &res, jl)) < 0) {
		stats_fail(c);
		conn_error(c, 500, "cannot encode the response", false);
		return;
	}
	stats_success(c, t_out);
	c->iov[nb++] = (struct iovec){c->wbuf, jl};
	for (i = 0; i < res.n_outputs; i++)
		if (outs[i].binary)
			c->iov[nb++] = (struct iovec){(void *)outs[i].data,
						      (size_t)shape_numel(&outs[i].shape) *
							      dtype_size(outs[i].shape.dtype)};
	conn_send_response(c, 200, (size_t)hl, nb - 1);
}

void infer_done(struct sched_req *r)
{
	struct conn *c = r->ctx;

	c->inflight = false;
	if (c->state == CS_CLOSED) {
		conn_release_request(c);
		conn_maybe_free(c);
		return;
	}
	if (r->status) {
		stats_fail(c);
		conn_error(c, infer_status(r->status), r->msg, false);
		return;
	}
	infer_reply(c);
}
