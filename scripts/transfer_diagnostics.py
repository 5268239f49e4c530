#!/usr/bin/env python3
"""Why does a small pre-trained discriminator fine-tune no better than a random one? Three looks
at exported models, independent of deberta-rs (HF transformers' DebertaV2Model, the sentencepiece
library, scikit-learn):

  1. Linear probes on VADER sentiment: logistic regression on frozen features of 4,000 training
     snippets, accuracy on the dev snippets. Features: the [CLS] state the classifier reads, the
     mean of the token states, and the mean of the input embeddings.
  2. Where [CLS] looks: per layer, the entropy of [CLS]'s attention row over the sentence (1.0 =
     uniform, as at random init: [CLS] then averages the sentence) on 100 dev snippets.
  3. RTD on short text: with a run's own generator, held-out-style masking and sampling, the
     discriminator's AUC on 128-token corpus lines, 27-token corpus lines and VADER snippets
     (pre-training only ever shows full 128-token lines).

    .venv-ref/bin/python scripts/transfer_diagnostics.py --corpus data/sotu \
        --model NAME=DIR [--model NAME=DIR ...]  > results/transfer_diagnostics.md

DIR is a model directory (config.json, model.safetensors, spm.model); when DIR/../generator
exists (a `deberta pretrain` run), look 3 is computed too.
"""

import argparse
import csv
import glob
import json
import os
import sys

import numpy as np
import sentencepiece as spm
import torch
from safetensors.torch import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import EmdGenerator, RtdDiscriminator  # noqa: E402
from rtd_trajectory import mask_row, rtd_logits, sample  # noqa: E402
from transformers import DebertaV2Config, DebertaV2Model  # noqa: E402

CLS, SEP = 1, 2


def read_tsv(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    return [r["sentence"] for r in rows], np.array([int(r["label"]) for r in rows])


def encode(sp, texts, max_len=64):
    ids = [[CLS] + sp.encode(t)[: max_len - 2] + [SEP] for t in texts]
    width = max(map(len, ids))
    x = torch.tensor([i + [0] * (width - len(i)) for i in ids])
    return x, (x != 0).long()


def probes(model, sp, train, dev):
    def feats(texts):
        out = {"[CLS] state": [], "mean token state": [], "mean input embedding": []}
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                x, m = encode(sp, texts[i:i + 64])
                o = model(input_ids=x, attention_mask=m, output_hidden_states=True)
                w = m.unsqueeze(-1).float()
                out["[CLS] state"].append(o.last_hidden_state[:, 0])
                out["mean token state"].append((o.last_hidden_state * w).sum(1) / w.sum(1))
                out["mean input embedding"].append((o.hidden_states[0] * w).sum(1) / w.sum(1))
        return {k: torch.cat(v).numpy() for k, v in out.items()}

    ftr, fdv = feats(train[0]), feats(dev[0])
    acc = {}
    for k in ftr:
        mu, sd = ftr[k].mean(0), ftr[k].std(0) + 1e-6
        clf = LogisticRegression(max_iter=3000).fit((ftr[k] - mu) / sd, train[1])
        acc[k] = 100 * clf.score((fdv[k] - mu) / sd, dev[1])
    return acc


def cls_attention(model, sp, texts):
    ent = []
    with torch.no_grad():
        for t in texts:
            x, m = encode(sp, [t])
            o = model(input_ids=x, attention_mask=m, output_attentions=True)
            n = x.shape[1]
            ent.append([float((-(a[0, :, 0] * (a[0, :, 0] + 1e-12).log()).sum(-1) / np.log(n)).mean())
                        for a in o.attentions])
    return np.mean(ent, 0)


def load_custom(cls, d):
    c = json.load(open(f"{d}/config.json"))
    c.pop("architectures", None)
    m = cls(DebertaV2Config(**c))
    m.load_checkpoint(load_file(f"{d}/model.safetensors"))
    return m.eval()


def rtd_auc(run, sp, corpus, dev_texts):
    gen = load_custom(EmdGenerator, f"{run}/generator")
    disc = load_custom(RtdDiscriminator, f"{run}/discriminator")
    mask = sp.get_piece_size()
    rng = np.random.default_rng(0)
    stream = []
    for f in sorted(glob.glob(os.path.join(corpus, "**", "*.txt"), recursive=True))[-3:]:
        for line in open(f, encoding="utf-8", errors="ignore"):
            if line.strip():
                stream += sp.encode(line.strip())

    def score(rows):
        ys, ss = [], []
        with torch.no_grad():
            for r in rows:
                ids, lab = mask_row(r, len(r), rng, mask, False, mask)
                x, lab = torch.tensor([ids]), torch.tensor([lab])
                m = torch.ones_like(x)
                sel = lab.reshape(-1) > 0
                _, o = gen(x, m)
                lg = o["logits"].reshape(-1, o["logits"].shape[-1])[sel]
                d = x.clone().reshape(-1)
                d[sel] = sample(lg, torch.from_numpy(rng.random(int(sel.sum())).astype(np.float32)))
                d = d.reshape(x.shape)
                ys += ((lab > 0) & (d != lab)).reshape(-1).tolist()
                ss += rtd_logits(disc, disc.deberta.embeddings.word_embeddings.weight, d, m).reshape(-1).tolist()
        return roc_auc_score(ys, ss)

    long = [[CLS] + stream[i:i + 126] + [SEP] for i in range(0, 126 * 60, 126)]
    short = [[CLS] + stream[i:i + 25] + [SEP] for i in range(0, 25 * 300, 25)]
    vader = [[CLS] + sp.encode(t)[:62] + [SEP] for t in dev_texts[:300]]
    return score(long), score(short), score(vader)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--corpus", default="data/sotu")
    p.add_argument("--vader", default="data/vader/sentiment")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tr_x, tr_y = read_tsv(f"{args.vader}/train.tsv")
    idx = np.random.RandomState(0).permutation(len(tr_x))[:4000]  # train.tsv is sorted by label
    train = ([tr_x[i] for i in idx], tr_y[idx])
    dev = read_tsv(f"{args.vader}/dev.tsv")

    probe_rows, attn_rows, rtd_rows, depth = [], [], [], 0
    for spec in args.model:
        name, d = spec.split("=", 1)
        sp = spm.SentencePieceProcessor(model_file=f"{d}/spm.model")
        model = DebertaV2Model.from_pretrained(d, attn_implementation="eager").eval()
        acc = probes(model, sp, train, dev)
        probe_rows.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in acc.values()) + " |")
        ent = cls_attention(model, sp, dev[0][:100])
        depth = max(depth, len(ent))
        attn_rows.append(f"| {name} | " + " | ".join(f"{e:.2f}" for e in ent) + " |")
        run = os.path.dirname(os.path.normpath(d))
        if os.path.isdir(os.path.join(run, "generator")):
            a = rtd_auc(run, sp, args.corpus, dev[0])
            rtd_rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in a) + " |")
        print(f"{name}: done", file=sys.stderr, flush=True)

    print("# Transfer diagnostics\n")
    print("Generated by `scripts/transfer_diagnostics.py` (" + ", ".join(args.model) + ").\n")
    print("## Linear probes on VADER sentiment (dev accuracy, %; frozen features, 4,000 training snippets)\n")
    print("| model | " + " | ".join(acc.keys()) + " |")
    print("|---|" + "---|" * len(acc))
    print("\n".join(probe_rows) + "\n")
    print("## Entropy of [CLS]'s attention over the sentence, per layer (1.00 = uniform)\n")
    print("| model | " + " | ".join(f"layer {i + 1}" for i in range(depth)) + " |")
    print("|---|" + "---|" * depth)
    print("\n".join(attn_rows) + "\n")
    if rtd_rows:
        print("## The discriminator's RTD AUC by input (its own generator's samples)\n")
        print("| run | corpus lines, 128 tokens | corpus lines, 27 tokens | VADER snippets |")
        print("|---|---|---|---|")
        print("\n".join(rtd_rows) + "\n")


if __name__ == "__main__":
    main()
