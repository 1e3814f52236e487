/* SPDX-License-Identifier: MIT */
/*
 * dprt command line: the dispatch to the subcommands, --help and --version,
 * and the helpers the subcommands share (see cli.h).
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

const char cli_usage_text[] =
	"usage: dprt <command> [options]\n"
	"       dprt [serve options]      (the same as 'dprt serve [options]')\n"
	"\n"
	"Commands:\n"
	"  serve                      serve a model repository over HTTP/1.1 with the\n"
	"                             KServe v2 protocol until SIGINT or SIGTERM\n"
	"      --gpus LIST            devices: cpu, cpu:N (N virtual CPU devices), or\n"
	"                             GPU ids like 0-3 or 0,2 (default cpu)\n"
	"      --listen ADDR          :PORT (every address), HOST:PORT, [IPV6]:PORT;\n"
	"                             port 0 picks a free one (default :9000)\n"
	"      --grpc-listen ADDR     KServe v2 over gRPC (HTTP/2 cleartext) on ADDR,\n"
	"                             same forms, unix:PATH, or off (default :8001;\n"
	"                             when that default is busy, a warning and no\n"
	"                             gRPC); also ModelMesh's mmesh.ModelRuntime\n"
	"      --models DIR           repository DIR/NAME/VERSION/model.dpk (default\n"
	"                             ./models if it exists, else a demo repository of\n"
	"                             bert-tiny, gpt2-tiny and resnet-tiny built on\n"
	"                             first use in $DPRT_CACHE/demo, else\n"
	"                             $XDG_CACHE_HOME/dprt/demo, else ~/.cache/dprt/demo)\n"
	"      --load all|explicit    load every model at start (default), or only on\n"
	"                             POST /v2/repository/models/NAME/load\n"
	"      --cpus LIST            cores to pin the device workers to (default: the\n"
	"                             last cores)\n"
	"      --gpu-mem-limit SIZE   device memory for models, per device; idle models\n"
	"                             are evicted to make room (see --evict)\n"
	"      --evict cost|lru       which idle model goes: cost (default) the one\n"
	"                             whose loss costs least, its cold-start time\n"
	"                             times its recent request rate per byte freed;\n"
	"                             lru the least recently used\n"
	"      --host-mem-limit SIZE  host memory for weight copies\n"
	"      --max-batch N          fuse up to N queued requests of a model (default 1)\n"
	"      --batch-delay-us N     wait up to N us for a batch to fill (default 0)\n"
	"      --cold-mode MODE       how a device brings a model in: dprt (default on\n"
	"                             GPUs: dprt's planner), deepplan, deepplan-v1,\n"
	"                             pipeline, demand, pt, pt+dha: by a plan for the\n"
	"                             devices served (dprt, pt, pt+dha lend layers to\n"
	"                             idle devices' links; one device: its own), the\n"
	"                             one 'dprt plan MODEL' stored for this GPU model,\n"
	"                             else one made from the stored profile, else the\n"
	"                             model is profiled on its GPU when it is loaded,\n"
	"                             between requests, and profile and plan stored;\n"
	"                             auto: a stored plan, else the whole model; load\n"
	"                             (default on CPU devices): the whole model, then\n"
	"                             the run (on GPUs the same as demand: a few large\n"
	"                             copies, no profiling). An evicted model keeps its\n"
	"                             plans; its next cold start moves only weights\n"
	"      --plans DIR            plan repository (default: $PLAN_REPO/<model>-<id>,\n"
	"                             else plans/ beside the model's package)\n"
	"      --spin-us N            an idle worker polls N us before it sleeps\n"
	"                             (default 50; longer trades CPU for latency)\n"
	"      --queue-depth N        requests queued per device, a power of 2\n"
	"                             (default 256); beyond it: 503\n"
	"      --max-body SIZE        largest request body (default 64M); beyond: 413\n"
	"      --max-activation SIZE  activation memory one request may need (default:\n"
	"                             a quarter of host memory on CPU devices; on\n"
	"                             GPUs half of --gpu-mem-limit, else 16G);\n"
	"                             beyond: 413 with the size it needs\n"
	"      --max-batch-tokens N   batch x sequence length one request may have\n"
	"                             (default: no limit but --max-activation); beyond: 413\n"
	"      --max-conns N          open connections (default 1024); a connection\n"
	"                             beyond is answered 503 and closed\n"
	"      --idle-timeout S       close a connection idle for S seconds (default 60)\n"
	"      --request-timeout S    a request must be complete S seconds after its\n"
	"                             first byte, else 408 and close (default 30)\n"
	"      Endpoints: GET /v2, /v2/health/live, /v2/health/ready,\n"
	"      /v2/models/NAME[/versions/V][/ready], /metrics (Prometheus); POST\n"
	"      /v2/models/NAME[/versions/V]/infer (JSON or binary tensors),\n"
	"      /v2/repository/index, /v2/repository/models/NAME/load|unload.\n"
	"      Infer responses tell cold starts (parameter cold_start, header\n"
	"      Dprt-Cold-Start) and timings (queue_us, load_us, compute_us, header\n"
	"      Server-Timing). SIGINT/SIGTERM: stop accepting, answer the requests\n"
	"      received, exit 0. SIZE takes K, M, G suffixes; S may be fractional.\n"
	"  zoo NAME -o DIR|FILE.dpk   build a model of the zoo into a package\n"
	"      --dtype fp32|fp16|bf16 weight and activation type (default fp32)\n"
	"      --seed N               seed of the random weights (default 1)\n"
	"      --weights FILE         take weights from a safetensors file whose\n"
	"                             tensors carry the PyTorch state-dict names\n"
	"  zoo --list                 list the models the zoo can build\n"
	"  import PATH -o REPO/NAME   import an ONNX file (.onnx, external data\n"
	"                             beside it; exports of BERT, RoBERTa,\n"
	"                             DistilBERT, GPT-2, ViT, ResNet, opset 14-18) or\n"
	"                             a Hugging Face checkpoint directory\n"
	"                             (config.json + model.safetensors or a sharded\n"
	"                             model.safetensors.index.json; BERT, RoBERTa,\n"
	"                             DistilBERT, GPT-2, ViT and their task heads)\n"
	"                             as the next version REPO/NAME/<v>/model.dpk\n"
	"      --dtype fp32|fp16|bf16 weight and activation type (default fp32)\n"
	"      --name NAME            the model's name (default: NAME of -o)\n"
	"      --seq N                reference sequence length (profiles, warm-up\n"
	"                             and benchmarks; default the checkpoint's, else\n"
	"                             128)\n"
	"  info PATH                  show a package: signature, layers, byte ranges\n"
	"      --weights              also each layer's checkpoint tensor names\n"
	"  run PATH                   run one inference and print the outputs\n"
	"      --random               random inputs (the default without --input)\n"
	"      --input FILE           inputs from a safetensors file (tensor names =\n"
	"                             the model's input names)\n"
	"      --output FILE          write the outputs to a safetensors file\n"
	"      --batch N --seq N      input shape for --random (default 1 and the\n"
	"                             model's paper shape)\n"
	"      --repeat N             run N more times and report latency\n"
	"      --threads N            CPU threads for GEMMs (default: all cores)\n"
	"      --gpus cpu|N           run on the CPU backend (default) or GPU N\n"
	"  plan PATH                  profile and plan cold starts (DHA, PT)\n"
	"      --gpus 0[,1,2,3]       target GPU first, then helper GPUs\n"
	"      --mode M               dprt (default), deepplan-v1, deepplan,\n"
	"                             pipeline, pt, pt+dha, demand\n"
	"      --plans DIR            plan repository (default PATH's plans/;\n"
	"                             env PLAN_REPO)\n"
	"      --profile FILE         plan from a saved profile; --save-profile\n"
	"      --synthetic-profile    plan from a profile derived from the\n"
	"                             package and the paper's H100 figures\n"
	"      --show                 print the plan as a table\n"
	"\n"
	"PATH is a model.dpk file, a directory holding one, or a repository entry\n"
	"DIR/NAME whose highest version DIR/NAME/<v>/model.dpk is used.\n"
	"\n"
	"Options for every command:\n"
	"  -v, --verbose    more logging      -q, --quiet   errors only\n"
	"  -h, --help       this text         --version     print the version\n";

void cli_usage_hint(const char *cmd, const char *msg)
{
	fprintf(stderr, "dprt%s%s: %s\n(see 'dprt --help')\n", cmd ? " " : "", cmd ? cmd : "", msg);
}

int cli_fail(const char *what, int code)
{
	fprintf(stderr, "dprt: %s: %s\n", what, err_msg(code));
	return 1;
}

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

void cli_fmt_dims(char *buf, size_t len, int ndim, const int64_t *dims)
{
	size_t n = 0;
	int i;

	n += (size_t)snprintf(buf + n, len - n, "[");
	for (i = 0; i < ndim && n < len; i++) {
		const char *sep = i ? "," : "";

		if (dims[i] == DIM_BATCH)
			n += (size_t)snprintf(buf + n, len - n, "%sbatch", sep);
		else if (dims[i] == DIM_SEQ)
			n += (size_t)snprintf(buf + n, len - n, "%sseq", sep);
		else
			n += (size_t)snprintf(buf + n, len - n, "%s%lld", sep, (long long)dims[i]);
	}
	if (n < len)
		snprintf(buf + n, len - n, "]");
}

/* ------------------------------------------------------------ main */

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{"zoo", cmd_zoo}, {"import", cmd_import}, {"info", cmd_info},
	{"run", cmd_run}, {"plan", cmd_plan},	  {"serve", cmd_serve},
};

/* Take -v/-q given after the command too, and drop them from argv. */
static int strip_log_flags(int argc, char **argv)
{
	int i, n = 1;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
			log_set_level(LOG_DEBUG);
		else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
			log_set_level(LOG_ERROR);
		else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return n;
}

int main(int argc, char **argv)
{
	int first = 1;
	size_t k;

	for (; first < argc && argv[first][0] == '-'; first++) {
		const char *a = argv[first];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(cli_usage_text, stdout);
			fputc('\n', stdout);
			knobs_help(stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("dprt %s\n", DPRT_VERSION);
			return 0;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			log_set_level(LOG_DEBUG);
		} else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
			log_set_level(LOG_ERROR);
		} else {
			/* Options of the default command, serve (or unknown ones,
			 * which it names). */
			optind = 1;
			return cmd_serve(argc, argv);
		}
	}
	if (first >= argc) {
		fputs(cli_usage_text, stderr);
		return EXIT_USAGE;
	}
	for (k = 0; k < ARRAY_SIZE(commands); k++) {
		if (strcmp(argv[first], commands[k].name))
			continue;
		optind = 1;
		return commands[k].fn(strip_log_flags(argc - first, argv + first), argv + first);
	}
	fprintf(stderr, "dprt: unknown command '%s'\n(see 'dprt --help')\n", argv[first]);
	return EXIT_USAGE;
}
