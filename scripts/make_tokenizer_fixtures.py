#!/usr/bin/env python3
"""Oracle fixtures for crates/tokenizer, made with the sentencepiece library (the reference).

CI has no Python: everything the Rust tests need is written to fixtures/tokenizer/ and committed.

    /work/main/.venv-ref/bin/python scripts/make_tokenizer_fixtures.py [--sdist DIR] [--skip-ours]

What it writes (all small; the total stays well under 3 MB):
  test_model.model, test_ja_model.model   real test models from the sentencepiece sdist (test/)
  deberta_style.model                     trained here with the library in the DeBERTa-v3 layout:
                                          unigram, byte_fallback, nmt_nfkc, [PAD]=0 [CLS]=1
                                          [SEP]=2 [UNK]=3
  variant.model                           trained here: identity normalisation, no dummy prefix,
                                          no extra-whitespace removal, user-defined symbols, no
                                          byte fallback (unknown runs are merged), split digits
  suffix.model                            trained here: identity, treat_whitespace_as_suffix, no
                                          byte fallback
  texts.jsonl                             >= 1,000 test lines: held-out botchan lines plus
                                          generated hard cases (see hard_cases())
  expected/<model>.jsonl                  per text line i (all lines; the hard lines only for the
                                          character-level ja and suffix models): ids, and character offsets as the library
                                          reports them (begin/end of each piece, bytes ->
                                          characters), in the compact form of compact()
  decode/<model>.jsonl                    library DecodeIds for some id sequences
  ours/ours_trained.model                 our trainer's output (`deberta train-tokenizer`), and
  ours/expected.jsonl                     the library's ids and offsets on texts.jsonl with it
                                          (--skip-ours leaves these alone; needs cargo)
"""

import argparse
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "tokenizer")


def find_sdist(path):
    if path:
        return path
    # pip download --no-binary :all: --no-deps sentencepiece==0.2.1 -d /tmp/spsdist
    found = sorted(glob.glob("/tmp/spsdist/**/test/botchan.txt", recursive=True))
    if found:
        return os.path.dirname(found[0])
    for tgz in sorted(glob.glob("/tmp/spsdist/sentencepiece-*.tar.gz")):
        with tarfile.open(tgz) as t:
            t.extractall("/tmp/spsdist/x")
        return find_sdist(None)
    sys.exit("sentencepiece sdist not found: pip download --no-binary :all: --no-deps sentencepiece -d /tmp/spsdist")


def hard_cases(rng):
    """Hand-written and generated lines that stress normalisation and segmentation."""
    lines = [
        "",
        " ",
        "   ",
        "\t",
        "\n",
        "\r\n",
        " \t \n ",
        "\u3000",
        "\u00a0\u00a0",
        "\u2003\u2002\u2009",
        "\u200b",
        "\ufeff",
        "\u00ad",
        "  leading spaces",
        "trailing spaces   ",
        "  both  ",
        "runs    of     spaces      here",
        "tab\tseparated\tvalues",
        "\tleading tab",
        "trailing tab\t",
        "new\nline",
        "multi\n\n\nnewlines",
        "carriage\rreturn",
        "mixed \t\n\r whitespace \u3000 and\u00a0nbsp",
        "ＡＢＣＤ　ＥＦＧ　１２３４５",
        "ｶﾀｶﾅ ﾊﾝｶｸ",
        "ﬁnancial ﬂow ﬀ ﬃ",
        "① ② ③ ⑩ ⑳",
        "㎏ ㎞ ㎡ ㍻ ㈱",
        "Ⅰ Ⅱ Ⅻ ⅻ",
        "™ ℠ ℃ ℉ № ℡",
        "½ ¼ ¾ ⅓ ⅞",
        "x² y³ H₂O E=mc²",
        "𝐀𝐁𝐂 𝒜𝒷𝒸 𝔄𝔅 𝕏𝕐",
        "ǅ ǈ ǋ Ǳ",
        "e\u0301 a\u0300 o\u0302 u\u0308",
        "a\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308",
        "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
        "\u1100\u1161\u11a8 \u1112\u1161\u11ab",
        "café naïve résumé coöperate",
        "cafe\u0301 nai\u0308ve",
        "😀 😃 😄 😁",
        "👨\u200d👩\u200d👧\u200d👦 family",
        "🏳\ufe0f\u200d🌈 flag",
        "👍🏽 👍🏿 👋🏻",
        "🇯🇵 🇺🇸 🇫🇷",
        "1\ufe0f\u20e3 #\ufe0f\u20e3",
        "🧑\u200d💻 coder 👩\u200d🔬",
        "❤️ ♥ ☺️",
        "日本語のテキストです。",
        "東京は日本の首都です",
        "中文文本测试，包括标点符号。",
        "한국어 텍스트 테스트입니다.",
        "混合 mixed テキスト text 텍스트",
        "ＣＪＫ全角と半角の混在ﾃｽﾄ",
        "مرحبا بالعالم",
        "هذا نص عربي مع أرقام ١٢٣",
        "שלום עולם",
        "עברית עם ניקוד: שָׁלוֹם",
        "English then עברית then English",
        "\u200fRLM mark\u200e LRM mark",
        "\u202eoverride\u202c",
        "فارسی: سلام دنیا",
        "Control\x00char",
        "bell\x07 and backspace\x08",
        "\x01\x02\x03\x04\x05",
        "del\x7fchar",
        "c1\x80\x85\x9fcontrols",
        "escape\x1b[31mred\x1b[0m",
        "vertical\x0btab and form\x0cfeed",
        "a" * 300,
        "ab" * 200,
        "supercalifragilisticexpialidocious" * 10,
        "1234567890" * 30,
        "日本" * 100,
        "😀" * 80,
        "\u0301" * 50,
        "Pneumonoultramicroscopicsilicovolcanoconiosis",
        "http://www.example.com/path?query=1&other=2#frag",
        "email@example.com, @handle #hashtag $100 50% 3.14",
        "İstanbul ıi ß ẞ ﬆ",
        "Ελληνικά κείμενο ΣΊΣΥΦΟΣ",
        "Русский текст с ёжиком",
        "हिन्दी पाठ परीक्षण",
        "ภาษาไทยไม่มีช่องว่าง",
        "Tiếng Việt có dấu",
        "\ue000\uf8ff private use",
        "\ufffd replacement",
        "\U0001f600\U0001f601 astral",
        "«quotes» “curly” ‘single’ „low“",
        "dash – em — minus − hyphen ‐",
        "ellipsis… bullet • middot ·",
        "[CLS] [SEP] [MASK] [PAD] [UNK] <s> </s> <unk>",
        "<0x41> <0xFF>",
        "▁ already ▁▁ meta ▁symbol",
        "foo bar foobar <mask> barfoo",
        "digits 0 12 345 6789 ０１２",
    ]
    # Random mixtures from pools of every category above.
    pools = [
        " \t\n\r\u3000\u00a0\u2003\u200b\ufeff",
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789０１２３４５６７８９",
        ".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`",
        "ＡＢＣａｂｃｶﾀｶﾅﬁﬂ①②㎏Ⅻⅻ™½²₂𝐀𝒜ǅ",
        "\u0300\u0301\u0302\u0308\u0327\u0323\u064b\u05b8",
        "😀😃👍🏽👨\u200d👩\u200d👧🇯🇵❤\ufe0f🧑\u200d💻\u20e3",
        "日本語中文测试한국어東京ひらがなカタカナ",
        "مرحباשלוםفارسی\u200f\u200e\u202e",
        "\x00\x01\x07\x08\x0b\x0c\x1b\x7f\x80\x9f\u00ad",
        "éñüßøåæœçÀÉÎÕÜ",
        "ΑΒΓαβγΣσςЖжЁё",
        "▁<>0x",
    ]
    while len(lines) < 700:
        n = rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 80])
        weights = [rng.random() for _ in pools]
        s = []
        for _ in range(n):
            pool = rng.choices(pools, weights)[0]
            s.append(rng.choice(pool))
        lines.append("".join(s))
    # Very long "words" of random letters, and long lines of mixed words.
    for _ in range(10):
        lines.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(100, 1500))))
    return lines


def train(**kw):
    spm.SentencePieceTrainer.train(**kw)


def _varint(b, i):
    v = 0
    shift = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if x < 0x80:
            return v, i


def _fields(b):
    """(field, value) pairs of a protobuf message (varint and length-delimited only)."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise ValueError(wire)
        yield field, v


def encode_with_offsets(sp, text):
    """ids and per-piece [begin, end] (characters) from the library's SentencePieceText, read
    from its serialized form (no protobuf package needed)."""
    spt = sp.encode(text, return_type="serialized_proto")
    pieces = []
    for field, v in _fields(spt):
        if field == 2:  # SentencePieceText.pieces
            d = dict(_fields(v))
            pieces.append((d.get(2, 0), d.get(4, 0), d.get(5, 0)))  # id, begin, end
    b2c = {}
    ci = 0
    bi = 0
    for ch in text:
        b2c[bi] = ci
        bi += len(ch.encode("utf-8"))
        ci += 1
    b2c[bi] = ci
    ids = [p[0] for p in pieces]
    offsets = [[b2c[p[1]], b2c[p[2]]] for p in pieces]
    assert ids == sp.encode(text), text
    return ids, offsets


def compact(ids, offsets):
    """Small fixture rows: ids as "5 17 9"; offsets as "0:5 9 12:12 14", where a bare number is
    the end of a piece that starts where the previous one ended."""
    out = []
    prev_end = 0
    for start, end in offsets:
        out.append(str(end) if start == prev_end else f"{start}:{end}")
        prev_end = end
    return {"ids": " ".join(map(str, ids)), "offsets": " ".join(out)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", help="the sdist's test/ directory")
    ap.add_argument("--skip-ours", action="store_true", help="do not (re)train with our trainer")
    args = ap.parse_args()
    sdist = find_sdist(args.sdist)
    os.makedirs(os.path.join(OUT, "expected"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "decode"), exist_ok=True)
    rng = random.Random(20240611)

    for m in ["test_model.model", "test_ja_model.model"]:
        shutil.copy(os.path.join(sdist, m), os.path.join(OUT, m))

    botchan = open(os.path.join(sdist, "botchan.txt"), encoding="utf-8").read().split("\n")
    # Held out: every 7th line (the library trainers below never see them).
    held = [l for i, l in enumerate(botchan) if i % 7 == 3]
    train_lines = [l for i, l in enumerate(botchan) if i % 7 != 3]
    hard = hard_cases(rng)
    texts = held[:400] + hard
    assert len(texts) >= 1000, len(texts)

    tmp = tempfile.mkdtemp()
    corpus = os.path.join(tmp, "train.txt")
    # Training text: botchan plus some multilingual hard lines (every other one), so the vocab has
    # a few CJK/RTL/emoji characters and byte fallback covers the rest.
    extra = [l for i, l in enumerate(hard) if i % 2 == 0 and "\n" not in l and "\r" not in l]
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(train_lines + extra * 3) + "\n")
    common = dict(input=corpus, model_type="unigram", num_threads=1, shuffle_input_sentence=False,
                  minloglevel=2)
    train(model_prefix=os.path.join(tmp, "deberta_style"), vocab_size=2000, byte_fallback=True,
          normalization_rule_name="nmt_nfkc", pad_id=0, bos_id=1, eos_id=2, unk_id=3,
          pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]",
          character_coverage=0.9995, **common)
    train(model_prefix=os.path.join(tmp, "variant"), vocab_size=600, byte_fallback=False,
          normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
          user_defined_symbols=["<mask>", "foo", "\u2581bar", "日本"], split_digits=True,
          character_coverage=0.98, **common)
    train(model_prefix=os.path.join(tmp, "suffix"), vocab_size=500, byte_fallback=False,
          normalization_rule_name="identity", treat_whitespace_as_suffix=True,
          character_coverage=0.98, **common)
    for m in ["deberta_style", "variant", "suffix"]:
        shutil.copy(os.path.join(tmp, m + ".model"), os.path.join(OUT, m + ".model"))

    with open(os.path.join(OUT, "texts.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")

    models = ["test_model", "test_ja_model", "deberta_style", "variant", "suffix"]
    for m in models:
        sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, m + ".model"))
        # The character-level models (ja, suffix) get the hard lines only, to keep fixtures small.
        first = 0 if m in ("test_model", "deberta_style", "variant") else 400
        with open(os.path.join(OUT, "expected", m + ".jsonl"), "w") as f:
            for i, t in enumerate(texts):
                if i < first:
                    continue
                ids, offsets = encode_with_offsets(sp, t)
                row = {"i": i}
                row.update(compact(ids, offsets))
                f.write(json.dumps(row) + "\n")
        # Decoding: encodings of some texts, plus random id sequences (bytes, controls, unk).
        drng = random.Random(7)
        with open(os.path.join(OUT, "decode", m + ".jsonl"), "w") as f:
            for t in texts[::20]:
                ids = sp.encode(t)
                f.write(json.dumps({"ids": ids, "text": sp.decode(ids)}, ensure_ascii=False) + "\n")
            n = sp.get_piece_size()
            for _ in range(40):
                ids = [drng.randrange(n) for _ in range(drng.randint(0, 12))]
                f.write(json.dumps({"ids": ids, "text": sp.decode(ids)}, ensure_ascii=False) + "\n")

    if not args.skip_ours:
        ours(train_lines + extra * 3, texts)

    total = 0
    for dirpath, _, files in os.walk(OUT):
        for fn in files:
            total += os.path.getsize(os.path.join(dirpath, fn))
    print(f"fixtures/tokenizer: {total / 1e6:.2f} MB")


def ours(train_text, texts):
    """Train with our trainer (the code behind `deberta train-tokenizer`, via the crate's example)
    on the same text as deberta_style.model, check that the sentencepiece library loads the result,
    and record the library's ids and offsets on texts.jsonl (its botchan lines are held out from
    training; half of the hard lines were in the training text)."""
    out_dir = os.path.join(OUT, "ours")
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp()
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(train_text) + "\n")
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.join(ROOT, "target-tok"))
    subprocess.run(["cargo", "run", "--release", "-q", "-p", "deberta-tokenizer", "--example", "train_tokenizer",
                    "--", "--corpus", corpus, "--vocab-size", "1000", "--out", tmp], check=True, cwd=ROOT,
                   env=env)
    shutil.copy(os.path.join(tmp, "spm.model"), os.path.join(out_dir, "ours_trained.model"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out_dir, "ours_trained.model"))
    assert sp.piece_to_id("[PAD]") == 0 and sp.piece_to_id("[CLS]") == 1
    assert sp.piece_to_id("[SEP]") == 2 and sp.unk_id() == 3
    with open(os.path.join(out_dir, "expected.jsonl"), "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            ids, offsets = encode_with_offsets(sp, t)
            row = {"i": i}
            row.update(compact(ids, offsets))
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
