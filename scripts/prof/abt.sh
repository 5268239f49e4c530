#!/bin/sh
# abt.sh PRESET BATCH LEN "FLAGS" RUNS ROUNDS BIN_A BIN_B: interleaved A, B, PyTorch; one line each
P=$1; B=$2; L=$3; T=$4; RUNS=$5; ROUNDS=$6; A=$7; BB=$8
PY=${PY:-/work/main/.venv-ref/bin/python}
for r in $(seq $ROUNDS); do
  echo "round $r load $(cut -d' ' -f1 /proc/loadavg)"
  $A bench --preset $P --batch $B --seq-len $L --threads 2 --runs $RUNS $T | tail -1 | sed "s|^|  A $A: |"
  $BB bench --preset $P --batch $B --seq-len $L --threads 2 --runs $RUNS $T | tail -1 | sed "s|^|  B $BB: |"
  $PY scripts/bench_pytorch.py --preset $P --batch $B --seq-len $L --threads 2 --runs $RUNS $T | tail -1 | sed "s|^|  |"
done
