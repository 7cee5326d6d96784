"""Loading a sentencepiece model and counting or encoding tokens with it; the special ids
(a mask and T5-style sentinels) the pretraining objectives add to its vocabulary.

The special ids are appended past the sentencepiece vocabulary (mask = V, sentinel k = V + 1 + k),
as T5 does (its 100 ``<extra_id_k>`` lie past its 32,000 sentencepiece pieces), rather than trained
in as user-defined or control symbols: encoding text can never produce them, even a page that
contains the literal string ``<extra_id_0>`` (a user-defined symbol would be matched in the text);
the sentencepiece model, and with it every token count of the funnel and every shard, stays
exactly what it was; and runs curated before the objectives existed train with them unchanged.
The manifest and ``tokenizer/tokenizer.json`` record them.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import sentencepiece as spm

from tokenizer.train import model_sha256

SENTINELS = 100


def special_tokens(vocab_size: int, sentinels: int = SENTINELS) -> dict:
    """The ids added past a sentencepiece vocabulary of ``vocab_size`` pieces."""
    return {"mask_id": vocab_size, "first_sentinel_id": vocab_size + 1, "sentinels": sentinels, "vocab_size": vocab_size + 1 + sentinels}


class Tokenizer:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"tokenizer model not found: {self.path}")
        self.processor = spm.SentencePieceProcessor(model_file=str(self.path))

    @cached_property
    def sha256(self) -> str:
        return model_sha256(self.path.read_bytes())

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    @property
    def eos_id(self) -> int:
        return self.processor.eos_id()

    def count(self, text: str) -> int:
        """Tokens in ``text`` (no EOS), exactly as encoding would give."""
        return len(self.processor.encode(text)) if text else 0

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text)

    @property
    def special(self) -> dict:
        return special_tokens(self.vocab_size)

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``; the special ids read ``<mask>`` and ``<extra_id_k>`` (T5's names)."""
        n = self.vocab_size
        if all(i < n for i in ids):
            return self.processor.decode(ids)
        out, run = [], []
        for i in ids:
            if i < n:
                run.append(i)
                continue
            out.append(self.processor.decode(run))
            run = []
            out.append("<mask>" if i == n else f"<extra_id_{i - n - 1}>")
        out.append(self.processor.decode(run))
        return "".join(out)
