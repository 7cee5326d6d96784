"""Expanding a run's ``sources`` into input files: the units of parallel work."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from configs.overrides import ConfigError
from curation.core.document import UNTAGGED
from curation.readers.base import InputFile, OutsideDataRoots, inside_roots
from curation.readers.params import ReadConfig, SourceConfig
from tokenizer.storage import is_remote
from tokenizer.store_path import glob_urls


@dataclass(frozen=True)
class Shard:
    """An input file and the name its outputs carry in the run directory."""

    name: str
    file: InputFile


def list_shards(sources: list[SourceConfig], read: ReadConfig, data_roots: list[str] | None = None) -> list[Shard]:
    """Every input file of every source; with ``data_roots`` set, each file a glob yields must resolve
    inside one of them (checked here and again by the reader as it opens the file)."""
    roots = tuple(data_roots or ())
    shards: list[Shard] = []
    for i, source in enumerate(sources):
        paths: list[str] = []
        for pattern in source.paths:
            matched = _matches(pattern, folders=source.format == "html")
            for path in matched if roots else ():
                try:
                    inside_roots(path, roots)
                except OutsideDataRoots as exc:
                    raise ConfigError(f"sources.{i}.paths: {pattern!r} matched {path!r}: {exc}") from None
            paths.extend(matched)
        if not paths:
            kind = "folder" if source.format == "html" else "file"
            raise ConfigError(f"sources.{i}.paths: no {kind} matches {source.paths} (source {source.name!r})")
        options = {"text_field": source.text_field, "url_field": source.url_field, "id_field": source.id_field, "warc_reader": read.warc_reader}
        for j, path in enumerate(dict.fromkeys(paths)):
            file = InputFile(path, source.name, source.domain or UNTAGGED, source.format, source.content_type, options, roots)
            shards.append(Shard(f"{source.name}-{j:05d}", file))
    return shards


def _matches(pattern: str, folders: bool) -> list[str]:
    """The files (or folders) a local glob or a URL glob (``s3://bucket/crawl/*.warc.gz``) matches."""
    if is_remote(pattern):
        return glob_urls(pattern, "directory" if folders else "file")
    matched = sorted(glob.glob(pattern, recursive=True))
    return [p for p in matched if (Path(p).is_dir() if folders else Path(p).is_file())]
