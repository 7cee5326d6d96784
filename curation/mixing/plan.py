"""Domain mixing in tokens: which documents, and how many times each, make the target ratios.

Other mixers sample documents, so the token ratio that reaches the model drifts with document
length. Here the plan is made in tokens: every domain gets ``target_share * total`` tokens, whole
epochs of a domain are repeated when it is short (upsampling), and the last, partial epoch takes
documents in a fixed pseudo-random order (a hash of the seed and the document id), skipping any
document that would overshoot what is left, so a domain lands within one small document of its
target. The same inputs always give the same plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class DomainPlan:
    domain: str
    target_share: float
    available_tokens: int
    target_tokens: int
    planned_tokens: int
    epochs: float  # planned over available: above 1 means documents are repeated
    repeats: np.ndarray = field(repr=False)  # per document: how many times it goes into the shards


def mixture_total(available: dict[str, int], targets: dict[str, float], total_tokens: int | None) -> int:
    """The mixture's size: the budget if given, else the largest mixture no domain must repeat for."""
    if total_tokens is not None:
        return total_tokens
    return min(math.floor(available[d] / share) for d, share in targets.items() if share > 0)


def plan_domain(domain: str, share: float, total: int, tokens: np.ndarray, order_keys: np.ndarray) -> DomainPlan:
    """Repeats per document so that the domain's tokens come as close as possible to share * total."""
    available = int(tokens.sum())
    target = round(share * total)
    repeats = np.zeros(len(tokens), dtype=np.int32)
    if available > 0 and target > 0:
        full = target // available
        repeats[:] = full
        left = target - full * available
        for i in np.argsort(order_keys, kind="stable"):  # first fit, in hash order
            if left <= 0:
                break
            if tokens[i] <= left:
                repeats[i] += 1
                left -= int(tokens[i])
    planned = int((repeats.astype(np.int64) * tokens).sum())
    return DomainPlan(domain, share, available, target, planned, planned / available if available else 0.0, repeats)
