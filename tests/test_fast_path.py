"""The fast path is a config choice that changes speed, not the documents read: FastWARC yields what
warcio yields, document by document, on intact, cut and corrupted archives; resiliparse extraction
runs in the same CPU-limited child as trafilatura."""

from __future__ import annotations

import glob

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from curation.extraction.extract import TextExtraction
from curation.readers import InputFile, read_file
from curation.readers.warc import read_warc
from curation.core.stage import RAW_KEY, READ_ERROR_KEY
from tests.conftest import REAL_CRAWL, ROOT

CRAWL = REAL_CRAWL.read_bytes()
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _docs(path: str, reader: str) -> list[tuple]:
    file = InputFile(path, "s", "general", "warc", options={"warc_reader": reader})
    return [(d.id, d.metadata.get("url"), d.metadata.get(RAW_KEY), d.metadata.get(READ_ERROR_KEY), d.metadata.get("declared_charset"),
             d.metadata.get("content_type"), d.metadata.get("mime"), d.metadata.get("warc_record_id")) for d in read_file(file)]


def test_fastwarc_reads_the_bundled_warcs_exactly_as_warcio():
    paths = sorted(glob.glob(str(ROOT / "data" / "sample_corpus" / "warc" / "*.warc.gz"))) + [str(REAL_CRAWL)]
    for path in paths:
        assert _docs(path, "fastwarc") == _docs(path, "warcio"), path


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(CRAWL)), flips=st.lists(st.tuples(st.integers(0, len(CRAWL) - 1), st.integers(1, 255)), max_size=5))
@example(cut=len(CRAWL), flips=[(0, 1)])
@example(cut=len(CRAWL) // 2, flips=[])
def test_fastwarc_matches_warcio_on_cut_and_corrupted_archives(tmp_path_factory, cut, flips):
    data = bytearray(CRAWL[:cut])
    for pos, xor in flips:
        if pos < len(data):
            data[pos] ^= xor
    path = tmp_path_factory.mktemp("fw") / "crawl.warc.gz"
    path.write_bytes(bytes(data))
    assert _docs(str(path), "fastwarc") == _docs(str(path), "warcio")


def test_resiliparse_extracts_in_the_limited_child():
    from datatrove.data import Document

    page = "<html><body><nav>Home | About</nav><article>" + "<p>The ledger balances debits and credits every month of the year.</p>" * 20 + "</article></body></html>"
    with TextExtraction(engine="resiliparse") as stage:
        doc = Document(text=page, id="x", metadata={})
        assert stage.apply(doc) is True
        assert "debits and credits" in doc.text and stage._sandbox.process.pid
    assert read_warc  # the reference reader stays importable for the fallback
