#!/usr/bin/env bash
# The paper's embedding-sharing comparison in small: RTD+GDES, RTD+ES, RTD+NES and MLM-only, each
# pre-trained with the same steps, batches, tokenizer and seed on >= 10M words of real text
# (scripts/fetch_corpus.sh), then fine-tuned on VADER sentiment (scripts/fetch_vader.py) with
# several seeds, beside a random initialisation of the same shape. Also the paper's tug-of-war
# diagnostics: the generators' held-out MLM curves, and the average pairwise cosine similarity
# of the generator's and the discriminator's word embeddings per variant.
#
#   scripts/paper_comparison.sh     (env: STEPS=300 SEEDS="1 2 3" EPOCHS=3 LR=3e-4 THREADS)
# Writes results/paper_comparison.md and results/paper_comparison.png. Needs .venv-ref (numpy,
# safetensors; matplotlib is installed into it if missing). About 60 minutes on 2 cores at the
# default budget.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release/deberta
PY=.venv-ref/bin/python
STEPS=${STEPS:-300}
SEEDS=${SEEDS:-1 2 3}
EPOCHS=${EPOCHS:-3}
LR=${LR:-3e-4}
OUT=runs/paper
THREADS_FLAG=()
if [ -n "${THREADS:-}" ]; then THREADS_FLAG=(--threads "$THREADS"); fi

cargo build --release --locked -p deberta-cli
scripts/fetch_corpus.sh
python3 scripts/fetch_vader.py data/vader
$PY -c "import matplotlib" 2>/dev/null || .venv-ref/bin/pip install -q matplotlib

# One tokenizer for every variant, trained on the whole corpus.
mkdir -p "$OUT"
if [ ! -f "$OUT/tokenizer/spm.model" ]; then
    find data/corpus -name '*.txt' -not -path '*/.*' | sort > "$OUT/files.txt"
    mapfile -t files < "$OUT/files.txt"
    "$BIN" train-tokenizer --corpus "${files[@]}" --vocab-size 8000 --parallel --out "$OUT/tokenizer"
fi

COMMON=(--corpus data/corpus --tokenizer "$OUT/tokenizer/spm.model" --preset tiny --steps "$STEPS"
        --batch-size 16 --seq-len 128 --seed 1 --log-every 100)
declare -A FLAGS=([gdes]="--embedding-sharing gdes" [es]="--embedding-sharing es"
                  [nes]="--embedding-sharing nes" [mlm]="--objective mlm")
for v in gdes es nes mlm; do
    if [ ! -f "$OUT/$v/metrics.jsonl" ] || [ ! -d "$OUT/$v/checkpoints" ] || ! ls "$OUT/$v"/*/config.json >/dev/null 2>&1; then
        rm -rf "${OUT:?}/$v"
        start=$(date +%s)
        # shellcheck disable=SC2086
        "$BIN" pretrain "${COMMON[@]}" ${FLAGS[$v]} --out "$OUT/$v" "${THREADS_FLAG[@]}"
        echo $(( $(date +%s) - start )) > "$OUT/$v/seconds"
    fi
done

# The fine-tuned model of each variant: the discriminator (RTD) or the MLM model; and a random init.
"$BIN" init --config "$OUT/gdes/discriminator/config.json" --head rtd --seed 0 --out "$OUT/random-init" 2>/dev/null \
    || true
cp "$OUT/tokenizer/spm.model" "$OUT/tokenizer/tokenizer_config.json" "$OUT/random-init/"
for v in gdes es nes mlm random; do
    case $v in mlm) model=$OUT/mlm/model ;; random) model=$OUT/random-init ;; *) model=$OUT/$v/discriminator ;; esac
    for seed in $SEEDS; do
        run=$OUT/ft-$v-seed$seed
        [ -f "$run/metrics.jsonl" ] && grep -q best_epoch "$run/metrics.jsonl" && continue
        rm -rf "$run"
        "$BIN" finetune --model "$model" --task classification --label-column label --labels 0,1 \
            --text-column sentence --data data/vader/sentiment/train.tsv --dev data/vader/sentiment/dev.tsv \
            --epochs "$EPOCHS" --lr "$LR" --batch-size 32 --max-length 64 --seed "$seed" --warmup-ratio 0.1 \
            --out "$run" "${THREADS_FLAG[@]}" --log-every 100
    done
done

$PY - "$OUT" "$SEEDS" "$STEPS" "$EPOCHS" "$LR" <<'PY'
import json, statistics, sys
from pathlib import Path
import numpy as np
from safetensors.numpy import load_file
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

out, seeds, steps, epochs, lr = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3], sys.argv[4], sys.argv[5]
KEY = "deberta.embeddings.word_embeddings.weight"

def records(v):
    return [json.loads(l) for l in (out / v / "metrics.jsonl").read_text().splitlines()]

def acc(v, s):
    last = json.loads((out / f"ft-{v}-seed{s}" / "metrics.jsonl").read_text().splitlines()[-1])
    return 100 * next(x for k, x in last.items() if k.startswith("best/") and k.endswith("/accuracy"))

def mean_cos(path, pieces):
    """Average cosine similarity over all pairs of distinct rows among the ordinary pieces."""
    e = load_file(str(path))[KEY][4:pieces].astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    s = e.sum(0)
    n = len(e)
    return float((s @ s - n) / (n * (n - 1)))

pieces = 8000
rows = []
for v in ("gdes", "es", "nes", "mlm", "random"):
    a = [acc(v, s) for s in seeds]
    row = {"variant": v, "acc": a, "mean": statistics.mean(a), "sd": statistics.stdev(a) if len(a) > 1 else 0.0}
    if v != "random":
        rec = records(v)
        ev = [r for r in rec if "eval_mlm_loss" in r]
        row["eval_mlm"] = ev[-1]["eval_mlm_loss"] if ev else float("nan")
        row["eval_auc"] = ev[-1].get("eval_rtd_auc") if ev else None
        row["seconds"] = int((out / v / "seconds").read_text())
        gen = out / v / ("model" if v == "mlm" else "generator") / "model.safetensors"
        row["cos_g"] = mean_cos(gen, pieces)
        row["cos_d"] = mean_cos(out / v / "discriminator" / "model.safetensors", pieces) if v != "mlm" else None
    rows.append(row)

names = {"gdes": "RTD + GDES", "es": "RTD + ES", "nes": "RTD + NES", "mlm": "MLM only", "random": "random init (no pre-training)"}
f = lambda x, d=3: "-" if x is None else f"{x:.{d}f}"  # noqa: E731
lines = ["# Embedding sharing in small: GDES vs ES vs NES vs MLM", "",
         f"Generated by `scripts/paper_comparison.sh`. Corpus: `scripts/fetch_corpus.sh` (15.8M words of literature, "
         "speeches, Bible text and technical documentation from registry packages), one 8,000-piece tokenizer. "
         f"Each variant: `deberta pretrain --preset tiny --steps {steps} --batch-size 16 --seq-len 128 --seed 1` "
         "(defaults otherwise; the same batches for all). Fine-tuning: VADER sentiment, "
         f"{epochs} epoch(s), lr {lr}, batch 32, max length 64, seeds {', '.join(seeds)}; dev accuracy of the best epoch.", "",
         "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd | held-out MLM loss | held-out RTD AUC | "
         "cos(E_G) | cos(E_D) | pre-training s |",
         "|---|" + "---|" * (len(seeds) + 7)]
for r in rows:
    lines.append(f"| {names[r['variant']]} | " + " | ".join(f"{a:.1f}" for a in r["acc"]) + f" | {r['mean']:.2f} | {r['sd']:.2f} | "
                 f"{f(r.get('eval_mlm'))} | {f(r.get('eval_auc'))} | {f(r.get('cos_g'))} | {f(r.get('cos_d'))} | "
                 f"{r.get('seconds', '-')} |")
lines += ["", "cos(E): the average cosine similarity over all pairs of distinct rows of a word embedding (the "
          "ordinary pieces, ids 4-7999). For GDES, E_D = E_G + E_delta as exported; for ES, E_D = E_G; the MLM "
          "model has one embedding. Held-out values: the last evaluation of each run.",
          "", "![held-out MLM loss per variant](paper_comparison.png)"]
Path("results/paper_comparison.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for v in ("gdes", "es", "nes", "mlm"):
    rec = records(v)
    ev = [r for r in rec if "eval_mlm_loss" in r]
    axes[0].plot([r["step"] for r in ev], [r["eval_mlm_loss"] for r in ev], label=names[v], marker=".")
    ev = [r for r in rec if r.get("eval_rtd_auc") is not None]
    if ev:
        axes[1].plot([r["step"] for r in ev], [r["eval_rtd_auc"] for r in ev], label=names[v], marker=".")
axes[0].set(title="generator MLM loss (held out)", xlabel="step")
axes[1].set(title="discriminator RTD AUC (held out)", xlabel="step")
for a in axes:
    a.legend()
    a.grid(alpha=0.3)
fig.tight_layout()
fig.savefig("results/paper_comparison.png", dpi=100)
PY
