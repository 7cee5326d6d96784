"""Word splitting for the quality filters: datatrove's spaCy tokenizer, twice as fast, the same words.

datatrove's ``SpaCyTokenizer.word_tokenize`` runs each text inside spaCy's ``memory_zone``, which
forgets every lexeme the text added to the vocabulary: memory stays flat, but every page pays
again for creating the lexemes of its words, about half of the tokenizer's time. Here lexemes are
kept, and the vocabulary is started afresh once it holds ``max_lexemes`` (memory stays bounded,
the cost is paid once per that many words). The sentencizer that datatrove's pipeline also runs
only marks sentence starts, which word splitting never reads, so it is skipped. The words are the
same: spaCy's tokenizer does not depend on what its vocabulary already holds
(``tests/test_fast_filters.py`` checks it document by document on the bundled corpus).

An instance goes where datatrove's filters take a language (``language=``): datatrove's
``load_word_tokenizer`` accepts a tokenizer there, and because ``split_into_words`` caches its last
results by (text, tokenizer), the Gopher repetition, Gopher quality and FineWeb filters given the
same instance split a document once between them.
"""

from __future__ import annotations

import functools
import logging

from datatrove.utils.word_tokenizers import SpaCyTokenizer, strip_strings

logger = logging.getLogger(__name__)


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
        return self._tokenizer

    def word_tokenize(self, text: str) -> list[str]:
        if self.language == "ja":  # datatrove chunks Japanese by bytes; its own path does that
            return super().word_tokenize(text)
        nlp = self.tokenizer
        if len(nlp.vocab) > self.max_lexemes:
            logger.debug("word tokenizer: %d lexemes, starting a fresh vocabulary", len(nlp.vocab))
            self._tokenizer = None
            nlp = self.tokenizer
        nlp.max_length = len(text) + 10
        try:
            doc = nlp.tokenizer(text)
        except Exception:  # datatrove's own workaround for the strings that break spaCy
            return super().word_tokenize(text)
        return strip_strings([token.text for token in doc])

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
