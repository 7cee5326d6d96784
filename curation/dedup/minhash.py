"""MinHash signatures of word n-gram shingles, vectorised over whole batches, identical to datasketch's.

datasketch's ``MinHash`` hashes every shingle with a Python call (SHA-1 by default) and then
permutes; that per-shingle Python work dominates. Here the shingle hash is designed to be
computed for a whole batch of documents in a handful of numpy operations:

- words are maximal runs of word characters (``str.isalnum`` or ``_``, as regex ``\\w``) of the
  lower-cased text;
- a word's hash is the polynomial ``sum(codepoint_j * P**j) mod 2**32``, which prefix sums over
  the batch's code points give for every word at once;
- an n-gram's hash folds its word hashes FNV-style, ``h = (h * FNV_PRIME) ^ w``, wrapping at 32 bits.

datasketch's own permutation parameters (``affine32`` scheme: MurmurHash3 finaliser, then
``a*h + b mod 2**32``) are then applied to every shingle of the batch at once. ``ShingleHash`` is
the same shingle hash as a plain per-shingle function, so a datasketch ``MinHash(hashfunc=ShingleHash())``
fed ``shingles(text)`` one ``update`` at a time yields the very same signature; the tests assert it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import xxhash
from datasketch import MinHash
from datasketch.lsh import _optimal_param

_P = 0x9E3779B1  # odd, so it has an inverse modulo 2**32
_P_INV = pow(_P, -1, 1 << 32)
_FNV_PRIME = np.uint32(0x01000193)
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
_EMPTY = np.uint32(0xFFFFFFFF)
# Word characters of the Basic Multilingual Plane; code points above it (CJK extensions, emoji) count as word characters.
_WORD_CHAR = np.array([chr(c).isalnum() or c == 0x5F for c in range(0x10000)], dtype=bool)
_WORD_CHAR[0] = False  # NUL separates documents in a batch


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


def _is_word(cp: np.ndarray) -> np.ndarray:
    return np.where(cp < 0x10000, _WORD_CHAR[np.minimum(cp, 0xFFFF)], True)


def _word_spans(cp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.diff(np.concatenate([[0], _is_word(cp).astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def words(text: str) -> list[str]:
    """The words of ``text`` (lower-cased), exactly as the signatures see them."""
    lowered = text.lower()
    cp = _codepoints(lowered)
    starts, ends = _word_spans(cp)
    return [cp[s:e].tobytes().decode("utf-32-le", errors="surrogatepass") for s, e in zip(starts, ends)]


def shingles(text: str, ngram: int) -> list[bytes]:
    """The word n-grams of ``text`` as space-joined UTF-8 (a shorter text is a single shingle)."""
    toks = words(text)
    if not toks:
        return []
    if len(toks) < ngram:
        return [" ".join(toks).encode("utf-8", errors="surrogatepass")]
    return [" ".join(toks[i : i + ngram]).encode("utf-8", errors="surrogatepass") for i in range(len(toks) - ngram + 1)]


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


def _powers(base: int, n: int) -> np.ndarray:
    out = np.empty(n + 1, dtype=np.uint32)
    out[0] = 1
    out[1:] = np.cumprod(np.full(n, base, dtype=np.uint32), dtype=np.uint32)
    return out


def _word_hashes(cp: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Polynomial hash of every word at once: (S[end] - S[start]) * P**-start, S the prefix sums."""
    pw = _powers(_P, len(cp))
    prefix = np.zeros(len(cp) + 1, dtype=np.uint32)
    np.cumsum(cp * pw[:-1], dtype=np.uint32, out=prefix[1:])
    return (prefix[ends] - prefix[starts]) * _powers(_P_INV, len(cp))[starts]


@dataclass(frozen=True)
class ShingleHash:
    """The shingle hash as datasketch's ``hashfunc``: a shingle's bytes -> uint32."""

    def __call__(self, shingle: bytes) -> int:
        h = None
        for word in shingle.decode("utf-8", errors="surrogatepass").split(" "):
            w = 0
            for j, c in enumerate(word):
                w = (w + ord(c) * pow(_P, j, 1 << 32)) & 0xFFFFFFFF
            h = w if h is None else ((h * int(_FNV_PRIME)) & 0xFFFFFFFF) ^ w
        return h


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

    def shingle_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(document index, shingle hash) of every shingle of every text, grouped by document."""
        cp = _codepoints("\x00".join(t.lower() for t in texts))
        starts, ends = _word_spans(cp)
        wh = _word_hashes(cp, starts, ends)
        wdoc = np.cumsum(cp == 0)[starts] if len(starts) else np.empty(0, dtype=np.int64)
        counts = np.bincount(wdoc, minlength=len(texts))
        n = self.ngram
        docs, hashes = [], []
        if len(wh) >= n:
            count = len(wh) - n + 1
            h = wh[:count].copy()
            for i in range(1, n):
                h = (h * _FNV_PRIME) ^ wh[i : i + count]
            inside = wdoc[:count] == wdoc[n - 1 :]  # windows that do not cross a document boundary
            docs.append(wdoc[:count][inside])
            hashes.append(h[inside])
        first_word = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for d in np.flatnonzero((counts > 0) & (counts < n)):  # short texts: one shingle of all their words
            h = wh[first_word[d] : first_word[d] + 1].copy()
            for w in wh[first_word[d] + 1 : first_word[d] + counts[d]]:
                h = (h * _FNV_PRIME) ^ w
            docs.append(np.array([d]))
            hashes.append(h)
        if not docs:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint32)
        doc, h = np.concatenate(docs), np.concatenate(hashes).astype(np.uint32)
        if len(docs) > 1:  # short texts were appended after the windows: restore document order
            order = np.argsort(doc, kind="stable")
            doc, h = doc[order], h[order]
        # A repeated shingle cannot change a minimum, so repeats are left in rather than sorted out.
        return doc, h

    def signatures(self, texts: Sequence[str], chunk_shingles: int = 2048) -> np.ndarray:
        """One signature row per text (uint32, ``num_perm`` wide); a text without words gets all-max."""
        out = np.full((len(texts), self.num_perm), _EMPTY, dtype=np.uint32)
        doc, h = self.shingle_hashes(texts)
        if len(h) == 0:
            return out
        mixed = _fmix32(h)
        a, b = self.permutations
        # Cut the (shingles x permutations) product into cache-sized chunks at document boundaries.
        bounds = np.flatnonzero(np.concatenate([[True], doc[1:] != doc[:-1]]))
        cuts = [0]
        for start in bounds[1:]:
            if start - cuts[-1] >= chunk_shingles:
                cuts.append(int(start))
        cuts.append(len(h))
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            block = np.multiply.outer(mixed[lo:hi], a)
            block += b
            first = bounds[(bounds >= lo) & (bounds < hi)]
            out[doc[first]] = np.minimum.reduceat(block, first - lo, axis=0)
        return out

    def datasketch_minhash(self, text: str) -> MinHash:
        """The reference: datasketch's own MinHash, one ``update`` per shingle, same hash function."""
        m = MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=ShingleHash(), scheme="affine32")
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
