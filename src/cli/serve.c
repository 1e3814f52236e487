/* SPDX-License-Identifier: MIT */
/*
 * `dprt serve` (also the default command): the server's options into a
 * struct serve_opts, then serve_main until SIGINT or SIGTERM.
 */
#include "cli/cli.h"
#include "net/server.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* Seconds (fractions allowed) into milliseconds, 1 ms .. 1 day. */
static int parse_secs(const char *s, uint32_t *ms)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.001 && v <= 86400))
		return -EINVAL;
	*ms = (uint32_t)(v * 1000 + 0.5);
	return 0;
}

static int serve_size(int c, const char *arg, struct serve_opts *o)
{
	uint64_t v;

	if (parse_size(arg, &v) || !v)
		return -EINVAL;
	if (c == 'G')
		o->sched.gpu_mem_limit = v;
	else if (c == 'H')
		o->sched.host_mem_limit = v;
	else if (c == 'A')
		o->sched.max_activation = v;
	else
		o->net.max_body = v;
	return 0;
}

static int serve_num(int c, const char *arg, struct serve_opts *o)
{
	long v;

	if (c == 'i')
		return parse_secs(arg, &o->net.idle_timeout_ms);
	if (c == 'r')
		return parse_secs(arg, &o->net.request_timeout_ms);
	if (cli_parse_long(arg, c == 'd' ? 0 : 1, 1L << 30, &v))
		return -EINVAL;
	if (c == 'b')
		o->sched.max_batch = (uint32_t)v;
	else if (c == 'd')
		o->sched.batch_delay_us = (uint32_t)v;
	else if (c == 'C')
		o->net.max_conns = (uint32_t)v;
	else if (c == 'S')
		o->sched.spin_us = (uint32_t)v;
	else if (c == 'T')
		o->sched.max_batch_tokens = (uint64_t)v;
	else
		o->sched.queue_depth = (uint32_t)v;
	return 0;
}

/* One serve option; 0, or EXIT_USAGE after a hint. */
static int serve_opt(int c, const char *arg, struct serve_opts *o)
{
	static const char *const what[128] = {
		['G'] = "--gpu-mem-limit takes a size like 512M or 8G",
		['H'] = "--host-mem-limit takes a size like 512M or 8G",
		['B'] = "--max-body takes a size like 64M",
		['A'] = "--max-activation takes a size like 512M or 8G",
		['b'] = "--max-batch takes a positive number",
		['d'] = "--batch-delay-us takes a number of microseconds",
		['C'] = "--max-conns takes a positive number",
		['Q'] = "--queue-depth takes a power of two",
		['S'] = "--spin-us takes a number of microseconds (1 or more)",
		['T'] = "--max-batch-tokens takes a positive number",
		['i'] = "--idle-timeout takes seconds (0.001 to 86400)",
		['r'] = "--request-timeout takes seconds (0.001 to 86400)",
	};
	int ret;

	switch (c) {
	case 'g':
		o->sched.gpus = arg;
		return 0;
	case 'l':
		o->net.listen = arg;
		return 0;
	case 'R':
		o->net.grpc_listen = arg;
		return 0;
	case 'm':
		o->sched.models_dir = arg;
		return 0;
	case 'c':
		o->sched.cpus = arg;
		return 0;
	case 'p':
		o->sched.plans_dir = arg;
		return 0;
	case 'M':
		if (sched_cold_mode_parse(arg, &ret)) {
			cli_usage_hint(NULL, err_msg(0));
			return EXIT_USAGE;
		}
		o->sched.cold_mode = arg;
		return 0;
	case 'E':
		if (sched_evict_parse(arg, &o->sched.evict_policy)) {
			cli_usage_hint(NULL, err_msg(0));
			return EXIT_USAGE;
		}
		return 0;
	case 'v':
		log_set_level(LOG_DEBUG);
		return 0;
	case 'q':
		log_set_level(LOG_ERROR);
		return 0;
	case 'L':
		if (strcmp(arg, "all") && strcmp(arg, "explicit")) {
			cli_usage_hint(NULL, "--load takes all or explicit");
			return EXIT_USAGE;
		}
		o->sched.explicit_load = !strcmp(arg, "explicit");
		return 0;
	case 'G':
	case 'H':
	case 'B':
	case 'A':
		ret = serve_size(c, arg, o);
		break;
	default:
		ret = serve_num(c, arg, o);
		break;
	}
	if (!ret)
		return 0;
	cli_usage_hint(NULL, what[c & 127]);
	return EXIT_USAGE;
}

int cmd_serve(int argc, char **argv)
{
	static const struct option lo[] = {
		{"gpus", required_argument, 0, 'g'},
		{"listen", required_argument, 0, 'l'},
		{"grpc-listen", required_argument, 0, 'R'},
		{"models", required_argument, 0, 'm'},
		{"cpus", required_argument, 0, 'c'},
		{"gpu-mem-limit", required_argument, 0, 'G'},
		{"host-mem-limit", required_argument, 0, 'H'},
		{"max-batch", required_argument, 0, 'b'},
		{"batch-delay-us", required_argument, 0, 'd'},
		{"max-body", required_argument, 0, 'B'},
		{"max-activation", required_argument, 0, 'A'},
		{"max-conns", required_argument, 0, 'C'},
		{"idle-timeout", required_argument, 0, 'i'},
		{"request-timeout", required_argument, 0, 'r'},
		{"queue-depth", required_argument, 0, 'Q'},
		{"load", required_argument, 0, 'L'},
		{"spin-us", required_argument, 0, 'S'},
		{"max-batch-tokens", required_argument, 0, 'T'},
		{"cold-mode", required_argument, 0, 'M'},
		{"plans", required_argument, 0, 'p'},
		{"evict", required_argument, 0, 'E'},
		{"verbose", no_argument, 0, 'v'},
		{"quiet", no_argument, 0, 'q'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	struct serve_opts o = {.net.version = DPRT_VERSION};
	int c, ret;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hvq", lo, NULL)) != -1) {
		if (c == 'h') {
			fputs(cli_usage_text, stdout);
			return 0;
		}
		if (c == '?' || c == ':') {
			fprintf(stderr, "dprt: %s '%s'\n(see 'dprt --help')\n",
				c == ':' ? "missing value for option" : "unknown option",
				argv[optind - 1]);
			return EXIT_USAGE;
		}
		ret = serve_opt(c, optarg, &o);
		if (ret)
			return ret;
	}
	if (optind < argc) {
		fprintf(stderr,
			"dprt: unexpected argument '%s' (serve takes only options)\n"
			"(see 'dprt --help')\n",
			argv[optind]);
		return EXIT_USAGE;
	}
	ret = serve_main(&o);
	if (ret == DPRT_EUSAGE) {
		cli_usage_hint(NULL, err_msg(ret));
		return EXIT_USAGE;
	}
	return ret ? cli_fail("serve", ret) : 0;
}
