#!/usr/bin/env python3
"""HF transformers (PyTorch eager) inference throughput on the shapes `deberta bench` uses.

    .venv-ref/bin/python scripts/bench_pytorch.py --preset base --batch 8 --seq-len 128 [--threads N] [--json]

Random weights from the same DeBERTa-V3 preset shapes, warm-up, median of --runs timed runs,
same thread count as the Rust run. Peak RSS is the process's ru_maxrss.
"""

import argparse
import json
import resource
import time

import torch
from transformers import DebertaV2Config, DebertaV2Model

PRESETS = {
    "tiny": (128, 2, 4, 512),
    "xsmall": (384, 12, 6, 1536),
    "small": (768, 6, 12, 3072),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="base")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    h, layers, heads, inter = PRESETS[a.preset]
    config = DebertaV2Config(
        vocab_size=128100, hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, relative_attention=True, position_buckets=256, max_relative_positions=-1,
        max_position_embeddings=512, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
        position_biased_input=False, type_vocab_size=0, layer_norm_eps=1e-7,
    )
    torch.manual_seed(0)
    model = DebertaV2Model(config).eval()
    ids = torch.randint(4, 128000, (a.batch, a.seq_len))
    mask = torch.ones_like(ids)
    times = []
    with torch.inference_mode():
        for i in range(a.warmup + a.runs):
            t = time.perf_counter()
            model(input_ids=ids, attention_mask=mask).last_hidden_state.sum().item()
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    tps = a.batch * a.seq_len / median
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"pytorch inference {a.preset} batch {a.batch} x {a.seq_len}: median {median * 1e3:.1f} ms, "
          f"{tps:.0f} tokens/s, peak RSS {peak / 2**20:.0f} MiB, threads {torch.get_num_threads()}")
    if a.json:
        print(json.dumps({"mode": "inference", "preset": a.preset, "batch": a.batch, "seq_len": a.seq_len,
                          "median_seconds": median, "tokens_per_second": tps, "peak_rss_bytes": peak}))


if __name__ == "__main__":
    main()
