"""A transformer whose every element of the stable-training recipe is a switch.

Causal (decoder) by default; bidirectional for masked-LM encoders (``bidirectional``); a prefix-LM
when ``forward`` is given per-sequence prefix lengths (bidirectional over the prefix, causal after:
T5 span corruption on the decoder). Layers may alternate sliding-window (local) and full (global)
attention (``window``, ``attention_pattern``).

The model knows nothing of distribution, precision or compilation: ``trainer.parallel`` applies
those from the outside (the torchtitan way).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from trainer.chunked_loss import linear_cross_entropy
from trainer.config_sections import ModelConfig


def _half_is_power_of_two(head_dim: int) -> bool:
    half = head_dim // 2  # the fused kernel loads half a head as one Triton block
    return head_dim % 2 == 0 and half >= 8 and half & (half - 1) == 0


def make_norm(cfg: ModelConfig, dim: int) -> nn.Module:
    return nn.RMSNorm(dim, eps=1e-6) if cfg.norm == "rmsnorm" else nn.LayerNorm(dim, eps=1e-6)


def rope_tables(seq_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + head_dim/2) of x (batch, time, heads, head_dim) by
    position-dependent angles (the GPT-NeoX/Llama pairing: two contiguous halves, which the
    compiled kernel reads and writes whole; interleaved pairs cost 0.4 ms more per layer on an H100)."""
    t = x.shape[1]
    cos, sin = cos[:t, None, :], sin[:t, None, :]
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


CAUSAL = "causal"  # the plain causal mask: SDPA's is_causal fast path, no mask tensor


def attention_rule(causal: bool, window: int | None, prefix: torch.Tensor | None):
    """``allowed(b, query, key)`` for one layer, on index tensors; the one definition both the
    SDPA boolean mask and the flex_attention block mask are built from."""

    def allowed(b, q_idx, kv_idx):
        ok = kv_idx <= q_idx if causal else q_idx >= 0
        if prefix is not None:  # prefix-LM: the prefix is seen both ways
            ok = ok | (kv_idx < prefix[b])
        if window is not None:
            ok = ok & (q_idx - kv_idx < window) & (kv_idx - q_idx < window)
        return ok

    return allowed


@torch.compiler.disable  # built eagerly, also inside a compiled step (as torchtitan builds its block masks outside)
def build_mask(rule, t: int, device: torch.device, prefix: torch.Tensor | None, flex: bool):
    """A flex_attention BlockMask, or an SDPA boolean mask (batch or 1, 1, t, t), from ``rule``."""
    batch = prefix.shape[0] if prefix is not None else 1
    if flex:
        return create_block_mask(lambda b, h, q, k: rule(b, q, k), batch if prefix is not None else None, None, t, t, device=device)
    idx = torch.arange(t, device=device)
    b = torch.arange(batch, device=device)[:, None, None]
    return rule(b, idx[None, :, None], idx[None, None, :])[:, None]


@lru_cache(maxsize=1)
def _fused_qk_norm_rope():
    """The Triton QK-norm + RoPE op, or None where Triton is not installed."""
    try:
        from trainer.triton_qk_rope import qk_norm_rope
    except ImportError:
        return None
    return qk_norm_rope


@lru_cache(maxsize=1)
def _flex_attention():
    """flex_attention compiled once (eager flex materialises the scores; compiled it is a fused kernel)."""
    return torch.compile(flex_attention, dynamic=False)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.q_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm else nn.Identity()
        self.k_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm else nn.Identity()
        self.fusable = cfg.fused_qk_rope and cfg.qk_norm and cfg.norm == "rmsnorm" and cfg.positions == "rope" and _half_is_power_of_two(cfg.head_dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, mask=CAUSAL) -> torch.Tensor:
        """``mask``: CAUSAL, None (every position sees every other), a boolean tensor
        (batch or 1, 1, T, T; True = may attend) or a flex_attention BlockMask."""
        b, t, d = x.shape
        # norm and rotation work on (batch, time, heads, head_dim), the projection's own layout;
        # attention takes (batch, heads, time, head_dim) views of it, as nanoGPT's does: no copies
        qkv = self.qkv(x).view(b, t, 3, self.cfg.n_heads, self.cfg.head_dim)
        fused = _fused_qk_norm_rope() if self.fusable and x.is_cuda and rope is not None else None
        if fused is not None:
            q, k, v = fused(qkv, self.q_norm.weight, self.k_norm.weight, rope[0][:t], rope[1][:t], self.q_norm.eps)
        else:
            q, k, v = qkv.unbind(2)
            q, k = self.q_norm(q), self.k_norm(k)  # QK-norm bounds the attention logits
            if rope is not None:
                q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        # one dtype for q, k, v (flex_attention is not autocast-aware; SDPA would cast them anyway)
        q, k, v = (z.to(v.dtype).transpose(1, 2) for z in (q, k, v))
        if isinstance(mask, BlockMask):
            y = _flex_attention()(q, k, v, block_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if isinstance(mask, str) else mask, is_causal=mask is CAUSAL,
                                               dropout_p=self.cfg.dropout if self.training else 0.0)
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

    def forward(self, x: torch.Tensor, rope, mask=CAUSAL) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), rope, mask))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class OutputHead(nn.Module):
    """Final norm, projection to the vocabulary, and tanh soft-capping of the logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = make_norm(cfg, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.softcap = cfg.logit_softcap

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, z_loss: float = 0.0, label_smoothing: float = 0.0, chunk: int = 0):
        """The logits, or with ``targets`` the loss triple of ``lm_loss``; ``chunk`` > 0 makes the
        logits and the loss ``chunk`` positions at a time without keeping them (``trainer.chunked_loss``)."""
        if targets is not None and chunk:
            return linear_cross_entropy(self.norm(x), self.head.weight, targets, self.softcap, z_loss, label_smoothing, chunk)
        logits = self.head(self.norm(x))
        if self.softcap:  # keeps every logit within (-cap, cap): no runaway logits late in training
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits if targets is None else lm_loss(logits, targets, z_loss, label_smoothing)


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

    def initial_std(self, name: str, p: torch.Tensor) -> float:
        """The std a weight matrix starts from: normal (``init_std``), Xavier/Glorot
        (sqrt(2 / (fan_in + fan_out))) or He/Kaiming (sqrt(2 / fan_in)) for the linear layers;
        embeddings always ``init_std``. Depth scaling divides the residual branches' output
        projections by sqrt(2 * n_layers) (GPT-2), whatever the base rule."""
        c = self.cfg
        fan_out, fan_in = p.shape
        std = c.init_std
        if "embed" not in name and "pos." not in name:
            if c.init == "xavier":
                std = math.sqrt(2.0 / (fan_in + fan_out))
            elif c.init == "he":
                std = math.sqrt(2.0 / fan_in)
        if c.depth_scaled_init and name.endswith(("attn.out.weight", "mlp.out.weight")):
            std /= math.sqrt(2 * c.n_layers)
        return std

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue  # norm weights keep their ones
            nn.init.normal_(p, std=self.initial_std(name, p))

    def attention_masks(self, t: int, device: torch.device, prefix: torch.Tensor | None = None) -> dict[bool, object]:
        """The mask of global (False) and local (True) layers for sequences of length ``t``.

        The full causal and the full bidirectional cases need no mask (SDPA's fast paths); the
        others are a flex_attention BlockMask on CUDA (sparse blocks outside the window are
        skipped) or an SDPA boolean mask elsewhere (flex has no CPU backward).
        """
        c = self.cfg
        causal = not c.bidirectional
        backend = c.attention_backend
        use_flex = backend == "flex" or (backend == "auto" and device.type == "cuda" and not (c.dropout and self.training))
        masks: dict[bool, object] = {}
        for local in sorted({c.layer_is_local(i) for i in range(c.n_layers)}):
            if not local and prefix is None:
                masks[local] = CAUSAL if causal else None
                continue
            masks[local] = build_mask(attention_rule(causal, c.window if local else None, prefix), t, device, prefix, use_flex)
        return masks

    def forward(self, tokens: torch.Tensor, prefix: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                z_loss: float = 0.0, label_smoothing: float = 0.0):
        """Logits (soft-capped when configured) for every position of ``tokens``; ``prefix``
        (batch,) makes each sequence's first ``prefix[b]`` positions visible both ways (prefix-LM).

        With ``targets``: (summed cross-entropy + z-loss, summed log Z², target count), as
        ``lm_loss`` of the logits, made ``model.loss_chunk`` positions at a time. The loss is
        computed here, not by the caller, so that FSDP2's hooks around this forward keep the
        output head's weight gathered while it is used."""
        x = self.embed(tokens)
        t = tokens.shape[1]
        if self.pos is not None:
            x = x + self.pos(torch.arange(t, device=tokens.device))
        rope = (self.rope_cos, self.rope_sin) if self.pos is None else None
        masks = self.attention_masks(t, tokens.device, prefix)
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, masks[self.cfg.layer_is_local(i)])
        if targets is None:
            return self.output(x)
        return self.output(x, targets, z_loss, label_smoothing, self.cfg.loss_chunk)

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
