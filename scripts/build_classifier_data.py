#!/usr/bin/env python3
"""Build the labelled training text of the quality and domain classifiers from Debian packages.

    python scripts/build_classifier_data.py [--cache /tmp/corpus_cache] [--out data/classifiers/pages.jsonl.gz]

Every page is real text from a pinned Debian 12 package (the sample corpus's packages, all of
their English pages rather than its sample, plus homebank-data), read the way the pipeline reads
it: the HTML goes through the same trafilatura extraction as the ``extract`` stage, so the
classifiers learn from the text they will score. Labels come from rules, not from hand:

- ``quality``: ``low`` when the sample corpus's low-quality rule fires on the page's HTML (tables
  of contents, indexes, title pages, link lists, pages under 50 visible words), else ``high``.
  Besides whole pages, the text trafilatura drops from a page (navigation bars, headers,
  footers: ``kind: boilerplate``) is a ``low`` example of its own when it has at least
  ``MIN_BOILERPLATE_WORDS`` words.
- ``domain``: the package's subject (GnuCash, Ledger, KMyMoney, HomeBank, Reuters business news,
  LibreOffice Calc's financial-function pages: ``finance``; the Debian Administrator's Handbook,
  the rest of LibreOffice's help, the IANA crawl: ``general``).
- ``split``: ``heldout`` for one page in four by a hash of the page's file name (and fragment),
  so the pages that two manuals share (GnuCash Guide and Help, en-GB and en-US help) always land
  on the same side; ``train`` otherwise.

Needs Debian (apt-get download, dpkg -x) and reuses scripts/build_sample_corpus.py's fetching and
its low-quality rule. The output is deterministic for the pinned package versions.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_sample_corpus as corpus  # noqa: E402

log = logging.getLogger("build_classifier_data")

EXTRA_PACKAGES = {"homebank-data": "5.6.2-1"}  # finance help pages, not in the sample corpus
LIBREOFFICE_STRIDE = 4  # LibreOffice has 2,560 English help pages: every 4th keeps the set a few MB
HELDOUT_EVERY = 4
MAX_CHARS = 20_000
MIN_BOILERPLATE_WORDS = 8  # long handbook chapters add little beyond their first pages of text


def _page(path: Path, root: Path, domain: str, pkg: str, ver: str, html: bytes | None = None, fragment: str = ""):
    data = html if html is not None else path.read_bytes()
    charset = corpus.detect_charset(data)
    return corpus.Page(url=corpus.file_url(root, path, fragment), domain=domain, declared_language="en", source=pkg,
                       source_version=ver, html_bytes=data, charset=charset, date="")


def split_sections(path: Path, root: Path, domain: str, pkg: str, ver: str, tag: str = "h2") -> list[corpus.Page]:
    """A one-file manual cut at every ``<h2>`` into pages, each wrapped in the file's own <html>."""
    html = path.read_bytes().decode(corpus.detect_charset(path.read_bytes()), "replace")
    head, *parts = re.split(rf"(?=<{tag}[\s>])", html)
    prefix = head[: head.lower().find("<body")] if "<body" in head.lower() else "<html>"
    return [
        _page(path, root, domain, pkg, ver, (prefix + "<body>" + part + "</body></html>").encode(), f"section={i}")
        for i, part in enumerate(parts)
    ]


def collect(pkgs: dict[str, tuple[Path, str]]) -> list[corpus.Page]:
    pages: list[corpus.Page] = []
    root, ver = pkgs["gnucash-docs"]
    for d in ("gnucash-guide-en", "gnucash-help-en"):
        pages += [_page(f, root, "finance", "gnucash-docs", ver) for f in sorted((root / "usr/share/doc/gnucash-docs" / d).glob("*.html"))]
    root, ver = pkgs["ledger"]
    pages += split_sections(root / "usr/share/doc/ledger/ledger3.html", root, "finance", "ledger", ver)
    pages += [p for p in corpus.pages_kmymoney(*pkgs["kmymoney-common"])]
    pages += [p for p in corpus.pages_reuters(*pkgs["r-cran-tm"])]
    root, ver = pkgs["homebank-data"]
    pages += [_page(f, root, "finance", "homebank-data", ver) for f in sorted((root / "usr/share/doc/homebank-data/help").glob("*.html"))]
    root, ver = pkgs["debian-handbook"]
    pages += [_page(f, root, "general", "debian-handbook", ver) for f in sorted((root / "usr/share/doc/debian-handbook/html/en-US").glob("*.html"))]
    root, ver = pkgs["libreoffice-help-en-us"]
    text = root / "usr/share/libreoffice/help/en-US/text"
    files = sorted(text.rglob("*.html"))
    finance = {f for f in files if corpus.LO_FINANCE_TITLE.search(f.read_text("utf-8", "replace"))}
    for f in sorted(set(corpus.stride(files, LIBREOFFICE_STRIDE)) | finance):
        pages.append(_page(f, root, "finance" if f in finance else "general", "libreoffice-help-en-us", ver))
    return pages


def boilerplate(html: str, extracted: str) -> str:
    """The visible lines of a page that extraction left out, in page order."""
    parser = corpus._TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(chunk.split()) for chunk in "\n".join(parser.chunks).splitlines())
    flat = " ".join(extracted.split())
    return "\n".join(line for line in lines if line and line not in flat)


def split_of(url: str) -> str:
    name = url.rsplit("/", 1)[-1]
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return "heldout" if int.from_bytes(digest, "big") % HELDOUT_EVERY == 0 else "train"


def build(cache: Path, out: Path) -> None:
    corpus.DEBIAN_PACKAGES.update(EXTRA_PACKAGES)
    pkgs = corpus.fetch_debian(cache)
    pages = collect(pkgs)
    iana = corpus.pages_iana(Path(__file__).resolve().parents[1] / "data/sample_corpus/real_crawl/iana.warc.gz")
    corpus.analyse(pages + iana)  # sets language and the low-quality reason
    from datatrove.pipeline.extractors.trafilatura import Trafilatura

    extractor = Trafilatura(favour_precision=True, deduplicate=False)  # the extract stage's settings
    from tqdm import tqdm

    rows, seen = [], set()
    for p in tqdm(pages + iana, desc="extract", unit="page"):
        if p.language != "en":
            continue
        text = extractor.extract(p.html_text)
        text = (text or "").strip()[:MAX_CHARS]
        if not text or text in seen:  # empty after extraction: the pipeline drops it before any classifier
            continue
        seen.add(text)
        common = {"url": p.url, "package": p.source, "domain": p.domain, "split": split_of(p.url)}
        rows.append({**common, "kind": "page", "quality": "low" if p.low_quality_reason else "high",
                     "low_quality_reason": p.low_quality_reason or None, "text": text})
        dropped = boilerplate(p.html_text, text)[:MAX_CHARS]
        if len(dropped.split()) >= MIN_BOILERPLATE_WORDS and dropped not in seen:
            seen.add(dropped)
            rows.append({**common, "kind": "boilerplate", "quality": "low",
                         "low_quality_reason": "boilerplate dropped by trafilatura", "text": dropped})
    rows.sort(key=lambda r: (r["url"], r["kind"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode()
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(payload)
    counts: dict[tuple, int] = {}
    for r in rows:
        key = (r["package"], r["domain"], r["kind"], r["quality"], r["split"])
        counts[key] = counts.get(key, 0) + 1
    for key, n in sorted(counts.items()):
        log.info("%-24s %-8s %-12s %-5s %-8s %5d", *key, n)
    log.info("wrote %s: %d pages, %d bytes of text, sha256 %s", out, len(rows), len(payload), hashlib.sha256(payload).hexdigest())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/corpus_cache"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data/classifiers/pages.jsonl.gz")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.cache, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
