/* SPDX-License-Identifier: MIT */
/* /metrics: the Prometheus text of a statistics snapshot, and sbuf. */
#include <criterion/criterion.h>

#include "net/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct sched_stats st;
static struct server_counters cnt;
static struct sbuf out;

static void setup(void)
{
	memset(&st, 0, sizeof(st));
	memset(&cnt, 0, sizeof(cnt));
	out = (struct sbuf){0};
}

static void teardown(void)
{
	sbuf_free(&out);
}

TestSuite(metrics, .init = setup, .fini = teardown);

Test(metrics, sbuf_grows_and_keeps_everything)
{
	char want[16];
	int i;

	for (i = 0; i < 20000; i++)
		sbuf_printf(&out, "%05d,", i);
	cr_assert_not(out.oom);
	cr_assert_eq(out.len, 6 * 20000);
	cr_assert_eq(out.p[out.len], 0, "NUL-terminated");
	snprintf(want, sizeof(want), "%05d,", 12345);
	cr_assert_eq(memcmp(out.p + 6 * 12345, want, 6), 0);
}

/* Two workers, two models; the second model's name needs escaping. */
static void fill(void)
{
	static const uint64_t hist[SCHED_HIST_BUCKETS] = {1, 0, 2, 0, 0, 3};

	st.n_workers = 2;
	snprintf(st.workers[0].name, sizeof(st.workers[0].name), "cpu0");
	snprintf(st.workers[1].name, sizeof(st.workers[1].name), "cpu1");
	st.workers[0].queue_depth = 3;
	st.workers[1].bytes_loaded = 4096;
	st.n_models = st.n_models_total = 2;
	snprintf(st.models[0].name, sizeof(st.models[0].name), "bert");
	st.models[0].version = 1;
	st.models[0].state = REPO_READY;
	st.models[0].requests = 6;
	memcpy(st.models[0].hist, hist, sizeof(hist));
	st.models[0].lat_count = 6;
	st.models[0].lat_sum_ns = 1500000000;
	snprintf(st.models[1].name, sizeof(st.models[1].name), "a\"b\\c\nd");
	st.models[1].version = 7;
	st.models[1].state = REPO_FAILED;
	st.host_used = 123;
	st.host_hits = 9;
	st.host_misses = 4;
	st.host_drops = 2;
	cnt.http[200] = 5;
	cnt.http[404] = 2;
	cnt.conns_open = 1;
}

static bool has(const char *line)
{
	return strstr(out.p, line) != NULL;
}

Test(metrics, families_have_help_and_type_before_samples)
{
	const char *help, *type, *sample;

	fill();
	cr_assert_eq(metrics_render(&out, &st, NULL, &cnt), 0);
	help = strstr(out.p, "# HELP dprt_requests_total ");
	type = strstr(out.p, "# TYPE dprt_requests_total counter\n");
	sample = strstr(out.p, "\ndprt_requests_total{");
	cr_assert(help && type && sample && help < type && type < sample, "%s", out.p);
	cr_assert(has("# TYPE dprt_request_duration_seconds histogram\n"));
	cr_assert(has("# TYPE dprt_queue_depth gauge\n"));
	cr_assert(has("dprt_requests_total{model=\"bert\",version=\"1\"} 6\n"));
	cr_assert(has("dprt_queue_depth{device=\"cpu0\"} 3\n"));
	cr_assert(has("dprt_bytes_loaded_total{device=\"cpu1\"} 4096\n"));
	cr_assert(has("dprt_host_weight_bytes 123\n"));
	cr_assert(has("# TYPE dprt_host_bytes gauge\ndprt_host_bytes 123\n"));
	cr_assert(has("# TYPE dprt_host_hits_total counter\ndprt_host_hits_total 9\n"));
	cr_assert(has("# TYPE dprt_host_misses_total counter\ndprt_host_misses_total 4\n"));
	cr_assert(has("# TYPE dprt_host_drops_total counter\ndprt_host_drops_total 2\n"));
	cr_assert(has("dprt_connections_open 1\n"));
	cr_assert_not(has("dprt_model_resident"), "no residency without the matrix");
}

Test(metrics, label_values_are_escaped)
{
	fill();
	cr_assert_eq(metrics_render(&out, &st, NULL, &cnt), 0);
	cr_assert(has("dprt_requests_total{model=\"a\\\"b\\\\c\\nd\",version=\"7\"} 0\n"), "%s",
		  out.p);
	cr_assert(has("dprt_model_state{model=\"a\\\"b\\\\c\\nd\",version=\"7\","
		      "state=\"FAILED\"} 1\n"));
	cr_assert(has("dprt_model_state{model=\"a\\\"b\\\\c\\nd\",version=\"7\","
		      "state=\"READY\"} 0\n"));
}

Test(metrics, histogram_is_cumulative)
{
	const char *p;
	char le[64];
	unsigned long long v, prev = 0;
	int n = 0;

	fill();
	cr_assert_eq(metrics_render(&out, &st, NULL, &cnt), 0);
	for (p = out.p; (p = strstr(p, "dprt_request_duration_seconds_bucket{model=\"bert\","));
	     p++) {
		cr_assert_eq(sscanf(p,
				    "dprt_request_duration_seconds_bucket{model=\"bert\","
				    "version=\"1\",le=\"%63[^\"]\"} %llu",
				    le, &v),
			     2);
		cr_assert_geq(v, prev, "bucket le=%s went down", le);
		prev = v;
		n++;
	}
	cr_assert_eq(n, SCHED_HIST_BUCKETS);
	cr_assert_str_eq(le, "+Inf");
	cr_assert_eq(prev, 6);
	cr_assert(has("dprt_request_duration_seconds_bucket{model=\"bert\",version=\"1\","
		      "le=\"0.0001\"} 1\n"),
		  "%s", out.p);
	cr_assert(has("dprt_request_duration_seconds_count{model=\"bert\",version=\"1\"} 6\n"));
	cr_assert(has("dprt_request_duration_seconds_sum{model=\"bert\",version=\"1\"} 1.5\n"));
}

Test(metrics, http_codes_and_residency)
{
	uint8_t resident[4] = {1, 0, 0, 1};

	fill();
	cr_assert_eq(metrics_render(&out, &st, resident, &cnt), 0);
	cr_assert(has("dprt_http_requests_total{code=\"200\"} 5\n"));
	cr_assert(has("dprt_http_requests_total{code=\"404\"} 2\n"));
	cr_assert_not(has("code=\"500\""), "codes never sent are left out");
	cr_assert(has("dprt_model_resident{model=\"bert\",version=\"1\",device=\"cpu0\"} 1\n"));
	cr_assert(has("dprt_model_resident{model=\"bert\",version=\"1\",device=\"cpu1\"} 0\n"));
	cr_assert(has("version=\"7\",device=\"cpu1\"} 1\n"));
}
