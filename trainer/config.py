"""One typed config for a training job: named presets, YAML on top, ``section.field=value`` last."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from trainer.distill import DistillConfig
from trainer.eval import default_eval_text  # issue 19
from trainer.model import ModelConfig
from trainer.objectives import ObjectiveConfig


@dataclass
class DataConfig:
    manifest: str = ""  # tokens/manifest.json of a curation run (or its tokens/ folder)
    ratios: dict[str, float] | None = None  # None: the shards' own mixture
    schedule: list[list] | None = None  # [[step, {domain: share}], ...]: ratios interpolated over steps
    val_fraction: float = 0.05
    prefetch: bool = True  # build the next steps' batches in a worker process while this step trains


@dataclass
class OptimConfig:
    steps: int = 200
    global_batch: int = 16  # sequences per optimizer step, over all processes and micro-batches
    micro_batch: int = 8  # sequences per forward pass on one process
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 20
    schedule: str = "cosine"  # cosine | constant | noam (inverse square root after warmup)
    restart_every: int | None = None  # SGDR: restart the cosine every N steps after warmup
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    z_loss: float = 1e-4
    label_smoothing: float = 0.0
    seed: int = 0  # model init and the objectives' masking (keyed by seed and global sequence index)

    def __post_init__(self):
        if self.schedule not in ("cosine", "constant", "noam"):
            raise ValueError(f"optim.schedule must be cosine, constant or noam, got {self.schedule!r}")


@dataclass
class ParallelConfig:
    sharding: str = "full"  # full (ZeRO-3) | grad_op (ZeRO-2-like) | replicate (DDP-like) | hybrid (2-D mesh)
    hybrid_shard_size: int | None = None  # hybrid: processes per shard group
    mixed_precision: str = "bf16"  # bf16 (bf16 compute, fp32 reduce) | fp32
    activation_checkpointing: bool = False
    compile: bool = False
    cpu_offload: bool = False  # FSDP2 CPUOffloadPolicy: sharded parameters, gradients and optimizer state live in host memory (CUDA only)


@dataclass
class CheckpointConfig:
    every: int = 100  # steps; 0: only at the end
    keep: int = 2


@dataclass
class LogConfig:
    every: int = 1
    val_every: int = 50
    val_batches: int = 4
    peak_flops: float | None = None  # per device, for MFU; None: known GPUs' bf16 peak, else no MFU
    # issue 19: JSON-lines files, one per domain, scored as val_bpb/<domain> at val_every; [] turns it off.
    # A path read by the job (pydantic: json_schema_extra={"path": "read"})
    eval_text: list[str] = field(default_factory=default_eval_text, metadata={"path": "read"})


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    out_dir: str = "runs/train"
    stop_after: int | None = None  # end this invocation after this step (checkpointed); a rerun resumes

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    # CPU: seconds per step on two cores
    "tiny": {"model": {"d_model": 128, "n_layers": 2, "n_heads": 4, "seq_len": 128}, "parallel": {"mixed_precision": "fp32"},
             "optim": {"steps": 200, "global_batch": 16, "micro_batch": 8, "lr": 3e-3, "warmup_steps": 20}},
    # GPT-2 small and medium shapes, for GPUs
    "124m": {"model": {"d_model": 768, "n_layers": 12, "n_heads": 12, "seq_len": 1024, "vocab_size": 50304},
             "optim": {"global_batch": 512, "micro_batch": 32, "lr": 6e-4, "warmup_steps": 700, "steps": 19000}, "parallel": {"compile": True}},
    "350m": {"model": {"d_model": 1024, "n_layers": 24, "n_heads": 16, "seq_len": 1024, "vocab_size": 50304},
             "optim": {"global_batch": 512, "micro_batch": 16, "lr": 3e-4, "warmup_steps": 700, "steps": 19000}, "parallel": {"compile": True}},
}


def _coerce(path: str, current: Any, value: Any) -> Any:
    """Give ``value`` the type of the field's default, or name the field in the error.

    YAML reads ``3e-3`` as a string (it wants ``3.0e-3``), so numbers are parsed here too.
    """
    if value is None or current is None:
        if isinstance(value, str):
            try:
                return float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                return value
        return value
    kind = type(current)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected true or false, got {value!r}")
        return value
    if kind in (int, float):
        try:
            number = kind(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (kind is int and isinstance(value, float) and value != int(value)):
            raise ValueError(f"{path}: expected {kind.__name__}, got {value!r}")
        return number
    if kind is str and not isinstance(value, str):
        raise ValueError(f"{path}: expected a string, got {value!r}")
    return value


def _apply(obj: Any, tree: dict, where: str = "") -> None:
    names = {f.name for f in fields(obj)}
    for key, value in tree.items():
        path = f"{where}{key}"
        if key not in names:
            raise ValueError(f"unknown config field {path!r}")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{path} is a section; give a mapping")
            _apply(current, value, f"{path}.")
        else:
            setattr(obj, key, _coerce(path, current, value))
    if hasattr(obj, "__post_init__"):
        obj.__post_init__()


def load_train_config(preset: str = "tiny", path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = TrainConfig()
    _apply(cfg, PRESETS[preset])
    if path is not None:
        _apply(cfg, yaml.safe_load(Path(path).read_text()) or {})
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not of the form section.field=value")
        tree: dict = {}
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
        _apply(cfg, tree)
    return cfg
