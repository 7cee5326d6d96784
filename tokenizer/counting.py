"""Exact token counts at a fraction of the cost of encoding: counts per word, cached.

The funnel counts the tokens of every raw record (HTML, ~6,500 tokens a page) and of every text a
stage changes; encoding it all cost more CPU than resiliparse's extraction. A BPE sentencepiece
model trained with ``split_by_whitespace`` has no piece that spans a space following a non-space
(training splits its sentences into words there, and merges happen inside words only), so
encoding a text gives the same pieces as encoding each of its words alone: the count of a text is
the sum of its words' counts. Web text repeats its words (and HTML its tags and attributes), so
each distinct word is encoded once per worker and looked up after that.

That holds only for models whose normalisation leaves the text as it is (the run's tokenizer:
``tokenizer/train.py``). For any other model, a given ``tokenizer.model_path`` included, counting
encodes the whole text, as before.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

# A word as sentencepiece's trainer splits a sentence (spaces start a word; a run of spaces stays
# with the word that follows it, or forms a word of its own at the end).
_WORD = re.compile(r" *[^ ]+| +")
_BPE = sentencepiece_model_pb2.TrainerSpec.BPE
# Distinct words kept per process (~100 bytes each): bounded, because a crawl's vocabulary of
# URLs, ids and numbers grows without end.
MAX_CACHED_WORDS = 1 << 19


def counts_by_word(model: bytes) -> bool:
    """Whether a text's token count is the sum of its space-delimited words' counts under ``model``."""
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model)
    norm, trainer = proto.normalizer_spec, proto.trainer_spec
    return (
        trainer.model_type == _BPE
        and trainer.split_by_whitespace
        and not trainer.treat_whitespace_as_suffix
        and norm.name == "identity"
        and not norm.precompiled_charsmap
        and not norm.add_dummy_prefix
        and not norm.remove_extra_whitespaces
    )


def word_encoder(processor: spm.SentencePieceProcessor) -> Callable[[str], list[int]]:
    """The cheapest call that encodes one word as ``processor.encode`` does.

    New words are encoded one call each: a list call builds a thread pool for each list (the raw
    HTML of a page brings ~50-100 new words, many of them long URLs), and cost ~4.3 µs a word on
    the scale corpus against ~3.5 µs one by one through ``encode`` and ~2.9 µs through the
    binding's own method, which skips ``encode``'s handling of its optional arguments. That method
    is not public: it is used only where it gives ``encode``'s answer on a probe, else ``encode``.
    """
    encode = processor.encode
    try:
        direct = processor._processor._EncodeAsIds
        add_bos, add_eos, reverse = processor._add_bos, processor._add_eos, processor._reverse

        def encode_direct(word: str) -> list[int]:
            return direct(word, False, -1, 0.1, add_bos, add_eos, reverse)

        probe = " ab <a href=\"x\"> 12é\u3000"
        if encode_direct(probe) == encode(probe) and not processor._enable_sampling:
            return encode_direct
    except (AttributeError, TypeError, RuntimeError):  # another sentencepiece: its public call
        pass
    return encode


class WordCountCache:
    """``count(text) == len(processor.encode(text))`` for a model where ``counts_by_word`` holds."""

    def __init__(self, processor: spm.SentencePieceProcessor, max_words: int = MAX_CACHED_WORDS):
        self.processor = processor
        self.max_words = max_words
        self.words: dict[str, int] = {}
        self._encode = word_encoder(processor)

    def __call__(self, text: str) -> int:
        words = _WORD.findall(text)
        try:
            return sum(map(self.words.__getitem__, words))
        except KeyError:
            return self._count_learning(words)

    def _count_learning(self, words: list[str]) -> int:
        if len(self.words) + len(words) > self.max_words:  # may overflow: start over with this text's known words
            self.words = {w: self.words[w] for w in words if w in self.words}
        cache, encode, total = self.words, self._encode, 0
        get = cache.get
        for word in words:
            tokens = get(word)
            if tokens is None:
                tokens = cache[word] = len(encode(word))
            total += tokens
        return total


@functools.lru_cache(maxsize=4)
def token_counter(model: bytes) -> Callable[[str], int]:
    """The cheapest exact counter for ``model``: cached per word where that is exact, else encoding.

    One per model and process, so a Ray worker that curates shard after shard keeps its words.
    """
    processor = spm.SentencePieceProcessor(model_proto=model)
    if counts_by_word(model):
        return WordCountCache(processor)
    return lambda text: len(processor.encode(text))
