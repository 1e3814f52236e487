#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt run --input / --output with safetensors files (made with python3).
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

command -v python3 >/dev/null 2>&1 || {
	echo "FAIL: this test needs python3 (./configure installs it)"
	exit 1
}

# st FILE NAME DTYPE SHAPE VALUES: write a one-tensor safetensors file.
# DTYPE is I64 or F32; SHAPE and VALUES are Python lists.
st()
{
	python3 - "$@" <<'PY'
import json, struct, sys
path, name, dt, shape, values = sys.argv[1:]
shape, values = json.loads(shape), json.loads(values)
raw = struct.pack("<%d%s" % (len(values), {"I64": "q", "F32": "f"}[dt]), *values)
hdr = json.dumps({name: {"dtype": dt, "shape": shape, "data_offsets": [0, len(raw)]}})
hdr = hdr.encode() + b" " * (-len(hdr) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr + raw)
PY
}

# names FILE: the tensor names and shapes of a safetensors file, one a line.
names()
{
	python3 - "$1" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
for k in sorted(hdr):
    if k != "__metadata__":
        print(k, hdr[k]["dtype"], hdr[k]["shape"])
PY
}

run zoo bert-tiny -o "$tmp/models"
expect_rc 0 "zoo bert-tiny"
m=$tmp/models/bert-tiny

st "$tmp/ids.safetensors" input_ids I64 "[1,8]" "[101,7,8,9,10,11,12,102]"
run run "$m" --input "$tmp/ids.safetensors" --output "$tmp/o.safetensors"
expect_rc 0 "run --input (optional inputs omitted) --output"
expect_out "last_hidden_state +FP32 +\[1,8,64\]" "--input sets the shape"
names "$tmp/o.safetensors" >"$tmp/names" || fail "--output is not a safetensors file"
grep -qx "last_hidden_state F32 \[1, 8, 64\]" "$tmp/names" ||
	fail "--output: last_hidden_state F32 [1,8,64] missing: $(cat "$tmp/names")"
grep -qx "pooler_output F32 \[1, 64\]" "$tmp/names" ||
	fail "--output: pooler_output F32 [1,64] missing: $(cat "$tmp/names")"

# The same input twice gives the same bytes.
run run "$m" --input "$tmp/ids.safetensors" --output "$tmp/o2.safetensors"
expect_rc 0 "run --input, again"
cmp -s "$tmp/o.safetensors" "$tmp/o2.safetensors" ||
	fail "the same input gave different outputs"

# A token id outside the vocabulary (1000) fails and names the input.
st "$tmp/big.safetensors" input_ids I64 "[1,4]" "[1,2,3,5000]"
run run "$m" --input "$tmp/big.safetensors"
[ "$rc" -ne 0 ] || fail "token id 5000 of a 1000-word vocabulary was accepted"
expect_err "input_ids" "bad token id: the input is named"

# The wrong dtype fails and names the input.
st "$tmp/f32.safetensors" input_ids F32 "[1,4]" "[1,2,3,4]"
run run "$m" --input "$tmp/f32.safetensors"
[ "$rc" -ne 0 ] || fail "FP32 input_ids were accepted"
expect_err "input_ids" "wrong dtype: the input is named"

# A file that is not safetensors is refused and named.
echo "not a tensor file" >"$tmp/junk.safetensors"
run run "$m" --input "$tmp/junk.safetensors"
[ "$rc" -ne 0 ] || fail "a junk --input file was accepted"
expect_err "junk.safetensors" "junk input: the file is named"

finish
