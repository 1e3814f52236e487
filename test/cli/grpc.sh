#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt serve over gRPC end to end: tritonclient.grpc and grpcio against a
# real server (test/net/grpc/test_grpc.py), answers compared with HTTP's,
# and garbage over raw sockets. The clients come from PyPI
# (test/net/grpc/requirements.txt) into build/grpc-venv, made once; when
# they cannot be had, or dprt was built without gRPC, this exits 77
# (skipped).
set -u
want='import tritonclient.grpc, tritonclient.http, grpc, numpy'
name=grpc
# shellcheck source=test/cli/grpc.inc
. "$(dirname "$0")/grpc.inc"
DPRT=$DPRT exec "$py" "$root/test/net/grpc/test_grpc.py" "$@"
