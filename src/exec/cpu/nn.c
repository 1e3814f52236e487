/* SPDX-License-Identifier: MIT */
/* CPU kernels of the transformer models. */
#include "cpu.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

void cpu_fill(float *y, float v, int64_t n)
{
	int64_t i;

	for (i = 0; i < n; i++)
		y[i] = v;
}

#define LINEAR_ROWS 512

void cpu_linear(const float *x, const float *w, const float *b, float *y, int64_t rows, int64_t k,
		int64_t m)
{
	int64_t r;

	for (r = 0; b && r < rows; r++)
		memcpy(y + r * m, b, sizeof(float) * (size_t)m);
	/* In row blocks: the BLAS library's per-thread work buffer, which it
	 * never gives back, then grows with the block, not with the request. */
	for (r = 0; r < rows; r += LINEAR_ROWS)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
			    (int)MIN(LINEAR_ROWS, rows - r), (int)m, (int)k, 1.0f, x + r * k,
			    (int)k, w, (int)k, b ? 1.0f : 0.0f, y + r * m, (int)m);
}

int cpu_embedding(const int64_t *ids, const float *table, float *y, int64_t n, int64_t v, int64_t h,
		  const char *what)
{
	int64_t i;

	/* Check every id before writing, so a refused request leaves no
	 * half-written output behind. */
	for (i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= v)
			return err_set(DPRT_EINPUT,
				       "%s: id %lld at flat index %lld is outside the valid "
				       "range [0, %lld)",
				       what, (long long)ids[i], (long long)i, (long long)v);
	for (i = 0; i < n; i++)
		memcpy(y + i * h, table + ids[i] * h, sizeof(float) * (size_t)h);
	return 0;
}

void cpu_position_ids(const int64_t *ids, int64_t *pos, int64_t n, int64_t s, int mode, int64_t arg)
{
	int64_t b, i, run;

	for (b = 0; b < n; b++, ids += s, pos += s) {
		run = 0;
		for (i = 0; i < s; i++) {
			if (mode == 0) {
				pos[i] = i + arg;
				continue;
			}
			run += ids[i] != arg;
			pos[i] = ids[i] != arg ? run + arg : arg;
		}
	}
}

static void layernorm_row(const float *x, const float *gamma, const float *beta, float *y,
			  int64_t h, double eps)
{
	double mean = 0.0, var = 0.0, rstd;
	int64_t i;

	for (i = 0; i < h; i++)
		mean += x[i];
	mean /= (double)h;
	for (i = 0; i < h; i++)
		var += ((double)x[i] - mean) * ((double)x[i] - mean);
	var /= (double)h;
	rstd = 1.0 / sqrt(var + eps);
	for (i = 0; i < h; i++)
		y[i] = (float)(((double)x[i] - mean) * rstd) * gamma[i] + beta[i];
}

void cpu_layernorm(const float *x, const float *gamma, const float *beta, float *y, int64_t rows,
		   int64_t h, float eps)
{
	int64_t r;

	for (r = 0; r < rows; r++)
		layernorm_row(x + r * h, gamma, beta, y + r * h, h, eps);
}

void cpu_gelu(const float *x, float *y, int64_t n, bool tanh_form)
{
	const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
	int64_t i;

	for (i = 0; i < n; i++) {
		float v = x[i];

		if (tanh_form)
			y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
		else
			y[i] = 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2));
	}
}

void cpu_tanh(const float *x, float *y, int64_t n)
{
	int64_t i;

	for (i = 0; i < n; i++)
		y[i] = tanhf(x[i]);
}

/* In place is fine: each x[j] is read before y[j] is written. */
static void softmax_row(const float *x, float *y, int64_t cols)
{
	float max = -INFINITY;
	double sum = 0.0;
	float inv;
	int64_t j;

	for (j = 0; j < cols; j++)
		max = x[j] > max || isnan(x[j]) ? x[j] : max;
	for (j = 0; j < cols; j++) {
		y[j] = expf(x[j] - max);
		sum += y[j];
	}
	inv = (float)(1.0 / sum);
	for (j = 0; j < cols; j++)
		y[j] *= inv;
}

void cpu_softmax(const float *x, float *y, int64_t rows, int64_t cols)
{
	int64_t r;

	for (r = 0; r < rows; r++)
		softmax_row(x + r * cols, y + r * cols, cols);
}

int64_t cpu_attention_scratch(const struct cpu_attn *p)
{
	return p->s * p->s;
}

/* Add the lowest float to the scores of keys a query may not see, once even
 * when both masks hide a key (as Hugging Face's combined 4-D mask does).
 * A fully masked row thus degrades to a uniform softmax, never to NaN. */
static void mask_scores(const struct cpu_attn *p, const int64_t *mask, float *sc)
{
	int64_t i, j;

	for (i = 0; i < p->s; i++, sc += p->s) {
		for (j = 0; j < p->s; j++) {
			bool hide = (p->causal && j > i) || (mask && mask[j] == 0);

			if (hide)
				sc[j] += -FLT_MAX;
		}
	}
}

void cpu_attention(const struct cpu_attn *p, const float *qkv, const int64_t *mask, float *y,
		   float *scratch)
{
	int64_t hid = p->heads * p->d, ld = 3 * hid, b, h;
	float scale = (float)(1.0 / sqrt((double)p->d));

	for (b = 0; b < p->n; b++) {
		const float *base = qkv + b * p->s * ld;
		const int64_t *mrow = mask ? mask + b * p->s : NULL;

		for (h = 0; h < p->heads; h++) {
			const float *q = base + h * p->d;

			/* scores[s,s] = q . k^T / sqrt(d) */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p->s, (int)p->s,
				    (int)p->d, scale, q, (int)ld, q + hid, (int)ld, 0.0f, scratch,
				    (int)p->s);
			mask_scores(p, mrow, scratch);
			cpu_softmax(scratch, scratch, p->s, p->s);
			/* y[b, :, h*d:(h+1)*d] = probs . v */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p->s, (int)p->d,
				    (int)p->s, 1.0f, scratch, (int)p->s, q + 2 * hid, (int)ld, 0.0f,
				    y + b * p->s * hid + h * p->d, (int)hid);
		}
	}
}

void cpu_take_row(const float *x, float *y, int64_t n, int64_t s, int64_t h, int64_t row)
{
	int64_t b;

	for (b = 0; b < n; b++)
		memcpy(y + b * h, x + (b * s + row) * h, sizeof(float) * (size_t)h);
}

void cpu_cls_pos(const float *x, const float *cls, const float *pos, float *y, int64_t n, int64_t h,
		 int64_t p)
{
	int64_t b, i, c;

	for (b = 0; b < n; b++) {
		const float *xb = x + b * h * p;
		float *yb = y + b * (1 + p) * h;

		for (c = 0; c < h; c++)
			yb[c] = cls[c] + pos[c];
		for (i = 0; i < p; i++)
			for (c = 0; c < h; c++)
				yb[(1 + i) * h + c] = xb[c * p + i] + pos[(1 + i) * h + c];
	}
}
