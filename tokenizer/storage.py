"""Where the product's files live: a local folder or any fsspec filesystem (``s3://...``).

This module is shared by the curation side (sources, the run directory) and the trainer (token
shards, checkpoints). It lives in ``tokenizer/`` because that is the one package both sides may
import (DESIGN: the trainer must not import curation or pipelines; both read the token shard
format from here), and because the token shards are what crosses the store between them.

Credentials and the endpoint come only from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3, as botocore reads them), never from
a config, so they cannot reach a config file, a log line or an API response.

Transient store errors (5xx, throttling, timeouts, dropped connections) are retried by botocore's
"standard" retry mode, with exponential backoff and jitter; every failed attempt it retries is
counted here per kind (``STATS``), through botocore's ``needs-retry`` event, so that the count
covers every request of the process, also those a library (pyarrow, torch's DCP) makes through
fsspec. A permanent error (403, 404, retries exhausted) propagates with the object's name.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from pathlib import Path

import fsspec
from fsspec.core import url_to_fs

logger = logging.getLogger(__name__)

# attempts per request, the first included; botocore's standard mode waits up to 2**n s (capped at
# 20 s, with full jitter) before the n-th retry. TRAINER_STORE_ATTEMPTS is the older name.
STORE_ATTEMPTS = int(os.environ.get("STORE_ATTEMPTS") or os.environ.get("TRAINER_STORE_ATTEMPTS") or "10")
CACHE_ENV = "TRAINER_CACHE_DIR"


class StoreStats:
    """Transient failures retried, per kind (an HTTP status or an exception's class), in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self.retried: Counter = Counter()

    def count(self, kind: str) -> None:
        with self._lock:
            self.retried[kind] += 1

    def counts(self) -> Counter:
        with self._lock:
            return Counter(self.retried)

    def snapshot(self) -> dict:
        return summary(self.counts())


def summary(retried: Counter) -> dict:
    """The figure a report shows: retries in all, and per kind."""
    return {"retried": sum(retried.values()), "by_kind": dict(sorted(retried.items()))}


STATS = StoreStats()


def is_remote(url: str | os.PathLike) -> bool:
    """Whether ``url`` names a filesystem other than the local one (``s3://b/x``, ``memory://x``)."""
    protocol, sep, _ = str(url).partition("://")
    return bool(sep) and protocol not in ("file", "local")


def _count_retry(attempts=None, response=None, caught_exception=None, **_):
    """botocore asks every ``needs-retry`` handler; this one only counts and never decides (None)."""
    if caught_exception is not None:
        STATS.count(type(caught_exception).__name__)
    elif response is not None:
        status = response[0].status_code if response[0] is not None else 0
        code = (response[1] or {}).get("Error", {}).get("Code") if isinstance(response[1], dict) else None
        if status >= 500 or status == 429 or code in ("Throttling", "ThrottlingException", "SlowDown", "RequestTimeout"):
            STATS.count(str(code or status))


_session = None


def _s3_session():
    """One aiobotocore session per process: clients copy its event handlers when they are made."""
    global _session
    if _session is None:
        from aiobotocore.session import AioSession

        _session = AioSession()
        _session.register("needs-retry.s3", _count_retry)
    return _session


def store_options(url: str, counted: bool = True) -> dict:
    """Filesystem options for ``url`` (none for local paths): retries, no listing cache (another
    process writes what this one lists). ``counted=False`` for a filesystem that is pickled to
    another process (Ray Train's storage): a botocore session does not unpickle."""
    protocol = str(url).partition("://")[0] if is_remote(url) else "file"
    if protocol in ("s3", "s3a"):
        return {**({"session": _s3_session()} if counted else {}), "use_listings_cache": False,
                "config_kwargs": {"retries": {"max_attempts": STORE_ATTEMPTS, "mode": "standard"}}}
    return {}


def filesystem(url: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path within it) of a local path or URL; fsspec caches the instance per process."""
    return url_to_fs(str(url), **store_options(str(url)))


def join(url: str, *parts: str) -> str:
    return "/".join([str(url).rstrip("/"), *parts])


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    return fs.cat_file(path)


def write_bytes(url: str, data: bytes) -> None:
    """One PUT on an object store (atomic: readers see the old object or the new one)."""
    fs, path = filesystem(url)
    if not is_remote(url):  # a store has no folders to make; a local filesystem does
        fs.makedirs(fs._parent(path), exist_ok=True)
    fs.pipe_file(path, data)


def cache_root() -> Path:
    """A node-local folder for copies of stored objects a library must open as files."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "curation-to-pretraining")
