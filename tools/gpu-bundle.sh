#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Build the GPU test and benchmark binaries in a self-contained form into
# gpu/ (git-ignored), for a GPU machine that has the CUDA driver, cuBLAS and
# cuDNN but none of dprt's other libraries (see /work/shared/DEVICE.md):
#
#   gpu/bin/test_cuda    criterion tests of src/exec/cuda and src/mem
#   gpu/bin/bench_cuda   warm-latency benchmark
#   gpu/lib/             criterion and its shared libraries (the binaries'
#                        rpath is $ORIGIN/../lib)
#
# liburing and OpenBLAS are linked statically; libcuda, cuBLAS and cuDNN are
# dlopen()ed at run time, so nothing CUDA is linked. Run them there with
# tools/gpu-run.sh OUTDIR.
#
# Usage: tools/gpu-bundle.sh          (from anywhere; builds in build/gpu-obj)
# Environment: CC (default cc), NVCC (default nvcc on PATH, else
# /usr/local/cuda/bin/nvcc), CUDA_INC (default /usr/local/cuda/include).

set -eu
cd "$(dirname "$0")/.."

CC=${CC:-cc}
if [ -z "${NVCC:-}" ]; then
	NVCC=$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
fi
CUDA_INC=${CUDA_INC:-/usr/local/cuda/include}
obj=build/gpu-obj
out=gpu

cflags="-std=gnu11 -O2 -g -pthread -Wall -Wextra -Wmissing-prototypes -Wvla -Wshadow -Werror"
cflags="$cflags -Isrc -Iinclude -I$CUDA_INC"
nvcc_flags="-O3 -std=c++17 -Xcompiler -Wall,-Wextra --Werror all-warnings"
nvcc_flags="$nvcc_flags -gencode arch=compute_80,code=sm_80"
nvcc_flags="$nvcc_flags -gencode arch=compute_90,code=sm_90"
nvcc_flags="$nvcc_flags -gencode arch=compute_90,code=compute_90"

# Everything the GPU binaries need from src/ (not main.c, net/, sched/).
srcs="src/base/*.c src/model/*.c src/exec/cpu/*.c src/exec/cuda/*.c src/mem/*.c"

static_lib()
{
	p=$($CC -print-file-name="lib$1.a")
	[ -f "$p" ] || { echo "gpu-bundle: lib$1.a not found" >&2; exit 1; }
	echo "$p"
}

mkdir -p "$obj/kernels" "$out/bin" "$out/lib"
grep -qsx '/gpu/' .git/info/exclude || echo '/gpu/' >>.git/info/exclude

echo "NVCC src/exec/cuda/kernels.cu"
"$NVCC" $nvcc_flags -fatbin -o "$obj/kernels/kernels.fatbin" src/exec/cuda/kernels.cu

objs=
for f in $srcs; do
	o=$obj/$(echo "$f" | tr / _ | sed 's/\.c$/.o/')
	extra=
	[ "$f" = src/exec/cuda/fatbin.c ] && extra="-Wa,-I$obj/kernels"
	if [ ! -f "$o" ] || [ "$f" -nt "$o" ] || [ "$f" = src/exec/cuda/fatbin.c ] ||
		[ -n "$(find src -name '*.h' -newer "$o" 2>/dev/null | head -n 1)" ]; then
		echo "CC $f"
		$CC $cflags $extra -c "$f" -o "$o"
	fi
	objs="$objs $o"
done
rm -f "$obj/libdprt-gpu.a"
ar crs "$obj/libdprt-gpu.a" $objs

libs="$obj/libdprt-gpu.a $(static_lib uring) $(static_lib jansson) $(static_lib openblas) -lm -ldl -lpthread"
rpath="-Wl,-rpath,\$ORIGIN/../lib -Wl,--enable-new-dtags"

tobjs=
for f in test/exec/cuda/helpers.c test/exec/cuda/test_*.c; do
	o=$obj/$(echo "$f" | tr / _ | sed 's/\.c$/.o/')
	echo "CC $f"
	$CC $cflags -c "$f" -o "$o"
	tobjs="$tobjs $o"
done
echo "LINK $out/bin/test_cuda"
$CC -pthread -o "$out/bin/test_cuda" $tobjs $libs -lcriterion $rpath

echo "CC test/exec/cuda/bench_cuda.c"
$CC $cflags -c test/exec/cuda/bench_cuda.c -o "$obj/bench_cuda.o"
echo "LINK $out/bin/bench_cuda"
$CC -pthread -o "$out/bin/bench_cuda" "$obj/bench_cuda.o" $libs $rpath

# Ship the shared libraries criterion needs, but never glibc's own.
rm -f "$out"/lib/*
ldd "$out/bin/test_cuda" | awk '$3 ~ /^\// { print $3 }' | while read -r l; do
	case $(basename "$l") in
	libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | \
		ld-linux*.so.* | libresolv.so.* | libgcc_s.so.*) ;;
	*) cp -L "$l" "$out/lib/" ;;
	esac
done
cp tools/gpu-run.sh "$out/"
echo "gpu-bundle: $(du -sh "$out" | cut -f1) in $out/:"
ls -l "$out/bin" "$out/lib"
