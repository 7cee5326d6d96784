"""WARC reader (warcio): one document per HTTP response or resource record."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from datatrove.data import Document
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from curation.readers.base import InputFile, raw_document, read_rest

logger = logging.getLogger(__name__)

DOCUMENT_RECORD_TYPES = ("response", "resource")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)


def _content_type(header: str | None) -> tuple[str, str | None]:
    if not header:
        return "", None
    mime = header.split(";", 1)[0].strip().lower()
    match = _CHARSET.search(header)
    return mime, match.group(1) if match else None


def read_warc(file: InputFile) -> Iterator[Document]:
    """Yield one undecoded document per response/resource record.

    Request, metadata, warcinfo and revisit records carry no page of their own and are not
    documents. A record whose payload cannot be read is yielded with a ``corrupt_record`` error;
    if the archive itself breaks (truncated gzip, garbage between records), the rest of the file is
    yielded as one ``corrupt_archive`` document, since no record boundary can be trusted after it.
    """
    position = 0
    with open(file.path, "rb") as stream:
        records = ArchiveIterator(stream, check_digests=False)
        try:
            for record in records:
                if record.rec_type not in DOCUMENT_RECORD_TYPES:
                    continue
                url = record.rec_headers.get_header("WARC-Target-URI")
                record_id = record.rec_headers.get_header("WARC-Record-ID")
                status = record.http_headers.get_statuscode() if record.http_headers else "200"
                header = (
                    record.http_headers.get_header("Content-Type")
                    if record.http_headers
                    else record.rec_headers.get_header("Content-Type")
                )
                mime, charset = _content_type(header)
                try:
                    raw = record.content_stream().read()
                    error = None
                except Exception as exc:  # bad chunked/compressed payload: keep what the record held
                    raw, error = record.raw_stream.read(), f"corrupt_record:{type(exc).__name__}"
                if error is None and status != "200":
                    error = f"http_status:{status}"
                elif error is None and mime and not (mime.startswith("text/") or "html" in mime or "xml" in mime):
                    error = "unsupported_content_type"
                yield raw_document(
                    raw,
                    file,
                    position,
                    url,
                    content_type="text" if mime == "text/plain" else "html",
                    charset=charset,
                    error=error,
                    warc_record_id=record_id,
                    mime=mime or None,
                )
                position += 1
        except (ArchiveLoadFailed, EOFError, OSError, ValueError) as exc:
            offset = records.offset  # where the last complete record ended
            logger.warning("%s: archive unreadable after offset %d (%s)", file.path, offset, exc)
            yield raw_document(read_rest(file.path, offset), file, position, None, error="corrupt_archive")
