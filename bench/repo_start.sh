#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Repository fill against the machine's read bandwidth, in one run:
#  1. raw: build/bench/diskbw reads the repository's packages the way the
#     host store does (parallel O_DIRECT io_uring reads, THREADS files at a
#     time), the page cache dropped first;
#  2. dprt: the page cache dropped again, `dprt serve` starts on the same
#     repository and the time from its start to /v2/health/ready (every
#     model loaded, its host copy read and checked) is taken;
# and prints both rates (package bytes / time) and dprt/raw (target >= 0.8).
# Without root the page cache cannot be dropped: both numbers are then
# page-cache numbers, and the output says so.
#
#   sh bench/repo_start.sh [-d DPRT] [-r REPO] [-g GPUS] [-t THREADS] [-n RUNS] [MODEL...]
#
# REPO: an existing repository (default: one made in a temporary directory
# from the zoo MODELs, default bert-base gpt2 resnet50; with --tiny the
# tiny zoo models, 8 copies each). GPUS: dprt's --gpus (default cpu:1).
# THREADS: diskbw's files at a time (default 4, dprt's loader threads).
# RUNS: measurements of each (default 3; the best of each is compared).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
dprt=$root/dprt
repo=
gpus=cpu:1
threads=4
runs=3
tiny=0
while [ $# -gt 0 ]; do
	case $1 in
	-d) dprt=$2; shift 2 ;;
	-r) repo=$2; shift 2 ;;
	-g) gpus=$2; shift 2 ;;
	-t) threads=$2; shift 2 ;;
	-n) runs=$2; shift 2 ;;
	--tiny) tiny=1; shift ;;
	-h|--help) sed -n '3,24p' "$0"; exit 0 ;;
	-*) echo "repo_start.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
# diskbw: $DISKBW, else ninja's, else compiled here (cc, liburing)
diskbw=${DISKBW:-$root/build/bench/diskbw}
if [ ! -x "$diskbw" ]; then
	diskbw=${TMPDIR:-/tmp}/diskbw.$$
	built_bw=$diskbw
	cc -O2 -o "$diskbw" "$root/bench/diskbw.c" -luring -lpthread ||
		{ echo "repo_start.sh: cannot build bench/diskbw.c (liburing?)" >&2; exit 2; }
fi
[ -x "$dprt" ] || { echo "repo_start.sh: no dprt at $dprt" >&2; exit 2; }
made=
if [ -z "$repo" ]; then
	repo=$(mktemp -d /var/tmp/dprt-repo.XXXXXX)
	made=$repo
	if [ $tiny = 1 ]; then
		# shellcheck disable=SC2048 # model names, no spaces
		for m in ${*:-bert-tiny gpt2-tiny resnet-tiny roberta-tiny}; do
			for i in 1 2 3 4 5 6 7 8; do
				mkdir -p "$repo/$m-$i/1"
				"$dprt" zoo "$m" --seed "$i" -o "$repo/$m-$i/1/model.dpk" >/dev/null || exit 1
			done
		done
	else
		# shellcheck disable=SC2048 # model names, no spaces
		for m in ${*:-bert-base gpt2 resnet50}; do
			"$dprt" zoo "$m" -o "$repo" >/dev/null || exit 1
		done
	fi
fi
cleanup()
{
	[ -n "${built_bw:-}" ] && rm -f "$built_bw"
	[ -n "${pid:-}" ] && kill "$pid" 2>/dev/null
	[ -n "$made" ] && rm -rf "$made"
}
trap cleanup EXIT INT TERM

files=$(find "$repo" -name model.dpk | sort)
[ -n "$files" ] || { echo "repo_start.sh: no packages in $repo" >&2; exit 2; }
# shellcheck disable=SC2086
bytes=$(stat -L -c %s $files | awk '{s += $1} END {print s}')
n=$(echo "$files" | wc -l)

cold=page-cache
drop()
{
	sync
	if echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
		cold=disk
	else
		cold=page-cache
	fi
}

now() { date +%s.%N; }

port=$((20000 + $$ % 20000))
best_raw=0
best_dprt=0
i=0
while [ $i -lt "$runs" ]; do
	i=$((i + 1))
	drop
	# shellcheck disable=SC2086
	raw=$("$diskbw" -t "$threads" $files) || exit 1
	raw_gbs=$(echo "$raw" | awk '{print $6}')
	drop
	t0=$(now)
	"$dprt" serve --models "$repo" --gpus "$gpus" --listen "127.0.0.1:$port" \
		--grpc-listen off >"${TMPDIR:-/tmp}/repo_start.$$.log" 2>&1 &
	pid=$!
	until curl -sf -o /dev/null "http://127.0.0.1:$port/v2/health/ready"; do
		kill -0 "$pid" 2>/dev/null || { cat "${TMPDIR:-/tmp}/repo_start.$$.log"; exit 1; }
		sleep 0.005
	done
	t1=$(now)
	kill -TERM "$pid"
	wait "$pid"
	pid=
	dprt_gbs=$(awk -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN {printf "%.3f", b / (z - a) / 1e9}')
	printf 'run %d: raw %s GB/s (%s), dprt start to ready %s GB/s (%.3f s)\n' "$i" \
		"$raw_gbs" "$(echo "$raw" | awk '{print "direct " $8}')" "$dprt_gbs" \
		"$(awk -v a="$t0" -v z="$t1" 'BEGIN {print z - a}')"
	best_raw=$(awk -v a="$best_raw" -v b="$raw_gbs" 'BEGIN {print (b > a) ? b : a}')
	best_dprt=$(awk -v a="$best_dprt" -v b="$dprt_gbs" 'BEGIN {print (b > a) ? b : a}')
done
rm -f "${TMPDIR:-/tmp}/repo_start.$$.log"
ratio=$(awk -v a="$best_dprt" -v b="$best_raw" 'BEGIN {printf "%.2f", a / b}')
echo "repository: $n packages, $bytes bytes, $cold numbers ($gpus)"
echo "raw read bandwidth:     $best_raw GB/s ($threads files at a time, O_DIRECT io_uring)"
echo "dprt start to ready:    $best_dprt GB/s"
echo "ratio dprt/raw:         $ratio (target >= 0.8)"
[ "$cold" = disk ] || echo "note: not root, the page cache was not dropped: page-cache numbers"
awk -v r="$ratio" 'BEGIN {exit !(r >= 0.8)}'
