#!/usr/bin/env bash
# Load test of `deberta serve` (release build) on a random model made by `deberta init`, compared
# with `deberta bench`'s offline throughput for the same token mix; writes results/serve_load.md.
# Run it alone on the machine: timings taken beside other work mean nothing.
#
#   scripts/serve_load.sh                        # base preset
#   PRESET=small REQUESTS=256 scripts/serve_load.sh
#   DTYPE=int8 OUT=results/serve_load_int8.md scripts/serve_load.sh
#
# Targets: at concurrency 64 the server reaches >= 85% of the offline throughput with no failed
# request; at 4x --max-concurrent-requests only the excess is refused (429), nothing fails, and
# the server answers normally afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-base}
LENGTHS=${LENGTHS:-16,64,256}
REQUESTS=${REQUESTS:-512}
MAX_CONCURRENT=${MAX_CONCURRENT:-64}
MAX_BATCH_TOKENS=${MAX_BATCH_TOKENS:-16384}
THREADS=${THREADS:-$(nproc)}
DTYPE=${DTYPE:-f32}
OUT=${OUT:-results/serve_load.md}
DEBERTA=${DEBERTA:-target/release/deberta}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p deberta-cli
TMP=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$TMP"' EXIT

"$DEBERTA" init --preset "$PRESET" --out "$TMP/model" >/dev/null
cp fixtures/tokenizer/deberta_style.model "$TMP/model/spm.model"
"$DEBERTA" serve --model "$TMP/model" --port 0 --threads "$THREADS" --dtype "$DTYPE" \
    --max-concurrent-requests "$MAX_CONCURRENT" --max-batch-tokens "$MAX_BATCH_TOKENS" \
    >"$TMP/serve.out" 2>"$TMP/serve.err" &
PID=$!
URL=
for _ in $(seq 600); do
    URL=$(sed -n 's/^listening on //p' "$TMP/serve.out")
    [ -n "$URL" ] && break
    kill -0 $PID 2>/dev/null || { cat "$TMP/serve.err"; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "server did not start"; exit 1; }

"$DEBERTA" bench-serve --url "$URL" --lengths "$LENGTHS" --concurrency 1,8,64 --requests "$REQUESTS" \
    --overload 4 --json "$TMP/load.json" >"$TMP/load.md"
kill $PID && wait $PID || true
PID=

# Offline: the same lengths as whole batches (what the server forms at concurrency 64).
lengths=$(python3 -c 'import json,sys; print(" ".join(map(str, json.load(open(sys.argv[1]))["lengths"])))' "$TMP/load.json")
: >"$TMP/offline.jsonl"
for l in $lengths; do
    batch=$(( MAX_BATCH_TOKENS / l < 64 ? MAX_BATCH_TOKENS / l : 64 ))
    "$DEBERTA" bench --preset "$PRESET" --batch "$batch" --seq-len "$l" --threads "$THREADS" --dtype "$DTYPE" --json | tail -n 1 >>"$TMP/offline.jsonl"
done

python3 - "$TMP/load.json" "$TMP/offline.jsonl" "$TMP/load.md" "$OUT" "$PRESET" "$THREADS" "$MAX_CONCURRENT" <<'EOF'
import json, sys
load = json.load(open(sys.argv[1]))
offline = [json.loads(l) for l in open(sys.argv[2])]
table, out, preset, threads, limit = open(sys.argv[3]).read(), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
# Equal shares of requests per length: tokens per share / seconds per share.
mix = sum(o["seq_len"] for o in offline) / sum(o["seq_len"] / o["tokens_per_second"] for o in offline)
c64 = next(l for l in load["levels"] if l["concurrency"] == 64)
ratio = c64["tokens_per_second"] / mix
over = load["overload"]
lines = [
    "# `deberta serve` under load",
    "",
    f"Model: random `{preset}` preset (`deberta init`), CPU, {threads} threads, "
    f"--max-concurrent-requests {limit}. Made by `scripts/serve_load.sh`.",
    "",
    table,
    "",
    "Offline (`deberta bench`, same lengths, whole batches):",
    "",
    "| seq len | batch | tokens/s |",
    "|---:|---:|---:|",
    *[f"| {o['seq_len']} | {o['batch']} | {o['tokens_per_second']:.0f} |" for o in offline],
    "",
    f"Offline throughput for the mix: {mix:.0f} tokens/s.",
    f"Server at concurrency 64: {c64['tokens_per_second']:.0f} tokens/s = **{ratio:.0%}** of offline "
    f"(target >= 85%), {c64['failed']} failed (target 0).",
]
if over:
    lv = over["level"]
    lines.append(
        f"Overload ({lv['concurrency']} clients): {lv['ok']} answered, {lv['rejected']} refused with 429, "
        f"{lv['failed']} failed otherwise (target 0); recovered afterwards: {over['recovered']}."
    )
ok = ratio >= 0.85 and c64["failed"] == 0 and (not over or (over["level"]["failed"] == 0 and over["recovered"]))
lines += ["", f"Targets met: {'yes' if ok else 'no'}", ""]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
EOF
