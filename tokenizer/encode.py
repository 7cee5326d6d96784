"""Encoding many documents at once into one flat token array and per-document lengths.

Per-document Python lists of ids would cost more than sentencepiece's encoding itself, so the ids
go straight into one array; ``tokenizer.shards.write_flat_token_shard`` writes it as a shard.
"""

from __future__ import annotations

import itertools

import numpy as np

from tokenizer.model import Tokenizer
from tokenizer.shards import token_dtype

ENCODE_BATCH = 256


def encode_flat(tokenizer: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(flat token ids in the narrowest dtype of the vocabulary, tokens per text), EOS not added."""
    dtype = token_dtype(tokenizer.vocab_size)
    lengths, parts = [], []
    for start in range(0, len(texts), ENCODE_BATCH):
        encoded = tokenizer.processor.encode(texts[start : start + ENCODE_BATCH], num_threads=1)
        lengths += [len(x) for x in encoded]
        parts.append(np.fromiter(itertools.chain.from_iterable(encoded), dtype=dtype))
    flat = np.concatenate(parts) if parts else np.empty(0, dtype)
    return flat, np.array(lengths, dtype=np.int64)
