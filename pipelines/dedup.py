"""Run-wide deduplication, scheduled on Ray: the steps of ``curation.dedup.steps`` over every
filtered shard and hash partition, then the ``dedup`` stage shard by shard (``pipelines.tasks``).

The steps exchange Arrow IPC partitions under ``<run>/dedup/work/``, so no process holds all
signatures, band keys or edges (a task's memory is bounded by ``dedup.rows_per_partition`` band
rows, about 24 bytes each, plus numpy's sort buffers).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow.feather as feather
import pyarrow.parquet as pq

from curation.dedup.index import write_index_info
from curation.dedup.params import DedupConfig
from curation.dedup.steps import (
    attach_source_signatures,
    bucket_partition,
    label_partition,
    map_previous_index,
    map_shard,
    star_partition,
    survivor_partition,
    verify_candidates,
)
from curation.readers.sources import Shard
from pipelines.config import WebCorpusConfig
from pipelines.ray_runtime import run_tasks
from pipelines.run_dir import RunDir
from pipelines.stages import DEDUP
from pipelines.tasks import apply_shard
from tokenizer.files import atomic_write_json
from tokenizer.store_path import readable, remove_tree


def _offsets(sizes: list[int]) -> list[int]:
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()


def _map(run: RunDir, d: DedupConfig, names: list[str], sizes: list[int], n_parts: int, progress: bool) -> list[tuple[str, Path]]:
    """Signatures of this run's filtered shards and of the earlier runs' indexes, scattered."""
    calls = [(run.filtered(n), run.staged_index(n), run.dedup_work, n, o, n_parts, d.lsh(), d.score_field) for n, o in zip(names, _offsets(sizes))]
    run_tasks(map_shard, calls, DEDUP.step("signatures"), progress)
    previous = d.previous_index_files()
    if previous:
        prev_sizes = [feather.read_table(readable(f), columns=["id"]).num_rows for _, f in previous]
        calls = [(f, run.dedup_work, name, o, n_parts, d.bands, d.num_perm) for (name, f), o in zip(previous, _offsets(prev_sizes))]
        run_tasks(map_previous_index, calls, DEDUP.step("previous index"), progress)
    return previous


def _edges(work: Path, d: DedupConfig, n_parts: int, progress: bool) -> tuple[int, int]:
    """Candidate pairs from the LSH buckets, verified if asked: (candidates, similar pairs)."""
    parts = range(n_parts)
    candidates = sum(run_tasks(bucket_partition, [(work, k, n_parts, d.verify) for k in parts], DEDUP.step("buckets"), progress))
    if not d.verify:
        return candidates, candidates
    run_tasks(attach_source_signatures, [(work, k, n_parts, d.num_perm) for k in parts], DEDUP.step("verify (1/2)"), progress)
    calls = [(work, k, n_parts, d.num_perm, d.threshold - d.verify_margin) for k in parts]
    verified = run_tasks(verify_candidates, calls, DEDUP.step("verify (2/2)"), progress)
    return candidates, sum(v[1] for v in verified)


def _components(work: Path, n_parts: int, progress: bool, max_rounds: int) -> tuple[str, int]:
    """Large-star / small-star rounds until the edges stop changing: (the labels' step, rounds)."""
    last, step = None, "round000-large"
    for rounds in range(1, max_rounds + 1):
        small_in = f"round{rounds:03d}-small"
        calls = [(work, step, small_in, "large", k, n_parts) for k in range(n_parts)]
        run_tasks(star_partition, calls, DEDUP.step(f"large-star {rounds}"), progress)
        step = f"round{rounds:03d}-large"
        calls = [(work, small_in, step, "small", k, n_parts) for k in range(n_parts)]
        prints = run_tasks(star_partition, calls, DEDUP.step(f"small-star {rounds}"), progress)
        fingerprint = (sum(p[0] for p in prints), int(np.bitwise_xor.reduce(np.array([p[1] for p in prints], dtype=np.uint64))))
        if fingerprint == last:
            return step, rounds
        last = fingerprint
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")


def run_dedup(cfg: WebCorpusConfig, shards: list[Shard], progress: bool, max_rounds: int = 64) -> dict:
    """Deduplicate the run's filtered shards; returns a summary (partitions, rounds, clusters)."""
    run, d = RunDir(cfg.run_dir), cfg.dedup
    names = [s.name for s in shards]
    if run.dedup_summary.exists() and all(run.shard_stats(DEDUP.name, n).exists() for n in names):
        return json.loads(run.dedup_summary.read_text())
    started = time.perf_counter()
    work = run.dedup_work
    remove_tree(work)  # a killed attempt's: the global steps are cheap next to extraction, redo them
    sizes = [pq.ParquetFile(readable(run.filtered(n))).metadata.num_rows for n in names]
    import ray

    n_parts = d.partitions_for(sum(sizes), int(ray.cluster_resources().get("CPU", 1)))
    previous = _map(run, d, names, sizes, n_parts, progress)
    n_candidates, n_edges = _edges(work, d, n_parts, progress)
    labels_step, rounds = _components(work, n_parts, progress, max_rounds)
    run_tasks(label_partition, [(work, labels_step, k, n_parts) for k in range(n_parts)], DEDUP.step("labels"), progress)
    ranges = [(n, o, o + s) for n, o, s in zip(names, _offsets(sizes), sizes)]
    removed = run_tasks(survivor_partition, [(work, k, ranges) for k in range(n_parts)], DEDUP.step("survivors"), progress)
    run_tasks(apply_shard, [(run, n) for n in names], DEDUP.step("apply"), progress)
    write_index_info(run.dedup_index_info, cfg.run_name, d.lsh())
    summary = {
        "previous_indexes": [str(f) for _, f in previous],
        "documents": int(sum(sizes)),
        "removed": int(sum(removed)),
        "partitions": n_parts,
        "candidate_pairs": int(n_candidates),
        "similar_pairs": int(n_edges),
        "verified": d.verify,
        "candidate_threshold": d.candidate_threshold,
        "verify_margin": d.verify_margin,
        "star_rounds": rounds,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "bands": d.bands,
        "rows": d.rows,
        "threshold": d.threshold,
    }
    atomic_write_json(run.dedup_summary, summary)
    remove_tree(work)
    return summary
