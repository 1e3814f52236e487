#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt serve as a ModelMesh serving runtime end to end: a fake ModelMesh in
# grpcio drives mmesh.ModelRuntime over TCP and a Unix socket (loads,
# cancelled loads, the loading limit, messages over 16 MiB, two dprt
# processes as two pods), inference is
# routed by the mm-model-id header, and (when nginx is installed) two dprt
# processes behind deploy/nginx-consistent-hash.conf keep each model on one
# backend (test/net/grpc/test_mmesh.py). The clients come from PyPI
# (test/net/grpc/requirements.txt) into build/grpc-venv, made once; when
# they cannot be had, or dprt was built without gRPC, this exits 77
# (skipped).
set -u
want='import tritonclient.grpc, tritonclient.http, grpc, numpy, google.protobuf'
name=mmesh
# shellcheck source=test/cli/grpc.inc
. "$(dirname "$0")/grpc.inc"
if ! command -v protoc-c >/dev/null 2>&1; then
	echo "SKIP: protoc-c not found (it makes the test's descriptor set)"
	exit 77
fi
DPRT=$DPRT exec "$py" "$root/test/net/grpc/test_mmesh.py" "$@"
