#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt serve over gRPC end to end: tritonclient.grpc and grpcio against a
# real server (test/net/grpc/test_grpc.py), answers compared with HTTP's,
# and garbage over raw sockets. The clients come from PyPI
# (test/net/grpc/requirements.txt) into build/grpc-venv, made once; when
# they cannot be had, or dprt was built without gRPC, this exits 77
# (skipped).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
DPRT=${DPRT:-$root/dprt}
venv=$root/build/grpc-venv
want='import tritonclient.grpc, tritonclient.http, grpc, numpy'
py=${GRPC_PYTHON:-$venv/bin/python}

if ! grep -q '^#define HAVE_GRPC 1' "$root/build/config.h" 2>/dev/null; then
	echo "SKIP: dprt was built without gRPC (see ./configure's summary)"
	exit 77
fi
if ! "$py" -c "$want" >/dev/null 2>&1 && [ -z "${GRPC_PYTHON:-}" ]; then
	echo "grpc: installing test/net/grpc/requirements.txt into $venv"
	rm -rf "$venv"
	python3 -m venv "$venv" >/dev/null 2>&1 &&
		"$py" -m pip install --quiet --disable-pip-version-check \
			-r "$root/test/net/grpc/requirements.txt"
fi
if ! "$py" -c "$want" >/dev/null 2>&1; then
	echo "SKIP: cannot import $want with $py (pip install failed?)"
	exit 77
fi
DPRT=$DPRT exec "$py" "$root/test/net/grpc/test_grpc.py" "$@"
