"""Word splitting for the quality filters: datatrove's spaCy tokenizer, several times faster, the same words.

datatrove's ``SpaCyTokenizer.word_tokenize`` runs each text inside spaCy's ``memory_zone``, which
forgets every lexeme the text added to the vocabulary: memory stays flat, but every page pays
again for creating the lexemes of its words, about half of the tokenizer's time. Here lexemes are
kept, and the vocabulary is started afresh once it holds ``max_lexemes`` (memory stays bounded,
the cost is paid once per that many words). The sentencizer that datatrove's pipeline also runs
only marks sentence starts, which word splitting never reads, so it is skipped. The words are the
same: spaCy's tokenizer does not depend on what its vocabulary already holds
(``tests/test_fast_filters.py`` checks it document by document on the bundled corpus).

Kept lexemes also let spaCy cache how it split each piece of text between spaces, but it stops
caching a text's pieces after the first special case, and a newline is one: only a page's first
line was ever cached. So a text is split into segments at every run of whitespace other than a
single space, and each segment is tokenized on its own. That gives the same words: spaCy splits
the pieces between whitespace independently of each other, and such a run always becomes a
whitespace token of its own, which no special case can span unless a special case mixes
whitespace with other characters (none in the languages used; checked, else the text goes whole).

An instance goes where datatrove's filters take a language (``language=``): datatrove's
``load_word_tokenizer`` accepts a tokenizer there, and because ``split_into_words`` caches its last
results by (text, tokenizer), the Gopher repetition and Gopher quality filters given the same
instance split a document once between them.
"""

from __future__ import annotations

import functools
import logging
import re

from datatrove.utils.word_tokenizers import SpaCyTokenizer, strip_strings

logger = logging.getLogger(__name__)

# whitespace that spaCy keeps as a token of its own: any run but a single space
SEGMENT_BREAKS = re.compile(r"\s{2,}|[^\S ]")
# spaCy's cache of split pieces stops growing at 10,000 entries by default (a few dozen pages);
# 100,000 pieces hold ~20 MB and nearly all the hits of more
PIECE_CACHE_SIZE = 100_000


def segments_split_alone(tokenizer) -> bool:
    """Whether ``tokenizer`` is spaCy's rule-based one (not a segmenter: zh, ja, ...) and none of its
    special cases mixes whitespace with other characters."""
    from spacy.tokenizer import Tokenizer

    if type(tokenizer) is not Tokenizer:
        return False
    return all(key.isspace() or not any(c.isspace() for c in key) for key in tokenizer.rules)


class KeptVocabularyTokenizer(SpaCyTokenizer):
    def __init__(self, language: str = "en", max_lexemes: int = 300_000):
        super().__init__(language)
        self.max_lexemes = max_lexemes

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            nlp = super().tokenizer
            # a new lexeme's attributes (shape, norm, flags...) are computed in Python and no word
            # depends on them: spaCy's tokenizer reads only a lexeme's text and length
            nlp.vocab.lex_attr_getters = {}
            self._segments = segments_split_alone(nlp.tokenizer)
            if self._segments:
                nlp.tokenizer.max_cache_size = PIECE_CACHE_SIZE
        return self._tokenizer

    def word_tokenize(self, text: str) -> list[str]:
        if self.language == "ja":  # datatrove chunks Japanese by bytes; its own path does that
            return super().word_tokenize(text)
        nlp = self.tokenizer
        if len(nlp.vocab) > self.max_lexemes:
            logger.debug("word tokenizer: %d lexemes, starting a fresh vocabulary", len(nlp.vocab))
            self._tokenizer = None
            nlp = self.tokenizer
        tokenize = nlp.tokenizer
        try:
            if not self._segments:
                return strip_strings([token.text for token in tokenize(text)])
            return strip_strings([token.text for segment in SEGMENT_BREAKS.split(text) if segment for token in tokenize(segment)])
        except Exception:  # datatrove's own workaround for the strings that break spaCy
            return super().word_tokenize(text)

    # the sentencizer reads lexeme flags (is_punct), which this vocabulary does not set: sentences
    # come from datatrove's own tokenizer
    def sent_tokenize(self, text: str) -> list[str]:
        return self._sentences.sent_tokenize(text)

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return self._sentences.span_tokenize(text)

    @functools.cached_property
    def _sentences(self) -> SpaCyTokenizer:
        return SpaCyTokenizer(self.language)

    def __reduce__(self):  # a worker gets a fresh one, not the driver's vocabulary
        return (type(self), (self.language, self.max_lexemes))


@functools.cache
def shared_word_tokenizer(language: str = "en") -> KeptVocabularyTokenizer:
    """One tokenizer per process and language, so the filters share ``split_into_words``'s cache."""
    return KeptVocabularyTokenizer(language)
