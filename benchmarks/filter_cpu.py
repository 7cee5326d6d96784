"""CPU of each per-document filter stage over real pages, and a digest of what they decided.

    python -m benchmarks.filter_cpu [--pages 10000] [--corpus ~/.cache/curation-scale-corpus/0.1]

Reads the first ``--pages`` responses of the scale corpus's WARC files (sorted by name), extracts
their main text with resiliparse (the fast path's extractor), then runs url_filter, language and
the four quality stages of the default run config over them in order, one document through all
stages before the next (as ``run_stage`` chains them), timing each ``apply`` with
``time.process_time``. Models and tokenizers are loaded before timing starts. The digest covers
every document's verdict, language metadata and final text: two checkouts that print the same
digest took the same decisions, so their CPU figures compare like for like.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import time
from pathlib import Path

from benchmarks.common import SCALE_CORPUS, machine

STAGES = ("url_filter", "language", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")


def pages(corpus: Path, limit: int) -> list[tuple[str, str]]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text

    out = []
    for path in sorted(glob.glob(str(corpus / "*.warc.gz"))):
        with open(path, "rb") as f:
            for record in ArchiveIterator(f, record_types=WarcRecordType.response):
                html = record.reader.read().split(b"\r\n\r\n", 1)[-1].decode("utf-8", errors="replace")
                out.append((record.headers.get("WARC-Target-URI"), extract_plain_text(html, main_content=True)))
                if len(out) == limit:
                    return out
    return out


def run(corpus: Path, limit: int) -> str:
    from datatrove.data import Document

    from pipelines.config_loading import load_config
    from pipelines.stages import build, stage_plan

    stages = build([(name, params) for name, params in stage_plan(load_config(Path("configs") / "web_corpus.yaml")) if name in STAGES])
    warm = Document(text="A warm-up page with enough words. " * 20, id="warm", metadata={"url": "https://example.org/", "domain": "general"})
    for stage in stages:
        stage.open()
        stage.apply(warm)
    cpu, seen, digest = dict.fromkeys(STAGES, 0.0), dict.fromkeys(STAGES, 0), hashlib.sha256()
    texts = pages(corpus, limit)
    for i, (url, text) in enumerate(texts):
        doc, verdict = Document(text=text, id=str(i), metadata={"url": url, "domain": "general"}), "kept"
        for stage in stages:
            start = time.process_time()
            result = stage.apply(doc)
            cpu[stage.name] += time.process_time() - start
            seen[stage.name] += 1
            if result is not True:
                verdict = f"{stage.name}:{result}"
                break
        meta = (doc.metadata.get("language"), doc.metadata.get("language_score"))
        digest.update(repr((verdict, meta, doc.text)).encode("utf-8", "surrogatepass"))
    lines = [f"machine: {machine()}", f"pages: {len(texts)} from {corpus}", f"{'stage':<20}{'CPU s':>9}{'docs':>8}{'ms/doc':>9}"]
    lines += [f"{name:<20}{cpu[name]:>9.3f}{seen[name]:>8}{1e3 * cpu[name] / max(seen[name], 1):>9.3f}" for name in STAGES]
    lines += [f"{'total':<20}{sum(cpu.values()):>9.3f}", f"decisions digest: {digest.hexdigest()[:16]}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--corpus", type=Path, default=SCALE_CORPUS)
    args = parser.parse_args()
    print(run(args.corpus, args.pages))


if __name__ == "__main__":
    main()
