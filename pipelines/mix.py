"""Mixing the curated documents in tokens and writing the token shards, scheduled on Ray (each
step's work is in ``curation.mixing.selection``, the shard format's in ``tokenizer.shards``).

    encode   per curated shard: every document encoded once, staged as an Arrow IPC token file
    plan     driver: per-domain repeats from the token counts
    shuffle  driver: the selected (document, repeat) entries ordered by a seeded hash, cut into shards
    write    per output shard: documents gathered from the memory-mapped staging files, EOS appended
    account  per curated shard: the ``mix`` stage's funnel; documents left out go to rejected/mix/

``tokens/manifest.json`` is written last and marks the phase complete; a killed attempt is redone
from the start of the phase, which gives the same bytes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from curation.core.stats import StageStats
from curation.mixing.selection import (
    account_shard,
    encode_shard,
    plan_mixture,
    repeats_per_shard,
    shuffled_copies,
    token_shard_cuts,
)
from curation.readers.sources import Shard
from pipelines.config import WebCorpusConfig
from pipelines.ray_runtime import run_tasks
from pipelines.run_dir import RunDir
from pipelines.stages import MIX
from tokenizer.files import atomic_write_json
from tokenizer.manifest import Manifest, ShardEntry, TokenizerEntry
from tokenizer.model import Tokenizer
from tokenizer.shards import token_dtype, write_gathered_shard
from tokenizer.store_path import remove_tree


def curated(run: RunDir, dedup_enabled: bool, shard: str) -> Path:
    return run.deduped(shard) if dedup_enabled else run.filtered(shard)


def account_mix_shard(run: RunDir, shard: str, documents: Path, repeats: np.ndarray, tokens: np.ndarray) -> dict:
    return account_shard(documents, repeats, tokens, lambda stage: run.rejected(stage, shard)).to_dict()


def _write_shards(cfg: WebCorpusConfig, run: RunDir, tokenizer: Tokenizer, names: list[str], summaries, mixture, progress) -> list[ShardEntry]:
    """The selected copies, shuffled, cut into shards (one set per domain if asked) and written."""
    order = shuffled_copies(mixture, summaries, cfg.shards.seed)
    cuts = token_shard_cuts(order, summaries, names, cfg.shards.per_domain, cfg.shards.shard_tokens)
    staged = {n: run.staged_tokens(n) for n in names}
    files = [run.token_shard_name(group, i) for group, i, _ in cuts]
    dtype = token_dtype(tokenizer.vocab_size)
    calls = [(run.token_shard(f), {name: staged[name] for name, _ in cut}, cut, tokenizer.eos_id, dtype.name) for f, (_, _, cut) in zip(files, cuts)]
    written = run_tasks(write_gathered_shard, calls, MIX.step("write shards"), progress)
    return [ShardEntry(**{**entry, "file": file}) for entry, file in zip(written, files)]


def run_mix_and_shards(cfg: WebCorpusConfig, shards: list[Shard], progress: bool) -> tuple[StageStats, Manifest]:
    """Plan the mixture, write the token shards and their manifest; return the mix stage's funnel."""
    run = RunDir(cfg.run_dir)
    stats_path = run.phase_stats(MIX.name)
    if run.manifest.exists() and stats_path.exists():
        return StageStats.from_dict(json.loads(stats_path.read_text())), Manifest.load(run.manifest)
    start = time.perf_counter()
    remove_tree(run.tokens)
    remove_tree(run.rejected_dir(MIX.name))
    tokenizer = Tokenizer(run.tokenizer_model)
    names = [s.name for s in shards]
    documents = [curated(run, cfg.dedup.enabled, n) for n in names]
    calls = [(run.tokenizer_model, doc, run.staged_tokens(n), cfg.mix.seed) for n, doc in zip(names, documents)]
    summaries = run_tasks(encode_shard, calls, MIX.step("encode"), progress)
    mixture = plan_mixture(summaries, None if cfg.mix.natural else cfg.mix.targets, cfg.mix.total_tokens, cfg.mix.repeat_limit)
    written = _write_shards(cfg, run, tokenizer, names, summaries, mixture, progress)
    repeats = repeats_per_shard(mixture, summaries)
    calls = [(run, n, doc, rep, s.tokens) for n, doc, rep, s in zip(names, documents, repeats, summaries)]
    stats = StageStats(MIX.name)
    for shard_stats in run_tasks(account_mix_shard, calls, MIX.step("rejected"), progress):
        stats.merge(StageStats.from_dict(shard_stats))
    remove_tree(run.token_staging)
    stats.wall_time_s = time.perf_counter() - start  # the phase's, not only the accounting's
    model = Path(os.path.relpath(str(run.tokenizer_model), str(run.tokens))).as_posix()  # the manifest's paths are relative to it
    entry = TokenizerEntry(tokenizer.sha256, tokenizer.vocab_size, tokenizer.eos_id, model, tokenizer.special)
    figures = {d: mixture.figures(d) for d in mixture.plans}
    manifest = Manifest.of_shards(written, entry, token_dtype(tokenizer.vocab_size), cfg.shards.per_domain, figures)
    atomic_write_json(stats_path, stats.to_dict())
    atomic_write_json(run.manifest, manifest.to_dict())
    return stats, manifest
