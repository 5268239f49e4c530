#!/usr/bin/env bash
# 300-step trajectory parity of GDES, ES, NES and MLM-only against the PyTorch reference loop.
#   scripts/trajectory_parity.sh [STEPS]      -> results/trajectory_parity.md
# Needs .venv-ref (README: reference stack) and a release build. About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-300}
WORK=data/trajectory
PY=.venv-ref/bin/python
cargo build --release --locked -q
mkdir -p "$WORK"
pairs=()
for v in gdes es nes mlm; do
  if [ "$v" = mlm ]; then flags=(--objective mlm); else flags=(--sharing "$v"); fi
  $PY scripts/rtd_trajectory.py --out "$WORK/$v" --steps "$STEPS" --warmup-steps $((STEPS / 10)) "${flags[@]}"
  ./target/release/deberta debug rtd-steps --fixture "$WORK/$v" --output "$WORK/$v.ours.json"
  pairs+=("$v:$WORK/$v:$WORK/$v.ours.json")
done
# The reference against itself in float32: how far rounding alone carries each trajectory.
for v in gdes mlm; do
  if [ "$v" = mlm ]; then flags=(--objective mlm); else flags=(--sharing "$v"); fi
  $PY scripts/rtd_trajectory.py --out "$WORK/$v-f32" --steps "$STEPS" --warmup-steps $((STEPS / 10)) "${flags[@]}" --dtype float32
  pairs+=("$v (PyTorch float32):$WORK/$v:$WORK/$v-f32/expected.json")
done
$PY scripts/rtd_trajectory.py --report "${pairs[@]}" --out results/trajectory_parity.md
