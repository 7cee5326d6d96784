"""Paths of a run that may live on an object store, with the part of pathlib's API the run uses.

A local path stays a ``pathlib.Path`` (so local runs do exactly what they always did); a URL
(``s3://bucket/runs/x``) becomes a ``StorePath``, which does the same operations through fsspec.
The helpers below take either:

- ``written(path)``: a local file to write into, put in place when complete: renamed locally, or
  uploaded as one object (a PUT, or a multipart upload that appears only when completed). A store
  has no rename, but an object is never seen half-written, so a marker written last still commits.
- ``readable(path)``: what pyarrow opens: the path itself, or a file object streaming the object.
- ``local_copy(path)``: a node-local file for libraries that must open a file (sentencepiece, memory
  maps), downloaded once per object version (its ETag) into the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tokenizer.storage import cache_root, filesystem, is_remote

logger = logging.getLogger(__name__)


class StorePath:
    """A URL on an fsspec filesystem. Holds only the URL, so it pickles to Ray tasks; the
    filesystem is made again in each process. No ``__fspath__``: a local ``open()`` of a URL would
    write a folder named ``s3:`` instead of failing."""

    def __init__(self, url: str):
        protocol, _, rest = str(url).partition("://")
        self.url = f"{protocol}://{posixpath.normpath(rest) if rest else ''}"

    @property
    def fs(self):
        return filesystem(self.url)[0]

    @property
    def path(self) -> str:
        """The path within the filesystem (bucket/key for S3)."""
        return filesystem(self.url)[1]

    def __truediv__(self, part: str | os.PathLike) -> StorePath:
        return StorePath(f"{self.url.rstrip('/')}/{os.fspath(part)}")

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"StorePath({self.url!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, StorePath) and other.url == self.url

    def __lt__(self, other: StorePath) -> bool:
        return self.url < other.url

    def __hash__(self) -> int:
        return hash(self.url)

    name = property(lambda self: posixpath.basename(self.url))
    suffix = property(lambda self: posixpath.splitext(self.name)[1])
    stem = property(lambda self: posixpath.splitext(self.name)[0])

    @property
    def parent(self) -> StorePath:
        return StorePath(posixpath.dirname(self.url))

    def with_name(self, name: str) -> StorePath:
        return self.parent / name

    def relative_to(self, other: StorePath) -> Path:
        return Path(posixpath.relpath(self.url, str(other)))

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def is_file(self) -> bool:
        return self.fs.isfile(self.path)

    def is_dir(self) -> bool:
        return self.fs.isdir(self.path)

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.path)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """One PUT: readers see the old object or the new one, never part of it."""
        self.fs.pipe_file(self.path, data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def open(self, mode: str = "rb"):
        return self.fs.open(self.path, mode)

    def size(self) -> int:
        return int(self.fs.info(self.path)["size"])

    def glob(self, pattern: str) -> list[StorePath]:
        return sorted(self._url(p) for p in self.fs.glob(f"{self.path.rstrip('/')}/{pattern}"))

    def rglob(self, pattern: str) -> list[StorePath]:
        return self.glob(f"**/{pattern}")

    def files(self) -> list[StorePath]:
        """Every object under this prefix (a store's "recursive listing")."""
        return sorted(self._url(p) for p in self.fs.find(self.path))

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """A store has no folders: a prefix exists once an object is under it."""

    def _url(self, path: str) -> StorePath:
        return StorePath(f"{self.url.partition('://')[0]}://{path}")


AnyPath = Path | StorePath


def as_path(path: str | os.PathLike | StorePath) -> AnyPath:
    """A ``StorePath`` for a URL, a ``Path`` for anything else (also ``file://`` URLs)."""
    if isinstance(path, StorePath | Path):
        return path
    text = os.fspath(path)
    if is_remote(text):
        return StorePath(text)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def glob_urls(pattern: str, kind: str | None = None) -> list[str]:
    """The objects (``kind="file"``) or prefixes (``"directory"``) a URL glob matches, as sorted URLs.
    Their kind comes with the listing: probing each one could fail (403) and drop it silently."""
    fs, path = filesystem(pattern)
    protocol = pattern.partition("://")[0]
    found = fs.glob(path, detail=True)
    return sorted(f"{protocol}://{p}" for p, info in found.items() if kind is None or info.get("type") == kind)


def remove_tree(path: AnyPath) -> None:
    """Remove a folder (or prefix) and everything under it; nothing if it does not exist."""
    if isinstance(path, StorePath):
        if path.exists():
            path.fs.rm(path.path, recursive=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


class StagedFile:
    """A local file that becomes ``path`` on ``commit()``: renamed (local) or uploaded (store)."""

    def __init__(self, path: AnyPath, unique: bool = False):
        self.path = path
        if isinstance(path, StorePath):
            fd, tmp = tempfile.mkstemp(prefix="staged-", suffix=f"-{path.name}")
            os.close(fd)
            self.tmp = Path(tmp)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            # unique: for files several processes may write at once, each with a temporary of its own
            self.tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp" if unique else f"{path.name}.tmp")

    def commit(self) -> None:
        if isinstance(self.path, StorePath):
            self.path.fs.put_file(str(self.tmp), self.path.path)
            self.tmp.unlink(missing_ok=True)
        else:
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextmanager
def written(path: AnyPath, unique: bool = False) -> Iterator[Path]:
    """A local file to write ``path``'s content to; put in place when the block completes."""
    staged = StagedFile(as_path(path), unique)
    try:
        yield staged.tmp
    except BaseException:
        staged.abort()
        raise
    staged.commit()


def readable(path: AnyPath):
    """What pyarrow's readers take for ``path``: the local path, or a file object on the store."""
    return path.open("rb") if isinstance(path, StorePath) else path


def local_copy(path: AnyPath) -> Path:
    """A local file with ``path``'s bytes: the path itself, or a copy cached per object version."""
    if not isinstance(path, StorePath):
        return Path(path)
    info = path.fs.info(path.path)
    version = str(info.get("ETag") or info.get("etag") or info.get("mtime") or "") + f":{info.get('size')}"
    key = hashlib.sha256(f"{path.url}\n{version}".encode()).hexdigest()[:24]
    local = cache_root() / "objects" / key / path.name
    if local.is_file() and local.stat().st_size == info.get("size"):
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f"{local.name}.{os.getpid()}.tmp")  # processes of a node may race to fetch it
    path.fs.get_file(path.path, str(tmp))
    os.replace(tmp, local)
    logger.debug("%s cached as %s", path, local)
    return local
