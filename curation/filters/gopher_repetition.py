"""datatrove's Gopher repetition filter with its n-gram counting done in C: the same decisions, faster.

datatrove builds every n-gram as a new string (a list slice and a ``join`` per position, for each of
nine n) and counts them in a Python loop. Here:

- top n-grams (n = 2, 3, 4) are counted as tuples of words by ``Counter`` (in C). A tuple and its
  space-joined string are interchangeable when no word holds a space (checked; otherwise
  datatrove's own code runs), and the first most common tuple is the first most common string
  (both counters keep insertion order), so the length x count is the same;
- duplicated n-grams (n = 5..10) are keyed, as in datatrove, by the words joined *without* a
  separator (so different word sequences may collide, and must), but sliced out of one joined
  string by word offsets; when all keys are distinct (most documents) the repeated length is 0
  without datatrove's sequential scan, otherwise the same scan runs over the same keys.

The paragraph and line checks are datatrove's functions, in datatrove's order; every threshold is
compared in the same expression, so the reasons are the same too (``tests/test_fast_filters.py``).
"""

from __future__ import annotations

from collections import Counter
from itertools import accumulate
from operator import itemgetter

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
    """Characters in n-grams (keyed by their words joined without a separator) seen before, scanning greedily."""
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

        words = split_into_words(text, self.language)
        if any(" " in w for w in words):  # tuples would not stand for space-joined strings
            return super().filter(doc)
        for n, n_frac in self.top_n_grams:
            chars = top_ngram_chars(words, n)
            if chars is not None and chars / len(text) > n_frac:
                return False, f"top_{n}_gram"
        joined, offsets = "".join(words), [0, *accumulate(map(len, words))]
        for n, n_frac in self.dup_n_grams:
            if repeated_ngram_chars(joined, offsets, n) / len(text) > n_frac:
                return False, f"duplicated_{n}_n_grams"
        return True
