/* SPDX-License-Identifier: MIT */
/*
 * cli: the dprt command line. main.c dispatches to one cmd_* per
 * subcommand (zoo.c, import.c, info.c, run.c, plan.c, serve.c); device.c holds what
 * depends on the CUDA backend being built in. Linked into ./dprt only, not
 * into libdprt.a. Everything here runs on the main thread.
 */
#ifndef DPRT_CLI_H
#define DPRT_CLI_H

#include "plan/plan.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit status of a command line that does not parse. */
#define EXIT_USAGE 2

struct exec_ops;

/* The subcommands; argv[0] is the command's name (serve's is "dprt" when it
 * runs as the default command). Each returns the process exit status: 0, 1
 * on failure, EXIT_USAGE on bad usage. */
int cmd_zoo(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* ---- main.c: helpers of the subcommands */

/* `dprt --help`; every command's --help but plan's prints it. */
extern const char cli_usage_text[];

/* "dprt CMD: MSG" (cmd NULL: "dprt: MSG") and a pointer to --help, on
 * stderr. */
void cli_usage_hint(const char *cmd, const char *msg);

/* "dprt: WHAT: <the error's message>" on stderr; returns 1, the exit status. */
int cli_fail(const char *what, int code);

/* s as a decimal integer in [lo, hi] into *out; 0 or -EINVAL. */
int cli_parse_long(const char *s, long lo, long hi, long *out);

/* dims as "[batch,seq,768]" into buf (DIM_BATCH and DIM_SEQ by name). */
void cli_fmt_dims(char *buf, size_t len, int ndim, const int64_t *dims);

/* ---- plan.c */

/*
 * Resolve a model argument as `dprt run` does: a package file; a directory
 * holding model.dpk; or a repository entry DIR whose highest numeric
 * version DIR/<v>/model.dpk is used. Writes the package path to out.
 * 0 or -ENOENT with err_set.
 */
int cli_resolve_pkg(const char *path, char *out, size_t len);

/* `dprt plan`'s options, as plan.c parses them. */
struct plan_opts {
	const char *model, *plans, *profile, *save_profile;
	int mode;		    /* enum plan_mode or plan.c's MODE_ALL */
	uint32_t n_gpus;	    /* 0: the profile's */
	int gpu_ids[PLAN_MAX_GPUS]; /* --gpus, ascending: the target first */
	bool synthetic, show;
};

/* State of one `dprt plan` run (plan.c's; cli_get_profile sets pf). */
struct plan_job {
	const struct plan_opts *o;
	char pkg_path[4096], dir[4096];
	struct pkg *pkg;
	const struct graph *g;
	struct plan_profile *pf;
	uint32_t n_gpus;
	bool tty;
};

/* ---- device.c: the CUDA-dependent part */

/* `dprt run`'s device: the CPU backend (gpu < 0, *dev NULL) or GPU gpu.
 * 0 or a negative code with err_set (DPRT_ENODEV without CUDA). */
int cli_open_device(int gpu, const struct exec_ops **be, void **dev);
/* Close what cli_open_device opened; dev may be NULL. */
void cli_close_device(const struct exec_ops *be, void *dev);
/* The device's name for `dprt run`'s report. */
const char *cli_device_label(const struct exec_ops *be, void *dev);

/* j->pf: a synthetic profile, --profile's file (checked against the
 * package), or one measured by the GPU profiler. 0 or a negative code with
 * err_set. */
int cli_get_profile(struct plan_job *j);

#endif
