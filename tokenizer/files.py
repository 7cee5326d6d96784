"""Writing a file so that a reader, or a resumed run, sees all of it or none of it.

Every output of a run is written to ``<name>.tmp`` beside its final path and renamed onto it when
complete: a rename is atomic on a POSIX filesystem, so a killed task leaves at worst a ``.tmp``
that the next attempt overwrites.

The one helper for it, in ``tokenizer/`` because every writer may import this package: the curation
blocks, the pipelines, the token shards here and the trainer (which must not import the curation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_path(path: Path, unique: bool = False) -> Path:
    # ``unique``: several processes may write the same file at once (the ranks of a node fetching
    # one shard), and each needs a temporary file of its own
    return path.with_name(f"{path.name}.{os.getpid()}.tmp" if unique else f"{path.name}.tmp")


@contextmanager
def atomic_path(path: str | Path, unique: bool = False) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed onto ``path`` when the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path, unique)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """``data`` to ``path``, flushed to disk before the rename (markers must survive a crash)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: str | Path, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())
