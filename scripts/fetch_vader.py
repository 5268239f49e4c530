#!/usr/bin/env python3
"""Fetch the VADER movie-review snippets and write fixed train/dev splits for fine-tuning.

Source: the vaderSentiment 3.3.2 sdist on PyPI ships `additional_resources/hutto_ICWSM_2014.tar.gz`
(Hutto & Gilbert, ICWSM 2014), whose `movieReviewSnippets_GroundTruth.txt` holds 10,605
sentence-level snippets of Rotten Tomatoes reviews (from Pang & Lee's 2,000 reviews), each with the
mean of at least 20 human sentiment ratings on a -4..+4 scale. Format: tab-separated
`ID  MEAN-SENTIMENT-RATING  TEXT-SNIPPET`, CRLF line ends, UTF-8.

Output (under OUT, default data/vader):
  sentiment/{train,dev}.tsv  SST-2 layout, header `sentence<TAB>label`: 1 if the mean rating is
                             positive, 0 if negative. Snippets with |rating| < 0.5 are dropped as
                             neutral: raters disagreed or the snippet is factual, and such labels
                             would be mostly noise (only 37 ratings are exactly 0, 533 are below 0.5).
  rating/{train,dev}.tsv     header `sentence<TAB>score`, the mean rating as given, for regression
                             (read it with the generic reader: text column `sentence`, label column
                             `score`, regression).
The split is over all snippets, once, before the neutral filter, so a snippet is in the same split
in both tasks: ids shuffled with random.Random(13), the first tenth (rounded down) is dev.

Standard library only:  python3 scripts/fetch_vader.py [OUT]
"""

import hashlib
import io
import json
import random
import sys
import tarfile
import urllib.request
from pathlib import Path

PACKAGE, VERSION = "vaderSentiment", "3.3.2"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER = f"{PACKAGE}-{VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz"
SNIPPETS = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
EXPECTED_SNIPPETS = 10605
SEED = 13
NEUTRAL_BELOW = 0.5


def sdist_url():
    """The sdist's URL from PyPI's simple index (JSON form, PEP 691)."""
    request = urllib.request.Request(
        f"https://pypi.org/simple/{PACKAGE.lower()}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        index = json.load(response)
    for f in index["files"]:
        if f["filename"] == SDIST:
            return f["url"]
    raise SystemExit(f"{SDIST} is not on PyPI's index")


def download():
    url = sdist_url()
    print(f"downloading {url}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(f"{SDIST}: sha256 {digest}, expected {SDIST_SHA256}")
    return data


def read_snippets(sdist):
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as outer:
        inner = outer.extractfile(INNER).read()
    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as archive:
        text = archive.extractfile(SNIPPETS).read().decode("utf-8")
    snippets = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise SystemExit(f"{SNIPPETS}:{n}: expected 3 tab-separated fields, found {len(fields)}")
        snippet_id, rating, sentence = fields
        float(rating)  # a bad number fails here, naming nothing worse than the value
        # One line per example in the output: no tabs or line breaks inside a sentence.
        sentence = " ".join(sentence.split())
        snippets.append((int(snippet_id), rating.strip(), sentence))
    if len(snippets) != EXPECTED_SNIPPETS:
        raise SystemExit(f"{SNIPPETS}: {len(snippets)} snippets, expected {EXPECTED_SNIPPETS}")
    return snippets


def write_tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "data/vader")
    snippets = sorted(read_snippets(download()))
    order = list(range(len(snippets)))
    random.Random(SEED).shuffle(order)
    n_dev = len(snippets) // 10
    splits = {"dev": sorted(order[:n_dev]), "train": sorted(order[n_dev:])}
    for split, indices in splits.items():
        rows = [snippets[i] for i in indices]
        write_tsv(out / "rating" / f"{split}.tsv", ["sentence", "score"], [(s, r) for _, r, s in rows])
        polar = [(s, "1" if float(r) > 0 else "0") for _, r, s in rows if abs(float(r)) >= NEUTRAL_BELOW]
        write_tsv(out / "sentiment" / f"{split}.tsv", ["sentence", "label"], polar)
        positive = sum(label == "1" for _, label in polar)
        print(f"{split}: rating {len(rows)}, sentiment {len(polar)} ({positive} positive)")
    print(f"wrote {out}/rating and {out}/sentiment")


if __name__ == "__main__":
    main()
