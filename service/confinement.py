"""Keeping every path a job touches inside the data roots, decided by the config's own types.

A config field that holds a path says so in its schema (``json_schema_extra={"path": ...}``):
``read`` fields are inputs and must resolve inside a data root, and so must every file a glob or a
folder among them yields (symlinks resolved); ``write`` and ``roots`` fields are set by the service
and never taken from a request. The check walks the *resolved* config, so a whole section given at
once (``data={manifest: ...}``) is checked like a dotted override. A field with a path marker that
this module does not know is an error, so a new kind of path cannot slip through unconfined.

An object store URL (``s3://bucket/key``) is confined by prefix: it must lie under one of the
service's store roots (``s3://bucket/prefix`` URLs among the roots), with its ``..`` resolved
first. A store has no symlinks, so everything a URL glob yields lies under the glob's fixed prefix
and nothing needs listing; a URL of any other protocol is refused.
"""

from __future__ import annotations

import glob
import os
import types
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from curation.readers.base import OutsideDataRoots, inside_roots
from tokenizer.storage import is_remote
from tokenizer.store_path import StorePath

KINDS = ("read", "write", "roots")
MAX_WALKED_FILES = 1_000_000  # a folder or glob yielding more is refused rather than walked for minutes


class PathNotAllowed(Exception):
    def __init__(self, field: str, path: str, roots: list[Path | str], why: str | None = None):
        super().__init__(why or f"{path!r} is outside the data roots {[str(r) for r in roots]}")
        self.field = field


def path_kind(field) -> str | None:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    kind = extra.get("path")
    if kind is not None and kind not in KINDS:
        raise TypeError(f"unknown path marker {kind!r}: add it to service.confinement.KINDS and confine it")
    return kind


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models a field's type holds: ``Section``, ``list[Section]``, ``Section | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (list, tuple, typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def path_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted field, kind)`` of every path field of ``model`` and its sections (``*`` for list items)."""
    for name, field in model.model_fields.items():
        kind = path_kind(field)
        if kind:
            yield prefix + name, kind
        for sub in _models_in(field.annotation):
            many = typing.get_origin(field.annotation) in (list, tuple)
            yield from path_fields(sub, f"{prefix}{name}.{'*.' if many else ''}")


def _walk(path: Path) -> Iterator[str]:
    """Every file under a folder, following nothing: each is resolved and checked by the caller."""
    for n, (folder, dirs, files) in enumerate(os.walk(path)):
        for name in dirs + files:
            yield os.path.join(folder, name)
        if n > MAX_WALKED_FILES:
            raise ValueError("too many entries")


def confine_url(url: str, field: str, roots: list[Path | str]) -> str:
    """``url`` normalized if its fixed part (before any glob character) lies under a store root of
    the same protocol; else ``PathNotAllowed`` naming ``field``."""
    normalized = StorePath(url).url
    fixed = normalized.split("*")[0].split("?")[0].split("[")[0]
    for root in (StorePath(str(r)).url.rstrip("/") for r in roots if is_remote(str(r))):
        if normalized == root or fixed.startswith(root + "/"):
            return normalized
    stores = [str(r) for r in roots if is_remote(str(r))]
    raise PathNotAllowed(field, url, roots, f"{url!r} is outside the store roots {stores}")


def confine_read(path: str, field: str, roots: list[Path | str], base: Path) -> str:
    """``path`` made absolute if it and everything it yields (glob matches, folder contents) resolve
    inside a data root (a URL: under a store root); else ``PathNotAllowed`` naming ``field``."""
    if not isinstance(path, str) or "\x00" in path:
        raise PathNotAllowed(field, repr(path), roots, "a path must be a string without NUL bytes")
    if is_remote(path):
        return confine_url(path, field, roots)
    roots = [r for r in roots if not is_remote(str(r))]
    parts = (Path(path) if Path(path).is_absolute() else base / path).parts
    k = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    if ".." in parts[k:]:
        raise PathNotAllowed(field, path, roots)
    absolute = str(Path(*parts))
    candidates = [absolute] if k == len(parts) else [Path(*parts[:k]).as_posix()]
    if k < len(parts):
        candidates += glob.glob(absolute, recursive=True)
    try:
        for n, candidate in enumerate(candidates):
            real = _inside(candidate, field, path, roots)
            if os.path.isdir(real) and (n > 0 or k == len(parts)):
                for found in _walk(Path(candidate)):
                    _inside(found, field, path, roots)
    except ValueError:
        raise PathNotAllowed(field, path, roots, f"{path!r} yields more than {MAX_WALKED_FILES} files: name smaller folders") from None
    return absolute


def _inside(candidate: str, field: str, given: str, roots: list[Path | str]) -> str:
    try:
        return inside_roots(candidate, roots)
    except OutsideDataRoots:
        shown = given if candidate in (given, str(Path(given))) else f"{candidate!r} (yielded by {given!r})"
        raise PathNotAllowed(field, shown, roots, f"{shown} is outside the data roots {[str(r) for r in roots]}") from None


def confine_config(model: type[BaseModel], data: dict, roots: list[Path | str], base: Path, where: str, fixed: dict[str, object]) -> dict:
    """``data`` (a dumped config of type ``model``) with every ``read`` path confined and every
    ``write``/``roots`` path replaced by ``fixed[dotted field]``; raises ``PathNotAllowed``."""
    out = dict(data)
    for name, field in model.model_fields.items():
        dotted, value = f"{where}{name}", out.get(name)
        kind = path_kind(field)
        if kind == "read" and value:
            items = value if isinstance(value, list) else [value]
            confined = [confine_read(v, f"{dotted}.{i}" if isinstance(value, list) else dotted, roots, base) for i, v in enumerate(items)]
            out[name] = confined if isinstance(value, list) else confined[0]
        elif kind in ("write", "roots"):
            key = dotted.split(".", 1)[1] if "." in dotted else dotted
            if key not in fixed:
                raise TypeError(f"{dotted} is a {kind} path the service does not set: give it a value in `fixed`")
            out[name] = fixed[key]
        for sub in _models_in(field.annotation):
            if isinstance(value, dict):
                out[name] = confine_config(sub, value, roots, base, f"{dotted}.", fixed)
            elif isinstance(value, list):
                out[name] = [confine_config(sub, v, roots, base, f"{dotted}.{i}.", fixed) if isinstance(v, dict) else v for i, v in enumerate(value)]
    return out


def path_values(model: type[BaseModel], data: dict, where: str = "") -> dict[str, object]:
    """``dotted field -> value`` of every path field in ``data`` (a dumped config of type ``model``),
    list items numbered: two configs whose path values are equal touch the same files."""
    out: dict[str, object] = {}
    for name, field in model.model_fields.items():
        dotted, value = f"{where}{name}", (data or {}).get(name)
        if path_kind(field):
            out[dotted] = value
        for sub in _models_in(field.annotation):
            if isinstance(value, dict):
                out.update(path_values(sub, value, f"{dotted}."))
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    out.update(path_values(sub, item, f"{dotted}.{i}.") if isinstance(item, dict) else {})
    return out
