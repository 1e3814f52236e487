/* SPDX-License-Identifier: MIT */
/*
 * dprt's own CUDA kernels: everything that is not a GEMM (cuBLAS) or a
 * convolution / pooling (cuDNN). Compiled by nvcc into a fatbin that the
 * binary embeds and loads with cuModuleLoadData, so the names are plain C
 * (extern "C"), one per activation dtype: NAME_f32, NAME_f16, NAME_bf16.
 *
 * Every kernel computes in fp32 whatever the storage dtype, and is written
 * for any grid size (grid-stride loops over rows or elements), so the host
 * may cap the grid. Blocks have CUDA_BLOCK (256) threads, a multiple of 32,
 * which the block reductions rely on. Semantics follow src/model/model.h and
 * the CPU reference backend.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <float.h>
#include <mma.h>
#include <stdint.h>

typedef long long i64;
typedef unsigned long long u64;

#define FULL 0xffffffffu
#define ERRREC_SHIFT 40 /* struct cuda_errrec in cuda_priv.h */

/* ---------------------------------------------------------------- helpers */

__device__ __forceinline__ float ldf(const float *p, i64 i) { return p[i]; }
__device__ __forceinline__ float ldf(const __half *p, i64 i) { return __half2float(p[i]); }
__device__ __forceinline__ float ldf(const __nv_bfloat16 *p, i64 i)
{
	return __bfloat162float(p[i]);
}
__device__ __forceinline__ void stf(float *p, i64 i, float v) { p[i] = v; }
__device__ __forceinline__ void stf(__half *p, i64 i, float v) { p[i] = __float2half_rn(v); }
__device__ __forceinline__ void stf(__nv_bfloat16 *p, i64 i, float v)
{
	p[i] = __float2bfloat16_rn(v);
}

#define GRID_LOOP(i, n)                                                        \
	for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n);      \
	     i += (i64)gridDim.x * blockDim.x)

__device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(FULL, v, o);
	return v;
}

__device__ __forceinline__ float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(FULL, v, o));
	return v;
}

/* Sum over the block, returned to every thread. red: 32 floats of shared
 * memory; the leading barrier lets a caller reuse red right away. */
__device__ float block_sum(float v, float *red)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;

	v = warp_sum(v);
	__syncthreads();
	if (lane == 0)
		red[w] = v;
	__syncthreads();
	return warp_sum(lane < nw ? red[lane] : 0.0f);
}

__device__ float block_max(float v, float *red)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;

	v = warp_max(v);
	__syncthreads();
	if (lane == 0)
		red[w] = v;
	__syncthreads();
	return warp_max(lane < nw ? red[lane] : -INFINITY);
}

/* One instance per activation dtype, under a plain C name. */
#define KERNEL3(name, params, args)                                            \
	extern "C" __global__ void dprt_##name##_f32 params                    \
	{                                                                      \
		k_##name<float> args;                                          \
	}                                                                      \
	extern "C" __global__ void dprt_##name##_f16 params                    \
	{                                                                      \
		k_##name<__half> args;                                         \
	}                                                                      \
	extern "C" __global__ void dprt_##name##_bf16 params                   \
	{                                                                      \
		k_##name<__nv_bfloat16> args;                                  \
	}

/* ------------------------------------------------------------ elementwise */

/* enum unary_op in cuda_priv.h */
#define U_RELU 0
#define U_GELU_ERF 1
#define U_GELU_TANH 2
#define U_TANH 3

__device__ __forceinline__ float unary_f(float v, int op)
{
	const float k = 0.7978845608028654f; /* sqrt(2 / pi) */

	switch (op) {
	case U_RELU:
		return v > 0.0f ? v : 0.0f;
	case U_GELU_ERF:
		return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
	case U_GELU_TANH:
		return 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
	default:
		return tanhf(v);
	}
}

template <typename T>
__device__ void k_unary(const void *xv, void *yv, i64 n, int op)
{
	const T *x = (const T *)xv;
	T *y = (T *)yv;

	GRID_LOOP(i, n)
	stf(y, i, unary_f(ldf(x, i), op));
}
KERNEL3(unary, (const void *x, void *y, i64 n, int op), (x, y, n, op))

template <typename T>
__device__ void k_add(const void *av, const void *bv, void *yv, i64 n, int relu)
{
	const T *a = (const T *)av, *b = (const T *)bv;
	T *y = (T *)yv;

	GRID_LOOP(i, n)
	{
		float v = ldf(a, i) + ldf(b, i);

		stf(y, i, relu && v < 0.0f ? 0.0f : v);
	}
}
KERNEL3(add, (const void *a, const void *b, void *y, i64 n, int relu), (a, b, y, n, relu))

/* y[.., c, inner] = x * scale[c] + shift[c] (+ relu): batch norm, and the
 * bias epilogue of GEMMs (inner 1) and convolutions (inner = OH * OW).
 * scale or shift may be NULL (1 and 0). In place is fine. */
template <typename T>
__device__ void k_chan_affine(const void *xv, const void *sv, const void *bv, void *yv,
			      i64 n, i64 c, i64 inner, int relu)
{
	const T *x = (const T *)xv, *s = (const T *)sv, *b = (const T *)bv;
	T *y = (T *)yv;

	/* n < 2^31 (the shape program refuses larger tensors): 32-bit division */
	GRID_LOOP(i, n)
	{
		unsigned ch = ((unsigned)i / (unsigned)inner) % (unsigned)c;
		float v = ldf(x, i);

		if (s)
			v *= ldf(s, ch);
		if (b)
			v += ldf(b, ch);
		stf(y, i, relu && v < 0.0f ? 0.0f : v);
	}
}
KERNEL3(chan_affine,
	(const void *x, const void *s, const void *b, void *y, i64 n, i64 c, i64 inner,
	 int relu),
	(x, s, b, y, n, c, inner, relu))

/* Float dtype conversion; dtype codes are enum dtype (1 f32, 2 f16, 3 bf16). */
__device__ __forceinline__ float ld_any(const void *p, int dt, i64 i)
{
	if (dt == 2)
		return ldf((const __half *)p, i);
	if (dt == 3)
		return ldf((const __nv_bfloat16 *)p, i);
	return ldf((const float *)p, i);
}

extern "C" __global__ void dprt_cvt(const void *x, int xdt, void *y, int ydt, i64 n)
{
	GRID_LOOP(i, n)
	{
		float v = ld_any(x, xdt, i);

		if (ydt == 2)
			stf((__half *)y, i, v);
		else if (ydt == 3)
			stf((__nv_bfloat16 *)y, i, v);
		else
			stf((float *)y, i, v);
	}
}

/* ------------------------------------------------------------------ rows */

/* Layer norm of each row of x[rows, h]: biased variance, two passes. */
template <typename T>
__device__ void k_layernorm(const void *xv, const void *gv, const void *bv, void *yv,
			    i64 rows, int h, float eps)
{
	__shared__ float red[32];
	const T *g = (const T *)gv, *b = (const T *)bv;

	for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
		const T *x = (const T *)xv + r * h;
		T *y = (T *)yv + r * h;
		float s = 0.0f, mean, var, rstd;

		for (int j = threadIdx.x; j < h; j += blockDim.x)
			s += ldf(x, j);
		mean = block_sum(s, red) / (float)h;
		s = 0.0f;
		for (int j = threadIdx.x; j < h; j += blockDim.x) {
			float d = ldf(x, j) - mean;

			s += d * d;
		}
		var = block_sum(s, red) / (float)h;
		rstd = 1.0f / sqrtf(var + eps);
		for (int j = threadIdx.x; j < h; j += blockDim.x)
			stf(y, j, (ldf(x, j) - mean) * rstd * ldf(g, j) + ldf(b, j));
	}
}
KERNEL3(layernorm,
	(const void *x, const void *g, const void *b, void *y, i64 rows, int h, float eps),
	(x, g, b, y, rows, h, eps))

/* Max-subtracted softmax of each row of x[rows, cols]. */
template <typename T>
__device__ void k_softmax(const void *xv, void *yv, i64 rows, int cols)
{
	__shared__ float red[32];

	for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
		const T *x = (const T *)xv + r * cols;
		T *y = (T *)yv + r * cols;
		float mx = -INFINITY, s = 0.0f, inv;

		for (int j = threadIdx.x; j < cols; j += blockDim.x)
			mx = fmaxf(mx, ldf(x, j));
		mx = block_max(mx, red);
		for (int j = threadIdx.x; j < cols; j += blockDim.x)
			s += expf(ldf(x, j) - mx);
		inv = 1.0f / block_sum(s, red);
		for (int j = threadIdx.x; j < cols; j += blockDim.x)
			stf(y, j, expf(ldf(x, j) - mx) * inv);
	}
}
KERNEL3(softmax, (const void *x, void *y, i64 rows, int cols), (x, y, rows, cols))

/*
 * Attention probabilities. scores[n, head, q, k] (fp32, already scaled by
 * 1/sqrt(d)) -> p[n, head, q, k] in T. A key the query may not see (causal:
 * k > q; mask[n, k] == 0) gets -FLT_MAX added once, as the CPU backend and
 * Hugging Face do: a fully masked row becomes uniform, never NaN.
 * Grid: (s, heads, n), one row per block.
 */
template <typename T>
__device__ void k_attn_softmax(const float *sc, void *pv, const i64 *mask, int s, int heads,
			       int causal)
{
	__shared__ float red[32];
	int q = blockIdx.x, h = blockIdx.y, n = blockIdx.z;
	i64 row = (((i64)n * heads + h) * s + q) * s;
	const float *x = sc + row;
	const i64 *m = mask ? mask + (i64)n * s : NULL;
	T *p = (T *)pv + row;
	float mx = -INFINITY, sum = 0.0f, inv;

#define ATTN_V(j) (x[j] + (((causal && (j) > q) || (m && m[j] == 0)) ? -FLT_MAX : 0.0f))
	for (int j = threadIdx.x; j < s; j += blockDim.x)
		mx = fmaxf(mx, ATTN_V(j));
	mx = block_max(mx, red);
	for (int j = threadIdx.x; j < s; j += blockDim.x)
		sum += expf(ATTN_V(j) - mx);
	inv = 1.0f / block_sum(sum, red);
	for (int j = threadIdx.x; j < s; j += blockDim.x)
		stf(p, j, expf(ATTN_V(j) - mx) * inv);
#undef ATTN_V
}
KERNEL3(attn_softmax,
	(const float *sc, void *p, const i64 *mask, int s, int heads, int causal),
	(sc, p, mask, s, heads, causal))

/* ----------------------------------------------------------- gather etc. */

/*
 * y[r, :] = table[ids[r], :] for r < n. An id outside [0, v) writes zeros
 * and records (node << 40 | r) in *err with atomicMin, so the host reports
 * the first bad id of the first embedding, like the CPU backend.
 */
template <typename T>
__device__ void k_embed(const i64 *ids, const void *tv, void *yv, i64 n, i64 v, int h,
			u64 *err, int node)
{
	const T *table = (const T *)tv;

	for (i64 r = blockIdx.x; r < n; r += gridDim.x) {
		i64 id = ids[r];
		T *y = (T *)yv + r * h;

		if (id < 0 || id >= v) {
			if (threadIdx.x == 0)
				atomicMin(err, ((u64)node << ERRREC_SHIFT) | (u64)r);
			for (int j = threadIdx.x; j < h; j += blockDim.x)
				stf(y, j, 0.0f);
			continue;
		}
		for (int j = threadIdx.x; j < h; j += blockDim.x)
			y[j] = table[id * h + j];
	}
}
KERNEL3(embed,
	(const i64 *ids, const void *t, void *y, i64 n, i64 v, int h, u64 *err, int node),
	(ids, t, y, n, v, h, err, node))

/* Inclusive prefix sum of v over the block; wsum: 32 ints of shared
 * memory, whose last used entry holds the block's total on return. */
__device__ int block_scan(int v, int *wsum)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5, t;

	for (int o = 1; o < 32; o <<= 1) {
		t = __shfl_up_sync(FULL, v, o);
		v += lane >= o ? t : 0;
	}
	__syncthreads(); /* earlier readers of wsum are done */
	if (lane == 31)
		wsum[w] = v;
	__syncthreads();
	if (w == 0) {
		t = lane < nw ? wsum[lane] : 0;
		for (int o = 1; o < 32; o <<= 1) {
			int u = __shfl_up_sync(FULL, t, o);

			t += lane >= o ? u : 0;
		}
		wsum[lane] = t;
	}
	__syncthreads();
	return v + (w ? wsum[w - 1] : 0);
}

/* RoBERTa's position ids of one row: cumsum(id != pad) * (id != pad) + pad,
 * scanned in chunks of blockDim.x with a running carry. */
__device__ void roberta_row(const i64 *id, i64 *p, int s, i64 pad, int *wsum)
{
	int nw = blockDim.x >> 5;
	i64 carry = 0;

	for (int base = 0; base < s; base += blockDim.x) {
		int j = base + threadIdx.x, f = j < s && id[j] != pad;
		int run = block_scan(f, wsum);

		if (j < s)
			p[j] = f ? carry + run + pad : pad;
		carry += wsum[nw - 1];
	}
}

/* Position ids of ids[rows, s], one row per block. Mode 0: j + arg;
 * mode 1: RoBERTa's, with pad = arg. */
extern "C" __global__ void dprt_posids(const i64 *ids, i64 *pos, i64 rows, int s, int mode,
				       i64 arg)
{
	__shared__ int wsum[32];

	for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
		if (mode == 1) {
			roberta_row(ids + r * s, pos + r * s, s, arg, wsum);
			continue;
		}
		for (int j = threadIdx.x; j < s; j += blockDim.x)
			pos[r * s + j] = j + arg;
	}
}

/* y[n, :] = x[n, row, :] for x[n, s, h]. */
template <typename T>
__device__ void k_take_row(const void *xv, void *yv, i64 n, i64 s, int h, i64 row)
{
	const T *x = (const T *)xv;
	T *y = (T *)yv;

	for (i64 b = blockIdx.x; b < n; b += gridDim.x)
		for (int j = threadIdx.x; j < h; j += blockDim.x)
			y[b * h + j] = x[(b * s + row) * h + j];
}
KERNEL3(take_row, (const void *x, void *y, i64 n, i64 s, int h, i64 row),
	(x, y, n, s, h, row))

/* ViT's embeddings (OP_CLS_POS): y[n, 1+p, h] from patch features
 * x[n, h, p]: row 0 = cls + pos[0], row 1+i = x[n, :, i] + pos[1+i]. */
template <typename T>
__device__ void k_cls_pos(const void *xv, const void *cv, const void *pv, void *yv, i64 n,
			  int h, i64 p)
{
	const T *x = (const T *)xv, *cls = (const T *)cv, *pos = (const T *)pv;
	T *y = (T *)yv;

	GRID_LOOP(i, n * (1 + p) * h)
	{
		i64 c = i % h, r = (i / h) % (1 + p), b = i / h / (1 + p);
		float v = r ? ldf(x, (b * h + c) * p + r - 1) : ldf(cls, c);

		stf(y, i, v + ldf(pos, r * h + c));
	}
}
KERNEL3(cls_pos, (const void *x, const void *c, const void *p, void *y, i64 n, int h, i64 np),
	(x, c, p, y, n, h, np))

/* y[r] = mean of x[r, 0..hw), one warp per row. */
template <typename T>
__device__ void k_gap(const void *xv, void *yv, i64 rows, int hw)
{
	const T *x = (const T *)xv;
	T *y = (T *)yv;
	int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;

	for (i64 r = (i64)blockIdx.x * wpb + (threadIdx.x >> 5); r < rows;
	     r += (i64)gridDim.x * wpb) {
		float s = 0.0f;

		for (int j = lane; j < hw; j += 32)
			s += ldf(x, r * hw + j);
		s = warp_sum(s);
		if (lane == 0)
			stf(y, r, s / (float)hw);
	}
}
KERNEL3(gap, (const void *x, void *y, i64 rows, int hw), (x, y, rows, hw))

/* --------------------------------------------------------- fused attention */

/*
 * Attention in one pass over the keys (flash attention), for 16-bit
 * activations and head size D (16, 32 or 64), same semantics as
 * op_attention's three steps: scores = q.k * scale in fp32, -FLT_MAX added
 * once to a key the query may not see (causal: key > query; mask == 0), a
 * softmax over all s keys, then p (rounded to T, as the unfused path
 * stores it) times v, accumulated in fp32.
 *
 * Grid (ceil(s / 16W), heads, n), 32W threads: each of the W warps owns 16
 * queries; blocks with the most keys to see (causal: the last queries)
 * start first. Per 64-key tile, double-buffered in dynamic shared memory
 * (cp.async loads the next tile while this one is used): S = Q K^T on the
 * tensor cores (WMMA) into the warp's shared scratch; an online softmax,
 * two lanes per query row (lane parity picks the even or odd columns);
 * P V into the same scratch, which the lanes add to their running output
 * with the rescaling factor. Key tiles wholly after a causal query tile are
 * skipped when no key of the batch row is masked: their probabilities
 * would be exactly zero (a row always sees key 0), whereas with padding a
 * row may be fully masked and then spreads over all s keys, as the CPU
 * reference does.
 */
#define FA_BK 64

using namespace nvcuda;

/* Dynamic shared memory: K0 V0 K1 V1 tiles, then W fp32 scratches, then W
 * P tiles; every part a multiple of 128 bytes. cuda_dev.c sizes it the
 * same way (flash_smem). */
template <typename T, int D, int W> struct fa_layout {
	static constexpr int LDH = D + 8;		      /* 16-bit tiles */
	static constexpr int SW = (FA_BK > D ? FA_BK : D) + 4; /* fp32 scratch */
	static constexpr int LDP = FA_BK + 8;		      /* P */
	static constexpr int TILE = FA_BK * LDH;	      /* elements */
	static constexpr int S_OFF = 4 * TILE * 2;	      /* bytes */
	static constexpr int P_OFF = S_OFF + W * 16 * SW * 4;
	static constexpr int BYTES = P_OFF + W * 16 * LDP * 2;
};

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid)
{
	unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
	int n = valid ? 16 : 0; /* 0: zero-fill, nothing read */

	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
		     "r"(n));
}

__device__ __forceinline__ void cp_async_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::);
}

template <int N> __device__ __forceinline__ void cp_async_wait(void)
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Rows [row0, row0 + rows) of a q, k or v slice (row stride ld3 elements)
 * into a tile; rows at or past s are zeros. 16-byte copies: cp.async, or
 * plain loads and stores (sync). */
template <typename T, int D, int LDH>
__device__ __forceinline__ void fa_tile(T *dst, const T *src, i64 ld3, int row0, int rows, int s,
					bool sync)
{
	constexpr int VPR = D / 8;

	for (int v = threadIdx.x; v < rows * VPR; v += blockDim.x) {
		int r = v / VPR, c = (v % VPR) * 8;
		bool ok = row0 + r < s;
		const T *g = src + (i64)(ok ? row0 + r : 0) * ld3 + c;

		if (!sync) {
			cp_async16(dst + r * LDH + c, g, ok);
			continue;
		}
		*(uint4 *)(dst + r * LDH + c) = ok ? *(const uint4 *)g : make_uint4(0u, 0u, 0u, 0u);
	}
}

template <typename T, int D, int W>
__device__ void k_flash(const T *qkv, T *y, const i64 *mask, int s, int heads, int causal,
			float scale)
{
	typedef fa_layout<T, D, W> L;
	typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> frag_a;
	typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> frag_bt;
	typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> frag_b;
	typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;
	extern __shared__ __align__(128) unsigned char fa_raw[];
	__shared__ int masked;
	T *const kb = (T *)fa_raw; /* K0 V0 K1 V1 */
	float *const sw = (float *)(fa_raw + L::S_OFF);
	T *const pw = (T *)(fa_raw + L::P_OFF);
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int r = lane >> 1, par = lane & 1;
	const int q0 = (gridDim.x - 1 - blockIdx.x) * 16 * W, h = blockIdx.y, b = blockIdx.z;
	const int hid = heads * D, qrow = q0 + warp * 16 + r;
	const i64 ld3 = 3 * (i64)hid;
	const T *base = qkv + (i64)b * s * ld3 + (i64)h * D;
	const i64 *mrow = mask ? mask + (i64)b * s : NULL;
	float *const sws = sw + warp * 16 * L::SW, *const srow = sws + r * L::SW;
	T *const pws = pw + warp * 16 * L::LDP, *const prow = pws + r * L::LDP;
	frag_a qf[D / 16];
	float o[D / 2], mrun = -INFINITY, lrun = 0.0f;
	int tiles = (s + FA_BK - 1) / FA_BK;

	if (threadIdx.x == 0)
		masked = 0;
	__syncthreads();
	for (int j = threadIdx.x; mrow && j < s; j += blockDim.x)
		if (mrow[j] == 0)
			masked = 1;
	/* Q, staged in the K1 tile */
	fa_tile<T, D, L::LDH>(kb + 2 * L::TILE, base, ld3, q0, 16 * W, s, true);
	__syncthreads();
#pragma unroll
	for (int kk = 0; kk < D / 16; kk++)
		wmma::load_matrix_sync(qf[kk], kb + 2 * L::TILE + warp * 16 * L::LDH + kk * 16,
				       L::LDH);
	if (!masked)
		mrow = NULL;
	if (causal && !masked)
		tiles = min(tiles, (q0 + 16 * W - 1) / FA_BK + 1);
#pragma unroll
	for (int c = 0; c < D / 2; c++)
		o[c] = 0.0f;
	__syncthreads(); /* every warp has its Q: K1 may be overwritten */
	fa_tile<T, D, L::LDH>(kb, base + hid, ld3, 0, FA_BK, s, false);
	fa_tile<T, D, L::LDH>(kb + L::TILE, base + 2 * hid, ld3, 0, FA_BK, s, false);
	cp_async_commit();

	for (int kt = 0; kt < tiles; kt++) {
		const int k0 = kt * FA_BK;
		const T *ks = kb + (kt & 1) * 2 * L::TILE, *vs = ks + L::TILE;
		float v[FA_BK / 2], tmax = -INFINITY, mnew, corr, psum = 0.0f;

		if (kt + 1 < tiles) { /* the next tile, into the other buffer */
			T *nk = kb + ((kt + 1) & 1) * 2 * L::TILE;

			fa_tile<T, D, L::LDH>(nk, base + hid, ld3, k0 + FA_BK, FA_BK, s, false);
			fa_tile<T, D, L::LDH>(nk + L::TILE, base + 2 * hid, ld3, k0 + FA_BK, FA_BK,
					      s, false);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		__syncthreads();
#pragma unroll
		for (int n = 0; n < FA_BK / 16; n++) {
			frag_c acc;

			wmma::fill_fragment(acc, 0.0f);
#pragma unroll
			for (int kk = 0; kk < D / 16; kk++) {
				frag_bt kf;

				wmma::load_matrix_sync(kf, ks + n * 16 * L::LDH + kk * 16, L::LDH);
				wmma::mma_sync(acc, qf[kk], kf, acc);
			}
			wmma::store_matrix_sync(sws + n * 16, acc, L::SW, wmma::mem_row_major);
		}
		__syncwarp();
#pragma unroll
		for (int c = 0; c < FA_BK / 2; c++) {
			int key = k0 + 2 * c + par;
			float x = -INFINITY;

			if (key < s) {
				x = srow[2 * c + par] * scale;
				if ((causal && key > qrow) || (mrow && mrow[key] == 0))
					x += -FLT_MAX;
			}
			v[c] = x;
			tmax = fmaxf(tmax, x);
		}
		/* key k0 < s is in every tile: tmax, hence mnew, is finite */
		tmax = fmaxf(tmax, __shfl_xor_sync(FULL, tmax, 1));
		mnew = fmaxf(mrun, tmax);
		corr = mrun == -INFINITY ? 0.0f : __expf(mrun - mnew);
#pragma unroll
		for (int c = 0; c < FA_BK / 2; c++) {
			float p = v[c] == -INFINITY ? 0.0f : __expf(v[c] - mnew);

			psum += p;
			prow[2 * c + par] = (T)p;
		}
		psum += __shfl_xor_sync(FULL, psum, 1);
		lrun = lrun * corr + psum;
		mrun = mnew;
		__syncwarp(); /* S read, P written: the scratch takes P V */
#pragma unroll
		for (int n = 0; n < D / 16; n++) {
			frag_c acc;

			wmma::fill_fragment(acc, 0.0f);
#pragma unroll
			for (int kk = 0; kk < FA_BK / 16; kk++) {
				frag_a pf;
				frag_b vf;

				wmma::load_matrix_sync(pf, pws + kk * 16, L::LDP);
				wmma::load_matrix_sync(vf, vs + kk * 16 * L::LDH + n * 16, L::LDH);
				wmma::mma_sync(acc, pf, vf, acc);
			}
			wmma::store_matrix_sync(sws + n * 16, acc, L::SW, wmma::mem_row_major);
		}
		__syncwarp();
#pragma unroll
		for (int c = 0; c < D / 2; c++)
			o[c] = o[c] * corr + srow[2 * c + par];
		__syncthreads(); /* this buffer is read: the next prefetch may fill it */
	}
	if (qrow < s) {
		T *yr = y + ((i64)b * s + qrow) * hid + (i64)h * D;
		float inv = 1.0f / lrun;

#pragma unroll
		for (int c = 0; c < D / 2; c++)
			yr[2 * c + par] = (T)(o[c] * inv);
	}
}

#define FLASH(tname, T, D, W)                                                  \
	extern "C" __global__ void __launch_bounds__(32 * W)                   \
		dprt_flash_##tname##_d##D##_w##W(const void *qkv, void *y,     \
						 const i64 *mask, int s,        \
						 int heads, int causal,         \
						 float scale)                   \
	{                                                                      \
		k_flash<T, D, W>((const T *)qkv, (T *)y, mask, s, heads,       \
				 causal, scale);                               \
	}
#define FLASH_W(tname, T, D)                                                   \
	FLASH(tname, T, D, 1)                                                  \
	FLASH(tname, T, D, 2)                                                  \
	FLASH(tname, T, D, 4)
FLASH_W(f16, __half, 16)
FLASH_W(f16, __half, 32)
FLASH_W(f16, __half, 64)
FLASH_W(bf16, __nv_bfloat16, 16)
FLASH_W(bf16, __nv_bfloat16, 32)
FLASH_W(bf16, __nv_bfloat16, 64)
