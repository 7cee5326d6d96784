"""The ``read`` stage: raw record bytes to text, rejecting what is not text at all."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator

import cchardet
from datatrove.data import Document

from curation.core.stage import RAW_KEY, READ_ERROR_KEY, Stage, Verdict

_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b", b"\x7fELF")
# Control characters that never occur in real text (tab, newline, form feed and CR do).
_CONTROL = bytes(c for c in range(32) if c not in (9, 10, 12, 13))


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):  # unknown, or not even a name (an embedded NUL)
        return None


def looks_binary(raw: bytes, max_control_ratio: float = 0.01) -> bool:
    head = raw[:4096]
    if head.startswith(_BINARY_MAGIC) or b"\x00" in head:
        return True
    control = len(head) - len(head.translate(None, _CONTROL))
    return control > max_control_ratio * len(head)


def decode(raw: bytes, declared: str | None) -> tuple[str, str] | None:
    """Decode with the declared charset, the page's own <meta>, UTF-8, then a detected one.

    A candidate must decode the whole record strictly; ``None`` when none does.
    """
    tried = set()
    for codec in map(_codec, _charsets(raw, declared)):
        if not codec or codec in tried:
            continue
        tried.add(codec)
        try:
            return raw.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            continue
    return None


def _charsets(raw: bytes, declared: str | None) -> Iterator[str | None]:
    """The names to try, in order; detection runs only when the named ones failed (most pages decode as declared or as UTF-8)."""
    yield declared
    meta = _META_CHARSET.search(raw[:4096])
    yield meta.group(1).decode("ascii", "ignore") if meta else None
    yield "utf-8"
    detected = cchardet.detect(raw[:65536])
    if detected.get("encoding") and (detected.get("confidence") or 0) >= 0.5:
        yield detected["encoding"]


class DecodeStage(Stage):
    """Rejects unreadable, empty, oversized, binary and undecodable records; decodes the rest."""

    name = "read"

    def __init__(self, max_document_bytes: int = 5_000_000):
        self.max_document_bytes = max_document_bytes

    def apply(self, doc: Document) -> Verdict:
        if error := doc.metadata.get(READ_ERROR_KEY):
            return False, error
        raw: bytes = doc.metadata[RAW_KEY]
        if not raw.strip():
            return False, "empty"
        if len(raw) > self.max_document_bytes:
            return False, "too_large"
        if looks_binary(raw):
            return False, "binary_content"
        decoded = decode(raw, doc.metadata.get("declared_charset"))
        if decoded is None:
            return False, "undecodable"
        doc.text, doc.metadata["charset"] = decoded
        del doc.metadata[RAW_KEY]
        return True
