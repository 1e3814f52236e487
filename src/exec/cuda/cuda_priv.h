/* SPDX-License-Identifier: MIT */
/*
 * cuda: private face of the CUDA backend.
 *
 * Threads: a struct cuda_dev and every model made on it belong to the one
 * thread that opened the device (its worker); nothing here locks.
 *
 * Libraries: the driver comes through mem/cudrv.h; cuBLAS, cuBLASLt and
 * cuDNN are dlopen()ed here the same way (tables `cuda_blas_api`,
 * `cuda_blaslt_api` and `cuda_dnn_api`, filled by cudalibs_load()). Their status codes become dprt errors in exactly one
 * function each (cublas_check, cudnn_check), called through the CUBLAS()
 * and CUDNN() macros, which name the failed call.
 *
 * cuDNN: a build configured without it (HAVE_CUDNN 0) has none of its
 * types, table or handle; convolutions and pooling are then refused when a
 * model is created, as they are when libcudnn cannot be loaded at run time
 * (cuda_dnn_check). HAVE_CUDNN is tested in src/exec/cuda and src/mem only.
 */
#ifndef DPRT_EXEC_CUDA_PRIV_H
#define DPRT_EXEC_CUDA_PRIV_H

#include <cublasLt.h>
#include <cublas_v2.h>

#include "config.h"
#if HAVE_CUDNN
#include <cudnn.h>
#endif

#include "exec/cuda/cuda.h"
#include "exec/exec.h"
#include "mem/cudrv.h"
#include "mem/mem.h"

/* ---- cuBLAS and cuDNN through dlopen (cuda_libs.c) ---- */

#define CUBLAS_FUNCS(X)                                                                            \
	X(cublasCreate)                                                                            \
	X(cublasDestroy)                                                                           \
	X(cublasGetVersion)                                                                        \
	X(cublasSetStream)                                                                         \
	X(cublasSetWorkspace)                                                                      \
	X(cublasSetMathMode)                                                                       \
	X(cublasGemmEx)                                                                            \
	X(cublasGemmStridedBatchedEx)                                                              \
	X(cublasGetStatusName)                                                                     \
	X(cublasGetStatusString)

/* cuBLASLt: GEMMs with fused epilogues (cuda_gemm.c). */
#define CUBLASLT_FUNCS(X)                                                                          \
	X(cublasLtCreate)                                                                          \
	X(cublasLtDestroy)                                                                         \
	X(cublasLtMatmulDescCreate)                                                                \
	X(cublasLtMatmulDescDestroy)                                                               \
	X(cublasLtMatmulDescSetAttribute)                                                          \
	X(cublasLtMatrixLayoutCreate)                                                              \
	X(cublasLtMatrixLayoutDestroy)                                                             \
	X(cublasLtMatmulPreferenceCreate)                                                          \
	X(cublasLtMatmulPreferenceDestroy)                                                         \
	X(cublasLtMatmulPreferenceSetAttribute)                                                    \
	X(cublasLtMatmulAlgoGetHeuristic)                                                          \
	X(cublasLtMatmul)

#if HAVE_CUDNN
#define CUDNN_FUNCS(X)                                                                             \
	X(cudnnGetVersion)                                                                         \
	X(cudnnGetErrorString)                                                                     \
	X(cudnnCreate)                                                                             \
	X(cudnnDestroy)                                                                            \
	X(cudnnSetStream)                                                                          \
	X(cudnnCreateTensorDescriptor)                                                             \
	X(cudnnSetTensor4dDescriptor)                                                              \
	X(cudnnDestroyTensorDescriptor)                                                            \
	X(cudnnCreateFilterDescriptor)                                                             \
	X(cudnnSetFilter4dDescriptor)                                                              \
	X(cudnnDestroyFilterDescriptor)                                                            \
	X(cudnnCreateConvolutionDescriptor)                                                        \
	X(cudnnSetConvolution2dDescriptor)                                                         \
	X(cudnnSetConvolutionGroupCount)                                                           \
	X(cudnnSetConvolutionMathType)                                                             \
	X(cudnnDestroyConvolutionDescriptor)                                                       \
	X(cudnnGetConvolutionForwardAlgorithm_v7)                                                  \
	X(cudnnFindConvolutionForwardAlgorithm)                                                    \
	X(cudnnGetConvolutionForwardWorkspaceSize)                                                 \
	X(cudnnConvolutionForward)                                                                 \
	X(cudnnCreatePoolingDescriptor)                                                            \
	X(cudnnSetPooling2dDescriptor)                                                             \
	X(cudnnDestroyPoolingDescriptor)                                                           \
	X(cudnnPoolingForward)
#endif

#define CUDALIBS_MEMBER(f) __typeof__(f) *f;
struct cublas_api {
	CUBLAS_FUNCS(CUDALIBS_MEMBER)
};
struct cublaslt_api {
	CUBLASLT_FUNCS(CUDALIBS_MEMBER)
};
#if HAVE_CUDNN
struct cudnn_api {
	CUDNN_FUNCS(CUDALIBS_MEMBER)
};
#endif
#undef CUDALIBS_MEMBER

extern struct cublas_api cuda_blas_api;
extern struct cublaslt_api cuda_blaslt_api;
#if HAVE_CUDNN
extern struct cudnn_api cuda_dnn_api;
#endif

/*
 * Load cuBLAS (required) and cuDNN (optional: without it, models with
 * convolutions or pooling are refused), once per process, thread-safe.
 * 0 or DPRT_ENODEV with err_set naming the library. *have_cudnn tells
 * (always false in a build without cuDNN).
 */
int cudalibs_load(bool *have_cudnn);
/* Why cuDNN is not there: this build has none, or what failed when it was
 * loaded. Empty before cudalibs_load and when cuDNN is loaded. Any thread
 * after cudalibs_load. */
const char *cudalibs_cudnn_why(void);

/* The one conversion of each library's status: 0 on success, else
 * DPRT_EDEVICE (-ENOMEM for allocation failures, DPRT_EUNSUP for "not
 * supported") with err_set naming the call and the library's text. */
int cublas_check(cublasStatus_t s, const char *call);
#define CUBLAS(call) cublas_check(cuda_blas_api.call, #call)
#define CUBLASLT(call) cublas_check(cuda_blaslt_api.call, #call)
#if HAVE_CUDNN
int cudnn_check(cudnnStatus_t s, const char *call);
#define CUDNN(call) cudnn_check(cuda_dnn_api.call, #call)
#endif

/* ---- kernels (kernels.cu, loaded by cuda_dev.c) ---- */

/* Kernels made for each activation dtype (suffix _f32, _f16, _bf16). */
enum kern {
	K_UNARY,
	K_ADD,
	K_CHAN_AFFINE,
	K_LAYERNORM,
	K_SOFTMAX,
	K_ATTN_SOFTMAX,
	K_EMBED,
	K_TAKE_ROW,
	K_GAP,
	K_CLS_POS,
	K_TYPED_COUNT,
	/* dtype-independent kernels (no suffix) */
	K_CVT = K_TYPED_COUNT,
	K_POSIDS,
	K_COUNT
};
#define DT_SLOTS 3 /* f32, f16, bf16 */

/* Codes of kernels.cu's unary kernel. */
enum unary_op { U_RELU = 0, U_GELU_ERF = 1, U_GELU_TANH = 2, U_TANH = 3 };

/* Fused attention (kernels.cu dprt_flash_<dtype>_d<D>_w<W>): 16-bit
 * activations, head sizes 16, 32 and 64; W warps of 16 queries each per
 * block (W = 1, 2, 4), dynamic shared memory of flash_smem(D, W) bytes. */
#define FLASH_DTS 2 /* f16, bf16 */
#define FLASH_DS 3  /* D = 16, 32, 64 */
#define FLASH_WS 3  /* W = 1, 2, 4 */
#define FLASH_KEYS 64

static inline unsigned flash_smem(int d, int w)
{
	/* K and V tiles twice, W fp32 scratches, W P tiles (kernels.cu) */
	return (unsigned)(4 * FLASH_KEYS * (d + 8) * 2 +
			  w * 16 * ((FLASH_KEYS > d ? FLASH_KEYS : d) + 4) * 4 +
			  w * 16 * (FLASH_KEYS + 8) * 2);
}

/* The embedded fatbin (fatbin.c). */
extern const unsigned char cuda_fatbin[];

/* The cuBLAS / cuBLASLt workspace (NVIDIA's advice for Hopper). */
#define CUDA_BLAS_WS (32ull << 20)

/* Threads per block of every kernel launch (a multiple of 32). */
#define CUDA_BLOCK 256

/* ---- device (cuda_dev.c) ---- */

/* A convolution as cuDNN sees it, for the device's algorithm cache; kept
 * zeroed around its fields so memcmp compares it. */
struct conv_key {
	int32_t x[4], w[4]; /* NCHW input, KCRS filter */
	int32_t geom[7];    /* stride h/w, pad h/w, dilation h/w, groups */
	int32_t dtype;
	int32_t timed; /* chosen by timing (cudnnFind), not heuristics */
};

#if HAVE_CUDNN
#define CONV_CACHE 512
struct conv_choice {
	struct conv_key key;
	cudnnConvolutionFwdAlgo_t algo;
};
#endif

/* A cuBLASLt GEMM as tuned: D[m, n] = op(A)[m, k] . B[k, n] (column-major
 * terms) with an epilogue; kept zeroed around its fields for memcmp. */
struct gemm_key {
	int32_t m, n, k;
	int32_t dtype;
	int32_t epilogue; /* cublasLtEpilogue_t */
	int32_t beta;	  /* 1: C (a residual) is added */
	int32_t host_a;	  /* A (the weight) read from host memory */
};

/* An attention node as tuned: which of the unfused path and the fused
 * kernels (W warps) ran fastest for this shape. */
struct attn_key {
	int32_t n, s, heads, d, causal, dtype;
};
#define ATTN_CACHE 64
struct attn_choice {
	struct attn_key key;
	int flash; /* 0: unfused; else W */
};

#define GEMM_CACHE 256
#define GEMM_CANDIDATES 8
struct gemm_choice {
	struct gemm_key key;
	cublasLtMatmulAlgo_t algo[GEMM_CANDIDATES];
	int n_algo; /* heuristic candidates */
	int pick;   /* index of the fastest, -1 until timed */
};

/*
 * The activation arena all models of a device share (cuda_prog.c): one
 * worker thread runs one model at a time on a device and every run ends
 * synchronised, so every shape program of every model lays its activations
 * out from the same base. It grows (a new range, the old one given back)
 * only when a program is made that needs more; gen then changes, and a program
 * made for another gen moves its activation addresses to the new base at
 * its next use and updates its graphs (cuGraphExecUpdate) instead of being
 * remade. users: programs laid out in it; the last one gives the range back.
 */
struct cuda_arena {
	uint64_t base, bytes;
	uint64_t gen;
	uint32_t users;
	bool keep; /* reserved at device open (DPRT_CUDA_ARENA_MB): kept at 0 users */
};

/* What the device did that costs time a request should never pay; tests
 * read them around cold starts (none of them may move there). */
struct cuda_counters {
	uint64_t progs;		 /* shape programs made (cuda_prog_create) */
	uint64_t stages;	 /* pinned staging buffers allocated */
	uint64_t heuristics;	 /* cuBLASLt heuristic queries */
	uint64_t graphs_made;	 /* graphs instantiated */
	uint64_t graphs_updated; /* graph execs updated in place */
	uint64_t arena_grows;	 /* shared activation arena ranges taken */
	uint64_t rebases;	 /* programs moved to a new arena base */
	uint64_t warm_ns;	 /* cuda_dev_warm at device open */
};

struct cuda_dev {
	int ordinal;
	CUdevice dev;
	CUcontext ctx;
	CUstream stream; /* runs and their graphs */
	CUstream copy;	 /* weight uploads at model creation */
	CUmodule mod;
	CUfunction fn[K_COUNT][DT_SLOTS];
	CUfunction flash[FLASH_DTS][FLASH_DS][FLASH_WS];
	cublasHandle_t blas;
	cublasLtHandle_t lt;
	struct devpool *pool;
	uint64_t blas_ws;
#if HAVE_CUDNN
	cudnnHandle_t dnn;	/* NULL when libcudnn could not be loaded */
	uint64_t conv_ws_limit; /* most workspace one convolution may use */
	/* Algorithms chosen so far, so that a model's load (and the next
	 * model of the same architecture) asks cuDNN once per distinct
	 * convolution; full means no more remembering, not an error. */
	struct conv_choice *convs;
	uint32_t n_convs;
#endif
	/* GEMM algorithms found by heuristics and timed, likewise. */
	struct gemm_choice *gemms;
	uint32_t n_gemms;
	struct attn_choice attns[ATTN_CACHE];
	uint32_t n_attns;
	int sm_count;
	int cc_major, cc_minor;
	char name[128];
	char model[96];	       /* cuDeviceGetName: the key of profiles and plans */
	struct cuda_arena act; /* shared activation arena (cuda_prog.c) */
	struct cuda_counters cnt;
};

/* Make dev's context current on the calling thread. */
int cuda_dev_enter(struct cuda_dev *d);

/* Whether d runs convolutions and pooling: cuDNN built in and loaded. */
static inline bool cuda_dev_has_dnn(const struct cuda_dev *d)
{
#if HAVE_CUDNN
	return d->dnn != NULL;
#else
	(void)d;
	return false;
#endif
}

/* Slot of a float dtype in cuda_dev.fn; -1 for others. */
static inline int cuda_dt_slot(uint8_t dt)
{
	return dt == DT_F32 ? 0 : dt == DT_F16 ? 1 : dt == DT_BF16 ? 2 : -1;
}

/* ---- models and shape programs (cuda_model.c, cuda_prog.c, cuda_ops.c) ---- */

/* Filled by the embedding kernels when an id is out of range: the least
 * (node << 40 | flat index) seen, UINT64_MAX when none. */
struct cuda_errrec {
	uint64_t key;
};
#define ERRREC_SHIFT 40

/* Per-node state of a program: cuDNN descriptors and scratch. */
struct node_rt {
	uint64_t scratch; /* device address, or 0 */
	uint64_t scratch_bytes;
#if HAVE_CUDNN
	cudnnTensorDescriptor_t xd, yd;
	cudnnFilterDescriptor_t wd;
	cudnnConvolutionDescriptor_t cd;
	cudnnPoolingDescriptor_t pd;
	cudnnConvolutionFwdAlgo_t algo;
#endif
	uint64_t ws_bytes; /* convolution workspace: the start of scratch */
	/* cuBLASLt (OP_LINEAR when the model uses it) */
	cublasLtMatmulDesc_t mm;
	cublasLtMatrixLayout_t la, lb, lc;
	int32_t gemm;	/* index in the device's gemm cache, -1: untuned */
	uint32_t fused; /* node whose work this GEMM's epilogue does, or 0 */
	uint32_t resid; /* tensor added by the epilogue (beta 1), or NO_TENSOR */
	cublasLtMatmulAlgo_t algo_lt;
	bool lt;
	bool skip;	/* done by an earlier node's epilogue */
	int flash;	/* attention: 0 unfused, else the fused kernel's W */
	bool attn_tune; /* attention: choose by timing after the arena */
	int64_t first;	/* skip: the node that writes its output */
};

/* Everything one set of input shapes needs, made at its first run. */
struct cuda_prog {
	struct shape *key;    /* [n_inputs]: input shapes as given */
	struct shape *shapes; /* [n_tensors] */
	uint64_t *addr;	      /* [n_tensors]: device address (weights too) */
	uint64_t *raw;	      /* [n_inputs]: input as given, before conversion */
	uint64_t *in_off;     /* [n_inputs]: in the host staging buffer */
	uint64_t *out_off;    /* [n_outputs] */
	struct node_rt *rt;   /* [n_nodes] */
	uint64_t arena, arena_bytes;
	uint64_t err_dev; /* device struct cuda_errrec */
	uint64_t err_off; /* its copy in the staging buffer */
	char *stage;	  /* pinned host memory: inputs, outputs, errrec */
	uint64_t stage_bytes;
	CUgraphExec gexec;	/* the captured run, after the first run */
	CUgraphExec cold_gexec; /* cold.c: the captured cold start (copies
				 * and run), made at the first cold run */
	bool no_graph;		/* capture failed once: run eagerly */
	uint64_t stamp;
	uint64_t runs;
	/* the shared arena (struct cuda_arena): which gen arena/addr follow,
	 * whether the program counts among its users; graphs whose addresses
	 * changed since capture (weights moved, arena rebased), to update
	 * before their next launch */
	uint64_t act_gen;
	bool act_held;
	bool gexec_stale, cold_stale;
};

#define CUDA_PROGS 4

struct exec_model {
	struct cuda_dev *d;
	const struct graph *g;
	const char *host;    /* the weight region in host memory */
	uint64_t host_dev;   /* its device address when mapped, else 0 */
	uint8_t *place;	     /* [n_layers]: enum exec_place */
	uint64_t *layer_dev; /* [n_layers]: pool allocation of LOAD layers */
	uint64_t *waddr;     /* [n_tensors]: weights' device addresses */
	struct shape *given; /* [n_inputs]: this run's input shapes */
	struct shape *check; /* [n_tensors]: scratch for checking them */
	struct cuda_prog *progs[CUDA_PROGS];
	uint64_t clock;
	int dt;		/* slot of g->wdtype */
	bool no_graphs; /* DPRT_CUDA_GRAPHS=0 at creation: always eager */
	bool defer;	/* DPRT_COLD_DEFER (1): stale graphs wait for
			 * model_tidy, the run meanwhile eager */
	/* Paths, from knobs_get() at creation (for comparisons),
	 * each on unless its variable is "0": DPRT_CUDA_LT cuBLASLt GEMMs with
	 * fused bias and residual epilogues, DPRT_CUDA_LT_GELU the GELU
	 * epilogue too (16-bit), DPRT_CUDA_FLASH the fused attention kernels
	 * as candidates. Off unless "1": DPRT_CUDNN_FIND, convolution
	 * algorithms by cudnnFind's timing instead of the heuristics (slower
	 * end to end on an H100, 2026-11-26). */
	bool use_lt, lt_gelu, use_flash, conv_find;
	/* DPRT_CUDA_ATTN: "unfused", "1", "2" or "4" forces that attention
	 * path where it applies (tests); unset: the fastest, by timing. */
	int attn_force; /* 0: by timing; -1: unfused; else W */
	/* Device ranges of the LOAD layers made with the model: one per run
	 * of adjacent LOAD layers (copied as one), or one per layer where the
	 * pool had no room for a run; load_copies: host-to-device copies made. */
	uint64_t *wrange;
	uint32_t n_wrange;
	uint32_t load_copies;
	struct cuda_cold *cold; /* cold.c: cold-start state (models made by
				 * cuda_cold_model_create), else NULL */
};

/* ---- run hooks (cuda_model.c) for the cold-start engine and profiler ---- */

/* Called by cuda_model_enqueue before node i is enqueued on the device's
 * stream, and once more with i == n_nodes before the output copies; it may
 * enqueue waits and event records on that stream. Non-zero stops the run. */
struct cuda_hook {
	int (*node)(void *ctx, uint32_t i);
	void *ctx;
};

/* The three steps of cuda_backend.model_run, for callers that put their
 * own work around a run (device's thread, its context current):
 * prepare takes in's shapes, finds or makes their program, checks the data
 * and copies the inputs into the program's staging; enqueue puts one run of
 * pl on the device's stream, eagerly or into a graph while that stream
 * captures, calling h (NULL: none); finish, once the stream is done, checks
 * the embedding error record and fills out. 0 or an error with err_set. */
/* Set every weight's device address (m->waddr) from its layer's place:
 * the layer's device range (LOAD) or the host store's mapping (DHA). The
 * model's device thread. */
void cuda_model_bind_weights(struct exec_model *m);
int cuda_model_prepare(struct exec_model *m, const struct tview *in, struct cuda_prog **out);
/* Capture pl's warm graph now if it has none (normally made after its
 * first eager run): a cold model's reference program at creation. A failure
 * leaves pl eager (logged). */
void cuda_model_capture(struct exec_model *m, struct cuda_prog *pl);
int cuda_model_enqueue(struct exec_model *m, struct cuda_prog *pl, const struct cuda_hook *h);
int cuda_model_finish(struct exec_model *m, struct cuda_prog *pl, const struct tview *in,
		      struct tview *out);

/* cold.c's side of cuda_model.c: free the cold state at model
 * destruction (stream idle; NULL state ignored). */
void cuda_cold_free(struct exec_model *m);

/* Build the program for m->given: shapes, cuDNN setup, arena from the device
 * pool, pinned staging; cuda_prog.c. 0 or an error with err_set. */
int cuda_prog_create(struct exec_model *m, struct cuda_prog **out);
/* Give back everything a program holds (its graph, arena, staging). NULL ok. */
void cuda_prog_destroy(struct exec_model *m, struct cuda_prog *pl);

/* Enqueue node i of the program on the device's stream; cuda_ops.c. */
int cuda_op_enqueue(struct exec_model *m, struct cuda_prog *pl, uint32_t i);
/* Time the attention candidates of every attention node marked attn_tune
 * (the unfused path needs its scratch in the arena) and keep the fastest
 * (cached per device); *relayout: some node no longer needs its scratch.
 * cuda_ops.c. */
int cuda_attn_tune(struct exec_model *m, struct cuda_prog *pl, bool *relayout);
/* Enqueue the conversion of float input i from its given dtype. */
int cuda_op_convert(struct exec_model *m, struct cuda_prog *pl, uint32_t i);
/* Node i of g needs cuDNN (a convolution or a pooling). */
static inline bool cuda_op_needs_dnn(const struct graph *g, uint32_t i)
{
	enum op op = (enum op)g->nodes[i].op;

	return op == OP_CONV2D || op == OP_MAXPOOL || op == OP_AVGPOOL;
}
/* 0 if node i of g can run on d; else DPRT_EUNSUP with err_set naming the
 * node, its op and why d has no cuDNN (this build has none, or it could
 * not be loaded). Model creation checks every node; cuda_ops.c. */
int cuda_dnn_check(const struct cuda_dev *d, const struct graph *g, uint32_t i);
#if HAVE_CUDNN
/* Choose node i's convolution algorithm for input shape x (descriptors in
 * rt set): the device's earlier choice for the same convolution and shape,
 * else the cuDNN heuristics' best within the workspace limit, remembered.
 * Sets rt->algo and rt->ws_bytes. */
int cuda_conv_choose(struct exec_model *m, uint32_t i, const struct shape *x, struct node_rt *rt);
#endif

/* cuBLASLt GEMMs (cuda_gemm.c). Setup, at program creation before the arena:
 * node i (OP_LINEAR) gets its descriptors and heuristic candidates, and
 * takes over its output's only consumer when an epilogue can do that
 * node's work (a residual ADD; a tanh GELU with lt_gelu), marking it skip
 * and moving its output's first use to i. Without candidates the node
 * stays on cublasGemmEx. 0 or an error with err_set. */
int cuda_gemm_setup(struct exec_model *m, struct cuda_prog *pl, uint32_t i);
/* After the arena: time the candidates of every untimed GEMM of the program
 * on its own buffers and keep the fastest (cached per device). */
int cuda_gemm_tune(struct exec_model *m, struct cuda_prog *pl);
/* Enqueue node i's cuBLASLt GEMM. */
int cuda_gemm_enqueue(struct exec_model *m, struct cuda_prog *pl, uint32_t i);
/* Give back node i's cuBLASLt descriptors. */
void cuda_gemm_release(struct node_rt *rt);
/* Point node i's cuBLASLt bias at its weight's current address (after
 * the weights moved; cuda_gemm.c). */
int cuda_gemm_rebind(struct exec_model *m, struct cuda_prog *pl, uint32_t i);

/* ---- once at device open, and graphs kept across moves ---- */

/* Initialise what libraries and kernels would otherwise do lazily at a
 * first request: cuBLAS and cuBLASLt GEMMs in every dtype, a cuDNN
 * convolution and pooling, a kernel launch, a graph capture, update and
 * launch. Logs the time (cnt.warm_ns). cuda_warm.c. 0 or err_set. */
int cuda_dev_warm(struct cuda_dev *d);

/* *exec for graph: graph's parameters put into the existing *exec
 * (cuGraphExecUpdate; cnt.graphs_updated, *updated = true) when it has
 * one and the topology allows, else a new instantiation replacing it
 * (cnt.graphs_made). graph stays the caller's. cuda_graph.c. */
int cuda_graph_refresh(struct cuda_dev *d, CUgraphExec *exec, CUgraph graph, bool *updated);

/* Shared arena (cuda_prog.c): bring pl to the device arena's current gen
 * (growing it if pl needs more), moving its activation addresses and
 * marking its graphs stale; no-op if current. 0 or err_set. */
int cuda_prog_refresh(struct exec_model *m, struct cuda_prog *pl);
/* Every program of m takes its weights' addresses from m->waddr again (they
 * moved; places unchanged) and marks its graphs stale. 0 or err_set. */
int cuda_model_rebind(struct exec_model *m);
/* Whole-device arena: grow it to hold at least bytes (a no-op if it
 * does); 0 or -ENOMEM with err_set. */
int cuda_arena_reserve(struct cuda_dev *d, uint64_t bytes);

#endif
