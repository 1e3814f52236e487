/* SPDX-License-Identifier: MIT */
/* import_onnx in a build without protobuf-c (see ./configure). */
#include "model.h"

/* Refuse: this build has no ONNX reader. Any thread. DPRT_EUNSUP. */
int import_onnx(const char *path, enum dtype dt, struct graph **g, struct weight_source **ws)
{
	(void)dt;
	*g = NULL;
	*ws = NULL;
	return err_set(DPRT_EUNSUP,
		       "ONNX import: %s: this dprt was built without protobuf-c "
		       "(install protobuf-c-compiler and libprotobuf-c-dev, re-run ./configure)",
		       path);
}
