"""MinHash signatures of word n-gram shingles, vectorised, and identical to datasketch's.

datasketch's ``MinHash`` hashes every shingle with a Python call (SHA-1 by default) and then
permutes; that per-shingle work dominates. Here a shingle's 32-bit hash is built from the hashes
of its words (each word hashed once per document with xxh32, then combined FNV-style over the
n-gram in numpy), and datasketch's own permutation parameters are applied to all shingles of a
batch of documents at once. ``ShingleHash`` is the same shingle hash as a plain function, so a
datasketch ``MinHash(hashfunc=ShingleHash(...))`` fed the same shingles produces the very same
signature: that equivalence is what the tests check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import xxhash
from datasketch import MinHash
from datasketch.lsh import _optimal_param

WORD = re.compile(r"\w+", re.UNICODE)
_FNV_PRIME = np.uint32(0x01000193)
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
_EMPTY = np.uint32(0xFFFFFFFF)


def words(text: str) -> list[str]:
    """Lower-cased word tokens: the unit shingles are made of (punctuation and spacing ignored)."""
    return WORD.findall(text.lower())


def shingles(text: str, ngram: int) -> list[bytes]:
    """The word n-grams of ``text`` as bytes (a text shorter than ``ngram`` words is one shingle)."""
    toks = words(text)
    if not toks:
        return []
    if len(toks) < ngram:
        return [" ".join(toks).encode()]
    return [" ".join(toks[i : i + ngram]).encode() for i in range(len(toks) - ngram + 1)]


def _combine(word_hashes: np.ndarray, ngram: int) -> np.ndarray:
    """uint32 hash of each n-gram window: h = ((h * FNV_PRIME) ^ w) over its words, wrapping."""
    n = min(ngram, len(word_hashes))
    count = len(word_hashes) - n + 1
    h = word_hashes[:count].copy()
    for i in range(1, n):
        h = (h * _FNV_PRIME) ^ word_hashes[i : i + count]
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


_WORD_CACHE: dict[str, int] = {}
_WORD_CACHE_LIMIT = 1 << 20


def _word_hashes(toks: list[str]) -> list[int]:
    """xxh32 of each word; words follow Zipf's law, so a per-process cache answers most lookups."""
    cache = _WORD_CACHE
    if len(cache) > _WORD_CACHE_LIMIT:
        cache.clear()
    out = []
    for t in toks:
        h = cache.get(t)
        if h is None:
            h = cache[t] = xxhash.xxh32_intdigest(t.encode())
        out.append(h)
    return out


@dataclass(frozen=True)
class ShingleHash:
    """The shingle hash as datasketch's ``hashfunc``: bytes of space-joined words -> uint32."""

    ngram: int

    def __call__(self, shingle: bytes) -> int:
        hashes = np.array([xxhash.xxh32_intdigest(w) for w in shingle.split(b" ")], dtype=np.uint32)
        return int(_combine(hashes, len(hashes))[0])


@dataclass(frozen=True)
class MinHasher:
    """Signatures with datasketch's ``affine32`` scheme, ``num_perm`` permutations from ``seed``."""

    num_perm: int = 128
    ngram: int = 5
    seed: int = 1

    @cached_property
    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        a, b = MinHash(num_perm=self.num_perm, seed=self.seed, scheme="affine32").permutations
        return a.astype(np.uint32), b.astype(np.uint32)

    def shingle_hashes(self, text: str) -> np.ndarray:
        toks = words(text)
        if not toks:
            return np.empty(0, dtype=np.uint32)
        return np.unique(_combine(np.array(_word_hashes(toks), dtype=np.uint32), self.ngram))

    def signatures(self, texts: Sequence[str], max_cells: int = 1 << 22) -> np.ndarray:
        """One signature row per text (uint32, ``num_perm`` wide); an empty text gets all-max."""
        out = np.full((len(texts), self.num_perm), _EMPTY, dtype=np.uint32)
        a, b = self.permutations
        hashed = [_fmix32(self.shingle_hashes(t)) for t in texts]
        start = 0
        while start < len(texts):
            # group documents so that the (shingles x permutations) matrix stays under max_cells
            end, cells = start, 0
            while end < len(texts) and (end == start or cells + len(hashed[end]) * self.num_perm <= max_cells):
                cells += len(hashed[end]) * self.num_perm
                end += 1
            sizes = np.array([len(h) for h in hashed[start:end]])
            rows = np.flatnonzero(sizes) + start
            if len(rows):
                allh = np.concatenate([hashed[i] for i in rows])
                permuted = allh[:, None] * a[None, :] + b[None, :]
                offsets = np.concatenate([[0], np.cumsum(sizes[sizes > 0])[:-1]])
                out[rows] = np.minimum.reduceat(permuted, offsets, axis=0)
            start = end
        return out

    def datasketch_minhash(self, text: str) -> MinHash:
        """The reference: datasketch's own MinHash, one ``update`` per shingle, same hash function."""
        m = MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=ShingleHash(self.ngram), scheme="affine32")
        for shingle in shingles(text, self.ngram):
            m.update(shingle)
        return m


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising datasketch's weighted false-positive + false-negative probability."""
    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """A 64-bit key per (document, band): documents sharing any band key are candidate duplicates."""
    keys = np.empty((len(signatures), bands), dtype=np.uint64)
    for j in range(bands):
        block = np.ascontiguousarray(signatures[:, j * rows : (j + 1) * rows])
        for i in range(len(signatures)):
            keys[i, j] = xxhash.xxh3_64_intdigest(block[i].tobytes(), seed=j)
    return keys
