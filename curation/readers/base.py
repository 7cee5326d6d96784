"""What every reader yields: an undecoded document.

Readers only split files into records; they never decide whether a record is any good. Each
record becomes a ``Document`` with empty ``text`` and its raw bytes in transient metadata, and a
record that could not even be read (corrupt gzip, malformed JSON line) becomes one too, carrying
its read error, so that the ``read`` stage rejects it with that reason and the funnel counts it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from datatrove.data import Document

from curation.core.document import make_document_id, new_document
from curation.core.stage import RAW_KEY, READ_ERROR_KEY
from tokenizer.storage import is_remote
from tokenizer.store_path import StorePath


@dataclass(frozen=True)
class InputFile:
    """One input file of a source: the unit of parallel work and of resumption."""

    path: str
    source: str
    domain: str
    format: str  # warc | jsonl | parquet | html
    content_type: str = "html"  # html | text: what the text field of jsonl/parquet holds
    options: dict = field(default_factory=dict, hash=False, compare=False)
    roots: tuple[str, ...] = ()  # when set, the file must resolve inside one of these folders as it is opened

    @property
    def name(self) -> str:
        return StorePath(self.path).name if is_remote(self.path) else Path(self.path).name

    def open_path(self, path: str | None = None) -> str:
        """The path to open for ``path`` (default: this file), checked against ``roots`` now, when it
        is opened: a symlink that appeared after the run was submitted cannot lead outside."""
        return inside_roots(path or self.path, self.roots) if self.roots else (path or self.path)


class OutsideDataRoots(ValueError):
    """Not an OSError on purpose: readers turn OSErrors into error documents that carry the raw bytes."""


def open_input(path: str):
    """A binary file object of a local file or of an object on a store (``s3://...``, streamed)."""
    return StorePath(path).open("rb") if is_remote(path) else open(path, "rb")


def inside_roots(path: str | os.PathLike, roots: tuple[str, ...] | list) -> str:
    """``path`` with every symlink and ``..`` resolved, if that lies inside one of ``roots``; else refused.
    A URL has no symlinks: its ``..`` are resolved and it must lie under a root URL."""
    if is_remote(path):
        url = StorePath(str(path)).url
        for root in (StorePath(str(r)).url for r in roots if is_remote(r)):
            if url == root or url.startswith(root.rstrip("/") + "/"):
                return url
        raise OutsideDataRoots(f"{os.fspath(path)!r} lies outside the data roots {[os.fspath(r) for r in roots]}")
    real = os.path.realpath(path)
    for root in (r for r in roots if not is_remote(r)):  # a URL root holds no local file
        root = os.path.realpath(root)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return real
    raise OutsideDataRoots(f"{os.fspath(path)!r} resolves to {real!r}, outside the data roots {[os.fspath(r) for r in roots]}")


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
    with open_input(path) as f:
        f.seek(offset)
        return f.read()
