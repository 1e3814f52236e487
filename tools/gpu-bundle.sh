#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Build the GPU binaries in a self-contained form, for a GPU machine that
# has the CUDA driver, cuBLAS and cuDNN but none of dprt's other libraries
# (see /work/shared/DEVICE.md), and pack them into gpu/:
#
#   bin/test_cuda      criterion tests of src/exec/cuda and src/mem
#   bin/bench_cuda     warm-latency benchmark
#   bin/fullsize_cuda  the paper's models against the CPU backend at full
#                      size; memory over many runs
#   bin/bandwidth      copy, DHA, peer and GEMM ceilings
#   bin/coldstart      cold-start latency by engine mode (bench/coldstart.c)
#   bin/loadgen        the serving load generator (bench/loadgen.c)
#   bin/diskbw         raw read bandwidth of files (bench/diskbw.c, liburing)
#   bin/pinbw          how fast host memory gets pinned, by method (bench/pinbw.c)
#   bin/dprt           the command line (liburing, libck, jansson and
#                      OpenBLAS linked statically, like --static-deps)
#   lib/               criterion and its shared libraries (the binaries'
#                      rpath is $ORIGIN/../lib)
#
# The binaries are staged in build/gpu-stage and packed into
# gpu/bundle.tar.xz (the statically linked OpenBLAS makes each binary that
# holds the CPU backend ~26 MB, too much to carry unpacked); tools/gpu-run.sh
# and bench/warm.sh unpack it into gpu/ on the GPU machine. libcuda, cuBLAS
# and cuDNN are dlopen()ed at run time, so nothing CUDA is linked. Carry gpu/
# (it is git-ignored) and run there with tools/gpu-run.sh OUTDIR or
# bench/warm.sh OUTDIR.
#
# Usage: tools/gpu-bundle.sh          (from anywhere; builds in build/gpu-obj)
# GPU_BUNDLE=DIR packs into DIR instead of gpu/ (git-ignored the same way),
# building in build/DIR-obj and build/DIR-stage: separate bundles for runs
# prepared side by side.
# Environment: CC (default cc), NVCC (default nvcc on PATH, else
# /usr/local/cuda/bin/nvcc), CUDA_INC (default /usr/local/cuda/include).

set -eu
cd "$(dirname "$0")/.."

CC=${CC:-cc}
if [ -z "${NVCC:-}" ]; then
	NVCC=$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
fi
CUDA_INC=${CUDA_INC:-/usr/local/cuda/include}
out=${GPU_BUNDLE:-gpu}
obj=build/gpu-obj
stage=build/gpu-stage
if [ "$out" != gpu ]; then
	obj=build/$out-obj
	stage=build/$out-stage
fi

warn="-Wall -Wextra -Wmissing-prototypes -Wvla -Wshadow"
cflags="-std=gnu11 -O2 -g -pthread $warn -Werror -Isrc -Iinclude -Ibuild -I$CUDA_INC"
nvcc_flags="-O3 -std=c++17 -Xcompiler -Wall,-Wextra --Werror all-warnings"
nvcc_flags="$nvcc_flags -gencode arch=compute_80,code=sm_80"
nvcc_flags="$nvcc_flags -gencode arch=compute_90,code=sm_90"
nvcc_flags="$nvcc_flags -gencode arch=compute_90,code=compute_90"

# The configured build's choices (./configure) and its generated protobuf
# code: ONNX import and gRPC come along where the build has them.
[ -f build/config.h ] || { echo "gpu-bundle: run ./configure first" >&2; exit 1; }
have() { grep -q "^#define $1 1" build/config.h; }
gen=
have HAVE_PROTOBUF_C && gen="$gen build/gen/onnx.pb-c.c"
have HAVE_GRPC && gen="$gen build/proto/grpc_service.pb-c.c build/proto/model_runtime.pb-c.c"
[ -z "$gen" ] || ninja $gen >/dev/null
cflags="$cflags -Ibuild/gen -Ibuild/proto"

# Everything the GPU binaries need from src/ (not cli/, net/, sched/, api.c).
srcs="src/base/*.c src/exec/cpu/*.c src/exec/cuda/*.c src/mem/*.c src/plan/*.c"
for f in src/model/*.c; do
	case $f in
	src/model/onnx*.c) have HAVE_PROTOBUF_C || continue ;;
	src/model/import_onnx_none.c) have HAVE_PROTOBUF_C && continue ;;
	esac
	srcs="$srcs $f"
done
have HAVE_PROTOBUF_C && srcs="$srcs build/gen/onnx.pb-c.c"
# What the dprt command adds: build.ninja's C sources that $srcs lacks,
# and gRPC's (configure's build/grpc.ninja) or its stubs.
cli_srcs=
for f in $(grep -o 'cc src/[^ ]*\.c' build.ninja | cut -d' ' -f2); do
	case " $(echo $srcs) " in *" $f "*) ;; *) cli_srcs="$cli_srcs $f" ;; esac
done
if have HAVE_GRPC; then
	cli_srcs="$cli_srcs src/net/grpc.c src/net/grpc_svc.c src/net/grpc_mm.c"
	cli_srcs="$cli_srcs build/proto/grpc_service.pb-c.c build/proto/model_runtime.pb-c.c"
else
	cli_srcs="$cli_srcs src/net/grpc_stub.c"
fi

static_lib()
{
	p=$($CC -print-file-name="lib$1.a")
	[ -f "$p" ] || { echo "gpu-bundle: lib$1.a not found" >&2; exit 1; }
	echo "$p"
}

# cc_obj FILE [extra flags]: compile FILE into $obj unless up to date;
# prints the object's path.
cc_obj()
{
	f=$1
	shift
	o=$obj/$(echo "$f" | tr / _ | sed 's/\.c$/.o/')
	if [ ! -f "$o" ] || [ "$f" -nt "$o" ] || [ "$f" = src/exec/cuda/fatbin.c ] ||
		[ "$f" = bench/bandwidth.c ] ||
		[ -n "$(find src test/exec/cuda -name '*.h' -newer "$o" 2>/dev/null | head -n 1)" ]; then
		echo "CC $f" >&2
		case $f in
		build/*) $CC $cflags -w "$@" -c "$f" -o "$o" ;;
		*) $CC $cflags "$@" -c "$f" -o "$o" ;;
		esac
	fi
	echo "$o"
}

mkdir -p "$obj/kernels" "$stage/bin" "$stage/lib" "$out"
# Keep the bundle out of git: .gitignore has gpu/ and gpu-*/, another DIR
# goes into info/exclude (a worktree's .git is a file: ask git for the path).
git check-ignore -q "$out/" ||
	echo "/$out/" >>"$(git rev-parse --git-path info/exclude)"

echo "NVCC src/exec/cuda/kernels.cu"
"$NVCC" $nvcc_flags -fatbin -o "$obj/kernels/kernels.fatbin" src/exec/cuda/kernels.cu
echo "NVCC bench/bw_kernels.cu"
"$NVCC" $nvcc_flags -fatbin -o "$obj/kernels/bw_kernels.fatbin" bench/bw_kernels.cu

objs=
for f in $srcs; do
	if [ "$f" = src/exec/cuda/fatbin.c ]; then
		objs="$objs $(cc_obj "$f" "-Wa,-I$obj/kernels")"
	else
		objs="$objs $(cc_obj "$f")"
	fi
done
rm -f "$obj/libdprt-gpu.a"
ar crs "$obj/libdprt-gpu.a" $objs

blas="$(static_lib openblas)"
for l in gfortran quadmath; do
	p=$($CC -print-file-name="lib$l.a")
	[ -f "$p" ] && blas="$blas $p"
done
extra=
have HAVE_PROTOBUF_C || have HAVE_GRPC && extra="$(static_lib protobuf-c)"
libs="$obj/libdprt-gpu.a $(static_lib uring) $(static_lib jansson) $extra $blas -lm -ldl -lpthread"
dprt_libs="$(static_lib ck) $(static_lib z)"
have HAVE_GRPC && dprt_libs="$dprt_libs $(static_lib nghttp2)"
rpath="-Wl,-rpath,\$ORIGIN/../lib -Wl,--enable-new-dtags"

tobjs=
for f in test/exec/cuda/helpers.c test/exec/cuda/test_*.c; do
	tobjs="$tobjs $(cc_obj "$f")"
done
echo "LINK test_cuda"
$CC -pthread -o "$stage/bin/test_cuda" $tobjs $libs -lcriterion $rpath

progs=$(cc_obj test/exec/cuda/progs.c)
echo "LINK bench_cuda"
$CC -pthread -o "$stage/bin/bench_cuda" "$(cc_obj test/exec/cuda/bench_cuda.c)" $progs $libs \
	$rpath
echo "LINK fullsize_cuda"
$CC -pthread -o "$stage/bin/fullsize_cuda" "$(cc_obj test/exec/cuda/fullsize.c)" $progs \
	$libs $rpath
echo "LINK bandwidth"
$CC -pthread -o "$stage/bin/bandwidth" "$(cc_obj bench/bandwidth.c "-Wa,-I$obj/kernels")" \
	$libs $rpath
echo "LINK coldstart"
$CC -pthread -o "$stage/bin/coldstart" "$(cc_obj bench/coldstart.c)" $progs $libs $rpath
echo "LINK loadgen"
$CC -pthread -o "$stage/bin/loadgen" "$(cc_obj bench/loadgen.c)" "$(static_lib jansson)" -lm $rpath
echo "LINK pinbw"
$CC -pthread -o "$stage/bin/pinbw" "$(cc_obj bench/pinbw.c)" $libs $rpath
echo "LINK diskbw"
$CC -pthread -o "$stage/bin/diskbw" "$(cc_obj bench/diskbw.c)" "$(static_lib uring)" $rpath

# dprt itself: the rest of build.ninja's sources, without -Werror (a
# warning there must not stop a GPU run), linked statically but for glibc
# and CUDA. A module that does not build leaves the bundle without dprt.
build_dprt()
{
	cobjs=
	for f in $cli_srcs; do
		o=$obj/$(echo "$f" | tr / _ | sed 's/\.c$/.o/')
		echo "CC $f"
		$CC -std=gnu11 -O2 -g -pthread $warn -Isrc -Iinclude -Ibuild -Ibuild/gen \
			-Ibuild/proto -I"$CUDA_INC" -c "$f" -o "$o" || return 1
		cobjs="$cobjs $o"
	done
	echo "LINK dprt"
	$CC -pthread -o "$stage/bin/dprt" -Wl,--start-group $cobjs $libs $dprt_libs \
		-Wl,--end-group
}
rm -f "$stage/bin/dprt"
build_dprt || { rm -f "$stage/bin/dprt"; echo "gpu-bundle: WARNING: no dprt in the bundle" >&2; }

# Ship the shared libraries criterion needs, but never glibc's own.
rm -f "$stage"/lib/*
ldd "$stage/bin/test_cuda" | awk '$3 ~ /^\// { print $3 }' | while read -r l; do
	case $(basename "$l") in
	libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | \
		ld-linux*.so.* | libresolv.so.* | libgcc_s.so.*) ;;
	*) cp -L "$l" "$stage/lib/" ;;
	esac
done
for b in "$stage"/bin/*; do
	if ldd "$b" | grep -q "not found"; then
		echo "gpu-bundle: $b lacks a library:" >&2
		ldd "$b" | grep "not found" >&2
		exit 1
	fi
done
strip --strip-debug "$stage"/bin/*

echo "XZ gpu/bundle.tar.xz"
rm -rf "$out/bin" "$out/lib"
tar -C "$stage" -cf - bin lib | xz -T0 -6 >"$out/bundle.tar.xz"
cp tools/gpu-run.sh "$out/"
echo "gpu-bundle: $(du -sh "$stage" | cut -f1) packed into $(du -sh "$out/bundle.tar.xz" | cut -f1):"
ls -l "$stage/bin" "$out"
