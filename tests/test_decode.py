"""The ``read`` stage on real bytes: charsets, binary payloads, empty and oversized records."""

from pathlib import Path

import pytest

from curation.extraction.decode import DecodeStage, decode, looks_binary
from curation.filters.language import bundled_lid_model
from curation.readers.base import InputFile, raw_document

LICENCE = Path("/usr/share/common-licenses/GPL-3").read_text()
FILE = InputFile("x.warc.gz", "test", "general", "warc")


def _doc(raw: bytes, charset=None, error=None):
    return raw_document(raw, FILE, 0, "file:///x", charset=charset, error=error)


def test_declared_charset_is_used():
    german = "Gebühren für Überweisungen und Währungsumrechnung: Größe €"
    doc = _doc(german.encode("cp1252"), charset="windows-1252")
    assert DecodeStage().apply(doc) is True
    assert doc.text == german and doc.metadata["charset"] == "cp1252"


def test_meta_charset_wins_over_utf8_guess():
    html = '<html><head><meta charset="iso-8859-1"></head><body><p>Café crème – prix</p></body></html>'
    raw = html.replace("–", "-").encode("latin-1")
    text, codec = decode(raw, None)
    assert "Café crème" in text and codec == "iso8859-1"


def test_utf8_without_declaration():
    doc = _doc(LICENCE.encode("utf-8"))
    assert DecodeStage().apply(doc) is True and doc.text == LICENCE


def test_truncated_multibyte_text_is_undecodable():
    # Japanese UTF-8 cut inside a character: every candidate charset (declared, detected) fails
    raw = "日本語の会計マニュアルです。".encode("utf-8") * 20 + "帳".encode("utf-8")[:2]
    assert DecodeStage().apply(_doc(raw, charset="utf-8")) == (False, "undecodable")


def test_binary_payloads_are_rejected():
    model = bundled_lid_model().read_bytes()[:100_000]
    assert looks_binary(model)
    assert DecodeStage().apply(_doc(model)) == (False, "binary_content")
    assert not looks_binary(Path(__file__).read_bytes())


@pytest.mark.parametrize("raw,reason", [(b"", "empty"), (b"   \n\t ", "empty")])
def test_empty_records_are_rejected(raw, reason):
    assert DecodeStage().apply(_doc(raw)) == (False, reason)


def test_oversized_records_are_rejected_before_decoding():
    assert DecodeStage(max_document_bytes=1000).apply(_doc(LICENCE.encode())) == (False, "too_large")


def test_read_errors_become_the_reason():
    assert DecodeStage().apply(_doc(b"junk", error="corrupt_record:ValueError")) == (False, "corrupt_record:ValueError")
