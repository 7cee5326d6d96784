"""trafilatura as datatrove runs it, stock against ``curation.extraction.trafilatura_fast``, on the same pages.

    python -m benchmarks.trafilatura_fast [--size 0.1] [--pages 200] [--rounds 4]

Pages: a seeded sample of the scale corpus's records (``scripts/build_scale_corpus.py --size``), or
the bundled corpus's pages where that corpus is not built. One process, alternating stock and fast
round by round (the host's drift falls on both sides), each page's text compared between them: a
single differing text fails the run. Prints CPU ms a page for each side and their ratio.
"""

from __future__ import annotations

import argparse
import glob
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import CORPUS, ROOT, machine, report, versions  # noqa: E402

SCALE_CACHE = Path.home() / ".cache" / "curation-scale-corpus"


def scale_pages(size: str) -> list[str]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    pages = []
    for path in sorted(glob.glob(str(SCALE_CACHE / size / "*.warc.gz"))):
        with open(path, "rb") as f:
            for record in ArchiveIterator(f, record_types=WarcRecordType.response):
                body = record.reader.read()
                pages.append(body[body.find(b"\r\n\r\n") + 4:].decode("utf-8", "replace"))
    return pages


def bundled_pages() -> list[str]:
    import gzip
    import json

    pages = []
    for domain in ("finance", "general"):
        with gzip.open(CORPUS / "jsonl" / f"{domain}.jsonl.gz", "rt") as f:
            pages += [json.loads(line)["html"] for line in f]
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trafilatura_fast", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="0.1", help="scale corpus size to sample (bundled pages when it is not built)")
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each side, alternating")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "trafilatura_fast-2core.txt"))
    args = parser.parse_args(argv)

    from datatrove.pipeline.extractors.trafilatura import Trafilatura

    from curation.extraction import trafilatura_fast

    pages, source = scale_pages(args.size), f"scale corpus {args.size}"
    if not pages:
        pages, source = bundled_pages(), "bundled corpus"
    pages = random.Random(0).sample(pages, min(args.pages, len(pages)))
    extract = Trafilatura(favour_precision=True, timeout=5, deduplicate=False).extract  # the extract stage's settings

    stock_texts = [extract(p) for p in pages]  # also warms both sides' imports and caches
    trafilatura_fast.install()
    fast_texts = [extract(p) for p in pages]
    trafilatura_fast.uninstall()
    differing = sum(a != b for a, b in zip(stock_texts, fast_texts))
    cpu = {"stock": 0.0, "fast": 0.0}
    for r in range(args.rounds):
        for side in ("stock", "fast") if r % 2 == 0 else ("fast", "stock"):
            if side == "fast":
                trafilatura_fast.install()
            start = time.process_time()
            for page in pages:
                extract(page)
            cpu[side] += time.process_time() - start
            trafilatura_fast.uninstall()
    per_page = {side: 1000 * t / (args.rounds * len(pages)) for side, t in cpu.items()}
    lines = [
        "benchmarks.trafilatura_fast: trafilatura (favour_precision, no dedup), stock vs trafilatura_fast, one process, sides alternating",
        f"machine: {machine()}",
        f"versions: {versions('trafilatura', 'lxml', 'justext', 'datatrove')}",
        f"pages: {len(pages)} from the {source}, {args.rounds} rounds per side",
        f"stock (baseline)    {per_page['stock']:7.2f} ms CPU a page",
        f"trafilatura_fast    {per_page['fast']:7.2f} ms CPU a page",
        f"ratio stock / fast  {per_page['stock'] / per_page['fast']:7.2f}x",
        f"texts equal: {len(pages) - differing} of {len(pages)}",
    ]
    report("\n".join(lines), args.out)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
