"""``stats.json["retention"]``: what a curation run kept of what it read, typed once for the
accounting that measures it (``curation.core.stats.retention``) and the planner that reads it
(``trainer.plan``).

It lives beside the shard format because its headline is the token shards' share of the
extracted tokens, and because this package is the one both sides may import (the trainer does
not import the curation code).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SHARD_KEYS = ("tokens_in_shards", "shard_tokens_vs_extracted")


@dataclass
class Retention:
    # every field has a default so that a reader takes what an older or partial stats.json holds
    docs: float | None = None  # documents kept / documents read
    bytes_vs_raw: float | None = None
    tokens_vs_raw: float | None = None  # tokens kept / tokens of the raw records
    tokens_vs_extracted: float | None = None  # tokens kept / tokens of the extracted text
    tokens_extracted: int = 0
    tokens_kept: int = 0
    per_domain: dict[str, dict] = field(default_factory=dict)
    tokens_in_shards: int | None = None  # None: the run wrote no token shards
    shard_tokens_vs_extracted: float | None = None  # the headline: tokens in the shards (EOS included) / extracted

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.tokens_in_shards is None:
            for key in SHARD_KEYS:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Retention:
        return cls(**d)

    @classmethod
    def of_run(cls, stats_path: str | Path) -> Retention:
        return cls.from_dict(json.loads(Path(stats_path).read_text())["retention"])

    def shard_tokens_vs_raw(self) -> float:
        """Tokens in the shards over the tokens of the raw records (the latter recovered from the kept share)."""
        raw_tokens = self.tokens_kept / self.tokens_vs_raw if self.tokens_vs_raw else 0
        return self.tokens_in_shards / raw_tokens if raw_tokens else 0.0
