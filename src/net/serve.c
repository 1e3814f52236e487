/* SPDX-License-Identifier: MIT */
/*
 * net/serve: dprt serve. Block the signals, create the server, open the
 * scheduler over the model repository (or the demo one) and run the loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/internal.h"

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Many connections need many descriptors: lift the soft limit. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		log_debug("cannot raise the descriptor limit: %s", strerror(errno));
}

/* CPU devices share the cores: give each worker's GEMMs its share. */
static void cpu_share(const struct sched_opts *so)
{
	struct sched_dev devs[SCHED_MAX_WORKERS];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint32_t n;

	if (sched_parse_devices(so->gpus ? so->gpus : "cpu", devs, SCHED_MAX_WORKERS, &n) ||
	    devs[0].kind != SCHED_DEV_CPU || ncpu < 1)
		return;
	cpu_set_threads((int)MAX(1, ncpu / (long)n));
}

static void log_models(struct sched *s, const char *dir)
{
	struct sched_stats *st = malloc(sizeof(*st));
	char devs[256];
	uint32_t i, ready = 0;
	size_t l = 0;

	if (!st)
		return;
	sched_stats(s, st);
	for (i = 0; i < st->n_models; i++) {
		const struct sched_model_stats *m = &st->models[i];

		ready += m->state == REPO_READY;
		log_info("  model %s version %u: %s", m->name, m->version,
			 repo_state_name((enum repo_state)m->state));
	}
	devs[0] = 0;
	for (i = 0; i < st->n_workers && l < sizeof(devs); i++)
		l += (size_t)snprintf(devs + l, sizeof(devs) - l, "%s%s", i ? ", " : "",
				      st->workers[i].name);
	log_info("repository %s: %u models, %u ready; devices: %s", dir, st->n_models_total, ready,
		 devs);
	free(st);
}

static int serve_repo(struct sched_opts *so, char *demo, size_t len)
{
	int ret;

	if (so->models_dir)
		return 0;
	if (is_dir("models")) {
		so->models_dir = "models";
		return 0;
	}
	ret = demo_repo_ensure(demo, len);
	if (ret)
		return ret;
	log_info("no --models and no ./models: serving the demo repository %s", demo);
	so->models_dir = demo;
	return 0;
}

int serve_main(const struct serve_opts *o)
{
	struct serve_opts so = *o;
	char demo[4096];
	struct server *srv = NULL;
	struct sched *s = NULL;
	int ret;

	ret = server_signals_block();
	if (ret)
		return ret;
	raise_nofile();
	ret = server_create(&so.net, &srv);
	if (ret)
		return ret;
	ret = serve_repo(&so.sched, demo, sizeof(demo));
	if (ret)
		goto out_server;
	cpu_share(&so.sched);
	if (so.sched.n_reqs < srv->o.max_conns)
		so.sched.n_reqs = srv->o.max_conns;
	log_info("loading the repository %s", so.sched.models_dir);
	so.sched.load_async = true; /* listen while the models load */
	ret = sched_create(&so.sched, &s);
	if (ret)
		goto out_server;
	log_models(s, so.sched.models_dir);
	ret = server_run(srv, s);
	sched_stop(s);
out_server:
	server_destroy(srv);
	sched_destroy(s);
	return ret;
}
