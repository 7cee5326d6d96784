"""Where the tokenizer's sample pass leaves its extractions for the curate pass: one Parquet file per shard."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.parquet as pq

from curation.extraction.extract_memo import Remembered, RememberingExtraction
from curation.core.stage import Stage
from pipelines.run_dir import RunDir

logger = logging.getLogger(__name__)


def cache_path(run: RunDir, shard: str):
    return run.root / "extract_cache" / f"{shard}.parquet"


def remembering(stages: list[Stage], known: Remembered | None = None, record: bool = False) -> tuple[list[Stage], RememberingExtraction]:
    """``stages`` with the extract stage wrapped (see ``curation.extraction.extract_memo``)."""
    i = next(i for i, s in enumerate(stages) if s.name == "extract")
    wrapper = RememberingExtraction(stages[i], known, record)
    return [*stages[:i], wrapper, *stages[i + 1 :]], wrapper


def save(run: RunDir, shard: str, results: Remembered) -> None:
    path = cache_path(run, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = sorted(results)
    table = pa.table({"id": ids, "text": [results[i][0] for i in ids], "reason": [results[i][1] for i in ids]})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def load(run: RunDir, shard: str) -> Remembered:
    path = cache_path(run, shard)
    if not path.exists():
        return {}
    try:
        table = pq.read_table(path).to_pydict()
    except Exception as exc:  # a damaged cache only costs the extractions it held
        logger.warning("%s: unreadable (%s); extracting again", path, exc)
        return {}
    return {i: (t, r) for i, t, r in zip(table["id"], table["text"], table["reason"])}


def drop(run: RunDir, shard: str) -> None:
    cache_path(run, shard).unlink(missing_ok=True)
