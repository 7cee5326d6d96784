"""WARC reader: one document per HTTP response or resource record, resilient to corrupt archives.

warcio parses records, but it is lenient about broken gzip: on a decompression error it silently
reads the rest as uncompressed bytes, losing every later record without a word. So ``.warc.gz``
files are split into gzip members here (one record per member, as the WARC standard recommends
and Common Crawl does), each member is parsed by warcio on its own, and a member that does not
decompress is reported as a ``corrupt_gzip_member`` document holding its bytes; reading resumes
at the next gzip header, so one bad record costs one record.
"""

from __future__ import annotations

import io
import logging
import re
import zlib
from collections.abc import Iterator

from datatrove.data import Document
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeadersParser

from curation.readers.base import InputFile, open_input, raw_document, read_rest

logger = logging.getLogger(__name__)

DOCUMENT_RECORD_TYPES = ("response", "resource")
# Pages a text extractor can read; scripts, styles, images and the like are counted and rejected.
TEXT_MIME_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "")
GZIP_MAGIC = b"\x1f\x8b\x08"
_HTTP_PARSER = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"])
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)


def _content_type(header: str | None) -> tuple[str, str | None]:
    if not header:
        return "", None
    mime = header.split(";", 1)[0].strip().lower()
    match = _CHARSET.search(header)
    return mime, match.group(1) if match else None


def record_document(
    raw: bytes, file: InputFile, position: int, url: str | None, content_type: str | None, record_id: str | None, error: str | None = None
) -> Document:
    """A response or resource record's document, whichever library parsed the record (warcio here,
    FastWARC in ``fastwarc_reader``), so both readers give the same documents. ``content_type``: the
    HTTP Content-Type header, else the record's; a page of another type than ``TEXT_MIME_TYPES`` is
    rejected as ``unsupported_content_type`` unless it already has an ``error``."""
    mime, charset = _content_type(content_type)
    if error is None and mime not in TEXT_MIME_TYPES:
        error = "unsupported_content_type"
    return raw_document(
        raw, file, position, url, content_type="text" if mime == "text/plain" else "html", charset=charset, error=error,
        warc_record_id=record_id, mime=mime or None,
    )


def iter_gzip_members(stream, chunk_size: int = 1 << 20) -> Iterator[tuple[bytes | None, bytes, str | None]]:
    """Yield ``(decompressed, raw, error)`` for each gzip member of ``stream``, in order.

    ``raw`` slices are contiguous and cover the whole file, so bytes are never lost or counted
    twice. ``error`` is ``corrupt_gzip_member`` (resynchronised at the next gzip header) or
    ``truncated_archive`` (the file ends inside a member).
    """
    pending = b""
    while True:
        if not pending:
            pending = stream.read(chunk_size)
            if not pending:
                return
        decompressor = zlib.decompressobj(wbits=31)
        raw_parts: list[bytes] = []
        out_parts: list[bytes] = []
        data, pending = pending, b""
        try:
            while True:
                out_parts.append(decompressor.decompress(data))
                if decompressor.eof:
                    used = len(data) - len(decompressor.unused_data)
                    raw_parts.append(data[:used])
                    pending = decompressor.unused_data
                    break
                raw_parts.append(data)
                data = stream.read(chunk_size)
                if not data:
                    yield None, b"".join(raw_parts), "truncated_archive"
                    return
        except zlib.error:
            raw_parts.append(data)
            bad = b"".join(raw_parts)
            searched_from = 1
            while (cut := bad.find(GZIP_MAGIC, searched_from)) < 0:
                more = stream.read(chunk_size)
                if not more:
                    yield None, bad, "corrupt_gzip_member"
                    return
                searched_from = max(1, len(bad) - len(GZIP_MAGIC) + 1)
                bad += more
            yield None, bad[:cut], "corrupt_gzip_member"
            pending = bad[cut:]
            continue
        yield b"".join(out_parts), b"".join(raw_parts), None


def _record_documents(records: ArchiveIterator, file: InputFile, first_position: int) -> Iterator[Document]:
    position = first_position
    for record in records:
        if record.rec_type not in DOCUMENT_RECORD_TYPES:
            continue
        http = record.http_headers
        if http is None and (record.rec_headers.get_header("Content-Type") or "").startswith("application/http"):
            # warcio parses the HTTP block only for http(s) target URIs; file:// and others need it here
            http = record.http_headers = _HTTP_PARSER.parse(record.raw_stream)
        content_type = http.get_header("Content-Type") if http else record.rec_headers.get_header("Content-Type")
        try:
            raw, error = record.content_stream().read(), None
        except Exception as exc:  # bad chunked or content-encoded payload: keep what the record held
            raw, error = record.raw_stream.read(), f"corrupt_record:{type(exc).__name__}"
        if record.raw_stream.limit > 0:  # the archive ended before the record's Content-Length
            error = "corrupt_record:truncated"
        status = http.get_statuscode() if http else "200"
        if error is None and status != "200":
            error = f"http_status:{status}"
        headers = record.rec_headers
        yield record_document(raw, file, position, headers.get_header("WARC-Target-URI"), content_type, headers.get_header("WARC-Record-ID"), error)
        position += 1


def _read_uncompressed(stream, file: InputFile) -> Iterator[Document]:
    """An uncompressed WARC: records up to the first that does not parse, then the rest as one error document."""
    records = ArchiveIterator(stream, check_digests=False)
    position = 0
    try:
        for doc in _record_documents(records, file, 0):
            yield doc
            position += 1
    except Exception as exc:  # not a WARC at all, or garbage after some records: the rest is counted, not lost
        logger.warning("%s: unreadable from byte %d on (%s: %s)", file.path, records.offset, type(exc).__name__, exc)
        yield raw_document(read_rest(file.open_path(), records.offset), file, position, None, error=f"corrupt_record:{type(exc).__name__}")


def read_warc(file: InputFile) -> Iterator[Document]:
    """Yield one undecoded document per response/resource record; corrupt parts become error documents.

    Request, metadata, warcinfo and revisit records carry no page of their own and are not documents.
    """
    position = 0
    with open_input(file.open_path()) as stream:
        # gzip by its magic; or by its name when a gzip header follows soon: a .gz whose first bytes
        # are damaged resynchronises at its next member instead of being parsed as one uncompressed,
        # unreadable record (and an uncompressed WARC misnamed .gz is still read as one)
        head = stream.read(1 << 16)
        if not head.startswith(GZIP_MAGIC) and not (file.path.endswith(".gz") and GZIP_MAGIC in head):
            stream.seek(0)
            yield from _read_uncompressed(stream, file)
            return
        stream.seek(0)
        for decompressed, raw, error in iter_gzip_members(stream):
            if error is None:
                try:
                    docs = list(_record_documents(ArchiveIterator(io.BytesIO(decompressed), check_digests=False), file, position))
                except Exception as exc:  # a member that decompresses but is not a WARC record
                    docs = [raw_document(raw, file, position, None, error=f"corrupt_record:{type(exc).__name__}")]
            else:
                logger.warning("%s: %s (%d bytes) at record %d", file.path, error, len(raw), position)
                docs = [raw_document(raw, file, position, None, error=error)]
            yield from docs
            position += len(docs)
