#!/bin/sh
# SPDX-License-Identifier: MIT
# Damaged packages are refused with a message that names the file.
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

run zoo bert-tiny -o "$tmp/good.dpk"
expect_rc 0 "zoo bert-tiny"
size=$(wc -c <"$tmp/good.dpk")

# flip FILE OFFSET: invert the bits of one byte in place.
flip()
{
	b=$(od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' ')
	# shellcheck disable=SC2059 # the format is the octal escape
	printf "\\$(printf %o $((b ^ 255)))" |
		dd of="$1" bs=1 seek="$2" count=1 conv=notrunc 2>/dev/null
}

# refused WHAT CMD: dprt CMD FILE must fail and name FILE.
refused()
{
	run $2 "$f"
	[ "$rc" -ne 0 ] || fail "$1: '$2' accepted a damaged package"
	expect_err "$(basename "$f")" "$1: '$2' names the file"
}

# Truncated: half, one byte short, header only, empty.
for n in $((size / 2)) $((size - 1)) 4096 0; do
	f=$tmp/trunc-$n.dpk
	head -c "$n" "$tmp/good.dpk" >"$f"
	refused "truncated to $n bytes" info
	refused "truncated to $n bytes" run
done

# Appended garbage: the header records the exact size.
f=$tmp/long.dpk
cp "$tmp/good.dpk" "$f"
printf 'garbage' >>"$f"
refused "7 bytes appended" info

# One flipped byte: magic, version, header fields, meta tables (they start
# at 4096), inside the first layer (word embeddings, 256000 bytes from the
# weight region's start, which is below 40 kB), and the last byte.
for off in 0 8 20 60 130 4100 6000 100000 $((size - 1)); do
	f=$tmp/flip-$off.dpk
	cp "$tmp/good.dpk" "$f"
	flip "$f" "$off"
	cmp -s "$f" "$tmp/good.dpk" && fail "flip at $off changed nothing"
	refused "byte $off flipped" run
done

# Not a package at all.
f=$tmp/text.dpk
echo "hello, I am not a model" >"$f"
refused "a text file" info

# The intact package still works (the damage above was on copies).
f=$tmp/good.dpk
run run "$f" --random
expect_rc 0 "the intact package runs"

finish
