"""The special ids the pretraining objectives add to a sentencepiece vocabulary: a mask (masked
LM) and T5-style sentinels (span corruption).

They are appended past the sentencepiece vocabulary (mask = V, sentinel k = V + 1 + k), as T5
does (its 100 ``<extra_id_k>`` lie past its 32,000 sentencepiece pieces), rather than trained in as
user-defined or control symbols: encoding text can never produce them, even a page that contains
the literal string ``<extra_id_0>`` (a user-defined symbol would be matched in the text); the
sentencepiece model, and with it every token count of the funnel and every shard, stays exactly
what it was; and runs curated before the objectives existed train with them unchanged. The
manifest and ``tokenizer/tokenizer.json`` record them. No dependencies: the trainer imports this
without sentencepiece.
"""

from __future__ import annotations

SENTINELS = 100


def special_tokens(vocab_size: int, sentinels: int = SENTINELS) -> dict:
    """The ids added past a sentencepiece vocabulary of ``vocab_size`` pieces."""
    return {"mask_id": vocab_size, "first_sentinel_id": vocab_size + 1, "sentinels": sentinels, "vocab_size": vocab_size + 1 + sentinels}
