#!/usr/bin/env python3
"""HF transformers loads what `deberta pretrain` exports.

Runs a short pre-training (small config, bundled corpus) with the release binary, then for the
exported discriminator and generator directories:
  * `DebertaV2Model.from_pretrained` reports no missing backbone keys;
  * `AutoTokenizer.from_pretrained` (DebertaV2Tokenizer on the exported spm.model) loads and
    its ids for a sample sentence equal ours (`deberta tokenize`);
  * HF's last_hidden_state on that batch equals `deberta forward` on the same directory;
  * the discriminator's word embedding equals E_G + E_delta of the last checkpoint (GDES).
Writes fixtures/pretrain_export_hf.json, which crates/cli/tests/pretrain.rs checks in CI.

Usage: .venv-ref/bin/python scripts/check_pretrain_export.py   (after cargo build --release)
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, DebertaV2Model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("DEBERTA_BIN", os.path.join(ROOT, "target", "release", "deberta"))
TEXTS = ["Call me Ishmael. Some years ago, never mind how long precisely.",
         "The whale! The white whale!"]


def main():
    tmp = tempfile.mkdtemp()
    config = {
        "model_type": "deberta-v2", "vocab_size": 8001, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": 128,
        "relative_attention": True, "position_buckets": 16, "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm", "share_att_key": True,
        "position_biased_input": False, "type_vocab_size": 0, "hidden_act": "gelu",
        "layer_norm_eps": 1e-7, "pad_token_id": 0,
    }
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f)
    run = os.path.join(tmp, "run")
    subprocess.run([BIN, "pretrain", "--config", os.path.join(tmp, "config.json"), "--steps", "20",
                    "--batch-size", "4", "--seq-len", "64", "--out", run], check=True,
                   stdout=subprocess.DEVNULL)
    report = {}
    for name in ["discriminator", "generator"]:
        d = os.path.join(run, name)
        model, info = DebertaV2Model.from_pretrained(d, output_loading_info=True)
        model.eval()
        tok = AutoTokenizer.from_pretrained(d)
        enc = tok(TEXTS, padding=True, return_tensors="pt")
        with open(os.path.join(tmp, "texts.jsonl"), "w") as f:
            for t in TEXTS:
                f.write(json.dumps({"text": t}) + "\n")
        tokenized = os.path.join(tmp, "tokenized.jsonl")
        subprocess.run([BIN, "tokenize", "--tokenizer", d, "--input", os.path.join(tmp, "texts.jsonl"),
                        "--output", tokenized], check=True, stdout=subprocess.DEVNULL)
        our_ids = [json.loads(l)["input_ids"] for l in open(tokenized) if l.strip()]
        hf_ids = [[i for i, m in zip(row, mask) if m] for row, mask in
                  zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist())]
        inputs = {"input_ids": enc["input_ids"].tolist(), "attention_mask": enc["attention_mask"].tolist()}
        with open(os.path.join(tmp, "inputs.json"), "w") as f:
            json.dump(inputs, f)
        out = os.path.join(tmp, f"{name}.safetensors")
        subprocess.run([BIN, "forward", "--model", d, "--head", "base", "--input",
                        os.path.join(tmp, "inputs.json"), "--output", out], check=True,
                       stdout=subprocess.DEVNULL)
        with torch.no_grad():
            ref = model(**enc).last_hidden_state
        got = load_file(out)["last_hidden_state"]
        mask = enc["attention_mask"].bool()
        err = ((got - ref).abs()[mask].max() / ref.abs()[mask].max()).item()
        report[name] = {
            "missing_keys": sorted(info["missing_keys"]),
            "unexpected_keys": sorted(info["unexpected_keys"]),
            "tokenizer_class": type(tok).__name__,
            "tokenizer_ids_equal": our_ids == hf_ids,
            "last_hidden_state_rel_err": err,
        }
    # E_D = E_G + E_delta at the end of the run.
    latest = open(os.path.join(run, "checkpoints", "latest")).read().strip()
    ck = os.path.join(run, "checkpoints", latest)
    e_g = load_file(os.path.join(ck, "generator.safetensors"))["deberta.embeddings.word_embeddings.weight"]
    delta = load_file(os.path.join(ck, "discriminator.safetensors"))["word_embeddings_delta"]
    exported = load_file(os.path.join(run, "discriminator", "model.safetensors"))[
        "deberta.embeddings.word_embeddings.weight"]
    report["discriminator"]["embedding_equals_e_g_plus_delta_max_abs_err"] = (exported - (e_g + delta)).abs().max().item()
    report["discriminator"]["delta_nonzero"] = bool(delta.abs().max().item() > 0)
    path = os.path.join(ROOT, "fixtures", "pretrain_export_hf.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
