#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt serve as a ModelMesh serving runtime end to end: a fake ModelMesh in
# grpcio drives mmesh.ModelRuntime over TCP and a Unix socket, inference is
# routed by the mm-model-id header, and (when nginx is installed) two dprt
# processes behind deploy/nginx-consistent-hash.conf keep each model on one
# backend (test/net/grpc/test_mmesh.py). The clients come from PyPI
# (test/net/grpc/requirements.txt) into build/grpc-venv, made once; when
# they cannot be had, or dprt was built without gRPC, this exits 77
# (skipped).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
DPRT=${DPRT:-$root/dprt}
venv=$root/build/grpc-venv
want='import tritonclient.grpc, tritonclient.http, grpc, numpy, google.protobuf'
py=${GRPC_PYTHON:-$venv/bin/python}

if ! grep -q '^#define HAVE_GRPC 1' "$root/build/config.h" 2>/dev/null; then
	echo "SKIP: dprt was built without gRPC (see ./configure's summary)"
	exit 77
fi
if ! command -v protoc-c >/dev/null 2>&1; then
	echo "SKIP: protoc-c not found (it makes the test's descriptor set)"
	exit 77
fi
if ! "$py" -c "$want" >/dev/null 2>&1 && [ -z "${GRPC_PYTHON:-}" ]; then
	echo "mmesh: installing test/net/grpc/requirements.txt into $venv"
	rm -rf "$venv"
	python3 -m venv "$venv" >/dev/null 2>&1 &&
		"$py" -m pip install --quiet --disable-pip-version-check \
			-r "$root/test/net/grpc/requirements.txt"
fi
if ! "$py" -c "$want" >/dev/null 2>&1; then
	echo "SKIP: cannot import $want with $py (pip install failed?)"
	exit 77
fi
DPRT=$DPRT exec "$py" "$root/test/net/grpc/test_mmesh.py" "$@"
