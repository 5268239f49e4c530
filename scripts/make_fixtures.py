#!/usr/bin/env python3
"""Oracle fixtures for deberta-rs's HF parity tests (crates/io/tests/parity.rs).

Run from the repository root (CPU is enough, about 20 s):

    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch transformers safetensors
    .venv-ref/bin/python scripts/make_fixtures.py                     # (re)writes fixtures/parity/*
    .venv-ref/bin/python scripts/make_fixtures.py --only v3_base_model  # one fixture
    .venv-ref/bin/python scripts/make_fixtures.py --check-saved DIR   # HF loads what we saved

Made with torch 2.15 and transformers 5.24.

Each fixture in fixtures/parity/<name>/ is a tiny random-initialised model saved the way HF saves
it, plus:
  inputs.json           input_ids / attention_mask [/ token_type_ids], [B][L] or [B][C][L] for
                        multiple choice; [CLS]=1 first, [SEP]=2 last, random ids in [4, vocab),
                        padding id 0 with mask 0; every fixture has a padded row.
  expected.safetensors  float32 copies of float64 reference outputs: `last_hidden_state`
                        [rows, L, H] (rows = B, or B*C for multiple choice) and the head's output
                        under HF's name (`logits`, or `start_logits` + `end_logits`).
  meta.json             {"head", "weights" (file format), "covers" (the switches it covers)}.

The weights are not HF's defaults: initializer_range 0.2 (attention far from uniform, relative
terms matter) and noise on every LayerNorm weight (x(1 + 0.2 N)) and every bias (+0.1 N), so no
parameter sits at a symmetric default. Every fixture has its own seed, so changing one fixture
leaves the others byte-identical. The reference runs in float64 (`model.double()`, eval mode);
the saved weights are float32. After saving, every fixture is reloaded from disk (HF
`from_pretrained`, or our module for the two heads HF lacks) and must reproduce the reference
exactly; the script prints a diagnostic line per fixture (how peaked attention is, how much the
relative-position terms change the output, which relative-embedding rows the inputs touch).

HF has no class for two official DeBERTa heads; small PyTorch modules below follow the official
microsoft/DeBERTa code for them: the replaced-token-detection head (`mask_predictions.*`) and the
Enhanced Mask Decoder generator (`lm_predictions.lm_head.*` + an absolute position table).

--check-saved DIR: DIR/<fixture> holds what `deberta convert` wrote for that fixture
(scripts/check_hf_loads_our_save.sh). Each is loaded with HF (`output_loading_info=True`; the
RTD/EMD checkpoints as a bare DebertaV2Model), run on the fixture's inputs in float64 and compared
with expected.safetensors over non-padding positions; the result goes to
fixtures/hf_loads_our_save.json (or --report PATH).
"""

import argparse
import copy
import json
import os
import shutil
import sys
from contextlib import contextmanager

import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    DebertaV2Config,
    DebertaV2ForMaskedLM,
    DebertaV2ForMultipleChoice,
    DebertaV2ForQuestionAnswering,
    DebertaV2ForSequenceClassification,
    DebertaV2ForTokenClassification,
    DebertaV2Model,
)
from transformers.activations import ACT2FN
from transformers.models.deberta_v2 import modeling_deberta_v2 as hf_deberta

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIXTURES_DIR = os.path.join(REPO, "fixtures")
PARITY = os.path.join(FIXTURES_DIR, "parity")

TINY = dict(
    vocab_size=120,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    initializer_range=0.2,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    layer_norm_eps=1e-7,
)
# DeBERTa-V3 (xsmall ... large) switches, at tiny width.
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
    hidden_act="gelu",
)

# Output tensors indexed [rows, L, ...], compared over non-padding positions only.
PER_POSITION = {"last_hidden_state", "start_logits", "end_logits"}
PER_POSITION_LOGITS_HEADS = {"token-classification", "masked-lm", "rtd", "emd"}


# --- heads HF does not have (official microsoft/DeBERTa code) ----------------------------------


def hf_style_init(module, std):
    """HF's DebertaV2PreTrainedModel init for our own head modules: N(0, std) weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class RtdDiscriminator(nn.Module):
    """DebertaV2Model + the official replaced-token-detection head (LMMaskPredictionHead).

    logits = classifier(gelu(dense(LayerNorm(h + h[:, 0:1])))).squeeze(-1): the [CLS] state is
    added to every token before the head.
    """

    architecture = "DebertaV2ForReplacedTokenDetection"

    def __init__(self, config):
        super().__init__()
        self.deberta = DebertaV2Model(config)
        h = config.hidden_size
        self.mask_predictions = nn.Module()
        self.mask_predictions.dense = nn.Linear(h, h)
        self.mask_predictions.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.mask_predictions.classifier = nn.Linear(h, 1)
        hf_style_init(self.mask_predictions, config.initializer_range)
        self.act = ACT2FN[config.hidden_act]

    def checkpoint(self):
        return dict(self.state_dict())

    def load_checkpoint(self, sd):
        # The official extras (unused position table, GDES `_weight`) are not part of the model.
        extras = {"deberta.embeddings.position_embeddings.weight", "deberta.embeddings.word_embeddings._weight"}
        self.load_state_dict({k: v for k, v in sd.items() if k not in extras}, strict=True)

    def forward(self, input_ids, attention_mask):
        h = self.deberta(input_ids, attention_mask=attention_mask).last_hidden_state
        mp = self.mask_predictions
        s = mp.LayerNorm(h + h[:, 0:1, :])
        s = self.act(mp.dense(s))
        return h, {"logits": mp.classifier(s).squeeze(-1)}


class EmdGenerator(nn.Module):
    """DebertaV2Model + the official EnhancedMaskDecoder and tied MLM head (`lm_predictions.*`).

    HF's V3 embeddings have no absolute position table; the official V3 generator keeps one for
    the EMD query, saved as `deberta.embeddings.position_embeddings.weight`. Forward: h = the
    second-to-last encoder output, query = positions + h, then the LAST encoder layer twice with
    h as keys/values (residual = query); the MLM head on every position.
    """

    architecture = "DebertaV2ForEnhancedMaskedLM"
    POSITION_KEY = "deberta.embeddings.position_embeddings.weight"

    def __init__(self, config):
        super().__init__()
        self.deberta = DebertaV2Model(config)
        h = config.hidden_size
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.lm_predictions = nn.Module()
        self.lm_predictions.lm_head = nn.Module()
        head = self.lm_predictions.lm_head
        head.dense = nn.Linear(h, h)
        head.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        head.bias = nn.Parameter(torch.zeros(config.vocab_size))
        hf_style_init(self.position_embeddings, config.initializer_range)
        hf_style_init(self.lm_predictions, config.initializer_range)
        self.act = ACT2FN[config.hidden_act]

    def checkpoint(self):
        sd = {k: v for k, v in self.state_dict().items() if not k.startswith("position_embeddings.")}
        sd[self.POSITION_KEY] = self.position_embeddings.weight
        return sd

    def load_checkpoint(self, sd):
        sd = dict(sd)
        sd["position_embeddings.weight"] = sd.pop(self.POSITION_KEY)
        self.load_state_dict(sd, strict=True)

    def forward(self, input_ids, attention_mask):
        enc = self.deberta.encoder
        out = self.deberta(input_ids, attention_mask=attention_mask, output_hidden_states=True)
        h = out.hidden_states[-2]
        length = input_ids.shape[1]
        query = self.position_embeddings(torch.arange(length))[None] + h
        # As DebertaV2Model's z_steps code does.
        mask4 = enc.get_attention_mask(attention_mask)
        rel_pos = enc.get_rel_pos(h)
        rel_embeddings = enc.get_rel_embedding()
        layer = enc.layer[-1]
        for _ in range(2):
            query = layer(h, mask4, query_states=query, relative_pos=rel_pos, rel_embeddings=rel_embeddings)[0]
        head = self.lm_predictions.lm_head
        x = head.LayerNorm(self.act(head.dense(query)))
        logits = x @ self.deberta.embeddings.word_embeddings.weight.t() + head.bias
        return out.last_hidden_state, {"logits": logits}


# --- helpers ----------------------------------------------------------------------------------


def perturb(model, config):
    """Non-trivial LayerNorm scales/shifts and biases (Linear, conv, LM head), after HF's init.

    A relative table that is not layer-normed (`norm_rel_ebd: none`) is scaled to unit size, like
    the normed one, so the relative terms are not drowned out by the content terms."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("encoder.rel_embeddings.weight") and "layer_norm" not in getattr(config, "norm_rel_ebd", "none"):
                p.mul_(1 / config.initializer_range)
            elif name.endswith("LayerNorm.weight"):
                p.mul_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))


def make_inputs(config, length, lengths, choices=None):
    """Token rows: [CLS] random... [SEP] then padding; `lengths` are the real lengths per row."""
    rows = len(lengths)
    assert max(lengths) == length and min(lengths) < length, "need a full row and a padded row"
    ids = torch.randint(4, config.vocab_size, (rows, length))
    mask = torch.zeros(rows, length, dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, 0], ids[r, n - 1] = 1, 2
        ids[r, n:] = 0
        mask[r, :n] = 1
    inputs = {"input_ids": ids, "attention_mask": mask}
    if config.type_vocab_size > 0:
        inputs["token_type_ids"] = torch.randint(0, config.type_vocab_size, (rows, length)) * mask
    if choices:
        assert rows % choices == 0
        inputs = {k: v.view(rows // choices, choices, length) for k, v in inputs.items()}
    return inputs


def hf_outputs(model, inputs):
    """last_hidden_state ([rows, L, H]; multiple choice flattened) + the head's outputs, HF names."""
    with torch.no_grad():
        o = model(**inputs, output_hidden_states=True)
    out = {"last_hidden_state": o.hidden_states[-1]}
    for key in ("logits", "start_logits", "end_logits"):
        if getattr(o, key, None) is not None:
            out[key] = getattr(o, key)
    return out


def flat_mask(inputs):
    m = inputs["attention_mask"]
    return m.reshape(-1, m.shape[-1]).bool()


def rel_err(ours, ref, key, head, mask):
    """max |ours - ref| / max |ref|, over non-padding positions for per-position tensors."""
    ours = ours.double().reshape(ref.shape)
    ref = ref.double()
    if key in PER_POSITION or (key == "logits" and head in PER_POSITION_LOGITS_HEADS):
        ours, ref = ours[mask], ref[mask]
    return float((ours - ref).abs().max() / ref.abs().max())


def assert_same(ref, got, what, tol=1e-12):
    assert ref.keys() == got.keys(), (what, ref.keys(), got.keys())
    for k in ref:
        err = float((ref[k] - got[k].to(ref[k].dtype)).abs().max() / ref[k].abs().max())
        assert err <= tol, f"{what}: {k} differs by {err:.3e}"


def fresh_dir(name):
    """Empties fixtures/parity/<name>; returns it with the previous files' bytes."""
    d = os.path.join(PARITY, name)
    previous = {}
    if os.path.isdir(d):
        for f in os.listdir(d):
            with open(os.path.join(d, f), "rb") as fh:
                previous[f] = fh.read()
        shutil.rmtree(d)
    os.makedirs(d)
    return d, previous


def keep_identical_pickles(d, previous):
    """torch's legacy (non-zip) format names storages by memory address, so its bytes change on
    every run; put back the previous file when it holds the same tensors (reruns keep git clean)."""
    path = os.path.join(d, "pytorch_model.bin")
    old = previous.get("pytorch_model.bin")
    if old is None or not os.path.exists(path):
        return
    with open(path, "rb") as fh:
        if fh.read() == old:
            return
    tmp = path + ".previous"
    with open(tmp, "wb") as fh:
        fh.write(old)
    try:
        a, b = torch.load(tmp), torch.load(path)
        same = a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    except Exception:
        same = False
    if same:
        os.replace(tmp, path)
    else:
        os.remove(tmp)


def edit_config(d, fn):
    path = os.path.join(d, "config.json")
    with open(path) as fh:
        c = json.load(fh)
    fn(c)
    with open(path, "w") as fh:
        json.dump(c, fh, indent=2, sort_keys=True)
        fh.write("\n")


def write_json(path, obj, indent=None):
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=indent)
        fh.write("\n")


def write_common(d, inputs, outputs, head, weights, covers):
    write_json(os.path.join(d, "inputs.json"), {k: v.tolist() for k, v in inputs.items()})
    save_file({k: v.float().contiguous() for k, v in outputs.items()}, os.path.join(d, "expected.safetensors"))
    write_json(os.path.join(d, "meta.json"), {"head": head, "weights": weights, "covers": list(covers)}, indent=2)


def dir_size(d):
    return sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(d) for f in fs)


@contextmanager
def without_relative_terms():
    """HF attention with the c2p/p2c terms dropped (content-to-content only)."""
    orig = hf_deberta.DisentangledSelfAttention.disentangled_attention_bias
    hf_deberta.DisentangledSelfAttention.disentangled_attention_bias = lambda self, q, *a, **k: torch.zeros((), dtype=q.dtype)
    try:
        yield
    finally:
        hf_deberta.DisentangledSelfAttention.disentangled_attention_bias = orig


def diagnostics(name, backbone, inputs):
    """One line: attention peakedness, effect of the relative terms, relative-table rows touched."""
    ids = inputs["input_ids"].reshape(-1, inputs["input_ids"].shape[-1])
    kw = {k: v.reshape(ids.shape) for k, v in inputs.items()}
    mask = flat_mask(inputs)
    with torch.no_grad():
        o = backbone(**kw, output_attentions=True)
    # Mean over real query rows of the largest attention probability vs 1/(real length).
    n = mask.sum(-1).double()
    peak = torch.stack([a.max(-1).values.mean(1) for a in o.attentions])  # [layers, rows, L]
    peak = float(peak[:, mask].mean())
    uniform = float((1 / n).mean())
    line = f"{name:24} attn max-prob {peak:.3f} (uniform {uniform:.3f})"
    att = backbone.encoder.layer[0].attention.self
    if att.relative_attention and att.pos_att_type:
        with without_relative_terms(), torch.no_grad():
            h0 = backbone(**kw).last_hidden_state
        h = o.last_hidden_state
        effect = float((h - h0)[mask].abs().max() / h[mask].abs().max())
        L = ids.shape[1]
        span = att.pos_ebd_size
        rel = hf_deberta.build_relative_position(
            torch.zeros(L, 1), torch.zeros(L, 1), bucket_size=att.position_buckets, max_position=att.max_relative_positions
        )
        c2p = torch.clamp(rel + span, 0, 2 * span - 1)
        p2c = torch.clamp(-rel + span, 0, 2 * span - 1)
        line += (
            f"  rel-terms effect {effect:.2f}  max |r| {L - 1} -> bucket {int(rel.abs().max())}"
            f"  c2p rows {int(c2p.min())}..{int(c2p.max())} p2c rows {int(p2c.min())}..{int(p2c.max())} of 0..{2 * span - 1}"
        )
    print(line)


# --- generic builders -------------------------------------------------------------------------


def hf_fixture(name, seed, cls, cfg, head, rows, weights="safetensors", covers=(), choices=None, tweak_config=None):
    """An HF-class fixture. `rows` = (L, real length per row); for multiple choice the rows are
    batch-major [b0c0, b0c1, ..., b1c0, ...]. `tweak_config` edits the saved config.json."""
    torch.manual_seed(seed)
    d, previous = fresh_dir(name)
    config = DebertaV2Config(**cfg)
    model = cls(config)
    perturb(model, config)
    model.eval()

    if weights == "safetensors":
        model.save_pretrained(d)
    elif weights == "sharded-safetensors":
        model.save_pretrained(d, max_shard_size="20KB")
        shards = [f for f in os.listdir(d) if f.startswith("model-") and f.endswith(".safetensors")]
        assert len(shards) >= 2 and os.path.exists(os.path.join(d, "model.safetensors.index.json")), shards
    elif weights in ("pytorch-zip", "pytorch-legacy"):
        model.config.architectures = [cls.__name__]
        model.config.save_pretrained(d)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        path = os.path.join(d, "pytorch_model.bin")
        torch.save(sd, path, _use_new_zipfile_serialization=(weights == "pytorch-zip"))
    else:
        raise ValueError(weights)
    if tweak_config:
        edit_config(d, tweak_config)

    length, lengths = rows
    inputs = make_inputs(config, length, lengths, choices)
    ref_model = copy.deepcopy(model).double().eval()
    outputs = hf_outputs(ref_model, inputs)
    write_common(d, inputs, outputs, head, weights, covers)
    keep_identical_pickles(d, previous)

    # Verify: HF reloads the files as a user would, every key matches, outputs reproduce.
    reloaded, info = cls.from_pretrained(d, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"{name}: loading info {problems}"
    assert_same(outputs, hf_outputs(reloaded.double().eval(), inputs), f"{name} reload")
    diagnostics(name, ref_model if cls is DebertaV2Model else ref_model.deberta, inputs)
    return reloaded.config


def custom_fixture(name, seed, cls, cfg, head, rows, covers=(), extras=None):
    """A fixture for a head HF lacks: weights via safetensors.torch.save_file, reference from our
    module; `extras(config)` adds checkpoint tensors the loader must accept and ignore."""
    torch.manual_seed(seed)
    d, _ = fresh_dir(name)
    config = DebertaV2Config(**cfg)
    model = cls(config)
    perturb(model, config)
    model.eval()
    sd = model.checkpoint()
    if extras:
        sd.update(extras(config))
    save_file({k: v.float().contiguous() for k, v in sd.items()}, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    config.architectures = [cls.architecture]
    config.save_pretrained(d)

    length, lengths = rows
    inputs = make_inputs(config, length, lengths)
    ref_model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        h, head_out = ref_model(**inputs)
    outputs = dict(last_hidden_state=h, **head_out)
    write_common(d, inputs, outputs, head, "safetensors", covers)

    # Verify: our module reloads the file with every key used; HF loads the backbone from it.
    fresh = cls(DebertaV2Config.from_pretrained(d))
    fresh.load_checkpoint(load_file(os.path.join(d, "model.safetensors")))
    with torch.no_grad():
        h2, head2 = fresh.double().eval()(**inputs)
    assert_same(outputs, dict(last_hidden_state=h2, **head2), f"{name} reload")
    backbone, info = DebertaV2Model.from_pretrained(d, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], f"{name}: {info}"
    assert_same({"last_hidden_state": h}, {"last_hidden_state": hf_outputs(backbone.double().eval(), inputs)["last_hidden_state"]}, f"{name} HF backbone")
    diagnostics(name, ref_model.deberta, inputs)


# --- the fixtures -----------------------------------------------------------------------------


def drop_pad_token_id_and_use_string_pos_att_type(c):
    # Older V3 configs: no pad_token_id (HF's default 0 applies) and pos_att_type "p2c|c2p"
    # (HF's config parses the string into a list and save_pretrained writes the list back).
    c.pop("pad_token_id")
    c["pos_att_type"] = "p2c|c2p"


def v3_seqcls_long():
    cfg = dict(V3, num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    config = hf_fixture(
        "v3_seqcls_long", 1, DebertaV2ForSequenceClassification, cfg, "sequence-classification",
        rows=(320, [320, 250]),
        covers=["DeBERTa-V3 config (256 buckets, 512 positions, shared keys, layer-normed rel table)",
                "pos_att_type as the string \"p2c|c2p\"", "no pad_token_id in config.json",
                "320 tokens: relative distances up to 319 > 2*128 (log buckets up to 212)",
                "3 labels with id2label (no num_labels key)", "padding"],
        tweak_config=drop_pad_token_id_and_use_string_pos_att_type,
    )
    assert config.pos_att_type == ["p2c", "c2p"] and config.pad_token_id == 0


def v2_conv_mlm_legacy():
    cfg = dict(TINY, relative_attention=True, position_buckets=32, max_relative_positions=-1,
               max_position_embeddings=128, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
               share_att_key=False, position_biased_input=False, conv_kernel_size=3, conv_act="gelu",
               hidden_act="gelu", legacy=True)
    hf_fixture(
        "v2_conv_mlm_legacy", 2, DebertaV2ForMaskedLM, cfg, "masked-lm",
        rows=(40, [40, 31, 12]), weights="pytorch-zip",
        covers=["conv layer after layer 0 (kernel 3, gelu)", "share_att_key false (pos_key_proj, pos_query_proj)",
                "pos_att_type list", "32 buckets", "legacy MLM head cls.predictions.* (decoder tied, stored too)",
                "pytorch_model.bin, torch zip format"],
    )


def nobucket_c2p_tokcls():
    cfg = dict(TINY, relative_attention=True, position_buckets=0, max_relative_positions=16,
               max_position_embeddings=64, pos_att_type=["c2p"], embedding_size=24, type_vocab_size=2,
               position_biased_input=True, share_att_key=True, norm_rel_ebd="none", hidden_act="gelu",
               num_labels=5)
    hf_fixture(
        "nobucket_c2p_tokcls", 3, DebertaV2ForTokenClassification, cfg, "token-classification",
        rows=(48, [48, 30]), weights="pytorch-legacy",
        covers=["position_buckets 0: plain relative positions clamped at max_relative_positions 16 (L 48)",
                "c2p only", "embedding_size 24 != hidden 32 (embed_proj)", "type_vocab_size 2, random token types",
                "position_biased_input true (absolute positions)", "norm_rel_ebd none", "5 labels",
                "pytorch_model.bin, legacy (non-zip) torch format"],
    )


def p2c_qa_sharded():
    cfg = dict(TINY, relative_attention=True, pos_att_type=["p2c"], share_att_key=False, position_buckets=-1,
               max_relative_positions=-1, max_position_embeddings=64, position_biased_input=False,
               norm_rel_ebd="layer_norm", hidden_act="gelu", conv_kernel_size=5, conv_groups=2)
    hf_fixture(
        "p2c_qa_sharded", 4, DebertaV2ForQuestionAnswering, cfg, "question-answering",
        rows=(40, [40, 33]), weights="sharded-safetensors",
        covers=["p2c only", "share_att_key false with p2c only (pos_query_proj, no pos_key_proj)",
                "no buckets, max_relative_positions -1 -> max_position_embeddings 64",
                "conv layer: kernel 5, conv_groups 2, conv_act absent (HF default tanh)",
                "sharded safetensors + model.safetensors.index.json"],
    )


def norel_multichoice():
    cfg = dict(TINY, relative_attention=False, position_biased_input=True, pos_att_type=["p2c", "c2p"],
               type_vocab_size=2, max_position_embeddings=64, hidden_act="gelu_new", pooler_hidden_act="tanh")
    hf_fixture(
        "norel_multichoice", 5, DebertaV2ForMultipleChoice, cfg, "multiple-choice",
        rows=(20, [20, 15, 9, 20, 18, 5]), choices=3,
        covers=["relative_attention false (no rel_embeddings; pos_att_type still sets the scale sqrt(3d))",
                "absolute positions", "token types", "hidden_act gelu_new (tanh approximation)",
                "pooler_hidden_act tanh", "[B][C][L] inputs, B 2, C 3"],
    )


V3_SMALL = dict(V3, position_buckets=64, max_position_embeddings=128)


def v3_emd_generator():
    custom_fixture(
        "v3_emd_generator", 6, EmdGenerator, dict(V3_SMALL, num_hidden_layers=3), "emd", rows=(48, [48, 33]),
        covers=["Enhanced Mask Decoder (official code): last layer twice, query = positions + h[-2]",
                "generator absolute position table deberta.embeddings.position_embeddings.weight",
                "lm_predictions.lm_head tied MLM head, logits at every position", "3 layers, 64 buckets"],
    )


def v3_rtd_discriminator():
    custom_fixture(
        "v3_rtd_discriminator", 7, RtdDiscriminator, V3_SMALL, "rtd", rows=(60, [60, 37]),
        covers=["RTD head mask_predictions.* (official LMMaskPredictionHead)",
                "official extras to ignore: deberta.embeddings.position_embeddings.weight (unused), "
                "deberta.embeddings.word_embeddings._weight (GDES delta; weight is already merged)"],
        extras=lambda c: {
            "deberta.embeddings.position_embeddings.weight": torch.randn(c.max_position_embeddings, c.hidden_size),
            "deberta.embeddings.word_embeddings._weight": torch.randn(c.vocab_size, c.hidden_size),
        },
    )


def v3_base_model():
    hf_fixture(
        "v3_base_model", 8, DebertaV2Model, dict(V3, position_buckets=16, max_position_embeddings=64), "base",
        rows=(70, [70, 52]),
        covers=["bare DebertaV2Model (keys without deberta. prefix)",
                "70 tokens > max_position_embeddings 64 with 16 buckets: |r| >= 64 gives bucket +-16, "
                "c2p/p2c rows clamp to 31 or reach row 0"],
    )


def v3_mlm_nonlegacy():
    cfg = dict(V3, position_buckets=32, max_relative_positions=80, max_position_embeddings=128, legacy=False)
    hf_fixture(
        "v3_mlm_nonlegacy", 9, DebertaV2ForMaskedLM, cfg, "masked-lm", rows=(36, [36, 20]),
        covers=["MLM head lm_predictions.lm_head.* (legacy false)",
                "buckets 32 with max_relative_positions 80 != max_position_embeddings 128 (log scale uses 80)"],
    )


def v3_regression():
    cfg = dict(V3, position_buckets=32, max_position_embeddings=128, num_labels=1)
    hf_fixture(
        "v3_regression", 10, DebertaV2ForSequenceClassification, cfg, "sequence-classification",
        rows=(24, [24, 10, 17]), covers=["sequence classification with 1 label (regression)", "batch 3"],
    )


FIXTURES = {
    f.__name__: f
    for f in (
        v3_seqcls_long, v2_conv_mlm_legacy, nobucket_c2p_tokcls, p2c_qa_sharded, norel_multichoice,
        v3_emd_generator, v3_rtd_discriminator, v3_base_model, v3_mlm_nonlegacy, v3_regression,
    )
}


def build(names):
    os.makedirs(PARITY, exist_ok=True)
    for name in names:
        FIXTURES[name]()
    print()
    for name in FIXTURES:
        d = os.path.join(PARITY, name)
        if os.path.isdir(d):
            print(f"{name:24} {dir_size(d) / 1e3:7.1f} kB")
    print(f"{'fixtures/parity total':24} {dir_size(PARITY) / 1e6:7.3f} MB")


# --- HF loads what we save --------------------------------------------------------------------


def check_saved(saved_root, report_path):
    report = {}
    for name in sorted(os.listdir(saved_root)):
        d = os.path.join(saved_root, name)
        if name not in FIXTURES or not os.path.isdir(d):
            continue
        ref_dir = os.path.join(PARITY, name)
        arch = AutoConfig.from_pretrained(d).architectures[0]
        cls = getattr(transformers, arch, None) if arch.startswith("DebertaV2") else None
        cls = cls or DebertaV2Model  # RTD / EMD: HF has no class; it loads the backbone
        model, info = cls.from_pretrained(d, output_loading_info=True)
        model = model.double().eval()
        with open(os.path.join(ref_dir, "inputs.json")) as fh:
            inputs = {k: torch.tensor(v) for k, v in json.load(fh).items()}
        with open(os.path.join(ref_dir, "meta.json")) as fh:
            head = json.load(fh)["head"]
        outputs = hf_outputs(model, inputs)
        expected = load_file(os.path.join(ref_dir, "expected.safetensors"))
        mask = flat_mask(inputs)
        errors = {k: rel_err(outputs[k], ref, k, head, mask) for k, ref in expected.items() if k in outputs}
        prefix = cls.base_model_prefix + "." if cls is not DebertaV2Model else ""
        backbone = [k for k in info["missing_keys"] if k.removeprefix(prefix).startswith(("embeddings.", "encoder."))]
        report[name] = {
            "architecture": arch,
            "loaded_as": cls.__name__,
            "missing_keys": sorted(info["missing_keys"]),
            "missing_backbone_keys": sorted(backbone),
            "unexpected_keys": sorted(info["unexpected_keys"]),
            "max_rel_err": errors,
        }
    print(f"{'fixture':24} {'loaded as':36} {'missing':>7} {'backbone':>8} {'unexpected':>10}  max rel err")
    for name, r in report.items():
        worst = max(r["max_rel_err"].values()) if r["max_rel_err"] else float("nan")
        print(f"{name:24} {r['loaded_as']:36} {len(r['missing_keys']):7} {len(r['missing_backbone_keys']):8} "
              f"{len(r['unexpected_keys']):10}  {worst:.2e}")
    with open(report_path, "w") as fh:
        json.dump(report, fh, indent=2, sort_keys=True)
        fh.write("\n")
    print(f"wrote {report_path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(FIXTURES), help="build only these fixtures")
    parser.add_argument("--check-saved", metavar="DIR", help="load DIR/<fixture> with HF and report")
    parser.add_argument("--report", default=os.path.join(FIXTURES_DIR, "hf_loads_our_save.json"),
                        help="where --check-saved writes its report (default fixtures/hf_loads_our_save.json)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.check_saved:
        check_saved(args.check_saved, args.report)
    else:
        build(args.only or list(FIXTURES))
    sys.exit(0)
