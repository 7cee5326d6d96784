"""Reading a job's config: YAML, then ``section.field=value`` overrides, validated once into a typed
model; every error names the field. The curation run (``pipelines.config_loading``) and the training
job (``trainer.config``) both read theirs this way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)
# An override: ``"section.field=value"`` (the value read as YAML, as a user types it on the command
# line) or ``("section.field", value)``, set as given. A path the program itself sets (``--data``,
# a run folder) goes as a pair: read as YAML, ``[x]`` would become a list and ``a: b`` a mapping.
Override = str | tuple[str, Any]


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the offending field."""


def deep_merge(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``: sections merge field by field, anything else is replaced."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _yaml_value(item: str, raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    # safe_load refuses Python tags with a YAMLError; a well-formed tag on a bad value
    # (``!!int x``, ``!!timestamp x``) fails in its constructor with other errors
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        reason = " ".join(str(exc).split())  # YAML's messages span lines with a caret under the column
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({reason})") from None


def _split(item: Override) -> tuple[str, Any]:
    if isinstance(item, tuple):
        return item[0], item[1]
    key, sep, raw = str(item).partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form section.field=value")
    return key.strip(), _yaml_value(item, raw)


def parse_overrides(overrides: Iterable[Override]) -> dict:
    """``["optim.lr=3e-4", "data={manifest: x, ratios: null}", ("out_dir", "[x]")]`` -> one nested
    dict, later overrides merged over earlier ones; string values are YAML (numbers, booleans,
    lists, mappings, ``null``)."""
    tree: dict = {}
    for item in overrides:
        key, node = _split(item)
        for part in reversed(key.split(".")):
            node = {part: node}
        tree = deep_merge(tree, node)
    return tree


def read_yaml(path: str | Path) -> dict:
    """A config file's mapping (an empty file is an empty mapping)."""
    try:
        if "://" in str(path):  # a job's config may lie on the object store with its run
            from tokenizer.store_path import as_path

            text = as_path(path).read_text()
        else:
            text = Path(path).read_text()
        loaded = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
    return loaded or {}


def describe(err: ValidationError) -> str:
    """One line per error, each starting with the dotted field (``optim.lr: ...``)."""
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "config"
        message = e["msg"].removeprefix("Value error, ")
        line = message if message.startswith(field) else f"{field}: {message}"
        value = e.get("input")
        if "got" not in message and not isinstance(value, dict):  # a section's whole mapping says little
            got = repr(value)
            line += f" (got {got if len(got) <= 80 else got[:77] + '...'})"
        lines.append(line)
    return "\n".join(lines)


def validate(model: type[Model], tree: dict, context: dict | None = None) -> Model:
    """``model`` from a nested dict, or a ``ConfigError`` naming each bad field."""
    try:
        return model.model_validate(tree, context=context)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def load(model: type[Model], base: dict, path: str | Path | None, overrides: Iterable[Override], context: dict | None = None) -> Model:
    """``base``, then the YAML file, then the overrides in order; validated once, as a whole."""
    tree = deep_merge(base, read_yaml(path) if path is not None else {})
    return validate(model, deep_merge(tree, parse_overrides(overrides)), context)
