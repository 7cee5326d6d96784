"""Word splitting for the quality filters: datatrove's spaCy tokenizer, several times faster, the same words.

datatrove's ``SpaCyTokenizer.word_tokenize`` runs each text inside spaCy's ``memory_zone``, which
forgets every lexeme the text added to the vocabulary: memory stays flat, but every page pays
again for creating the lexemes of its words, about half of the tokenizer's time. Here lexemes are
kept, and the vocabulary is started afresh once it holds ``max_lexemes`` (memory stays bounded,
the cost is paid once per that many words). The sentencizer that datatrove's pipeline also runs
only marks sentence starts, which word splitting never reads, so it is skipped. The words are the
same: spaCy's tokenizer does not depend on what its vocabulary already holds
(``tests/test_fast_filters.py`` checks it document by document on the bundled corpus).

A page repeats most of its words, and other pages repeat them too, so each whitespace-delimited
piece of a text is split once per process and its words are looked up after that (``WordPieces``;
spaCy's own cache of pieces stops caching a text's pieces after its first special case, and a
newline is one). spaCy splits the pieces between whitespace independently of each other, and
whitespace other than a single space becomes a token of its own, which no special case spans
unless a special case mixes whitespace with other characters (none in the languages used;
checked, else the text goes whole). One thing looks across pieces: the phrase matcher that
applies special cases runs over the whole text, so a pattern may match across a single space
(``: )`` for ``:)``). Such a match is never applied (no special case holds a space), but it may
hide a real one it overlaps. So the spaces where a pattern's consecutive tokens meet (``:`` then
``)``) are found first, and the pieces on both sides are split together, as spaCy would see them.

An instance goes where datatrove's filters take a language (``language=``): datatrove's
``load_word_tokenizer`` accepts a tokenizer there, and because ``split_into_words`` caches its last
results by (text, tokenizer), the Gopher repetition and Gopher quality filters given the same
instance split a document once between them.
"""

from __future__ import annotations

import functools
import importlib.abc
import logging
import re
import sys
from itertools import chain

from datatrove.utils.word_tokenizers import SpaCyTokenizer, strip_strings

logger = logging.getLogger(__name__)

# Distinct pieces whose words are kept per process (a few hundred bytes each); then it starts afresh
MAX_CACHED_PIECES = 200_000
# joins pieces to be split in one call: a whitespace token of its own, which no pattern spans
PIECE_BREAK = "\n"
# spaCy's cache of split pieces stops growing at 10,000 entries by default (a few dozen pages);
# 100,000 pieces hold ~20 MB and nearly all the hits of more
PIECE_CACHE_SIZE = 100_000


class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@functools.cache
def import_spacy() -> None:
    """Imports spaCy without torch, unless either is imported already.

    spaCy imports thinc, and thinc imports torch when it is installed (the trainer needs it) only to
    learn whether it could use it; no tokenizer ever does. That is ~1.1 s of CPU and ~230 MiB of
    memory in every curation worker process. A failed import leaves nothing in ``sys.modules``, so
    a later ``import torch`` in the same process works as usual; only thinc believes it absent.
    """
    if "spacy" in sys.modules or "torch" in sys.modules:
        import spacy  # noqa: F401
        return
    finder = _NoTorch()
    sys.meta_path.insert(0, finder)
    try:
        import spacy  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


def pieces_split_alone(tokenizer) -> bool:
    """Whether ``tokenizer`` is spaCy's rule-based one (not a segmenter: zh, ja, ...) and none of its
    special cases mixes whitespace with other characters."""
    from spacy.tokenizer import Tokenizer

    if type(tokenizer) is not Tokenizer:
        return False
    return all(key.isspace() or not any(c.isspace() for c in key) for key in tokenizer.rules)


class PatternJoints:
    """The single spaces where a special case's phrase-matcher pattern could match across: a space
    with a pattern's token ``a`` ending before it and the pattern's next token ``b`` starting after.

    spaCy adds a special case to its matcher when affixes may split it (``faster_heuristics``);
    the pattern is the special case split without special cases, as a tokenizer with no rules does.
    A regex over all (a, b) pairs is slow in Python's ``re``; spaces are found by the characters
    around them (one scan), then the few candidates are checked against the pairs.
    """

    def __init__(self, tokenizer):
        from spacy.tokenizer import Tokenizer

        t = tokenizer
        plain = Tokenizer(t.vocab, rules={}, prefix_search=t.prefix_search, suffix_search=t.suffix_search,
                          infix_finditer=t.infix_finditer, token_match=t.token_match, url_match=t.url_match)
        self.pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for key in t.rules:
            if t.faster_heuristics and not (t.find_prefix(key) or t.find_infix(key) or t.find_suffix(key)):
                continue
            tokens = [token.text for token in plain(key)]
            for a, b in zip(tokens, tokens[1:]):
                pairs = self.pairs.setdefault((a[-1], b[0]), [])
                if (a, b) not in pairs:
                    pairs.append((a, b))
        before, after = ("".join(sorted({k[i] for k in self.pairs})) for i in (0, 1))
        self.candidates = re.compile(f"[{re.escape(before)}] (?=[{re.escape(after)}])") if self.pairs else None

    def find(self, text: str) -> list[int]:
        if self.candidates is None:
            return []
        out = []
        for match in self.candidates.finditer(text):
            space = match.start() + 1
            for a, b in self.pairs.get((text[space - 1], text[space + 1]), ()):
                if text.startswith(a, space - len(a)) and text.startswith(b, space + 1):
                    out.append(space)
                    break
        return out


class WordPieces:
    """The words of a text, from the words of each of its pieces, each piece split by spaCy once.

    A piece is a run of non-whitespace, or several joined by single spaces where a pattern could
    match across them (``PatternJoints``): no match crosses from one piece into another, so
    spaCy's words for the text are its pieces' words in order (whitespace gives no words).
    """

    def __init__(self, split, joints: PatternJoints, max_pieces: int = MAX_CACHED_PIECES):
        self.split, self.joints, self.max_pieces = split, joints, max_pieces
        self.words: dict[str, tuple[str, ...]] = {}

    def __call__(self, text: str) -> list[str] | None:
        pieces = self.pieces(text)
        if pieces is None:
            return None
        try:
            return list(chain.from_iterable(map(self.words.__getitem__, pieces)))
        except KeyError:
            self._learn(pieces)
            return list(chain.from_iterable(map(self.words.__getitem__, pieces)))

    def pieces(self, text: str) -> list[str] | None:
        """The text's pieces (None: it holds the marker this needs, so the caller splits it whole)."""
        joined = self.joints.find(text)
        if not joined:
            return text.split()
        if "\0" in text:
            return None
        cuts = [text[a + 1 : b] for a, b in zip([-1, *joined], [*joined, len(text)])]
        return [piece.replace("\0", " ") for piece in "\0".join(cuts).split()]

    def _learn(self, pieces: list[str]) -> None:
        new = [p for p in dict.fromkeys(pieces) if p not in self.words]
        if len(self.words) + len(new) > self.max_pieces:
            self.words = {}
        words: list[str] = []
        tokens = iter(self.split(PIECE_BREAK.join(new)))
        for piece in new:
            words.clear()
            for token in tokens:
                word = token.text
                if word.isspace():  # the break after this piece (lexeme flags such as is_space are not set)
                    break
                words.append(word)
            self.words[piece] = tuple(words)


class KeptVocabularyTokenizer(SpaCyTokenizer):
    def __init__(self, language: str = "en", max_lexemes: int = 300_000):
        super().__init__(language)
        self.max_lexemes = max_lexemes

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            import_spacy()
            nlp = super().tokenizer
            # a new lexeme's attributes (shape, norm, flags...) are computed in Python and no word
            # depends on them: spaCy's tokenizer reads only a lexeme's text and length
            nlp.vocab.lex_attr_getters = {}
            self._pieces = None
            if pieces_split_alone(nlp.tokenizer):
                nlp.tokenizer.max_cache_size = PIECE_CACHE_SIZE
                self._pieces = WordPieces(nlp.tokenizer, PatternJoints(nlp.tokenizer))
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
            words = self._pieces(text) if self._pieces is not None else None
            return words if words is not None else strip_strings([token.text for token in tokenize(text)])
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
        import_spacy()
        return SpaCyTokenizer(self.language)

    def __reduce__(self):  # a worker gets a fresh one, not the driver's vocabulary
        return (type(self), (self.language, self.max_lexemes))


@functools.cache
def shared_word_tokenizer(language: str = "en") -> KeptVocabularyTokenizer:
    """One tokenizer per process and language, so the filters share ``split_into_words``'s cache."""
    return KeptVocabularyTokenizer(language)
