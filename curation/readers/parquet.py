"""Parquet reader (pyarrow): one document per row, read a record batch at a time."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document

from curation.readers.base import InputFile, open_input, raw_document, read_rest
from tokenizer.storage import is_remote


def read_parquet(file: InputFile) -> Iterator[Document]:
    """Options: ``text_field`` (default "text"), ``url_field`` (default "url"), ``batch_size``."""
    text_field = file.options.get("text_field", "text")
    url_field = file.options.get("url_field", "url")
    path = file.open_path()
    try:
        parquet = pq.ParquetFile(open_input(path) if is_remote(path) else path)
        if text_field not in parquet.schema_arrow.names:
            raise KeyError(text_field)
    except KeyError:
        yield raw_document(b"", file, 0, None, error=f"missing_field:{text_field}")
        return
    except (pa.ArrowException, OSError):
        yield raw_document(read_rest(path, 0), file, 0, None, error="corrupt_archive")
        return
    columns = [c for c in (text_field, url_field) if c in parquet.schema_arrow.names]
    position = 0
    try:
        for batch in parquet.iter_batches(batch_size=file.options.get("batch_size", 1024), columns=columns):
            texts = batch.column(text_field).to_pylist()
            urls = batch.column(url_field).to_pylist() if url_field in columns else [None] * len(texts)
            for text, url in zip(texts, urls):
                if isinstance(text, bytes):
                    yield raw_document(text, file, position, url)
                elif isinstance(text, str):
                    yield raw_document(text.encode("utf-8", errors="surrogatepass"), file, position, url, charset="utf-8")
                else:
                    yield raw_document(b"", file, position, url, error=f"missing_field:{text_field}")
                position += 1
    except (pa.ArrowException, OSError):
        yield raw_document(b"", file, position, None, error="corrupt_archive")
