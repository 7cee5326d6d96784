"""Run-wide deduplication's parameters: a run's ``dedup`` section."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator

from configs.fields import READ_PATH, Strict, no_nul
from configs.overrides import ConfigError

if TYPE_CHECKING:
    from curation.dedup.steps import LSHParams


class DedupConfig(Strict):
    """Exact then MinHash-LSH near-duplicate removal across the whole run."""

    enabled: bool = True
    ngram: int = Field(5, ge=1, le=1000, description="word n-gram shingles")
    num_perm: int = Field(128, ge=8, le=1024)
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity at which documents are duplicates")
    verify: bool = Field(True, description="keep an LSH candidate pair only if its signatures agree on >= threshold")
    verify_margin: float | None = Field(
        None, ge=0, lt=1, description="accept signature agreement this far below threshold; default: one standard error of the estimate there"
    )
    candidate_threshold: float | None = Field(
        None, gt=0, lt=1, description="similarity the LSH bands aim at; default: threshold - 0.15 with verify, else threshold"
    )
    bands: int | None = Field(None, ge=1, le=1024, description="LSH bands; default: datasketch's optimum for candidate_threshold")
    rows: int | None = Field(None, ge=1, le=1024, description="rows per band; default: datasketch's optimum")
    seed: int = 1
    score_field: str = Field("quality_score", description="metadata field ranking duplicates (higher survives)")
    rows_per_partition: int = Field(4_000_000, gt=0, le=1 << 40, description="band rows per shuffle partition: bounds worker memory")
    partitions: int | None = Field(None, ge=1, le=1_000_000, description="shuffle partitions; default: enough for rows_per_partition, at least one per CPU")
    previous_indexes: list[str] = Field(
        default_factory=list, max_length=1000, description="dedup/index folders of finished runs: also remove duplicates of their corpora",
        json_schema_extra=READ_PATH,
    )

    @field_validator("previous_indexes")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        return [no_nul(p) for p in paths]

    @model_validator(mode="after")
    def _resolve_bands(self) -> DedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both dedup.bands and dedup.rows, or neither")
        if self.verify_margin is None:
            # the agreement of 128 minima estimates J with standard error sqrt(J(1-J)/num_perm):
            # a hard cut at the threshold would miss half of the pairs that sit right on it
            margin = round(math.sqrt(self.threshold * (1 - self.threshold) / self.num_perm), 4)
            object.__setattr__(self, "verify_margin", margin)
        if self.candidate_threshold is None:
            candidate = max(0.05, round(self.threshold - 0.15, 4)) if self.verify else self.threshold
            object.__setattr__(self, "candidate_threshold", candidate)
        if self.bands is None:
            from curation.dedup.minhash import lsh_bands

            bands, rows = lsh_bands(self.candidate_threshold, self.num_perm)
            object.__setattr__(self, "bands", bands)
            object.__setattr__(self, "rows", rows)
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"dedup.bands x dedup.rows = {self.bands * self.rows} exceeds dedup.num_perm = {self.num_perm}")
        return self

    def lsh(self) -> LSHParams:
        """What makes two runs' signatures comparable (an index records it)."""
        from curation.dedup.index import INDEX_PARAMS  # numpy and pyarrow: not for a process that only validates
        from curation.dedup.steps import LSHParams

        return LSHParams(**{k: getattr(self, k) for k in INDEX_PARAMS})

    def previous_index_files(self) -> list[tuple[str, Path]]:
        """(earlier run's name, index file) for every index in ``previous_indexes``, checked."""
        from curation.dedup.index import index_files

        found = []
        for i, folder in enumerate(self.previous_indexes):
            try:
                run_name, files = index_files(folder, self.lsh())
            except ValueError as exc:
                raise ConfigError(f"dedup.previous_indexes.{i}: {exc}") from None
            found += [(run_name, f) for f in files]
        return found

    def partitions_for(self, n_docs: int, min_parts: int) -> int:
        """Shuffle partitions for ``n_docs`` documents: ``partitions``, else enough for
        ``rows_per_partition`` band rows each, and at least ``min_parts`` (one per CPU)."""
        if self.partitions is not None:
            return self.partitions
        return max(min_parts, math.ceil(n_docs * self.bands / self.rows_per_partition))
