/* SPDX-License-Identifier: MIT */
/* import_onnx for builds without an ONNX reader (src/model/onnx.c). */
#include "model.h"

/* Refuse: this build reads no ONNX files. Any thread. DPRT_EUNSUP. */
int import_onnx(const char *path, enum dtype dt, struct graph **g, struct weight_source **ws)
{
	(void)dt;
	*g = NULL;
	*ws = NULL;
	return err_set(DPRT_EUNSUP, "%s: ONNX import: not available in this build", path);
}
