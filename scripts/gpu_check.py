#!/usr/bin/env python3
"""Helpers for scripts/gpu_check.sh : inputs, HF parity, the final table.

    gpu_check.py inputs --vocab-size V --batch B --seq-len L [--pad] --out FILE.json
    gpu_check.py parity --model DIR --input FILE.json --ours OURS.safetensors --dtype f32|bf16
                        --device cuda|cpu --tol X --json OUT.json
    gpu_check.py table --results DIR --preset P

Parity metric (as in NOTES.md): max |ours - ref| / max |ref| over non-padding positions of
last_hidden_state. The reference is HF DebertaV2Model in f32 on the same device (TF32 off); for
bf16 the HF run under bf16 autocast is printed beside it for context (HF's own bf16 error).
"""

import argparse
import glob
import json
import os
import subprocess
import sys

from presets import PRESETS


def cmd_inputs(a):
    import random

    rnd = random.Random(0)
    ids, mask = [], []
    for b in range(a.batch):
        # With --pad every other row is shorter (padding is where bf16 masking can go wrong).
        n = a.seq_len if not a.pad or b % 2 == 0 else max(3, a.seq_len - 37 * (b + 1) % a.seq_len)
        row = [1] + [rnd.randrange(4, a.vocab_size) for _ in range(n - 2)] + [2]
        ids.append(row + [0] * (a.seq_len - n))
        mask.append([1] * n + [0] * (a.seq_len - n))
    with open(a.out, "w") as f:
        json.dump({"input_ids": ids, "attention_mask": mask}, f)


def rel_err(ours, ref, mask):
    import torch

    keep = mask.bool()
    o, r = ours[keep].double(), ref[keep].double()
    if not torch.isfinite(o).all():
        return float("inf")
    return float((o - r).abs().max() / r.abs().max())


def cmd_parity(a):
    import torch
    from safetensors.torch import load_file
    from transformers import DebertaV2Model

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(a.device)
    with open(a.input) as f:
        inp = json.load(f)
    ids = torch.tensor(inp["input_ids"], device=dev)
    mask = torch.tensor(inp["attention_mask"], device=dev)
    model = DebertaV2Model.from_pretrained(a.model, torch_dtype=torch.float32).to(dev).eval()
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        hf_bf16 = None
        if a.dtype == "bf16":
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
                hf_bf16 = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    ours = load_file(a.ours)["last_hidden_state"].to(dev).float()
    assert ours.shape == ref.shape, f"shape {tuple(ours.shape)} vs HF {tuple(ref.shape)}"
    err = rel_err(ours, ref, mask)
    out = {"dtype": a.dtype, "rel_err": err, "tol": a.tol, "pass": err <= a.tol,
           "shape": list(ref.shape), "padded_rows": int((mask == 0).any(-1).sum())}
    line = f"parity {a.dtype}: ours vs HF f32 rel err {err:.2e} (tol {a.tol:g})"
    if hf_bf16 is not None:
        out["hf_bf16_autocast_vs_f32"] = rel_err(hf_bf16, ref, mask)
        out["ours_vs_hf_bf16_autocast"] = rel_err(ours, hf_bf16, mask)
        line += (f"; HF bf16 autocast vs HF f32 {out['hf_bf16_autocast_vs_f32']:.2e};"
                 f" ours vs HF autocast {out['ours_vs_hf_bf16_autocast']:.2e}")
    print(line + ("  OK" if out["pass"] else "  FAIL"))
    with open(a.json, "w") as f:
        json.dump(out, f)
    sys.exit(0 if out["pass"] else 1)


VOCAB, BUCKETS = 128100, 256


def rel_rows(seq_len):
    """Relative-table rows a length touches: 2L-1 distances, at most 2 * buckets rows."""
    return min(2 * seq_len - 1, 2 * BUCKETS)


def encoder_flops_per_token(preset, batch, seq_len, layers=None):
    """Per token per layer 24h^2 + 4Lh + 4Rh, plus per call and layer the
    relative projections 4 * 2k * h^2 (k = buckets), spread over the batch's tokens."""
    h, n, _, inter = PRESETS[preset]
    n = n if layers is None else layers
    r = rel_rows(seq_len)
    per_layer = 24 * h * h + 4 * seq_len * h + 4 * r * h
    projections = 4 * 2 * BUCKETS * h * h / (batch * seq_len)
    return n * (per_layer + projections)


def train_flops_per_token(preset, batch, seq_len):
    """One RTD step (bench --train): generator (half depth + the EMD's 2 extra layer passes, LM
    head on the ~15% picks) and discriminator (full depth, RTD head), backward = 2x forward."""
    h, n, _, _ = PRESETS[preset]
    gen = encoder_flops_per_token(preset, batch, seq_len, max(n // 2, 1) + 2)
    lm_head = 0.15 * (2 * h * h + 2 * h * VOCAB)
    disc = encoder_flops_per_token(preset, batch, seq_len) + 2 * h * h
    return 3 * (gen + lm_head + disc)


def gpu_peaks():
    """(name, bf16 dense peak, f32 peak) in TFLOP/s; H100 SXM numbers for H100 and H200."""
    try:
        name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001  (no GPU: the CPU dry run)
        return "cpu (dry run; H100 peaks used)", 989.0, 67.0
    if "H100" in name and "PCIe" in name:
        return name, 756.0, 51.0
    return name, 989.0, 67.0


def load(path):
    try:
        with open(path) as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except OSError:
        return None


def cmd_table(a):
    name, peak_bf16, peak_f32 = gpu_peaks()
    failed = False
    print(f"\n== gpu_check summary: {name}; peaks bf16 {peak_bf16:g}, f32 {peak_f32:g} TFLOP/s ==")
    for p in sorted(glob.glob(os.path.join(a.results, "parity_*.json"))) + sorted(
            glob.glob(os.path.join(a.results, "info_*.json"))):
        info = os.path.basename(p).startswith("info_")
        r = load(p)
        if r is None:
            print(f"{os.path.basename(p)}: no result")
            failed = True
            continue
        extra = ""
        if "hf_bf16_autocast_vs_f32" in r:
            extra = f" (HF bf16 autocast itself: {r['hf_bf16_autocast_vs_f32']:.2e})"
        what = os.path.basename(p)[:-5].split("_", 1)[1].replace("_", " ")
        verdict = ("PASS" if r["pass"] else "FAIL") + (" (information only, not gated)" if info else "")
        print(f"parity {what:>12}: rel err {r['rel_err']:.2e}, tol {r['tol']:g}: {verdict}{extra}")
        failed |= not r["pass"] and not info
    print()
    print("| what | shape | dtype | deberta-rs tok/s | PyTorch tok/s | ratio | target | MFU ours | MFU torch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, ours_f, torch_f, target in [
        ("inference", "ours_inf_8x512_f32", "torch_inf_8x512_f32", 1.5),
        ("inference", "ours_inf_8x512_bf16", "torch_inf_8x512_bf16", 1.5),
        ("inference", "ours_inf_32x128_f32", "torch_inf_32x128_f32", None),
        ("inference", "ours_inf_32x128_bf16", "torch_inf_32x128_bf16", None),
        ("RTD train step", "ours_train", "torch_train", 1.0),
    ]:
        o, t = load(os.path.join(a.results, ours_f + ".log")), load(os.path.join(a.results, torch_f + ".log"))
        ref = o or t
        if ref is None:
            print(f"| {label} | - | - | missing | missing | - | - | - | - |")
            continue
        b, l = ref["batch"], ref["seq_len"]
        dtype = "bf16" if ours_f.endswith("bf16") else "f32"
        flops = (train_flops_per_token if label != "inference" else encoder_flops_per_token)(a.preset, b, l)
        peak = (peak_bf16 if dtype == "bf16" else peak_f32) * 1e12

        def mfu(r):
            return f"{100 * r['tokens_per_second'] * flops / peak:.1f}%" if r else "-"

        ratio = f"{o['tokens_per_second'] / t['tokens_per_second']:.2f}x" if o and t else "-"
        tgt = f">= {target}x" if target else ""
        if label != "inference":
            tgt += ", MFU >= 30%"
        def tps(r):
            return f"{r['tokens_per_second']:.0f}" if r else "missing"

        print(f"| {label} | {a.preset} {b} x {l} | {dtype} | {tps(o)} | {tps(t)} | {ratio} | {tgt} | "
              f"{mfu(o)} | {mfu(t)} |")
    print(f"\nFLOPs/token: inference {a.preset} 8 x 512 "
          f"{encoder_flops_per_token(a.preset, 8, 512) / 1e6:.0f} M, 32 x 128 "
          f"{encoder_flops_per_token(a.preset, 32, 128) / 1e6:.0f} M; train step "
          f"{train_flops_per_token(a.preset, *train_shape(a)) / 1e6:.0f} M. MFU = tokens/s x FLOPs/token / "
          "peak of the dtype (f32 rows: the f32 non-tensor-core peak).")
    sys.exit(1 if failed else 0)


def train_shape(a):
    r = load(os.path.join(a.results, "ours_train.log")) or load(os.path.join(a.results, "torch_train.log"))
    return (r["batch"], r["seq_len"]) if r else (8, 512)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("inputs")
    s.add_argument("--vocab-size", type=int, default=VOCAB)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--seq-len", type=int, required=True)
    s.add_argument("--pad", action="store_true")
    s.add_argument("--out", required=True)
    s = sub.add_parser("parity")
    for k in ("--model", "--input", "--ours", "--json"):
        s.add_argument(k, required=True)
    s.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    s.add_argument("--device", default="cuda")
    s.add_argument("--tol", type=float, required=True)
    s = sub.add_parser("table")
    s.add_argument("--results", required=True)
    s.add_argument("--preset", default="base")
    a = p.parse_args()
    {"inputs": cmd_inputs, "parity": cmd_parity, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()
