#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check that dprt's outputs match PyTorch for the paper's models.

For each model: build it in PyTorch from its config with seeded random
weights (no downloads), fp32, eval mode; save the state dict and the inputs
as safetensors; run PyTorch; then build a dprt package from the same weights
(`dprt zoo NAME --weights W -o P`), run it (`dprt run P --input I --output O`)
and compare every output:

    max|dprt - torch| / max|torch| <= --tol (1e-4 by default)

Prints one row per model and output and a verdict line; exits 1 if any model
fails, 2 on a usage or environment error.

    python3 bench/torch_compare.py                      # the 8 paper models
    python3 bench/torch_compare.py --tiny               # the zoo's tiny models
    python3 bench/torch_compare.py --models bert-base,gpt2 --keep
    python3 bench/torch_compare.py --out bench/results/torch_compare-cpu.md

Needs torch, torchvision, transformers, safetensors, numpy
(bench/requirements-torch.txt).
"""

import argparse
import datetime
import gc
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn
from safetensors.torch import load_file, save_file

PAPER_MODELS = ["resnet50", "resnet101", "bert-base", "bert-large",
                "roberta-base", "roberta-large", "gpt2", "gpt2-medium"]
TINY_MODELS = ["resnet-tiny", "bert-tiny", "roberta-tiny", "gpt2-tiny"]

PAD_TAIL = 32     # padded tokens at the end of BERT/RoBERTa inputs
TINY_SEQ = 16
TINY_PAD_TAIL = 4

# Hugging Face configs of the published checkpoints (bert-base-uncased,
# bert-large-uncased, roberta-base, roberta-large, gpt2, gpt2-medium).
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                 num_attention_heads=12, intermediate_size=3072,
                 max_position_embeddings=512, type_vocab_size=2,
                 layer_norm_eps=1e-12, pad_token_id=0, hidden_act="gelu")
BERT_LARGE = dict(BERT_BASE, hidden_size=1024, num_hidden_layers=24,
                  num_attention_heads=16, intermediate_size=4096)
ROBERTA_BASE = dict(BERT_BASE, vocab_size=50265, max_position_embeddings=514,
                    type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2)
ROBERTA_LARGE = dict(ROBERTA_BASE, hidden_size=1024, num_hidden_layers=24,
                     num_attention_heads=16, intermediate_size=4096)
GPT2_SMALL = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12,
                  n_head=12, layer_norm_epsilon=1e-5,
                  activation_function="gelu_new")
GPT2_MEDIUM = dict(GPT2_SMALL, n_embd=1024, n_layer=24, n_head=16)

TINY_ENC = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=128,
                max_position_embeddings=64, hidden_act="gelu")
BERT_TINY = dict(TINY_ENC, type_vocab_size=2, layer_norm_eps=1e-12,
                 pad_token_id=0)
ROBERTA_TINY = dict(TINY_ENC, type_vocab_size=1, layer_norm_eps=1e-5,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2)
GPT2_TINY = dict(GPT2_SMALL, vocab_size=1000, n_positions=64, n_embd=64,
                 n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)

# name: (family, config, exact parameter count or 0, sequence length, pad tail)
SPECS = {
    "resnet50": ("resnet", 50, 25557032, 0, 0),
    "resnet101": ("resnet", 101, 44549160, 0, 0),
    "bert-base": ("bert", BERT_BASE, 109482240, 384, PAD_TAIL),
    "bert-large": ("bert", BERT_LARGE, 335141888, 384, PAD_TAIL),
    "roberta-base": ("roberta", ROBERTA_BASE, 124645632, 384, PAD_TAIL),
    "roberta-large": ("roberta", ROBERTA_LARGE, 355359744, 384, PAD_TAIL),
    "gpt2": ("gpt2", GPT2_SMALL, 124439808, 1024, 0),
    "gpt2-medium": ("gpt2", GPT2_MEDIUM, 354823168, 1024, 0),
    "resnet-tiny": ("resnet", "tiny", 0, 0, 0),
    "bert-tiny": ("bert", BERT_TINY, 0, TINY_SEQ, TINY_PAD_TAIL),
    "roberta-tiny": ("roberta", ROBERTA_TINY, 0, TINY_SEQ, TINY_PAD_TAIL),
    "gpt2-tiny": ("gpt2", GPT2_TINY, 0, TINY_SEQ, 0),
}

OUTPUTS = {
    "resnet": ["logits"],
    "bert": ["last_hidden_state", "pooler_output"],
    "roberta": ["last_hidden_state", "pooler_output"],
    "gpt2": ["last_hidden_state"],
}


class TinyResNet(nn.Module):
    """torchvision's ResNet with Bottleneck blocks, scaled down.

    Same module names and structure as torchvision.models.ResNet (conv1, bn1,
    maxpool, layer1..4 of Bottleneck with downsample.0/.1, fc), but the stem
    has `base` channels instead of 64 and the stages have base, 2*base,
    4*base, 8*base planes (expansion 4). The zoo's resnet-tiny is this with
    layers [1,1,1,1], base 8, 10 classes, input 3x32x32.
    """

    def __init__(self, layers=(1, 1, 1, 1), base=8, num_classes=10):
        super().__init__()
        from torchvision.models.resnet import Bottleneck
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(Bottleneck, base, layers[0])
        self.layer2 = self._make_layer(Bottleneck, base * 2, layers[1], 2)
        self.layer3 = self._make_layer(Bottleneck, base * 4, layers[2], 2)
        self.layer4 = self._make_layer(Bottleneck, base * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(base * 8 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out",
                                        nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1,
                          stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        mods = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            mods.append(block(self.inplanes, planes))
        return nn.Sequential(*mods)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def eager(config):
    """Ask transformers for its plain PyTorch attention (no SDPA/flash)."""
    config._attn_implementation = "eager"
    return config


def randomize_batchnorm(model, gen):
    """Give every BatchNorm non-trivial statistics and affine parameters,
    so a wrong batch-norm folding shows in the outputs. The last BN of each
    residual branch (bn3) gets gamma in [0.1, 0.5), in the spirit of
    torchvision's zero_init_residual: with gamma ~ 1 there the residual
    stream grows block by block (ResNet-101 logits reach 1e7, and errors in
    the small logits would hide under max|torch|)."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if not isinstance(m, nn.BatchNorm2d):
                continue
            c = m.num_features
            lo, span = (0.1, 0.4) if name.endswith("bn3") else (0.5, 1.0)
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.copy_(torch.rand(c, generator=gen) * span + lo)
            m.bias.copy_(torch.randn(c, generator=gen) * 0.1)


def build_model(name, gen):
    family, cfg = SPECS[name][0], SPECS[name][1]
    if family == "resnet":
        import torchvision
        if cfg == "tiny":
            model = TinyResNet()
        else:
            model = getattr(torchvision.models, "resnet%d" % cfg)(weights=None)
        randomize_batchnorm(model, gen)
        return model
    import transformers as tf
    if family == "bert":
        return tf.BertModel(eager(tf.BertConfig(**cfg)))
    if family == "roberta":
        return tf.RobertaModel(eager(tf.RobertaConfig(**cfg)))
    return tf.GPT2Model(eager(tf.GPT2Config(**cfg)))


def export_state(model):
    """The state dict as safetensors wants it: floating-point tensors only
    (num_batches_tracked, position-id and causal-mask buffers are not
    weights), each contiguous and owning its storage. A tensor that is the
    exact same view as an earlier one (a tied weight) is dropped; the first
    name in module order is kept. Returns (tensors, dropped names)."""
    out, seen, dropped = {}, {}, []
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            dropped.append(k)
            continue
        key = (v.untyped_storage().data_ptr(), v.storage_offset(),
               tuple(v.shape), tuple(v.stride()))
        if key in seen:
            dropped.append("%s (same as %s)" % (k, seen[key]))
            continue
        seen[key] = k
        out[k] = v.detach().to("cpu", torch.float32).contiguous().clone()
    return out, dropped


def make_inputs(name, model, gen):
    family, _, _, seq, tail = SPECS[name]
    if family == "resnet":
        hw = 32 if name == "resnet-tiny" else 224
        return {"input": torch.randn(1, 3, hw, hw, generator=gen)}
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, seq), generator=gen, dtype=torch.int64)
    if family == "gpt2":
        return {"input_ids": ids}
    pad = model.config.pad_token_id
    mask = torch.ones(1, seq, dtype=torch.int64)
    tt = torch.zeros(1, seq, dtype=torch.int64)
    if family == "roberta":
        # no pad id inside the sentence: shift [pad, vocab-1) up by one
        ids = torch.randint(0, vocab - 1, (1, seq), generator=gen,
                            dtype=torch.int64)
        ids[ids >= pad] += 1
    else:
        tt[:, seq // 2:] = 1  # exercise the second token-type row
    if tail:
        ids[:, seq - tail:] = pad
        mask[:, seq - tail:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}


def run_torch(family, model, inputs, device, repeat):
    """Run the model; returns (outputs by dprt's names, best seconds)."""
    x = {k: v.to(device) for k, v in inputs.items()}
    best = None
    for _ in range(max(repeat, 1)):
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            r = model(x["input"]) if family == "resnet" else model(**x)
        if device != "cpu":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    if family == "resnet":
        outs = {"logits": r}
    else:
        outs = {n: getattr(r, n) for n in OUTPUTS[family]}
    return {k: v.detach().to("cpu", torch.float32).contiguous()
            for k, v in outs.items()}, best


def run_cmd(argv, log):
    """Run a dprt command; returns seconds. Raises RuntimeError with its
    stderr on failure."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    dt = time.perf_counter() - t0
    with open(log, "a") as f:
        f.write("$ %s\n%s%s[exit %d, %.3f s]\n" % (
            " ".join(shlex.quote(a) for a in argv), p.stdout, p.stderr,
            p.returncode, dt))
    if p.returncode != 0:
        msg = (p.stderr.strip() or p.stdout.strip() or "no output")
        raise RuntimeError("%s exited %d: %s" % (
            os.path.basename(argv[0]) + " " + argv[1], p.returncode,
            msg.splitlines()[-1]))
    return dt


def compare(ref, got):
    """Errors of dprt's tensor against PyTorch's, in float64."""
    t = ref.double()
    d = got.double()
    diff = (d - t).abs()
    scale = t.abs().max().item()
    i = int(diff.argmax().item())
    where = tuple(int(j) for j in torch.unravel_index(torch.tensor(i),
                                                      diff.shape))
    return dict(rel=diff.max().item() / scale if scale > 0 else
                diff.max().item(), mae=diff.mean().item(), scale=scale,
                where=where, finite=bool(torch.isfinite(d).all()))


def check_model(name, args, rows):
    family, _, params, _, _ = SPECS[name]
    gen = torch.Generator().manual_seed(args.seed + list(SPECS).index(name))
    torch.manual_seed(args.seed)
    wd = args.workdir
    wpath = os.path.join(wd, name + ".weights.safetensors")
    ipath = os.path.join(wd, name + ".input.safetensors")
    rpath = os.path.join(wd, name + ".torch.safetensors")
    ppath = os.path.join(wd, name + ".dpk")
    opath = os.path.join(wd, name + ".dprt.safetensors")
    log = os.path.join(wd, name + ".log")

    model = build_model(name, gen).eval().float()
    n = sum(p.numel() for p in model.parameters())
    if params and n != params:
        raise SystemExit("%s: built %d parameters, the paper's model has %d"
                         % (name, n, params))
    state, dropped = export_state(model)
    save_file(state, wpath)
    del state
    inputs = make_inputs(name, model, gen)
    save_file(inputs, ipath)
    if args.verbose:
        print("# %s: %d parameters; not saved: %d tensors%s" % (
            name, n, len(dropped), (" (%s%s)" % (", ".join(dropped[:3]),
                                                  ", ..." if len(dropped) > 3
                                                  else "")) if dropped else ""),
              file=sys.stderr, flush=True)
    model.to(args.torch_device)
    ref, t_torch = run_torch(family, model, inputs, args.torch_device,
                             args.repeat)
    save_file(ref, rpath)
    del model
    gc.collect()

    base = dict(model=name, t_torch=t_torch, t_zoo=None, t_run=None)
    if args.no_dprt:
        for o in OUTPUTS[family]:
            rows.append(dict(base, output=o, shape=list(ref[o].shape),
                             status="torch only", scale=ref[o].abs().max()
                             .item()))
        return True
    try:
        # options before the positional: dprt's getopt stops at the first
        # non-option argument
        base["t_zoo"] = run_cmd([args.dprt, "zoo", "--weights", wpath,
                                 "-o", ppath, name], log)
        threads = ["--threads", str(args.threads)] if args.threads else []
        base["t_run"] = run_cmd([args.dprt, "run", "--input", ipath,
                                 "--output", opath] + threads +
                                args.dprt_args + [ppath], log)
        got = load_file(opath)
    except (RuntimeError, OSError) as e:
        for o in OUTPUTS[family]:
            rows.append(dict(base, output=o, shape=list(ref[o].shape),
                             status="FAIL", note=str(e)))
        return False
    ok = True
    for o in OUTPUTS[family]:
        row = dict(base, output=o, shape=list(ref[o].shape))
        if o not in got:
            row.update(status="FAIL", note="dprt wrote no output %r (it "
                       "wrote %s)" % (o, ", ".join(sorted(got)) or "none"))
        elif tuple(got[o].shape) != tuple(ref[o].shape):
            row.update(status="FAIL", note="shape %s, PyTorch %s" % (
                list(got[o].shape), list(ref[o].shape)))
        else:
            c = compare(ref[o], got[o])
            good = c["finite"] and c["rel"] <= args.tol
            row.update(c, status="ok" if good else "FAIL")
            if not c["finite"]:
                row["note"] = "non-finite values in dprt's output"
        ok = ok and row["status"] == "ok"
        rows.append(row)
    return ok


def fmt_s(t):
    return "-" if t is None else "%.3f" % t


def table(rows):
    head = ["model", "output", "shape", "max rel err", "mean abs err",
            "max|torch|", "worst at", "torch s", "dprt zoo s", "dprt run s",
            "result"]
    out = []
    for r in rows:
        rel = r.get("rel")
        out.append([r["model"], r["output"],
                    "x".join(str(d) for d in r["shape"]),
                    "-" if rel is None else "%.2e" % rel,
                    "-" if r.get("mae") is None else "%.2e" % r["mae"],
                    "-" if r.get("scale") is None else "%.3g" % r["scale"],
                    "-" if r.get("where") is None else
                    ",".join(str(w) for w in r["where"]),
                    fmt_s(r["t_torch"]), fmt_s(r["t_zoo"]),
                    fmt_s(r["t_run"]), r["status"]])
    return head, out


def print_table(head, body, rows):
    w = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(n) for c, n in zip(cells, w))
    print(line(head))
    for cells, r in zip(body, rows):
        print(line(cells))
        if r.get("note"):
            print("    " + r["note"])


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def dprt_revision(path):
    """`dprt --version` and the git revision of the tree it sits in."""
    def ask(argv):
        try:
            p = subprocess.run(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return "unknown"
        out = p.stdout.strip().splitlines()
        return out[0] if p.returncode == 0 and out else "unknown"
    d = os.path.dirname(os.path.abspath(path))
    return "%s, git %s" % (ask([path, "--version"]),
                           ask(["git", "-C", d, "rev-parse", "--short",
                                "HEAD"]))


def write_markdown(path, args, head, body, rows, verdict):
    import torchvision
    import transformers
    import safetensors
    dev = args.torch_device
    if dev != "cpu":
        dev += " (%s)" % torch.cuda.get_device_name(0)
    with open(path, "w") as f:
        f.write("# dprt vs PyTorch: output check\n\n")
        f.write("- date: %s\n" % datetime.datetime.now().astimezone()
                .isoformat(timespec="seconds"))
        f.write("- host: %s\n" % socket.gethostname())
        f.write("- CPU: %s (%d logical CPUs)\n" % (cpu_model(),
                                                   os.cpu_count() or 0))
        f.write("- torch %s (device %s, %d threads), torchvision %s, "
                "transformers %s, safetensors %s, Python %s\n" % (
                    torch.__version__, dev, torch.get_num_threads(),
                    torchvision.__version__, transformers.__version__,
                    safetensors.__version__, platform.python_version()))
        if not args.no_dprt:
            f.write("- dprt: %s (%s)\n" % (args.dprt,
                                          dprt_revision(args.dprt)))
        f.write("- command: `%s`\n" % " ".join(
            shlex.quote(a) for a in [sys.executable] + sys.argv))
        f.write("- criterion: max|dprt - torch| / max|torch| <= %g "
                "(fp32, random weights, seed %d)\n\n" % (args.tol, args.seed))
        md = lambda cells: "| " + " | ".join(
            c.replace("|", "\\|") for c in cells) + " |\n"
        f.write(md(head))
        f.write("|" + "---|" * len(head) + "\n")
        for cells in body:
            f.write(md(cells))
        notes = [r for r in rows if r.get("note")]
        if notes:
            f.write("\n")
            for r in notes:
                f.write("- %s %s: %s\n" % (r["model"], r["output"],
                                           r["note"]))
        f.write("\n%s\n" % verdict)


def parse_args():
    ap = argparse.ArgumentParser(
        description="Check dprt's outputs against PyTorch (fp32).",
        epilog="Files per model in the work directory: NAME.weights/input/"
        "torch/dprt.safetensors, NAME.dpk, NAME.log (dprt's output).")
    ap.add_argument("--models", help="comma-separated subset (default: the "
                    "8 paper models, or the 4 tiny ones with --tiny)")
    ap.add_argument("--tiny", action="store_true",
                    help="the zoo's tiny models (%s), seq %d" %
                    (", ".join(TINY_MODELS), TINY_SEQ))
    ap.add_argument("--dprt", default="./dprt", help="dprt binary "
                    "(default ./dprt)")
    ap.add_argument("--dprt-args", default="",
                    help="extra arguments for `dprt run`, e.g. '--gpus cpu'")
    ap.add_argument("--workdir", help="keep files here (default: a "
                    "temporary directory, removed unless --keep)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary work directory")
    ap.add_argument("--threads", type=int, help="CPU threads for torch "
                    "and for `dprt run` (default: theirs)")
    ap.add_argument("--torch-device", default="cpu",
                    help="cpu (default) or cuda; TF32 is turned off")
    ap.add_argument("--repeat", type=int, default=1, help="time PyTorch "
                    "this many times and report the best (default 1)")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="max relative error (default 1e-4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-dprt", action="store_true", help="only write "
                    "weights, inputs and PyTorch's outputs")
    ap.add_argument("--out", help="also write the table as markdown here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    known = TINY_MODELS if args.tiny else PAPER_MODELS
    args.models = args.models.split(",") if args.models else list(known)
    for m in args.models:
        if m not in SPECS:
            ap.error("unknown model %r (known: %s)" % (
                m, ", ".join(SPECS)))
    args.dprt_args = shlex.split(args.dprt_args)
    if not args.no_dprt:
        args.dprt = os.path.abspath(args.dprt)
        if not os.access(args.dprt, os.X_OK):
            ap.error("dprt binary %s is missing or not executable (--dprt "
                     "PATH, or --no-dprt)" % args.dprt)
    if args.torch_device != "cpu":
        if not torch.cuda.is_available():
            ap.error("--torch-device %s: CUDA is not available" %
                     args.torch_device)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main():
    args = parse_args()
    tmp = None
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    else:
        tmp = args.workdir = tempfile.mkdtemp(prefix="dprt-torch-")
    rows, failed = [], []
    try:
        for name in args.models:
            print("# %s ..." % name, file=sys.stderr, flush=True)
            if not check_model(name, args, rows):
                failed.append(name)
    finally:
        if tmp and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp:
            print("# files kept in %s" % tmp, file=sys.stderr)
    head, body = table(rows)
    print_table(head, body, rows)
    if args.no_dprt:
        verdict = "VERDICT: PyTorch only (%d models), nothing compared" % \
            len(args.models)
    elif failed:
        verdict = "VERDICT: FAIL (%d of %d models: %s)" % (
            len(failed), len(args.models), ", ".join(failed))
    else:
        verdict = "VERDICT: PASS (%d models, max rel err <= %g)" % (
            len(args.models), args.tol)
    print(verdict)
    if args.out:
        write_markdown(args.out, args, head, body, rows, verdict)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
