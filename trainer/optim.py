"""AdamW parameter groups and the learning-rate schedule."""

from __future__ import annotations

import math

import torch

from trainer.config import OptimConfig


def lr_lambda(cfg: OptimConfig):
    """Linear warmup, then cosine to ``min_lr_ratio`` (restarting every ``restart_every`` steps)."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = cfg.restart_every or max(1, cfg.steps - cfg.warmup_steps)
        progress = ((step - cfg.warmup_steps) % span) / span
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decoupled weight decay on matrices only: not on norms, biases or embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.dim() < 2 or "embed" in name or "pos." in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
