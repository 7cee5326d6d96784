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

CPU is the parent's and its children's together (a child's time is read when it has been reaped),
sides alternating, best of ``--rounds``.
"""

from __future__ import annotations

import resource
import time

from benchmarks.common import machine, page_sample_parser, report, versions
from benchmarks.token_counting import raw_pages


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def extractor(engine: str):
    from curation.extraction.extract import TextExtraction

    return TextExtraction(engine=engine).extract_fn


def in_process(pages: list[str], engine: str) -> list[str | None]:
    extract = extractor(engine)
    return [extract(page) for page in pages]


def datatrove_sandbox(pages: list[str], engine: str) -> list[str | None]:
    from datatrove.pipeline.extractors.base import ExtractorSandbox

    extract, sandbox = extractor(engine), ExtractorSandbox(timeout=5.0)
    try:
        return [sandbox.process_document(page, extract) for page in pages]
    finally:
        sandbox._cleanup_process()  # reaps the child, so its CPU time is counted


def ours(pages: list[str], engine: str, batch: int) -> list[str | None]:
    from curation.core.stage import TextMeasure, run_stage
    from curation.core.stats import StageStats
    from curation.extraction import extract_worker
    from curation.extraction.extract import TextExtraction
    from curation.readers.base import InputFile, raw_document

    docs = []
    for i, page in enumerate(pages):
        doc = raw_document(b"", InputFile("bench", "bench", "general", "warc"), i, None)
        doc.text, doc.metadata["domain"] = page, "general"
        docs.append(doc)
    texts: dict[str, str | None] = {d.id: None for d in docs}
    stage = TextExtraction(engine=engine)
    stage.prepare_batch = batch
    with stage:
        for doc in run_stage(stage, docs, StageStats(stage.name), TextMeasure(None), lambda *_: None):
            texts[doc.id] = doc.text
    extract_worker.close_idle()  # reaps the child, so its CPU time is counted
    return list(texts.values())


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
            start = _cpu()
            answers[name] = run()
            best[name] = min(best.get(name, float("inf")), _cpu() - start)
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
