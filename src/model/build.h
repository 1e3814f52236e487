/* SPDX-License-Identifier: MIT */
/*
 * model: graph-building helpers shared by the zoo (zoo.c), the transformer
 * and ViT builders (arch.c) and the importers. Private to src/model/.
 * Tensor names are wsrc recipes (see wsrc.c).
 */
#ifndef DPRT_MODEL_BUILD_H
#define DPRT_MODEL_BUILD_H

#include "model.h"

/* dst = a + b, cut at NAME_LEN - 1. */
void mb_join(char *dst, const char *a, const char *b);
/* One-input node with one int attribute. */
uint32_t mb_node1(struct graph *g, enum op op, uint32_t x, int64_t ia0);
/* Two-input node with one int attribute. */
uint32_t mb_node2(struct graph *g, enum op op, uint32_t a, uint32_t b, int64_t ia0);
/* A linear layer `name`: weight `wname` [out, in], bias `bname` [out]
 * (bname NULL: no bias). */
uint32_t mb_linear(struct graph *g, uint32_t x, const char *name, const char *wname,
		   const char *bname, int64_t out, int64_t in_features);
/* nn.Linear at module path `name`: "<name>.weight", "<name>.bias". */
uint32_t mb_linear_plain(struct graph *g, uint32_t x, const char *name, int64_t out,
			 int64_t in_features);

#endif
