"""The trainer's view of where a run lives: a local folder or any fsspec filesystem (``s3://...``).

The store itself (credentials and endpoint from the environment only, retries with backoff,
counted per kind) is ``tokenizer.storage``, shared with the curation side.

Token shards are memory-mapped (``tokenizer.shards.TokenShard``), which an object store cannot
offer: a remote manifest's shards are downloaded once per node into a local cache, checked
against the manifest's sizes and hashes, before training, as most trainers do with object storage.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

# the store's core (credentials from the environment, retries counted) is shared with the curation
# side, so it lives in the one package both may import; these names are the trainer's API too
from tokenizer.storage import (  # noqa: F401
    CACHE_ENV,
    STATS,
    STORE_ATTEMPTS,
    StoreStats,
    cache_root,
    filesystem,
    is_remote,
    join,
    read_bytes,
    store_options,
    write_bytes,
)

from tokenizer.files import atomic_path

logger = logging.getLogger(__name__)


def remote_manifest_url(data: str) -> str:
    """``data.manifest`` on a store: a manifest.json, or the tokens/ prefix that holds it."""
    return data if data.rstrip("/").endswith(".json") else join(data, "manifest.json")


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
