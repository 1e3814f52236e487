/* SPDX-License-Identifier: MIT */
/* CPU kernels of the convolutional models: conv2d, pooling, affine, add. */
#include "cpu.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* A 1x1, stride-1, unpadded conv reads its input as the GEMM operand. */
static bool conv_is_pointwise(const struct cpu_conv *p)
{
	return p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 && p->pw == 0;
}

int64_t cpu_conv2d_scratch(const struct cpu_conv *p)
{
	if (conv_is_pointwise(p))
		return 0;
	return p->c / p->groups * p->kh * p->kw * p->oh * p->ow;
}

/* One row of the im2col matrix: input plane xc seen through kernel cell
 * (ki, kj), zero where the cell falls into the padding. */
static void im2col_row(const struct cpu_conv *p, const float *xc, int64_t ki, int64_t kj,
		       float *dst)
{
	int64_t oh, ow;

	for (oh = 0; oh < p->oh; oh++, dst += p->ow) {
		int64_t ih = oh * p->sh - p->ph + ki * p->dh;
		const float *row = xc + ih * p->w;

		if (ih < 0 || ih >= p->h) {
			memset(dst, 0, sizeof(float) * (size_t)p->ow);
			continue;
		}
		for (ow = 0; ow < p->ow; ow++) {
			int64_t iw = ow * p->sw - p->pw + kj * p->dw;

			dst[ow] = iw >= 0 && iw < p->w ? row[iw] : 0.0f;
		}
	}
}

/* col[cg*kh*kw, oh*ow] from x[cg, h, w] (one image, one group). */
static void im2col(const struct cpu_conv *p, const float *x, int64_t cg, float *col)
{
	int64_t khw = p->kh * p->kw, ohw = p->oh * p->ow, r;

	for (r = 0; r < cg * khw; r++) {
		int64_t c = r / khw, ki = r % khw / p->kw, kj = r % p->kw;

		im2col_row(p, x + c * p->h * p->w, ki, kj, col + r * ohw);
	}
}

void cpu_conv2d(const struct cpu_conv *p, const float *x, const float *w, const float *b, float *y,
		float *col)
{
	int64_t cg = p->c / p->groups, kg = p->k / p->groups;
	int64_t kdim = cg * p->kh * p->kw, ohw = p->oh * p->ow;
	int64_t n, g, r;

	for (n = 0; n < p->n; n++) {
		for (g = 0; g < p->groups; g++) {
			const float *xg = x + (n * p->c + g * cg) * p->h * p->w;
			const float *src = xg;
			float *yg = y + (n * p->k + g * kg) * ohw;

			if (!conv_is_pointwise(p)) {
				im2col(p, xg, cg, col);
				src = col;
			}
			for (r = 0; b && r < kg; r++)
				cpu_fill(yg + r * ohw, b[g * kg + r], ohw);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)kg, (int)ohw,
				    (int)kdim, 1.0f, w + g * kg * kdim, (int)kdim, src, (int)ohw,
				    b ? 1.0f : 0.0f, yg, (int)ohw);
		}
	}
}

/* Max over one window; cells in the padding do not count (they are -inf).
 * A NaN in the window wins, as in PyTorch. */
static float max_cell(const struct cpu_pool *p, const float *xc, int64_t oh, int64_t ow)
{
	int64_t h0 = oh * p->sh - p->ph, w0 = ow * p->sw - p->pw;
	int64_t h1 = MIN(h0 + p->kh, p->h), w1 = MIN(w0 + p->kw, p->w);
	float m = -INFINITY;
	int64_t i, j;

	for (i = MAX(h0, 0); i < h1; i++) {
		for (j = MAX(w0, 0); j < w1; j++) {
			float v = xc[i * p->w + j];

			if (v > m || isnan(v))
				m = v;
		}
	}
	return m;
}

/* Mean over one window: divided by the full window when padding counts,
 * else by the cells inside the input. */
static float avg_cell(const struct cpu_pool *p, const float *xc, int64_t oh, int64_t ow)
{
	int64_t h0 = oh * p->sh - p->ph, w0 = ow * p->sw - p->pw;
	int64_t h1 = MIN(h0 + p->kh, p->h), w1 = MIN(w0 + p->kw, p->w);
	double sum = 0.0;
	int64_t i, j, cnt;

	h0 = MAX(h0, 0);
	w0 = MAX(w0, 0);
	for (i = h0; i < h1; i++)
		for (j = w0; j < w1; j++)
			sum += xc[i * p->w + j];
	cnt = p->count_include_pad ? p->kh * p->kw : (h1 - h0) * (w1 - w0);
	return (float)(sum / (double)cnt);
}

static void pool(const struct cpu_pool *p, const float *x, float *y,
		 float (*cell)(const struct cpu_pool *, const float *, int64_t, int64_t))
{
	int64_t plane, oh, ow;

	for (plane = 0; plane < p->n * p->c; plane++) {
		const float *xc = x + plane * p->h * p->w;

		for (oh = 0; oh < p->oh; oh++)
			for (ow = 0; ow < p->ow; ow++)
				*y++ = cell(p, xc, oh, ow);
	}
}

void cpu_maxpool(const struct cpu_pool *p, const float *x, float *y)
{
	pool(p, x, y, max_cell);
}

void cpu_avgpool(const struct cpu_pool *p, const float *x, float *y)
{
	pool(p, x, y, avg_cell);
}

void cpu_global_avgpool(const float *x, float *y, int64_t nc, int64_t hw)
{
	int64_t r, i;

	for (r = 0; r < nc; r++, x += hw) {
		double sum = 0.0;

		for (i = 0; i < hw; i++)
			sum += x[i];
		y[r] = (float)(sum / (double)hw);
	}
}

void cpu_batchnorm(const float *x, const float *scale, const float *shift, float *y, int64_t n,
		   int64_t c, int64_t inner, bool relu)
{
	int64_t plane, i;

	for (plane = 0; plane < n * c; plane++) {
		float a = scale[plane % c], b = shift[plane % c];
		const float *xp = x + plane * inner;
		float *yp = y + plane * inner;

		for (i = 0; i < inner; i++)
			yp[i] = xp[i] * a + b;
		if (relu)
			cpu_relu(yp, yp, inner);
	}
}

void cpu_relu(const float *x, float *y, int64_t n)
{
	int64_t i;

	/* x > 0 ? x : 0 keeps NaN as NaN, like torch.relu. */
	for (i = 0; i < n; i++)
		y[i] = x[i] > 0.0f || isnan(x[i]) ? x[i] : 0.0f;
}

void cpu_add(const float *a, const float *b, float *y, int64_t n, bool relu)
{
	int64_t i;

	for (i = 0; i < n; i++)
		y[i] = a[i] + b[i];
	if (relu)
		cpu_relu(y, y, n);
}
