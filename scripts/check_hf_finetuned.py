#!/usr/bin/env python3
"""Load fine-tuned models (OUT/best of `deberta finetune`) in Hugging Face transformers and check
that they compute what we compute.

For each model directory:
  1. ids: our tokenizer (`deberta tokenize`) on a few texts; the sentencepiece library with
     DeBERTa's template (`[CLS] a [SEP] b [SEP]`, what the slow DebertaV2Tokenizer did; transformers
     5 only has the `tokenizers` conversion, which differs on some characters) must give the same;
  2. HF loads the directory with no missing, unexpected or mismatched keys;
     logits: `deberta forward` on those ids vs the HF class named in config.json
     (AutoModelFor{SequenceClassification,TokenClassification,QuestionAnswering,MultipleChoice}),
     float32, eval mode; max |ours - HF| / max |HF| over real (non-padding) positions;
  3. sequence classification: `deberta predict` probabilities (our tokenizer) vs the HF model's
     softmax on the sentencepiece ids.

Not run in CI (needs torch + transformers):
  .venv-ref/bin/python scripts/check_hf_finetuned.py runs/vader/pretrained-sentiment/best ...
Exit status 1 when any relative error exceeds 1e-4 or ids differ.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
import sentencepiece
from transformers import (
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "deberta"
TOLERANCE = 1e-4

TEXTS = [
    ("The Vélodrome in Lyon was opened in 1894.", "When was the Vélodrome opened?"),
    ("A gorgeously elaborate continuation of the trilogy; it never drags.", None),
    ("Not my cup of tea, frankly: dull, dull, dull.", "It was boring."),
    ("EU rejects German call to boycott British lamb", None),
]

CLASSES = {
    "DebertaV2ForSequenceClassification": AutoModelForSequenceClassification,
    "DebertaV2ForTokenClassification": AutoModelForTokenClassification,
    "DebertaV2ForQuestionAnswering": AutoModelForQuestionAnswering,
    "DebertaV2ForMultipleChoice": AutoModelForMultipleChoice,
}


def run(*args):
    result = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"deberta {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result.stdout


def our_ids(model_dir, tmp):
    inp = tmp / "texts.jsonl"
    with open(inp, "w") as f:
        for a, b in TEXTS:
            f.write(json.dumps({"text": a, "text_pair": b} if b else {"text": a}) + "\n")
    out = tmp / "ids.jsonl"
    run("tokenize", "--tokenizer", model_dir, "--input", inp, "--output", out)
    return [json.loads(line)["input_ids"] for line in out.read_text().splitlines()]


def check(model_dir):
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    arch = config["architectures"][0]
    cls = CLASSES[arch]
    worst = 0.0
    ok = True
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ids = our_ids(model_dir, tmp)
        sp = sentencepiece.SentencePieceProcessor(model_file=str(model_dir / "spm.model"))
        cls_id, sep_id = sp.piece_to_id("[CLS]"), sp.piece_to_id("[SEP]")

        def library_ids(a, b):
            out = [cls_id] + sp.encode(a) + [sep_id]
            return out + sp.encode(b) + [sep_id] if b else out

        hf_ids = [library_ids(a, b) for a, b in TEXTS]
        same_ids = hf_ids == ids
        ok &= same_ids
        width = max(map(len, ids))
        mask = [[1] * len(r) + [0] * (width - len(r)) for r in ids]
        padded = [r + [0] * (width - len(r)) for r in ids]
        if arch == "DebertaV2ForMultipleChoice":
            # Two examples of two choices each: [2][2][L].
            padded, mask = [padded[:2], padded[2:]], [mask[:2], mask[2:]]
        inputs = tmp / "inputs.json"
        inputs.write_text(json.dumps({"input_ids": padded, "attention_mask": mask}))
        out = tmp / "out.safetensors"
        run("forward", "--model", model_dir, "--input", inputs, "--output", out)
        ours = load_file(str(out))

        model, info = cls.from_pretrained(str(model_dir), output_loading_info=True)
        model.eval()
        problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if problems:
            print(f"  HF loading: {problems}")
            ok = False
        with torch.no_grad():
            hf = model(input_ids=torch.tensor(padded), attention_mask=torch.tensor(mask))
        m = torch.tensor(mask).reshape(-1, width).bool()
        for name in ["logits", "start_logits", "end_logits"]:
            if name not in ours:
                continue
            a, b = ours[name].float(), getattr(hf, name).float()
            if a.dim() == 3 or name != "logits" and a.dim() == 2 and a.shape[-1] == width:
                a, b = a[m], b[m]  # per-token outputs: real tokens only
            err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
            worst = max(worst, err)
            print(f"  {name} {tuple(ours[name].shape)}: max rel err {err:.2e}")

        if arch == "DebertaV2ForSequenceClassification":
            inp = tmp / "texts.jsonl"
            predicted = [json.loads(l) for l in run("predict", "--model", model_dir, "--input", inp).splitlines()]
            with torch.no_grad():
                logits = [model(input_ids=torch.tensor([e])).logits[0] for e in hf_ids]
            if config.get("id2label") and len(config["id2label"]) > 1:
                names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
                diff = max(
                    abs(p["probabilities"][n] - q)
                    for p, l in zip(predicted, logits)
                    for n, q in zip(names, torch.softmax(l, -1).tolist())
                )
                print(f"  predict probabilities vs HF (sentencepiece ids): max abs diff {diff:.2e}")
            else:
                diff = max(abs(p["score"] - l[0].item()) for p, l in zip(predicted, logits))
                print(f"  predict score vs HF (sentencepiece ids): max abs diff {diff:.2e}")
            ok &= diff < TOLERANCE
    print(f"{model_dir}: {arch}, ids {'identical' if same_ids else 'DIFFER'}, worst rel err {worst:.2e}")
    return ok and worst < TOLERANCE


def main():
    dirs = sys.argv[1:]
    if not dirs:
        raise SystemExit(__doc__)
    results = [check(d) for d in dirs]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
