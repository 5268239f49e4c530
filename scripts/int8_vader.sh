#!/usr/bin/env bash
# int8 vs f32 accuracy on a fine-tuned model with real data: the VADER movie-review sentiment
# snippets (scripts/fetch_vader.py, dev = fixed 10%). Trains an 8000-piece tokenizer on the training
# sentences, initialises the tiny preset (hidden 128, 2 layers) randomly, fine-tunes it for EPOCHS,
# then scores the best checkpoint on dev with `deberta evaluate --dtype f32` and `--dtype int8` and
# writes the figures to results/int8.md (the section between the markers). A few minutes on 2 cores.
#
#   scripts/int8_vader.sh   (env: EPOCHS=3 SEED=1 THREADS)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CARGO_TARGET_DIR:-target}/release/deberta
EPOCHS=${EPOCHS:-3}
SEED=${SEED:-1}
OUT=runs/int8-vader
THREADS_FLAG=()
if [ -n "${THREADS:-}" ]; then THREADS_FLAG=(--threads "$THREADS"); fi

cargo build --release --locked -p deberta-cli
[ -f data/vader/sentiment/dev.tsv ] || python3 scripts/fetch_vader.py data/vader
mkdir -p "$OUT"
if [ ! -f "$OUT/ft/best/config.json" ]; then
    rm -rf "$OUT/tok" "$OUT/init" "$OUT/ft"
    tail -n +2 data/vader/sentiment/train.tsv | cut -f1 > "$OUT/train.txt"
    "$BIN" train-tokenizer --corpus "$OUT/train.txt" --vocab-size 8000 --out "$OUT/tok"
    "$BIN" init --preset tiny --vocab-size 8001 --seed 0 --out "$OUT/init"
    cp "$OUT/tok/spm.model" "$OUT/tok/tokenizer_config.json" "$OUT/init/"
    "$BIN" finetune --model "$OUT/init" --task classification --label-column label --labels 0,1 \
        --text-column sentence --data data/vader/sentiment/train.tsv --dev data/vader/sentiment/dev.tsv \
        --epochs "$EPOCHS" --lr 3e-4 --batch-size 32 --max-length 64 --seed "$SEED" --warmup-ratio 0.1 \
        --out "$OUT/ft" "${THREADS_FLAG[@]}" --log-every 100
fi
declare -A ACC
for dtype in f32 int8; do
    mkdir -p "$OUT/pred-$dtype"
    start=$(date +%s.%N)
    line=$("$BIN" evaluate --model "$OUT/ft/best" --task classification --data data/vader/sentiment/dev.tsv --dtype "$dtype" \
        --predictions-dir "$OUT/pred-$dtype" "${THREADS_FLAG[@]}" | tail -1)
    echo "$dtype: $line ($(echo "$(date +%s.%N) - $start" | bc) s)"
    ACC[$dtype]=$line
done
agree=$(python3 - "$OUT" <<'PY'
import json, sys
rows = [[json.loads(l) for l in open(f"{sys.argv[1]}/pred-{d}/predictions_dev.jsonl")] for d in ("f32", "int8")]
same = sum(a["label"] == b["label"] for a, b in zip(*rows))
gap = max(abs(p - q) for a, b in zip(*rows) for p, q in zip(a["probabilities"], b["probabilities"]))
print(f"{same} of {len(rows[0])} (largest probability difference {gap:.4f})")
PY
)
python3 - "${ACC[f32]}" "${ACC[int8]}" "$agree" "$EPOCHS" "$SEED" <<'PY'
import json, re, sys
f32, int8 = (json.loads(x) for x in sys.argv[1:3])
agree, epochs, seed = sys.argv[3:]
acc = lambda m: 100 * next(v for k, v in m.items() if k.endswith("accuracy"))
f1 = lambda m: 100 * next(v for k, v in m.items() if k.endswith("f1"))
section = f"""<!-- vader:begin (scripts/int8_vader.sh rewrites this section) -->
| dev set | accuracy | F1 |
|---|---|---|
| f32 | {acc(f32):.2f} | {f1(f32):.2f} |
| int8 | {acc(int8):.2f} | {f1(int8):.2f} |
| int8 - f32 | {acc(int8) - acc(f32):+.2f} points | {f1(int8) - f1(f32):+.2f} points |

Same predicted label: {agree}. Model: the tiny preset (hidden 128, 2 layers, 8001-piece tokenizer
trained on the training sentences), random initialisation, fine-tuned {epochs} epochs (lr 3e-4, 10%
warmup, batch 32, max length 64, seed {seed}); the best epoch's checkpoint, scored with
`deberta evaluate --dtype f32` and `--dtype int8`.
<!-- vader:end -->"""
path = "results/int8.md"
text = open(path).read()
text = re.sub(r"<!-- vader:begin.*?<!-- vader:end -->", lambda _: section, text, flags=re.S)
open(path, "w").write(text)
print(section)
PY
