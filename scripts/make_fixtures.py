#!/usr/bin/env python3
"""Oracle fixtures for deberta-rs's HF parity tests (crates/io/tests/parity.rs).

Run from the repository root:

    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch transformers sentencepiece safetensors
    .venv-ref/bin/python scripts/make_fixtures.py                    # writes fixtures/parity/*
    .venv-ref/bin/python scripts/make_fixtures.py --check-saved DIR  # HF loads what we saved

Each fixture is a small random-initialised model (non-trivial LayerNorm and bias values, a large
initializer_range so attention is far from uniform) saved the way HF saves it, token rows with
padding, and the outputs computed in float64 by HF transformers (or, for the two heads HF does not
have, by the small PyTorch modules below that follow the official microsoft/DeBERTa code).

--check-saved DIR: DIR/<fixture> holds what `deberta convert` wrote for that fixture. We load each
with HF (`output_loading_info=True`), run the fixture's inputs and write
fixtures/hf_loads_our_save.json with missing/unexpected keys and the error against expected.
"""

import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    DebertaV2Config,
    DebertaV2ForMaskedLM,
    DebertaV2ForMultipleChoice,
    DebertaV2ForQuestionAnswering,
    DebertaV2ForSequenceClassification,
    DebertaV2ForTokenClassification,
    DebertaV2Model,
)
from transformers.activations import ACT2FN

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
PARITY = os.path.join(ROOT, "parity")

TINY = dict(
    vocab_size=120,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    initializer_range=0.2,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)
V3 = dict(
    TINY,
    relative_attention=True,
    position_buckets=256,
    max_relative_positions=-1,
    max_position_embeddings=512,
    pos_att_type=["p2c", "c2p"],
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    position_biased_input=False,
    type_vocab_size=0,
    layer_norm_eps=1e-7,
)


# --- heads HF does not have: official RTD head and Enhanced Mask Decoder ---------------------


class RtdDiscriminator(nn.Module):
    """DebertaV2Model + official LMMaskPredictionHead (`mask_predictions.*`)."""

    def __init__(self, config):
        super().__init__()
        self.deberta = DebertaV2Model(config)
        h = config.hidden_size
        self.mask_predictions = nn.Module()
        self.mask_predictions.dense = nn.Linear(h, h)
        self.mask_predictions.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.mask_predictions.classifier = nn.Linear(h, 1)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, input_ids, attention_mask):
        h = self.deberta(input_ids, attention_mask=attention_mask).last_hidden_state
        mp = self.mask_predictions
        s = mp.LayerNorm(h + h[:, 0:1, :])
        s = self.act(mp.dense(s))
        return h, {"logits": mp.classifier(s).squeeze(-1)}


class EmdGenerator(nn.Module):
    """DebertaV2Model + official EnhancedMaskDecoder with a tied MLM head (`lm_predictions.*`).

    The V3 generator keeps an absolute position table (HF's V3 embeddings have none), saved as
    `deberta.embeddings.position_embeddings.weight`; the EMD query is positions + h[-2], then the
    last encoder layer runs twice with h[-2] as keys/values.
    """

    def __init__(self, config):
        super().__init__()
        self.deberta = DebertaV2Model(config)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        h = config.hidden_size
        self.lm_predictions = nn.Module()
        self.lm_predictions.lm_head = nn.Module()
        head = self.lm_predictions.lm_head
        head.dense = nn.Linear(h, h)
        head.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        head.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.act = ACT2FN[config.hidden_act]

    def state_dict_hf(self):
        sd = {k: v for k, v in self.state_dict().items() if not k.startswith("position_embeddings.")}
        sd["deberta.embeddings.position_embeddings.weight"] = self.position_embeddings.weight
        return sd

    def forward(self, input_ids, attention_mask):
        enc = self.deberta.encoder
        out = self.deberta(input_ids, attention_mask=attention_mask, output_hidden_states=True)
        h = out.hidden_states[-2]
        L = input_ids.shape[1]
        query = self.position_embeddings(torch.arange(L))[None] + h
        mask4 = enc.get_attention_mask(attention_mask)
        rel_pos = enc.get_rel_pos(h)
        rel = enc.get_rel_embedding()
        layer = enc.layer[-1]
        for _ in range(2):
            query = layer(h, mask4, query_states=query, relative_pos=rel_pos, rel_embeddings=rel)[0]
        head = self.lm_predictions.lm_head
        x = head.LayerNorm(self.act(head.dense(query)))
        logits = x @ self.deberta.embeddings.word_embeddings.weight.t() + head.bias
        return out.last_hidden_state, {"logits": logits}


# --- helpers ----------------------------------------------------------------------------------


def perturb(model):
    """Non-trivial LayerNorm scales/shifts and biases, so no parameter is at a symmetric default."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.mul_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))


def token_rows(batch, length, vocab, lengths):
    ids = torch.randint(4, vocab, (batch, length))
    mask = torch.zeros(batch, length, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, 0] = 1
        ids[b, n - 1] = 2
        ids[b, n:] = 0
        mask[b, :n] = 1
    return ids, mask


def hf_outputs(model, kwargs):
    with torch.no_grad():
        o = model(**kwargs, output_hidden_states=True)
    out = {"last_hidden_state": o.hidden_states[-1]}
    for key in ("logits", "start_logits", "end_logits"):
        if getattr(o, key, None) is not None:
            out[key] = getattr(o, key)
    return out


def save_expected(d, outputs):
    save_file({k: v.float().contiguous() for k, v in outputs.items()}, os.path.join(d, "expected.safetensors"))


def fixture(name, cls, cfg, rows, head, weights="safetensors", covers=(), choices=None, tweak_config=None):
    """Builds, saves and evaluates one HF-class fixture. `rows` = (batch, length, real lengths)."""
    d = os.path.join(PARITY, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    config = DebertaV2Config(**cfg)
    model = cls(config)
    perturb(model)
    model.eval()

    if weights == "safetensors":
        model.save_pretrained(d)
    elif weights == "sharded-safetensors":
        model.save_pretrained(d, max_shard_size="20KB")
    else:
        model.config.architectures = [cls.__name__]
        model.config.save_pretrained(d)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        torch.save(sd, os.path.join(d, "pytorch_model.bin"), _use_new_zipfile_serialization=(weights == "pytorch-zip"))
    if tweak_config:
        path = os.path.join(d, "config.json")
        c = json.load(open(path))
        tweak_config(c)
        json.dump(c, open(path, "w"), indent=2)

    batch, length, lengths = rows
    n_rows = batch * (choices or 1)
    ids, mask = token_rows(n_rows, length, config.vocab_size, lengths)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if config.type_vocab_size > 0:
        types = torch.randint(0, config.type_vocab_size, (n_rows, length))
        inputs["token_type_ids"] = types
    if choices:
        inputs = {k: v.view(batch, choices, length) for k, v in inputs.items()}
    json.dump({k: v.tolist() for k, v in inputs.items()}, open(os.path.join(d, "inputs.json"), "w"))

    # Reload from disk, as a user would, then evaluate in float64.
    reloaded = cls.from_pretrained(d).double().eval()
    outputs = hf_outputs(reloaded, inputs)
    if choices:
        outputs["last_hidden_state"] = outputs["last_hidden_state"].reshape(n_rows, length, -1)
    save_expected(d, outputs)
    json.dump({"head": head, "weights": weights, "covers": list(covers)}, open(os.path.join(d, "meta.json"), "w"), indent=2)


def custom_fixture(name, cls, cfg, rows, head, architecture, covers, extras=None):
    d = os.path.join(PARITY, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    config = DebertaV2Config(**cfg)
    model = cls(config)
    perturb(model)
    model.eval()
    sd = model.state_dict_hf() if hasattr(model, "state_dict_hf") else dict(model.state_dict())
    sd.update(extras(config) if extras else {})
    save_file({k: v.float().contiguous() for k, v in sd.items()}, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    c = config.to_dict()
    c["architectures"] = [architecture]
    json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2)

    batch, length, lengths = rows
    ids, mask = token_rows(batch, length, config.vocab_size, lengths)
    json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist()}, open(os.path.join(d, "inputs.json"), "w"))
    model = model.double()
    with torch.no_grad():
        h, outs = model(ids, mask)
    save_expected(d, dict(last_hidden_state=h, **outs))
    json.dump({"head": head, "weights": "safetensors", "covers": list(covers)}, open(os.path.join(d, "meta.json"), "w"), indent=2)


def drop_pad_token_id(c):
    c.pop("pad_token_id", None)


def build_all():
    torch.manual_seed(0)
    fixture(
        "v3_seqcls_long", DebertaV2ForSequenceClassification,
        dict(V3, pos_att_type="p2c|c2p", num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2}),
        (2, 320, [320, 250]), "sequence-classification",
        covers=["V3 config", "pos_att_type string", "256 buckets, 320 tokens", "no pad_token_id", "id2label", "padding"],
        tweak_config=drop_pad_token_id,
    )
    fixture(
        "v2_conv_mlm_legacy", DebertaV2ForMaskedLM,
        dict(TINY, relative_attention=True, position_buckets=32, max_relative_positions=-1, max_position_embeddings=128,
             pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=False, position_biased_input=False,
             conv_kernel_size=3, conv_act="gelu", legacy=True),
        (3, 40, [40, 30, 12]), "masked-lm", weights="pytorch-zip",
        covers=["conv layer", "share_att_key false (pos_key_proj, pos_query_proj)", "pos_att_type list", "legacy cls.predictions", "pytorch_model.bin zip"],
    )
    fixture(
        "nobucket_c2p_tokcls", DebertaV2ForTokenClassification,
        dict(TINY, relative_attention=True, position_buckets=0, max_relative_positions=16, max_position_embeddings=64,
             pos_att_type=["c2p"], embedding_size=24, type_vocab_size=2, position_biased_input=True, share_att_key=True,
             norm_rel_ebd="none", num_labels=5),
        (2, 48, [48, 30]), "token-classification", weights="pytorch-legacy",
        covers=["position_buckets 0 (clamped distances beyond 16)", "c2p only", "embed_proj", "type_vocab_size 2", "position_biased_input", "legacy pickle pytorch_model.bin"],
    )
    fixture(
        "p2c_qa_sharded", DebertaV2ForQuestionAnswering,
        dict(TINY, relative_attention=True, pos_att_type=["p2c"], share_att_key=False, position_buckets=-1,
             max_relative_positions=-1, max_position_embeddings=64, position_biased_input=False, norm_rel_ebd="layer_norm"),
        (2, 40, [40, 33]), "question-answering", weights="sharded-safetensors",
        covers=["p2c only", "pos_query_proj", "max_relative_positions -1 without buckets", "sharded safetensors"],
    )
    fixture(
        "norel_multichoice", DebertaV2ForMultipleChoice,
        dict(TINY, relative_attention=False, position_biased_input=True, pos_att_type=["p2c", "c2p"], type_vocab_size=2,
             hidden_act="gelu_new", max_position_embeddings=64),
        (2, 20, [20, 15, 9, 20, 18, 5]), "multiple-choice", choices=3,
        covers=["relative_attention false", "absolute positions", "token types", "gelu_new", "[B][C][L] input"],
    )
    v3_small = dict(V3, position_buckets=64, max_position_embeddings=128, num_hidden_layers=3)
    custom_fixture(
        "v3_emd_generator", EmdGenerator, v3_small, (2, 60, [60, 41]), "emd", "DebertaV2ForEnhancedMaskedLM",
        covers=["Enhanced Mask Decoder", "generator position table"],
    )
    custom_fixture(
        "v3_rtd_discriminator", RtdDiscriminator, dict(v3_small, num_hidden_layers=2), (2, 60, [60, 37]), "rtd",
        "DebertaV2ForReplacedTokenDetection",
        covers=["RTD head", "official extras: unused position_embeddings, GDES word_embeddings._weight"],
        extras=lambda c: {
            "deberta.embeddings.position_embeddings.weight": torch.randn(c.max_position_embeddings, c.hidden_size),
            "deberta.embeddings.word_embeddings._weight": torch.randn(c.vocab_size, c.hidden_size),
        },
    )
    fixture(
        "v3_base_model", DebertaV2Model, dict(V3, position_buckets=16, max_position_embeddings=64),
        (2, 70, [70, 52]), "base",
        covers=["bare encoder (no deberta. prefix)", "70 tokens past max_position_embeddings 64 with 16 buckets"],
    )
    fixture(
        "v3_mlm_nonlegacy", DebertaV2ForMaskedLM, dict(V3, position_buckets=32, max_position_embeddings=128, legacy=False),
        (2, 36, [36, 20]), "masked-lm", covers=["lm_predictions.lm_head (legacy false)"],
    )
    fixture(
        "v3_regression", DebertaV2ForSequenceClassification, dict(V3, position_buckets=32, max_position_embeddings=128, num_labels=1),
        (3, 24, [24, 10, 17]), "sequence-classification", covers=["1 label (regression)"],
    )
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(PARITY) for f in fs)
    print(f"fixtures/parity: {total / 1e6:.2f} MB")


# --- HF loads what we save ------------------------------------------------------------------


HF_CLASSES = {
    "DebertaV2Model": DebertaV2Model,
    "DebertaV2ForSequenceClassification": DebertaV2ForSequenceClassification,
    "DebertaV2ForMultipleChoice": DebertaV2ForMultipleChoice,
    "DebertaV2ForTokenClassification": DebertaV2ForTokenClassification,
    "DebertaV2ForQuestionAnswering": DebertaV2ForQuestionAnswering,
    "DebertaV2ForMaskedLM": DebertaV2ForMaskedLM,
}


def check_saved(saved_root):
    report = {}
    for name in sorted(os.listdir(saved_root)):
        d = os.path.join(saved_root, name)
        ref_dir = os.path.join(PARITY, name)
        if not os.path.isdir(ref_dir):
            continue
        arch = json.load(open(os.path.join(d, "config.json")))["architectures"][0]
        cls = HF_CLASSES.get(arch, DebertaV2Model)  # RTD / EMD: HF loads the backbone
        model, info = cls.from_pretrained(d, output_loading_info=True)
        model = model.double().eval()
        inputs = {k: torch.tensor(v) for k, v in json.load(open(os.path.join(ref_dir, "inputs.json"))).items()}
        outputs = hf_outputs(model, inputs)
        expected = load_file(os.path.join(ref_dir, "expected.safetensors"))
        mask = inputs["attention_mask"].reshape(-1, inputs["attention_mask"].shape[-1]).bool()
        errors = {}
        for key, ref in expected.items():
            if key not in outputs:
                continue
            ours = outputs[key].float().reshape(ref.shape)
            if ref.dim() >= 2 and tuple(ref.shape[:2]) == tuple(mask.shape):
                ours, ref = ours[mask], ref[mask]
            errors[key] = float((ours - ref).abs().max() / ref.abs().max())
        prefix = "deberta." if cls is not DebertaV2Model else ""
        backbone = [k for k in info["missing_keys"] if k.startswith(prefix + "embeddings.") or k.startswith(prefix + "encoder.")]
        report[name] = {
            "architecture": arch,
            "loaded_as": cls.__name__,
            "missing_keys": sorted(info["missing_keys"]),
            "missing_backbone_keys": sorted(backbone),
            "unexpected_keys": sorted(info["unexpected_keys"]),
            "max_rel_err": errors,
        }
        worst = max(errors.values()) if errors else float("nan")
        print(f"{name:24} {cls.__name__:36} missing backbone {len(backbone)}  unexpected {len(info['unexpected_keys'])}  max rel err {worst:.2e}")
    path = os.path.join(ROOT, "hf_loads_our_save.json")
    json.dump(report, open(path, "w"), indent=2, sort_keys=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-saved", metavar="DIR")
    args = parser.parse_args()
    if args.check_saved:
        check_saved(args.check_saved)
    else:
        build_all()
    sys.exit(0)
