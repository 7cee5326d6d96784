"""The steps of run-wide deduplication, each over one shard or one hash partition.

Plain functions over explicit paths and parameters; the driver runs each as a set of Ray tasks.
Every step reads partitions under the scratch folder ``work`` (``curation.dedup.partitions``) and
scatters its output into the next step's, so the memory of a task is bounded by one partition.
Partitions are sorted before use, so the result does not depend on the number of workers or on
task timing.

    map        per filtered shard: signatures → band keys (by key) and document attributes (by index)
    buckets    per partition: documents sharing a band key → edges to the bucket's smallest index
    verify     per partition, in two halves: keep a candidate edge if its signatures agree enough
    stars      alternating large-star / small-star rounds until the edge set stops changing
    labels     per partition: component labels joined with the documents' attributes
    survivors  per partition: one survivor chosen per component, each shard's removals written
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.feather as feather

from curation.core.document import stable_hash
from curation.dedup.components import (
    both_directions,
    bucket_edges,
    edge_fingerprint,
    large_star,
    orient_for_small_star,
    signature_agreement,
    small_star,
)
from curation.dedup.minhash import MinHasher, band_keys
from curation.dedup.partitions import (
    band_key_columns,
    partition_dir,
    partition_of,
    read_partition,
    scatter,
    signature_column,
    signature_matrix,
    write_arrow,
)
from curation.dedup.removal import decisions_dir
from curation.dedup.survivors import choose_survivors, exact_key
from curation.writers.shards import read_documents
from tokenizer.store_path import readable

SIGNATURE_BATCH = 512
MAX_BUCKET_FOR_ALL_PAIRS = 64
_EMPTY = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class LSHParams:
    """What makes two runs' signatures and band keys comparable (an index records them)."""

    ngram: int
    num_perm: int
    bands: int
    rows: int
    seed: int


def map_shard(filtered: Path, index: Path, work: Path, shard: str, offset: int, n_parts: int, lsh: LSHParams, score_field: str) -> int:
    """Signatures and band keys of one filtered shard, scattered by key; attributes by index.

    ``index`` receives this shard's part of the run's LSH index (ids, exact keys, signatures, band
    keys); the survivors' rows of it become the index a later run deduplicates against.
    """
    hasher = MinHasher(lsh.num_perm, lsh.ngram, lsh.seed)
    ids, texts, scores = [], [], []
    for doc in read_documents(filtered):
        ids.append(doc.id)
        texts.append(doc.text)
        scores.append(float(doc.metadata.get(score_field) or 0.0))
    n = len(ids)
    sigs = np.empty((n, lsh.num_perm), dtype=np.uint32)
    for start in range(0, n, SIGNATURE_BATCH):
        sigs[start : start + SIGNATURE_BATCH] = hasher.signatures(texts[start : start + SIGNATURE_BATCH])
    keys = band_keys(sigs, lsh.bands, lsh.rows)
    exact = np.array([exact_key(t) for t in texts], dtype=np.uint64)
    write_arrow(index, {"id": np.array(ids, dtype=object), "exact": exact, "sig": signature_column(sigs), **band_key_columns(keys)})
    idx = np.arange(offset, offset + n, dtype=np.int64)
    _scatter_documents(work, shard, idx, ids, np.array(scores, dtype=np.float64), exact, keys, sigs, n_parts)
    return n


def map_previous_index(index_file: Path, work: Path, run_name: str, offset: int, n_parts: int, bands: int, num_perm: int) -> int:
    """Documents of an earlier run's index join the graph with negative indices and an infinite
    score: they always survive, so a new document in their component is removed as their duplicate."""
    table = feather.read_table(readable(index_file))
    n = table.num_rows
    keys = np.stack([table[f"band{j:03d}"].to_numpy() for j in range(bands)], axis=1) if n else np.empty((0, bands), np.uint64)
    ids = [f"{run_name}:{i}" for i in table["id"].to_pylist()]
    idx = -(np.arange(offset, offset + n, dtype=np.int64) + 1)
    scores = np.full(n, np.inf)
    sigs = signature_matrix(table["sig"], num_perm)
    _scatter_documents(work, f"previous-{run_name}-{index_file.stem}", idx, ids, scores, table["exact"].to_numpy(), keys, sigs, n_parts)
    return n


def _scatter_documents(work: Path, source: str, idx, ids, scores, exact, keys, sigs, n_parts: int) -> None:
    attrs = {
        "idx": idx,
        "id": np.array(ids, dtype=object),
        "id_hash": np.array([stable_hash(i) for i in ids], dtype=np.uint64),
        "score": scores,
        "exact": exact,
    }
    scatter(work / "attrs", source, partition_of(idx, n_parts), n_parts, attrs)
    scatter(work / "sigs", source, partition_of(idx, n_parts), n_parts, {"idx": idx, "sig": signature_column(sigs)})
    flat_keys = keys.reshape(-1)
    bands = {
        "band": np.tile(np.arange(keys.shape[1], dtype=np.uint16), len(idx)),
        "key": flat_keys,
        "idx": np.repeat(idx, keys.shape[1]),
    }
    scatter(work / "bands", source, partition_of(flat_keys, n_parts), n_parts, bands)


def bucket_partition(work: Path, k: int, n_parts: int, verify: bool) -> int:
    """Candidate edges of the LSH buckets in partition k.

    Verified candidates go to the verification steps keyed by their first end; unverified ones
    are final and go both ways to the first large-star step.
    """
    table = read_partition(partition_dir(work / "bands", k))
    src = dst = _EMPTY
    if table is not None and table.num_rows:
        src, dst = bucket_edges(
            table["band"].to_numpy(), table["key"].to_numpy(), table["idx"].to_numpy(), MAX_BUCKET_FOR_ALL_PAIRS if verify else 2
        )
    n_pairs = len(src)
    if verify:
        scatter(work / "candidates-by-src", f"p{k:04d}", partition_of(src, n_parts), n_parts, {"src": src, "dst": dst})
    else:
        src, dst = both_directions(src, dst)
        scatter(work / "round000-large", f"p{k:04d}", partition_of(src, n_parts), n_parts, {"src": src, "dst": dst})
    return n_pairs


def _lookup_signatures(work: Path, k: int, nodes: np.ndarray, num_perm: int) -> np.ndarray:
    table = read_partition(partition_dir(work / "sigs", k))
    idx = table["idx"].to_numpy()
    order = np.argsort(idx)
    return signature_matrix(table["sig"], num_perm)[order[np.searchsorted(idx, nodes, sorter=order)]]


def attach_source_signatures(work: Path, k: int, n_parts: int, num_perm: int) -> int:
    """Verification, first half: candidates keyed by source get the source's signature."""
    table = read_partition(partition_dir(work / "candidates-by-src", k))
    if table is None or table.num_rows == 0:
        src = dst = _EMPTY
        sig = np.empty((0, num_perm), dtype=np.uint32)
    else:
        src, dst = table["src"].to_numpy(), table["dst"].to_numpy()
        sig = _lookup_signatures(work, k, src, num_perm)
    scatter(work / "candidates-by-dst", f"p{k:04d}", partition_of(dst, n_parts), n_parts, {"src": src, "dst": dst, "sig": signature_column(sig)})
    return len(src)


def verify_candidates(work: Path, k: int, n_parts: int, num_perm: int, threshold: float) -> tuple[int, int]:
    """Verification, second half: keep a candidate only if the two signatures agree on >= threshold."""
    table = read_partition(partition_dir(work / "candidates-by-dst", k))
    src = dst = _EMPTY
    n_candidates = 0
    if table is not None and table.num_rows:
        n_candidates = table.num_rows
        src, dst = table["src"].to_numpy(), table["dst"].to_numpy()
        agree = signature_agreement(signature_matrix(table["sig"], num_perm), _lookup_signatures(work, k, dst, num_perm))
        src, dst = src[agree >= threshold], dst[agree >= threshold]
    src, dst = both_directions(src, dst)
    scatter(work / "round000-large", f"p{k:04d}", partition_of(src, n_parts), n_parts, {"src": src, "dst": dst})
    return n_candidates, len(src) // 2


def star_partition(work: Path, step_in: str, step_out: str, kind: str, k: int, n_parts: int) -> tuple[int, int]:
    """One large- or small-star step on partition k; the result is scattered for the next step."""
    table = read_partition(partition_dir(work / step_in, k))
    src = table["src"].to_numpy() if table is not None else _EMPTY
    dst = table["dst"].to_numpy() if table is not None else _EMPTY
    if kind == "large":
        a, b = large_star(src, dst)
        nxt_src, nxt_dst = orient_for_small_star(a, b)
    else:
        a, b = small_star(src, dst)
        # The small-star result is the current labelling (node -> smallest node of its component).
        # Keep it, scattered by node, with each root labelled as itself, for the survivors step.
        roots = np.unique(b)
        node, root = np.concatenate([a, roots]), np.concatenate([b, roots])
        scatter(work / step_out / "labels", f"p{k:04d}", partition_of(node, n_parts), n_parts, {"node": node, "root": root})
        nxt_src, nxt_dst = both_directions(a, b)
    scatter(work / step_out, f"p{k:04d}", partition_of(nxt_src, n_parts), n_parts, {"src": nxt_src, "dst": nxt_dst})
    return edge_fingerprint(a, b)


def label_partition(work: Path, labels_step: str, k: int, n_parts: int) -> int:
    """Join the labels of partition k's nodes with their attributes; scatter members by component."""
    labels = read_partition(partition_dir(work / labels_step / "labels", k))
    attrs = read_partition(partition_dir(work / "attrs", k))
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
    scatter(work / "members", f"p{k:04d}", partition_of(root, n_parts), n_parts, columns)
    return len(node)


def survivor_partition(work: Path, k: int, shard_ranges: Sequence[tuple[str, int, int]]) -> int:
    """Pick the survivors of the components in partition k; write each shard's removals."""
    members = read_partition(partition_dir(work / "members", k))
    if members is None or members.num_rows == 0:
        return 0
    idx = members["idx"].to_numpy()
    ids = dict(zip(idx.tolist(), members["id"].to_pylist()))
    decisions = choose_survivors(
        idx, members["root"].to_numpy(), members["score"].to_numpy(), members["id_hash"].to_numpy(), members["exact"].to_numpy()
    )
    removed = np.array(sorted(decisions), dtype=np.int64)
    for shard, start, end in shard_ranges:
        rows = removed[(removed >= start) & (removed < end)].tolist()
        if rows:
            write_arrow(
                decisions_dir(work, shard) / f"p{k:04d}.arrow",
                {
                    "id": [ids[i] for i in rows],
                    "reason": [decisions[i].reason for i in rows],
                    "cluster": [decisions[i].cluster for i in rows],
                    "kept_id": [ids[decisions[i].kept] for i in rows],
                },
            )
    return len(removed)
