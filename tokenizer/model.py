"""Loading a sentencepiece model and counting or encoding tokens with it; the special ids
the objectives add past its vocabulary (``tokenizer.special``).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import sentencepiece as spm

from tokenizer.counting import token_counter
from tokenizer.special import special_tokens
from tokenizer.store_path import StorePath, as_path, local_copy
from tokenizer.train import model_sha256


class Tokenizer:
    def __init__(self, path: str | Path | StorePath):
        path = as_path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer model not found: {path}")
        self.path = local_copy(path)  # sentencepiece opens a file: a model on a store is read from a local copy
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

    @cached_property
    def _counter(self):
        return token_counter(self.path.read_bytes())

    def count(self, text: str) -> int:
        """Tokens in ``text`` (no EOS), exactly as encoding would give (``tokenizer.counting``)."""
        return self._counter(text) if text else 0

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
