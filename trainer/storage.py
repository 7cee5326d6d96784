"""The trainer's view of where a run lives: a local folder or any fsspec filesystem (``s3://...``).

Credentials and the endpoint come only from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3, as botocore reads them), never from
a config, so they cannot reach a config.json, a log line or an API response.

Transient store errors (5xx, throttling, timeouts, dropped connections) are retried by botocore's
"standard" retry mode, with exponential backoff and jitter; every failed attempt it retries is
counted here per kind (``STATS``), through botocore's ``needs-retry`` event, so that the count
covers every request of the process, also those torch.distributed.checkpoint makes. A permanent
error (403, 404, exhausted retries) propagates with the object's name.

Token shards are memory-mapped (``tokenizer.shards.TokenShard``), which an object store cannot
offer: a remote manifest's shards are downloaded once per node into a local cache, checked
against the manifest's sizes and hashes, before training, as most trainers do with object storage.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import Counter
from pathlib import Path

import fsspec
from fsspec.core import url_to_fs

from tokenizer.files import atomic_path

logger = logging.getLogger(__name__)

# attempts per request, the first included; botocore's standard mode waits up to 2**n s (capped at
# 20 s, with full jitter) before the n-th retry
STORE_ATTEMPTS = int(os.environ.get("TRAINER_STORE_ATTEMPTS", "10"))
CACHE_ENV = "TRAINER_CACHE_DIR"


class StoreStats:
    """Transient failures retried, per kind (an HTTP status or an exception's class), in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self.retried: Counter = Counter()

    def count(self, kind: str) -> None:
        with self._lock:
            self.retried[kind] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {"retried": sum(self.retried.values()), "by_kind": dict(sorted(self.retried.items()))}


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
    process writes the checkpoints this one lists). ``counted=False`` for a filesystem that is
    pickled to another process (Ray Train's storage): a botocore session does not unpickle."""
    protocol = str(url).partition("://")[0] if is_remote(url) else "file"
    if protocol in ("s3", "s3a"):
        return {**({"session": _s3_session()} if counted else {}), "use_listings_cache": False,
                "config_kwargs": {"retries": {"max_attempts": STORE_ATTEMPTS, "mode": "standard"}}}
    return {}


def filesystem(url: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path within it) of a local path or URL."""
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


def remote_manifest_url(data: str) -> str:
    """``data.manifest`` on a store: a manifest.json, or the tokens/ prefix that holds it."""
    return data if data.rstrip("/").endswith(".json") else join(data, "manifest.json")


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "curation-to-pretraining")


def _url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _fetch(fs, remote: str, local: Path, entry: dict) -> None:
    """Download ``remote`` to ``local`` unless an intact copy is there; a temporary name per
    process and a rename, so that workers sharing the node never see half a shard."""
    from tokenizer.shards import file_sha256

    def intact() -> bool:
        if not local.exists() or ("bytes" in entry and local.stat().st_size != entry["bytes"]):
            return False
        return "sha256" not in entry or file_sha256(local) == entry["sha256"]

    if intact():
        return
    with atomic_path(local, unique=True) as tmp:
        fs.get_file(remote, str(tmp))
    if not intact():
        raise OSError(f"{remote}: the downloaded shard does not match its manifest entry (size or sha256)")


def local_manifest(data: str | os.PathLike) -> Path:
    """A local manifest.json for ``data.manifest``: the given one, or a node-local copy of a remote
    manifest with its shards beside it (the manifest names shards relative to itself)."""
    import json

    from trainer.resolve import manifest_file

    if not is_remote(data):
        return manifest_file(data)
    url = remote_manifest_url(str(data))
    fs, path = filesystem(url)
    manifest = json.loads(fs.cat_file(path))
    folder = cache_root() / "tokens" / _url_key(url)
    folder.mkdir(parents=True, exist_ok=True)
    base = path.rsplit("/", 1)[0]
    for entry in manifest["shards"]:
        _fetch(fs, f"{base}/{entry['file']}", folder / entry["file"], entry)
    local = folder / "manifest.json"
    with atomic_path(local, unique=True) as tmp:
        tmp.write_text(json.dumps(manifest))
    logger.info("%d shards of %s cached in %s", len(manifest["shards"]), url, folder)
    return local


def local_out_dir(out_dir: str | os.PathLike, rank: int) -> Path:
    """The folder the trainer writes metrics.jsonl and config.json into: ``out_dir`` itself, or
    for a store a node-local mirror, primed with the store's metrics.jsonl (what a resumed run
    continues) and copied back to the store with each checkpoint (``trainer.store_checkpoint``)."""
    if not is_remote(out_dir):
        return Path(out_dir)
    mirror = cache_root() / "runs" / _url_key(str(out_dir))
    mirror.mkdir(parents=True, exist_ok=True)
    if rank != 0:  # only rank 0 writes metrics: the others must not replace its file under it
        return mirror
    fs, path = filesystem(out_dir)
    local = mirror / "metrics.jsonl"
    if fs.exists(f"{path}/metrics.jsonl"):
        with atomic_path(local, unique=True) as tmp:
            fs.get_file(f"{path}/metrics.jsonl", str(tmp))
    else:  # a mirror left by an earlier run under this name must not leak into this one
        local.unlink(missing_ok=True)
    return mirror
