"""Writing a file so that a reader, or a resumed run, sees all of it or none of it.

On a local filesystem every output of a run is written to ``<name>.tmp`` beside its final path and
renamed onto it when complete: a rename is atomic on a POSIX filesystem, so a killed task leaves at
worst a ``.tmp`` that the next attempt overwrites. An object store has no rename, but an object
appears whole or not at all: the content is staged in a local file and uploaded as one object
(``tokenizer.store_path.written``), so a marker written last still commits the work before it.

The one helper for it, in ``tokenizer/`` because every writer may import this package: the curation
blocks, the pipelines, the token shards here and the trainer (which must not import the curation).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tokenizer.store_path import StorePath, as_path, written

logger = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: str | Path | StorePath, unique: bool = False) -> Iterator[Path]:
    """A local path to write ``path``'s content to; put in place when the block completes.

    ``unique``: several processes may write the same file at once (the ranks of a node fetching
    one shard), and each needs a temporary file of its own."""
    with written(as_path(path), unique) as tmp:
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


def write_error(folder: str | Path | StorePath, message: str) -> None:
    """``message`` in ``<folder>/error.txt``, local or on a store: what the service shows a client of a
    failed job (not the job's log). A failure to write it is logged, not raised: the process is
    failing already, and its own message still reaches the log."""
    try:
        folder = as_path(folder)  # a URL is written to its store, not to a local folder named ``s3:``
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.txt").write_text(message)
    except OSError as exc:
        logger.warning("cannot write %s/error.txt: %s", folder, exc)
