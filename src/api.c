/* SPDX-License-Identifier: MIT */
/*
 * The embedding API (include/dprt.h) over the scheduler: dprt_infer takes
 * a request record, binds the caller's tensors by name to the model's
 * signature, submits it and waits on a completion channel. Channels (one
 * per call in flight, each with an output buffer that grows to the largest
 * answer) come from a free list that grows to the peak concurrency and is
 * then reused, so a call allocates nothing once warm; dprt_close, with no
 * call running, finds them all there.
 */
#include "dprt.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"
#include "sched/sched.h"

_Static_assert((int)DPRT_FP32 == (int)DT_F32 && (int)DPRT_FP16 == (int)DT_F16 &&
		       (int)DPRT_BF16 == (int)DT_BF16 && (int)DPRT_INT64 == (int)DT_I64 &&
		       (int)DPRT_INT32 == (int)DT_I32 && (int)DPRT_UINT8 == (int)DT_U8 &&
		       (int)DPRT_BOOL == (int)DT_BOOL && DPRT_MAX_DIMS == MAX_DIMS,
	       "include/dprt.h and model.h disagree");

struct waiter {
	struct sched_chan *ch;
	void *obuf; /* answers beyond the record's own buffer */
	uint64_t ocap;
	struct waiter *next;
};

struct dprt {
	struct sched *s;
	pthread_mutex_t lock;
	struct waiter *free; /* idle waiters: all of them once no call runs */
};

const char *dprt_last_error(void)
{
	return err_msg(0);
}

int dprt_open(const struct dprt_options *o, dprt **out)
{
	struct sched_opts so = {0};
	struct dprt *d;
	int ret;

	*out = NULL;
	if (!o || !o->models)
		return err_set(-EINVAL, "dprt_open: options with a models directory are needed");
	so.models_dir = o->models;
	so.gpus = o->devices;
	so.cold_mode = o->cold_mode;
	so.plans_dir = o->plans;
	so.gpu_mem_limit = o->gpu_mem_limit;
	so.host_mem_limit = o->host_mem_limit;
	so.max_batch = o->max_batch;
	so.batch_delay_us = o->batch_delay_us;
	so.explicit_load = o->explicit_load != 0;
	d = calloc(1, sizeof(*d));
	if (!d)
		return err_set(-ENOMEM, "dprt_open: out of memory");
	ret = sched_create(&so, &d->s);
	if (ret) {
		free(d);
		return ret;
	}
	pthread_mutex_init(&d->lock, NULL);
	*out = d;
	return 0;
}

void dprt_close(dprt *d)
{
	struct waiter *w, *next;

	if (!d)
		return;
	sched_destroy(d->s);
	for (w = d->free; w; w = next) {
		next = w->next;
		sched_chan_destroy(w->ch);
		free(w->obuf);
		free(w);
	}
	pthread_mutex_destroy(&d->lock);
	free(d);
}

int dprt_load(dprt *d, const char *model, uint32_t version)
{
	return sched_load(d->s, model, version);
}

int dprt_unload(dprt *d, const char *model, uint32_t version)
{
	return sched_unload(d->s, model, version);
}

/* ---- waiters ---- */

static int waiter_new(struct dprt *d, struct waiter **out)
{
	struct waiter *w = calloc(1, sizeof(*w));
	int ret;

	if (!w)
		return err_set(-ENOMEM, "dprt_infer: out of memory");
	ret = sched_chan_create(d->s, &w->ch);
	if (ret) {
		free(w);
		return ret;
	}
	*out = w;
	return 0;
}

static int waiter_get(struct dprt *d, struct waiter **out)
{
	pthread_mutex_lock(&d->lock);
	*out = d->free;
	if (*out)
		d->free = (*out)->next;
	pthread_mutex_unlock(&d->lock);
	return *out ? 0 : waiter_new(d, out);
}

static void waiter_put(struct dprt *d, struct waiter *w)
{
	pthread_mutex_lock(&d->lock);
	w->next = d->free;
	d->free = w;
	pthread_mutex_unlock(&d->lock);
}

/* ---- binding ---- */

static int find_io(const struct io_desc *io, uint32_t n, const char *name)
{
	uint32_t i;

	for (i = 0; name && i < n; i++)
		if (!strcmp(io[i].name, name))
			return (int)i;
	return -1;
}

static int no_such(const struct graph *g, const char *kind, const char *name,
		   const struct io_desc *io, uint32_t n)
{
	char list[512];
	size_t l = 0;
	uint32_t i;

	list[0] = 0;
	for (i = 0; i < n && l < sizeof(list); i++)
		l += (size_t)snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "",
				      io[i].name);
	return err_set(-EINVAL, "model '%s' has no %s named '%s' (its %ss: %s)", g->name, kind,
		       name ? name : "(null)", kind, list);
}

/* The caller's inputs into req->in in signature order; outputs into the mask. */
static int bind(struct sched_req *req, const struct graph *g, const struct dprt_tensor *in,
		uint32_t n_in, const struct dprt_tensor *out, uint32_t n_out)
{
	uint32_t i;
	int j;

	for (i = 0; i < n_in; i++) {
		struct tview *v;

		j = find_io(g->inputs, g->n_inputs, in[i].name);
		if (j < 0)
			return no_such(g, "input", in[i].name, g->inputs, g->n_inputs);
		if (in[i].ndim < 1 || in[i].ndim > MAX_DIMS || (!in[i].data && in[i].nbytes))
			return err_set(-EINVAL, "input '%s': ndim %d (1..%d) or data missing",
				       in[i].name, in[i].ndim, MAX_DIMS);
		v = &req->in[j];
		if (v->shape.ndim)
			return err_set(-EINVAL, "input '%s' is given twice", in[i].name);
		v->shape.dtype = (uint8_t)in[i].dtype;
		v->shape.ndim = (uint8_t)in[i].ndim;
		memcpy(v->shape.dims, in[i].dims, sizeof(in[i].dims[0]) * (size_t)in[i].ndim);
		v->data = in[i].data;
		v->nbytes = in[i].nbytes;
	}
	req->out_mask = 0;
	for (i = 0; i < n_out; i++) {
		j = find_io(g->outputs, g->n_outputs, out[i].name);
		if (j < 0)
			return no_such(g, "output", out[i].name, g->outputs, g->n_outputs);
		req->out_mask |= 1u << j;
	}
	if (!n_out)
		return err_set(-EINVAL, "model '%s': no output asked for", g->name);
	return 0;
}

/* ---- inference ---- */

static int give_room(struct waiter *w, struct sched_req *req)
{
	void *p;

	if (req->out_need > w->ocap) {
		p = aligned_alloc(64, ALIGN_UP(req->out_need, 64));
		if (!p)
			return err_set(-ENOMEM, "dprt_infer: %llu bytes of outputs: out of memory",
				       (unsigned long long)req->out_need);
		free(w->obuf);
		w->obuf = p;
		w->ocap = ALIGN_UP(req->out_need, 64);
	}
	sched_req_set_output(req, w->obuf, w->ocap);
	return 0;
}

static void wait_for(struct waiter *w, struct sched_req **done)
{
	while (!sched_complete_poll(w->ch, done, 1))
		sched_chan_wait(w->ch, -1);
}

/* Copy the answers; too small a buffer: its nbytes says what is needed. */
static int copy_out(const struct graph *g, const struct sched_req *req, struct dprt_tensor *out,
		    uint32_t n_out)
{
	int ret = 0;
	uint32_t i;

	for (i = 0; i < n_out; i++) {
		const struct tview *v = &req->out[find_io(g->outputs, g->n_outputs, out[i].name)];
		uint64_t room = out[i].nbytes;

		out[i].dtype = v->shape.dtype;
		out[i].ndim = v->shape.ndim;
		memcpy(out[i].dims, v->shape.dims, sizeof(out[i].dims));
		out[i].nbytes = v->nbytes;
		if (room < v->nbytes || !out[i].data)
			ret = err_set(-ENOSPC, "output '%s' needs %llu bytes, %llu were given",
				      out[i].name, (unsigned long long)v->nbytes,
				      (unsigned long long)room);
	}
	for (i = 0; !ret && i < n_out; i++)
		memcpy(out[i].data, req->out[find_io(g->outputs, g->n_outputs, out[i].name)].data,
		       out[i].nbytes);
	return ret;
}

static int submit(struct dprt *d, struct waiter *w, struct sched_req *req)
{
	int ret;

	req->chan = w->ch;
	ret = sched_req_prepare(req);
	if (!ret)
		ret = sched_submit(d->s, req);
	if (ret == DPRT_EOUTBUF && req->out_need)
		ret = give_room(w, req) ?: sched_submit(d->s, req);
	if (ret && req->msg[0])
		err_set(ret, "%s", req->msg);
	return ret;
}

int dprt_infer(dprt *d, const char *model, uint32_t version, const struct dprt_tensor *in,
	       uint32_t n_in, struct dprt_tensor *out, uint32_t n_out)
{
	struct repo_entry *e = NULL;
	struct sched_req *req, *done = NULL;
	const struct graph *g;
	struct waiter *w;
	int ret;

	err_clear();
	ret = repo_lookup(sched_repo(d->s), model ? model : "", version, &e);
	if (ret)
		return ret;
	g = repo_entry_graph(e);
	if (repo_entry_state(e) != REPO_READY || !g)
		return err_set(DPRT_ENOMODEL, "model '%s' version %u is not ready (%s)", model,
			       repo_entry_version(e), repo_state_name(repo_entry_state(e)));
	if (n_in > SCHED_MAX_IO || n_out > SCHED_MAX_IO)
		return err_set(-EINVAL, "at most %d inputs and outputs", SCHED_MAX_IO);
	req = sched_req_get(d->s);
	if (!req)
		return err_set(DPRT_EOVERLOAD, "overloaded: every request record is in use");
	req->model = e;
	ret = bind(req, g, in, n_in, out, n_out) ?: waiter_get(d, &w);
	if (ret) {
		sched_req_put(d->s, req);
		return ret;
	}
	ret = submit(d, w, req);
	if (!ret) {
		wait_for(w, &done);
		ret = done->status;
		if (ret)
			err_set(ret, "%s", done->msg);
		else
			ret = copy_out(g, done, out, n_out);
	}
	sched_req_put(d->s, req);
	waiter_put(d, w);
	return ret;
}
