"""A shard's stages run into its output files: the kept documents and, per stage, the rejected ones.

Every output is written to a temporary file and renamed into place only if the whole shard went
through; on any error all of them are removed, so a shard is either complete or redone from scratch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path

from datatrove.data import Document

from curation.core.stage import Stage, TextMeasure, run_stages
from curation.core.stats import StageStats
from curation.writers.shards import document_writer, rejected_writer


def write_stage_outputs(
    stages: list[Stage],
    docs: Iterable[Document],
    measure: TextMeasure | Callable[[Document], tuple[int, int]],
    kept_path: Path | None,
    rejected_path: Callable[[str], Path],
) -> list[StageStats]:
    """Stream ``docs`` through ``stages``; return each stage's funnel, in order.

    Kept documents go to ``kept_path`` (dropped when None: a stage whose output is written by
    another step, like the mix's token shards); documents rejected by a stage go to
    ``rejected_path(stage name)``, with the reason and the text they entered the stage with.
    """
    stats = {s.name: StageStats(s.name) for s in stages}
    kept = document_writer(kept_path) if kept_path is not None else None
    rejected = {s.name: rejected_writer(rejected_path(s.name)) for s in stages}

    def reject(stage: str, doc: Document, reason: str, raw: bytes | None) -> None:
        rejected[stage].add((doc, reason, raw), size=len(doc.text) + len(raw or b""))

    writers = [w for w in (kept, *rejected.values()) if w is not None]
    try:
        with ExitStack() as stack:
            for stage in stages:
                stack.enter_context(stage)
            for doc in run_stages(stages, docs, stats, measure, reject):
                if kept is not None:
                    kept.add(doc, size=len(doc.text))
        if kept is not None:
            kept.commit()
        for writer in rejected.values():
            writer.commit(keep_empty=False)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    return [stats[s.name] for s in stages]
