"""Extraction that remembers: results of an earlier pass over the same records are reused, not redone.

The tokenizer's sample pass runs the run's stages over a sample of each shard before the shard is
curated; without this, every sampled page (half of them by default) was extracted twice. The
extractor is deterministic for a given config (its timeout counts CPU time, not the wall clock),
so a remembered result is the result extraction would give again.
"""

from __future__ import annotations

from datatrove.data import Document

from curation.core.stage import Stage, Verdict

# doc id -> (extracted text, None) or (None, rejection reason)
Remembered = dict[str, tuple[str | None, str | None]]


class RememberingExtraction(Stage):
    """Wraps the ``extract`` stage: answers from ``known`` where it can, and records what it computes."""

    name = "extract"

    def __init__(self, extraction: Stage, known: Remembered | None = None, record: bool = False):
        self.extraction = extraction
        self.known = known or {}
        self.recorded: Remembered | None = {} if record else None
        self.reused = 0

    def open(self) -> None:
        self.extraction.open()

    def close(self) -> None:
        self.extraction.close()

    def apply(self, doc: Document) -> Verdict:
        hit = self.known.get(doc.id)
        if hit is not None:
            self.reused += 1
            text, reason = hit
            if reason is not None:
                return False, reason
            doc.text = text
            return True
        verdict = self.extraction.apply(doc)
        if self.recorded is not None and doc.metadata.get("content_type") != "text":  # plain text passes through: nothing to save
            keep, reason = (verdict, None) if isinstance(verdict, bool) else verdict
            self.recorded[doc.id] = (doc.text, None) if keep else (None, reason or self.name)
        return verdict
