"""The token shard format: Arrow IPC files with one row per document, read by memory map.

A shard holds ``tokens: list<uint16|uint32>`` (EOS already appended), ``domain`` and ``doc_id``,
written as a single record batch, so that a reader maps the file and sees the whole flat token
array and the document offsets as numpy views, without copying or decoding anything.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from tokenizer.store_path import StorePath, as_path, local_copy, written


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocabulary up to 65,536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def shard_schema(dtype: np.dtype) -> pa.Schema:
    return pa.schema(
        [("tokens", pa.list_(pa.from_numpy_dtype(dtype))), ("domain", pa.string()), ("doc_id", pa.string())]
    )


def _write_atomically(path: Path | StorePath, batch: pa.RecordBatch) -> tuple[str, int]:
    """(sha256, size) of the file, measured before it is put in place: renamed, or uploaded as
    one object, when complete, as every output of a run is (``tokenizer.store_path.written``)."""
    with written(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_batch(batch)
        measured = file_sha256(tmp), tmp.stat().st_size
    return measured


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_token_shard(path: Path | StorePath, docs: Sequence[tuple[np.ndarray, str, str]], dtype: np.dtype) -> dict:
    """Write (tokens with EOS, domain, doc id) rows atomically; return the shard's manifest entry."""
    lengths = np.array([len(t) for t, _, _ in docs], dtype=np.int64)
    flat = np.concatenate([t for t, _, _ in docs]).astype(dtype) if docs else np.empty(0, dtype)
    return write_flat_token_shard(path, flat, lengths, [d for _, d, _ in docs], [i for _, _, i in docs])


def write_flat_token_shard(path: Path | StorePath, flat: np.ndarray, lengths: np.ndarray, domains: list[str], doc_ids: list[str]) -> dict:
    """The same from one flat token array and per-document lengths (no per-document arrays)."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
    batch = pa.record_batch(
        [tokens, pa.array(domains, pa.string()), pa.array(doc_ids, pa.string())], schema=shard_schema(flat.dtype)
    )
    path = as_path(path)
    sha256, size = _write_atomically(path, batch)
    per_domain: dict[str, dict[str, int]] = defaultdict(lambda: {"documents": 0, "tokens": 0})
    for domain, n in zip(domains, lengths.tolist()):
        per_domain[domain]["documents"] += 1
        per_domain[domain]["tokens"] += n
    return {
        "file": path.name,
        "sha256": sha256,
        "bytes": size,
        "documents": len(domains),
        "tokens": int(lengths.sum()),
        "domains": dict(sorted(per_domain.items())),
    }


@dataclass
class TokenShard:
    """A memory-mapped shard: ``tokens`` is the flat token array, ``offsets`` the document bounds.
    A shard on a store is mapped from a node-local copy (a store offers no memory map)."""

    path: Path

    def __post_init__(self):
        self.path = local_copy(as_path(self.path))
        self._source = pa.memory_map(str(self.path), "r")
        reader = pa.ipc.open_file(self._source)
        if reader.num_record_batches != 1:
            raise ValueError(f"{self.path}: a token shard holds one record batch, found {reader.num_record_batches}")
        batch = reader.get_batch(0)
        column = batch.column(0)
        self.tokens: np.ndarray = column.values.to_numpy(zero_copy_only=True)
        self.offsets: np.ndarray = column.offsets.to_numpy(zero_copy_only=True)
        self.domains: pa.Array = batch.column(1)
        self.doc_ids: pa.Array = batch.column(2)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def document(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def cut_into_shards(entries: list, sizes: list[int], shard_tokens: int) -> list[list]:
    """Consecutive groups of ``entries``; a group closes after the entry that brings it to ``shard_tokens``."""
    shards, current, total = [], [], 0
    for entry, size in zip(entries, sizes):
        current.append(entry)
        total += size
        if total >= shard_tokens:
            shards.append(current)
            current, total = [], 0
    if current:
        shards.append(current)
    return shards


def write_gathered_shard(path: Path | StorePath, sources: dict[str, Path | StorePath], entries: list[tuple[str, int]], eos: int, dtype_name: str) -> dict:
    """A shard of the documents ``(source, row)`` of memory-mapped source shards, in the given order,
    each with EOS appended; returns its manifest entry."""
    dtype = np.dtype(dtype_name)
    staged = {s: TokenShard(sources[s]) for s in sorted({s for s, _ in entries})}
    eos_arr = np.array([eos], dtype=dtype)
    docs = []
    for source, row in entries:
        shard = staged[source]
        docs.append((np.concatenate([shard.document(row), eos_arr]), shard.domains[row].as_py(), shard.doc_ids[row].as_py()))
    return write_token_shard(path, docs, dtype)
