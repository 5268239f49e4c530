#!/bin/sh
# Interleaved ours / PyTorch runs: ratio.sh PRESET BATCH LEN [--train] [RUNS] [ROUNDS]
# Prints each pair's tokens/s and the ratio.
P=$1; B=$2; L=$3; T=$4; RUNS=${5:-3}; ROUNDS=${6:-2}
BIN=${BIN:-./target/release/deberta}
PY=${PY:-/work/main/.venv-ref/bin/python}
for r in $(seq $ROUNDS); do
  o=$($BIN bench --preset $P --batch $B --seq-len $L --threads 2 --runs $RUNS $T --json | tail -1)
  t=$($PY scripts/bench_pytorch.py --preset $P --batch $B --seq-len $L --threads 2 --runs $RUNS $T --json | tail -1)
  python3 -c "
import json,sys
o=json.loads('''$o'''); t=json.loads('''$t''')
print(f\"{o['preset']} {o['batch']}x{o['seq_len']} {o['mode']}: ours {o['tokens_per_second']:.0f} tok/s ({o['peak_rss_bytes']/2**20:.0f} MiB), torch {t['tokens_per_second']:.0f} tok/s ({t['peak_rss_bytes']/2**20:.0f} MiB), ratio {o['tokens_per_second']/t['tokens_per_second']:.2f}\")"
done
