"""The run tokenizer's and the token shards' parameters: a run's ``tokenizer`` and ``shards`` sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from configs.fields import READ_PATH, Strict, no_nul


class ShardsConfig(Strict):
    enabled: bool = True
    shard_tokens: int = Field(1_000_000, gt=0, le=1 << 40, description="tokens per shard (a shard closes after the document that reaches it)")
    per_domain: bool = Field(False, description="one set of shards per domain, for mixing at training time")
    seed: int = 1


class TokenizerConfig(Strict):
    model_path: str | None = Field(None, description="an existing sentencepiece model; skips training", json_schema_extra=READ_PATH)

    @field_validator("model_path")
    @classmethod
    def _path(cls, path: str | None) -> str | None:
        return path if path is None else no_nul(path)
    vocab_size: int = Field(8192, ge=256, le=1 << 20)
    model_type: Literal["bpe", "unigram"] = "bpe"
    character_coverage: float = Field(0.9995, gt=0, le=1)
    byte_fallback: bool = True
    sample_rate: float = Field(0.5, gt=0, le=1, description="fraction of records (by id hash) sampled for training")
    sample_chars: int = Field(20_000_000, gt=0, le=1 << 40, description="text budget of the sample, split evenly over domains")
