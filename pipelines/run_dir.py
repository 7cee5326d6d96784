"""The run directory: one folder per run, its layout, and atomic writes into it.

    <runs_dir>/<run_name>/
      config.yaml                    the resolved config (and its fingerprint)
      tokenizer/spm.model            the run's sentencepiece model
      tokenizer/tokenizer.json       its sha256, vocabulary size, EOS id and training sample
      filtered/<shard>.parquet       documents that passed every per-document stage
      deduped/<shard>.parquet        ... and run-wide deduplication (dedup/summary.json: its parameters)
      rejected/<stage>/<shard>.parquet   every removed document, with its reason
      stats/curate/<shard>.json      per-shard funnel; written last, so it marks the shard complete
      stats.json                     the run's funnel
      progress.json                  live progress: Ray tasks done and total per step (a measurement)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from pipelines.config import ConfigError, WebCorpusConfig


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    config = property(lambda self: self.root / "config.yaml")
    tokenizer_model = property(lambda self: self.root / "tokenizer" / "spm.model")
    tokenizer_info = property(lambda self: self.root / "tokenizer" / "tokenizer.json")
    stats = property(lambda self: self.root / "stats.json")
    progress = property(lambda self: self.root / "progress.json")

    def filtered(self, shard: str) -> Path:
        return self.root / "filtered" / f"{shard}.parquet"

    def deduped(self, shard: str) -> Path:
        return self.root / "deduped" / f"{shard}.parquet"

    def rejected(self, stage: str, shard: str) -> Path:
        return self.root / "rejected" / stage / f"{shard}.parquet"

    def shard_stats(self, phase: str, shard: str) -> Path:
        return self.root / "stats" / phase / f"{shard}.json"

    def prepare(self, cfg: WebCorpusConfig, overwrite: bool = False) -> None:
        """Create the run dir, or check that an existing one was made by the same config.

        Resuming under a changed config would mix outputs of two configurations in one run.
        """
        if overwrite and self.root.exists():
            shutil.rmtree(self.root)
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
