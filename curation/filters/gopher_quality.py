"""datatrove's Gopher quality filter with its per-word checks done by C string methods: the same decisions.

datatrove runs a generator over the characters of every word twice: whether any is outside its
punctuation set, and whether any is a letter. ``not PUNCTUATION_SET.issuperset(word)`` is the first
(false for an empty word, as ``any`` of nothing), and ``word.isalpha()`` answers the second for
words made only of letters (most of them; the others still go through datatrove's generator). The
rules, thresholds and their order are datatrove's, so are the reasons (``tests/test_fast_filters.py``).
"""

from __future__ import annotations

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters import GopherQualityFilter
from datatrove.utils.text import PUNCTUATION_SET, split_into_words


def has_letter(word: str) -> bool:
    return word.isalpha() or any(c.isalpha() for c in word)


class FastGopherQualityFilter(GopherQualityFilter):
    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        words = split_into_words(text, self.language)
        n_words = len(words)

        non_symbol_words = [w for w in words if not PUNCTUATION_SET.issuperset(w)]
        n_non_symbol_words_words = len(non_symbol_words)

        if self.min_doc_words and n_non_symbol_words_words < self.min_doc_words:
            return False, "gopher_short_doc"
        if self.max_doc_words and n_non_symbol_words_words > self.max_doc_words:
            return False, "gopher_long_doc"

        avg_n_words = np.mean(list(map(len, non_symbol_words)))
        if self.min_avg_word_length and avg_n_words < self.min_avg_word_length:
            return False, "gopher_below_avg_threshold"
        if self.max_avg_word_length and avg_n_words > self.max_avg_word_length:
            return False, "gopher_above_avg_threshold"

        if self.max_symbol_word_ratio and text.count("#") / n_words > self.max_symbol_word_ratio:
            return False, "gopher_too_many_hashes"
        if self.max_symbol_word_ratio and (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio:
            return False, "gopher_too_many_ellipsis"

        lines = text.splitlines()
        if (
            self.max_bullet_lines_ratio
            and sum(s.lstrip().startswith("•") or s.lstrip().startswith("-") for s in lines) / len(lines)
            > self.max_bullet_lines_ratio
        ):
            return False, "gopher_too_many_bullets"
        if (
            self.max_ellipsis_lines_ratio
            and sum(s.rstrip().endswith("...") or s.rstrip().endswith("…") for s in lines) / len(lines)
            > self.max_ellipsis_lines_ratio
        ):
            return False, "gopher_too_many_end_ellipsis"

        if self.max_non_alpha_words_ratio and sum(map(has_letter, words)) / n_words < self.max_non_alpha_words_ratio:
            return False, "gopher_below_alpha_threshold"

        if self.min_stop_words and len(self.stop_words.intersection(set(words))) < self.min_stop_words:
            return False, "gopher_enough_stop_words"

        return True
