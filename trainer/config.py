"""One typed config for a training job: named presets, YAML on top, ``section.field=value`` last.

Torch-free (the service validates a job with it before anything loads torch). Fields that hold a
filesystem path carry a marker, ``json_schema_extra={"path": "read"}`` (an input the job reads) or
``{"path": "write"}`` (where it writes); the service confines those fields, so no other string
field may hold a path (``trainer.config_sections``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import Field

from configs.overrides import ConfigError, Override, load, parse_overrides, validate
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


def validate_train_config(tree: dict) -> TrainConfig:
    """A ``TrainConfig`` from a nested dict, or a ``ConfigError`` naming each bad field."""
    return validate(TrainConfig, tree)


def load_train_config(preset: str = "tiny", path: str | Path | None = None, overrides: Iterable[Override] | None = None) -> TrainConfig:
    """The preset, then the YAML file, then the overrides in order (``configs.overrides``);
    validated once, as a whole."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    return load(TrainConfig, PRESETS[preset], path, overrides or [])
