"""LSH buckets to edges, and connected components by alternating large-star / small-star steps.

Plain functions over arrays (no Ray, no files). datasketch has no distributed banding or
clustering and datatrove clusters in a single task, which is why these pieces are written here;
the components are found with the algorithm of Kiveris et al., "Connected Components in MapReduce
and Beyond" (SoCC 2014), over hash partitions of the edges (``curation.dedup.steps``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def equal_runs(sorted_keys: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return
    breaks = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(sorted_keys)]])
    yield from zip(starts.tolist(), ends.tolist())


def bucket_edges(
    band: np.ndarray, key: np.ndarray, idx: np.ndarray, all_pairs_up_to: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate edges of the documents that share an LSH bucket (a band and its key).

    A bucket of up to ``all_pairs_up_to`` documents gives every pair (needed when pairs are
    verified afterwards: two members may be similar while neither is similar to a third); a
    larger one, typically boilerplate shared by many pages, gives a star around its smallest
    index so that its edges stay linear in its size.
    """
    order = np.lexsort((idx, key, band))
    band, key, idx = band[order], key[order], idx[order]
    starts = np.concatenate([[0], np.flatnonzero((band[1:] != band[:-1]) | (key[1:] != key[:-1])) + 1])
    sizes = np.diff(np.concatenate([starts, [len(idx)]]))
    first = np.repeat(idx[starts], sizes)
    keep = first != idx
    src, dst = [first[keep]], [idx[keep]]
    for start, size in zip(starts[(sizes > 2) & (sizes <= all_pairs_up_to)].tolist(), sizes[(sizes > 2) & (sizes <= all_pairs_up_to)].tolist()):
        members = idx[start + 1 : start + size]  # pairs not involving the first: those are in the star
        i, j = np.triu_indices(len(members), k=1)
        src.append(members[i])
        dst.append(members[j])
    return _unique_pairs(np.concatenate(src), np.concatenate(dst))


def signature_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of row-aligned signature pairs: the fraction of equal minima."""
    return (a == b).mean(axis=1) if len(a) else np.empty(0)


def _unique_pairs(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(src) == 0:
        return src.astype(np.int64), dst.astype(np.int64)
    pairs = np.unique(np.stack([src, dst], axis=1).astype(np.int64), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _min_neighbour(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort edges by ``src``; return them and, per edge, the smallest of src and all its neighbours."""
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    m = np.empty_like(src)
    for start, end in equal_runs(src):
        m[start:end] = min(src[start], dst[start:end].min())
    return src, dst, m


def large_star(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One large-star step over edges keyed by ``src`` (given in both directions).

    Every neighbour larger than a node is linked to the smallest node of its neighbourhood.
    """
    src, dst, m = _min_neighbour(src, dst)
    keep = dst > src
    return _unique_pairs(dst[keep], m[keep])


def small_star(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One small-star step over edges keyed by ``src`` (each edge given as (larger, smaller)).

    A node and its smaller neighbours are all linked to the smallest of them.
    """
    if len(src) == 0:  # a partition without edges (or a run without documents)
        return src, dst
    src, dst, m = _min_neighbour(src, dst)
    nodes = np.concatenate([dst, np.unique(src)])
    mins = np.concatenate([m, m[np.concatenate([[0], np.flatnonzero(src[1:] != src[:-1]) + 1])]])
    keep = nodes != mins
    return _unique_pairs(nodes[keep], mins[keep])


def orient_for_small_star(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hi, lo = np.maximum(src, dst), np.minimum(src, dst)
    keep = hi != lo
    return _unique_pairs(hi[keep], lo[keep])


def both_directions(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _unique_pairs(np.concatenate([src, dst]), np.concatenate([dst, src]))


def edge_fingerprint(src: np.ndarray, dst: np.ndarray) -> tuple[int, int]:
    """(count, order-independent hash) of an edge set: equal across rounds means converged."""
    h = (src.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (dst.astype(np.uint64) + np.uint64(0x632BE59BD9B4E019))
    return len(src), int(np.bitwise_xor.reduce(h)) if len(h) else 0
