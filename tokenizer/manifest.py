"""``tokens/manifest.json``: what a set of token shards holds, typed, for the driver that writes
it and the trainer that reads it.

It lists the shards (file, sha256, bytes, documents and tokens, per domain too), the totals, the
per-domain figures of the mix that chose the documents, and the tokenizer that encoded them (its
sha256, vocabulary size, EOS id and the special ids the objectives add past the vocabulary).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tokenizer.store_path import as_path


@dataclass
class ShardEntry:
    file: str  # relative to the manifest's folder
    sha256: str
    bytes: int
    documents: int
    tokens: int
    domains: dict[str, dict[str, int]]  # domain -> {"documents", "tokens"}


@dataclass
class TokenizerEntry:
    sha256: str
    vocab_size: int
    eos_id: int
    model: str  # relative to the manifest's folder
    special: dict | None = None  # manifests written before the objectives' special ids have none

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.special is None:
            del out["special"]
        return out


@dataclass
class Manifest:
    format: str
    tokenizer: TokenizerEntry
    dtype: str
    documents: int
    tokens: int
    domains: dict[str, dict]  # domain -> documents, tokens and the mix's figures (target_share, epochs, ...)
    per_domain_shards: bool
    shards: list[ShardEntry] = field(default_factory=list)

    @staticmethod
    def format_of(dtype: np.dtype) -> str:
        return "arrow-ipc: tokens list<%s> (EOS appended), domain string, doc_id string; one record batch" % np.dtype(dtype).name

    def to_dict(self) -> dict:
        return {**asdict(self), "tokenizer": self.tokenizer.to_dict(), "shards": [asdict(s) for s in self.shards]}

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        return cls(
            **{k: v for k, v in d.items() if k not in ("tokenizer", "shards")},
            tokenizer=TokenizerEntry(**d["tokenizer"]),
            shards=[ShardEntry(**s) for s in d["shards"]],
        )

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        return cls.from_dict(json.loads(as_path(path).read_text()))

    @classmethod
    def of_shards(cls, shards: list[ShardEntry], tokenizer: TokenizerEntry, dtype: np.dtype, per_domain_shards: bool,
                  domain_figures: dict[str, dict]) -> Manifest:
        """The manifest of written shards: totals, and per domain (in ``domain_figures``' order) its
        documents, tokens and share of the tokens, beside the figures the caller gives (the mix's)."""
        tokens_total = sum(e.tokens for e in shards)
        per_domain = {}
        for domain, figures in domain_figures.items():
            tokens = sum(e.domains.get(domain, {}).get("tokens", 0) for e in shards)
            per_domain[domain] = {
                "documents": sum(e.domains.get(domain, {}).get("documents", 0) for e in shards),
                "tokens": tokens,
                "achieved_share": round(tokens / tokens_total, 6) if tokens_total else 0.0,
                **figures,
            }
        documents = sum(e.documents for e in shards)
        return cls(cls.format_of(dtype), tokenizer, np.dtype(dtype).name, documents, tokens_total, per_domain, per_domain_shards, shards)
