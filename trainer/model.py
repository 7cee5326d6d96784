"""A decoder-only transformer whose every element of the stable-training recipe is a switch.

The model knows nothing of distribution, precision or compilation: ``trainer.parallel`` applies
those from the outside (the torchtitan way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    vocab_size: int = 8192
    seq_len: int = 256
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    positions: str = "rope"  # rope | learned
    mlp: str = "swiglu"  # swiglu | gelu
    qk_norm: bool = True
    logit_softcap: float | None = 30.0  # tanh soft-capping of the output logits; None: off
    tie_embeddings: bool = False
    dropout: float = 0.0
    rope_base: float = 10000.0
    init_std: float = 0.02
    depth_scaled_init: bool = True  # output projections get std / sqrt(2 * n_layers)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def mlp_hidden(self) -> int:
        if self.mlp == "swiglu":  # 8/3 d keeps the parameter count of a 4d GELU MLP, rounded to 64
            return 64 * math.ceil(8 * self.d_model / 3 / 64)
        return 4 * self.d_model

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        for name, value, allowed in (("norm", self.norm, ("rmsnorm", "layernorm")), ("positions", self.positions, ("rope", "learned")), ("mlp", self.mlp, ("swiglu", "gelu"))):
            if value not in allowed:
                raise ValueError(f"model.{name} must be one of {allowed}, got {value!r}")


def make_norm(cfg: ModelConfig, dim: int) -> nn.Module:
    return nn.RMSNorm(dim, eps=1e-6) if cfg.norm == "rmsnorm" else nn.LayerNorm(dim, eps=1e-6)


def rope_tables(seq_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels of x (batch, heads, time, head_dim) by position-dependent angles."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    t = x.shape[-2]
    cos, sin = cos[:t].to(x.dtype), sin[:t].to(x.dtype)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.q_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm else nn.Identity()
        self.k_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.cfg.n_heads, self.cfg.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)  # QK-norm bounds the attention logits
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.cfg.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.swiglu = cfg.mlp == "swiglu"
        hidden = cfg.mlp_hidden
        self.up = nn.Linear(cfg.d_model, 2 * hidden if self.swiglu else hidden, bias=False)
        self.out = nn.Linear(hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if self.swiglu:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        else:
            h = F.gelu(h)
        return self.out(h)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm, self.attn = make_norm(cfg, cfg.d_model), Attention(cfg)
        self.mlp_norm, self.mlp = make_norm(cfg, cfg.d_model), MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), rope))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class OutputHead(nn.Module):
    """Final norm, projection to the vocabulary, and tanh soft-capping of the logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = make_norm(cfg, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.softcap = cfg.logit_softcap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.norm(x))
        if self.softcap:  # keeps every logit within (-cap, cap): no runaway logits late in training
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model) if cfg.positions == "learned" else None
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.output = OutputHead(cfg)
        if cfg.tie_embeddings:
            self.output.head.weight = self.embed.weight
        cos, sin = rope_tables(cfg.seq_len, cfg.head_dim, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        out_std = std / math.sqrt(2 * self.cfg.n_layers) if self.cfg.depth_scaled_init else std
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue  # norm weights keep their ones
            nn.init.normal_(p, std=out_std if name.endswith(("attn.out.weight", "mlp.out.weight")) else std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (soft-capped when configured) for every position of ``tokens``."""
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        rope = (self.rope_cos, self.rope_sin) if self.pos is None else None
        for layer in self.layers:
            x = layer(x, rope)
        return self.output(x)

    def num_params(self, exclude_embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())  # a tied weight is counted once
        if exclude_embeddings and not self.cfg.tie_embeddings:  # tied: it is also the output head, which counts
            n -= self.embed.weight.numel()
            if self.pos is not None:
                n -= self.pos.weight.numel()
        return n


def lm_loss(
    logits: torch.Tensor, targets: torch.Tensor, z_loss: float, label_smoothing: float, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed cross-entropy + z-loss, summed z term, count of target tokens).

    Sums, not means: the trainer divides by the global count of target tokens, so gradient
    accumulation and data parallelism weigh every token the same.
    """
    logits = logits.float().reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    mask = targets != ignore_index
    ce = F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum", label_smoothing=label_smoothing)
    log_z = torch.logsumexp(logits, dim=-1)
    z = (log_z.pow(2) * mask).sum()
    return ce + z_loss * z, z, mask.sum()
