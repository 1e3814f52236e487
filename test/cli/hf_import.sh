#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt import of Hugging Face checkpoint directories: tiny random models of
# every supported family and head, written by test/model/hf_ref.py, imported,
# run with dprt run and compared with hf_ref.py's numpy forward pass
# (max |err| / max |ref| <= 1e-5 in FP32); sharded checkpoints, versions,
# FP16, and refusals that leave nothing in the repository.
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

ref="$(cd "$(dirname "$0")/../model" && pwd)/hf_ref.py"
if ! python3 -c 'import numpy' 2>/dev/null; then
	echo "FAIL: numpy is missing (./configure installs python3-numpy)"
	exit 1
fi

# make FAMILY HEAD DIR [options]
make_ckpt()
{
	python3 "$ref" make "$@" >"$tmp/make.log" 2>&1 || {
		fails=$((fails + 1))
		echo "FAIL: hf_ref.py make $*"
		cat "$tmp/make.log"
	}
}

# import DIR as REPO entry NAME, run it on DIR's inputs, compare.
check_model()
{
	d=$1
	name=$2
	run import "$d" -o "$tmp/repo/$name"
	expect_rc 0 "import $name"
	run run "$tmp/repo/$name" --input "$d/inputs.safetensors" --output "$d/out.safetensors"
	expect_rc 0 "run $name"
	if python3 "$ref" check "$d" "$d/out.safetensors" >"$tmp/check.log" 2>&1; then
		sed 's/^/  /' "$tmp/check.log"
	else
		fails=$((fails + 1))
		echo "FAIL: $name differs from the reference"
		cat "$tmp/check.log"
	fi
}

for fh in "bert base" "bert seq" "bert tok" "roberta base" "roberta seq" \
	"roberta tok" "distilbert base" "distilbert seq" "distilbert tok" \
	"gpt2 base" "gpt2 lm" "gpt2 tok" "vit base" "vit img"; do
	# shellcheck disable=SC2086 # two words on purpose
	set -- $fh
	make_ckpt "$1" "$2" "$tmp/hf/$1-$2" --seed 3
	check_model "$tmp/hf/$1-$2" "$1-$2"
done

# The head's outputs are the model's outputs.
run info "$tmp/repo/bert-seq"
expect_out "logits" "info: a sequence classifier's output is logits"
expect_not_out "last_hidden_state" "info: no hidden states for a head model"
run info "$tmp/repo/bert-base" --weights
expect_rc 0 "info --weights"
expect_out "encoder.layer.0.attention.self.\{query,key,value\}.weight" \
	"info --weights shows the checkpoint names of the fused QKV layer"
run info "$tmp/repo/bert-seq" --weights
expect_out "bert.encoder.layer.1.output.dense.weight" "info --weights: prefixed names"
expect_out "classifier.weight" "info --weights: the head's names"

# Other activations: relu (DistilBERT's "activation"), gelu_new (BERT).
edit_cfg()
{
	python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); exec(sys.argv[2]); json.dump(c, open(p, 'w'))" "$1/config.json" "$2"
}
cp -r "$tmp/hf/distilbert-seq" "$tmp/hf/distil-relu"
edit_cfg "$tmp/hf/distil-relu" "c['activation']='relu'"
check_model "$tmp/hf/distil-relu" distil-relu
cp -r "$tmp/hf/bert-tok" "$tmp/hf/bert-gelu-new"
edit_cfg "$tmp/hf/bert-gelu-new" "c['hidden_act']='gelu_new'"
check_model "$tmp/hf/bert-gelu-new" bert-gelu-new

# A masked-LM checkpoint (bert. prefix, a cls.* head) gives its encoder.
make_ckpt bert seq "$tmp/hf/mlm" --seed 5
edit_cfg "$tmp/hf/mlm" "c['architectures']=['BertForMaskedLM']; del c['id2label']"
run import "$tmp/hf/mlm" -o "$tmp/repo/mlm"
expect_rc 0 "import BertForMaskedLM"
expect_err "pre-training head is not imported" "BertForMaskedLM: says what it left out"
run info "$tmp/repo/mlm"
expect_out "last_hidden_state" "BertForMaskedLM: the encoder's hidden states"
expect_out "pooler_output" "BertForMaskedLM: its checkpoint's pooler"
expect_not_out "logits" "BertForMaskedLM: no head"

# Sharded checkpoint: weight_map over three files.
make_ckpt roberta seq "$tmp/hf/sharded" --shards 3 --seed 4
[ -f "$tmp/hf/sharded/model.safetensors.index.json" ] || fail "no index written"
[ ! -f "$tmp/hf/sharded/model.safetensors" ] || fail "sharded test has a single file"
check_model "$tmp/hf/sharded" sharded

# The next import is version 2; --name names the model.
run import "$tmp/hf/gpt2-lm" -o "$tmp/repo/gpt2-lm" --name mygpt --dtype fp16
expect_rc 0 "import again, fp16"
[ -s "$tmp/repo/gpt2-lm/2/model.dpk" ] || fail "second import is not version 2"
run info "$tmp/repo/gpt2-lm/2/model.dpk"
expect_out "model: mygpt \(gpt2\)" "--name names the model"
expect_out "FP16" "--dtype fp16 gives FP16 weights"
run run "$tmp/repo/gpt2-lm" --input "$tmp/hf/gpt2-lm/inputs.safetensors" \
	--output "$tmp/hf/gpt2-lm/out16.safetensors"
expect_rc 0 "run the FP16 import"
python3 "$ref" check "$tmp/hf/gpt2-lm" "$tmp/hf/gpt2-lm/out16.safetensors" --tol 2e-2 \
	>"$tmp/check.log" 2>&1 || fail "FP16 import is far from the reference: $(cat "$tmp/check.log")"

# Refusals: one message naming the thing and the file; nothing left behind.
# refuse WHAT DIR PATTERN
refuse()
{
	run import "$2" -o "$tmp/bad/m"
	expect_rc 1 "$1 is refused"
	expect_err "$3" "$1: message"
	[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$1: more than one line of error"
	[ ! -e "$tmp/bad/m" ] || fail "$1 left $(find "$tmp/bad/m")"
}
mkdir -p "$tmp/bad"
cp -r "$tmp/hf/bert-base" "$tmp/b1"
edit_cfg "$tmp/b1" "c['model_type']='xlnet'"
refuse "model_type xlnet" "$tmp/b1" "b1/config.json: model_type 'xlnet' is not supported"
cp -r "$tmp/hf/bert-base" "$tmp/b2"
edit_cfg "$tmp/b2" "c['hidden_act']='swish'"
refuse "hidden_act swish" "$tmp/b2" "b2/config.json: hidden_act 'swish' is not supported"
cp -r "$tmp/hf/bert-base" "$tmp/b3"
edit_cfg "$tmp/b3" "c['position_embedding_type']='relative_key'"
refuse "relative positions" "$tmp/b3" "position_embedding_type 'relative_key' is not supported"
cp -r "$tmp/hf/bert-base" "$tmp/b4"
edit_cfg "$tmp/b4" "c['architectures']=['BertForQuestionAnswering']"
refuse "BertForQuestionAnswering" "$tmp/b4" \
	"architectures 'BertForQuestionAnswering' is not supported for model_type bert"
cp -r "$tmp/hf/bert-base" "$tmp/b5"
printf '{"model_type": "bert", ' >"$tmp/b5/config.json"
refuse "truncated config.json" "$tmp/b5" "b5/config.json: line 1"
cp -r "$tmp/hf/bert-base" "$tmp/b6"
edit_cfg "$tmp/b6" "c['num_attention_heads']=5"
refuse "heads not dividing hidden" "$tmp/b6" "hidden_size 32 is not a multiple of num_attention_heads 5"
cp -r "$tmp/hf/bert-base" "$tmp/b7"
edit_cfg "$tmp/b7" "c['hidden_size']='big'"
refuse "non-integer hidden_size" "$tmp/b7" "config.json: hidden_size must be an integer"
make_ckpt bert base "$tmp/b8" --drop encoder.layer.1.attention.self.key.weight
refuse "missing tensor" "$tmp/b8" \
	"b8/model.safetensors: tensor 'encoder.layer.1.attention.self.key.weight' not found"
make_ckpt gpt2 lm "$tmp/b9" --bad-shape transformer.h.0.mlp.c_fc.weight
refuse "wrong shape" "$tmp/b9" \
	"b9/model.safetensors: tensor 'transformer.h.0.mlp.c_fc.weight' has shape \[64, 128\], expected \[32, 128\]"
make_ckpt vit img "$tmp/b10" --shards 2 --drop vit.embeddings.cls_token
refuse "missing tensor of a sharded checkpoint" "$tmp/b10" \
	"b10/model.safetensors.index.json: tensor 'vit.embeddings.cls_token' not found"
mkdir -p "$tmp/b11"
cp "$tmp/hf/bert-base/config.json" "$tmp/b11/"
refuse "no weights" "$tmp/b11" "neither model.safetensors nor model.safetensors.index.json"
touch "$tmp/m.onnx"
refuse "empty ONNX file" "$tmp/m.onnx" "ONNX import: .*m.onnx"

# ONNX files through the same command, where the build reads them and the
# onnx/onnxruntime packages make the models and their reference outputs:
# imported into a repository entry, run, compared with onnxruntime.
cases="$(cd "$(dirname "$0")/../model" && pwd)/onnx_cases.py"
if grep -q '^#define HAVE_PROTOBUF_C 1' "$(dirname "$DPRT")/build/config.h" 2>/dev/null &&
	python3 -c 'import onnx, onnxruntime' 2>/dev/null; then
	for c in bert resnet; do
		mkdir -p "$tmp/onnx-$c"
		python3 "$cases" "$c" "$tmp/onnx-$c" >"$tmp/make.log" 2>&1 ||
			{ fail "onnx_cases.py $c"; cat "$tmp/make.log"; continue; }
		run import "$tmp/onnx-$c/model.onnx" -o "$tmp/repo/onnx-$c"
		expect_rc 0 "import ONNX $c"
		run run "$tmp/repo/onnx-$c" --input "$tmp/onnx-$c/in.safetensors" \
			--output "$tmp/onnx-$c/out.safetensors"
		expect_rc 0 "run ONNX $c"
		python3 - "$tmp/onnx-$c" <<'PY' >"$tmp/check.log" 2>&1 || { fail "ONNX $c differs from onnxruntime"; cat "$tmp/check.log"; }
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]
        dt = {"F32": np.float32, "F16": np.float16, "I64": np.int64}[v["dtype"]]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dt).reshape(v["shape"]).astype(np.float64)
    return out
d = sys.argv[1]
got, ref = load(d + "/out.safetensors"), load(d + "/ref.safetensors")
for k, r in ref.items():
    err = np.abs(got[k] - r).max() / max(np.abs(r).max(), 1e-30)
    print(f"  {k}: max err / max value {err:.2e}")
    assert err <= 1e-5, k
PY
	done
	# the entry names the model; --seq sets the reference shape (BERT), and
	# is refused for a model without a sequence axis (ResNet)
	run info "$tmp/repo/onnx-bert/1/model.dpk"
	expect_out "model: onnx-bert \(" "an ONNX import is named after its entry"
	run import "$tmp/onnx-bert/model.onnx" -o "$tmp/repo/onnx-bert" --seq 8
	expect_rc 0 "import ONNX bert --seq 8"
	run info "$tmp/repo/onnx-bert/2/model.dpk"
	expect_out "paper shape 8" "--seq sets the reference shape"
	run import "$tmp/onnx-resnet/model.onnx" -o "$tmp/repo/onnx-resnet" --seq 8
	expect_rc 1 "--seq without a sequence axis"
	expect_err "no sequence axis" "--seq refusal names the reason"
	[ ! -e "$tmp/repo/onnx-resnet/2" ] || fail "a refused --seq left version 2"
else
	echo "skipped: ONNX files through dprt import (no protobuf-c build or no onnx/onnxruntime)"
fi

# An existing entry keeps only its versions after a refused import.
run import "$tmp/b8" -o "$tmp/repo/bert-base"
expect_rc 1 "refused import into an existing entry"
[ "$(ls -A "$tmp/repo/bert-base")" = "1" ] || fail "refused import left $(ls -A "$tmp/repo/bert-base")"

run import --help
expect_rc 0 "import --help"
expect_out "import PATH -o REPO/NAME" "--help shows import"
run import "$tmp/hf/bert-base"
expect_rc 2 "import without -o"
run import "$tmp/hf/bert-base" -o "$tmp/x" --dtype int8
expect_rc 2 "import --dtype int8"

finish
