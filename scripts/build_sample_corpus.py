#!/usr/bin/env python3
"""Build the bundled sample corpus under data/sample_corpus/.

Real public text only, fetched exclusively through the Debian archive
(``apt-get download`` + ``dpkg -x``) and PyPI (``pip download`` of the pywb
sdist).  Nothing is written by hand and nothing is synthetic: every page is an
HTML page shipped in a Debian package, or (for the Reuters-21578 / RCV1 / Ovid
texts shipped in ``r-cran-tm``) the package's text wrapped in a minimal HTML
page (title -> <title>/<h1>, body -> <p>s).

Outputs (all byte-for-byte reproducible for the same package versions):

* ``warc/{finance,general}-0000N.warc.gz``  gzip-per-record WARC/1.0 shards
* ``jsonl/{finance,general}.jsonl.gz``       the same pages as JSON lines
* ``real_crawl/iana.warc.gz``                copied from the pywb sdist
* ``MANIFEST.json`` and ``README.md``

Usage::

    /tmp/venv1/bin/python scripts/build_sample_corpus.py [--cache /tmp/corpus_cache] [--out data/sample_corpus]

Requirements: Debian with apt/dpkg (``apt-get update`` is run once if
``apt-cache`` cannot see the packages), Python stdlib + ``warcio``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import hashlib
import html
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from html.parser import HTMLParser
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

log = logging.getLogger("build_sample_corpus")

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT_NAME = "scripts/build_sample_corpus.py"

# --------------------------------------------------------------------------
# Sources (pinned versions; Debian 12 "bookworm" and PyPI)
# --------------------------------------------------------------------------

DEBIAN_PACKAGES = {
    # package: pinned version (apt-get download pkg=version)
    "gnucash-docs": "4.13-1",
    "ledger": "3.3.0-3",
    "kmymoney-common": "5.1.3-1",
    "r-cran-tm": "0.7-11-1",
    "debian-handbook": "11.20220922",
    "libreoffice-help-en-us": "4:7.4.7-1+deb12u14",
    "libreoffice-help-en-gb": "4:7.4.7-1+deb12u14",
    "libreoffice-help-de": "4:7.4.7-1+deb12u14",
    "libreoffice-help-fr": "4:7.4.7-1+deb12u14",
    "libreoffice-help-es": "4:7.4.7-1+deb12u14",
}
# Looked at but not used (reported in README): hledger / hledger-web ship
# only man/info pages and binaries, no HTML.
CONSIDERED_NOT_USED = {
    "hledger": "ships man/info pages only (no HTML manual)",
    "hledger-web": "ships man/info pages only (no HTML manual)",
}

# pywb >= 2.7 cannot be fetched with `pip download --no-binary :all:` offline:
# its setup.py downloads a JavaScript bundle from a CDN while preparing
# metadata.  2.6.7 builds its metadata without network access.
PYWB_VERSION = "2.6.7"
PYWB_IANA_PATH = "sample_archive/warcs/iana.warc.gz"

SHARDS_PER_DOMAIN = 4
MAX_PAGE_BYTES = 300_000
REQUEST_RECORD_EVERY = 4  # a request record precedes every 4th response in a shard
NEAR_DUP_THRESHOLD = 0.7  # Jaccard similarity of word 5-gram shingles
SHINGLE = 5

# Low-quality rule (documented in README): a page is low_quality if
#  (a) its file name is a table of contents / index / title page / redirect stub, or
#  (b) its visible body text has fewer than LQ_MIN_WORDS words, or
#  (c) it is a link list: >= LQ_MIN_LINKS links and >= LQ_LINK_WORD_RATIO of
#      its words are inside <a> elements.
LQ_NAMES = {"index", "titlepage", "ix01", "bookindex", "toc", "noscript", "search"}
LQ_MIN_WORDS = 50  # same as the Gopher quality filter's min_doc_words
LQ_MIN_LINKS = 10
LQ_LINK_WORD_RATIO = 0.4

# --------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Page:
    url: str  # truthful origin, file:///... path inside the package
    domain: str  # "finance" | "general"
    declared_language: str  # ISO 639-1 from the manual's language directory
    source: str  # Debian package name
    source_version: str
    html_bytes: bytes  # page as shipped (or the wrapped text), in `charset`
    charset: str
    date: str  # WARC-Date: file mtime from the package, ISO 8601 UTC
    # filled in by analyse()
    language: str = ""
    words: int = 0
    links: int = 0
    link_words: int = 0
    low_quality_reason: str = ""
    group: str | None = None
    kind: str = "article"
    shard: str = ""
    id: str = ""

    @property
    def html_text(self) -> str:
        return self.html_bytes.decode(self.charset)


# --------------------------------------------------------------------------
# Fetching (Debian + PyPI only)
# --------------------------------------------------------------------------


def run(cmd: list[str], cwd: Path | None = None) -> str:
    log.debug("$ %s", " ".join(cmd))
    res = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    return res.stdout


def apt_update_if_needed(pkgs: list[str]) -> None:
    out = subprocess.run(["apt-cache", "policy", *pkgs], capture_output=True, text=True).stdout
    if "Candidate: (none)" in out or out.count("Candidate:") < len(pkgs):
        log.info("apt-cache does not know all packages; running apt-get update")
        run(["apt-get", "update", "-qq"])


def fetch_debian(cache: Path) -> dict[str, tuple[Path, str]]:
    """Download and extract each package; return {pkg: (root, version)}."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    result: dict[str, tuple[Path, str]] = {}
    need = [p for p in DEBIAN_PACKAGES if not (cache / "x" / p / ".done").exists()]
    if need:
        apt_update_if_needed(need)
    for pkg, version in DEBIAN_PACKAGES.items():
        root = cache / "x" / pkg
        done = root / ".done"
        if not done.exists():
            existing = sorted(debs.glob(f"{pkg}_*.deb"))
            if not existing:
                try:
                    run(["apt-get", "download", f"{pkg}={version}"], cwd=debs)
                except subprocess.CalledProcessError as exc:
                    log.warning("pinned %s=%s not available (%s); taking the candidate version "
                                "- output will differ from the committed corpus",
                                pkg, version, exc.stderr.strip().splitlines()[-1:])
                    run(["apt-get", "download", pkg], cwd=debs)
                existing = sorted(debs.glob(f"{pkg}_*.deb"))
            deb = existing[-1]
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            run(["dpkg", "-x", str(deb), str(root)])
            real_version = run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
            (root / ".done").write_text(real_version + "\n")
            log.info("extracted %s %s", pkg, real_version)
        result[pkg] = (root, done.read_text().strip())
    return result


def fetch_pywb(cache: Path) -> Path:
    """pip download the pywb sdist (no build, no deps) and return its path."""
    dest = cache / "pypi"
    dest.mkdir(parents=True, exist_ok=True)
    sdist = dest / f"pywb-{PYWB_VERSION}.tar.gz"
    if not sdist.exists():
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "-d", str(dest), f"pywb=={PYWB_VERSION}"])
    log.info("pywb sdist: %s", sdist)
    return sdist


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

CHARSET_RE = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_-]+)""", re.I)


def detect_charset(data: bytes) -> str:
    m = CHARSET_RE.search(data[:4096])
    cs = m.group(1).decode("ascii").lower() if m else "utf-8"
    return {"utf8": "utf-8"}.get(cs, cs)


def mtime_iso(path: Path) -> str:
    t = dt.datetime.fromtimestamp(int(path.stat().st_mtime), tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def file_url(root: Path, path: Path, fragment: str = "") -> str:
    rel = "/" + path.relative_to(root).as_posix()
    return "file://" + rel + (f"#{fragment}" if fragment else "")


def html_page(path: Path, root: Path, domain: str, lang: str, pkg: str, ver: str) -> Page | None:
    data = path.read_bytes()
    if len(data) > MAX_PAGE_BYTES:
        log.info("skip (> %d bytes): %s", MAX_PAGE_BYTES, file_url(root, path))
        return None
    cs = detect_charset(data)
    data.decode(cs)  # must be truthful
    return Page(url=file_url(root, path), domain=domain, declared_language=lang, source=pkg,
                source_version=ver, html_bytes=data, charset=cs, date=mtime_iso(path))


def stride(items: list, step: int, offset: int = 0) -> list:
    return items[offset::step]


def wrap_html(title: str, paragraphs: list[str], lang: str, charset: str,
              dateline: str = "") -> bytes:
    """Minimal HTML page around a plain-text document (title, dateline, paragraphs)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{lang}">',
        "<head>",
        f'<meta charset="{charset}">',
        f"<title>{e(title)}</title>",
        "</head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
    ]
    if dateline:
        parts.append(f'<p class="dateline">{e(dateline)}</p>')
    parts += [f"<p>{e(p)}</p>" for p in paragraphs]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts).encode(charset)


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------


def pages_gnucash(root: Path, ver: str) -> list[Page]:
    """GnuCash Guide + Help (finance). English Guide complete, Help every 2nd page
    (plus the sections it shares with the Guide), other languages every 5th page.

    Guide and Help share whole sections (authors, GNU FDL), which gives natural
    near-duplicate pairs per language."""
    base = root / "usr/share/doc/gnucash-docs"
    out = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        lang = d.name.rsplit("-", 1)[1]
        files = sorted(d.glob("*.html"))
        if d.name == "gnucash-help-en":  # every 2nd page, plus all sections the Guide also has
            guide = {f.name for f in (base / "gnucash-guide-en").glob("*.html")}
            files = sorted(set(stride(files, 2)) | {f for f in files if f.name in guide})
        elif lang != "en":
            shared = {"authors.html", "fdl.html", "fdl-preamble.html", "fdl-section1.html",
                      "fdl-section4.html"}
            files = sorted(set(stride(files, 5)) | {f for f in files if f.name in shared})
        for f in files:
            p = html_page(f, root, "finance", lang, "gnucash-docs", ver)
            if p:
                out.append(p)
    return out


def pages_ledger(root: Path, ver: str) -> list[Page]:
    out = []
    for f in sorted((root / "usr/share/doc/ledger").glob("*.html")):
        p = html_page(f, root, "finance", "en", "ledger", ver)
        if p:
            out.append(p)
    return out


def pages_kmymoney(root: Path, ver: str) -> list[Page]:
    out = []
    for f in sorted((root / "usr/share/checkprinting").glob("*.html")):
        p = html_page(f, root, "finance", "en", "kmymoney-common", ver)
        if p:
            out.append(p)
    return out


def _reuters_page(el: ET.Element, root: Path, path: Path, ver: str, fragment: str) -> Page:
    text = el.find("TEXT")
    title = (text.findtext("TITLE") or "").strip()
    dateline = " ".join((text.findtext("DATELINE") or "").split())
    body = text.findtext("BODY") or ""
    # Reuters-21578 marks paragraphs with a newline + indentation.
    paras = [" ".join(p.split()) for p in re.split(r"\n\s{2,}", body) if p.strip()]
    data = wrap_html(title or fragment, paras, "en", "utf-8", dateline)
    return Page(url=file_url(root, path, fragment), domain="finance", declared_language="en",
                source="r-cran-tm", source_version=ver, html_bytes=data, charset="utf-8",
                date=mtime_iso(path))


def pages_reuters(root: Path, ver: str) -> list[Page]:
    """Reuters-21578 (acq, crude, and the 10-article reuters-21578.xml) and one
    RCV1 article, as shipped in r-cran-tm, wrapped in HTML.  reuters-21578.xml
    repeats NEWID=10, also shipped as acq/reut-00001.xml (natural duplicate)."""
    texts = root / "usr/lib/R/site-library/tm/texts"
    out = []
    for sub in ("acq", "crude"):
        for f in sorted((texts / sub).glob("*.xml")):
            out.append(_reuters_page(ET.parse(f).getroot(), root, f, ver, ""))
    f = texts / "reuters-21578.xml"
    for el in ET.parse(f).getroot().iter("REUTERS"):
        out.append(_reuters_page(el, root, f, ver, "NEWID=" + el.get("NEWID")))
    # RCV1 sample: the package ships it declared as ISO-8859-1; keep that encoding.
    f = texts / "rcv1_2330.xml"
    raw = f.read_bytes()
    cs = re.search(rb'encoding="([^"]+)"', raw[:200]).group(1).decode().lower()
    el = ET.fromstring(raw)
    paras = [" ".join("".join(p.itertext()).split()) for p in el.find("text").iter("p")]
    data = wrap_html(el.findtext("title").strip(), paras, "en", cs,
                     (el.findtext("dateline") or "").strip())
    out.append(Page(url=file_url(root, f), domain="finance", declared_language="en",
                    source="r-cran-tm", source_version=ver, html_bytes=data, charset=cs,
                    date=mtime_iso(f)))
    return out


def pages_ovid(root: Path, ver: str) -> list[Page]:
    """Latin verse (Ovid) shipped in r-cran-tm as plain text; stanzas -> <p>."""
    out = []
    for f in sorted((root / "usr/lib/R/site-library/tm/texts/txt").glob("*.txt")):
        text = f.read_text("utf-8")
        paras = [" / ".join(l.strip() for l in s.splitlines() if l.strip())
                 for s in re.split(r"\n\s*\n", text) if s.strip()]
        data = wrap_html(f.stem, paras, "la", "utf-8")
        out.append(Page(url=file_url(root, f), domain="general", declared_language="la",
                        source="r-cran-tm", source_version=ver, html_bytes=data,
                        charset="utf-8", date=mtime_iso(f)))
    return out


HANDBOOK_LANGS = {"en-US": 4, "de-DE": 20, "fr-FR": 20, "es-ES": 20, "it-IT": 20,
                  "pt-BR": 20, "ru-RU": 20, "ja-JP": 20}


def pages_handbook(root: Path, ver: str) -> list[Page]:
    base = root / "usr/share/doc/debian-handbook/html"
    out = []
    for d, step in HANDBOOK_LANGS.items():
        files = sorted((base / d).glob("*.html"))
        for f in stride(files, step):
            p = html_page(f, root, "general", d.split("-")[0], "debian-handbook", ver)
            if p:
                out.append(p)
    return out


# en-GB is taken at a multiple of the en-US stride, so every en-GB page has its
# en-US counterpart in the corpus: natural near-duplicates from two packages
# (British vs American spelling, otherwise the same text).
LO_LANGS = {"en-us": ("en-US", 16), "en-gb": ("en-GB", 64), "de": ("de", 60), "fr": ("fr", 60),
            "es": ("es", 60)}
LO_FINANCE_TITLE = re.compile(r"<title>[^<]*financ", re.I)


def pages_libreoffice(pkgs: dict[str, tuple[Path, str]]) -> list[Page]:
    """LibreOffice 7.4 help (general); the Calc "Financial Functions" pages
    (selected by their English <title>) go to the finance domain in every
    language."""
    out = []
    root_en, _ = pkgs["libreoffice-help-en-us"]
    en_text = root_en / "usr/share/libreoffice/help/en-US/text"
    finance_rel = {f.relative_to(en_text) for f in sorted(en_text.rglob("*.html"))
                   if LO_FINANCE_TITLE.search(f.read_text("utf-8", "replace"))}
    for suffix, (d, step) in LO_LANGS.items():
        pkg = f"libreoffice-help-{suffix}"
        root, ver = pkgs[pkg]
        text = root / f"usr/share/libreoffice/help/{d}/text"
        files = sorted(text.rglob("*.html"))
        chosen = set(stride(files, step)) | {text / r for r in finance_rel}
        for f in sorted(chosen):
            dom = "finance" if f.relative_to(text) in finance_rel else "general"
            p = html_page(f, root, dom, d.split("-")[0], pkg, ver)
            if p:
                out.append(p)
    return out


def pages_iana(iana_path: Path) -> list[Page]:
    """HTML responses inside the copied real crawl (analysed, not rewritten)."""
    from warcio.archiveiterator import ArchiveIterator
    out = []
    with open(iana_path, "rb") as fh:
        for r in ArchiveIterator(fh):
            if r.rec_type != "response":
                continue
            ct = r.http_headers.get_header("Content-Type") or ""
            if "html" not in ct:
                continue
            body = r.content_stream().read()
            m = re.search(r"charset=([\w-]+)", ct)
            cs = m.group(1).lower() if m else "utf-8"
            out.append(Page(url=r.rec_headers.get_header("WARC-Target-URI"), domain="general",
                            declared_language="en", source="pywb", source_version=PYWB_VERSION,
                            html_bytes=body, charset=cs,
                            date=r.rec_headers.get_header("WARC-Date"), shard="real_crawl/iana.warc.gz"))
    return out


# --------------------------------------------------------------------------
# Analysis: visible text, language, low quality, near-duplicates
# --------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    SKIP = {"script", "style", "head", "noscript", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skip = 0
        self.in_a = 0
        self.chunks: list[str] = []
        self.link_chunks: list[str] = []
        self.links = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag == "a" and any(k == "href" for k, _ in attrs):
            self.in_a += 1
            self.links += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        elif tag == "a" and self.in_a:
            self.in_a -= 1

    def handle_data(self, data):
        if self.skip:
            return
        self.chunks.append(data)
        if self.in_a:
            self.link_chunks.append(data)


CJK = r"\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uff66-\uff9f"
TOKEN_RE = re.compile(rf"[{CJK}]|[^\W\d_{CJK}]+|\d+")


def tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text.lower())


def word_count(toks: list[str]) -> int:
    # CJK characters count as half a word each (roughly 2 characters per word).
    cjk = sum(1 for t in toks if len(t) == 1 and re.match(rf"[{CJK}]", t))
    return len(toks) - cjk + cjk // 2


STOPWORDS = {
    "en": "the and of to is in that for it with as are this be on you by or can your from".split(),
    "de": "der die und das ist nicht mit den ein eine zu von für auf sie sich werden wird auch im dem des".split(),
    "fr": "le la les et des est une un du pour dans que qui pas sur avec par vous au ou ce".split(),
    "es": "el la los las y de que en un una es por para con se del no su al como".split(),
    "it": "il la di che è un una per non del della sono con si le gli dei nel alla".split(),
    "pt": "o os as de que do da em um uma para com não é dos das no na ao se".split(),
    "la": "et in est non ut cum ad quod sed nec qui quae aut si me te mihi tibi quoque".split(),
}


def detect_language(text: str, declared: str) -> str:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return declared
    kana = sum(1 for c in letters if "\u3040" <= c <= "\u30ff")
    cjk = sum(1 for c in letters if "\u3400" <= c <= "\u9fff")
    cyr = sum(1 for c in letters if "\u0400" <= c <= "\u04ff")
    n = len(letters)
    if (kana + cjk) / n > 0.2:
        return "ja" if kana else declared
    if cyr / n > 0.3:
        return "ru"
    words = re.findall(r"[^\W\d_]+", text.lower())
    counts = Counter(words)
    scores = {lang: sum(counts[w] for w in sw) for lang, sw in STOPWORDS.items()}
    best = max(scores, key=lambda k: (scores[k], k == declared))
    # switch away from the declared language only on clear evidence
    # (stop words must make up >= 8% of the words: tables of codes are not prose)
    if (scores[best] < 20 or scores[best] < 0.08 * len(words)
            or scores.get(declared, 0) >= 0.5 * scores[best]):
        return declared
    return best


def analyse(pages: list[Page]) -> dict[str, list[Page]]:
    shingles: list[set[int]] = []
    for p in pages:
        ex = _TextExtractor()
        ex.feed(p.html_text)
        ex.close()
        text = " ".join(" ".join(ex.chunks).split())
        toks = tokens(text)
        p.words = word_count(toks)
        p.links = ex.links
        p.link_words = word_count(tokens(" ".join(ex.link_chunks)))
        p.language = detect_language(text, p.declared_language)
        stem = p.url.split("#")[0].rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
        if stem in LQ_NAMES:
            p.low_quality_reason = f"toc/index page by file name ({stem})"
        elif p.words < LQ_MIN_WORDS:
            p.low_quality_reason = f"short page ({p.words} words < {LQ_MIN_WORDS})"
        elif p.links >= LQ_MIN_LINKS and p.link_words >= LQ_LINK_WORD_RATIO * p.words:
            p.low_quality_reason = (f"link list ({p.links} links, {p.link_words}/{p.words} "
                                    f"words in links)")
        sh = {hash_shingle(toks[i:i + SHINGLE]) for i in range(max(1, len(toks) - SHINGLE + 1))}
        shingles.append(sh)

    # Exact Jaccard on all pairs that can reach the threshold (size-ratio pruning).
    order = sorted(range(len(pages)), key=lambda i: len(shingles[i]))
    parent = list(range(len(pages)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a_pos, i in enumerate(order):
        si = shingles[i]
        if len(si) < 10:  # too short to call a near-duplicate
            continue
        for j in order[a_pos + 1:]:
            sj = shingles[j]
            if len(si) < NEAR_DUP_THRESHOLD * len(sj):
                break
            inter = len(si & sj)
            if inter / (len(si) + len(sj) - inter) >= NEAR_DUP_THRESHOLD:
                parent[find(i)] = find(j)

    groups: dict[int, list[Page]] = defaultdict(list)
    for i, p in enumerate(pages):
        groups[find(i)].append(p)
    named: dict[str, list[Page]] = {}
    multi = [g for g in groups.values() if len(g) > 1]
    multi.sort(key=lambda g: min(p.url for p in g))
    for n, g in enumerate(multi):
        gid = f"dup-{n:03d}"
        g.sort(key=lambda p: (bool(p.low_quality_reason), p.url))
        for p in g:
            p.group = gid
        named[gid] = g
    for p in pages:
        if p.low_quality_reason:
            p.kind = "low_quality"
        elif p.group and named[p.group][0] is not p:
            p.kind = "near_duplicate"
        else:
            p.kind = "article"
    return named


def hash_shingle(tok: list[str]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(tok).encode(), digest_size=8).digest(), "big")


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------


def rid(kind: str, key: str) -> str:
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, kind + ':' + key)}>"


def http_date(iso: str) -> str:
    t = dt.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    return t.strftime("%a, %d %b %Y %H:%M:%S GMT")


def write_warc(path: Path, pages: list[Page], sources: dict[str, str]) -> None:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True, warc_version="1.0")
    info_date = min(p.date for p in pages)
    info = {
        "software": f"warcio; {SCRIPT_NAME}",
        "format": "WARC File Format 1.0",
        "description": "Sample corpus built from Debian package documentation (file:// origins)",
        "isPartOf": "data/sample_corpus",
        "sources": "; ".join(f"{k} {v}" for k, v in sorted(sources.items())),
    }
    payload = "".join(f"{k}: {v}\r\n" for k, v in info.items()).encode()
    writer.write_record(writer.create_warc_record(
        "", "warcinfo", payload=io.BytesIO(payload), length=len(payload),
        warc_headers_dict={"WARC-Record-ID": rid("warcinfo", path.name), "WARC-Date": info_date,
                           "WARC-Filename": path.name}))
    for n, p in enumerate(pages):
        resp_id = rid("response", p.url)
        if n % REQUEST_RECORD_EVERY == 0:
            req_path = p.url[len("file://"):].split("#")[0]
            req_headers = StatusAndHeaders(f"GET {req_path} HTTP/1.1", [
                ("Host", "localhost"),
                ("User-Agent", "build_sample_corpus (file-system crawl)"),
                ("Accept", "text/html"),
            ], is_http_request=True)
            writer.write_record(writer.create_warc_record(
                p.url, "request", payload=io.BytesIO(b""), length=0, http_headers=req_headers,
                warc_headers_dict={"WARC-Record-ID": rid("request", p.url), "WARC-Date": p.date,
                                   "WARC-Concurrent-To": resp_id}))
        http_headers = StatusAndHeaders("200 OK", [
            ("Content-Type", f"text/html; charset={p.charset}"),
            ("Content-Length", str(len(p.html_bytes))),
            ("Last-Modified", http_date(p.date)),
        ], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(
            p.url, "response", payload=io.BytesIO(p.html_bytes), length=len(p.html_bytes),
            http_headers=http_headers,
            warc_headers_dict={"WARC-Record-ID": resp_id, "WARC-Date": p.date,
                               "WARC-Identified-Payload-Type": "text/html"}))
    path.write_bytes(buf.getvalue())


def write_jsonl(path: Path, pages: list[Page]) -> None:
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        for p in pages:
            obj = {"id": p.id, "url": p.url, "content_type": "text/html", "charset": p.charset,
                   "html": p.html_text}
            gz.write((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8"))
    path.write_bytes(raw.getvalue())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# Licences and README
# --------------------------------------------------------------------------


def licence_of(copyright_file: Path) -> str:
    """License of the `Files: *` stanza (DEP-5), else the first License line."""
    text = copyright_file.read_text("utf-8", "replace")
    for stanza in re.split(r"\n\s*\n", text):
        if re.search(r"^Files:\s*\*\s*$", stanza, re.M):
            m = re.search(r"^License:[ \t]*(.*)$", stanza, re.M)
            if m and m.group(1).strip():
                return m.group(1).strip()
    m = re.search(r"^License:[ \t]*(\S.*)$", text, re.M)
    if m:
        return m.group(1).strip()
    m = re.search(r"^License:\s*\n\s*\n?\s*(.+)", text, re.M)
    if m:
        first = m.group(1).strip()
        if first.startswith("Redistribution and use in source and binary forms"):
            return "BSD-style (\"Redistribution and use in source and binary forms ...\")"
        return first[:100]
    # free-form (pre-DEP-5) copyright file: "<Name> license:" followed by the grant
    m = re.search(r"^(\S[^\n]*) license:\s*\n\s*\n?((?:[ \t]+\S.*\n)+)", text, re.M | re.I)
    if m:
        grant = " ".join(m.group(2).split())
        v = re.search(r"GNU General Public License as published by the Free Software Foundation;"
                      r" either version (\d)", grant)
        return (f"GPL-{v.group(1)}+" if v else grant[:100]) + f" ({m.group(1).strip()} licence)"
    return "see copyright file"


def build(cache: Path, out: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    pkgs = fetch_debian(cache)
    sdist = fetch_pywb(cache)

    # real crawl: copied byte-for-byte from the sdist
    (out / "real_crawl").mkdir(parents=True, exist_ok=True)
    iana_dst = out / "real_crawl" / "iana.warc.gz"
    with tarfile.open(sdist) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("/" + PYWB_IANA_PATH))
        iana_dst.write_bytes(tf.extractfile(member).read())
        lic_member = next(m for m in tf.getmembers() if m.name.endswith("/PKG-INFO"))
        pkg_info = tf.extractfile(lic_member).read().decode()
        lic_text = tf.extractfile(next(m for m in tf.getmembers()
                                       if m.name.count("/") == 1 and m.name.endswith("/LICENSE"))
                                  ).read().decode()
    pywb_licence = ("GPL-3 (sdist LICENSE: " + lic_text.splitlines()[0].strip() + ", "
                    + lic_text.splitlines()[1].strip() + "; PKG-INFO: "
                    + re.search(r"^License: (.*)$", pkg_info, re.M).group(1) + ")")

    pages: list[Page] = []
    pages += pages_gnucash(*pkgs["gnucash-docs"])
    pages += pages_ledger(*pkgs["ledger"])
    pages += pages_kmymoney(*pkgs["kmymoney-common"])
    pages += pages_reuters(*pkgs["r-cran-tm"])
    pages += pages_libreoffice(pkgs)
    pages += pages_handbook(*pkgs["debian-handbook"])
    pages += pages_ovid(*pkgs["r-cran-tm"])
    iana_pages = pages_iana(iana_dst)

    seen = set()
    for p in pages:
        assert p.url not in seen, p.url
        seen.add(p.url)
        p.id = p.domain + "-" + hashlib.sha1(p.url.encode()).hexdigest()[:16]
    for p in iana_pages:
        p.id = "iana-" + hashlib.sha1((p.url + p.date).encode()).hexdigest()[:16]

    groups = analyse(pages + iana_pages)

    # shards: per domain, pages in a fixed order, dealt round-robin
    files_meta = []
    sources = {k: v for k, (_, v) in pkgs.items()}
    (out / "warc").mkdir(parents=True, exist_ok=True)
    (out / "jsonl").mkdir(parents=True, exist_ok=True)
    for old in list((out / "warc").glob("*.warc.gz")):
        old.unlink()
    for domain in ("finance", "general"):
        dpages = sorted((p for p in pages if p.domain == domain), key=lambda p: p.url)
        shards = [dpages[i::SHARDS_PER_DOMAIN] for i in range(SHARDS_PER_DOMAIN)]
        for i, sp in enumerate(shards):
            path = out / "warc" / f"{domain}-{i:05d}.warc.gz"
            for p in sp:
                p.shard = f"warc/{path.name}"
            used = {p.source: sources[p.source] for p in sp}
            write_warc(path, sp, used)
            files_meta.append((path, len(sp), domain))
            log.info("wrote %s (%d pages)", path, len(sp))
        jpath = out / "jsonl" / f"{domain}.jsonl.gz"
        write_jsonl(jpath, dpages)
        files_meta.append((jpath, len(dpages), domain))
        log.info("wrote %s (%d pages)", jpath, len(dpages))
    files_meta.append((iana_dst, len(iana_pages), "general"))

    all_pages = pages + iana_pages
    manifest = {
        "description": "Sample corpus for the data-curation pipeline; see README.md",
        "generator": SCRIPT_NAME,
        "near_duplicate_rule": f"Jaccard >= {NEAR_DUP_THRESHOLD} on lower-cased word {SHINGLE}-gram "
                               "shingles of the visible text (CJK characters are single tokens); "
                               "groups are connected components",
        "low_quality_rule": LQ_RULE_TEXT,
        "kind_rule": "low_quality if the low-quality rule fires; otherwise near_duplicate if the page "
                     "is in a near-duplicate group and is not its first member (members sorted by "
                     "(low_quality, url)); otherwise article",
        "files": [
            {"path": path.relative_to(out).as_posix(), "sha256": sha256(path),
             "bytes": path.stat().st_size, "pages": n, "domain": dom}
            for path, n, dom in files_meta
        ],
        "near_duplicate_groups": {
            gid: [p.id for p in g] for gid, g in groups.items()
        },
        "pages": [
            {"id": p.id, "url": p.url, "domain": p.domain, "language": p.language,
             "declared_language": p.declared_language, "source": p.source,
             "source_version": p.source_version, "charset": p.charset,
             "bytes": len(p.html_bytes), "words": p.words, "file": p.shard,
             "group": p.group, "kind": p.kind,
             **({"low_quality_reason": p.low_quality_reason} if p.low_quality_reason else {}),
             **({"date": p.date} if p.source == "pywb" else {})}
            for p in sorted(pages, key=lambda p: (p.shard, p.url)) + iana_pages
        ],
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n",
                                       encoding="utf-8")

    licences = {pkg: licence_of(root / "usr/share/doc" / pkg / "copyright")
                for pkg, (root, _) in pkgs.items()}
    write_readme(out, pkgs, licences, pywb_licence, all_pages, groups, files_meta)
    log.info("done: %d pages (+%d in iana.warc), %d near-duplicate groups",
             len(pages), len(iana_pages), len(groups))


LQ_RULE_TEXT = (
    f"(a) file name (without extension) is one of {sorted(LQ_NAMES)} (tables of contents, "
    "indexes, title pages, the no-script stub; for the iana crawl, directory URLs ending in '/' "
    f"with < 200 words), or (b) fewer than {LQ_MIN_WORDS} words of visible body text (CJK: 2 "
    f"characters = 1 word), or (c) at least {LQ_MIN_LINKS} links and at least "
    f"{int(LQ_LINK_WORD_RATIO * 100)}% of the words inside <a href> (link lists, navigation pages)"
)


def write_readme(out: Path, pkgs, licences, pywb_licence, pages: list[Page], groups,
                 files_meta) -> None:
    def table(header: list[str], rows: list[list]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
        return "\n".join(lines)

    by_dom_lang = Counter((p.domain, p.language) for p in pages)
    langs = sorted({p.language for p in pages}, key=lambda l: (-sum(
        v for (d, ll), v in by_dom_lang.items() if ll == l), l))
    lang_rows = [[l] + [by_dom_lang[(d, l)] for d in ("finance", "general")]
                 + [by_dom_lang[("finance", l)] + by_dom_lang[("general", l)]] for l in langs]
    kinds = Counter((p.domain, p.kind) for p in pages)
    kind_rows = [[k, kinds[("finance", k)], kinds[("general", k)],
                  kinds[("finance", k)] + kinds[("general", k)]]
                 for k in ("article", "low_quality", "near_duplicate")]
    src = Counter((p.source, p.domain) for p in pages)
    src_rows = []
    for (s, d), n in sorted(src.items()):
        if s == "pywb":
            src_rows.append([s, PYWB_VERSION, "PyPI sdist", d, n, pywb_licence])
        else:
            src_rows.append([s, pkgs[s][1], "Debian 12 bookworm", d, n, licences[s]])
    file_rows = []
    total = 0
    for path, n, dom in files_meta:
        size = path.stat().st_size
        total += size
        shard_pages = [p for p in pages if p.shard == path.relative_to(out).as_posix()]
        lang = Counter(p.language for p in shard_pages) if shard_pages else \
            Counter(p.language for p in pages if p.domain == dom and p.source != "pywb")
        file_rows.append([f"`{path.relative_to(out).as_posix()}`", dom, n, size,
                          ", ".join(f"{k} {v}" for k, v in sorted(lang.items()))])
    grp_rows = []
    for gid, g in groups.items():
        reason = describe_group(g)
        grp_rows.append([gid, len(g), reason, "<br>".join(f"`{p.url}`" for p in g)])
    charsets = Counter(p.charset for p in pages)

    text = f"""# Sample corpus

Small, real, multilingual corpus for testing the curation pipeline end to end
(WARC/JSONL reading → trafilatura extraction → fastText language ID → quality
filters → MinHash dedup → finance/general domain mixing). Built by
`{SCRIPT_NAME}`; every byte comes from Debian 12 packages (`apt-get download`
+ `dpkg -x`) or from the pywb sdist on PyPI (`pip download --no-deps
--no-binary :all:`). No text was written by hand, nothing is synthetic.

## Rebuild

```sh
/tmp/venv1/bin/python scripts/build_sample_corpus.py            # --cache /tmp/corpus_cache --out data/sample_corpus
```

Needs Debian (apt, dpkg), network access to the Debian archive and PyPI, and
`warcio`. Package versions are pinned in the script; with the same versions the
output is byte-identical (WARC-Date = the file's mtime inside the package,
WARC-Record-IDs are UUID5 of the URL, gzip headers carry no timestamp), which
`MANIFEST.json` sha256s let you check.

## Layout

- `warc/<domain>-0000N.warc.gz`: {SHARDS_PER_DOMAIN} shards per domain; gzip-per-record
  WARC/1.0 (warcio `WARCWriter(gzip=True)`): one `warcinfo` record, then per page a
  `response` record (`HTTP/1.1 200 OK`, `Content-Type: text/html; charset=<charset>`),
  preceded by a `request` record (with `WARC-Concurrent-To`) for every
  {REQUEST_RECORD_EVERY}th page. `WARC-Target-URI` is the page's real origin, a
  `file:///` path inside the Debian package (a `#NEWID=n` fragment selects one
  article of the multi-article `reuters-21578.xml`). Pages are sorted by URL and
  dealt round-robin over the shards, so near-duplicates often sit in different files.
  **Reading note:** warcio parses the HTTP header block of a record only when
  `WARC-Target-URI` starts with `http:`/`https:`. For these `file:///` records
  `record.http_headers` is `None` and `content_stream()` yields the HTTP header
  block followed by the HTML, so parse the block yourself:

  ```python
  from warcio.statusandheaders import StatusAndHeadersParser
  if record.rec_type == "response" and record.http_headers is None:
      record.http_headers = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"]).parse(record.raw_stream)
  html_bytes = record.content_stream().read()   # now the page only
  ```

  Each response also carries `WARC-Identified-Payload-Type: text/html`.
- `jsonl/<domain>.jsonl.gz`: the same pages, one JSON object per line:
  `{{"id", "url", "content_type": "text/html", "charset", "html"}}` (the html as a
  decoded string; `charset` is the encoding of the bytes in the WARC).
- `real_crawl/iana.warc.gz`: copied unchanged from pywb {PYWB_VERSION}'s sdist
  (`{PYWB_IANA_PATH}`): a real 2014 crawl of www.iana.org with request, response
  and revisit records, CSS/JS/images and redirects, {sum(1 for p in pages if p.source == 'pywb')} HTML responses
  (one of them, `/protocols`, is 655 KB, larger than the 300 KB page cap used for
  the built shards). Domain: general.
- `MANIFEST.json`: per file sha256/bytes/pages/domain; per page id, url, domain,
  language (see below), declared_language, source package and version, charset,
  bytes, words, file, near-duplicate `group`, `kind`, `low_quality_reason`.

## Counts

{len([p for p in pages if p.source != 'pywb'])} pages in the built shards plus {sum(1 for p in pages if p.source == 'pywb')} HTML responses in `iana.warc.gz`
({len(pages)} in all). Total size of warc/ + jsonl/ + real_crawl/: {total} bytes
({total / 1e6:.2f} MB).

### Pages per language and domain

`language` is the language of the page's text as measured by the build script
(CJK/Cyrillic script ratio, then stop-word counts), which differs from the
manual's declared language where a translation left pages untranslated (for
example the GNU FDL text, which the GnuCash translations ship in English).

{table(["language", "finance", "general", "total"], lang_rows)}

### Pages per kind

{table(["kind", "finance", "general", "total"], kind_rows)}

### Files

{table(["file", "domain", "pages", "bytes", "languages"], file_rows)}

Charsets: {", ".join(f"{k} {v}" for k, v in sorted(charsets.items()))}. Every page is
served with the charset its bytes are really in. The one ISO-8859-1 page of the
built shards is the RCV1 sample article `rcv1_2330.xml` from r-cran-tm, which the
package ships declared as `encoding="iso-8859-1"`; the iana crawl has redirect
stubs served as ISO-8859-1 by the original server.

## Sources and licences

{table(["package", "version", "registry", "domain", "pages", "licence (Files: * of the package's copyright file)"], src_rows)}

What was taken, all chosen deterministically (sorted paths, fixed stride):

- **gnucash-docs** (finance): the GnuCash Guide and the GnuCash Help as HTML,
  `/usr/share/doc/gnucash-docs/gnucash-{{guide,help}}-<lang>/`. English: every
  page of the Guide, every 2nd page of the Help plus the Help pages whose file
  name also exists in the Guide. de, it, pt, ja: every 5th page plus the pages
  that the Guide and the Help share (authors, GNU FDL).
- **ledger** (finance): `ledger.1.html` (the man page as HTML). `ledger3.html`
  (the full manual, 756 KB) is skipped by the 300 KB page cap.
- **kmymoney-common** (finance): the two cheque-printing HTML templates
  (`/usr/share/checkprinting/`): a page layout with a few placeholders.
- **r-cran-tm** (finance): Reuters-21578 articles (`texts/acq/*.xml`,
  `texts/crude/*.xml`, and the 10 articles of `texts/reuters-21578.xml`) and the
  RCV1 article `texts/rcv1_2330.xml`, each wrapped in a minimal HTML page
  (title as `<title>` and `<h1>`, dateline, body paragraphs as `<p>`). The
  package's copyright file covers the package (GPL-3); the Reuters-21578
  collection itself states that its copyright resides with Reuters Ltd., which
  with Carnegie Group allowed its free distribution for research purposes.
  (general) `texts/txt/ovid_*.txt`: five passages of Ovid's Latin verse
  (public domain text), stanzas as `<p>`.
- **libreoffice-help-{{en-us,en-gb,de,fr,es}}** (general): LibreOffice 7.4 help pages,
  `/usr/share/libreoffice/help/<lang>/text/**.html`; {", ".join(f"{d} every {n}th page" for d, n in LO_LANGS.values())}. The three Calc "Financial Functions" pages (English
  `<title>` contains "financ") are taken in all five languages and put in the
  finance domain.
- **debian-handbook** (general): The Debian Administrator's Handbook (Debian
  11), `/usr/share/doc/debian-handbook/html/<lang>/`; {", ".join(f"{d} every {n}th page" for d, n in HANDBOOK_LANGS.items())}.
  Several translations ship some chapters untranslated (English text in the
  `de-DE/`, `ja-JP/`, ... directory): their `language` is `en`.
- **pywb** (general): `iana.warc.gz`, see above.

Considered and not used: {"; ".join(f"{k}: {v}" for k, v in CONSIDERED_NOT_USED.items())};
pywb >= 2.7 (its setup.py downloads a JavaScript bundle while `pip download`
prepares metadata, so it cannot be fetched without other network access; 2.6.7
ships the same sample archive).

## Low-quality pages

Rule (`low_quality` in MANIFEST.json): {LQ_RULE_TEXT}. These are real pages the
manuals ship anyway: tables of contents (`index.html` of each manual, the
handbook's `index.html`), very short help pages that are little more than a
heading and a "Related topics" list, title pages and navigation pages, the
cheque-printing templates (placeholders), the HTTP redirect bodies and the
link-list pages of the iana crawl.

## Near-duplicate groups

Rule: {manifest_dup_rule()}. A group's first member (sorted by
low-quality, then URL) keeps its kind; the others are `near_duplicate`. They are
natural: the GnuCash Guide and Help ship the same sections (authors list, the
GNU FDL sections, in English even in the translations); translated manuals
(GnuCash, Debian Handbook, LibreOffice) ship some pages untranslated, i.e. the
English page again under another language's directory; Reuters-21578 ships
article NEWID=10 both in `acq/reut-00001.xml` and in `reuters-21578.xml`, and
repeats some wire stories itself; LibreOffice help has pages that repeat the
same text in different modules.

{table(["group", "pages", "what", "members"], grp_rows)}
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def manifest_dup_rule() -> str:
    return (f"Jaccard similarity >= {NEAR_DUP_THRESHOLD} of the sets of lower-cased word "
            f"{SHINGLE}-gram shingles of the visible text (CJK characters are single tokens), "
            "groups are the connected components")


def describe_group(g: list[Page]) -> str:
    names = sorted({p.url.split("#")[0].rsplit("/", 1)[-1] for p in g})
    dirs = sorted({p.url.split("#")[0].rsplit("/", 2)[-2] for p in g})
    srcs = sorted({p.source for p in g})
    langs = sorted({p.declared_language for p in g})
    what = []
    if srcs == ["r-cran-tm"]:
        return "the same Reuters wire story twice: " + ", ".join(
            p.url.split("texts/")[-1] for p in g)
    if srcs == ["gnucash-docs"] and {d.split("-")[1] for d in dirs} == {"guide", "help"}:
        what.append("section shared by GnuCash Guide and Help")
    if len(langs) > 1:
        what.append("page shipped untranslated in " + ", ".join(l for l in langs if l != "en")
                    + " manual(s)")
    if len(srcs) > 1 and len(langs) == 1:
        what.append("same page from two packages (British vs American English edition)"
                    if "libreoffice-help-en-gb" in srcs else "same page from two packages")
    if len(names) > 1 and len(langs) == 1 and len(srcs) == 1:
        what.append("same text in different places of one manual")
    return "; ".join(what or ["similar pages"]) + f" ({', '.join(srcs)}: {', '.join(names[:3])}" \
        + ("…" if len(names) > 3 else "") + ")"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/corpus_cache"),
                    help="download/extraction cache (default: /tmp/corpus_cache)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "sample_corpus",
                    help="output directory (default: data/sample_corpus)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(message)s")
    build(args.cache.resolve(), args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
