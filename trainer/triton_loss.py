"""One chunk of ``trainer.chunked_loss`` as a Triton kernel: two reads of each row of logits.

Inductor compiles the chunk's loss and gradient into a kernel that reads every row of logits
three times (maximum, sum of exponentials, gradient); this kernel keeps a running maximum and
sum in one pass (online softmax) and writes the gradient over the logits in the second, so a
chunk costs two reads and one write of its bf16 logits. Imported only on CUDA.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


@triton.jit
def _tanh(y, FAST: tl.constexpr):
    if FAST:
        # one special-function instruction (relative error below 2^-10.9, PTX ISA) instead of an
        # exponential, a division and their fix-ups: the kernel is bound by this arithmetic, not by
        # memory, and the error is below the bf16 rounding the logits already carry (2^-9)
        return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [y], dtype=tl.float32, is_pure=True, pack=1)
    # 1 - 2 / (e^2y + 1): exact at both ends (e^2y overflows to inf -> 1, underflows to 0 -> -1)
    return 1.0 - 2.0 / (tl.exp(2.0 * y) + 1.0)


@triton.jit
def _loss_rows(logits_ptr, row_stride, targets_ptr, ce_ptr, log_z_ptr, vocab, softcap, z_loss, smoothing, ignore_index,
               HAS_SOFTCAP: tl.constexpr, HAS_SMOOTHING: tl.constexpr, WANT_GRAD: tl.constexpr, FAST_TANH: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * row_stride
    target = tl.load(targets_ptr + row)
    valid = target != ignore_index
    safe = tl.where(valid, target, 0)
    running_max = tl.full((), float("-inf"), tl.float32)
    running_sum = tl.zeros((), tl.float32)
    total = tl.zeros((), tl.float32)
    inv_cap = 1.0 / softcap
    for start in range(0, vocab, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        inside = cols < vocab
        x = tl.load(base + cols, mask=inside, other=0.0).to(tl.float32)
        if HAS_SOFTCAP:
            x = softcap * _tanh(x * inv_cap, FAST_TANH)
        if HAS_SMOOTHING:
            total += tl.sum(tl.where(inside, x, 0.0), axis=0)
        x = tl.where(inside, x, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(x, axis=0))
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(x - new_max), axis=0)
        running_max = new_max
    log_z = running_max + tl.log(running_sum)
    x_target = tl.load(base + safe).to(tl.float32)
    if HAS_SOFTCAP:
        x_target = softcap * _tanh(x_target * inv_cap, FAST_TANH)
    ce = log_z - x_target
    ce = (1.0 - smoothing) * ce + smoothing * (log_z - total / vocab)
    weight = valid.to(tl.float32)
    tl.store(ce_ptr + row, ce * weight)
    tl.store(log_z_ptr + row, log_z)
    if WANT_GRAD:
        scale = 1.0 + 2.0 * z_loss * log_z
        for start in range(0, vocab, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            inside = cols < vocab
            raw = tl.load(base + cols, mask=inside, other=0.0).to(tl.float32)
            x = raw
            if HAS_SOFTCAP:
                capped = _tanh(raw * inv_cap, FAST_TANH)
                x = softcap * capped
            grad = tl.exp(x - log_z) * scale - (1.0 - smoothing) * (cols == safe).to(tl.float32) - smoothing / vocab
            grad = grad * weight
            if HAS_SOFTCAP:
                grad = grad * (1.0 - capped * capped)
            tl.store(base + cols, grad.to(logits_ptr.dtype.element_ty), mask=inside)


def chunk_loss_and_grad_triton(logits: torch.Tensor, targets: torch.Tensor, softcap: float | None, z_loss: float, smoothing: float,
                               ignore_index: int, want_grad: bool, block: int = 2048, num_warps: int = 4, fast_tanh: bool | None = None):
    """``chunked_loss.chunk_loss_and_grad``'s contract; the gradient is written over ``logits``.
    Block 2048 with 4 warps was the fastest of six settings on an H200 with the fast tanh (benchmarks/DEVICE_NOTES.md, run 20).
    ``fast_tanh`` (default: on a GPU, not under Triton's CPU interpreter, which cannot run PTX)
    soft-caps with the hardware's approximate tanh."""
    if fast_tanh is None:
        fast_tanh = logits.is_cuda and os.environ.get("TRITON_INTERPRET") != "1"
    rows, vocab = logits.shape
    assert logits.stride(1) == 1, "rows of logits must be contiguous"
    ce = torch.empty(rows, dtype=torch.float32, device=logits.device)
    log_z = torch.empty(rows, dtype=torch.float32, device=logits.device)
    _loss_rows[(rows,)](logits, logits.stride(0), targets.contiguous(), ce, log_z, vocab, float(softcap or 1.0), float(z_loss), float(smoothing),
                        ignore_index, HAS_SOFTCAP=bool(softcap), HAS_SMOOTHING=smoothing != 0, WANT_GRAD=want_grad, FAST_TANH=fast_tanh,
                        BLOCK=block, num_warps=num_warps)
    weight = (targets != ignore_index).float()
    z = (log_z.square() * weight).sum()
    return ce.sum() + z_loss * z, z, logits if want_grad else None
