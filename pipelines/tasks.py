"""The work done for one input shard; the driver runs these as Ray tasks.

Nothing here imports Ray: the same functions run in a test on one process.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack

from datatrove.data import Document

from curation.document import stable_hash
from curation.readers import read_file
from curation.shards import document_writer, rejected_writer
from curation.stage import Stage, TextMeasure, run_stage
from curation.stats import StageStats
from pipelines import sample_cache
from pipelines.config import WebCorpusConfig
from pipelines.inputs import Shard
from pipelines.run_dir import RunDir, atomic_write_json
from pipelines.stages import build_stages
from tokenizer.model import Tokenizer

logger = logging.getLogger(__name__)

_HASH_SPACE = 1 << 64


@functools.cache
def _quiet_datatrove_logs() -> None:
    """datatrove logs through loguru at INFO (one line per extractor sandbox); keep warnings only."""
    from loguru import logger as loguru_logger

    loguru_logger.remove()
    loguru_logger.add(sys.stderr, level="WARNING")


def _chain(
    stages: list[Stage], docs: Iterator[Document], stats: dict[str, StageStats], measure: TextMeasure, reject
) -> Iterator[Document]:
    for stage in stages:
        docs = run_stage(stage, docs, stats[stage.name], measure, lambda d, r, raw, s=stage.name: reject(s, d, r, raw))
    return docs


def sample_shard_for_tokenizer(cfg: WebCorpusConfig, shard: Shard, max_chars: int) -> list[tuple[str, str, int]]:
    """Curated text of a deterministic sample of the shard's records, for training the tokenizer.

    Records are sampled by a hash of their id, then run through the same stages as the real run, so
    the tokenizer learns from text that survives curation. Returns (domain, text, id hash) triples.
    """
    _quiet_datatrove_logs()
    threshold = int(cfg.tokenizer.sample_rate * _HASH_SPACE)
    sampled = (d for d in read_file(shard.file) if stable_hash(d.id) < threshold)
    stages = sample_cache.replaying(build_stages(cfg), record=True)  # the curate pass replays what these stages do
    stats = {s.name: StageStats(s.name) for s in stages}
    out, chars = [], 0
    with ExitStack() as stack:
        for stage in stages:
            stack.enter_context(stage)
        for doc in _chain(stages, sampled, stats, TextMeasure(None), lambda *_: None):
            out.append((doc.metadata["domain"], doc.text, stable_hash(doc.id)))
            chars += len(doc.text)
            if chars >= max_chars:
                break
    sample_cache.save(RunDir(cfg.run_dir), shard.name, stages)
    return out


def curate_shard(cfg: WebCorpusConfig, shard: Shard) -> dict:
    """Run every per-document stage over one shard, write its outputs, and return its funnel.

    Outputs go to temporary files renamed into place, and the shard's stats file is written last:
    a shard either completed (stats file present, all outputs present) or is redone from scratch.
    """
    _quiet_datatrove_logs()
    run = RunDir(cfg.run_dir)
    start = time.perf_counter()
    tokenizer = Tokenizer(run.tokenizer_model)
    measure = TextMeasure(tokenizer.count)
    stages = sample_cache.replaying(build_stages(cfg), known=sample_cache.load(run, shard.name))
    stats = {s.name: StageStats(s.name) for s in stages}
    kept = document_writer(run.filtered(shard.name))
    rejected = {s.name: rejected_writer(run.rejected(s.name, shard.name)) for s in stages}

    def reject(stage: str, doc: Document, reason: str, raw: bytes | None) -> None:
        rejected[stage].add((doc, reason, raw), size=len(doc.text) + len(raw or b""))

    writers = [kept, *rejected.values()]
    try:
        with ExitStack() as stack:
            for stage in stages:
                stack.enter_context(stage)
            for doc in _chain(stages, read_file(shard.file), stats, measure, reject):
                kept.add(doc, size=len(doc.text))
        kept.commit()
        for writer in rejected.values():
            writer.commit(keep_empty=False)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    payload = {
        "shard": shard.name,
        "input": shard.file.path,
        "source": shard.file.source,
        "domain": shard.file.domain,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "stages": [stats[s.name].to_dict() for s in stages],
    }
    atomic_write_json(run.shard_stats("curate", shard.name), payload)
    sample_cache.drop(run, shard.name)
    logger.debug("%s: %d stage results replayed from the tokenizer's sample pass", shard.name, sample_cache.replayed(stages))
    return payload
