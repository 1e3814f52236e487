/* SPDX-License-Identifier: MIT */
/*
 * onnx_import MODEL.onnx OUT.dpk [FP32|FP16|BF16]: import an ONNX model with
 * import_onnx and write the package with pkg_write (what 'dprt import' does
 * for .onnx files). Nothing is written when the import fails. Exit 0, or 1
 * with the message on stderr.
 */
#include <stdio.h>

#include "model/model.h"

int main(int argc, char **argv)
{
	enum dtype dt = argc > 3 ? dtype_parse(argv[3]) : DT_F32;
	struct weight_source *ws;
	struct graph *g;
	int ret;

	if (argc < 3 || argc > 4 || dt == DT_NONE) {
		fprintf(stderr, "usage: %s MODEL.onnx OUT.dpk [FP32|FP16|BF16]\n", argv[0]);
		return 2;
	}
	ret = import_onnx(argv[1], dt, &g, &ws);
	if (!ret) {
		ret = pkg_write(argv[2], g, wsrc_fill, ws);
		wsrc_destroy(ws);
		graph_destroy(g);
	}
	if (ret) {
		fprintf(stderr, "%s\n", err_msg(ret));
		return 1;
	}
	printf("wrote %s\n", argv[2]);
	return 0;
}
