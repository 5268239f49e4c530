#!/usr/bin/env python3
"""ONNX Runtime inference throughput (fp32 or dynamic int8) on the shapes `deberta bench` uses.

    .venv-ref/bin/python scripts/bench_ort.py --preset base --batch 8 --seq-len 128 [--threads N] [--json]
        [--dtype f32|int8] [--cache DIR]

The model is HF's DebertaV2Model with the random weights of scripts/bench_pytorch.py (same config,
torch.manual_seed(0)), exported once per preset with torch.onnx.export (TorchScript exporter, opset
17, dynamic batch and length) into --cache; int8 is onnxruntime.quantization.quantize_dynamic of
that export with QInt8 weights (ORT's dynamic quantisation: u8 activations per tensor at run time).
The session runs with --threads intra-op threads and spinning off
(`session.intra_op.allow_spinning=0`): a spinning pool would steal the cores of whatever runs
next in an interleaved comparison. Warm-up, then the median of --runs timed runs. With --check,
also prints the cosine of int8's last_hidden_state with fp32's on the timed input.
Needs onnx and onnxruntime (pip install onnx==1.23.2 onnxruntime==1.32.0).
"""

import argparse
import json
import os
import resource
import time

import numpy as np
import torch
from transformers import DebertaV2Model

from bench_pytorch import make_config


def export(preset, cache):
    """Paths of the fp32 and int8 ONNX models of `preset`, made on first use."""
    os.makedirs(cache, exist_ok=True)
    fp32, int8 = (os.path.join(cache, f"deberta-{preset}-{k}.onnx") for k in ("fp32", "int8"))
    if not os.path.exists(fp32):
        torch.manual_seed(0)
        model = DebertaV2Model(make_config(preset)).eval()
        ids = torch.randint(4, 128000, (2, 16))
        tmp = fp32 + ".tmp"
        with torch.inference_mode():
            torch.onnx.export(
                model, (ids, torch.ones_like(ids)), tmp, input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                dynamic_axes={n: {0: "batch", 1: "length"} for n in ("input_ids", "attention_mask", "last_hidden_state")},
            )
        os.replace(tmp, fp32)
    if not os.path.exists(int8):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(fp32, int8 + ".tmp", weight_type=QuantType.QInt8)
        os.replace(int8 + ".tmp", int8)
    return fp32, int8


def session(path, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="base")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int)
    p.add_argument("--dtype", choices=["f32", "int8"], default="f32")
    p.add_argument("--cache", default="runs/ort", help="where the exported models are kept")
    p.add_argument("--check", action="store_true", help="print int8's cosine with fp32")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    fp32, int8 = export(a.preset, a.cache)
    sess = session(int8 if a.dtype == "int8" else fp32, a.threads)
    torch.manual_seed(0)
    ids = torch.randint(4, 128000, (a.batch, a.seq_len)).numpy()
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    times = []
    for i in range(a.warmup + a.runs):
        t = time.perf_counter()
        out = sess.run(None, feed)[0]
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    tps = a.batch * a.seq_len / median
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {"mode": "inference", "preset": a.preset, "batch": a.batch, "seq_len": a.seq_len,
              "median_seconds": median, "tokens_per_second": tps, "peak_rss_bytes": peak, "device": "cpu",
              "dtype": a.dtype, "runtime": "onnxruntime"}
    if a.check:
        ref = session(fp32, a.threads).run(None, feed)[0].ravel().astype(np.float64)
        got = out.ravel().astype(np.float64)
        result["cosine_vs_fp32"] = float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref)))
    print(f"onnxruntime {a.dtype} inference {a.preset} batch {a.batch} x {a.seq_len}: median {median * 1e3:.1f} ms, "
          f"{tps:.0f} tokens/s, peak RSS {peak / 2**20:.0f} MiB"
          + (f", cosine with fp32 {result['cosine_vs_fp32']:.6f}" if a.check else ""))
    if a.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
