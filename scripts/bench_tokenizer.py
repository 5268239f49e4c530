#!/usr/bin/env python3
"""Tokenizer throughput: deberta-tokenizer (Rust) vs the sentencepiece library, same text.

    /work/main/.venv-ref/bin/python scripts/bench_tokenizer.py MODEL TEXT [REPEAT]

Runs the crate's `bench_tokenizer` example (release) and the library on the lines of TEXT
(repeated REPEAT times), one thread and all threads, and prints both plus the ratios. The
library's all-threads number uses `encode(list, num_threads=N)`; the Rust one uses rayon.
"""
import json
import os
import subprocess
import sys
import time

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    model, text = sys.argv[1], sys.argv[2]
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.join(ROOT, "target-tok"))
    out = subprocess.run(["cargo", "run", "--release", "-q", "-p", "deberta-tokenizer", "--example",
                          "bench_tokenizer", "--", model, text, str(repeat)],
                         check=True, cwd=ROOT, env=env, capture_output=True, text=True).stdout
    ours = json.loads(out.strip().splitlines()[-1])

    sp = spm.SentencePieceProcessor(model_file=model)
    # Split like Rust's str::lines (only \n, then a trailing \r), not Python's splitlines().
    body = open(text, encoding="utf-8", newline="").read()
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [l[:-1] if l.endswith("\r") else l for l in lines] * repeat
    nbytes = sum(len(l.encode("utf-8")) for l in lines)
    sp.encode(lines[:1000])
    t = time.perf_counter()
    toks = sum(len(sp.encode(l)) for l in lines)
    one_loop = time.perf_counter() - t
    t = time.perf_counter()
    toks_b = sum(len(x) for x in sp.encode(lines, num_threads=1))
    one = time.perf_counter() - t
    threads = os.cpu_count()
    t = time.perf_counter()
    toks_all = sum(len(x) for x in sp.encode(lines, num_threads=threads))
    alls = time.perf_counter() - t
    assert toks == toks_b == toks_all
    # Ids equal? (the fixtures test this exhaustively; here a cheap sanity check on token counts)
    lib = {"impl": "sentencepiece " + spm.__version__, "lines": len(lines), "bytes": nbytes,
           "tokens": toks, "one_thread_loop_s": round(one_loop, 4), "one_thread_s": round(one, 4),
           "one_thread_lines_per_s": round(len(lines) / one), "threads": threads,
           "all_threads_s": round(alls, 4), "all_threads_lines_per_s": round(len(lines) / alls)}
    print(json.dumps(ours))
    print(json.dumps(lib))
    print(f"tokens equal: {ours['tokens'] == toks}")
    print(f"one thread: ours / library = {lib['one_thread_s'] / ours['one_thread_s']:.2f}x "
          f"(library per-line Python loop: {one_loop / ours['one_thread_s']:.2f}x)")
    print(f"all threads ({threads}): ours / library = {lib['all_threads_s'] / ours['all_threads_s']:.2f}x")


if __name__ == "__main__":
    main()
