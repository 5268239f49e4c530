#!/usr/bin/env python3
"""HF transformers (PyTorch eager) inference throughput on the shapes `deberta bench` uses.

    .venv-ref/bin/python scripts/bench_pytorch.py --preset base --batch 8 --seq-len 128 [--threads N] [--json]
        [--device cpu|cuda[:N]] [--dtype f32|bf16]

Random weights from the same DeBERTa-V3 preset shapes, warm-up, median of --runs timed runs,
same thread count as the Rust run. Peak RSS is the process's ru_maxrss. On CUDA every timed run
ends with torch.cuda.synchronize() and TF32 is off (f32 means f32); `--dtype bf16` runs inference
under bf16 autocast (HF eager's usual mixed precision). Training is always f32.
"""

import argparse
import json
import resource
import time

import torch
from transformers import DebertaV2Config, DebertaV2Model

from presets import PRESETS


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="base")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="inference only: bf16 autocast")
    p.add_argument("--train", action="store_true",
                   help="one RTD step: generator (half depth, EMD head, LM head on picks) and discriminator "
                        "(RTD head, GDES) forward, backward and AdamW, like `deberta bench --train`")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    a.dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = make_config(a.preset)
    torch.manual_seed(0)
    if a.train:
        if a.dtype != "f32":
            p.error("--train runs in f32")
        return bench_train(a, config)
    model = DebertaV2Model(config).eval().to(a.dev)
    ids = torch.randint(4, 128000, (a.batch, a.seq_len)).to(a.dev)
    mask = torch.ones_like(ids)
    times = []
    autocast = torch.autocast(device_type=a.dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16")
    with torch.inference_mode(), autocast:
        for i in range(a.warmup + a.runs):
            sync(a)
            t = time.perf_counter()
            model(input_ids=ids, attention_mask=mask).last_hidden_state.sum().item()
            sync(a)
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    tps = a.batch * a.seq_len / median
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"pytorch inference {a.preset} batch {a.batch} x {a.seq_len}: median {median * 1e3:.1f} ms, "
          f"{tps:.0f} tokens/s, peak RSS {peak / 2**20:.0f} MiB, threads {torch.get_num_threads()}, "
          f"{a.device} {a.dtype}")
    if a.json:
        print(json.dumps({"mode": "inference", "preset": a.preset, "batch": a.batch, "seq_len": a.seq_len,
                          "median_seconds": median, "tokens_per_second": tps, "peak_rss_bytes": peak,
                          "device": a.device, "dtype": a.dtype}))


def make_config(preset):
    """The DeBERTa-V3 config of a preset shape (also used by scripts/bench_ort.py)."""
    h, layers, heads, inter = PRESETS[preset]
    return DebertaV2Config(
        vocab_size=128100, hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, relative_attention=True, position_buckets=256, max_relative_positions=-1,
        max_position_embeddings=512, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
        position_biased_input=False, type_vocab_size=0, layer_norm_eps=1e-7,
    )


def sync(a):
    if a.dev.type == "cuda":
        torch.cuda.synchronize(a.dev)


def bench_train(a, config):
    import copy
    import os
    import sys

    import torch.nn.functional as F

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_fixtures import EmdGenerator, RtdDiscriminator

    gconfig = copy.deepcopy(config)
    gconfig.num_hidden_layers = max(config.num_hidden_layers // 2, 1)
    dev = a.dev
    gen, disc = EmdGenerator(gconfig).train().to(dev), RtdDiscriminator(config).train().to(dev)
    delta = torch.nn.Parameter(torch.zeros_like(disc.deberta.embeddings.word_embeddings.weight))
    opt_g = torch.optim.AdamW(gen.parameters(), lr=1e-4, eps=1e-6, weight_decay=0.01)
    opt_d = torch.optim.AdamW(list(disc.parameters()) + [delta], lr=1e-4, eps=1e-6, weight_decay=0.01)
    B, L = a.batch, a.seq_len
    ids = torch.randint(4, 128000, (B, L))
    ids[:, 0], ids[:, -1] = 1, 2
    mask = torch.ones_like(ids)
    labels = torch.zeros_like(ids)
    for b in range(B):  # one pick per window of 6, round(0.15 L) picks
        picks = [1 + w * 6 + int(torch.randint(0, 6, ())) for w in range(round(0.15 * L))]
        labels[b, picks] = ids[b, picks]
        ids[b, picks] = 128000
    ids, mask, labels = ids.to(dev), mask.to(dev), labels.to(dev)
    sel = labels.reshape(-1) > 0
    positions = torch.arange(L, device=dev)

    def step():
        enc = gen.deberta.encoder
        out = gen.deberta(ids, attention_mask=mask, output_hidden_states=True)
        h = out.hidden_states[-2]
        query = gen.position_embeddings(positions)[None] + h
        mask4, rel_pos, rel = enc.get_attention_mask(mask), enc.get_rel_pos(h), enc.get_rel_embedding()
        for _ in range(2):
            query = enc.layer[-1](h, mask4, query_states=query, relative_pos=rel_pos, rel_embeddings=rel)[0]
        rows = query.reshape(B * L, -1)[sel]
        head = gen.lm_predictions.lm_head
        logits = head.LayerNorm(gen.act(head.dense(rows))) @ gen.deberta.embeddings.word_embeddings.weight.t() + head.bias
        mlm = F.cross_entropy(logits, labels.reshape(-1)[sel])
        opt_g.zero_grad()
        mlm.backward()
        torch.nn.utils.clip_grad_norm_(gen.parameters(), 1.0)
        opt_g.step()
        with torch.no_grad():
            samples = torch.multinomial(F.softmax(logits.detach(), -1), 1).squeeze(-1)
        d_ids = ids.reshape(-1).clone()
        d_ids[sel] = samples
        targets = (d_ids != torch.where(sel, labels.reshape(-1), ids.reshape(-1))).float().reshape(B, L)
        e_d = gen.deberta.embeddings.word_embeddings.weight.detach() + delta
        hd = disc.deberta(inputs_embeds=e_d[d_ids.reshape(B, L)], attention_mask=mask).last_hidden_state
        mp = disc.mask_predictions
        z = mp.classifier(disc.act(mp.dense(mp.LayerNorm(hd + hd[:, 0:1])))).squeeze(-1)
        rtd = 50.0 * F.binary_cross_entropy_with_logits(z, targets)
        opt_d.zero_grad()
        rtd.backward()
        torch.nn.utils.clip_grad_norm_(list(disc.parameters()) + [delta], 1.0)
        opt_d.step()

    times = []
    for i in range(a.warmup + a.runs):
        sync(a)
        t = time.perf_counter()
        step()
        sync(a)
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    tps = B * L / median
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"pytorch train {a.preset} batch {B} x {L}: median {median * 1e3:.1f} ms, {tps:.0f} tokens/s, "
          f"peak RSS {peak / 2**20:.0f} MiB, threads {torch.get_num_threads()}, {a.device} f32")
    if a.json:
        print(json.dumps({"mode": "train", "preset": a.preset, "batch": B, "seq_len": L,
                          "median_seconds": median, "tokens_per_second": tps, "peak_rss_bytes": peak,
                          "device": a.device, "dtype": "f32"}))


if __name__ == "__main__":
    main()
