/* SPDX-License-Identifier: MIT */
/*
 * net/metrics: the Prometheus text exposition (format 0.0.4) of the
 * scheduler's statistics and the server's own counters, for GET /metrics.
 * Every family has HELP and TYPE lines; label values are escaped (\\, \",
 * \n); histograms have cumulative le buckets ending in +Inf, _sum and
 * _count. Not a hot path: the text goes into a growable buffer.
 */
#include "net/server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	size_t cap;
	char *p;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if (b->p && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		cap = MAX(b->cap * 2, b->len + (size_t)n + 4096);
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

void sbuf_free(struct sbuf *b)
{
	free(b->p);
	*b = (struct sbuf){0};
}

/* A label value with \, " and newline escaped, as the format wants. */
void sbuf_label(struct sbuf *b, const char *s)
{
	const char *run = s;

	for (; *s; s++) {
		const char *rep = *s == '\\' ? "\\\\" :
				  *s == '"'  ? "\\\"" :
				  *s == '\n' ? "\\n" :
					       NULL;

		if (!rep)
			continue;
		sbuf_printf(b, "%.*s%s", (int)(s - run), run, rep);
		run = s + 1;
	}
	sbuf_printf(b, "%s", run);
}

static void family(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{model="m",version="v"<more>} (no value). */
static void model_series(struct sbuf *b, const char *name, const struct sched_model_stats *m)
{
	sbuf_printf(b, "%s{model=\"", name);
	sbuf_label(b, m->name);
	sbuf_printf(b, "\",version=\"%u\"", m->version);
}

static void model_metric(struct sbuf *b, const struct sched_stats *st, const char *name,
			 const char *type, const char *help, size_t off)
{
	uint32_t i;

	family(b, name, type, help);
	for (i = 0; i < st->n_models; i++) {
		const struct sched_model_stats *m = &st->models[i];

		model_series(b, name, m);
		sbuf_printf(b, "} %llu\n",
			    (unsigned long long)*(const uint64_t *)((const char *)m + off));
	}
}

static void device_metric(struct sbuf *b, const struct sched_stats *st, const char *name,
			  const char *type, const char *help, size_t off)
{
	uint32_t i;

	family(b, name, type, help);
	for (i = 0; i < st->n_workers; i++) {
		const struct sched_worker_stats *w = &st->workers[i];

		sbuf_printf(b, "%s{device=\"", name);
		sbuf_label(b, w->name);
		sbuf_printf(b, "\"} %llu\n",
			    (unsigned long long)*(const uint64_t *)((const char *)w + off));
	}
}

/* Like device_metric, for a field in nanoseconds shown in seconds. */
static void device_seconds(struct sbuf *b, const struct sched_stats *st, const char *name,
			   const char *help, size_t off)
{
	uint32_t i;

	family(b, name, "counter", help);
	for (i = 0; i < st->n_workers; i++) {
		const struct sched_worker_stats *w = &st->workers[i];

		sbuf_printf(b, "%s{device=\"", name);
		sbuf_label(b, w->name);
		sbuf_printf(b, "\"} %.9f\n",
			    (double)*(const uint64_t *)((const char *)w + off) / 1e9);
	}
}

static void histogram(struct sbuf *b, const struct sched_stats *st)
{
	const char *name = "dprt_request_duration_seconds";
	uint64_t cum;
	uint32_t i, k;

	family(b, name, "histogram",
	       "Time from a request's arrival to its completion "
	       "(queue + load + compute), by model.");
	for (i = 0; i < st->n_models; i++) {
		const struct sched_model_stats *m = &st->models[i];

		for (k = 0, cum = 0; k < SCHED_HIST_BUCKETS; k++) {
			cum += m->hist[k];
			model_series(b, "dprt_request_duration_seconds_bucket", m);
			if (k < SCHED_HIST_BUCKETS - 1)
				sbuf_printf(b, ",le=\"%.9g\"} %llu\n",
					    (double)sched_hist_le_ns[k] / 1e9,
					    (unsigned long long)cum);
			else
				sbuf_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
		}
		model_series(b, "dprt_request_duration_seconds_sum", m);
		sbuf_printf(b, "} %.9g\n", (double)m->lat_sum_ns / 1e9);
		model_series(b, "dprt_request_duration_seconds_count", m);
		sbuf_printf(b, "} %llu\n", (unsigned long long)cum);
	}
}

static void model_states(struct sbuf *b, const struct sched_stats *st)
{
	static const char *const names[] = {"UNAVAILABLE", "LOADING", "READY", "FAILED"};
	uint32_t i, k;

	family(b, "dprt_model_state", "gauge", "1 for the state each model version is in.");
	for (i = 0; i < st->n_models; i++) {
		for (k = 0; k < ARRAY_SIZE(names); k++) {
			model_series(b, "dprt_model_state", &st->models[i]);
			sbuf_printf(b, ",state=\"%s\"} %d\n", names[k], st->models[i].state == k);
		}
	}
}

static void residency(struct sbuf *b, const struct sched_stats *st, const uint8_t *resident)
{
	uint32_t i, w;

	family(b, "dprt_model_resident", "gauge",
	       "1 if the model version is resident in the device's memory.");
	for (i = 0; i < st->n_models; i++) {
		for (w = 0; w < st->n_workers; w++) {
			model_series(b, "dprt_model_resident", &st->models[i]);
			sbuf_printf(b, ",device=\"");
			sbuf_label(b, st->workers[w].name);
			sbuf_printf(b, "\"} %d\n", resident[i * st->n_workers + w] ? 1 : 0);
		}
	}
}

#define MOFF(f) offsetof(struct sched_model_stats, f)
#define WOFF(f) offsetof(struct sched_worker_stats, f)

static void model_metrics(struct sbuf *b, const struct sched_stats *st, const uint8_t *resident)
{
	model_metric(b, st, "dprt_requests_total", "counter",
		     "Inference requests run by the workers (completed or failed).",
		     MOFF(requests));
	model_metric(b, st, "dprt_request_failures_total", "counter",
		     "Inference requests that a worker failed.", MOFF(failures));
	model_metric(b, st, "dprt_cold_starts_total", "counter",
		     "Requests that loaded their model onto a device first.", MOFF(cold_starts));
	model_metric(b, st, "dprt_model_bytes_loaded_total", "counter",
		     "Weight bytes loaded onto devices for the model.", MOFF(bytes_loaded));
	model_metric(b, st, "dprt_model_in_flight", "gauge",
		     "Requests for the model queued or running.", MOFF(in_flight));
	model_metric(b, st, "dprt_model_host_bytes", "gauge",
		     "Bytes of the model's weights held in host memory.", MOFF(host_bytes));
	histogram(b, st);
	model_states(b, st);
	if (resident)
		residency(b, st, resident);
}

static void device_metrics(struct sbuf *b, const struct sched_stats *st)
{
	device_metric(b, st, "dprt_queue_depth", "gauge",
		      "Requests queued on the device, the running one included.",
		      WOFF(queue_depth));
	device_metric(b, st, "dprt_bytes_loaded_total", "counter",
		      "Weight bytes loaded onto the device.", WOFF(bytes_loaded));
	device_metric(b, st, "dprt_resident_models", "gauge",
		      "Models resident in the device's memory.", WOFF(resident_models));
	device_metric(b, st, "dprt_resident_bytes", "gauge",
		      "Bytes of device memory held by resident models.", WOFF(resident_bytes));
	device_metric(b, st, "dprt_device_memory_limit_bytes", "gauge",
		      "Device memory models may use (--gpu-mem-limit); 0: no limit.",
		      WOFF(mem_limit));
	device_metric(b, st, "dprt_evictions_total", "counter",
		      "Models evicted from the device to make room.", WOFF(evictions));
	device_metric(b, st, "dprt_standby_hits_total", "counter",
		      "Cold starts of a model kept on the device while evicted (only its "
		      "weights moved).",
		      WOFF(standby_hits));
	device_metric(b, st, "dprt_cold_moved_total", "counter",
		      "Cold starts whose weights landed elsewhere than last time (the "
		      "model's programs took the new addresses).",
		      WOFF(cold_moved));
	device_metric(b, st, "dprt_cold_deferred_total", "counter",
		      "Cold starts whose weights moved that ran eagerly, their graphs "
		      "re-recorded while the device was idle.",
		      WOFF(cold_deferred));
	device_seconds(b, st, "dprt_cold_fixup_seconds_total",
		       "Time cold starts spent taking new weight addresses.", WOFF(fixup_ns));
	device_metric(b, st, "dprt_place_evictions_total", "counter",
		      "Evictions so that a cold model's weights land where they were "
		      "(counted in dprt_evictions_total too).",
		      WOFF(place_evictions));
	device_metric(b, st, "dprt_room_waits_total", "counter",
		      "Requests whose model found the device full of models with requests "
		      "queued, and waited for those requests before its cold start.",
		      WOFF(room_waits));
	device_metric(b, st, "dprt_room_forced_total", "counter",
		      "Of those, cold starts that evicted models with newer requests queued "
		      "(which then cold-start again) once every request older than the wait "
		      "had run.",
		      WOFF(room_forced));
	device_metric(b, st, "dprt_model_creations_total", "counter",
		      "Models made on the device for the first time.", WOFF(creations));
	device_metric(b, st, "dprt_model_recreations_total", "counter",
		      "Models made on the device again after they were destroyed.",
		      WOFF(recreations));
	device_metric(b, st, "dprt_model_destroys_total", "counter",
		      "Models destroyed on the device (room, unload, shutdown).", WOFF(destroys));
	device_metric(b, st, "dprt_plans_total", "counter",
		      "Cold-start plans found or made for models on the device.", WOFF(plans));
	device_metric(b, st, "dprt_device_requests_total", "counter", "Requests run on the device.",
		      WOFF(requests));
	device_metric(b, st, "dprt_device_cold_starts_total", "counter",
		      "Cold starts on the device.", WOFF(cold_starts));
}

static void server_metrics(struct sbuf *b, const struct sched_stats *st,
			   const struct server_counters *c)
{
	uint32_t code;

	family(b, "dprt_host_weight_bytes", "gauge", "Bytes of host memory held by weights.");
	sbuf_printf(b, "dprt_host_weight_bytes %llu\n", (unsigned long long)st->host_used);
	family(b, "dprt_host_bytes", "gauge", "Bytes of host memory held by weight copies.");
	sbuf_printf(b, "dprt_host_bytes %llu\n", (unsigned long long)st->host_used);
	family(b, "dprt_host_hits_total", "counter",
	       "Host copies asked for (loads, cold starts) and found in host memory.");
	sbuf_printf(b, "dprt_host_hits_total %llu\n", (unsigned long long)st->host_hits);
	family(b, "dprt_host_misses_total", "counter",
	       "Host copies asked for and read from the package on disk.");
	sbuf_printf(b, "dprt_host_misses_total %llu\n", (unsigned long long)st->host_misses);
	family(b, "dprt_host_drops_total", "counter",
	       "Host copies dropped (least recently used under --host-mem-limit, unloads).");
	sbuf_printf(b, "dprt_host_drops_total %llu\n", (unsigned long long)st->host_drops);
	family(b, "dprt_disk_cold_starts_total", "counter",
	       "Cold starts whose host copy was read from the package on disk.");
	sbuf_printf(b, "dprt_disk_cold_starts_total %llu\n",
		    (unsigned long long)st->disk_cold_starts);
	family(b, "dprt_disk_streamed_cold_starts_total", "counter",
	       "Disk cold starts that began before the read ended (layers waited for).");
	sbuf_printf(b, "dprt_disk_streamed_cold_starts_total %llu\n",
		    (unsigned long long)st->disk_streamed);
	family(b, "dprt_host_recycled_total", "counter",
	       "Host copies made on a dropped copy's pinned buffer instead of pinning anew.");
	sbuf_printf(b, "dprt_host_recycled_total %llu\n", (unsigned long long)st->host_recycled);
	family(b, "dprt_disk_read_bytes_total", "counter",
	       "Weight bytes read from packages (loads and disk cold starts).");
	sbuf_printf(b, "dprt_disk_read_bytes_total %llu\n",
		    (unsigned long long)st->disk_read_bytes);
	family(b, "dprt_host_memory_limit_bytes", "gauge",
	       "Host memory weights may use (--host-mem-limit); 0: no limit.");
	sbuf_printf(b, "dprt_host_memory_limit_bytes %llu\n", (unsigned long long)st->host_limit);
	family(b, "dprt_requests_in_flight", "gauge", "Requests submitted and not completed.");
	sbuf_printf(b, "dprt_requests_in_flight %llu\n", (unsigned long long)st->in_flight);
	family(b, "dprt_http_requests_total", "counter", "HTTP responses sent, by status code.");
	for (code = 0; code < ARRAY_SIZE(c->http); code++)
		if (c->http[code])
			sbuf_printf(b, "dprt_http_requests_total{code=\"%u\"} %llu\n", code,
				    (unsigned long long)c->http[code]);
	family(b, "dprt_connections_open", "gauge", "Client connections open.");
	sbuf_printf(b, "dprt_connections_open %llu\n", (unsigned long long)c->conns_open);
	family(b, "dprt_connection_buffer_bytes", "gauge",
	       "Large receive and output buffers connections keep between requests.");
	sbuf_printf(b, "dprt_connection_buffer_bytes %llu\n", (unsigned long long)c->conn_kept);
	family(b, "dprt_connections_total", "counter", "Client connections accepted.");
	sbuf_printf(b, "dprt_connections_total %llu\n", (unsigned long long)c->conns_total);
	family(b, "dprt_connections_rejected_total", "counter",
	       "Connections turned away beyond --max-conns.");
	sbuf_printf(b, "dprt_connections_rejected_total %llu\n",
		    (unsigned long long)c->conns_rejected);
	family(b, "dprt_infer_rejected_total", "counter",
	       "Inference requests refused before reaching a worker (bad input, unknown or "
	       "unready model, overload).");
	sbuf_printf(b, "dprt_infer_rejected_total %llu\n", (unsigned long long)c->infer_rejected);
}

int metrics_render(struct sbuf *b, const struct sched_stats *st, const uint8_t *resident,
		   const struct server_counters *c)
{
	model_metrics(b, st, resident);
	device_metrics(b, st);
	server_metrics(b, st, c);
	return b->oom ? -ENOMEM : 0;
}
