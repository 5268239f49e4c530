#!/usr/bin/env python3
"""The CPU performance issue's three targets in one run: ours vs HF/PyTorch eager, interleaved.

    python3 scripts/bench_cpu_targets.py [--rounds 3] [--runs 5] [--threads 2] [--no-fused]
        [--only base-8 base-1 small-train] [--bin target/release/deberta] [--python .venv-ref/bin/python]

For each shape (base 8x128 and 1x128 inference, small 8x128 RTD training step) and round, runs
`deberta bench ... --json` (optionally also with `--no-fused`, the generic op-by-op path) and
`scripts/bench_pytorch.py ... --json` back to back, then prints a markdown table: median tokens/s
over the rounds, the ratio of medians, peak RSS. Needs only the standard library here; the PyTorch
side runs in the given interpreter (the fixture venv). Run on an otherwise idle machine.
"""

import argparse
import json
import statistics
import subprocess

SHAPES = {
    "base-8": ("base", 8, 128, False, 1.3),
    "base-1": ("base", 1, 128, False, 1.6),
    "small-train": ("small", 8, 128, True, 1.0),
}


def last_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=5, help="timed runs per invocation (median reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    p.add_argument("--no-fused", action="store_true", help="also time ours with --no-fused")
    p.add_argument("--bin", default="target/release/deberta")
    p.add_argument("--python", default=".venv-ref/bin/python")
    a = p.parse_args()
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


if __name__ == "__main__":
    main()
