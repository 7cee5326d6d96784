"""One typed config for a training job: named presets, YAML on top, ``section.field=value`` last.

Torch-free (the service validates a job with it before anything loads torch). Fields that hold a
filesystem path carry a marker, ``json_schema_extra={"path": "read"}`` (an input the job reads) or
``{"path": "write"}`` (where it writes); the service confines those fields, so no other string
field may hold a path (``trainer.config_sections``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from tokenizer.store_path import as_path
from trainer.config_sections import (
    WRITE_PATH,
    CheckpointConfig,
    DataConfig,
    DistillConfig,
    LogConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    ParallelConfig,
    Section,
)

__all__ = [
    "PRESETS", "CheckpointConfig", "ConfigError", "DataConfig", "DistillConfig", "LogConfig", "ModelConfig", "ObjectiveConfig",
    "OptimConfig", "ParallelConfig", "TrainConfig", "load_train_config", "parse_overrides",
]


class ConfigError(ValueError):
    """A training config that cannot run; the message names the offending field."""


class TrainConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    out_dir: str = Field("runs/train", json_schema_extra=WRITE_PATH, description="metrics.jsonl, config.json, checkpoints/")
    stop_after: int | None = Field(None, ge=1, description="end this invocation after this step (checkpointed); a rerun resumes")

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


PRESETS: dict[str, dict] = {
    # CPU: seconds per step on two cores. Scoring the reference text costs ~19 of its steps, so it is
    # off during training here (log.eval_text=[...] turns it on); `python -m trainer.eval` scores a run
    "tiny": {"model": {"d_model": 128, "n_layers": 2, "n_heads": 4, "seq_len": 128}, "parallel": {"mixed_precision": "fp32"},
             "optim": {"steps": 200, "global_batch": 16, "micro_batch": 8, "lr": 3e-3, "warmup_steps": 20}, "log": {"eval_text": []}},
    # GPT-2 small and medium shapes, for GPUs
    "124m": {"model": {"d_model": 768, "n_layers": 12, "n_heads": 12, "seq_len": 1024, "vocab_size": 50304},
             "optim": {"global_batch": 512, "micro_batch": 32, "lr": 6e-4, "warmup_steps": 700, "steps": 19000}, "parallel": {"compile": True}},
    "350m": {"model": {"d_model": 1024, "n_layers": 24, "n_heads": 16, "seq_len": 1024, "vocab_size": 50304},
             "optim": {"global_batch": 512, "micro_batch": 16, "lr": 3e-4, "warmup_steps": 700, "steps": 19000}, "parallel": {"compile": True}},
}


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
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


def parse_overrides(overrides: list[str]) -> dict:
    """``["optim.lr=3e-4", "data={manifest: x, ratios: null}"]`` -> one nested dict, later overrides
    merged over earlier ones; values are YAML (numbers, booleans, lists, mappings, ``null``), as
    in the curation config's overrides (``pipelines.config.parse_overrides``)."""
    tree: dict = {}
    for item in overrides:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.field=value")
        node: Any = _yaml_value(item, raw)
        for part in reversed(key.split(".")):
            node = {part: node}
        tree = _deep_merge(tree, node)
    return tree


def _read_yaml(path: str | Path) -> dict:
    try:
        loaded = yaml.safe_load(as_path(path).read_text())  # a job config may lie on the store
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


def validate_train_config(tree: dict) -> TrainConfig:
    """A ``TrainConfig`` from a nested dict, or a ``ConfigError`` naming each bad field."""
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def load_train_config(preset: str = "tiny", path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """The preset, then the YAML file, then the overrides in order; validated once, as a whole."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    tree = _deep_merge(PRESETS[preset], _read_yaml(path) if path is not None else {})
    return validate_train_config(_deep_merge(tree, parse_overrides(overrides or [])))
