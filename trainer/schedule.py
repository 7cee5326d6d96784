"""The learning-rate schedule: warmup, then cosine (with optional restarts), constant or Noam.

No torch: the config's resolution takes the Noam peak from here before anything is built.
"""

from __future__ import annotations

import math

from trainer.config_sections import OptimConfig


def noam_factor(step: int, warmup: int) -> float:
    """The original Transformer's schedule divided by its peak: min(s^-0.5, s * w^-1.5) * w^0.5,
    with s = step + 1. It rises linearly to 1 at s = w, then decays as sqrt(w / s)."""
    s = step + 1
    return min(s**-0.5, s * warmup**-1.5) * warmup**0.5


def noam_peak_lr(d_model: int, warmup: int, scale: float = 1.0) -> float:
    """Peak of lr = scale * d^-0.5 * min(s^-0.5, s * w^-1.5) (Vaswani et al. 2017, eq. 3), at s = w."""
    return scale * d_model**-0.5 * warmup**-0.5


def lr_lambda(cfg: OptimConfig):
    """Multiplier of ``optim.lr`` per step: linear warmup, then cosine to ``min_lr_ratio``
    (restarting every ``restart_every`` steps), or constant; or ``noam``, the inverse square root
    (``noam_factor``). With ``noam`` and ``optim.lr`` 0 the config's resolution sets the peak from
    the paper's formula, lr = d^-0.5 * min(s^-0.5, s * w^-1.5) (``noam_peak_lr``)."""

    def factor(step: int) -> float:
        if cfg.schedule == "noam":
            return noam_factor(step, max(1, cfg.warmup_steps))
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = cfg.restart_every or max(1, cfg.steps - cfg.warmup_steps)
        progress = ((step - cfg.warmup_steps) % span) / span
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
