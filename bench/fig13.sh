#!/bin/sh
# SPDX-License-Identifier: MIT
# Figure 13 of DeepPlan: Figure 12's experiment (bench/fig12.sh) for
# bert-large (SLO 100 ms; the paper's 30 req/s over N = 5 15 .. 55) and
# gpt2 (SLO 200 ms; 90 req/s over N = 20 40 .. 200), each into its own
# folder of OUT (default bench/results/fig13-<gpu>-<date>), then one
# summary.md. --rate and --ns, when given, apply to both models.
#
#   sh bench/fig13.sh [--out DIR] [fig12.sh options but --model, --slo, --seq]
#     --tiny   bert-tiny and gpt2-tiny on cpu:1 (a quick check)
# Exit status 1 if either run failed.
set -u
cd "$(dirname "$0")/.." || exit 1
out='' tiny=0 own_rate=0 own_ns=0
# Take --out out of the arguments (wherever it is); keep the rest in order.
n=$#
while [ "$n" -gt 0 ]; do
	a=$1
	shift
	n=$((n - 1))
	case $a in
	--out)
		out=${1:?--out needs a folder}
		shift
		n=$((n - 1))
		;;
	--model | --slo | --seq) echo "fig13.sh: $a is fixed here" >&2; exit 2 ;;
	--rate | --ns)
		[ $a = --rate ] && own_rate=1 || own_ns=1
		set -- "$@" "$a" "${1:?$a needs a value}"
		shift
		n=$((n - 1))
		;;
	-h | --help) sed -n '3,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*)
		[ "$a" = --tiny ] && tiny=1
		set -- "$@" "$a"
		;;
	esac
done
if [ -z "$out" ]; then
	gpu=cpu
	case " $* " in
	*" --gpus cpu"* | *" --tiny "*) ;;
	*) gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 |
		tr 'A-Z ' 'a-z-' | sed 's/^nvidia-//') ;;
	esac
	out=bench/results/fig13-${gpu:-gpu}-$(date -u +%Y-%m-%d)
fi
rc=0
if [ $tiny = 1 ]; then
	set -- bert-tiny:100 gpt2-tiny:200 -- "$@"
else
	set -- bert-large:100 gpt2:200 -- "$@"
fi
runs=
while [ "$1" != -- ]; do
	runs="$runs $1"
	shift
done
shift
for r in $runs; do
	m=${r%:*}
	# the paper's rate and instance counts per model, unless given
	prate=100 pns='20 40 60 80 100 120 140 160 180 200'
	[ "$m" = bert-large ] && prate=30 pns='5 15 25 35 45 55'
	[ "$m" = gpt2 ] && prate=90
	if [ $tiny = 1 ]; then
		sh bench/fig12.sh --name fig13 --model "$m" --slo "${r#*:}" --out "$out/$m" "$@" || rc=1
	elif [ $own_rate = 1 ] && [ $own_ns = 1 ]; then
		sh bench/fig12.sh --name fig13 --model "$m" --slo "${r#*:}" --out "$out/$m" "$@" || rc=1
	elif [ $own_rate = 1 ]; then
		sh bench/fig12.sh --name fig13 --model "$m" --slo "${r#*:}" --out "$out/$m" \
			--ns "$pns" "$@" || rc=1
	elif [ $own_ns = 1 ]; then
		sh bench/fig12.sh --name fig13 --model "$m" --slo "${r#*:}" --out "$out/$m" \
			--rate $prate "$@" || rc=1
	else
		sh bench/fig12.sh --name fig13 --model "$m" --slo "${r#*:}" --out "$out/$m" \
			--rate $prate --ns "$pns" "$@" || rc=1
	fi
done
{
	for r in $runs; do
		cat "$out/${r%:*}/summary.md"
		echo
	done
} >"$out/summary.md"
exit $rc
