/* SPDX-License-Identifier: MIT */
/* A build without a GPU backend (configure's stand-in archive links this
 * in place of the CUDA backend). */
#include "exec/exec.h"

const struct exec_ops *const exec_gpu_backend = NULL;
