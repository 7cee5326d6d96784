"""Live progress of a run, written to ``<run>/progress.json`` as its Ray tasks complete.

The service reads this file to report per-stage progress while a job runs; the console has its
progress bars. One small JSON file rewritten atomically after each finished task is cheap next to
the tasks themselves (a shard of documents each) and needs no channel between the job and the API.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tokenizer.files import atomic_write_json
from tokenizer.store_path import as_path

_current: contextvars.ContextVar[ProgressLog | None] = contextvars.ContextVar("progress_log", default=None)


class ProgressLog:
    """Steps in the order they started, each with tasks done and total."""

    def __init__(self, path: Path):
        self.path = as_path(path)
        self.steps: dict[str, dict] = {}
        self.started = time.time()

    def start(self, step: str, total: int, done: int = 0) -> None:
        self.steps[step] = {"done": done, "total": total, "started": time.time(), "finished": None}
        self._write()

    def advance(self, step: str, n: int = 1) -> None:
        entry = self.steps[step]
        entry["done"] += n
        if entry["done"] >= entry["total"]:
            entry["finished"] = time.time()
        self._write()

    def _write(self) -> None:
        atomic_write_json(self.path, {"started": self.started, "updated": time.time(), "steps": [{"name": k, **v} for k, v in self.steps.items()]})


@contextmanager
def record_progress(path: Path) -> Iterator[ProgressLog]:
    """Within this block, ``run_tasks`` reports every step to ``path``."""
    log = ProgressLog(path)
    token = _current.set(log)
    try:
        yield log
    finally:
        _current.reset(token)


def current_progress() -> ProgressLog | None:
    return _current.get()
