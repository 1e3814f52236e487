#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt zoo --list, zoo NAME -o DIR|FILE.dpk, and info on what it wrote.
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

run zoo --list
expect_rc 0 "zoo --list"
for m in resnet50 resnet101 bert-base bert-large roberta-base roberta-large \
	gpt2 gpt2-medium resnet-tiny bert-tiny roberta-tiny gpt2-tiny; do
	expect_out "^$m " "zoo --list shows $m"
done
# Hugging Face BertModel (bert-base-uncased, with pooler) has 109482240.
expect_out "^bert-base +109482240 " "zoo --list: bert-base parameter count"

# Repository layout: DIR/NAME/1/model.dpk
run zoo bert-tiny -o "$tmp/models"
expect_rc 0 "zoo bert-tiny -o DIR"
pkg=$tmp/models/bert-tiny/1/model.dpk
[ -s "$pkg" ] || fail "zoo bert-tiny -o DIR did not write $pkg"

run info "$tmp/models/bert-tiny"
expect_rc 0 "info DIR/NAME"
expect_out "bert-tiny" "info names the model"
expect_out "input_ids" "info shows the inputs"
expect_out "last_hidden_state" "info shows the outputs"
for l in embeddings.word_embeddings encoder.layer.0.attention \
	encoder.layer.1.output.LayerNorm pooler.dense; do
	expect_out "$l" "info lists layer $l"
done
cp "$tmp/out" "$tmp/info-dir"

run info "$pkg"
expect_rc 0 "info FILE.dpk"
cmp -s "$tmp/out" "$tmp/info-dir" || fail "info FILE and info DIR/NAME differ"

# A single file, and determinism: same seed = same bytes, other seed differs.
run zoo bert-tiny -o "$tmp/a.dpk" --seed 5
expect_rc 0 "zoo -o FILE.dpk --seed 5"
run zoo bert-tiny -o "$tmp/b.dpk" --seed 5
expect_rc 0 "zoo -o FILE.dpk --seed 5, again"
run zoo bert-tiny -o "$tmp/c.dpk" --seed 6
expect_rc 0 "zoo -o FILE.dpk --seed 6"
(cd "$tmp" && "$DPRT" zoo bert-tiny -o here.dpk --seed 5 >/dev/null 2>&1)
rc=$?
expect_rc 0 "zoo -o FILE.dpk with no directory in the path"
cmp -s "$tmp/a.dpk" "$tmp/here.dpk" || fail "zoo -o here.dpk: not the same package"
cmp -s "$tmp/a.dpk" "$tmp/b.dpk" || fail "same seed gave different packages"
! cmp -s "$tmp/a.dpk" "$tmp/c.dpk" || fail "seeds 5 and 6 gave the same package"

for dt in fp16 bf16; do
	run zoo bert-tiny -o "$tmp/$dt.dpk" --dtype $dt
	expect_rc 0 "zoo --dtype $dt"
	run info "$tmp/$dt.dpk"
	expect_rc 0 "info of a $dt package"
	expect_out "$(echo $dt | tr '[:lower:]' '[:upper:]')" "info shows the $dt weights"
done

run zoo bert-tiny -o "$tmp/x.dpk" --dtype fp8
expect_rc 2 "zoo --dtype fp8 is a usage error"
expect_err "dtype" "bad dtype: message says which option"

for m in resnet-tiny roberta-tiny gpt2-tiny; do
	run zoo $m -o "$tmp/models"
	expect_rc 0 "zoo $m"
	run info "$tmp/models/$m"
	expect_rc 0 "info $m"
done

finish
