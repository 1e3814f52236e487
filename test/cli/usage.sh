#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt's command line: --help, --version, and usage errors (exit 2 + hint).
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

run --help
expect_rc 0 "--help"
expect_out "usage: dprt" "--help prints the usage"
for cmd in zoo info run; do
	expect_out "^  $cmd " "--help lists '$cmd'"
done
expect_out "^Environment:" "--help has an Environment section"
for var in DPRT_CUDA_GRAPHS DPRT_CUDA_LT DPRT_CUDA_LT_GELU DPRT_CUDA_FLASH DPRT_CUDA_ATTN \
	DPRT_CUDNN_FIND DPRT_COLD_GRAPH DPRT_COLD_PROMOTE DPRT_PT_DIRECT DPRT_CUDA_POOL_MB \
	DPRT_CUDA_ARENA_MB PLAN_REPO DPRT_CACHE; do
	expect_out "^  $var +\(default [^)]+\)" "--help lists $var with its default"
done

run --version
expect_rc 0 "--version"
expect_out "^dprt [0-9]+\.[0-9]+\.[0-9]+" "--version prints 'dprt X.Y.Z'"

run
expect_rc 2 "no arguments"
expect_err "dprt" "no arguments: usage on stderr"

run frobnicate
expect_rc 2 "unknown subcommand"
expect_err "frobnicate" "unknown subcommand is named"
expect_err "--help" "unknown subcommand: hint"

run --frobnicate
expect_rc 2 "unknown global option"
expect_err "--frobnicate" "unknown option is named"
expect_err "--help" "unknown global option: hint"

run zoo bert-tiny -o "$tmp/m" --frobnicate
expect_rc 2 "zoo: unknown option"
expect_err "--frobnicate" "zoo: unknown option is named"
expect_err "--help" "zoo: hint"
[ ! -e "$tmp/m" ] || fail "zoo wrote output despite a usage error"

run zoo bert-tiny
expect_rc 2 "zoo without -o"
expect_err "--help" "zoo without -o: hint"

run run "$tmp/nothing" --frobnicate
expect_rc 2 "run: unknown option"
expect_err "--frobnicate" "run: unknown option is named"

run run
expect_rc 2 "run without PATH"

run info
expect_rc 2 "info without PATH"

run zoo no-such-model -o "$tmp/m"
[ "$rc" -ne 0 ] || fail "zoo of an unknown model succeeded"
expect_err "no-such-model" "unknown model is named"

run serve --cold-mode bogus
expect_rc 2 "serve --cold-mode bogus"
expect_err "unknown cold mode 'bogus'" "bad cold mode is named"

run serve --cold-mode pt+x
expect_rc 2 "serve --cold-mode pt+x"
expect_err "pipeline, pt, pt\+dha" "the cold modes, parallel transmission's included"

run info "$tmp/does-not-exist"
[ "$rc" -ne 0 ] || fail "info of a missing path succeeded"
expect_err "does-not-exist" "missing path is named"

finish
