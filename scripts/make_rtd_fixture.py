#!/usr/bin/env python3
"""PyTorch reference for one RTD pre-training step (gradient parity).

    .venv-ref/bin/python scripts/make_rtd_fixture.py      # writes fixtures/rtd_step/

A tiny EMD generator and RTD discriminator (HF DebertaV2Model + the official heads, see
make_fixtures.py), dropout off, a fixed batch with fixed picks and fixed sampled replacements
(one replacement equals its original: "not replaced"). In float64:
  generator:     MLM cross-entropy over the picks (mean), gradients of every generator parameter;
  discriminator: E_D = stop_grad(E_G) + E_delta, input = picks replaced, lambda * mean BCE over
                 real tokens, gradients of every discriminator parameter and of E_delta
                 (stored as deberta.embeddings.word_embeddings._weight, the official name).
"""

import json
import os
import shutil
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import FIXTURES_DIR, V3, EmdGenerator, RtdDiscriminator, perturb  # noqa: E402
from transformers import DebertaV2Config  # noqa: E402

LAMBDA = 50.0
OUT = os.path.join(FIXTURES_DIR, "rtd_step")


def save_model(model, config, d, architecture, extra=None):
    os.makedirs(d)
    sd = dict(model.checkpoint())
    sd.update(extra or {})
    save_file({k: v.float().contiguous() for k, v in sd.items()}, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    c = config.to_dict()
    c["architectures"] = [architecture]
    json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2)


def grads(model, prefix, rename=None):
    out = {}
    for name, p in model.named_parameters():
        name = (rename or {}).get(name, name)
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        out[prefix + name] = g
    return out


def main():
    torch.manual_seed(0)
    shutil.rmtree(OUT, ignore_errors=True)
    base = dict(V3, vocab_size=60, position_buckets=16, max_position_embeddings=64,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    gcfg = DebertaV2Config(**dict(base, num_hidden_layers=2))
    dcfg = DebertaV2Config(**dict(base, num_hidden_layers=3))
    gen, disc = EmdGenerator(gcfg), RtdDiscriminator(dcfg)
    perturb(gen, gcfg)
    perturb(disc, dcfg)
    delta = 0.05 * torch.randn(dcfg.vocab_size, dcfg.hidden_size)
    save_model(gen, gcfg, os.path.join(OUT, "generator"), "DebertaV2ForEnhancedMaskedLM")
    save_model(disc, dcfg, os.path.join(OUT, "discriminator"), "DebertaV2ForReplacedTokenDetection",
               {"deberta.embeddings.word_embeddings._weight": delta})

    B, L, MASK = 2, 24, 59
    ids = torch.randint(4, MASK, (B, L))
    mask = torch.ones(B, L, dtype=torch.long)
    ids[:, 0], ids[0, -1] = 1, 2
    ids[1, 18], ids[1, 19:], mask[1, 19:] = 2, 0, 0
    picks = [(0, 3), (0, 9), (0, 15), (0, 20), (1, 2), (1, 7), (1, 13)]
    labels = torch.zeros(B, L, dtype=torch.long)
    repl = torch.zeros(B, L, dtype=torch.long)
    for k, (b, i) in enumerate(picks):
        labels[b, i] = ids[b, i]
        ids[b, i] = MASK
        repl[b, i] = labels[b, i] if k == 2 else torch.randint(4, MASK, ()).item()
    json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": labels.tolist(),
               "replacements": repl.tolist(), "lambda": LAMBDA}, open(os.path.join(OUT, "batch.json"), "w"))

    gen, disc = gen.double(), disc.double()
    delta = delta.double().requires_grad_()
    # Generator step.
    _, outs = gen(ids, mask)
    logits = outs["logits"].reshape(B * L, -1)
    sel = labels.reshape(-1) > 0
    mlm = F.cross_entropy(logits[sel], labels.reshape(-1)[sel])
    mlm.backward()
    expected = {"mlm_loss": mlm.detach().reshape(1)}
    expected.update(grads(gen, "generator.", {"position_embeddings.weight": "deberta.embeddings.position_embeddings.weight"}))

    # Discriminator step (GDES).
    e_d = gen.deberta.embeddings.word_embeddings.weight.detach() + delta
    picked = labels > 0
    d_ids = torch.where(picked, repl, ids)
    targets = (picked & (repl != labels)).double()
    h = disc.deberta(inputs_embeds=e_d[d_ids], attention_mask=mask).last_hidden_state
    mp = disc.mask_predictions
    s = disc.act(mp.dense(mp.LayerNorm(h + h[:, 0:1, :])))
    rtd_logits = mp.classifier(s).squeeze(-1)
    m = mask.bool()
    rtd = LAMBDA * F.binary_cross_entropy_with_logits(rtd_logits[m], targets[m])
    rtd.backward()
    expected["rtd_loss"] = rtd.detach().reshape(1)
    expected.update(grads(disc, "discriminator."))
    expected["discriminator.deberta.embeddings.word_embeddings._weight"] = delta.grad
    save_file({k: v.float().contiguous() for k, v in expected.items()}, os.path.join(OUT, "expected.safetensors"))
    print(f"mlm {mlm.item():.6f} rtd {rtd.item():.6f}; {len(expected)} tensors -> {OUT}")


if __name__ == "__main__":
    main()
