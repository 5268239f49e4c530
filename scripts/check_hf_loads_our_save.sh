#!/usr/bin/env bash
# Saves every parity fixture through `deberta convert` and has HF transformers load the result;
# writes fixtures/hf_loads_our_save.json (checked by crates/io/tests/parity.rs in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p deberta-cli
out=$(mktemp -d)
for d in fixtures/parity/*/; do
  ./target/release/deberta convert --model "$d" --out "$out/$(basename "$d")"
done
.venv-ref/bin/python scripts/make_fixtures.py --check-saved "$out"
rm -rf "$out"
