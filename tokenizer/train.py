"""Training the run's sentencepiece model, deterministically, from an in-memory sample of text."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import sentencepiece as spm

logger = logging.getLogger(__name__)

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2


@dataclass(frozen=True)
class SentencePieceSettings:
    vocab_size: int = 8192
    model_type: str = "bpe"  # bpe | unigram
    character_coverage: float = 0.9995
    byte_fallback: bool = True
    max_sentence_length: int = 16384
    num_threads: int = 1  # one thread: the trained model is then byte-identical across runs


def train_sentencepiece(texts: Iterable[str], settings: SentencePieceSettings) -> bytes:
    """Train on the lines of ``texts`` and return the serialized model.

    Normalisation is the identity and whitespace is kept as it is, so that
    ``decode(encode(text)) == text`` on any input (with byte fallback for unseen characters):
    tokens are counted on exactly the text the funnel measures in bytes.
    """
    lines = [line for text in texts for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no text to train the tokenizer on: every sampled document was empty or rejected")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=settings.vocab_size,
        model_type=settings.model_type,
        character_coverage=settings.character_coverage,
        byte_fallback=settings.byte_fallback,
        max_sentence_length=settings.max_sentence_length,
        num_threads=settings.num_threads,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=["\n", "\t"],
        # A small sample may not hold enough distinct pieces for the requested size; take what it has.
        hard_vocab_limit=False,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_id=-1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
    return model.getvalue()


def model_sha256(model: bytes) -> str:
    return hashlib.sha256(model).hexdigest()
