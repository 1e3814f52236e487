#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt plan on the CPU: synthetic profiles, saved profiles, plan files kept
# with the package, the table, and refusal of a plan made for another model.
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

run zoo bert-tiny -o "$tmp/models"
expect_rc 0 "zoo bert-tiny"
run zoo gpt2-tiny -o "$tmp/models"
expect_rc 0 "zoo gpt2-tiny"

# Without a GPU backend at hand, plan needs a profile and says so.
run plan "$tmp/models/bert-tiny" --gpus 0
[ "$rc" -ne 0 ] || fail "plan without a profile on a machine without a GPU succeeded"
expect_err "profile" "the refusal names the missing profile"

run plan "$tmp/models/bert-tiny" --gpus 0,1 --synthetic-profile --save-profile "$tmp/p.dpprof" --show
expect_rc 0 "plan with a synthetic profile"
expect_out "synthetic" "synthetic plans say so"
expect_out "embeddings.word_embeddings" "the table lists the layers"
expect_out "predicted" "the table gives the predicted total"
ls "$tmp/models/bert-tiny/1/plans/"*.dpp >/dev/null 2>&1 || fail "no plan file next to the package"
# an estimate is not stored as the package's profile (the server plans from those)
! ls "$tmp/models/bert-tiny/1/plans/"*.dpprof >/dev/null 2>&1 || fail "a synthetic profile was stored"

# A saved profile plans the same model again, in every mode.
for mode in dprt deepplan-v1 deepplan pipeline pt pt+dha demand; do
	run plan "$tmp/models/bert-tiny" --gpus 0,1 --profile "$tmp/p.dpprof" --mode "$mode"
	expect_rc 0 "plan --mode $mode from a saved profile"
done

# A profile of bert-tiny does not fit gpt2-tiny's package.
run plan "$tmp/models/gpt2-tiny" --gpus 0,1 --profile "$tmp/p.dpprof"
[ "$rc" -ne 0 ] || fail "a profile of another package was accepted"

# A corrupt profile is refused with its name.
cp "$tmp/p.dpprof" "$tmp/bad.dpprof"
printf 'XXXX' | dd of="$tmp/bad.dpprof" bs=1 seek=100 conv=notrunc 2>/dev/null
run plan "$tmp/models/bert-tiny" --gpus 0,1 --profile "$tmp/bad.dpprof"
[ "$rc" -ne 0 ] || fail "a corrupt profile was accepted"
expect_err "bad.dpprof" "the refusal names the file"

run plan "$tmp/models/bert-tiny" --mode nonsense --synthetic-profile
[ "$rc" -eq 2 ] || fail "an unknown --mode is not a usage error"

finish
