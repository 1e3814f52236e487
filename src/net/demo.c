/* SPDX-License-Identifier: MIT */
/*
 * net/demo: the repository `dprt serve` falls back to when it is given no
 * --models and finds no ./models: three tiny zoo models with seeded random
 * weights, built once into a cache directory, so that a first `dprt
 * --listen :9000` answers inference requests at once.
 */
#include "net/server.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEMO_SEED 1

static const char *const demo_models[] = {"bert-tiny", "gpt2-tiny", "resnet-tiny"};

/* $DPRT_CACHE/demo, $XDG_CACHE_HOME/dprt/demo or ~/.cache/dprt/demo. */
static int demo_dir(char *dir, size_t len)
{
	const char *v = knobs_get()->cache;
	const struct passwd *pw;
	int n;

	if (v && *v)
		n = snprintf(dir, len, "%s/demo", v);
	else if ((v = getenv("XDG_CACHE_HOME")) && *v)
		n = snprintf(dir, len, "%s/dprt/demo", v);
	else if (((v = getenv("HOME")) && *v) || ((pw = getpwuid(getuid())) && (v = pw->pw_dir)))
		n = snprintf(dir, len, "%s/.cache/dprt/demo", v);
	else
		return err_set(-ENOENT, "no place for the demo repository: set DPRT_CACHE or "
					"HOME, or give --models DIR");
	if (n < 0 || (size_t)n >= len)
		return err_set(-ENAMETOOLONG, "demo repository path too long");
	return 0;
}

/* Whether path holds a package that opens. */
static bool pkg_usable(const char *path)
{
	struct pkg *p;
	struct stat st;

	if (stat(path, &st) || !S_ISREG(st.st_mode) || pkg_open(path, &p))
		return false;
	pkg_close(p);
	return true;
}

static int demo_build(const char *dir, const char *name)
{
	char vdir[4200], path[4300];
	struct weight_source *ws;
	struct graph *g = NULL;
	int ret;

	snprintf(vdir, sizeof(vdir), "%s/%s/1", dir, name);
	snprintf(path, sizeof(path), "%s/model.dpk", vdir);
	if (pkg_usable(path))
		return 0;
	log_info("demo repository: building %s into %s", name, path);
	ret = mkdir_p(vdir);
	if (!ret)
		ret = zoo_build(name, DT_F32, &g);
	if (ret)
		return ret;
	ws = wsrc_random(DEMO_SEED);
	ret = ws ? pkg_write(path, g, wsrc_fill, ws) : -ENOMEM;
	wsrc_destroy(ws);
	graph_destroy(g);
	return ret;
}

int demo_repo_ensure(char *dir, size_t len)
{
	size_t i;
	int ret;

	ret = demo_dir(dir, len);
	for (i = 0; !ret && i < ARRAY_SIZE(demo_models); i++)
		ret = demo_build(dir, demo_models[i]);
	return ret;
}
