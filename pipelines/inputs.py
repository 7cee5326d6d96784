"""Expanding the configured sources into input files: the units of parallel work."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from curation.core.document import UNTAGGED
from curation.readers import InputFile
from pipelines.config import ConfigError, WebCorpusConfig


@dataclass(frozen=True)
class Shard:
    """An input file and the name its outputs carry in the run directory."""

    name: str
    file: InputFile


def list_shards(cfg: WebCorpusConfig) -> list[Shard]:
    shards: list[Shard] = []
    for i, source in enumerate(cfg.sources):
        paths: list[str] = []
        for pattern in source.paths:
            matched = sorted(glob.glob(pattern, recursive=True))
            if source.format == "html":
                matched = [p for p in matched if Path(p).is_dir()]
            else:
                matched = [p for p in matched if Path(p).is_file()]
            paths.extend(matched)
        if not paths:
            kind = "folder" if source.format == "html" else "file"
            raise ConfigError(f"sources.{i}.paths: no {kind} matches {source.paths} (source {source.name!r})")
        options = {"text_field": source.text_field, "url_field": source.url_field, "id_field": source.id_field}
        for j, path in enumerate(dict.fromkeys(paths)):
            file = InputFile(path, source.name, source.domain or UNTAGGED, source.format, source.content_type, options)
            shards.append(Shard(f"{source.name}-{j:05d}", file))
    return shards
