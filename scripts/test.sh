#!/usr/bin/env bash
# The test suite: unit tests, HF parity fixtures, gradient and round-trip tests. No Python needed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --locked "$@"
