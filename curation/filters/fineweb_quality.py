"""datatrove's FineWeb quality filter, splitting a document into words only when its decision needs them.

The words serve one check, newlines / words > ``new_line_ratio``, and the C4 filter before it has
rewritten the text, so the Gopher filters' split of the document is no use. spaCy's rule-based
tokenizer splits the text at whitespace first and each run of non-whitespace into one token or
more, and datatrove drops only the whitespace tokens: there are at least as many words as
``str.split()`` pieces (the same definition of whitespace). When the newlines are few enough for
that many pieces the check passes for the true count too, and spaCy is not run; otherwise it runs
as in datatrove (``tests/test_fast_filters.py`` compares the decisions document by document).
"""

from __future__ import annotations

from datatrove.pipeline.filters import FineWebQualityFilter
from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from datatrove.utils.text import split_into_words
from datatrove.utils.word_tokenizers import SpaCyTokenizer, load_word_tokenizer

from curation.filters.words import import_spacy


def _pieces_bound_words(tokenizer) -> bool:
    """Whether every whitespace-separated piece yields at least one word (spaCy's rule-based tokenizer)."""
    if not isinstance(tokenizer, SpaCyTokenizer) or tokenizer.language == "ja":  # ja: datatrove chunks by bytes
        return False
    import_spacy()
    from spacy.tokenizer import Tokenizer

    return type(tokenizer.tokenizer.tokenizer) is Tokenizer  # not a segmenter (zh: jieba, ...)


class FastFineWebQualityFilter(FineWebQualityFilter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lower_bound = None  # decided on first use: building the tokenizer loads spaCy

    def filter(self, doc) -> bool | tuple[bool, str]:
        lines = doc.text.split("\n")
        lines = [line for line in lines if line.strip() != ""]
        if len(lines) == 0:
            return False, "empty"
        ratio = sum(1 for line in lines if line.endswith(self.stop_chars)) / len(lines)
        if ratio < self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
            return False, "line_punct_ratio"

        ratio = sum(1 for line in lines if len(line) <= self.short_line_length) / len(lines)
        if ratio > self.short_line_threshold:
            return False, "short_line_ratio"

        ratio = find_duplicates(lines)[1] / len(doc.text.replace("\n", ""))

        if ratio > self.char_duplicates_ratio:
            return False, "char_dup_ratio"

        new_line = doc.text.count("\n")
        if self._lower_bound is None:
            self._lower_bound = _pieces_bound_words(load_word_tokenizer(self.language))
        # "IS_ALPHA" makes datatrove's tokenizer retry without it: fewer words than pieces
        if self._lower_bound and "IS_ALPHA" not in doc.text and new_line / len(doc.text.split()) <= self.new_line_ratio:
            return True
        words = split_into_words(doc.text, self.language)
        if new_line / len(words) > self.new_line_ratio:
            return False, "list_ratio"

        return True
