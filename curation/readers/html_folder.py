"""A folder of HTML files (searched recursively): one document per file, its URI as the URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from datatrove.data import Document

from curation.core.document import make_document_id
from curation.readers.base import InputFile, OutsideDataRoots, raw_document

HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def read_html_folder(file: InputFile) -> Iterator[Document]:
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
