#!/usr/bin/env bash
# Issue 7's device check: deberta-rs on CUDA against HF transformers / PyTorch on the same GPU.
#
#   scripts/gpu_check.sh                 # on the lent GPU machine, from the repo root
#   scripts/gpu_check.sh --cpu-dry-run   # here: the same flow on CPU, tiny preset and shapes
#
# Needs a prebuilt binary (the GPU machine has no Rust toolchain), built here with
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p deberta-cli --features cuda
# (13000 = CUDA 13.0, the lent machines' driver; without it cudarc falls back to the newest
# bindings it knows) and carried to the machine at target/release/deberta (or DEBERTA_BIN=...).
# Python: the machine's python3 (torch, transformers, safetensors), or PYTHON=...
#
# Steps (each with a timeout): init a base-shaped random model; parity of `deberta forward
# --device cuda` against HF DebertaV2Model on the GPU in f32 (tol 1e-3) and bf16 (tol 2e-2);
# inference tokens/s at 8 x 512 and 32 x 128 (f32 and bf16) against HF eager; one RTD training
# step against the PyTorch step; a table with ratios and MFU last. Exit status 1 if parity fails
# (or a parity step did not run). Results and logs: $GPU_CHECK_OUT (default $OUT or /tmp/gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--cpu-dry-run" ]] && DRY=1
BIN=${DEBERTA_BIN:-target/release/deberta}
PY=${PYTHON:-python3}
RES=${GPU_CHECK_OUT:-${OUT:-/tmp/gpu_check}}
mkdir -p "$RES"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if ((DRY)); then
    DEV=cpu PRESET=tiny
    PAR_B=2 PAR_L=48 BIG_B=2 BIG_L=64 SMALL_B=4 SMALL_L=16 TR_B=2 TR_L=32
    RUNS=2 TRAIN_RUNS=1 T_INIT=120 T_STEP=300
else
    DEV=cuda PRESET=base
    PAR_B=4 PAR_L=512 BIG_B=8 BIG_L=512 SMALL_B=32 SMALL_L=128 TR_B=8 TR_L=512
    RUNS=5 TRAIN_RUNS=3 T_INIT=90 T_STEP=120
    # cubecl compiles kernels with NVRTC at run time: it needs the CUDA headers (CUDA_PATH or
    # /usr/local/cuda) and libnvrtc; take them from nvcc's toolkit or PyTorch's wheels.
    if [[ -z "${CUDA_PATH:-}" && ! -d /usr/local/cuda ]] && command -v nvcc >/dev/null; then
        CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
        export CUDA_PATH
    fi
    libs=$(
        ls -d "${CUDA_PATH:-/usr/local/cuda}"/lib64 "${CUDA_PATH:-/usr/local/cuda}"/targets/x86_64-linux/lib 2>/dev/null
        "$PY" -c 'import glob, os, nvidia; [print(d) for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "*", "lib"))]' 2>/dev/null
    )
    export LD_LIBRARY_PATH=$(echo $libs | tr ' ' ':')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$RES/gpu.txt"
    echo "CUDA_PATH=${CUDA_PATH:-/usr/local/cuda} LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
fi
[[ -x "$BIN" ]] || { echo "no binary at $BIN (build with --features cuda, carry it, or set DEBERTA_BIN)"; exit 2; }
"$PY" -c 'import torch, transformers, safetensors; print("torch", torch.__version__, "transformers", transformers.__version__)' || exit 2
export RUST_LOG=${RUST_LOG:-warn} PYTHONUNBUFFERED=1

# step NAME SECONDS CMD...: runs CMD with a timeout, output to $RES/NAME.log, one status line.
step() {
    local name=$1 secs=$2
    shift 2
    local t0=$SECONDS
    timeout "$secs" "$@" >"$RES/$name.log" 2>&1
    local rc=$?
    printf '%-24s rc %3d  %4ds  %s\n' "$name" "$rc" $((SECONDS - t0)) "$(grep -v '^{' "$RES/$name.log" | tail -n 1 | cut -c1-110)"
    return $rc
}

MODEL=$WORK/model
step init "$T_INIT" "$BIN" init --preset "$PRESET" --head base --out "$MODEL" || exit 1
VOCAB=$("$PY" -c "import json; print(json.load(open('$MODEL/config.json'))['vocab_size'])")
step inputs 60 "$PY" scripts/gpu_check.py inputs --vocab-size "$VOCAB" --batch "$PAR_B" --seq-len "$PAR_L" --pad --out "$WORK/in_padded.json"
step inputs_full 60 "$PY" scripts/gpu_check.py inputs --vocab-size "$VOCAB" --batch "$PAR_B" --seq-len "$PAR_L" --out "$WORK/in_full.json"
# Gated: f32 with padded rows, bf16 without. bf16 with padding is run for information only: the
# model fills blocked scores with f32::MIN, which rounds to -inf in bf16, so a padded query row
# (all blocked) softmaxes to NaN and the NaN reaches every row through V (seen on CPU bf16).
for check in f32:padded:parity bf16:full:parity bf16:padded:info; do
    IFS=: read -r dtype inp kind <<<"$check"
    tol=1e-3
    [[ $dtype == bf16 ]] && tol=2e-2
    name="${kind}_${dtype}_$inp"
    rm -f "$RES/$name.json"
    step "forward_${dtype}_$inp" "$T_STEP" "$BIN" forward --device $DEV --dtype $dtype --model "$MODEL" \
        --input "$WORK/in_$inp.json" --output "$WORK/ours.safetensors" &&
        step "$name" "$T_STEP" "$PY" scripts/gpu_check.py parity --model "$MODEL" --input "$WORK/in_$inp.json" \
            --ours "$WORK/ours.safetensors" --dtype $dtype --device $DEV --tol $tol --json "$RES/$name.json"
    [[ -f "$RES/$name.json" ]] || echo "{\"dtype\": \"$dtype\", \"rel_err\": Infinity, \"tol\": $tol, \"pass\": false}" >"$RES/$name.json"
done

for shape in "$BIG_B $BIG_L" "$SMALL_B $SMALL_L"; do
    read -r b l <<<"$shape"
    tag=$([[ $l == "$BIG_L" ]] && echo 8x512 || echo 32x128)
    for dtype in f32 bf16; do
        step "ours_inf_${tag}_$dtype" "$T_STEP" "$BIN" bench --device $DEV --dtype $dtype --preset "$PRESET" \
            --batch "$b" --seq-len "$l" --runs "$RUNS" --warmup 2 --json
        step "torch_inf_${tag}_$dtype" "$T_STEP" "$PY" scripts/bench_pytorch.py --device $DEV --dtype $dtype \
            --preset "$PRESET" --batch "$b" --seq-len "$l" --runs "$RUNS" --warmup 2 --json
    done
done
step ours_train "$T_STEP" "$BIN" bench --train --device $DEV --preset "$PRESET" --batch $TR_B --seq-len $TR_L --runs $TRAIN_RUNS --warmup 1 --json
step torch_train "$T_STEP" "$PY" scripts/bench_pytorch.py --train --device $DEV --preset "$PRESET" --batch $TR_B --seq-len $TR_L --runs $TRAIN_RUNS --warmup 1 --json

"$PY" scripts/gpu_check.py table --results "$RES" --preset "$PRESET" | tee "$RES/table.md"
