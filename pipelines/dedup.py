"""Run-wide deduplication on Ray: signatures, LSH buckets, connected components, survivors.

Every step is a set of Ray tasks over hash partitions written as Arrow IPC files under
``<run>/dedup/work/``: no process holds all signatures, band keys or edges, and the memory of a
task is bounded by the size of one partition (``dedup.rows_per_partition`` band rows, about
24 bytes each, plus numpy's sort buffers). Partitions are sorted before use, so the result does
not depend on the number of workers or on task timing.

    map        per filtered shard: signatures → band keys (by key) and document attributes (by index)
    buckets    per partition: documents sharing a band key → edges to the bucket's smallest index
    stars      alternating large-star / small-star rounds until the edge set stops changing
    survivors  per partition: component labels joined with attributes, one survivor chosen per group
    apply      per shard: the ``dedup`` stage writes deduplicated shards and rejected/dedup/
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from curation.core.document import stable_hash
from curation.core.stage import TextMeasure, run_stage
from curation.core.stats import StageStats
from curation.dedup.components import both_directions, bucket_edges, signature_agreement, edge_fingerprint, large_star, orient_for_small_star, small_star
from curation.dedup.minhash import MinHasher, band_keys
from curation.dedup.removal import DuplicateRemoval
from curation.dedup.survivors import choose_survivors, exact_key
from curation.writers.shards import document_writer, read_documents, rejected_writer
from pipelines.config import ConfigError, DedupConfig, WebCorpusConfig
from pipelines.inputs import Shard
from pipelines.ray_runtime import run_tasks
from pipelines.run_dir import RunDir, atomic_write_json
from tokenizer.model import Tokenizer

logger = logging.getLogger(__name__)

SIGNATURE_BATCH = 512
MAX_BUCKET_FOR_ALL_PAIRS = 64


def _write(path: Path, columns: dict[str, np.ndarray | list | pa.Array]) -> None:
    """An Arrow IPC file, renamed into place when complete (object arrays are written as strings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    arrays = {
        name: col
        if isinstance(col, pa.Array)
        else pa.array(list(col), type=pa.string())
        if isinstance(col, np.ndarray) and col.dtype == object
        else pa.array(col)
        for name, col in columns.items()
    }
    feather.write_feather(pa.table(arrays), tmp, compression="uncompressed")
    tmp.replace(path)


def _read_partition(folder: Path) -> pa.Table | None:
    files = sorted(folder.glob("*.arrow")) if folder.exists() else []
    tables = [feather.read_table(f) for f in files]
    return pa.concat_tables(tables) if tables else None


def _scatter(folder: Path, source: str, part_of: np.ndarray, n_parts: int, columns: dict[str, np.ndarray]) -> None:
    """Write ``columns`` row-wise into ``folder/p<k>/<source>.arrow`` for partition k = part_of."""
    for k in range(n_parts):
        rows = part_of == k
        picked = {name: col.filter(pa.array(rows)) if isinstance(col, pa.Array) else col[rows] for name, col in columns.items()}
        _write(folder / f"p{k:04d}" / f"{source}.arrow", picked)


def _partition(values: np.ndarray, n_parts: int) -> np.ndarray:
    return ((values.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) % np.uint64(n_parts)


# ---- tasks (plain functions; the driver runs them on Ray) ---------------------------------------


def map_shard(cfg: WebCorpusConfig, shard: str, offset: int, n_parts: int) -> int:
    """Signatures and band keys of one filtered shard, scattered by key; attributes by index."""
    d = cfg.dedup
    run = RunDir(cfg.run_dir)
    hasher = MinHasher(d.num_perm, d.ngram, d.seed)
    ids, texts, scores = [], [], []
    for doc in read_documents(run.filtered(shard)):
        ids.append(doc.id)
        texts.append(doc.text)
        scores.append(float(doc.metadata.get(d.score_field) or 0.0))
    n = len(ids)
    sigs = np.empty((n, d.num_perm), dtype=np.uint32)
    for start in range(0, n, SIGNATURE_BATCH):
        sigs[start : start + SIGNATURE_BATCH] = hasher.signatures(texts[start : start + SIGNATURE_BATCH])
    keys = band_keys(sigs, d.bands, d.rows)
    exact = np.array([exact_key(t) for t in texts], dtype=np.uint64)
    work = run.root / "dedup" / "work"
    # this shard's part of the run's LSH index, kept for the survivors when the shard is applied
    _write(work / "index" / f"{shard}.arrow", {"id": np.array(ids, dtype=object), "exact": exact, "sig": _sig_column(sigs), **_key_columns(keys)})
    idx = np.arange(offset, offset + n, dtype=np.int64)
    _scatter_documents(work, shard, idx, ids, np.array(scores, dtype=np.float64), exact, keys, sigs, n_parts)
    return n


def _sig_column(sigs: np.ndarray) -> pa.Array:
    return pa.array([row.tobytes() for row in sigs], type=pa.binary(4 * sigs.shape[1]))


def _sig_matrix(column: pa.ChunkedArray | pa.Array, num_perm: int) -> np.ndarray:
    if len(column) == 0:
        return np.empty((0, num_perm), dtype=np.uint32)
    return np.frombuffer(b"".join(column.to_pylist()), dtype=np.uint32).reshape(-1, num_perm)


def _key_columns(keys: np.ndarray) -> dict[str, np.ndarray]:
    return {f"band{j:03d}": np.ascontiguousarray(keys[:, j]) for j in range(keys.shape[1])}


def _scatter_documents(work: Path, source: str, idx, ids, scores, exact, keys, sigs, n_parts: int) -> None:
    attrs = {
        "idx": idx,
        "id": np.array(ids, dtype=object),
        "id_hash": np.array([stable_hash(i) for i in ids], dtype=np.uint64),
        "score": scores,
        "exact": exact,
    }
    _scatter(work / "attrs", source, _partition(idx, n_parts), n_parts, attrs)
    _scatter(work / "sigs", source, _partition(idx, n_parts), n_parts, {"idx": idx, "sig": _sig_column(sigs)})
    flat_keys = keys.reshape(-1)
    bands = {
        "band": np.tile(np.arange(keys.shape[1], dtype=np.uint16), len(idx)),
        "key": flat_keys,
        "idx": np.repeat(idx, keys.shape[1]),
    }
    _scatter(work / "bands", source, _partition(flat_keys, n_parts), n_parts, bands)


def map_previous_index(cfg: WebCorpusConfig, index_file: Path, run_name: str, offset: int, n_parts: int) -> int:
    """Documents of an earlier run's index join the graph with negative indices and an infinite
    score: they always survive, so a new document in their component is removed as their duplicate."""
    table = feather.read_table(index_file)
    n = table.num_rows
    keys = np.stack([table[f"band{j:03d}"].to_numpy() for j in range(cfg.dedup.bands)], axis=1) if n else np.empty((0, cfg.dedup.bands), np.uint64)
    ids = [f"{run_name}:{i}" for i in table["id"].to_pylist()]
    idx = -(np.arange(offset, offset + n, dtype=np.int64) + 1)
    work = RunDir(cfg.run_dir).root / "dedup" / "work"
    scores = np.full(n, np.inf)
    sigs = _sig_matrix(table["sig"], cfg.dedup.num_perm)
    _scatter_documents(work, f"previous-{run_name}-{index_file.stem}", idx, ids, scores, table["exact"].to_numpy(), keys, sigs, n_parts)
    return n


def bucket_partition(work: Path, k: int, n_parts: int, verify: bool) -> int:
    """Candidate edges of the LSH buckets in partition k.

    Verified candidates go to the verification steps keyed by their first end; unverified ones
    are final and go both ways to the first large-star step.
    """
    table = _read_partition(work / "bands" / f"p{k:04d}")
    src = dst = np.empty(0, dtype=np.int64)
    if table is not None and table.num_rows:
        src, dst = bucket_edges(
            table["band"].to_numpy(), table["key"].to_numpy(), table["idx"].to_numpy(), MAX_BUCKET_FOR_ALL_PAIRS if verify else 2
        )
    n_pairs = len(src)
    if verify:
        _scatter(work / "candidates-by-src", f"p{k:04d}", _partition(src, n_parts), n_parts, {"src": src, "dst": dst})
    else:
        src, dst = both_directions(src, dst)
        _scatter(work / "round000-large", f"p{k:04d}", _partition(src, n_parts), n_parts, {"src": src, "dst": dst})
    return n_pairs


def _lookup_signatures(work: Path, k: int, nodes: np.ndarray, num_perm: int) -> np.ndarray:
    table = _read_partition(work / "sigs" / f"p{k:04d}")
    idx = table["idx"].to_numpy()
    order = np.argsort(idx)
    return _sig_matrix(table["sig"], num_perm)[order[np.searchsorted(idx, nodes, sorter=order)]]


def attach_source_signatures(work: Path, k: int, n_parts: int, num_perm: int) -> int:
    """Verification, first half: candidates keyed by source get the source's signature."""
    table = _read_partition(work / "candidates-by-src" / f"p{k:04d}")
    if table is None or table.num_rows == 0:
        src = dst = np.empty(0, dtype=np.int64)
        sig = np.empty((0, num_perm), dtype=np.uint32)
    else:
        src, dst = table["src"].to_numpy(), table["dst"].to_numpy()
        sig = _lookup_signatures(work, k, src, num_perm)
    _scatter(work / "candidates-by-dst", f"p{k:04d}", _partition(dst, n_parts), n_parts, {"src": src, "dst": dst, "sig": _sig_column(sig)})
    return len(src)


def verify_candidates(work: Path, k: int, n_parts: int, num_perm: int, threshold: float) -> tuple[int, int]:
    """Verification, second half: keep a candidate only if the two signatures agree on >= threshold."""
    table = _read_partition(work / "candidates-by-dst" / f"p{k:04d}")
    src = dst = np.empty(0, dtype=np.int64)
    n_candidates = 0
    if table is not None and table.num_rows:
        n_candidates = table.num_rows
        src, dst = table["src"].to_numpy(), table["dst"].to_numpy()
        agree = signature_agreement(_sig_matrix(table["sig"], num_perm), _lookup_signatures(work, k, dst, num_perm))
        src, dst = src[agree >= threshold], dst[agree >= threshold]
    src, dst = both_directions(src, dst)
    _scatter(work / "round000-large", f"p{k:04d}", _partition(src, n_parts), n_parts, {"src": src, "dst": dst})
    return n_candidates, len(src) // 2


def star_partition(work: Path, step_in: str, step_out: str, kind: str, k: int, n_parts: int) -> tuple[int, int]:
    """One large- or small-star step on partition k; the result is scattered for the next step."""
    table = _read_partition(work / step_in / f"p{k:04d}")
    src = table["src"].to_numpy() if table is not None else np.empty(0, dtype=np.int64)
    dst = table["dst"].to_numpy() if table is not None else np.empty(0, dtype=np.int64)
    if kind == "large":
        a, b = large_star(src, dst)
        nxt_src, nxt_dst = orient_for_small_star(a, b)
    else:
        a, b = small_star(src, dst)
        # The small-star result is the current labelling (node -> smallest node of its component).
        # Keep it, scattered by node, with each root labelled as itself, for the survivors step.
        roots = np.unique(b)
        node, root = np.concatenate([a, roots]), np.concatenate([b, roots])
        _scatter(work / step_out / "labels", f"p{k:04d}", _partition(node, n_parts), n_parts, {"node": node, "root": root})
        nxt_src, nxt_dst = both_directions(a, b)
    _scatter(work / step_out, f"p{k:04d}", _partition(nxt_src, n_parts), n_parts, {"src": nxt_src, "dst": nxt_dst})
    return edge_fingerprint(a, b)


def label_partition(work: Path, labels_step: str, k: int, n_parts: int) -> int:
    """Join the labels of partition k's nodes with their attributes; scatter members by component."""
    labels = _read_partition(work / labels_step / "labels" / f"p{k:04d}")
    attrs = _read_partition(work / "attrs" / f"p{k:04d}")
    if attrs is None or labels is None or labels.num_rows == 0:
        return 0
    pairs = np.unique(np.stack([labels["node"].to_numpy(), labels["root"].to_numpy()], axis=1), axis=0)
    node, root = pairs[:, 0], pairs[:, 1]
    a_idx = attrs["idx"].to_numpy()
    order = np.argsort(a_idx)
    pos = order[np.searchsorted(a_idx, node, sorter=order)]
    columns = {
        "idx": node,
        "root": root,
        "id": np.array(attrs["id"].to_pylist(), dtype=object)[pos],
        "id_hash": attrs["id_hash"].to_numpy()[pos],
        "score": attrs["score"].to_numpy()[pos],
        "exact": attrs["exact"].to_numpy()[pos],
    }
    _scatter(work / "members", f"p{k:04d}", _partition(root, n_parts), n_parts, columns)
    return len(node)


def survivor_partition(work: Path, k: int, shard_ranges: list[tuple[str, int, int]]) -> int:
    """Pick the survivors of the components in partition k; write each shard's removals."""
    members = _read_partition(work / "members" / f"p{k:04d}")
    if members is None or members.num_rows == 0:
        return 0
    idx = members["idx"].to_numpy()
    ids = dict(zip(idx.tolist(), members["id"].to_pylist()))
    decisions = choose_survivors(
        idx, members["root"].to_numpy(), members["score"].to_numpy(), members["id_hash"].to_numpy(), members["exact"].to_numpy()
    )
    removed = np.array(sorted(decisions), dtype=np.int64)
    for shard, start, end in shard_ranges:
        rows = removed[(removed >= start) & (removed < end)]
        if len(rows):
            _write(
                work / "decisions" / shard / f"p{k:04d}.arrow",
                {
                    "id": [ids[i] for i in rows.tolist()],
                    "reason": [decisions[i].reason for i in rows.tolist()],
                    "cluster": [decisions[i].cluster for i in rows.tolist()],
                    "kept_id": [ids[decisions[i].kept] for i in rows.tolist()],
                },
            )
    return len(removed)


def apply_shard(cfg: WebCorpusConfig, shard: str) -> dict:
    """The ``dedup`` stage over one filtered shard, with the funnel's accounting."""
    run = RunDir(cfg.run_dir)
    start = time.perf_counter()
    table = _read_partition(run.root / "dedup" / "work" / "decisions" / shard)
    decisions = {}
    if table is not None:
        for row in table.to_pylist():
            decisions[row["id"]] = (row["reason"], row["cluster"], row["kept_id"])
    stage = DuplicateRemoval(decisions)
    stats = StageStats(stage.name)
    kept = document_writer(run.deduped(shard))
    rejected = rejected_writer(run.rejected(stage.name, shard))
    measure = TextMeasure(Tokenizer(run.tokenizer_model).count)
    try:
        docs = read_documents(run.filtered(shard))
        for doc in run_stage(stage, docs, stats, measure, lambda d, r, raw: rejected.add((d, r, raw), len(d.text))):
            kept.add(doc, len(doc.text))
        kept.commit()
        rejected.commit(keep_empty=False)
    except BaseException:
        kept.abort()
        rejected.abort()
        raise
    index = feather.read_table(run.root / "dedup" / "work" / "index" / f"{shard}.arrow")
    survivors = pa.array([i not in decisions for i in index["id"].to_pylist()], type=pa.bool_())
    out = run.root / "dedup" / "index" / f"{shard}.arrow"
    out.parent.mkdir(parents=True, exist_ok=True)
    feather.write_feather(index.filter(survivors), out.with_name(out.name + ".tmp"), compression="uncompressed")
    out.with_name(out.name + ".tmp").replace(out)
    payload = {"shard": shard, "wall_time_s": round(time.perf_counter() - start, 3), "stages": [stats.to_dict()]}
    atomic_write_json(run.shard_stats("dedup", shard), payload)
    return payload


# ---- driver -------------------------------------------------------------------------------------

INDEX_PARAMS = ("ngram", "num_perm", "bands", "rows", "seed")


def write_index_info(cfg: WebCorpusConfig) -> None:
    info = {"run": cfg.run_name, **{k: getattr(cfg.dedup, k) for k in INDEX_PARAMS}}
    atomic_write_json(RunDir(cfg.run_dir).root / "dedup" / "index" / "index.json", info)


def previous_index_files(cfg: WebCorpusConfig) -> list[tuple[str, Path]]:
    """(earlier run's name, index file) for every index in ``dedup.previous_indexes``, checked."""
    found = []
    for i, folder in enumerate(cfg.dedup.previous_indexes):
        info_path = Path(folder) / "index.json"
        if not info_path.is_file():
            raise ConfigError(f"dedup.previous_indexes.{i}: {folder} is not a finished run's dedup/index folder (no index.json)")
        info = json.loads(info_path.read_text())
        mismatched = [k for k in INDEX_PARAMS if info.get(k) != getattr(cfg.dedup, k)]
        if mismatched:
            raise ConfigError(
                f"dedup.previous_indexes.{i}: built with other LSH parameters ({', '.join(f'{k}={info.get(k)}' for k in mismatched)}); "
                "signatures are only comparable with equal ngram, num_perm, bands, rows and seed"
            )
        found += [(info["run"], f) for f in sorted(Path(folder).glob("*.arrow"))]
    return found


def partitions_for(n_docs: int, d: DedupConfig, min_parts: int) -> int:
    if d.partitions is not None:
        return d.partitions
    return max(min_parts, math.ceil(n_docs * d.bands / d.rows_per_partition))


def run_dedup(cfg: WebCorpusConfig, shards: list[Shard], progress: bool, max_rounds: int = 64) -> dict:
    """Deduplicate the run's filtered shards; returns a summary (partitions, rounds, clusters)."""
    run = RunDir(cfg.run_dir)
    names = [s.name for s in shards]
    summary_path = run.root / "dedup" / "summary.json"
    if summary_path.exists() and all(run.shard_stats("dedup", n).exists() for n in names):
        return json.loads(summary_path.read_text())
    started = time.perf_counter()
    work = run.root / "dedup" / "work"
    if work.exists():  # a killed attempt: the global steps are cheap next to extraction, redo them
        shutil.rmtree(work)
    sizes = [pq.ParquetFile(run.filtered(n)).metadata.num_rows for n in names]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
    import ray

    n_parts = partitions_for(sum(sizes), cfg.dedup, int(ray.cluster_resources().get("CPU", 1)))
    run_tasks(map_shard, [(cfg, n, o, n_parts) for n, o in zip(names, offsets)], "dedup: signatures", progress)
    previous = previous_index_files(cfg)
    if previous:
        prev_sizes = [feather.read_table(f, columns=["id"]).num_rows for _, f in previous]
        prev_offsets = np.concatenate([[0], np.cumsum(prev_sizes)[:-1]]).astype(int).tolist()
        calls = [(cfg, f, name, o, n_parts) for (name, f), o in zip(previous, prev_offsets)]
        run_tasks(map_previous_index, calls, "dedup: previous index", progress)
    d = cfg.dedup
    candidates = run_tasks(bucket_partition, [(work, k, n_parts, d.verify) for k in range(n_parts)], "dedup: buckets", progress)
    n_candidates = n_edges = sum(candidates)
    if d.verify:
        run_tasks(attach_source_signatures, [(work, k, n_parts, d.num_perm) for k in range(n_parts)], "dedup: verify (1/2)", progress)
        verified = run_tasks(
            verify_candidates, [(work, k, n_parts, d.num_perm, d.threshold - d.verify_margin) for k in range(n_parts)], "dedup: verify (2/2)", progress
        )
        n_edges = sum(v[1] for v in verified)
    last, step, rounds = None, "round000-large", 0
    for rounds in range(1, max_rounds + 1):
        small_in = f"round{rounds:03d}-small"
        run_tasks(star_partition, [(work, step, small_in, "large", k, n_parts) for k in range(n_parts)], f"dedup: large-star {rounds}", progress)
        step = f"round{rounds:03d}-large"
        prints = run_tasks(star_partition, [(work, small_in, step, "small", k, n_parts) for k in range(n_parts)], f"dedup: small-star {rounds}", progress)
        fingerprint = (sum(p[0] for p in prints), int(np.bitwise_xor.reduce(np.array([p[1] for p in prints], dtype=np.uint64))))
        if fingerprint == last:
            break
        last = fingerprint
    else:
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    run_tasks(label_partition, [(work, step, k, n_parts) for k in range(n_parts)], "dedup: labels", progress)
    ranges = [(n, o, o + s) for n, o, s in zip(names, offsets, sizes)]
    removed = run_tasks(survivor_partition, [(work, k, ranges) for k in range(n_parts)], "dedup: survivors", progress)
    run_tasks(apply_shard, [(cfg, n) for n in names], "dedup: apply", progress)
    write_index_info(cfg)
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
        "bands": cfg.dedup.bands,
        "rows": cfg.dedup.rows,
        "threshold": cfg.dedup.threshold,
    }
    atomic_write_json(summary_path, summary)
    shutil.rmtree(work)
    return summary
