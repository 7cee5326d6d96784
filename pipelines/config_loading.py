"""Reading a run's config: a YAML file, ``section.field=value`` overrides on top (``configs.overrides``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from configs.overrides import Override, load
from pipelines.config import CHECK_FILES, WebCorpusConfig


def load_config(path: str | Path | None = None, overrides: Iterable[Override] | None = None) -> WebCorpusConfig:
    """Build the run config from an optional YAML file and ``section.field=value`` overrides, files
    opened (model cards) while validating."""
    return load(WebCorpusConfig, {}, path, overrides or [], context=CHECK_FILES)
