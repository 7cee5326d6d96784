"""Readers turn input files into undecoded documents; see ``base.raw_document``."""

from collections.abc import Callable, Iterator

from datatrove.data import Document

from curation.readers.base import InputFile
from curation.readers.fastwarc_reader import read_warc_fastwarc
from curation.readers.html_folder import read_html_folder
from curation.readers.jsonl import read_jsonl
from curation.readers.parquet import read_parquet
from curation.readers.warc import read_warc

READERS: dict[str, Callable[[InputFile], Iterator[Document]]] = {
    "warc": read_warc,
    "jsonl": read_jsonl,
    "parquet": read_parquet,
    "html": read_html_folder,
}


def read_file(file: InputFile) -> Iterator[Document]:
    if file.format == "warc" and file.options.get("warc_reader") == "fastwarc":
        return read_warc_fastwarc(file)
    return READERS[file.format](file)


__all__ = ["InputFile", "READERS", "read_file"]
