#!/usr/bin/env python3
"""Build the reference evaluation text under data/eval/ from pinned Debian 12 packages.

    python scripts/build_eval_text.py [--cache /tmp/corpus_cache] [--out data/eval]

One file per domain, one JSON object per line (``id``, ``domain``, ``source``, ``version``,
``url``, ``licence``, ``text``):

- ``finance.jsonl``: the Skrooge Handbook (skrooge-common, KDE's personal finance manager) and the
  Eqonomize! manual (eqonomize-doc, a household accounting program): accounts, transactions,
  budgets, securities, currencies, reports.
- ``general.jsonl``: the Python 3.11 Tutorial (python3.11-doc).

None of these packages, nor the projects they document, feed the sample corpus
(scripts/build_sample_corpus.py) or the classifier data (scripts/build_classifier_data.py); see
data/eval/README.md. The HTML goes through the same trafilatura extraction as the pipeline's
``extract`` stage, so the text is what a curated training document looks like. Pages that are
title pages, credits or licence notices, or have fewer than ``MIN_WORDS`` words (navigation stubs
of the settings chapter) are left out: licence boilerplate is shared with other manuals and says
nothing about a domain. Deterministic for the pinned package versions.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import json
import logging
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_sample_corpus as corpus  # noqa: E402

log = logging.getLogger("build_eval_text")

PACKAGES = {
    "skrooge-common": "2.29.0-1",
    "eqonomize-doc": "1.5.4-1",
    "python3.11-doc": "3.11.2-6+deb12u9",
}
LICENCES = {
    "skrooge-common": "GFDL (the handbook's own notice: 'This documentation is licensed under the terms of the GNU Free "
    "Documentation License'); package copyright file: GPL-2 or GPL-3",
    "eqonomize-doc": "GFDL-1.2+ (copyright file, Files: doc/*)",
    "python3.11-doc": "PSF License Agreement (documentation text); code examples Zero-Clause BSD",
}
SKIP_PAGES = {"index.html", "credits.html", "commands.html"}  # title page + table of contents, credits/licence, a key table
MIN_WORDS = 50  # the sample corpus's low-quality rule: shorter pages are navigation stubs


def skrooge_pages(root: Path) -> list[tuple[str, str]]:
    """(file url, html) per page of the English handbook, from the rendered KDE help cache."""
    path = root / "usr/share/doc/HTML/en/skrooge/index.cache.bz2"
    raw = bz2.open(path).read().decode("utf-8")
    parts = re.split(r'<FILENAME filename="([^"]+)">', raw)
    base = corpus.file_url(root, path)
    return [(f"{base}#{name}", html.replace("</FILENAME>", "")) for name, html in zip(parts[1::2], parts[2::2])]


def html_files(root: Path, folder: str) -> list[tuple[str, str]]:
    return [(corpus.file_url(root, f), f.read_text("utf-8")) for f in sorted((root / folder).glob("*.html"))]


def collect(pkgs: dict[str, tuple[Path, str]]) -> dict[str, list[tuple[str, str, str]]]:
    """domain -> [(package, url, html)]"""
    root = pkgs["skrooge-common"][0]
    finance = [("skrooge-common", u, h) for u, h in skrooge_pages(root)]
    root = pkgs["eqonomize-doc"][0]
    finance += [("eqonomize-doc", u, h) for u, h in html_files(root, "usr/share/doc/eqonomize/html/C")]
    root = pkgs["python3.11-doc"][0]
    general = [("python3.11-doc", u, h) for u, h in html_files(root, "usr/share/doc/python3.11/html/tutorial")]
    return {"finance": finance, "general": general}


def build(cache: Path, out: Path) -> None:
    corpus.DEBIAN_PACKAGES = PACKAGES  # fetch only these (fetch_debian reads the module's table)
    pkgs = corpus.fetch_debian(cache)
    from datatrove.pipeline.extractors.trafilatura import Trafilatura

    extractor = Trafilatura(favour_precision=True, deduplicate=False)  # the extract stage's settings
    out.mkdir(parents=True, exist_ok=True)
    for domain, pages in collect(pkgs).items():
        rows = []
        for pkg, url, html in pages:
            name = url.rsplit("#", 1)[-1].rsplit("/", 1)[-1]
            text = (extractor.extract(html) or "").strip()
            if name in SKIP_PAGES or len(text.split()) < MIN_WORDS:
                log.info("skip %s (%d words)", url, len(text.split()))
                continue
            rows.append({"id": f"{domain}/{pkg}/{name}", "domain": domain, "source": pkg, "version": pkgs[pkg][1],
                         "url": url, "licence": LICENCES[pkg], "text": text})
        rows.sort(key=lambda r: r["id"])
        payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode()
        (out / f"{domain}.jsonl").write_bytes(payload)
        text_bytes = sum(len(r["text"].encode()) for r in rows)
        log.info("%s: %d documents, %d bytes of text, %d words, sha256 %s", domain, len(rows), text_bytes,
                 sum(len(r["text"].split()) for r in rows), hashlib.sha256(payload).hexdigest())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/corpus_cache"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "eval")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    build(args.cache.resolve(), args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
