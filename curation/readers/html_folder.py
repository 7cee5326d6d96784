"""A folder of HTML files (searched recursively): one document per file, its URI as the URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from datatrove.data import Document

from curation.core.document import make_document_id
from curation.readers.base import InputFile, OutsideDataRoots, raw_document
from tokenizer.storage import is_remote
from tokenizer.store_path import StorePath

HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def read_html_folder(file: InputFile) -> Iterator[Document]:
    if is_remote(file.path):
        yield from _read_store_folder(file)
        return
    root = Path(file.open_path())
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in HTML_SUFFIXES and p.is_file())
    for position, path in enumerate(paths):
        url = None
        try:
            raw, error = Path(file.open_path(str(path))).read_bytes(), None
        except OSError as exc:
            raw, error = b"", f"unreadable_file:{type(exc).__name__}"
        except OutsideDataRoots:  # a symlink out of the data roots: counted and rejected, never read nor named
            raw, error, url = b"", "outside_data_roots", path.absolute().as_uri()
        doc_id = make_document_id(file.source, path.relative_to(root).as_posix(), 0)
        yield raw_document(raw, file, position, url or path.resolve().as_uri(), error=error, doc_id=doc_id)


def _read_store_folder(file: InputFile) -> Iterator[Document]:
    """The same under a prefix of an object store: the objects' URLs are the documents' URLs."""
    root = StorePath(file.open_path())
    paths = [p for p in root.files() if p.suffix.lower() in HTML_SUFFIXES]
    for position, path in enumerate(paths):
        try:
            raw, error = path.read_bytes(), None
        except OSError as exc:
            raw, error = b"", f"unreadable_file:{type(exc).__name__}"
        doc_id = make_document_id(file.source, path.relative_to(root).as_posix(), 0)
        yield raw_document(raw, file, position, str(path), error=error, doc_id=doc_id)
