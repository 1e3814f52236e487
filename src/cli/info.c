/* SPDX-License-Identifier: MIT */
/* `dprt info`: a package's signature, layers and byte ranges. */
#include "cli/cli.h"
#include "model/model.h"

#include <stdio.h>
#include <string.h>

static void info_signature(const struct graph *g)
{
	char d[128];
	uint32_t i;

	printf("inputs:\n");
	for (i = 0; i < g->n_inputs; i++) {
		const struct io_desc *io = &g->inputs[i];

		cli_fmt_dims(d, sizeof(d), io->ndim, io->dims);
		printf("  %-20s %-6s %s%s\n", io->name, dtype_name((enum dtype)io->dtype), d,
		       io->flags & IO_OPTIONAL ? "  (optional)" : "");
	}
	printf("outputs:\n");
	for (i = 0; i < g->n_outputs; i++)
		printf("  %-20s %s\n", g->outputs[i].name,
		       dtype_name((enum dtype)g->outputs[i].dtype));
	if (g->max_seq)
		printf("seq: up to %lld (paper shape %lld)\n", (long long)g->max_seq,
		       (long long)g->def_seq);
}

/* Each layer's weight names: the checkpoint's state-dict names (recipes:
 * {a,b,c} concatenated, ^T transposed, #scale/#shift folded batch norm). */
static void info_weights(const struct graph *g)
{
	uint32_t l, t;

	printf("\n%5s  %-44s %s\n", "layer", "name", "weights from");
	for (l = 0; l < g->n_layers; l++) {
		printf("%5u  %-44s", l, g->layers[l].name);
		for (t = 0; t < g->n_tensors; t++)
			if (g->tensors[t].kind == TK_WEIGHT && g->tensors[t].layer == l)
				printf(" %s", g->tensors[t].name);
		printf("\n");
	}
}

static void info_layers(const struct graph *g)
{
	char d[128], b[32];
	uint32_t l, t;

	printf("\n%5s  %-44s %-10s %12s %12s %11s  %s\n", "layer", "name", "op", "offset", "bytes",
	       "params", "weights");
	for (l = 0; l < g->n_layers; l++) {
		const struct layer *ly = &g->layers[l];

		printf("%5u  %-44s %-10s %12llu %12llu %11llu ", l, ly->name,
		       op_name((enum op)g->nodes[ly->node].op), (unsigned long long)ly->offset,
		       (unsigned long long)ly->nbytes, (unsigned long long)ly->params);
		for (t = 0; t < g->n_tensors; t++) {
			const struct tensor *w = &g->tensors[t];

			if (w->kind != TK_WEIGHT || w->layer != l)
				continue;
			cli_fmt_dims(d, sizeof(d), w->ndim, w->dims);
			printf(" %s", d);
		}
		printf("\n");
	}
	printf("\ntotal: %u layers, %u nodes, %llu parameters, %s of weights (%s)\n", g->n_layers,
	       g->n_nodes, (unsigned long long)g->n_params,
	       fmt_bytes(g->weights_size, b, sizeof(b)), dtype_name((enum dtype)g->wdtype));
}

int cmd_info(int argc, char **argv)
{
	char path[4096];
	struct pkg *p;
	const struct graph *g;
	bool weights = false;
	int ret;

	if (argc == 3 && !strcmp(argv[1], "--weights")) {
		weights = true;
		argv[1] = argv[2];
		argc = 2;
	} else if (argc == 3 && !strcmp(argv[2], "--weights")) {
		weights = true;
		argc = 2;
	}
	if (argc != 2 || argv[1][0] == '-') {
		if (argc == 2 && !strcmp(argv[1], "--help")) {
			fputs(cli_usage_text, stdout);
			return 0;
		}
		cli_usage_hint("info", "usage: dprt info PATH [--weights]");
		return EXIT_USAGE;
	}
	ret = cli_resolve_pkg(argv[1], path, sizeof(path));
	if (!ret)
		ret = pkg_open(path, &p);
	if (ret)
		return cli_fail("info", ret);
	g = pkg_graph(p);
	printf("model: %s (%s), package %s\nchecksum: %016llx\n", g->name, g->arch, path,
	       (unsigned long long)pkg_checksum(p));
	info_signature(g);
	info_layers(g);
	if (weights)
		info_weights(g);
	pkg_close(p);
	return 0;
}
