#!/usr/bin/env python3
"""PyTorch reference for pre-training *trajectories*: N steps of the official recipe, not one.

    .venv-ref/bin/python scripts/rtd_trajectory.py --out DIR --steps 20 --objective rtd --sharing gdes
    .venv-ref/bin/python scripts/rtd_trajectory.py --compare DIR OURS.json   # relative errors per step

Writes into DIR:
  generator/, discriminator/  the initial weights (HF directories, float32; HF's N(0, 0.02) init)
  batches.safetensors         per step: `input_ids` (masked), `attention_mask`, `labels` (original id
                              at picks, 0 elsewhere), all [N, B, L] (small integers stored as
                              float32, exact), and `uniforms` [N, B, L] float32 (one per position;
                              each pick uses its own)
  settings.json               the run settings as deberta-rs saves them (objective, sharing, lambda,
                              lr, warmup_steps, steps, adam, sizes, token ids)
  expected.json               per step: lr, mlm_loss, rtd_loss, generator_grad_norm,
                              discriminator_grad_norm, replaced_fraction

The recipe, as the official microsoft/DeBERTa code runs it (dropout off here):
  * masking (official NGramMaskGenerator, unigrams): windows of 6 non-special tokens, one pick per
    window, the first round(0.15 * len) picks; RTD masks every pick, MLM uses 80/10/10;
  * generator: EMD head over the second-to-last layer, MLM cross-entropy over the picks (mean);
  * sampling by inverse CDF of softmax(logits) with the supplied uniform: the sample is the number
    of CDF entries <= u * CDF[-1] (scaling by the total keeps every id reachable with exactly its
    probability, whatever the rounding of the sum);
  * RTD: label 1 where a pick's sample differs from the original, lambda * mean BCE over real tokens;
  * GDES / NES: decoupled steps: the generator steps on its MLM loss, then the discriminator is
    rebuilt from the just-updated E_G (GDES: E_D = stop_grad(E_G) + E_delta) and steps on the RTD
    loss, each with its own XAdam, clip and schedule;
  * ES: the official coupled mode: one joint loss MLM + lambda * RTD with E_D = E_G, one optimiser
    over both models, one clip;
  * MLM objective: the generator alone, 80/10/10 masking;
  * XAdam: m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2, x -= lr (m / (sqrt v + eps) + wd x), no bias
    correction, no decay on biases and LayerNorm weights; gradients scaled by max_norm / norm when
    the global norm exceeds max_norm;
  * warmup_linear: lr(t) = peak * t / warmup for t < warmup (0 at the first step), then
    peak * (1 - t / steps), t counting the optimiser's steps from 0.

The reference runs in float64 (or, with --dtype float32, in float32: run twice, the two show how
fast the trajectory itself amplifies rounding differences) from the float32 weights it saved. The data is a synthetic language
(a sparse random Markov chain over the vocabulary) so that both models have something to learn in a
few hundred steps.
"""

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import V3, EmdGenerator, RtdDiscriminator  # noqa: E402
from transformers import DebertaV2Config  # noqa: E402

PAD, CLS, SEP, UNK = 0, 1, 2, 3


def config(layers, vocab):
    return DebertaV2Config(**dict(
        V3, vocab_size=vocab, hidden_size=32, num_attention_heads=4, intermediate_size=64,
        num_hidden_layers=layers, position_buckets=16, max_position_embeddings=64,
        initializer_range=0.02, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


def save_model(model, cfg, d, architecture):
    os.makedirs(d)
    sd = {k: v.float().contiguous() for k, v in model.checkpoint().items()}
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    c = cfg.to_dict()
    c["architectures"] = [architecture]
    json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2)


def markov_lines(rng, n, length, vocab, mask):
    """Rows `[CLS] w1 .. wk [SEP]` padded to `length`; every third row is shorter."""
    pieces = np.arange(4, mask)
    succ = {int(t): rng.choice(pieces, size=3, replace=False) for t in pieces}
    rows, masks = [], []
    for r in range(n):
        real = length if r % 3 else length - 1 - r % 7
        w = [int(rng.choice(pieces))]
        while len(w) < real - 2:
            w.append(int(rng.choice(succ[w[-1]], p=[0.6, 0.3, 0.1])) if rng.random() < 0.9 else int(rng.choice(pieces)))
        row = [CLS] + w + [SEP]
        rows.append(row + [PAD] * (length - real))
        masks.append([1] * real + [0] * (length - real))
    return np.array(rows), np.array(masks)


def mask_row(row, real, rng, mask_id, mlm, vocab_end):
    """The official rule; returns (input_ids, labels)."""
    ids = list(row)
    cand = [i for i in range(real) if ids[i] not in (PAD, CLS, SEP, UNK, mask_id)]
    wanted = max(1, min(round(real * 0.15), math.ceil(len(row) * 0.15 / 10) * 10))
    picks, off = [], 0
    while off < len(cand):
        ctx = min(6, len(cand) - off)
        picks.append(cand[off + rng.integers(ctx)])
        off += ctx
    labels = [0] * len(ids)
    for p in picks[:wanted]:
        labels[p] = ids[p]
        if not mlm:
            ids[p] = mask_id
        else:
            r = rng.random()
            if r < 0.8:
                ids[p] = mask_id
            elif r >= 0.9:
                ids[p] = int(rng.integers(4, vocab_end))
    return ids, labels


def decays(name):
    return not (name.endswith("bias") or "LayerNorm" in name)


class XAdam:
    """The official XAdam (no bias correction unless `bias_correction` is set, as torch's AdamW
    does it), with its own global-norm clip and schedule."""

    def __init__(self, named, a, peak, warmup, total):
        self.named, self.a, self.peak, self.warmup, self.total = named, a, peak, warmup, total
        self.t = 0
        self.m = {n: torch.zeros_like(p) for n, p in named}
        self.v = {n: torch.zeros_like(p) for n, p in named}

    def lr(self):
        t = self.t
        if t < self.warmup:
            return self.peak * t / self.warmup
        return self.peak * (1 - t / self.total)

    @torch.no_grad()
    def step(self):
        grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in self.named}
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        scale = norm / self.a["max_grad_norm"] if norm > self.a["max_grad_norm"] else 1.0
        lr = self.lr()
        b1, b2, eps, wd = self.a["beta1"], self.a["beta2"], self.a["epsilon"], self.a["weight_decay"]
        for n, p in self.named:
            g = grads[n] / scale
            self.m[n].mul_(b1).add_(g, alpha=1 - b1)
            self.v[n].mul_(b2).addcmul_(g, g, value=1 - b2)
            m, v = self.m[n], self.v[n]
            if self.a.get("bias_correction"):
                m, v = m / (1 - b1 ** (self.t + 1)), v / (1 - b2 ** (self.t + 1))
            upd = m / (v.sqrt() + eps)
            if wd > 0 and decays(n):
                upd = upd + wd * p
            p.sub_(lr * upd)
            p.grad = None
        self.t += 1
        return norm, lr


def rtd_logits(disc, emb, ids, mask):
    h = disc.deberta(inputs_embeds=emb[ids], attention_mask=mask).last_hidden_state
    mp = disc.mask_predictions
    return mp.classifier(disc.act(mp.dense(mp.LayerNorm(h + h[:, 0:1, :])))).squeeze(-1)


def sample(logits, u):
    cdf = torch.softmax(logits, -1).cumsum(-1)
    s = (cdf <= (u * cdf[:, -1])[:, None]).sum(-1)
    return s.clamp(max=logits.shape[1] - 1)


def run(args):
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    V = 64
    MASK = V - 1
    mlm = args.objective == "mlm"
    gcfg = config(args.generator_layers, V)
    dcfg = config(args.discriminator_layers, V)
    gen = EmdGenerator(gcfg)
    disc = RtdDiscriminator(dcfg)
    save_model(gen, gcfg, os.path.join(args.out, "generator"), "DebertaV2ForEnhancedMaskedLM")
    if not mlm:
        save_model(disc, dcfg, os.path.join(args.out, "discriminator"), "DebertaV2ForReplacedTokenDetection")
    # Continue from exactly the float32 values saved.
    for m in (gen, disc):
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(p.float())
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    gen, disc = gen.to(dtype), disc.to(dtype)

    N, B, L = args.steps, args.batch_size, args.seq_len
    all_rows, all_masks = markov_lines(rng, 64, L, V, MASK)
    ids = np.zeros((N, B, L), np.int64)
    labels = np.zeros((N, B, L), np.int64)
    amask = np.zeros((N, B, L), np.int64)
    for s in range(N):
        for b in range(B):
            r = int(rng.integers(len(all_rows)))
            real = int(all_masks[r].sum())
            i, lab = mask_row(all_rows[r], real, rng, MASK, mlm, MASK)
            ids[s, b], labels[s, b], amask[s, b] = i, lab, all_masks[r]
    uniforms = rng.random((N, B, L)).astype(np.float32)
    f32 = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    save_file({"input_ids": f32(ids), "attention_mask": f32(amask), "labels": f32(labels), "uniforms": f32(uniforms)},
              os.path.join(args.out, "batches.safetensors"))
    adam = dict(beta1=0.9, beta2=0.999, epsilon=1e-6, weight_decay=0.01, max_grad_norm=1.0, bias_correction=False)
    # deberta-rs's own run settings (`Settings`), so the replay reads them as a checkpoint's.
    settings = dict(objective=args.objective, sharing=args.sharing, rtd_lambda=args.rtd_lambda, lr=args.lr,
                    warmup_steps=args.warmup_steps, steps=N, adam=adam, batch_size=B, seq_len=L, seed=0,
                    vocabulary=dict(pad=PAD, cls=CLS, sep=SEP, unk=UNK, mask=MASK, pieces=[4, MASK]), eval_lines=0)
    json.dump(settings, open(os.path.join(args.out, "settings.json"), "w"), indent=2)

    delta = torch.zeros(V, dcfg.hidden_size, dtype=dtype, requires_grad=True)
    g_named = [(n, p) for n, p in gen.named_parameters()]
    d_named = [(n, p) for n, p in disc.named_parameters() if n != "deberta.embeddings.word_embeddings.weight"]
    sched = (args.lr, args.warmup_steps, N)
    if args.sharing == "nes":
        d_named.append(("deberta.embeddings.word_embeddings.weight", disc.deberta.embeddings.word_embeddings.weight))
    if args.sharing == "gdes":
        d_named.append(("word_embeddings_delta", delta))
    if args.sharing == "es" and not mlm:
        # Names prefixed: the two models share parameter names, and the optimiser keys its state by name.
        joint = XAdam([("generator." + n, p) for n, p in g_named] + [("discriminator." + n, p) for n, p in d_named],
                      adam, *sched)
    else:
        g_opt, d_opt = XAdam(g_named, adam, *sched), XAdam(d_named, adam, *sched)

    out = []
    for s in range(N):
        x = torch.from_numpy(ids[s])
        m = torch.from_numpy(amask[s])
        lab = torch.from_numpy(labels[s])
        sel = lab.reshape(-1) > 0
        _, o = gen(x, m)
        logits = o["logits"].reshape(B * L, -1)[sel]
        mlm_loss = F.cross_entropy(logits, lab.reshape(-1)[sel])
        rec = {"step": s + 1, "mlm_loss": mlm_loss.item()}
        if mlm:
            mlm_loss.backward()
            rec["generator_grad_norm"], rec["lr"] = g_opt.step()
            out.append(rec)
            continue
        u = torch.from_numpy(uniforms[s]).to(dtype).reshape(-1)[sel]
        samples = sample(logits.detach(), u)
        d_ids = x.clone().reshape(-1)
        d_ids[sel] = samples
        d_ids = d_ids.reshape(B, L)
        targets = (lab > 0) & (d_ids != lab)
        rec["replaced_fraction"] = targets.sum().item() / sel.sum().item()
        mb = m.bool()

        def rtd():
            e_g = gen.deberta.embeddings.word_embeddings.weight
            emb = {"gdes": lambda: e_g.detach() + delta, "es": lambda: e_g,
                   "nes": lambda: disc.deberta.embeddings.word_embeddings.weight}[args.sharing]()
            lg = rtd_logits(disc, emb, d_ids, m)
            return args.rtd_lambda * F.binary_cross_entropy_with_logits(lg[mb], targets[mb].to(dtype))

        if args.sharing == "es":
            r = rtd()
            (mlm_loss + r).backward()
            norm, rec["lr"] = joint.step()
            rec["generator_grad_norm"] = rec["discriminator_grad_norm"] = norm
        else:
            mlm_loss.backward()
            rec["generator_grad_norm"], rec["lr"] = g_opt.step()
            r = rtd()
            r.backward()
            rec["discriminator_grad_norm"], _ = d_opt.step()
        rec["rtd_loss"] = r.item()
        out.append(rec)
        if args.verbose and (s + 1) % 25 == 0:
            print(s + 1, {k: round(v, 4) for k, v in rec.items()})
    json.dump(out, open(os.path.join(args.out, "expected.json"), "w"), indent=1)
    last = out[-1]
    print(f"{args.out}: {N} steps, first mlm {out[0]['mlm_loss']:.4f}, last mlm {last['mlm_loss']:.4f}"
          + (f", first rtd {out[0]['rtd_loss']:.4f}, last rtd {last['rtd_loss']:.4f}" if not mlm else ""))


def compare(ref_dir, ours_path, report=None):
    """Per-step relative errors of every loss; returns the worst over steps [0, 20) and overall."""
    ref = json.load(open(os.path.join(ref_dir, "expected.json")))
    ours = json.load(open(ours_path))
    rows = []
    for r, o in zip(ref, ours):
        row = {"step": r["step"]}
        for k in ("mlm_loss", "rtd_loss"):
            if k in r:
                row[k] = abs(o[k] - r[k]) / abs(r[k])
        rows.append(row)
    keys = [k for k in ("mlm_loss", "rtd_loss") if k in rows[0]]
    worst20 = max(row[k] for row in rows[:20] for k in keys)
    worst = max(row[k] for row in rows for k in keys)
    return ref, ours, rows, worst20, worst


def report(pairs, out):
    """Markdown report of several (variant, reference dir, ours json) comparisons."""
    lines = ["# Trajectory parity with the PyTorch reference loop", "",
             "Generated by `scripts/trajectory_parity.sh` (reference: `scripts/rtd_trajectory.py`, float64;",
             "ours: `deberta debug rtd-steps`, float32). Same initial weights, masked batches and sampling",
             "uniforms; dropout off. Relative error per step `|ours - ref| / |ref|`. Rows marked PyTorch",
             "float32 compare the reference run in float32 with itself in float64 (no deberta-rs involved).", "",
             "| variant | steps | worst, steps 1-20 | worst MLM, all steps | worst RTD, all steps | "
             "worst 10-step mean | first step > 1e-4 | first step > 1e-2 | MLM loss first -> last (ref) | "
             "RTD loss first -> last (ref) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, ref_dir, ours_path in pairs:
        ref, ours, rows, w20, _ = compare(ref_dir, ours_path)
        wm = max(r["mlm_loss"] for r in rows)
        wr = max((r.get("rtd_loss", 0.0) for r in rows), default=0.0)
        means = []
        for k in ("mlm_loss", "rtd_loss"):
            if k in ref[0]:
                a = np.array([r[k] for r in ref][: len(ref) // 10 * 10]).reshape(-1, 10).mean(1)
                b = np.array([o[k] for o in ours][: len(ref) // 10 * 10]).reshape(-1, 10).mean(1)
                means.append(float(np.max(np.abs(a - b) / np.abs(a))))
        first = lambda t: next((r["step"] for r in rows if max(v for k, v in r.items() if k != "step") > t), "none")  # noqa: E731
        rtd = f"{ref[0]['rtd_loss']:.3f} -> {ref[-1]['rtd_loss']:.3f}" if "rtd_loss" in ref[0] else "-"
        lines.append(f"| {name} | {len(rows)} | {w20:.1e} | {wm:.1e} | {wr:.1e} | {max(means):.1e} | {first(1e-4)} | {first(1e-2)} | "
                     f"{ref[0]['mlm_loss']:.3f} -> {ref[-1]['mlm_loss']:.3f} | {rtd} |")
    open(out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--objective", choices=["rtd", "mlm"], default="rtd")
    p.add_argument("--sharing", choices=["gdes", "es", "nes"], default="gdes")
    p.add_argument("--rtd-lambda", type=float, default=10.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--generator-layers", type=int, default=2)
    p.add_argument("--discriminator-layers", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="float32: the reference's own rounding, to measure how fast rounding differences grow")
    p.add_argument("--compare", nargs=2, metavar=("REF_DIR", "OURS_JSON"))
    p.add_argument("--report", nargs="+", metavar="NAME:REF_DIR:OURS_JSON",
                   help="write a markdown table of several comparisons to --out")
    args = p.parse_args()
    if args.report:
        report([tuple(x.split(":")) for x in args.report], args.out)
        return
    if args.compare:
        _, _, _, w20, w = compare(*args.compare)
        print(f"worst relative loss error: first 20 steps {w20:.2e}, all steps {w:.2e}")
        return
    run(args)


if __name__ == "__main__":
    main()
