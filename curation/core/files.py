"""Writing a file so that a reader, or a resumed run, sees all of it or none of it.

On a local filesystem every output of a run is written to ``<name>.tmp`` beside its final path and
renamed onto it when complete: a rename is atomic on a POSIX filesystem, so a killed task leaves at
worst a ``.tmp`` that the next attempt overwrites. An object store has no rename, but an object
appears whole or not at all: the content is staged in a local file and uploaded as one object
(``tokenizer.store_path``), so a marker written last still commits the work before it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tokenizer.store_path import StorePath, as_path, written


def temporary_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


@contextmanager
def atomic_path(path: str | Path | StorePath) -> Iterator[Path]:
    """A local path to write ``path``'s content to; put in place when the block completes."""
    with written(as_path(path)) as tmp:
        yield tmp


def atomic_write_bytes(path: str | Path | StorePath, data: bytes) -> None:
    """``data`` to ``path``: flushed to disk before the rename (markers must survive a crash), or
    one PUT on a store."""
    path = as_path(path)
    if isinstance(path, StorePath):
        path.write_bytes(data)
        return
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: str | Path | StorePath, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())
