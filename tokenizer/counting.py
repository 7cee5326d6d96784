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
# sentencepiece encodes a list on a thread pool it builds for the call (~40-80 µs of CPU, even for one
# thread and one word; a word alone costs ~1-3 µs): fewer new words than this are encoded one by one
BATCH_FROM = 32


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


class WordCountCache:
    """``count(text) == len(processor.encode(text))`` for a model where ``counts_by_word`` holds."""

    def __init__(self, processor: spm.SentencePieceProcessor, max_words: int = MAX_CACHED_WORDS):
        self.processor = processor
        self.max_words = max_words
        self.words: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        words = _WORD.findall(text)
        try:
            return sum(map(self.words.__getitem__, words))
        except KeyError:
            self._learn(words)
            return sum(map(self.words.__getitem__, words))

    def _learn(self, words: list[str]) -> None:
        new = [w for w in dict.fromkeys(words) if w not in self.words]
        if len(self.words) + len(new) > self.max_words:
            self.words = {w: self.words[w] for w in words if w in self.words}
        if len(new) < BATCH_FROM:
            encode = self.processor.encode
            for word in new:
                self.words[word] = len(encode(word))
            return
        # one thread (a Ray task is given one CPU; more threads per call cost more than they save)
        for word, ids in zip(new, self.processor.encode(new, num_threads=1)):
            self.words[word] = len(ids)


@functools.lru_cache(maxsize=4)
def token_counter(model: bytes) -> Callable[[str], int]:
    """The cheapest exact counter for ``model``: cached per word where that is exact, else encoding.

    One per model and process, so a Ray worker that curates shard after shard keeps its words.
    """
    processor = spm.SentencePieceProcessor(model_proto=model)
    if counts_by_word(model):
        return WordCountCache(processor)
    return lambda text: len(processor.encode(text))
