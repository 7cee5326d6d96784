"""The sections of a training job's config, as pydantic models; no torch, so that the service
validates a job without loading it.

Path marker: a field that holds a filesystem path says so in its JSON schema,
``Field(..., json_schema_extra={"path": "read"})`` for an input the job reads and
``{"path": "write"}`` for where it writes. The service confines exactly the marked fields to the
folders a job may use, so a new path field must carry the marker, and no other string field may
hold a path.
"""

import math
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from configs.fields import READ_PATH, WRITE_PATH

EVAL_TEXT = Path(__file__).resolve().parents[1] / "data" / "eval"  # the reference text shipped with the product (data/eval/README.md)


def one_of(field: str, *allowed: str):
    """A string limited to ``allowed``; the error names the field in full, also when a section is built alone."""

    def check(value):
        if value not in allowed:
            raise ValueError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
        return value

    return Annotated[Literal[allowed], BeforeValidator(check)]


class Section(BaseModel):
    """Unknown fields refused, assignments validated, no NaN or infinity anywhere; ``freeze`` makes
    a resolved config read-only (its fields can no longer be assigned)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    _frozen: bool = PrivateAttr(False)

    def __setattr__(self, name: str, value) -> None:
        if name in type(self).model_fields and self._frozen:
            raise AttributeError(f"{name}: this config is resolved and frozen; build a new one instead of changing it")
        super().__setattr__(name, value)

    def freeze(self) -> Self:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Section):
                value.freeze()
        self._frozen = True
        return self

    @property
    def frozen(self) -> bool:
        return self._frozen


class ModelConfig(Section):
    vocab_size: int = Field(8192, ge=1)
    seq_len: int = Field(256, ge=1)
    d_model: int = Field(256, ge=1)
    n_layers: int = Field(4, ge=1)
    n_heads: int = Field(4, ge=1)
    norm: one_of("model.norm", "rmsnorm", "layernorm") = "rmsnorm"
    positions: one_of("model.positions", "rope", "learned") = "rope"
    mlp: one_of("model.mlp", "swiglu", "gelu") = "swiglu"
    qk_norm: bool = True
    logit_softcap: float | None = Field(30.0, gt=0, description="tanh soft-capping of the output logits; null: off")
    tie_embeddings: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)
    rope_base: float = Field(10000.0, gt=0)
    init_std: float = Field(0.02, gt=0)
    init: one_of("model.init", "normal", "xavier", "he") = Field(
        "normal", description="matrices: normal (init_std) | xavier (Glorot normal) | he (Kaiming normal, fan-in)")
    depth_scaled_init: bool = Field(True, description="output projections of the residual branches get std / sqrt(2 * n_layers)")
    bidirectional: bool = Field(False, description="every position attends to every other (masked-LM encoders)")
    window: int | None = Field(None, ge=1, description="sliding-window width of local layers (a position sees itself and window - 1 others)")
    attention_pattern: str = Field("G", description='per layer, repeated: L local, G global; "LG" alternates, "LLLG" is 3 local : 1 global')
    attention_backend: one_of("model.attention_backend", "auto", "sdpa", "flex") = Field(
        "auto", description="auto: flex_attention for masked layers on CUDA, else SDPA")
    loss_chunk: int = Field(8192, ge=0, description="positions whose logits exist at once when forward computes the loss (trainer.chunked_loss); 0: all")
    fused_qk_rope: bool = Field(True, description="on CUDA, RMS QK-norm + RoPE as one Triton kernel each way (trainer.triton_qk_rope)")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def mlp_hidden(self) -> int:
        if self.mlp == "swiglu":  # 8/3 d keeps the parameter count of a 4d GELU MLP, rounded to 64
            return 64 * math.ceil(8 * self.d_model / 3 / 64)
        return 4 * self.d_model

    def layer_is_local(self, i: int) -> bool:
        return self.attention_pattern[i % len(self.attention_pattern)] == "L"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.d_model % self.n_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        if not self.attention_pattern or set(self.attention_pattern) - {"L", "G"}:
            raise ValueError(f"model.attention_pattern must be a string of L (local) and G (global), got {self.attention_pattern!r}")
        if "L" in self.attention_pattern and not self.window:
            raise ValueError("model.window must be a positive width when model.attention_pattern has local (L) layers")
        return self


class ObjectiveConfig(Section):
    kind: one_of("objective.kind", "clm", "mlm", "span") = "clm"
    mask_fraction: float = Field(0.15, gt=0, lt=1, description="mlm: positions predicted per sequence")
    mask_token_share: float = Field(0.8, ge=0, le=1, description="mlm: of the predicted positions, replaced by the mask id")
    random_token_share: float = Field(0.1, ge=0, le=1, description="mlm: replaced by a random token (the rest is left as it was)")
    noise_density: float = Field(0.15, gt=0, lt=1, description="span: share of the tokens corrupted")
    mean_span: float = Field(3.0, ge=1, description="span: mean length of a corrupted span")

    @property
    def bidirectional(self) -> bool:
        """A masked-LM encoder sees both ways; span corruption is a prefix-LM on the decoder."""
        return self.kind == "mlm"

    @property
    def uses_special_ids(self) -> bool:
        """The mask id and the sentinels lie past the text vocabulary: they need embeddings."""
        return self.kind != "clm"

    @model_validator(mode="after")
    def _shares(self) -> Self:
        if self.mask_token_share + self.random_token_share > 1:
            raise ValueError("objective.mask_token_share and objective.random_token_share must be >= 0 and sum to at most 1")
        return self


class DistillConfig(Section):
    teacher: str = Field("", json_schema_extra=READ_PATH, description="a training run's folder (config.json, checkpoints/); empty: no distillation")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft (teacher) term; 1 - alpha on the hard targets")
    temperature: float = Field(2.0, gt=0)


Shares = dict[str, Annotated[float, Field(ge=0)]]


def _check_shares(shares: dict[str, float], field: str) -> None:
    if not sum(shares.values()) > 0:
        raise ValueError(f"{field} must give some domain a positive share, got {shares}")


class DataConfig(Section):
    manifest: str = Field("", json_schema_extra=READ_PATH, description="tokens/manifest.json of a curation run (or its tokens/ folder)")
    ratios: Shares | None = Field(None, description="null: the shards' own mixture")
    schedule: list[tuple[Annotated[int, Field(ge=0)], Shares]] | None = Field(
        None, description="[[step, {domain: share}], ...]: ratios interpolated over steps")
    val_fraction: float = Field(0.05, ge=0, lt=1)
    prefetch: bool = Field(True, description="build the next steps' batches in a worker process while this step trains")

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, ratios: dict[str, float] | None) -> dict[str, float] | None:
        if ratios is not None:
            _check_shares(ratios, "data.ratios")
        return ratios

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, schedule: list | None) -> list | None:
        if schedule is None:
            return None
        steps = [step for step, _ in schedule]
        if len(set(steps)) != len(steps):
            raise ValueError(f"data.schedule gives a step twice: {steps}")
        for step, shares in schedule:
            _check_shares(shares, f"data.schedule (step {step})")
        return schedule


class OptimConfig(Section):
    steps: int = Field(200, ge=1)
    global_batch: int = Field(16, ge=1, description="sequences per optimizer step, over all processes and micro-batches")
    micro_batch: int = Field(8, ge=1, description="sequences per forward pass on one process")
    lr: float = Field(3e-3, ge=0, description="peak; 0 only with schedule noam, which then takes the paper's d^-0.5 * warmup^-0.5")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decays to lr * min_lr_ratio")
    warmup_steps: int = Field(20, ge=0)
    schedule: one_of("optim.schedule", "cosine", "constant", "noam") = Field(
        "cosine", description="noam: inverse square root after warmup")
    restart_every: int | None = Field(None, ge=1, description="SGDR: restart the cosine every N steps after warmup")
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float = Field(1.0, gt=0)
    z_loss: float = Field(1e-4, ge=0)
    label_smoothing: float = Field(0.0, ge=0, le=1)
    seed: int = Field(0, ge=0, description="model init and the objectives' masking (keyed by seed and global sequence index)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.micro_batch > self.global_batch or self.global_batch % self.micro_batch:
            raise ValueError(f"optim.global_batch ({self.global_batch}) must be a multiple of optim.micro_batch ({self.micro_batch})")
        if self.lr == 0 and self.schedule != "noam":
            raise ValueError("optim.lr must be positive (0 means the paper's peak, with optim.schedule=noam only)")
        return self


class ParallelConfig(Section):
    sharding: one_of("parallel.sharding", "full", "grad_op", "replicate", "hybrid") = Field(
        "full", description="full (ZeRO-3) | grad_op (ZeRO-2-like) | replicate (DDP-like) | hybrid (2-D mesh)")
    hybrid_shard_size: int | None = Field(None, ge=1, description="hybrid: processes per shard group")
    mixed_precision: one_of("parallel.mixed_precision", "bf16", "fp32") = Field("bf16", description="bf16: bf16 compute, fp32 reduce")
    activation_checkpointing: bool = False
    compile: bool = False
    cpu_offload: bool = Field(False, description="FSDP2 CPUOffloadPolicy: sharded parameters, gradients and optimizer state in host memory (CUDA only)")


class CheckpointConfig(Section):
    every: int = Field(100, ge=0, description="steps; 0: only at the end")
    keep: int = Field(2, ge=1)


class LogConfig(Section):
    every: int = Field(1, ge=1)
    val_every: int = Field(50, ge=1)
    val_batches: int = Field(4, ge=1)
    peak_flops: float | None = Field(None, gt=0, description="per device, for MFU; null: known GPUs' bf16 peak, else no MFU")
    eval_text: list[str] = Field(
        default_factory=lambda: [str(EVAL_TEXT / f"{d}.jsonl") for d in ("finance", "general")], json_schema_extra=READ_PATH,
        description="JSON-lines reference text, one file per domain, scored as val_bpb/<domain> at val_every; [] turns it off",
    )
