#!/bin/sh
# SPDX-License-Identifier: MIT
# build/libdprt.so: it exports dprt_* and nothing else, and a program
# written against include/dprt.h links against it, runs, and answers as
# the same program linked with the archives does.
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

root=$(cd "$(dirname "$0")/../.." && pwd)
so=$root/build/libdprt.so
cc=$(sed -n 's/^cc = //p' "$root/build/config.ninja")
libs=$(sed -n 's/^libs = //p' "$root/build/config.ninja")

[ -f "$so" ] || fail "no $so (build it with 'ninja')"

# every defined dynamic symbol starts with dprt_
nm -D --defined-only "$so" >"$tmp/syms" || fail "nm -D $so"
awk '{ print $NF }' "$tmp/syms" | grep -v '^dprt_' >"$tmp/stray"
[ ! -s "$tmp/stray" ] || fail "libdprt.so exports $(wc -l <"$tmp/stray") other symbols: $(head -n 5 "$tmp/stray" | tr '\n' ' ')"
for f in dprt_open dprt_close dprt_load dprt_unload dprt_infer dprt_last_error; do
	grep -q " T $f\$" "$tmp/syms" || fail "libdprt.so lacks $f"
done

# a program that knows only dprt.h, against the .so and against the archives
last="cc so_user.c -ldprt"
$cc -std=c11 -Wall -Wextra -Werror -I"$root/include" -o "$tmp/so_user" \
	"$root/test/api/so_user.c" -L"$root/build" -ldprt -Wl,-rpath,"$root/build" \
	>"$tmp/out" 2>"$tmp/err" || fail "linking against libdprt.so"
ldd "$tmp/so_user" | grep -q "libdprt.so => $so" || fail "so_user does not load $so"
# shellcheck disable=SC2086
$cc -std=c11 -pthread -I"$root/include" -o "$tmp/a_user" "$root/test/api/so_user.c" \
	-Wl,--start-group "$root/build/libdprt.a" "$root/build/libdprt_cuda.a" -Wl,--end-group \
	$libs >"$tmp/out" 2>"$tmp/err" || fail "linking against the archives"

mkdir -p "$tmp/repo/bert/1"
run zoo bert-tiny -o "$tmp/repo/bert/1/model.dpk"
expect_rc 0 "zoo bert-tiny"

last="so_user"
"$tmp/so_user" "$tmp/repo" >"$tmp/so.out" 2>"$tmp/err"
rc=$?
expect_rc 0 "so_user runs"
[ "$(grep -c '^[-0-9]' "$tmp/so.out")" -ge 8 ] || fail "so_user printed no pooler output"
grep -q "^unknown: 1 .*nope" "$tmp/so.out" || fail "an unknown model's error through the .so"
last="a_user"
"$tmp/a_user" "$tmp/repo" >"$tmp/a.out" 2>"$tmp/err"
rc=$?
expect_rc 0 "a_user runs"
cmp -s "$tmp/so.out" "$tmp/a.out" || fail "libdprt.so and the archives answer differently"

finish
