#!/usr/bin/env python3
"""The CPU performance issue's three targets in one run: ours vs HF/PyTorch eager, interleaved.

    python3 scripts/bench_cpu_targets.py [--rounds 3] [--runs 5] [--threads 2] [--no-fused]
        [--only base-8 base-1 small-train] [--bin target/release/deberta] [--python .venv-ref/bin/python]

For each shape (base 8x128 and 1x128 inference, small 8x128 RTD training step) and round, runs
`deberta bench ... --json` (optionally also with `--no-fused`, the generic op-by-op path) and
`scripts/bench_pytorch.py ... --json` back to back, then prints a markdown table: median tokens/s
over the rounds, the ratio of medians, peak RSS. Needs only the standard library here; the PyTorch
side runs in the given interpreter (the fixture venv). Run on an otherwise idle machine.

With --int8, the int8 comparison instead (shapes base 8x128, 1x128, 1x512 unless --only): per
round, ours in f32 and `--dtype int8`, PyTorch eager, ONNX Runtime fp32 and ONNX Runtime dynamic
int8 (scripts/bench_ort.py: the same HF model and random weights as PyTorch, exported with opset
17 and quantised with quantize_dynamic QInt8, intra-op spinning off), all with --threads. Writes a
markdown table of median tokens/s and the ratios of ours to the best alternative to --out
(default results/int8_targets.md) and prints it with the command. --quick: one round of one
timed run on the tiny preset at 2x32, to check the pipeline end to end (written to
runs/int8_targets_quick.md unless --out).
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

SHAPES = {
    "base-8": ("base", 8, 128, False, 1.3),
    "base-1": ("base", 1, 128, False, 1.6),
    "small-train": ("small", 8, 128, True, 1.5),
    "base-512": ("base", 1, 512, False, None),
    "tiny-2": ("tiny", 2, 32, False, None),
}
INT8_SHAPES = ["base-8", "base-1", "base-512"]
# Ours (f32, int8) and the alternatives, in table order: (key, header).
INT8_COLUMNS = [("ours", "ours f32"), ("ours_int8", "ours int8"), ("torch", "PyTorch"),
                ("ort", "ORT fp32"), ("ort_int8", "ORT int8")]


def last_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=5, help="timed runs per invocation (median reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="+", choices=list(SHAPES))
    p.add_argument("--no-fused", action="store_true", help="also time ours with --no-fused")
    p.add_argument("--bin", default="target/release/deberta")
    p.add_argument("--python", default=".venv-ref/bin/python")
    p.add_argument("--int8", action="store_true", help="the int8 comparison (see above)")
    p.add_argument("--quick", action="store_true", help="with --int8: tiny 2x32, one round, one run")
    p.add_argument("--out", help="with --int8: where the markdown table goes")
    a = p.parse_args()
    if a.int8:
        return int8_comparison(a)
    a.only = a.only or ["base-8", "base-1", "small-train"]
    rows = []
    for preset, batch, length, train, target in (SHAPES[k] for k in a.only):
        runs = str(a.runs)
        shape = ["--preset", preset, "--batch", str(batch), "--seq-len", str(length), "--runs", runs,
                 "--threads", str(a.threads), "--json"] + (["--train"] if train else [])
        results = {"ours": [], "generic": [], "torch": []}
        for r in range(a.rounds):
            results["ours"].append(last_json([a.bin, "bench", *shape]))
            if a.no_fused:
                results["generic"].append(last_json([a.bin, "bench", *shape, "--no-fused"]))
            results["torch"].append(last_json([a.python, "scripts/bench_pytorch.py", *shape]))
            tps = {k: round(v[-1]["tokens_per_second"], 1) for k, v in results.items() if v}
            print(f"# {preset} {batch}x{length} {'train' if train else 'inference'} round {r + 1}: {tps}", flush=True)
        med = {k: statistics.median(x["tokens_per_second"] for x in v) for k, v in results.items() if v}
        rss = {k: max(x["peak_rss_bytes"] for x in v) / 2**20 for k, v in results.items() if v}
        rows.append((preset, batch, length, train, target, med, rss))
    print("\n| shape | ours tok/s | PyTorch tok/s | ratio | target | peak RSS ours / torch (MiB) |"
          + (" generic path tok/s | fused / generic |" if a.no_fused else ""))
    print("|---|---|---|---|---|---|" + ("---|---|" if a.no_fused else ""))
    for preset, batch, length, train, target, med, rss in rows:
        line = (f"| {preset} {batch} x {length} {'train step' if train else 'inference'} | {med['ours']:.0f} | "
                f"{med['torch']:.0f} | {med['ours'] / med['torch']:.2f}x | {target}x | "
                f"{rss['ours']:.0f} / {rss['torch']:.0f} |")
        if a.no_fused:
            line += f" {med['generic']:.0f} | {med['ours'] / med['generic']:.2f}x |"
        print(line)


def int8_comparison(a):
    if a.quick:
        a.only, a.rounds, a.runs = ["tiny-2"], 1, 1
    out_path = a.out or ("runs/int8_targets_quick.md" if a.quick else "results/int8_targets.md")
    command = "python3 " + " ".join(shlex.quote(x) for x in sys.argv)
    rows, log = [], []
    for key in a.only or INT8_SHAPES:
        preset, batch, length, train, _ = SHAPES[key]
        if train:
            raise SystemExit(f"--int8 compares inference only; drop {key}")
        shape = ["--preset", preset, "--batch", str(batch), "--seq-len", str(length), "--runs", str(a.runs),
                 "--threads", str(a.threads), "--json"]
        runners = {
            "ours": [a.bin, "bench", *shape],
            "ours_int8": [a.bin, "bench", *shape, "--dtype", "int8"],
            "torch": [a.python, "scripts/bench_pytorch.py", *shape],
            "ort": [a.python, "scripts/bench_ort.py", *shape, "--dtype", "f32"],
            "ort_int8": [a.python, "scripts/bench_ort.py", *shape, "--dtype", "int8"],
        }
        results = {k: [] for k in runners}
        for r in range(a.rounds):
            for k, cmd in runners.items():
                results[k].append(last_json(cmd))
            tps = {k: round(v[-1]["tokens_per_second"], 1) for k, v in results.items()}
            line = f"# {preset} {batch}x{length} round {r + 1}: {tps}"
            print(line, flush=True)
            log.append(line)
        med = {k: statistics.median(x["tokens_per_second"] for x in v) for k, v in results.items()}
        rss = {k: max(x["peak_rss_bytes"] for x in v) / 2**20 for k, v in results.items()}
        rows.append((preset, batch, length, med, rss))
    best_name = dict(INT8_COLUMNS)
    header = (["shape"] + [f"{h} tok/s" for _, h in INT8_COLUMNS]
              + ["best alternative", "int8 / best", "f32 / best", "int8 / ORT int8", "f32 / ORT fp32",
                 "peak RSS int8 / ORT int8 (MiB)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for preset, batch, length, med, rss in rows:
        best = max(("torch", "ort", "ort_int8"), key=lambda k: med[k])
        lines.append(f"| {preset} {batch} x {length} | " + " | ".join(f"{med[k]:.0f}" for k, _ in INT8_COLUMNS)
                     + f" | {best_name[best]} | {med['ours_int8'] / med[best]:.2f}x | {med['ours'] / med[best]:.2f}x"
                     f" | {med['ours_int8'] / med['ort_int8']:.2f}x | {med['ours'] / med['ort']:.2f}x"
                     f" | {rss['ours_int8']:.0f} / {rss['ort_int8']:.0f} |")
    table = "\n".join(lines)
    text = (f"# int8 inference vs PyTorch and ONNX Runtime\n\nGenerated by:\n\n```sh\n{command}\n```\n\n"
            f"{a.rounds} interleaved round(s), {a.runs} timed run(s) per invocation (median), {a.threads} threads "
            f"each; medians over the rounds. ORT: scripts/bench_ort.py (opset 17 export, quantize_dynamic "
            f"QInt8, intra-op spinning off).\n\n```\n" + "\n".join(log) + "\n```\n\n" + table + "\n")
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w") as f:
        f.write(text)
    print("\n" + table)
    print(f"\nwrote {out_path}\ncommand: {command}")


if __name__ == "__main__":
    main()
