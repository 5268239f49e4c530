#!/usr/bin/env python3
"""The PyTorch reference loop (scripts/rtd_trajectory.py) run as a real pre-training: a corpus, a
budget, dropout on, and an exported discriminator to fine-tune.

    .venv-ref/bin/python scripts/reference_pretrain.py --corpus data/sotu --tokenizer SPM_MODEL \
        --config DISC_CONFIG.json --steps 1000 --batch-size 16 --seq-len 128 --seed 1 --out DIR

It answers one question: does an independent implementation of the recipe, on the same corpus and
budget as a `deberta pretrain` run, export a discriminator that fine-tunes any better? It is the
same recipe as `deberta pretrain --recipe small` (RTD + GDES, decoupled steps, lambda 10, Adam with
bias correction, lr 1e-3, warmup 10% of the steps then linear decay, clip 1.0, decay 0.01 except
biases and LayerNorm, 15% unigram masking in windows of 6, generator half as deep and at least 2
layers), but everything else is the reference's own: HF transformers' DebertaV2Model with the
official heads, torch's initialisation, its own data order, masks and samples (seeded here), float32.

The corpus is every *.txt file under --corpus (sorted by path), tokenized with the sentencepiece
library, concatenated and cut into lines of `[CLS] seq_len-2 pieces [SEP]`, as `deberta pretrain`
does; the last 64 lines are held out. Writes into DIR: discriminator/ (an HF directory with
E_G + E_delta as its word embeddings, spm.model and tokenizer_config.json, as `deberta pretrain`
exports), metrics.jsonl (training losses every --log-every steps; held-out MLM loss, RTD loss and
AUC at the end).
"""

import argparse
import glob
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import EmdGenerator, RtdDiscriminator  # noqa: E402
from rtd_trajectory import XAdam, mask_row, rtd_logits, sample, save_model  # noqa: E402
from transformers import DebertaV2Config  # noqa: E402

PAD, CLS, SEP, UNK = 0, 1, 2, 3
HELD_OUT = 64


def corpus_lines(corpus, tokenizer, seq_len):
    sp = spm.SentencePieceProcessor(model_file=tokenizer)
    files = sorted(glob.glob(os.path.join(corpus, "**", "*.txt"), recursive=True))
    stream = []
    for f in files:
        for line in open(f, encoding="utf-8", errors="ignore"):
            if line.strip():
                stream.extend(sp.encode(line.strip()))
    n = seq_len - 2
    rows = [[CLS] + stream[i:i + n] + [SEP] for i in range(0, len(stream) - n + 1, n)]
    return np.array(rows), sp.get_piece_size(), len(stream)


def masked_batch(rows, rng, mask_id):
    ids, labels = zip(*(mask_row(r, len(r), rng, mask_id, False, mask_id) for r in rows))
    return torch.tensor(ids), torch.tensor(labels)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True)
    p.add_argument("--tokenizer", required=True, help="the spm.model the `deberta pretrain` run used")
    p.add_argument("--config", required=True, help="the discriminator's config.json")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--rtd-lambda", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    rows, pieces, tokens = corpus_lines(args.corpus, args.tokenizer, args.seq_len)
    train, held = rows[:-HELD_OUT], rows[-HELD_OUT:]
    cfg = json.load(open(args.config))
    cfg.pop("architectures", None)
    dcfg = DebertaV2Config(**cfg)
    mask_id = dcfg.vocab_size - 1  # [MASK] follows the spm pieces
    assert mask_id == pieces, f"config vocab_size {dcfg.vocab_size} is not the tokenizer's {pieces} pieces + [MASK]"
    gcfg = DebertaV2Config(**dict(cfg, num_hidden_layers=max(2, dcfg.num_hidden_layers // 2)))
    gen, disc = EmdGenerator(gcfg), RtdDiscriminator(dcfg)
    gen.train()
    disc.train()
    print(f"corpus: {tokens} tokens, {len(train)} training lines of {args.seq_len} ({HELD_OUT} held out); "
          f"{args.steps} steps of {args.batch_size} = {args.steps * args.batch_size / len(train):.2f} epochs; "
          f"generator {gcfg.num_hidden_layers} layers, discriminator {dcfg.num_hidden_layers}", flush=True)

    adam = dict(beta1=0.9, beta2=0.999, epsilon=1e-6, weight_decay=0.01, max_grad_norm=1.0, bias_correction=True)
    delta = torch.zeros(pieces + 1, dcfg.hidden_size, requires_grad=True)
    e_g = gen.deberta.embeddings.word_embeddings.weight
    g_named = list(gen.named_parameters())
    d_named = [(n, q) for n, q in disc.named_parameters() if n != "deberta.embeddings.word_embeddings.weight"]
    d_named.append(("word_embeddings_delta", delta))
    sched = (args.lr, round(args.warmup_ratio * args.steps), args.steps)
    g_opt, d_opt = XAdam(g_named, adam, *sched), XAdam(d_named, adam, *sched)

    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    log = open(os.path.join(args.out, "metrics.jsonl"), "w")
    order = np.concatenate([rng.permutation(len(train)) for _ in range(math.ceil(args.steps * args.batch_size / len(train)) + 1)])
    acc = {"mlm_loss": 0.0, "rtd_loss": 0.0, "replaced_fraction": 0.0}
    start = time.time()

    def rtd_step(x, lab, u, m):
        """The generator's MLM loss over the picks, and the discriminator's input: the picks
        replaced by samples drawn with `u`, the replaced-token targets, the pick mask."""
        sel = lab.reshape(-1) > 0
        _, o = gen(x, m)
        logits = o["logits"].reshape(-1, o["logits"].shape[-1])[sel]
        mlm_loss = F.cross_entropy(logits, lab.reshape(-1)[sel])
        samples = sample(logits.detach(), u.reshape(-1)[sel])
        d_ids = x.clone().reshape(-1)
        d_ids[sel] = samples
        d_ids = d_ids.reshape(x.shape)
        targets = (lab > 0) & (d_ids != lab)
        return mlm_loss, d_ids, targets, sel

    for s in range(args.steps):
        batch = train[order[s * args.batch_size:(s + 1) * args.batch_size]]
        x, lab = masked_batch(batch, rng, mask_id)
        m = torch.ones_like(x)
        u = torch.from_numpy(rng.random(x.shape).astype(np.float32))
        mlm_loss, d_ids, targets, sel = rtd_step(x, lab, u, m)
        mlm_loss.backward()
        g_opt.step()
        lg = rtd_logits(disc, e_g.detach() + delta, d_ids, m)
        rtd_loss = args.rtd_lambda * F.binary_cross_entropy_with_logits(lg.reshape(-1), targets.reshape(-1).float())
        rtd_loss.backward()
        d_opt.step()
        acc["mlm_loss"] += mlm_loss.item()
        acc["rtd_loss"] += rtd_loss.item()
        acc["replaced_fraction"] += targets.sum().item() / sel.sum().item()
        if (s + 1) % args.log_every == 0 or s + 1 == args.steps:
            n = args.log_every if (s + 1) % args.log_every == 0 else (s + 1) % args.log_every
            rec = {"step": s + 1, **{k: v / n for k, v in acc.items()}, "elapsed_seconds": time.time() - start}
            acc = dict.fromkeys(acc, 0.0)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(f"step {s + 1}/{args.steps}: mlm {rec['mlm_loss']:.3f} rtd {rec['rtd_loss']:.3f} "
                  f"replaced {rec['replaced_fraction']:.3f} ({rec['elapsed_seconds']:.0f} s)", flush=True)

    # Held-out: fixed masks and samples, dropout off.
    gen.eval()
    disc.eval()
    erng = np.random.default_rng(12345)
    with torch.no_grad():
        x, lab = masked_batch(held, erng, mask_id)
        m = torch.ones_like(x)
        u = torch.from_numpy(erng.random(x.shape).astype(np.float32))
        mlm_loss, d_ids, targets, _ = rtd_step(x, lab, u, m)
        lg = rtd_logits(disc, e_g + delta, d_ids, m)
        rtd_loss = args.rtd_lambda * F.binary_cross_entropy_with_logits(lg.reshape(-1), targets.reshape(-1).float())
        auc = roc_auc_score(targets.reshape(-1).numpy(), lg.reshape(-1).numpy())
    rec = {"step": args.steps, "eval_mlm_loss": mlm_loss.item(), "eval_rtd_loss": rtd_loss.item(), "eval_rtd_auc": auc,
           "eval_replaced_fraction": targets.sum().item() / (lab > 0).sum().item()}
    log.write(json.dumps(rec) + "\n")
    print("held out:", {k: round(v, 4) for k, v in rec.items()}, flush=True)

    # Export as `deberta pretrain` does: the discriminator sees E_G + E_delta.
    with torch.no_grad():
        disc.deberta.embeddings.word_embeddings.weight.copy_(e_g + delta)
    d = os.path.join(args.out, "discriminator")
    save_model(disc, DebertaV2Config(**cfg), d, RtdDiscriminator.architecture)
    shutil.copy(args.tokenizer, os.path.join(d, "spm.model"))
    tc = os.path.join(os.path.dirname(args.tokenizer), "tokenizer_config.json")
    if os.path.exists(tc):
        shutil.copy(tc, os.path.join(d, "tokenizer_config.json"))
    print(f"exported {d}")


if __name__ == "__main__":
    main()
