/* SPDX-License-Identifier: MIT */
/*
 * Graphs kept across address changes: a graph recorded again after the
 * weights moved (or the shared arena did) has the same topology, so its
 * parameters go into the existing executable graph with cuGraphExecUpdate
 * instead of a new instantiation, which costs far more.
 *
 * cuGraphExecUpdate is not in mem/cudrv.h's table: it is looked up here in
 * the driver cudrv_load() already opened (dlopen with RTLD_NOLOAD), and a
 * driver without it means every refresh instantiates.
 */
#include "cuda_priv.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#define STR(s) #s
#define XSTR(s) STR(s) /* cuda.h renames: cuGraphExecUpdate_v2 */

static __typeof__(cuGraphExecUpdate) *exec_update;
static pthread_once_t update_once = PTHREAD_ONCE_INIT;

static void update_once_fn(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
	void *sym = h ? dlsym(h, XSTR(cuGraphExecUpdate)) : NULL;

	memcpy(&exec_update, &sym, sizeof(sym));
	if (!exec_update)
		log_warn("cuda: the driver lacks %s: graphs are instantiated again when "
			 "addresses change",
			 XSTR(cuGraphExecUpdate));
}

/* Put graph's parameters into exec; false if the driver cannot (another
 * topology, a node type it cannot update): not an error. */
static bool try_update(CUgraphExec exec, CUgraph graph)
{
	CUgraphExecUpdateResultInfo info;

	pthread_once(&update_once, update_once_fn);
	if (!exec_update)
		return false;
	memset(&info, 0, sizeof(info));
	return exec_update(exec, graph, &info) == CUDA_SUCCESS;
}

int cuda_graph_refresh(struct cuda_dev *d, CUgraphExec *exec, CUgraph graph, bool *updated)
{
	CUgraphExec fresh = NULL;
	int ret;

	*updated = false;
	if (*exec && try_update(*exec, graph)) {
		d->cnt.graphs_updated++;
		*updated = true;
		return 0;
	}
	ret = CU(cuGraphInstantiate(&fresh, graph, 0));
	if (ret)
		return ret;
	if (*exec)
		CU(cuGraphExecDestroy(*exec));
	*exec = fresh;
	d->cnt.graphs_made++;
	return 0;
}
