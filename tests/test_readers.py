"""Readers on real input: pywb's sample crawl WARC, and JSONL/Parquet/HTML made from its pages."""

import gzip
import json
import shutil
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
from warcio.archiveiterator import ArchiveIterator

from curation.core.stage import RAW_KEY, READ_ERROR_KEY
from curation.readers import InputFile, read_file
from tests.conftest import REAL_CRAWL


def _warc(path=REAL_CRAWL) -> InputFile:
    return InputFile(str(path), "iana", "general", "warc")


def _pages() -> list[tuple[str, bytes]]:
    pages = []
    for d in read_file(_warc()):
        if d.metadata.get(READ_ERROR_KEY) is None:
            pages.append((d.metadata["url"], d.metadata[RAW_KEY]))
    return pages


def test_warc_reader_yields_every_response_record_with_a_stable_id():
    with open(REAL_CRAWL, "rb") as f:
        responses = sum(1 for r in ArchiveIterator(f) if r.rec_type in ("response", "resource"))
    docs = list(read_file(_warc()))
    assert len(docs) == responses > 20
    assert [d.id for d in docs] == [d.id for d in read_file(_warc())]
    assert len({d.id for d in docs}) == len(docs)
    errors = Counter(d.metadata.get(READ_ERROR_KEY) for d in docs)
    # the real crawl holds redirects and scripts/images next to its HTML pages
    assert errors[None] >= 15 and errors["unsupported_content_type"] > 0 and errors["http_status:302"] > 0
    html = [d for d in docs if d.metadata.get(READ_ERROR_KEY) is None]
    assert all(d.metadata["url"].startswith("http") for d in html)
    assert all(d.metadata["domain"] == "general" and d.metadata["source"] == "iana" for d in docs)


def test_truncated_warc_keeps_the_records_before_the_break_and_counts_the_rest(tmp_path):
    data = REAL_CRAWL.read_bytes()
    broken = tmp_path / "broken.warc.gz"
    broken.write_bytes(data[: len(data) // 2])
    full = list(read_file(_warc()))
    docs = list(read_file(_warc(broken)))
    assert docs[-1].metadata[READ_ERROR_KEY] == "truncated_archive"
    assert len(docs[-1].metadata[RAW_KEY]) > 0  # the unreadable tail is kept, not dropped
    intact = docs[:-1]
    assert 0 < len(intact) < len(full)
    key = lambda d: (d.id.rsplit("#", 1)[1], d.metadata["url"], d.metadata[RAW_KEY])
    assert [key(d) for d in intact] == [key(d) for d in full[: len(intact)]]


def test_garbage_in_the_middle_of_a_warc_is_counted_not_fatal(tmp_path):
    data = REAL_CRAWL.read_bytes()
    broken = tmp_path / "garbage.warc.gz"
    cut = len(data) // 3
    broken.write_bytes(data[:cut] + b"\x00garbage that is not gzip\x00" * 50 + data[cut:])
    docs = list(read_file(_warc(broken)))
    full = list(read_file(_warc()))
    corrupt = [d for d in docs if d.metadata.get(READ_ERROR_KEY) == "corrupt_gzip_member"]
    assert len(corrupt) >= 1
    assert sum(len(d.metadata[RAW_KEY]) for d in corrupt) >= 50 * 26  # the garbage is kept, not dropped
    # the reader resynchronises after the garbage: every record of the intact file is still read
    good = lambda ds: [(d.metadata["url"], d.metadata[RAW_KEY]) for d in ds if d.metadata.get(READ_ERROR_KEY) != "corrupt_gzip_member"]
    assert len(good(docs)) >= len(full) - 1
    assert set(good(docs)) <= set(good(full))


def test_jsonl_reader_reads_pages_and_counts_bad_lines(tmp_path):
    pages = _pages()
    path = tmp_path / "pages.jsonl.gz"
    lines = [json.dumps({"url": u, "text": raw.decode("utf-8")}).encode() for u, raw in pages]
    lines.insert(1, b'{"url": "broken", "text": "no closing brace"')
    lines.insert(2, json.dumps({"url": "x", "text": 42}).encode())
    lines.insert(3, json.dumps({"url": "y"}).encode())
    lines.insert(4, b'"a string, not an object"')
    lines.insert(5, json.dumps({"text": "lone surrogate \ud800 here"}).encode())
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    docs = list(read_file(InputFile(str(path), "pages", "general", "jsonl")))
    assert len(docs) == len(lines)
    errors = [d.metadata.get(READ_ERROR_KEY) for d in docs]
    assert errors[1:5] == ["malformed_json", "wrong_type:text", "missing_field:text", "malformed_json:not_an_object"]
    assert errors[5] is None  # read fine; the read stage rejects it as undecodable
    assert [d.metadata[RAW_KEY] for d in docs if d.metadata["url"] == pages[0][0]] == [pages[0][1]]


def test_truncated_jsonl_gzip_is_counted(tmp_path):
    pages = _pages()
    payload = gzip.compress(b"\n".join(json.dumps({"text": raw.decode()}).encode() for _, raw in pages))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(payload[: len(payload) // 2])
    docs = list(read_file(InputFile(str(path), "cut", "general", "jsonl")))
    assert docs[-1].metadata[READ_ERROR_KEY].startswith("corrupt_archive")
    assert len(docs) >= 2


def test_parquet_reader_reads_pages_and_reports_a_missing_column(tmp_path):
    pages = _pages()
    path = tmp_path / "pages.parquet"
    pq.write_table(pa.table({"url": [u for u, _ in pages], "text": [raw.decode() for _, raw in pages]}), path, row_group_size=4)
    docs = list(read_file(InputFile(str(path), "pq", "general", "parquet", options={"batch_size": 3})))
    assert [d.metadata[RAW_KEY] for d in docs] == [raw for _, raw in pages]
    missing = list(read_file(InputFile(str(path), "pq", "general", "parquet", options={"text_field": "body"})))
    assert [d.metadata[READ_ERROR_KEY] for d in missing] == ["missing_field:body"]
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(REAL_CRAWL.read_bytes()[:5000])
    assert [d.metadata[READ_ERROR_KEY] for d in read_file(InputFile(str(garbage), "pq", "general", "parquet"))] == ["corrupt_archive"]


def test_html_folder_reader(tmp_path):
    pages = _pages()[:5]
    for i, (_, raw) in enumerate(pages):
        sub = tmp_path / f"site{i % 2}"
        sub.mkdir(exist_ok=True)
        (sub / f"page{i}.html").write_bytes(raw)
    (tmp_path / "notes.txt").write_text("not html")
    docs = list(read_file(InputFile(str(tmp_path), "folder", "general", "html")))
    assert len(docs) == 5
    assert docs[0].id == "folder/site0/page0.html#0" and docs[0].metadata["url"].startswith("file://")
    shutil.rmtree(tmp_path / "site1")
    assert len(list(read_file(InputFile(str(tmp_path), "folder", "general", "html")))) == 3
