"""The Ray tasks that run stages over one shard, and the per-shard funnel they leave behind.

Nothing here imports Ray: the same functions run in a test on one process. A task receives what
it needs (the run directory, its shard, the stages' parameters), not the run's config.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from curation.core.replay import load_effects, replayed, replayed_time_s, replaying, save_effects
from curation.core.sampling import sample_curated_text
from curation.core.stage import TextMeasure
from curation.core.stats import StageStats
from curation.dedup.removal import DuplicateRemoval, decisions_dir, read_decisions, write_survivor_index
from curation.readers import read_file
from curation.readers.sources import Shard
from curation.writers.shards import read_documents
from curation.writers.stage_outputs import write_stage_outputs
from pipelines.run_dir import RunDir
from pipelines.stages import CURATE, DEDUP, NOT_REPLAYED, StagePlan, build
from tokenizer.files import atomic_write_json
from tokenizer.model import Tokenizer

logger = logging.getLogger(__name__)


@functools.cache
def _quiet_datatrove_logs() -> None:
    """datatrove logs through loguru at INFO (one line per extractor sandbox); keep warnings only."""
    from loguru import logger as loguru_logger

    loguru_logger.remove()
    loguru_logger.add(sys.stderr, level="WARNING")


class ShardFailed(RuntimeError):
    """A shard's task failed for good (a permanent store error, retries exhausted): named, so the
    run's error says which input to look at."""


@contextmanager
def failing_as(shard: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        raise ShardFailed(f"shard {shard}: {type(exc).__name__}: {exc}") from exc


def _token_measure(run: RunDir, count_html: bool = True) -> TextMeasure:
    return TextMeasure(Tokenizer(run.tokenizer_model).count, count_markup=count_html)


def _finish_shard(run: RunDir, phase: str, shard: str, started: float, stats: list[StageStats], **extra) -> dict:
    """The shard's funnel, written last: its file marks the shard complete for a resumed run."""
    payload = {"shard": shard, **extra, "wall_time_s": round(time.perf_counter() - started, 3), "stages": [s.to_dict() for s in stats]}
    atomic_write_json(run.shard_stats(phase, shard), payload)
    return payload


def sample_shard_for_tokenizer(run: RunDir, shard: Shard, plan: StagePlan, sample_rate: float, max_chars: int) -> list[tuple[str, str, int]]:
    """Curated text of a deterministic sample of the shard's records: (domain, text, id hash) triples.
    What its stages did is kept for the curate pass, so no record is worked on twice."""
    _quiet_datatrove_logs()
    with failing_as(shard.name):
        stages = replaying(build(plan), record=True, skip=NOT_REPLAYED)  # the curate pass replays what these stages do
        sample = sample_curated_text(read_file(shard.file), stages, sample_rate, max_chars)
        save_effects(run.sample_cache(shard.name), stages)
    return sample


def curate_shard(run: RunDir, shard: Shard, plan: StagePlan, count_html_tokens: bool = True) -> dict:
    """Every per-document stage over one input shard into ``filtered/`` and ``rejected/``; its funnel.
    ``count_html_tokens``: whether HTML records' tokens are counted before extraction (``read.count_html_tokens``)."""
    with failing_as(shard.name):
        return _curate_shard(run, shard, plan, count_html_tokens)


def _curate_shard(run: RunDir, shard: Shard, plan: StagePlan, count_html_tokens: bool) -> dict:
    _quiet_datatrove_logs()
    started = time.perf_counter()
    stages = replaying(build(plan), load_effects(run.sample_cache(shard.name)), skip=NOT_REPLAYED)
    measure = _token_measure(run, count_html_tokens)
    stats = write_stage_outputs(stages, read_file(shard.file), measure, run.filtered(shard.name), lambda stage: run.rejected(stage, shard.name))
    sampled = replayed_time_s(stages)
    for stage in stats:  # a stage's time is also what it spent on this shard in the sample pass
        stage.wall_time_s += sampled.get(stage.name, 0.0)
    where = {"input": shard.file.path, "source": shard.file.source, "domain": shard.file.domain, "token_count_time_s": round(measure.time_s, 3)}
    payload = _finish_shard(run, CURATE.name, shard.name, started, stats, **where)
    run.sample_cache(shard.name).unlink(missing_ok=True)
    logger.debug("%s: %d stage results replayed from the tokenizer's sample pass", shard.name, replayed(stages))
    return payload


def apply_shard(run: RunDir, shard: str) -> dict:
    """The ``dedup`` stage over one filtered shard into ``deduped/``; the survivors' LSH index; its funnel."""
    with failing_as(shard):
        return _apply_shard(run, shard)


def _apply_shard(run: RunDir, shard: str) -> dict:
    started = time.perf_counter()
    decisions = read_decisions(decisions_dir(run.dedup_work, shard))
    measure = _token_measure(run)
    stats = write_stage_outputs(
        [DuplicateRemoval(decisions)], read_documents(run.filtered(shard)), measure, run.deduped(shard), lambda stage: run.rejected(stage, shard)
    )
    write_survivor_index(run.staged_index(shard), run.dedup_index(shard), decisions)
    return _finish_shard(run, DEDUP.name, shard, started, stats, token_count_time_s=round(measure.time_s, 3))
