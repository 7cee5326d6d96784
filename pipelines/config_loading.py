"""Reading a run's config: a YAML file, ``section.field=value`` overrides on top, clear errors out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipelines.config import CHECK_FILES, ConfigError, WebCorpusConfig
from tokenizer.store_path import as_path


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {field}: {e['msg']} (got {e.get('input')!r})")
    return "invalid configuration:\n" + "\n".join(lines)


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> dict:
    """``["quality.gopher_quality.min_doc_words=80", "language.languages=[en, de]"]`` → a nested dict.

    Values are read as YAML, so numbers, booleans, lists and ``null`` work as expected.
    """
    tree: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.field=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from exc
        _set_path(tree, key.strip(), value)
    return tree


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> WebCorpusConfig:
    """Build the run config from an optional YAML file and ``section.field=value`` overrides."""
    tree: dict = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(as_path(path).read_text())  # a job config may lie on the store
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
        tree = loaded or {}
    tree = _deep_merge(tree, parse_overrides(overrides or []))
    try:
        return WebCorpusConfig.model_validate(tree, context=CHECK_FILES)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
