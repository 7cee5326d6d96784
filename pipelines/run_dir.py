"""The run directory: one folder per run, its layout, and atomic writes into it.

    <runs_dir>/<run_name>/
      config.yaml                    the resolved config (and its fingerprint)
      tokenizer/spm.model            the run's sentencepiece model
      tokenizer/tokenizer.json       its sha256, vocabulary size, EOS id and training sample
      sample_cache/<shard>.pickle    what the stages did in the tokenizer's sample pass, for the
                                     curate pass to replay (removed once the shard is curated)
      filtered/<shard>.parquet       documents that passed every per-document stage
      deduped/<shard>.parquet        ... and run-wide deduplication (dedup/summary.json: its parameters)
      dedup/work/                    dedup's scratch partitions (removed when dedup completes)
      dedup/index/<shard>.arrow      the surviving documents' LSH index, for later runs (index.json: its parameters)
      rejected/<stage>/<shard>.parquet   every removed document, with its reason
      stats/<phase>/<shard>.json     per-shard funnel of curate and dedup; written last, so it marks the shard complete
      stats/mix.json                 the mix stage's funnel
      tokens/<shard>.arrow           the token shards; tokens/manifest.json, written last, lists them
      stats.json                     the run's funnel
      progress.json                  live progress: Ray tasks done and total per step (a measurement)
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pipelines.config import ConfigError, WebCorpusConfig
from tokenizer.files import atomic_write_bytes
from tokenizer.store_path import StorePath, as_path, remove_tree


class RunDir:
    """Every path of a run: ``pathlib.Path`` under a local root, ``StorePath`` under a URL
    (``s3://bucket/runs/x``), with the same layout and the same operations (``tokenizer.store_path``)."""

    def __init__(self, root: str | Path | StorePath):
        self.root = as_path(root)

    config = property(lambda self: self.root / "config.yaml")
    tokenizer_model = property(lambda self: self.root / "tokenizer" / "spm.model")
    tokenizer_info = property(lambda self: self.root / "tokenizer" / "tokenizer.json")
    stats = property(lambda self: self.root / "stats.json")
    progress = property(lambda self: self.root / "progress.json")

    dedup_work = property(lambda self: self.root / "dedup" / "work")
    dedup_summary = property(lambda self: self.root / "dedup" / "summary.json")
    dedup_index_info = property(lambda self: self.root / "dedup" / "index" / "index.json")
    tokens = property(lambda self: self.root / "tokens")
    token_staging = property(lambda self: self.root / "tokens" / "staging")
    manifest = property(lambda self: self.root / "tokens" / "manifest.json")

    def filtered(self, shard: str) -> Path | StorePath:
        return self.root / "filtered" / f"{shard}.parquet"

    def deduped(self, shard: str) -> Path | StorePath:
        return self.root / "deduped" / f"{shard}.parquet"

    def rejected_dir(self, stage: str) -> Path | StorePath:
        return self.root / "rejected" / stage

    def rejected(self, stage: str, shard: str) -> Path | StorePath:
        return self.rejected_dir(stage) / f"{shard}.parquet"

    def shard_stats_dir(self, phase: str) -> Path | StorePath:
        return self.root / "stats" / phase

    def shard_stats(self, phase: str, shard: str) -> Path | StorePath:
        return self.shard_stats_dir(phase) / f"{shard}.json"

    def phase_stats(self, phase: str) -> Path | StorePath:
        """The funnel of a phase that accounts for the whole run at once (the mix)."""
        return self.root / "stats" / f"{phase}.json"

    def sample_cache(self, shard: str) -> Path | StorePath:
        return self.root / "sample_cache" / f"{shard}.pickle"

    def staged_index(self, shard: str) -> Path | StorePath:
        """A shard's LSH index as the dedup map writes it, before the survivors are known."""
        return self.dedup_work / "index" / f"{shard}.arrow"

    def dedup_index(self, shard: str) -> Path | StorePath:
        return self.root / "dedup" / "index" / f"{shard}.arrow"

    def staged_tokens(self, shard: str) -> Path | StorePath:
        """A curated shard encoded, before the mix picks and orders its documents."""
        return self.token_staging / f"{shard}.arrow"

    def token_shard(self, name: str) -> Path | StorePath:
        return self.tokens / name

    @staticmethod
    def token_shard_name(group: str, i: int) -> str:
        """A token shard's path under ``tokens/``, as the manifest lists it (a folder per domain if asked)."""
        return f"{group}/shard-{i:05d}.arrow" if group else f"shard-{i:05d}.arrow"

    def prepare(self, cfg: WebCorpusConfig, overwrite: bool = False) -> None:
        """Create the run dir, or check that an existing one was made by the same config.

        Resuming under a changed config would mix outputs of two configurations in one run.
        """
        if overwrite and self.root.exists():
            remove_tree(self.root)
        fingerprint = cfg.fingerprint()
        if self.config.exists():
            previous = yaml.safe_load(self.config.read_text()) or {}
            if previous.get("fingerprint") != fingerprint:
                raise ConfigError(
                    f"run directory {self.root} holds a run with another configuration "
                    f"(fingerprint {previous.get('fingerprint')} != {fingerprint}); "
                    "choose another run_name or pass --overwrite"
                )
            return
        # Ray settings say where a run executes, not what it produces: they may differ on resume.
        resolved = {"fingerprint": fingerprint, "config": cfg.model_dump(mode="json", exclude={"ray"})}
        atomic_write_bytes(self.config, yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True).encode())
