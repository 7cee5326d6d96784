"""What every reader yields: an undecoded document.

Readers only split files into records; they never decide whether a record is any good. Each
record becomes a ``Document`` with empty ``text`` and its raw bytes in transient metadata, and a
record that could not even be read (corrupt gzip, malformed JSON line) becomes one too, carrying
its read error, so that the ``read`` stage rejects it with that reason and the funnel counts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datatrove.data import Document

from curation.core.document import make_document_id, new_document
from curation.core.stage import RAW_KEY, READ_ERROR_KEY


@dataclass(frozen=True)
class InputFile:
    """One input file of a source: the unit of parallel work and of resumption."""

    path: str
    source: str
    domain: str
    format: str  # warc | jsonl | parquet | html
    content_type: str = "html"  # html | text: what the text field of jsonl/parquet holds
    options: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        return Path(self.path).name


def raw_document(
    raw: bytes,
    file: InputFile,
    position: int,
    url: str | None,
    *,
    content_type: str | None = None,
    charset: str | None = None,
    error: str | None = None,
    doc_id: str | None = None,
    **extra,
) -> Document:
    metadata = {"content_type": content_type or file.content_type, RAW_KEY: raw, **extra}
    if charset:
        metadata["declared_charset"] = charset
    if error:
        metadata[READ_ERROR_KEY] = error
    return new_document(
        "",
        doc_id or make_document_id(file.source, file.name, position),
        file.source,
        file.domain,
        url,
        **metadata,
    )


def read_rest(path: str, offset: int) -> bytes:
    """The bytes of a file from ``offset`` on: what was lost when a reader had to stop there."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()
