"""What it costs to extract in a CPU-limited child: datatrove's sandbox, ours one page a message, ours in batches.

    python -m benchmarks.extraction_sandbox [--pages 4000] [--engine resiliparse|trafilatura] [--corpus ~/.cache/curation-scale-corpus/0.1]

The pages are the first ``--pages`` responses of the scale corpus, but those over
``extract.max_html_bytes`` (the stage rejects them without extracting). Every side extracts every page
with the same extractor and must give the same text on every page; what differs is how a page gets
to the process that extracts it and back:

- in process: the extractor called directly, no isolation (the floor);
- datatrove's ``ExtractorSandbox`` (its ``Trafilatura`` block's): one pickled page each way through
  a pipe, the parent waking every poll of its wall-clock deadline;
- ours, one page a message (``TextExtraction`` before batching): the same round trip, the child
  limiting its own CPU time per page;
- ours as the stage runs now: ``TextExtraction.prepare`` sends 32 pages a message, each still under
  its own CPU limit in the child.

CPU is the parent's and its child's together, from the child's start-up on (each side's child is
started and warmed up on one page first: a worker keeps its child for all its shards), sides
alternating, best of ``--rounds``.
"""

from __future__ import annotations

import os
import time

from benchmarks.common import machine, page_sample_parser, report, versions
from benchmarks.token_counting import raw_pages


def _child_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a live process (0 without one)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(pages: list[str], extract_all, child_pid) -> tuple[list[str | None], float]:
    """``extract_all(pages)`` and the CPU it took in this process and the child (``child_pid()``),
    the child already started and warmed up on the first page: a worker keeps its child for all its
    shards, so its start-up is not a page's cost."""
    extract_all(pages[:1])
    pid = child_pid()
    start = time.process_time(), _child_cpu(pid)
    texts = extract_all(pages)
    return texts, time.process_time() - start[0] + _child_cpu(pid) - start[1]


def extractor(engine: str):
    from curation.extraction.extract import TextExtraction

    return TextExtraction(engine=engine).extract_fn


def in_process(pages: list[str], engine: str) -> tuple[list[str | None], float]:
    extract = extractor(engine)
    return _timed(pages, lambda batch: [extract(page) for page in batch], lambda: None)


def datatrove_sandbox(pages: list[str], engine: str) -> tuple[list[str | None], float]:
    from datatrove.pipeline.extractors.base import ExtractorSandbox

    extract, sandbox = extractor(engine), ExtractorSandbox(timeout=5.0)
    try:
        return _timed(pages, lambda batch: [sandbox.process_document(page, extract) for page in batch], lambda: sandbox.process.pid)
    finally:
        sandbox._cleanup_process()


def ours(pages: list[str], engine: str, batch: int) -> tuple[list[str | None], float]:
    from curation.core.stage import TextMeasure, run_stage
    from curation.core.stats import StageStats
    from curation.extraction import extract_worker
    from curation.extraction.extract import TextExtraction
    from curation.readers.base import InputFile, raw_document

    def extract_all(batch_pages: list[str]) -> list[str | None]:
        docs = []
        for i, page in enumerate(batch_pages):
            doc = raw_document(b"", InputFile("bench", "bench", "general", "warc"), i, None)
            doc.text, doc.metadata["domain"] = page, "general"
            docs.append(doc)
        texts: dict[str, str | None] = {d.id: None for d in docs}
        for doc in run_stage(stage, docs, StageStats(stage.name), TextMeasure(None), lambda *_: None):
            texts[doc.id] = doc.text
        return list(texts.values())

    stage = TextExtraction(engine=engine)
    stage.prepare_batch = batch
    try:
        with stage:
            return _timed(pages, extract_all, lambda: stage._sandbox.process.pid)
    finally:
        extract_worker.close_idle()


def main() -> None:
    from curation.extraction.extract import PREPARE_BATCH, TextExtraction

    parser = page_sample_parser(__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["resiliparse", "trafilatura"], default="resiliparse")
    parser.add_argument("--out", help="default: benchmarks/results/extraction_sandbox-<engine>-2core.txt")
    args = parser.parse_args()
    limit = TextExtraction().max_html_bytes
    pages = [page for page in raw_pages(args.corpus, args.pages) if len(page) <= limit]  # the stage rejects longer ones unread
    sides = {
        "in process, no isolation (the floor)": lambda: in_process(pages, args.engine),
        "datatrove ExtractorSandbox (baseline)": lambda: datatrove_sandbox(pages, args.engine),
        "ours, one page a message (before)": lambda: ours(pages, args.engine, 0),
        f"ours, {PREPARE_BATCH} pages a message (TextExtraction now)": lambda: ours(pages, args.engine, PREPARE_BATCH),
    }
    best: dict[str, float] = {}
    answers: dict[str, list] = {}
    for _ in range(args.rounds):
        for name, run in sides.items():
            answers[name], seconds = run()
            best[name] = min(best.get(name, float("inf")), seconds)
    reference = answers[next(iter(sides))]
    for name, got in answers.items():
        # ours drops empty text (the stage rejects it as no_text_extracted): compare the text pages have
        if (wrong := sum(bool(a and a.strip()) and a != b for a, b in zip(reference, got))):
            raise SystemExit(f"{name}: {wrong} pages differ from the extractor's own text")
    floor, baseline = best[next(iter(sides))], best["datatrove ExtractorSandbox (baseline)"]
    lines = [
        f"python -m benchmarks.extraction_sandbox --pages {args.pages} --engine {args.engine} ({args.corpus}: {len(pages):,} pages under extract.max_html_bytes, "
        f"{sum(map(len, pages)) / len(pages):,.0f} characters a page)",
        f"machine: {machine()}",
        f"versions: {versions('datatrove', 'resiliparse', 'trafilatura')}",
        f"the same text on every page from every side; CPU of the process and its children per page, best of {args.rounds} rounds",
    ]
    for name, seconds in best.items():
        over = seconds - floor
        lines.append(f"  {name:52s} {1e3 * seconds / len(pages):6.3f} ms a page   over the floor {1e3 * over / len(pages):6.3f} ms"
                     + ("" if name == "in process, no isolation (the floor)" else f"   datatrove's / this: {baseline / seconds:4.2f}x"))
    report("\n".join(lines), args.out or f"benchmarks/results/extraction_sandbox-{args.engine}-2core.txt")


if __name__ == "__main__":
    main()
