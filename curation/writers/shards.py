"""Document shards on disk: Parquet files written atomically, in bounded-memory row groups.

A shard is written to ``<name>.tmp`` and renamed into place only when complete (on an object store:
staged in a local file and uploaded as one object), so a reader, or a resumed run, never sees half
a shard.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document

from curation.core.document import DOCUMENT_SCHEMA, REJECTED_SCHEMA, documents_to_table, rejected_to_table, table_to_documents
from tokenizer.store_path import StagedFile, StorePath, as_path, readable


class ShardWriter:
    """Buffers rows and flushes a row group every ``rows_per_group`` rows or ``bytes_per_group`` bytes."""

    def __init__(self, path: str | Path | StorePath, schema: pa.Schema, rows_per_group: int = 2048, bytes_per_group: int = 64 << 20):
        self.path = as_path(path)
        self.schema = schema
        self.rows_per_group = rows_per_group
        self.bytes_per_group = bytes_per_group
        self._rows: list = []
        self._bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._staged: StagedFile | None = None
        self.rows_written = 0

    def _to_table(self, rows: list) -> pa.Table:
        return documents_to_table(rows) if self.schema is DOCUMENT_SCHEMA else rejected_to_table(rows)

    def add(self, row, size: int = 0) -> None:
        self._rows.append(row)
        self._bytes += size
        if len(self._rows) >= self.rows_per_group or self._bytes >= self.bytes_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            self._staged = StagedFile(self.path)
            self._writer = pq.ParquetWriter(self._staged.tmp, self.schema, compression="zstd")
        if self._rows:
            self._writer.write_table(self._to_table(self._rows))
            self.rows_written += len(self._rows)
        self._rows, self._bytes = [], 0

    def commit(self, keep_empty: bool = True) -> Path | StorePath | None:
        """Finish the file and move it into place; an empty shard is written only if ``keep_empty``."""
        if self._writer is None and not self._rows and not keep_empty:
            return None
        self._flush()
        self._writer.close()
        self._staged.commit()
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._staged is not None:
            self._staged.abort()


def document_writer(path: str | Path | StorePath) -> ShardWriter:
    return ShardWriter(path, DOCUMENT_SCHEMA)


def rejected_writer(path: str | Path | StorePath) -> ShardWriter:
    return ShardWriter(path, REJECTED_SCHEMA)


def read_documents(path: str | Path | StorePath, batch_size: int = 1024) -> Iterator[Document]:
    """Stream the documents of a shard a record batch at a time."""
    for batch in pq.ParquetFile(readable(as_path(path))).iter_batches(batch_size=batch_size):
        yield from table_to_documents(pa.Table.from_batches([batch]))
