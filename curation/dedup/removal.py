"""The ``dedup`` stage: removes, shard by shard, the documents the run-wide clustering decided against."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather

from curation.core.stage import Stage
from curation.dedup.partitions import read_partition, write_table
from tokenizer.store_path import readable

Decisions = dict[str, tuple[str, int, str]]  # document id -> (reason, cluster id, id of its survivor)


class DuplicateRemoval(Stage):
    """Removes the documents in ``decisions``; each keeps its cluster and the id of the survivor it
    duplicates in its metadata, so ``rejected/dedup/`` says which document stood in for it."""

    name = "dedup"

    def __init__(self, decisions: Decisions):
        self.decisions = decisions

    def apply(self, doc) -> bool | tuple[bool, str]:
        decision = self.decisions.get(doc.id)
        if decision is None:
            return True
        reason, cluster, kept_id = decision
        doc.metadata["dedup_cluster"] = cluster
        doc.metadata["duplicate_of"] = kept_id
        return False, reason


def decisions_dir(work: Path, shard: str) -> Path:
    """Where dedup's last step leaves one shard's removals (here, not beside the steps: the curate
    workers import this module, and the steps' MinHash imports datasketch and SciPy, ~0.7 s)."""
    return work / "decisions" / shard


def read_decisions(folder: Path) -> Decisions:
    """One shard's removals, as ``curation.dedup.steps.survivor_partition`` wrote them."""
    table = read_partition(folder)
    if table is None:
        return {}
    return {row["id"]: (row["reason"], row["cluster"], row["kept_id"]) for row in table.to_pylist()}


def write_survivor_index(shard_index: Path, out: Path, decisions: Decisions) -> None:
    """The rows of a shard's LSH index whose documents survived: what a later run deduplicates against."""
    index = feather.read_table(readable(shard_index))
    survivors = pa.array([i not in decisions for i in index["id"].to_pylist()], type=pa.bool_())
    write_table(out, index.filter(survivors))
