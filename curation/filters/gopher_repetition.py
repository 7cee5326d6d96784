"""datatrove's Gopher repetition filter with its n-gram counting done in C: the same decisions, faster.

datatrove builds every n-gram as a new string (a list slice and a ``join`` per position, for each of
nine n) and counts them in a Python loop. Here:

- top n-grams (n = 2, 3, 4) are n-tuples of words. A tuple and its space-joined string are
  interchangeable when no word holds a space (checked; otherwise datatrove's own code runs). Each
  tuple is hashed from its words' hashes (numpy) and the hashes grouped by sorting; the answer is
  the largest group whose first position comes first, as ``Counter.most_common(1)`` keeps insertion
  order. A collision can only put two tuples in one group, making it larger than either: so when
  that group's members are all the same tuple (compared), no other tuple is as frequent or as
  early among the equally frequent, and the length x count is datatrove's. Otherwise ``Counter``
  counts the tuples;
- duplicated n-grams (n = 5..10) are keyed, as in datatrove, by the words joined *without* a
  separator (so different word sequences may collide, and must). Building those keys (six string
  slices per word, each hashed) was most of the filter's time, so each key is first a polynomial
  hash of its characters, taken for every n from one prefix sum over the joined words (numpy).
  Distinct hashes are distinct keys: when all are (two thirds of the n's of an English page), the
  repeated length is 0. Otherwise every position whose hash was seen before is a candidate, and
  datatrove's greedy scan visits only those: a position it reaches is a repeat exactly when the
  first occurrence of its key was not skipped or an earlier occurrence was reached. Each candidate
  the scan reaches is compared with its first occurrence as strings, and on a hash collision the
  n goes through datatrove's scan on the keys themselves.

The paragraph and line checks are datatrove's functions, in datatrove's order; every threshold is
compared in the same expression, so the reasons are the same too (``tests/test_fast_filters.py``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from itertools import accumulate
from operator import itemgetter

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter
from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from datatrove.utils.text import split_into_words


def top_ngram_chars(words: list[str], n: int) -> int | None:
    """Characters of the most frequent n-gram times its count (None: fewer than n words)."""
    if len(words) < n:
        return None
    counts = Counter(zip(*(words[i:] for i in range(n))))
    gram, count = max(counts.items(), key=itemgetter(1))  # the first of the most common, as most_common(1)
    return (sum(map(len, gram)) + n - 1) * count


def repeated_ngram_chars(joined: str, offsets: list[int], n: int) -> int:
    """Characters in n-grams (keyed by their words joined without a separator) seen before, scanning
    greedily as datatrove does: a repeat counts its key's length and skips the next n - 1 positions."""
    n_grams = len(offsets) - n  # offsets has len(words) + 1 entries
    if n_grams <= 0:
        return 0
    keys = list(map(joined.__getitem__, map(slice, offsets[:n_grams], offsets[n:])))
    if len(set(keys)) == n_grams:
        return 0
    seen, repeated, idx = set(), 0, 0
    while idx < n_grams:
        key = keys[idx]
        if key in seen:
            repeated += len(key)
            idx += n
        else:
            seen.add(key)
            idx += 1
    return repeated


# An odd multiplier is invertible modulo 2**64: the hash of joined[a:b] is sum(c[j] * INV**(j - a)),
# from one prefix sum of c[j] * INV**j scaled by BASE**a (numpy's uint64 arithmetic wraps).
_INV = 0x9E3779B97F4A7C15
_BASE = pow(_INV, -1, 1 << 64)
# combines word hashes into tuple hashes (any odd multiplier): h(w1..wk) = h(w1..wk-1) * _TUPLE + mix(h(wk))
_TUPLE = np.uint64(0xD6E8FEB86659FD93)
_powers: tuple[np.ndarray, np.ndarray] = (np.ones(0, np.uint64), np.ones(0, np.uint64))


def _powers_of(length: int) -> tuple[np.ndarray, np.ndarray]:
    """INV**i and BASE**i for i < length (at least), kept per process and grown by doubling."""
    global _powers
    if len(_powers[0]) < length:
        size = max(length, 2 * len(_powers[0]), 4096)
        _powers = tuple(np.cumprod(np.r_[np.uint64(1), np.full(size - 1, b, np.uint64)], dtype=np.uint64) for b in (_INV, _BASE))
    return _powers


def _mixed(hashes: np.ndarray) -> np.ndarray:
    """A bijective scramble of 64-bit hashes (splitmix64's finaliser): a word's character hash is
    linear in its characters, and a tuple hash linear in those would collide along word boundaries
    (``ab c`` and ``a bc``) far more often than chance."""
    h = hashes ^ (hashes >> np.uint64(30))
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _groups(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Equal hashes grouped: the positions sorted by hash, where each group starts in that order, its
    size and its first position; None when all hashes differ."""
    order = np.argsort(hashes)
    ordered = hashes[order]
    boundary = np.empty(len(hashes), bool)
    boundary[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=boundary[1:])
    starts = np.flatnonzero(boundary)
    if len(starts) == len(hashes):
        return None
    sizes = np.empty(len(starts), np.int64)
    np.subtract(starts[1:], starts[:-1], out=sizes[:-1])
    sizes[-1] = len(hashes) - starts[-1]
    return order, starts, sizes, np.minimum.reduceat(order, starts)


class NGramKeys:
    """The n-grams of one word list, for any n: hashed from one prefix sum over the joined words,
    compared as words or strings only where the hashes say two are equal."""

    def __init__(self, words: list[str]):
        self.words = words
        self.joined = joined = "".join(words)
        self.offsets = offsets = [0, *accumulate(map(len, words))]
        inv, self._base = _powers_of(len(joined) + 1)
        # any injective code of the characters will do; lone surrogates pass through as themselves
        codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        self._prefix = np.zeros(len(codes) + 1, np.uint64)
        np.cumsum(codes * inv[: len(codes)], out=self._prefix[1:])
        self._at = np.asarray(offsets, dtype=np.int64)
        self._tuple_hashes: list[np.ndarray] | None = None

    def hashes(self, n: int) -> np.ndarray:
        start, end = self._at[:-n], self._at[n:]
        return (self._prefix[end] - self._prefix[start]) * self._base[start]

    def top_chars(self, n: int) -> int | None:
        """``top_ngram_chars(words, n)``, for words that hold no space."""
        words, offsets = self.words, self.offsets
        n_grams = len(words) - n + 1
        if n_grams <= 0:
            return None
        if self._tuple_hashes is None:
            self._tuple_hashes = [_mixed(self.hashes(1))]
        tuples = self._tuple_hashes  # tuples[k - 1]: the k-tuples' hashes
        while len(tuples) < n:
            k = len(tuples)
            tuples.append(tuples[-1][:-1] * _TUPLE + tuples[0][k:])
        groups = _groups(tuples[n - 1])
        if groups is None:  # every tuple differs from every other: the first one is the most common
            return offsets[n] + n - 1
        order, starts, sizes, firsts = groups
        count = int(sizes.max())
        largest = np.flatnonzero(sizes == count)
        group = int(largest[np.argmin(firsts[largest])])  # the earliest first position
        members = order[starts[group] : starts[group] + count].tolist()
        first = int(firsts[group])
        gram = words[first : first + n]
        if any(words[p : p + n] != gram for p in members):
            return top_ngram_chars(words, n)  # two tuples share a hash
        return (offsets[first + n] - offsets[first] + n - 1) * count

    def repeated_chars(self, n: int) -> int:
        """``repeated_ngram_chars(joined, offsets, n)``."""
        joined, offsets = self.joined, self.offsets
        n_grams = len(offsets) - n
        if n_grams <= 0:
            return 0
        groups = _groups(self.hashes(n))
        if groups is None:
            return 0
        order, starts, sizes, firsts = groups
        first = np.empty(n_grams, np.int64)  # the position where each position's hash first occurs
        first[order] = np.repeat(firsts, sizes)
        candidates = np.flatnonzero(first < np.arange(n_grams)).tolist()  # not where its hash first occurs
        first = first.tolist()
        seen, repeats, repeated, resume = set(), [], 0, 0
        for pos in candidates:
            if pos < resume:  # skipped after a repeat
                continue
            origin, start, end = first[pos], offsets[pos], offsets[pos + n]
            if offsets[origin + n] - offsets[origin] != end - start or not joined.startswith(joined[start:end], offsets[origin]):
                return repeated_ngram_chars(joined, offsets, n)  # two keys share a hash
            if origin not in seen:  # no earlier occurrence reached yet but maybe the first
                before = bisect_left(repeats, origin)
                if before and origin - repeats[before - 1] < n:  # the first was skipped: this one is new
                    seen.add(origin)
                    continue
            repeated += end - start
            repeats.append(pos)
            seen.add(origin)
            resume = pos + n
        return repeated


class FastGopherRepetitionFilter(GopherRepetitionFilter):
    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        if not text:
            return False, "empty"
        paragraphs = self.paragraph_exp.split(text.strip())
        dup, dup_chars = find_duplicates(paragraphs)
        if self.dup_para_frac and dup / len(paragraphs) > self.dup_para_frac:
            return False, "dup_para_frac"
        if self.dup_para_char_frac and dup_chars / len(text) > self.dup_para_char_frac:
            return False, "dup_para_char_frac"
        lines = self._line_splitter.split(text)
        dup, dup_chars = find_duplicates(lines)
        if self.dup_line_frac and dup / len(lines) > self.dup_line_frac:
            return False, "dup_line_frac"
        if self.dup_line_char_frac and dup_chars / len(text) > self.dup_line_char_frac:
            return False, "dup_line_char_frac"

        keys = NGramKeys(split_into_words(text, self.language))
        if " " in keys.joined:  # a word holds a space: tuples would not stand for space-joined strings
            return super().filter(doc)
        for n, n_frac in self.top_n_grams:
            chars = keys.top_chars(n)
            if chars is not None and chars / len(text) > n_frac:
                return False, f"top_{n}_gram"
        for n, n_frac in self.dup_n_grams:
            if keys.repeated_chars(n) / len(text) > n_frac:
                return False, f"duplicated_{n}_n_grams"
        return True
