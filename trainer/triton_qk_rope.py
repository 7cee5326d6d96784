"""QK-norm and RoPE of an attention layer as one Triton kernel forward and one backward.

Compiled by inductor, splitting the fused projection into q, k, v, RMS-normalising q and k and
rotating them took five kernels with fp32 intermediates between them: ~4 ms of a 69 ms
micro-step of the 124M preset on an H100, about what the two matmuls of the projection cost
(profile: benchmarks/results/train_gpu-h100-run12-accum4.txt). Here the forward reads the
projection once and writes q, k, v once; the backward reads their gradients and the saved
projection once and writes the projection's gradient whole (no concatenation), plus per-program
partial sums for the two norm weights. Both are ``torch.library`` custom ops with their autograd
registered, so ``torch.compile`` keeps them in its graph as opaque calls, without a graph break.

Numerics follow ``trainer.model``: norm statistics and rotation in fp32, the result in the
projection's dtype; the rotation pairs channel i with i + head_dim/2 (half-split).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# (token, head) rows and warps per program: 32 and 2 were the fastest of twelve shapes on an H200
# (3.3 TB/s; benchmarks/results/train_gpu-h200-qk-kernel.txt); read at each call, so that
# benchmarks/train_gpu.py --check-attention can sweep them
LAUNCH = {"rows": 32, "warps": 2}


@triton.jit
def _norm_rope_rows(src, dst, w_ptr, cos, sin, row_ok, cols, eps, HALF: tl.constexpr):
    lo = tl.load(src + cols, mask=row_ok, other=0.0).to(tl.float32)
    hi = tl.load(src + HALF + cols, mask=row_ok, other=0.0).to(tl.float32)
    rstd = tl.rsqrt((tl.sum(lo * lo, axis=1) + tl.sum(hi * hi, axis=1)) / (2 * HALF) + eps)[:, None]
    lo = lo * rstd * tl.load(w_ptr + cols).to(tl.float32)
    hi = hi * rstd * tl.load(w_ptr + HALF + cols).to(tl.float32)
    tl.store(dst + cols, (lo * cos - hi * sin).to(dst.dtype.element_ty), mask=row_ok)
    tl.store(dst + HALF + cols, (hi * cos + lo * sin).to(dst.dtype.element_ty), mask=row_ok)


@triton.jit
def _forward(qkv_ptr, s_b, s_t, s_c, s_h, qw_ptr, kw_ptr, cos_ptr, sin_ptr, s_rope, q_ptr, k_ptr, v_ptr, rows, T, H, eps,
             HALF: tl.constexpr, BLOCK_R: tl.constexpr):
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = (r < rows)[:, None]
    h = r % H
    t = (r // H) % T
    b = r // (H * T)
    half = tl.arange(0, HALF)[None, :]
    src = qkv_ptr + (b.to(tl.int64) * s_b + t.to(tl.int64) * s_t + h * s_h)[:, None]
    dst = r.to(tl.int64)[:, None] * (2 * HALF)
    cos = tl.load(cos_ptr + t[:, None] * s_rope + half, mask=row_ok, other=0.0)
    sin = tl.load(sin_ptr + t[:, None] * s_rope + half, mask=row_ok, other=0.0)
    _norm_rope_rows(src, q_ptr + dst, qw_ptr, cos, sin, row_ok, half, eps, HALF)
    _norm_rope_rows(src + s_c, k_ptr + dst, kw_ptr, cos, sin, row_ok, half, eps, HALF)
    full = tl.arange(0, 2 * HALF)[None, :]
    tl.store(v_ptr + dst + full, tl.load(src + 2 * s_c + full, mask=row_ok), mask=row_ok)


@triton.jit
def _norm_rope_rows_backward(src, grad, dst, w_ptr, dw_ptr, cos, sin, row_ok, cols, eps, HALF: tl.constexpr):
    # the rotation is orthogonal: its backward rotates the gradient by the opposite angle
    g_lo = tl.load(grad + cols, mask=row_ok, other=0.0).to(tl.float32)
    g_hi = tl.load(grad + HALF + cols, mask=row_ok, other=0.0).to(tl.float32)
    dy_lo = g_lo * cos + g_hi * sin
    dy_hi = g_hi * cos - g_lo * sin
    lo = tl.load(src + cols, mask=row_ok, other=0.0).to(tl.float32)
    hi = tl.load(src + HALF + cols, mask=row_ok, other=0.0).to(tl.float32)
    rstd = tl.rsqrt((tl.sum(lo * lo, axis=1) + tl.sum(hi * hi, axis=1)) / (2 * HALF) + eps)[:, None]
    lo = lo * rstd
    hi = hi * rstd
    tl.store(dw_ptr + cols, tl.sum(dy_lo * lo, axis=0)[None, :])
    tl.store(dw_ptr + HALF + cols, tl.sum(dy_hi * hi, axis=0)[None, :])
    dy_lo = dy_lo * tl.load(w_ptr + cols).to(tl.float32)
    dy_hi = dy_hi * tl.load(w_ptr + HALF + cols).to(tl.float32)
    # through x * rstd(x): rstd · (g − x̂ · mean(g · x̂))
    mean = ((tl.sum(dy_lo * lo, axis=1) + tl.sum(dy_hi * hi, axis=1)) / (2 * HALF))[:, None]
    tl.store(dst + cols, (rstd * (dy_lo - lo * mean)).to(dst.dtype.element_ty), mask=row_ok)
    tl.store(dst + HALF + cols, (rstd * (dy_hi - hi * mean)).to(dst.dtype.element_ty), mask=row_ok)


@triton.jit
def _backward(qkv_ptr, s_b, s_t, s_c, s_h, dqkv_ptr, dq_ptr, dq_b, dq_t, dq_h, dk_ptr, dk_b, dk_t, dk_h, dv_ptr, dv_b, dv_t, dv_h,
              qw_ptr, kw_ptr, dw_ptr, cos_ptr, sin_ptr, s_rope, rows, T, H, eps, HALF: tl.constexpr, BLOCK_R: tl.constexpr):
    pid = tl.program_id(0)
    r = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = (r < rows)[:, None]
    h = r % H
    t = (r // H) % T
    b = (r // (H * T)).to(tl.int64)
    t64 = t.to(tl.int64)
    half = tl.arange(0, HALF)[None, :]
    offset = (b * s_b + t64 * s_t + h * s_h)[:, None]  # dqkv has qkv's strides
    cos = tl.load(cos_ptr + t[:, None] * s_rope + half, mask=row_ok, other=0.0)
    sin = tl.load(sin_ptr + t[:, None] * s_rope + half, mask=row_ok, other=0.0)
    dw = dw_ptr + pid * (4 * HALF)
    _norm_rope_rows_backward(qkv_ptr + offset, dq_ptr + (b * dq_b + t64 * dq_t + h * dq_h)[:, None], dqkv_ptr + offset, qw_ptr, dw,
                             cos, sin, row_ok, half, eps, HALF)
    _norm_rope_rows_backward(qkv_ptr + offset + s_c, dk_ptr + (b * dk_b + t64 * dk_t + h * dk_h)[:, None], dqkv_ptr + offset + s_c, kw_ptr,
                             dw + 2 * HALF, cos, sin, row_ok, half, eps, HALF)
    full = tl.arange(0, 2 * HALF)[None, :]
    dv = tl.load(dv_ptr + (b * dv_b + t64 * dv_t + h * dv_h)[:, None] + full, mask=row_ok)
    tl.store(dqkv_ptr + offset + 2 * s_c + full, dv.to(dqkv_ptr.dtype.element_ty), mask=row_ok)


def _grid(rows: int) -> tuple[int]:
    return (triton.cdiv(rows, LAUNCH["rows"]),)


@torch.library.custom_op("trainer::qk_norm_rope", mutates_args=())
def qk_norm_rope(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (batch, time, heads, head_dim), contiguous, from the projection ``qkv`` (batch, time,
    3, heads, head_dim; head_dim contiguous): q and k RMS-normalised with their weights, then rotated
    by ``cos``/``sin`` (time, head_dim/2)."""
    b, t, _, h, d = qkv.shape
    assert qkv.stride(-1) == 1 and cos.stride(1) == 1 and sin.stride(0) == cos.stride(0), "head_dim and the rope tables' columns must be contiguous"
    q, k, v = (qkv.new_empty((b, t, h, d)) for _ in range(3))
    _forward[_grid(b * t * h)](qkv, *qkv.stride()[:4], q_weight, k_weight, cos, sin, cos.stride(0), q, k, v, b * t * h, t, h, eps,
                               HALF=d // 2, BLOCK_R=LAUNCH["rows"], num_warps=LAUNCH["warps"])
    return q, k, v


@qk_norm_rope.register_fake
def _(qkv, q_weight, k_weight, cos, sin, eps):
    b, t, _, h, d = qkv.shape
    return tuple(qkv.new_empty((b, t, h, d)) for _ in range(3))


@torch.library.custom_op("trainer::qk_norm_rope_backward", mutates_args=())
def qk_norm_rope_backward(dq: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor, qkv: torch.Tensor, q_weight: torch.Tensor,
                          k_weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, t, _, h, d = qkv.shape
    dq, dk, dv = (g if g.stride(-1) == 1 else g.contiguous() for g in (dq, dk, dv))
    dqkv = torch.empty_like(qkv)
    grid = _grid(b * t * h)
    partial = torch.empty((grid[0], 2, d), dtype=torch.float32, device=qkv.device)
    _backward[grid](qkv, *qkv.stride()[:4], dqkv, dq, *dq.stride()[:3], dk, *dk.stride()[:3], dv, *dv.stride()[:3], q_weight, k_weight,
                    partial, cos, sin, cos.stride(0), b * t * h, t, h, eps, HALF=d // 2, BLOCK_R=LAUNCH["rows"], num_warps=LAUNCH["warps"])
    # two separate sums: custom ops may not return views of one another
    return dqkv, partial[:, 0].sum(0).to(q_weight.dtype), partial[:, 1].sum(0).to(k_weight.dtype)


@qk_norm_rope_backward.register_fake
def _(dq, dk, dv, qkv, q_weight, k_weight, cos, sin, eps):
    return torch.empty_like(qkv), torch.empty_like(q_weight), torch.empty_like(k_weight)


def _setup_context(ctx, inputs, output):
    qkv, q_weight, k_weight, cos, sin, eps = inputs
    ctx.save_for_backward(qkv, q_weight, k_weight, cos, sin)
    ctx.eps = eps


def _backward_rule(ctx, dq, dk, dv):
    qkv, q_weight, k_weight, cos, sin = ctx.saved_tensors
    b, t, _, h, d = qkv.shape
    dq, dk, dv = (g if g is not None else qkv.new_zeros((b, t, h, d)) for g in (dq, dk, dv))
    dqkv, dqw, dkw = qk_norm_rope_backward(dq, dk, dv, qkv, q_weight, k_weight, cos, sin, ctx.eps)
    return dqkv, dqw, dkw, None, None, None


qk_norm_rope.register_autograd(_backward_rule, setup_context=_setup_context)

