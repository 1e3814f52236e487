/* SPDX-License-Identifier: MIT */
/*
 * net/ep_repo: Triton's repository API. The index is answered on the loop
 * thread; load and unload run on a helper thread each (job_main), which
 * signals the loop through srv->jfd when done. A load or unload body may
 * name a version: {"parameters": {"version": "3"}} (or 3); without one,
 * load serves the highest version that loads and unload unloads all.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/internal.h"

#define MAX_JOBS 16u

/* ------------------------------------------------------------ index */

struct index_ctx {
	struct kserve_repo_entry *rows;
	uint32_t n;
};

static int enc_index(char *buf, size_t cap, const void *arg)
{
	const struct index_ctx *ic = arg;

	return kserve_encode_repo_index(buf, cap, ic->rows, ic->n);
}

void ep_repo_index(struct conn *c)
{
	struct server *srv = c->srv;
	struct index_ctx ic = {0};
	char(*vs)[12] = NULL;
	bool ready_only;
	uint32_t n = 0, i;
	int ret;

	ret = kserve_decode_repo_index(c->req.body.p, c->req.body.len, &ready_only);
	if (!ret)
		ret = index_fetch(srv, &n);
	if (!ret && !((ic.rows = calloc(n + 1, sizeof(*ic.rows))) && (vs = calloc(n + 1, 12))))
		ret = err_set(-ENOMEM, "out of memory");
	for (i = 0; !ret && i < n; i++) {
		const struct repo_info *ri = &srv->index[i];

		if (ready_only && ri->state != REPO_READY)
			continue;
		snprintf(vs[ic.n], sizeof(vs[0]), "%u", ri->version);
		ic.rows[ic.n] = (struct kserve_repo_entry){
			ri->name, vs[ic.n], repo_state_name((enum repo_state)ri->state),
			ri->reason};
		ic.n++;
	}
	if (!ret)
		ret = conn_body(c, enc_index, &ic);
	if (ret < 0)
		conn_fail(c, ret, err_msg(ret));
	else
		conn_reply(c, 200, "application/json", NULL, (size_t)ret);
	free(ic.rows);
	free(vs);
}

/* ------------------------------------------------------------ load/unload */

int ep_repo_act(struct sched *s, bool load, const char *model, uint32_t version)
{
	int ret;

	if (!load)
		return sched_unload(s, model, version);
	ret = repo_scan(sched_repo(s));
	if (ret)
		log_warn("repository rescan: %s", err_msg(ret));
	return sched_load(s, model, version);
}

void ep_job_done(struct server *srv, _Atomic bool *done)
{
	uint64_t one = 1;

	/* Release: pairs with the acquire of the loop's reaping. */
	atomic_store_explicit(done, true, memory_order_release);
	if (write(srv->jfd, &one, sizeof(one)) < 0)
		log_error("server: eventfd write: %s", strerror(errno));
}

static void *job_main(void *arg)
{
	struct job *j = arg;

	j->ret = ep_repo_act(j->srv->s, j->load, j->model, j->version);
	if (j->ret)
		snprintf(j->msg, sizeof(j->msg), "%s", err_msg(j->ret));
	ep_job_done(j->srv, &j->done);
	return NULL;
}

/* A version value: a positive integer or its decimal string. */
static int version_value(const json_t *v, uint32_t *out)
{
	const char *s = json_string_value(v);
	json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
	char *end;

	if (s) {
		errno = 0;
		n = isdigit((unsigned char)s[0]) ? (json_int_t)strtoll(s, &end, 10) : -1;
		if (errno || *end)
			n = -1;
	}
	if (n < 1 || n > UINT32_MAX)
		return err_set(DPRT_EINPUT, "\"version\" must be a positive integer or its "
					    "decimal string");
	*out = (uint32_t)n;
	return 0;
}

/* Body of load/unload: empty, or {"parameters": {"version": V, ...}}. */
static int decode_control(const char *body, size_t len, uint32_t *version)
{
	json_error_t je;
	json_t *root, *v;
	size_t i;
	int ret = 0;

	*version = 0;
	for (i = 0; i < len && isspace((unsigned char)body[i]); i++)
		;
	if (i == len)
		return 0;
	root = json_loadb(body, len, 0, &je);
	if (!json_is_object(root)) {
		json_decref(root);
		return err_set(DPRT_EINPUT, "the body must be a JSON object: %s",
			       root ? "not an object" : je.text);
	}
	v = json_object_get(json_object_get(root, "parameters"), "version");
	if (v)
		ret = version_value(v, version);
	json_decref(root);
	return ret;
}

void ep_repo_control(struct conn *c, bool load)
{
	struct server *srv = c->srv;
	uint32_t version;
	struct job *j;
	int ret;

	ret = decode_control(c->req.body.p, c->req.body.len, &version);
	if (ret) {
		conn_fail(c, ret, err_msg(ret));
		return;
	}
	if (srv->n_jobs >= MAX_JOBS) {
		conn_error(c, 503, "too many model loads and unloads in progress", false);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		conn_fail(c, -ENOMEM, "out of memory");
		return;
	}
	j->srv = srv;
	j->c = c;
	j->load = load;
	j->version = version;
	snprintf(j->model, sizeof(j->model), "%s", c->tgt.model);
	ret = pthread_create(&j->thread, NULL, job_main, j);
	if (ret) {
		free(j);
		conn_error(c, 503, "cannot start a helper thread", false);
		return;
	}
	c->job = j;
	j->next = srv->jobs;
	srv->jobs = j;
	srv->n_jobs++;
}

static void job_finish(struct job *j)
{
	struct conn *c = j->c;

	c->job = NULL;
	if (!j->ret && j->version)
		log_info("model '%s' version %u: %s", j->model, j->version,
			 j->load ? "loaded" : "unloaded");
	else if (!j->ret)
		log_info("model '%s': %s", j->model, j->load ? "loaded" : "unloaded");
	if (c->state == CS_CLOSED)
		conn_maybe_free(c);
	else if (j->ret)
		conn_fail(c, j->ret, j->msg);
	else
		conn_reply(c, 200, NULL, NULL, 0);
}

void jobs_reap(struct server *srv)
{
	struct job **jp = &srv->jobs, *j;

	while ((j = *jp)) {
		/* Acquire: pairs with the release in job_main(). */
		if (!atomic_load_explicit(&j->done, memory_order_acquire)) {
			jp = &j->next;
			continue;
		}
		*jp = j->next;
		pthread_join(j->thread, NULL);
		srv->n_jobs--;
		job_finish(j);
		free(j);
	}
}
