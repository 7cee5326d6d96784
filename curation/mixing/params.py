"""Domain mixing's parameters: a run's ``mix`` section."""

from __future__ import annotations

from pydantic import Field, field_validator

from configs.fields import Strict


class MixConfig(Strict):
    """Domain mixing in tokens (BloombergGPT's 51% finance / 49% general by default)."""

    enabled: bool = True
    targets: dict[str, float] = Field(default_factory=lambda: {"finance": 0.51, "general": 0.49})
    natural: bool = Field(False, description="every curated document once, each domain at its own share (targets unused): "
                          "for an ablation, where a fixed ratio would cut each variant differently")
    total_tokens: int | None = Field(None, gt=0, le=10**16, description="token budget; default: the largest mix that repeats nothing")
    repeat_limit: float = Field(4.0, ge=1, le=1e6, description="warn when a domain must be repeated more epochs than this")
    seed: int = 1

    @field_validator("targets")
    @classmethod
    def _shares(cls, targets: dict[str, float]) -> dict[str, float]:
        if not targets:
            raise ValueError("give at least one domain's share")
        if any(v < 0 for v in targets.values()):
            raise ValueError(f"shares must not be negative, got {targets}")
        if abs(sum(targets.values()) - 1) > 1e-6:
            raise ValueError(f"shares must sum to 1, they sum to {sum(targets.values()):.6f}")
        return dict(sorted(targets.items()))
