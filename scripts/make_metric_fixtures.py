#!/usr/bin/env python3
"""Reference values for crates/data/src/metrics.rs, written to fixtures/metrics/*.json.

The oracles are the libraries the official fine-tuning scripts use: scikit-learn (accuracy, F1,
Matthews correlation), scipy (Pearson, Spearman), seqeval (entity-level scores, default mode), and
the official SQuAD 2.0 evaluation script, whose scoring functions are copied below verbatim in
logic (evaluate-v2.0.py: normalize_answer, compute_exact, compute_f1, get_raw_scores,
make_eval_dict with HasAns/NoAns splits).

Inputs are seeded random predictions plus hand-picked edge cases (ties, a single class on one or
both sides, no entities at all, answers that normalise to nothing, Unicode).

Run with the reference venv:  .venv-ref/bin/python scripts/make_metric_fixtures.py
(needs scikit-learn, scipy, seqeval; the Rust tests need none of them).
"""

import collections
import json
import math
import re
import string
import warnings
from pathlib import Path

import numpy as np
import scipy
import seqeval
import sklearn
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import accuracy_score as seq_accuracy
from seqeval.metrics import classification_report
from seqeval.metrics import f1_score as seq_f1
from seqeval.metrics import precision_score as seq_precision
from seqeval.metrics import recall_score as seq_recall
from seqeval.metrics.sequence_labeling import get_entities
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "metrics"
warnings.filterwarnings("ignore")  # undefined-metric and constant-input warnings are the point


def num(x):
    """JSON has no NaN: write null, which the Rust test reads as 'NaN expected'."""
    x = float(x)
    return None if math.isnan(x) else x


# --- Classification (GLUE) -------------------------------------------------------------------


def classification_cases(rng):
    cases = []
    for i in range(6):
        n = int(rng.integers(5, 60))
        refs = rng.integers(0, 2, n)
        # Predictions that agree with the references most of the time.
        flip = rng.random(n) < rng.uniform(0.1, 0.6)
        preds = np.where(flip, 1 - refs, refs)
        cases.append((f"binary_{i}", preds, refs))
    cases += [
        ("all_predicted_one", np.ones(10, int), np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1])),
        ("all_predicted_zero", np.zeros(8, int), np.array([0, 1, 1, 0, 1, 0, 0, 1])),
        ("references_one_class", np.array([0, 1, 0, 1, 1]), np.ones(5, int)),
        ("both_all_zero", np.zeros(6, int), np.zeros(6, int)),
        ("both_all_one", np.ones(4, int), np.ones(4, int)),
        ("perfect", np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0])),
        ("inverted", np.array([1, 0, 0, 1]), np.array([0, 1, 1, 0])),
        ("single", np.array([1]), np.array([0])),
    ]
    for i in range(4):
        n = int(rng.integers(10, 80))
        refs = rng.integers(0, 3, n)
        preds = np.where(rng.random(n) < 0.4, rng.integers(0, 3, n), refs)
        cases.append((f"three_class_{i}", preds, refs))
    cases.append(("three_class_missing_one", np.array([0, 2, 2, 0, 2]), np.array([0, 0, 2, 2, 2])))
    cases.append(("five_class", rng.integers(0, 5, 40), rng.integers(0, 5, 40)))
    out = []
    for name, preds, refs in cases:
        binary = set(preds.tolist()) | set(refs.tolist()) <= {0, 1}
        out.append(
            {
                "name": name,
                "predictions": preds.tolist(),
                "references": refs.tolist(),
                "accuracy": float(accuracy_score(refs, preds)),
                # sklearn's binary F1 refuses more than two classes.
                "f1": float(f1_score(refs, preds)) if binary else None,
                "macro_f1": float(f1_score(refs, preds, average="macro")),
                "matthews": float(matthews_corrcoef(refs, preds)),
            }
        )
    return out


# --- Correlations (STS-B) --------------------------------------------------------------------


def correlation_cases(rng):
    cases = []
    for i in range(5):
        n = int(rng.integers(5, 60))
        x = rng.uniform(0, 5, n)
        y = x + rng.normal(0, rng.uniform(0.2, 3), n)
        cases.append((f"random_{i}", x, y))
    for i in range(3):
        n = int(rng.integers(8, 40))
        # STS-B gold scores come in steps of 0.2 and repeat a lot: heavy ties on both sides.
        x = np.round(rng.uniform(0, 5, n) * 5) / 5
        y = np.round((x + rng.normal(0, 1, n)) * 2) / 2
        cases.append((f"ties_{i}", x, y))
    cases += [
        ("all_tied_but_one", np.array([1.0, 1.0, 1.0, 1.0, 2.0]), np.array([0.5, 0.1, 0.9, 0.3, 0.7])),
        ("perfect", np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0, 8.0])),
        ("anti", np.array([1.0, 2.0, 3.0, 4.0]), np.array([4.0, 3.0, 2.5, -1.0])),
        ("two_points", np.array([0.3, 0.9]), np.array([5.0, 1.0])),
        ("constant_prediction", np.array([2.5, 2.5, 2.5, 2.5]), np.array([1.0, 2.0, 3.0, 4.0])),
        ("large_offset", 1e6 + rng.uniform(0, 1, 20), rng.uniform(0, 1, 20)),
    ]
    out = []
    for name, x, y in cases:
        out.append(
            {
                "name": name,
                "x": x.tolist(),
                "y": y.tolist(),
                "pearson": num(pearsonr(x, y)[0]),
                "spearman": num(spearmanr(x, y)[0]),
            }
        )
    return out


# --- SQuAD 2.0: the official evaluate-v2.0.py scoring ----------------------------------------


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def get_tokens(s):
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def make_qid_to_has_ans(dataset):
    qid_to_has_ans = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid_to_has_ans[qa["id"]] = bool(qa["answers"])
    return qid_to_has_ans


def get_raw_scores(dataset, preds):
    exact_scores = {}
    f1_scores = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                gold_answers = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])]
                if not gold_answers:
                    # For unanswerable questions, only correct answer is empty string
                    gold_answers = [""]
                if qid not in preds:
                    print("Missing prediction for %s" % qid)
                    continue
                a_pred = preds[qid]
                # Take max over all gold answers
                exact_scores[qid] = max(compute_exact(a, a_pred) for a in gold_answers)
                f1_scores[qid] = max(compute_f1(a, a_pred) for a in gold_answers)
    return exact_scores, f1_scores


def make_eval_dict(exact_scores, f1_scores, qid_list=None):
    if not qid_list:
        total = len(exact_scores)
        return collections.OrderedDict(
            [
                ("exact", 100.0 * sum(exact_scores.values()) / total),
                ("f1", 100.0 * sum(f1_scores.values()) / total),
                ("total", total),
            ]
        )
    else:
        total = len(qid_list)
        return collections.OrderedDict(
            [
                ("exact", 100.0 * sum(exact_scores[k] for k in qid_list) / total),
                ("f1", 100.0 * sum(f1_scores[k] for k in qid_list) / total),
                ("total", total),
            ]
        )


def merge_eval(main_eval, new_eval, prefix):
    for k in new_eval:
        main_eval["%s_%s" % (prefix, k)] = new_eval[k]


def squad_v2_eval(dataset, preds):
    """evaluate-v2.0.py's main() without a no-answer probability file."""
    qid_to_has_ans = make_qid_to_has_ans(dataset)
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = get_raw_scores(dataset, preds)
    out_eval = make_eval_dict(exact_raw, f1_raw)
    if has_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_raw, f1_raw, qid_list=has_ans_qids), "HasAns")
    if no_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_raw, f1_raw, qid_list=no_ans_qids), "NoAns")
    return out_eval


NORMALIZE_CASES = [
    "The Eiffel Tower",
    "  an  apple, a day!  ",
    "Theatre of the Absurd",
    "a",
    "The",
    "",
    "...",
    "U.S.A.",
    "rock-and-roll",
    "ÉCOLE Normale",
    "ΣΊΣΥΦΟΣ",
    "the_thing a_b",
    "a\u093e the",
    "x\u00a0the\u2003y",
    "tab\tthe\nnew\u001cline",
    "Café—“quoted”",
    "İstanbul",
    "1,000.5 km²",
    "an2 the3 a-b",
    "ａ the ａn",
]

WORDS = ["the", "a", "an", "Paris", "river", "1894", "of", "Thames", "fire", "Lyon", "old", "big",
         "city", "U.S.", "king's", "rock-and-roll", "Café", "north", "café", "ÉCOLE"]


def random_answer(rng, max_words=5):
    n = int(rng.integers(1, max_words + 1))
    words = [WORDS[int(i)] for i in rng.integers(0, len(WORDS), n)]
    text = " ".join(words)
    if rng.random() < 0.2:
        text = text.upper()
    if rng.random() < 0.2:
        text = text + rng.choice([".", ",", "!", " ?"])
    return text


def squad_cases(rng):
    cases = []
    for c in range(4):
        qas, preds = [], {}
        for q in range(int(rng.integers(6, 25))):
            qid = f"c{c}q{q}"
            kind = rng.random()
            if kind < 0.3:
                answers = []
            elif kind < 0.35:
                answers = [{"text": "the", "answer_start": 0}]  # normalises to nothing
            else:
                answers = [{"text": random_answer(rng), "answer_start": 0} for _ in range(int(rng.integers(1, 4)))]
            r = rng.random()
            if r < 0.25:
                pred = ""
            elif r < 0.5 and answers:
                # A near miss: the gold with words dropped or added, case and punctuation changed.
                words = answers[int(rng.integers(0, len(answers)))]["text"].split()
                keep = [w for w in words if rng.random() < 0.7] or words[:1]
                pred = " ".join(keep + ([random_answer(rng, 2)] if rng.random() < 0.5 else []))
                pred = pred.lower() if rng.random() < 0.5 else pred
            elif r < 0.6 and answers:
                pred = answers[0]["text"]
            else:
                pred = random_answer(rng)
            qas.append({"id": qid, "question": "?", "answers": answers})
            preds[qid] = pred
        cases.append((f"random_{c}", qas, preds))
    edge = [
        ({"id": "e1", "answers": []}, ""),
        ({"id": "e2", "answers": []}, "the"),
        ({"id": "e3", "answers": []}, "London"),
        ({"id": "e4", "answers": [{"text": "a"}]}, ""),
        ({"id": "e5", "answers": [{"text": "the river"}, {"text": "River Thames"}]}, "the Thames river"),
        ({"id": "e6", "answers": [{"text": "in 1894"}]}, "1894."),
        ({"id": "e7", "answers": [{"text": "big big city"}]}, "big city city big"),
    ]
    cases.append(("edge", [dict(q, question="?") for q, _ in edge], {q["id"]: p for q, p in edge}))
    cases.append(("only_no_answer", [{"id": "n1", "question": "?", "answers": []}], {"n1": ""}))
    cases.append(
        ("only_has_answer", [{"id": "h1", "question": "?", "answers": [{"text": "Lyon"}]}], {"h1": "lyon"})
    )
    out = []
    for name, qas, preds in cases:
        dataset = [{"title": name, "paragraphs": [{"context": "", "qas": qas}]}]
        scores = squad_v2_eval(dataset, preds)
        out.append(
            {
                "name": name,
                "golds": [[a["text"] for a in qa["answers"]] for qa in qas],
                "predictions": [preds[qa["id"]] for qa in qas],
                "per_question_exact": [
                    max(compute_exact(a, preds[qa["id"]]) for a in ([x["text"] for x in qa["answers"] if normalize_answer(x["text"])] or [""]))
                    for qa in qas
                ],
                "per_question_f1": [
                    max(compute_f1(a, preds[qa["id"]]) for a in ([x["text"] for x in qa["answers"] if normalize_answer(x["text"])] or [""]))
                    for qa in qas
                ],
                "scores": dict(scores),
            }
        )
    return {"normalize": [[s, normalize_answer(s)] for s in NORMALIZE_CASES], "cases": out}


# --- Entities (CoNLL-2003, seqeval default mode) ---------------------------------------------

TYPES = ["PER", "ORG", "LOC", "MISC"]


def random_tags(rng, n, scheme):
    tags = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            tags.append("O")
        else:
            t = TYPES[int(rng.integers(0, len(TYPES)))]
            if scheme == "bio":
                prefix = "B" if r < 0.7 else "I"
            else:
                prefix = ["B", "I", "E", "S"][int(rng.integers(0, 4))]
            tags.append(f"{prefix}-{t}")
    return tags


def perturb(rng, tags):
    out = list(tags)
    for i in range(len(out)):
        if rng.random() < 0.2:
            out[i] = rng.choice(["O", "B-PER", "I-PER", "B-LOC", "I-ORG", "I-MISC"])
    return out


def entity_cases(rng):
    cases = []
    for c in range(6):
        scheme = "bio" if c < 4 else "bioes"
        gold = [random_tags(rng, int(rng.integers(0, 12)), scheme) for _ in range(int(rng.integers(3, 10)))]
        pred = [perturb(rng, s) for s in gold]
        cases.append((f"random_{scheme}_{c}", gold, pred))
    cases += [
        ("iob1_runs", [["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"]], [["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "I-LOC"]]),
        ("type_change", [["B-PER", "I-LOC", "I-LOC", "O"]], [["B-PER", "I-PER", "I-LOC", "O"]]),
        ("no_entities", [["O", "O"], ["O"]], [["O", "O"], ["O"]]),
        ("no_gold_entities", [["O", "O", "O"]], [["B-ORG", "O", "I-ORG"]]),
        ("no_predicted_entities", [["B-MISC", "I-MISC", "O"]], [["O", "O", "O"]]),
        ("sentence_boundary", [["B-PER", "I-PER"], ["I-PER", "O"]], [["B-PER", "I-PER"], ["I-PER", "O"]]),
        ("bare_prefixes", [["B", "I", "O", "I"]], [["B", "O", "O", "I"]]),
        ("empty_sentence", [[], ["B-LOC"]], [[], ["B-LOC"]]),
        ("odd_tags", [["PER", "B-LOC-X", "O"]], [["PER", "B-LOC-X", "B-LOC"]]),
    ]
    out = []
    for name, gold, pred in cases:
        report = classification_report(gold, pred, output_dict=True, zero_division=0) if any(
            get_entities(gold) + get_entities(pred)
        ) else {}
        per_type = {
            k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"], "support": int(v["support"])}
            for k, v in report.items()
            if k not in ("micro avg", "macro avg", "weighted avg")
        }
        out.append(
            {
                "name": name,
                "gold": gold,
                "predicted": pred,
                "gold_entities": [list(e) for e in get_entities(gold)],
                "predicted_entities": [list(e) for e in get_entities(pred)],
                "precision": float(seq_precision(gold, pred)),
                "recall": float(seq_recall(gold, pred)),
                "f1": float(seq_f1(gold, pred)),
                "accuracy": float(seq_accuracy(gold, pred)),
                "per_type": per_type,
            }
        )
    return out


def main():
    rng = np.random.default_rng(20241126)
    OUT.mkdir(parents=True, exist_ok=True)
    versions = {"scikit-learn": sklearn.__version__, "scipy": scipy.__version__, "seqeval": seqeval.__version__ if hasattr(seqeval, "__version__") else "1.2.2", "numpy": np.__version__}
    files = {
        "classification.json": classification_cases(rng),
        "correlation.json": correlation_cases(rng),
        "squad_v2.json": squad_cases(rng),
        "entities.json": entity_cases(rng),
    }
    for name, data in files.items():
        with open(OUT / name, "w", encoding="utf-8") as f:
            json.dump({"generated_by": "scripts/make_metric_fixtures.py", "versions": versions, "data": data}, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
