/* SPDX-License-Identifier: MIT */
/*
 * Fast path for the big numeric "data" arrays of KServe JSON bodies
 * (src/net/jnum.c). A generic JSON tree costs an allocation and a strtod
 * per element (60 ms for one ResNet input on a small machine, on the
 * network thread); this scans the text once, finds the spans of the
 * tensors' "data" arrays, and decodes an array of plain numbers straight
 * into the tensor's bytes, while jansson parses the rest with those arrays
 * emptied. Anything it is not sure of sends the whole body down the tree
 * path, so results and error messages stay that path's.
 */
#ifndef DPRT_NET_JNUM_H
#define DPRT_NET_JNUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A tensor's "data" array in the text: [off, off + len), len 0 if none. */
struct jnum_span {
	size_t off, len;
};

/*
 * Scan JSON text js[0..len) (a whole document) for the "data" arrays of the
 * objects of the root's array member `key` ("inputs" or "outputs"), the
 * i-th object's into spans[i] (i < max). Only arrays that hold nothing but
 * number characters (nested up to max_depth deep) count; their numbers are
 * read by jnum_decode. Returns true if the path to them is unambiguous (no
 * duplicate or escaped keys on it) and the rest has the shape of JSON:
 * then jansson may parse the document with those arrays emptied. The rest
 * is only skimmed: jansson still judges it.
 */
bool jnum_scan(const char *js, size_t len, const char *key, struct jnum_span *spans, uint32_t max,
	       uint32_t max_depth);

/*
 * Decode a span jnum_scan found into numel elements of dtype dt at dst,
 * converting as the tree path does (reals rounded to double, then to the
 * type; integers exact). Returns 0, or -1 if the tree path must decide:
 * a token that is no JSON number (or one jansson refuses: an integer
 * beyond int64, a real beyond double), ragged or empty nesting, a count
 * other than numel, a value out of range or a real where an integer is
 * needed. The tree path then gives the answer or the error.
 */
int jnum_decode(const char *s, size_t len, int dt, uint64_t numel, void *dst);

#endif
