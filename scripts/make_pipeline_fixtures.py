#!/usr/bin/env python3
"""Oracle fixtures for the inference pipeline's parity test (crates/infer/tests/pipeline_parity.rs).

Run from the repository root (CPU, a few seconds):

    /work/main/.venv-ref/bin/python scripts/make_pipeline_fixtures.py

transformers 5.x has no question-answering pipeline; that part runs HF's 4.x pipeline in a
subprocess with TRANSFORMERS4 (a directory holding transformers 4.57.1, tokenizers 0.22.1 and
huggingface_hub 0.35.3, e.g. `pip install --no-deps --target DIR ...`, plus requests) first on
PYTHONPATH. Made with torch 2.15, transformers 5.24 (and 4.57.1 for QA).

What it writes under fixtures/pipeline/:
  spm.model          a 320-piece unigram SentencePiece model (identity normalisation, which keeps the file small) in the DeBERTa-v3 layout ([PAD]=0
                     [CLS]=1 [SEP]=2 [UNK]=3, [MASK] appended as id 320), trained here on the
                     first lines of assets/corpus/text (deterministic: one thread, fixed input).
  tokenizer.json     HF's DebertaV2Tokenizer built from that model's pieces and scores (HF cannot
                     read our spm.model directly: its slow tokenizer gives all-UNK); the script
                     asserts it gives sentencepiece's ids on every fixture text, and no UNK.
  <model>/           tiny random DeBERTa-v3 models (hidden 16, 2 layers, 32 position buckets) in HF
                     format (config.json + model.safetensors), weights perturbed like
                     scripts/make_fixtures.py and head weights scaled so that scores are decisive
                     (no ties between labels, spans or tokens):
    nli              DebertaV2ForSequenceClassification, labels contradiction/entailment/neutral:
                     text-classification (single texts and pairs, all labels and top_k=1),
                     zero-shot-classification (softmax over labels; multi_label; one label), and
                     feature-extraction through its encoder (CLS and mean pooling, normalised or
                     not; HF's pipeline gives the token states, pooled here in float64).
    ner              DebertaV2ForTokenClassification, labels O B-PER I-PER B-LOC I-LOC:
                     token-classification with aggregation_strategy none, simple and first (words
                     of several pieces, entity groups of several words).
    qa               DebertaV2ForQuestionAnswering: question-answering with top_k 1 and 3, a
                     context longer than max_seq_len (overflow windows, doc_stride), and
                     handle_impossible_answer.
    mc               DebertaV2ForMultipleChoice (HF has no pipeline): softmax of the logits
                     computed in torch, 2 and 3 choices.
    mlm              DebertaV2ForMaskedLM: fill-mask, top_k 5, one mask.
  expected.json      per task: the pipeline's inputs (arguments as our Request JSON), HF's
                     outputs, and the token ids HF fed the model (the Rust test checks ours are
                     identical before comparing outputs).
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(REPO, "fixtures", "pipeline")
VOCAB = 320
MAX_LEN = 64  # the Rust test passes the same max_length
QA_MAX_LEN = 40
QA_STRIDE = 12

TEXTS = [
    "Call me Ishmael.",
    "Some years ago, never mind how long, I thought I would sail about a little and see the watery part of the world.",
    "It is a way I have of driving off the spleen.",
]
PAIRS = [("The whale is white.", "It was in the sea.")]
NER_TEXTS = [
    "Call me Ishmael and sail with Ahab to the sea.",
    "Queequeg came from an island far away in the south.",
]
QA = [
    {"question": "Who is the captain?", "context": "The captain of the ship was Ahab, and the mate was Starbuck."},
    {
        "question": "Where did they sail?",
        "context": "Some years ago, never mind how long precisely, having little or no money in my purse, and "
        "nothing particular to interest me on shore, I thought I would sail about a little and see the "
        "watery part of the world. It is a way I have of driving off the spleen and regulating the "
        "circulation.",
    },
]
ZERO_SHOT = [
    {"sequence": "The whale swam far out in the sea.", "candidate_labels": ["ocean", "land", "ship"]},
]
CHOICES = [
    {"text": "The whale", "choices": ["swam in the sea.", "sat on the land."]},
    {"text": "Ishmael went", "choices": ["to sea.", "to the ship.", "home."]},
]
FILL = ["The [MASK] is white.", "Call me [MASK]."]


def train_spm(tmp):
    import sentencepiece as spm

    src = os.path.join(REPO, "assets", "corpus", "text")
    lines = []
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name), encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    lines.append(line)
                if len(lines) >= 4000:
                    break
    extra = TEXTS + [a + " " + b for a, b in PAIRS] + NER_TEXTS
    extra += [q["question"] + " " + q["context"] for q in QA] + [z["sequence"] for z in ZERO_SHOT]
    model = io.BytesIO()
    # From an iterator, not a file: the model records its input file's (temporary) path.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines + extra),
        model_writer=model,
        vocab_size=VOCAB,
        model_type="unigram",
        character_coverage=1.0,
        byte_fallback=False,
        normalization_rule_name="identity",
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_piece="[PAD]",
        bos_piece="[CLS]",
        eos_piece="[SEP]",
        unk_piece="[UNK]",
        num_threads=1,
        minloglevel=2,
    )
    path = os.path.join(tmp, "spm.model")
    with open(path, "wb") as f:
        f.write(model.getvalue())
    return path


def hf_tokenizer(spm_path):
    import sentencepiece as spm
    from transformers import DebertaV2Tokenizer

    sp = spm.SentencePieceProcessor(model_file=spm_path)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    vocab[3] = ("[UNK]", 0.0)
    tok = DebertaV2Tokenizer(vocab=vocab)
    assert tok.mask_token_id == VOCAB, tok.mask_token_id
    texts = TEXTS + [b for _, b in PAIRS] + NER_TEXTS + [q["context"] for q in QA] + [q["question"] for q in QA]
    for t in texts:
        ours = sp.encode(t)
        theirs = tok(t, add_special_tokens=False)["input_ids"]
        assert ours == theirs, (t, ours, theirs)
        assert tok.unk_token_id not in theirs, t
    return tok


def perturb(model, seed, head_scale):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.mul_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            if not name.startswith("deberta.") and name.endswith("weight") and "LayerNorm" not in name:
                p.mul_(head_scale)


def config(**kw):
    from transformers import DebertaV2Config

    return DebertaV2Config(
        vocab_size=VOCAB + 1,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        initializer_range=0.3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-7,
        relative_attention=True,
        position_buckets=32,
        max_relative_positions=-1,
        max_position_embeddings=512,
        pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        type_vocab_size=0,
        hidden_act="gelu",
        pad_token_id=0,
        **kw,
    )


def save(model, name):
    import torch

    torch.manual_seed(0)
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)
    return d


def py(x):
    """numpy/torch scalars -> JSON numbers."""
    if isinstance(x, dict):
        return {k: py(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [py(v) for v in x]
    if hasattr(x, "item"):
        return x.item()
    return x


def build_models(tok):
    import torch
    from transformers import (
        DebertaV2ForMaskedLM,
        DebertaV2ForMultipleChoice,
        DebertaV2ForQuestionAnswering,
        DebertaV2ForSequenceClassification,
        DebertaV2ForTokenClassification,
    )

    labels = ["contradiction", "entailment", "neutral"]
    torch.manual_seed(1)
    nli = DebertaV2ForSequenceClassification(
        config(id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    )
    perturb(nli, 11, 1.5)
    ner_labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    torch.manual_seed(2)
    ner = DebertaV2ForTokenClassification(
        config(id2label=dict(enumerate(ner_labels)), label2id={l: i for i, l in enumerate(ner_labels)})
    )
    perturb(ner, 12, 3.0)
    # Bias the classifier so that entities (not only O) are predicted.
    with torch.no_grad():
        ner.classifier.bias.copy_(torch.tensor([-0.5, 0.3, 0.3, 0.2, 0.2]))
    torch.manual_seed(3)
    qa = DebertaV2ForQuestionAnswering(config())
    perturb(qa, 13, 6.0)
    torch.manual_seed(4)
    mc = DebertaV2ForMultipleChoice(config())
    perturb(mc, 14, 4.0)
    torch.manual_seed(5)
    mlm = DebertaV2ForMaskedLM(config())
    perturb(mlm, 15, 1.0)
    with torch.no_grad():
        mlm.deberta.embeddings.word_embeddings.weight.mul_(3.0)
    models = {"nli": nli, "ner": ner, "qa": qa, "mc": mc, "mlm": mlm}
    for name, m in models.items():
        m.eval()
        save(m, name)
    return models


def expected_main(tok):
    import torch
    from transformers import (
        DebertaV2ForMaskedLM,
        DebertaV2ForMultipleChoice,
        DebertaV2ForSequenceClassification,
        DebertaV2ForTokenClassification,
        DebertaV2Model,
        pipeline,
    )

    ids = lambda a, b=None: tok(a, b)["input_ids"]  # noqa: E731
    out = {}
    nli = DebertaV2ForSequenceClassification.from_pretrained(os.path.join(OUT, "nli")).eval()
    clf = pipeline("text-classification", model=nli, tokenizer=tok, device="cpu")
    cases = []
    for t in TEXTS:
        cases.append({"request": {"text": t}, "ids": [ids(t)], "expected": clf(t, top_k=None)})
        cases.append({"request": {"text": t, "top_k": 1}, "ids": [ids(t)], "expected": clf(t, top_k=1)})
    for a, b in PAIRS:
        r = clf({"text": a, "text_pair": b}, top_k=None)
        cases.append({"request": {"text": a, "text_pair": b}, "ids": [ids(a, b)], "expected": r})
    out["text-classification"] = cases

    zs = pipeline("zero-shot-classification", model=nli, tokenizer=tok, device="cpu")
    cases = []
    for z in ZERO_SHOT:
        for multi in (False, True):
            r = zs(z["sequence"], candidate_labels=z["candidate_labels"], multi_label=multi)
            hyp = ["This example is {}.".format(l) for l in z["candidate_labels"]]
            cases.append(
                {
                    "request": dict(z, multi_label=multi),
                    "ids": [ids(z["sequence"], h) for h in hyp],
                    "expected": r,
                }
            )
        one = zs(z["sequence"], candidate_labels=z["candidate_labels"][:1], hypothesis_template="It is about {}.")
        cases.append(
            {
                "request": {
                    "sequence": z["sequence"],
                    "candidate_labels": z["candidate_labels"][:1],
                    "hypothesis_template": "It is about {}.",
                },
                "ids": [ids(z["sequence"], "It is about {}.".format(z["candidate_labels"][0]))],
                "expected": one,
            }
        )
    out["zero-shot-classification"] = cases
    # Decisive: no near-ties between labels, multi-label scores away from 0 and 1.
    for c in out["text-classification"]:
        s = [x["score"] for x in c["expected"]]
        assert all(a - b > 1e-3 for a, b in zip(s, s[1:])), c
    for c in cases:
        s = c["expected"]["scores"]
        assert all(a - b > 1e-3 for a, b in zip(s, s[1:])), c
        assert all(1e-3 < x < 1 - 1e-3 for x in s) or len(s) > 1 and not c["request"].get("multi_label"), c

    base = DebertaV2Model.from_pretrained(os.path.join(OUT, "nli")).eval()
    fe = pipeline("feature-extraction", model=base, tokenizer=tok, device="cpu")
    cases = []
    for t in TEXTS:
        states = torch.tensor(fe(t)[0], dtype=torch.float64)  # [L, H]
        for pooling in ("cls", "mean"):
            v = states[0] if pooling == "cls" else states.mean(0)
            for normalize in (False, True):
                w = torch.nn.functional.normalize(v, dim=0) if normalize else v
                cases.append(
                    {
                        "request": {"text": t, "pooling": pooling, "normalize": normalize},
                        "ids": [ids(t)],
                        "expected": w.tolist(),
                    }
                )
    out["feature-extraction"] = cases

    ner = DebertaV2ForTokenClassification.from_pretrained(os.path.join(OUT, "ner")).eval()
    tc = pipeline("token-classification", model=ner, tokenizer=tok, device="cpu")
    cases = []
    for t in NER_TEXTS:
        for agg in ("none", "simple", "first"):
            r = tc(t, aggregation_strategy=agg)
            cases.append({"request": {"text": t, "aggregation_strategy": agg}, "ids": [ids(t)], "expected": py(r)})
    out["token-classification"] = cases

    mc = DebertaV2ForMultipleChoice.from_pretrained(os.path.join(OUT, "mc")).eval()
    cases = []
    for c in CHOICES:
        enc = tok([c["text"]] * len(c["choices"]), c["choices"], padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = mc(**{k: v[None] for k, v in enc.items()}).logits[0].double()
        p = torch.softmax(logits, 0)
        cases.append(
            {
                "request": c,
                "ids": [ids(c["text"], ch) for ch in c["choices"]],
                "expected": {"label": int(p.argmax()), "scores": p.tolist()},
            }
        )
    out["multiple-choice"] = cases

    mlm = DebertaV2ForMaskedLM.from_pretrained(os.path.join(OUT, "mlm")).eval()
    fm = pipeline("fill-mask", model=mlm, tokenizer=tok, device="cpu")
    cases = []
    for t in FILL:
        r = fm(t, top_k=5)
        cases.append({"request": {"text": t, "top_k": 5}, "ids": [ids(t)], "expected": py(r)})
    out["fill-mask"] = cases
    return out


def expected_qa():
    """Runs under transformers 4.x (its QuestionAnsweringPipeline); prints JSON."""
    from transformers import DebertaV2ForQuestionAnswering, DebertaV2TokenizerFast, pipeline

    tok = DebertaV2TokenizerFast(tokenizer_file=os.path.join(OUT, "tokenizer.json"))
    qa = DebertaV2ForQuestionAnswering.from_pretrained(os.path.join(OUT, "qa")).eval()
    p = pipeline("question-answering", model=qa, tokenizer=tok, device="cpu")
    cases = []
    for q in QA:
        combos = [(1, False), (3, False), (3, True)]
        if q is QA[0]:
            # Deep enough to reach the no-answer, whose score sits among the spans'.
            combos.append((40, True))
        for top_k, impossible in combos:
            r = p(
                question=q["question"],
                context=q["context"],
                top_k=top_k,
                handle_impossible_answer=impossible,
                max_seq_len=QA_MAX_LEN,
                doc_stride=QA_STRIDE,
                max_answer_len=15,
            )
            r = r if isinstance(r, list) else [r]
            if top_k == 40:
                assert any(a["answer"] == "" for a in r), r
            enc = tok(
                q["question"],
                q["context"],
                truncation="only_second",
                max_length=QA_MAX_LEN,
                stride=QA_STRIDE,
                return_overflowing_tokens=True,
            )
            cases.append(
                {
                    "request": dict(q, top_k=top_k, handle_impossible_answer=impossible, max_answer_len=15),
                    "ids": enc["input_ids"],
                    "expected": py(r),
                }
            )
    return cases


def main():
    if "--qa" in sys.argv:
        print(json.dumps(expected_qa()))
        return
    import transformers

    assert transformers.__version__.startswith("5."), transformers.__version__
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp()
    spm_path = train_spm(tmp)
    shutil.copy(spm_path, os.path.join(OUT, "spm.model"))
    tok = hf_tokenizer(spm_path)
    tok.backend_tokenizer.save(os.path.join(OUT, "tokenizer.json"))
    build_models(tok)
    expected = expected_main(tok)
    tf4 = os.environ.get("TRANSFORMERS4", "/work/tf4")
    env = dict(os.environ, PYTHONPATH=tf4)
    qa = subprocess.run([sys.executable, __file__, "--qa"], env=env, check=True, capture_output=True, text=True)
    expected["question-answering"] = json.loads(qa.stdout)
    expected["max_length"] = MAX_LEN
    expected["qa_max_length"] = QA_MAX_LEN
    expected["qa_doc_stride"] = QA_STRIDE
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(py(expected), f, indent=1)
        f.write("\n")
    for name in ("nli", "ner", "qa", "mc", "mlm"):
        # The Rust side reads the tokenizer from spm.model; HF's from tokenizer.json.
        for extra in ("README.md", "generation_config.json"):
            p = os.path.join(OUT, name, extra)
            if os.path.exists(p):
                os.remove(p)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total // 1024} KB)")


if __name__ == "__main__":
    main()
