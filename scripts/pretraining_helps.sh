#!/usr/bin/env bash
# Does pre-training help? Pre-trains a tiny DeBERTaV3 (RTD + GDES, `deberta pretrain` defaults) on
# the State of the Union texts, then fine-tunes its exported discriminator and a random
# initialisation of the same config on the VADER movie-review sentiment snippets with identical
# settings, over several fine-tuning seeds. Writes results/pretraining_helps.md.
#
#   scripts/pretraining_helps.sh  (env: STEPS=1000 MORE=2000 REFERENCE=1 SEEDS="1 2 3" EPOCHS="2 4 8" LR=3e-4 THREADS)
# MORE > 0 also continues the pre-training from its export (`--init-from`, data order seed 2) for
# MORE steps and fine-tunes that model too: what a larger budget buys.
# REFERENCE=1 also pre-trains with the PyTorch reference loop (scripts/reference_pretrain.py: HF
# transformers' model, the same recipe, corpus, tokenizer and budget; needs .venv-ref) and
# fine-tunes its export the same way: is what we see our implementation or the recipe at this scale?
# EPOCHS may list several fine-tuning lengths: each gets its own table. About 45 minutes on 2 cores
# (pre-training ~20, twelve fine-tuning runs ~25).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release/deberta
STEPS=${STEPS:-1000}
MORE=${MORE:-2000}
SEEDS=${SEEDS:-1 2 3}
EPOCHS=${EPOCHS:-2 4 8}
REFERENCE=${REFERENCE:-1}
LR=${LR:-3e-4}
BATCH=32
MAX_LENGTH=64
OUT=runs/helps
PRE_OUT=$OUT/pretrain
THREADS_FLAG=()
if [ -n "${THREADS:-}" ]; then THREADS_FLAG=(--threads "$THREADS"); fi

cargo build --release --locked -p deberta-cli
scripts/fetch_sotu.sh
python3 scripts/fetch_vader.py data/vader

PRETRAIN=(pretrain --corpus data/sotu --vocab-size 8000 --preset tiny --steps "$STEPS" --batch-size 16
          --seq-len 128 --seed 1 --out "$PRE_OUT")
start=$(date +%s)
if [ ! -f "$PRE_OUT/discriminator/config.json" ]; then
    rm -rf "$PRE_OUT"
    "$BIN" "${PRETRAIN[@]}" "${THREADS_FLAG[@]}" --log-every 100
    echo $(( $(date +%s) - start )) > "$PRE_OUT/seconds"
fi
pre_seconds=$(cat "$PRE_OUT/seconds")
MORE_OUT=$OUT/pretrain-$((STEPS + MORE))
NAMES="pretrained random"
if [ "$MORE" -gt 0 ]; then
    NAMES="pretrained more random"
    if [ ! -f "$MORE_OUT/discriminator/config.json" ]; then
        rm -rf "$MORE_OUT"
        "$BIN" pretrain --corpus data/sotu --tokenizer "$PRE_OUT/spm.model" --init-from "$PRE_OUT" --steps "$MORE" \
            --batch-size 16 --seq-len 128 --seed 2 --out "$MORE_OUT" "${THREADS_FLAG[@]}" --log-every 200
    fi
fi
if [ "$REFERENCE" = 1 ]; then
    NAMES="${NAMES% random} reference random"
    if [ ! -f "$OUT/reference/discriminator/config.json" ]; then
        .venv-ref/bin/python scripts/reference_pretrain.py --corpus data/sotu --tokenizer "$PRE_OUT/spm.model" \
            --config "$PRE_OUT/discriminator/config.json" --steps "$STEPS" --batch-size 16 --seq-len 128 --seed 1 \
            --out "$OUT/reference" ${THREADS:+--threads "$THREADS"}
    fi
fi
PRE=$PRE_OUT/discriminator
RANDOM_INIT=$OUT/random-init
rm -rf "$RANDOM_INIT"
"$BIN" init --config "$PRE/config.json" --head rtd --seed 0 --out "$RANDOM_INIT"
cp "$PRE/spm.model" "$PRE/tokenizer_config.json" "$RANDOM_INIT/"

for epochs in $EPOCHS; do
for seed in $SEEDS; do
    for name in $NAMES; do
        case $name in
            pretrained) model=$PRE ;; more) model=$MORE_OUT/discriminator ;;
            reference) model=$OUT/reference/discriminator ;; *) model=$RANDOM_INIT ;;
        esac
        run=$OUT/$name-e$epochs-seed$seed
        [ -f "$run/metrics.jsonl" ] && grep -q best_epoch "$run/metrics.jsonl" && continue
        rm -rf "$run"
        "$BIN" finetune --model "$model" --task classification --label-column label --labels 0,1 \
            --text-column sentence --data data/vader/sentiment/train.tsv --dev data/vader/sentiment/dev.tsv \
            --epochs "$epochs" --lr "$LR" --batch-size $BATCH --max-length $MAX_LENGTH --seed "$seed" \
            --warmup-ratio 0.1 --out "$run" "${THREADS_FLAG[@]}" --log-every 100
    done
done
done

mkdir -p results
python3 - "$OUT" "$SEEDS" "$pre_seconds" "${PRETRAIN[*]}" "$EPOCHS" "$LR" "$NAMES" "$MORE" "$STEPS" \
    > results/pretraining_helps.md <<'PY'
import json, statistics, sys
from pathlib import Path

out, seeds, pre_s, pretrain, epochs, lr, names, more, steps = sys.argv[1:]
names = names.split()
out, seeds = Path(out), seeds.split()

def best_acc(run):
    last = json.loads((out / run / "metrics.jsonl").read_text().splitlines()[-1])
    return 100 * next(v for k, v in last.items() if k.startswith("best/") and k.endswith("/accuracy"))

def ft_total():
    total = 0.0
    for run in out.iterdir():
        m = run / "metrics.jsonl"
        if run.is_dir() and m.is_file() and run.name.split("-e")[0] in names:
            timed = [json.loads(l) for l in m.read_text().splitlines() if "elapsed_seconds" in l]
            total += timed[-1]["elapsed_seconds"] if timed else 0.0
    return total

def mean_sd(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

records = [json.loads(l) for l in (out / "pretrain/metrics.jsonl").read_text().splitlines()]
evals = [r for r in records if "eval_rtd_auc" in r]

print("# Pre-training helps: pre-trained vs random initialisation on VADER sentiment\n")
print("Generated by `scripts/pretraining_helps.sh`. Pre-training: `deberta " + pretrain + "` (defaults "
      f"otherwise; {pre_s} s) on the 233 State of the Union texts (`scripts/fetch_sotu.sh`). Both models are "
      "fine-tuned identically on VADER sentiment (`scripts/fetch_vader.py`, dev = fixed 10%): lr "
      f"{lr}, 10% warmup, linear decay, batch 32, max length 64; accuracy of the best epoch on dev; "
      f"fine-tuning seeds {', '.join(seeds)} ({ft_total():.0f} s of fine-tuning in all, summed over the runs).\n")
for e in epochs.split():
    acc = {n: [best_acc(f"{n}-e{e}-seed{s}") for s in seeds] for n in names}
    print(f"## {e} fine-tuning epochs\n")
    print("| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |")
    print("|---|" + "---|" * (len(seeds) + 2))
    labels = {"pretrained": f"pre-trained discriminator ({steps} steps)",
              "more": f"pre-trained, then {more} more steps (`--init-from`)",
              "reference": f"PyTorch reference loop, same recipe and budget ({steps} steps)",
              "random": "random init, same config"}
    for n in names:
        label = labels[n]
        m, sd = mean_sd(acc[n])
        print(f"| {label} | " + " | ".join(f"{a:.1f}" for a in acc[n]) + f" | {m:.2f} | {sd:.2f} |")
    print()
    for n in [n for n in names if n != "random"]:
        diffs = [a - b for a, b in zip(acc[n], acc["random"])]
        m, sd = mean_sd(diffs)
        print(f"Margin ({labels[n]} - random), mean over seeds: **{m:+.2f}** points (per seed: "
              + ", ".join(f"{d:+.1f}" for d in diffs) + f"; sd {sd:.2f}).\n")
if "more" in names:
    more_evals = [json.loads(l) for l in (out / f"pretrain-{int(steps) + int(more)}/metrics.jsonl").read_text().splitlines()]
    evals += [dict(r, step=r["step"] + int(steps)) for r in more_evals if "eval_rtd_auc" in r]
if "reference" in names:
    ref = json.loads((out / "reference/metrics.jsonl").read_text().splitlines()[-1])
    ours = [r for r in records if "eval_rtd_auc" in r][-1]
    print(f"Held out at step {steps}, ours vs the PyTorch reference loop (the same 64 held-out lines, each side "
          f"with its own masks and samples): MLM loss {ours['eval_mlm_loss']:.3f} vs {ref['eval_mlm_loss']:.3f}, RTD loss "
          f"{ours['eval_rtd_loss']:.3f} vs {ref['eval_rtd_loss']:.3f}, RTD AUC {ours['eval_rtd_auc']:.3f} vs "
          f"{ref['eval_rtd_auc']:.3f}, replaced fraction {ours['eval_replaced_fraction']:.3f} vs "
          f"{ref['eval_replaced_fraction']:.3f}.\n")
if evals:
    e0, e1 = evals[0], evals[-1]
    print("Pre-training on held-out lines, first -> last evaluation (step "
          f"{e0['step']} -> {e1['step']}): MLM loss {e0['eval_mlm_loss']:.3f} -> {e1['eval_mlm_loss']:.3f}, "
          f"MLM accuracy {e0['eval_mlm_accuracy']:.3f} -> {e1['eval_mlm_accuracy']:.3f}, "
          f"RTD AUC {e0['eval_rtd_auc']:.3f} -> {e1['eval_rtd_auc']:.3f}, "
          f"replaced fraction {e0['eval_replaced_fraction']:.3f} -> {e1['eval_replaced_fraction']:.3f}.")
PY
cat results/pretraining_helps.md
