#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt run on the tiny zoo models: output shapes, determinism, --output.
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

for m in bert-tiny roberta-tiny gpt2-tiny resnet-tiny; do
	run zoo $m -o "$tmp/models"
	expect_rc 0 "zoo $m"
done

# The tiny transformers: hidden 64, paper shape seq 64.
run run "$tmp/models/bert-tiny" --random
expect_rc 0 "run bert-tiny --random"
expect_out "last_hidden_state +FP32 +\[1,64,64\]" "bert-tiny output shape"
expect_out "pooler_output +FP32 +\[1,64\]" "bert-tiny pooler shape"
expect_not_out "nan|inf" "bert-tiny outputs are finite"

run run "$tmp/models/bert-tiny" --random --batch 2 --seq 8
expect_rc 0 "run --batch 2 --seq 8"
expect_out "last_hidden_state +FP32 +\[2,8,64\]" "--batch/--seq set the shape"

run run "$tmp/models/bert-tiny" --random --seq 65
[ "$rc" -ne 0 ] || fail "--seq above the model's maximum was accepted"

# RoBERTa's positions start after the padding id: 64 positions, 62 tokens.
run run "$tmp/models/roberta-tiny" --random
expect_rc 0 "run roberta-tiny"
expect_out "last_hidden_state +FP32 +\[1,62,64\]" "roberta-tiny output shape"

run run "$tmp/models/gpt2-tiny" --random
expect_rc 0 "run gpt2-tiny"
expect_out "\[1,64,64\]" "gpt2-tiny output shape"

run run "$tmp/models/resnet-tiny" --random
expect_rc 0 "run resnet-tiny"
expect_out "\[1,10\]" "resnet-tiny gives 10 logits"

# Same package, same random inputs: the same summary (less the timing line).
run run "$tmp/models/bert-tiny" --random
grep -v ' ms' "$tmp/out" >"$tmp/sum1"
run run "$tmp/models/bert-tiny" --random
grep -v ' ms' "$tmp/out" >"$tmp/sum2"
[ -s "$tmp/sum1" ] || fail "run printed no summary"
cmp -s "$tmp/sum1" "$tmp/sum2" || fail "two identical runs printed different outputs"

# Outputs to a safetensors file: 8-byte header length, then JSON naming them.
run run "$tmp/models/bert-tiny" --random --output "$tmp/out.safetensors"
expect_rc 0 "run --output"
if [ -s "$tmp/out.safetensors" ]; then
	head -c 400 "$tmp/out.safetensors" | tr -c '[:print:]' '.' >"$tmp/hdr"
	grep -q '"last_hidden_state"' "$tmp/hdr" ||
		fail "--output file lacks last_hidden_state"
	grep -q '"pooler_output"' "$tmp/hdr" || fail "--output file lacks pooler_output"
else
	fail "run --output wrote no file"
fi

finish
