#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Plans for the paper's 8 models on 1, 2 and 4 GPUs, made from profiles
# the GPU profiler measured (bench/fig10.sh OUTDIR plans saves them as
# OUTDIR/profiles/MODEL.dpprof), on any machine:
#
#   bench/plans_report.sh PROFILE_DIR OUT.md
#
# For each model: `dprt zoo MODEL` (the same package, so the same
# checksum, as on the GPU machine), then `dprt plan MODEL --profile
# PROFILE_DIR/MODEL.dpprof --gpus G --mode all --show` for G = 0, 0,1 and
# 0-3. OUT.md gets a summary table (the dprt plan's links, DHA share and
# predicted total; every mode's prediction) and each `--show` in full.
set -eu
[ $# -eq 2 ] || { echo "usage: bench/plans_report.sh PROFILE_DIR OUT.md" >&2; exit 2; }
prof=$(cd "$1" && pwd)
out=$2
root=$(cd "$(dirname "$0")/.." && pwd)
dprt=${DPRT:-$root/dprt}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
models=${PLAN_MODELS:-resnet50 resnet101 bert-base bert-large roberta-base roberta-large gpt2 gpt2-medium}

{
	echo "| model | GPUs | dprt plan | predicted totals, ms |"
	echo "|---|---|---|---|"
} >"$tmp/summary"
for m in $models; do
	"$dprt" zoo "$m" -o "$tmp/models" >/dev/null
	for g in 0 0,1 0-3; do
		"$dprt" plan "$tmp/models/$m" --profile "$prof/$m.dpprof" --gpus $g --mode all \
			--plans "$tmp/plans" --show >"$tmp/show" 2>&1
		n=$(echo $g | sed 's/0-3/4/; s/0,1/2/; s/^0$/1/')
		head=$(grep -m1 ": dprt plan for" "$tmp/show" | sed 's/^[^:]*: dprt plan for [^:]*: //')
		tot=$(grep -m1 "^predicted totals" "$tmp/show" | sed 's/^[^:]*: //')
		echo "| $m | $n | $head | $tot |" >>"$tmp/summary"
		{
			echo "### $m on $n GPU$( [ "$n" = 1 ] || echo s)"
			echo
			echo '```'
			grep -v '^  -> ' "$tmp/show"
			echo '```'
			echo
		} >>"$tmp/full"
	done
	rm -rf "$tmp/models/$m"
done
{
	echo "## Summary"
	echo
	cat "$tmp/summary"
	echo
	echo "## Plans (dprt mode, as \`dprt plan --show\` prints them)"
	echo
	cat "$tmp/full"
} >"$out"
