/* SPDX-License-Identifier: MIT */
/*
 * cli: subcommands of the dprt binary that live outside main.c, and the
 * helpers they share with it. Called from main() on the main thread only.
 */
#ifndef DPRT_CLI_H
#define DPRT_CLI_H

#include <stddef.h>

/* `dprt plan MODEL [options]`: argv[0] is "plan". Returns the process exit
 * status (0, 1 on failure, 2 on bad usage). */
int cmd_plan(int argc, char **argv);

/*
 * Resolve a model argument as `dprt run` does: a package file; a directory
 * holding model.dpk; or a repository entry DIR whose highest numeric
 * version DIR/<v>/model.dpk is used. Writes the package path to out.
 * 0 or -ENOENT with err_set.
 */
int cli_resolve_pkg(const char *path, char *out, size_t len);

#endif
