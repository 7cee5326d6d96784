"""JSON Lines reader (plain or .gz/.zst via datatrove's io): one document per line."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator

from datatrove.data import Document

from curation.readers.base import InputFile, open_input, raw_document
from tokenizer.storage import is_remote


def _open(path: str):
    if not path.endswith(".gz"):
        return open_input(path)
    return gzip.open(open_input(path) if is_remote(path) else path, "rb")


def read_jsonl(file: InputFile) -> Iterator[Document]:
    """Options: ``text_field`` (default "text"), ``id_field``, ``url_field`` (default "url")."""
    text_field = file.options.get("text_field", "text")
    id_field = file.options.get("id_field")
    url_field = file.options.get("url_field", "url")
    position = 0
    with _open(file.open_path()) as f:
        try:
            for line in f:
                if not line.strip():
                    continue
                yield _line_document(line, file, position, text_field, id_field, url_field)
                position += 1
        except (EOFError, OSError, zlib.error) as exc:
            yield raw_document(b"", file, position, None, error=f"corrupt_archive:{type(exc).__name__}")


def _line_document(line: bytes, file: InputFile, position: int, text_field: str, id_field, url_field) -> Document:
    try:
        record = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError: keep the line's bytes for inspection
        return raw_document(line, file, position, None, error="malformed_json")
    if not isinstance(record, dict):
        return raw_document(line, file, position, None, error="malformed_json:not_an_object")
    text = record.get(text_field)
    url = record.get(url_field) if isinstance(record.get(url_field), str) else None
    if not isinstance(text, str):
        reason = f"missing_field:{text_field}" if text is None else f"wrong_type:{text_field}"
        return raw_document(line, file, position, url, error=reason)
    doc_id = record.get(id_field) if id_field else None
    return raw_document(
        # surrogatepass keeps lone surrogates as bytes the read stage will reject as undecodable
        text.encode("utf-8", errors="surrogatepass"),
        file,
        position,
        url,
        charset="utf-8",
        doc_id=f"{file.source}/{doc_id}" if isinstance(doc_id, str | int) else None,
    )
