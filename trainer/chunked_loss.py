"""The output projection and the loss together, a chunk of tokens at a time.

A 124M model at micro-batch 32 × 1024 has 1.6 G logits per step over a 50k vocabulary; the plain
path writes them (bf16), upcasts them, soft-caps them, reduces them twice (cross-entropy and the
z-loss's log Z) and keeps what the backward needs. Here each chunk's logits are made, turned into
the loss and into their own gradient at once (the gradient of soft-capped cross-entropy with z-loss
has a closed form), and dropped: the backward only scales the saved gradients of the hidden states
and of the head's weight. The per-chunk part is plain torch ops on the CPU and a Triton kernel on
the GPU (``trainer.triton_loss``).

Liger-Kernel's fused linear cross-entropy does the same for this loss (soft-cap, z-loss), but on
an H100 at the 124M shape it took 22.1 ms per forward+backward of head and loss against 16.6 ms
here (its chunks of 512 positions leave the matmuls small) and it needs Triton on every machine;
``python benchmarks/train_gpu.py --check-head`` measures both.

The result equals ``lm_loss(model(tokens))`` (tested to float tolerance, values and gradients).
"""

from __future__ import annotations

from functools import lru_cache

import torch


def chunk_loss_and_grad(logits: torch.Tensor, targets: torch.Tensor, softcap: float | None, z_loss: float, smoothing: float,
                        ignore_index: int, want_grad: bool):
    """(loss sum, z sum, d loss / d logits or None) of one chunk; the loss is cross-entropy (with
    label smoothing) + z_loss · log Z², summed over the positions whose target is not ignored."""
    x = logits.float()
    if softcap:
        capped = torch.tanh(x / softcap)
        x = softcap * capped
    valid = targets != ignore_index
    safe = torch.where(valid, targets, 0)
    log_z = torch.logsumexp(x, dim=-1)
    ce = log_z - x.gather(1, safe[:, None]).squeeze(1)
    if smoothing:
        ce = (1 - smoothing) * ce + smoothing * (log_z - x.mean(dim=-1))
    weight = valid.to(x.dtype)
    z = (log_z.square() * weight).sum()
    loss = (ce * weight).sum() + z_loss * z
    if not want_grad:
        return loss, z, None
    # d/dx of CE = softmax - (1 - s)·onehot - s/V; of z_loss·logZ² = 2·z_loss·logZ·softmax
    v = x.shape[-1]
    onehot = torch.arange(v, device=x.device)[None, :] == safe[:, None]
    grad = torch.exp(x - log_z[:, None]) * (1 + 2 * z_loss * log_z)[:, None] - (1 - smoothing) * onehot.to(x.dtype)
    if smoothing:
        grad = grad - smoothing / v
    grad = grad * weight[:, None]
    if softcap:  # through cap·tanh(x / cap): times 1 - tanh²
        grad = grad * (1 - capped.square())
    return loss, z, grad.to(logits.dtype)


@lru_cache(maxsize=1)
def _gpu_chunk_loss():
    """On the GPU: the Triton kernel (two reads of each row), else the chunk's elementwise steps
    compiled by inductor into one kernel (three reads); eager they would be a dozen passes."""
    try:
        from trainer.triton_loss import chunk_loss_and_grad_triton
    except ImportError:
        return torch.compile(chunk_loss_and_grad, dynamic=False)
    return chunk_loss_and_grad_triton


def _accumulate_product(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b with acc in fp32: on CUDA one GEMM that reads and writes acc in fp32 from bf16
    operands (cuBLAS's beta = 1); the product and a separate add would move 2.5x the bytes of a
    50k x 768 fp32 weight per chunk (0.6 ms of a 64 ms micro-step of the 124M model on an H200)."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    elif acc.is_cuda:
        torch.addmm(acc, a, b, out_dtype=acc.dtype, out=acc)
    else:  # the dtype-changing GEMM is CUDA-only
        acc += (a @ b).to(acc.dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, softcap, z_loss, smoothing, ignore_index, chunk):
        compute = torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled(hidden.device.type) else weight.dtype
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.to(compute)
            w = weight.to(compute)
            want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
            grad_h = torch.empty_like(h) if want_grad else None
            # fp32 accumulation over chunks, as a single matmul's would be
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] else None
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            z = torch.zeros((), dtype=torch.float32, device=hidden.device)
            chunk_loss = _gpu_chunk_loss() if h.is_cuda else chunk_loss_and_grad
            for start in range(0, h.shape[0], chunk):
                hc = h[start : start + chunk]
                part_loss, part_z, g = chunk_loss(hc @ w.t(), targets[start : start + chunk], softcap, z_loss, smoothing, ignore_index, want_grad)
                loss = loss + part_loss
                z = z + part_z
                if want_grad:
                    torch.mm(g, w, out=grad_h[start : start + chunk])
                    if grad_w is not None:
                        _accumulate_product(grad_w, g.t(), hc)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(z)
        return loss, z

    @staticmethod
    def backward(ctx, grad_loss, grad_z):
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        dh = (grad_h * grad_loss).to(h_dtype) if ctx.needs_input_grad[0] else None
        dw = (grad_w * grad_loss).to(w_dtype) if ctx.needs_input_grad[1] else None
        return dh, dw, None, None, None, None, None, None


# dynamo does not trace this function: its support for autograd.Function that compute gradients in
# forward differs between torch releases (2.11 fails where 2.13 compiles); the compiled step breaks
# its graph here and the chunk kernel is compiled on its own
@torch.compiler.disable
def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float | None, z_loss: float,
                         label_smoothing: float, chunk: int, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed cross-entropy + z-loss, summed log Z², count of target tokens) of the logits
    ``softcap · tanh(hidden @ weight.T / softcap)``, made ``chunk`` positions at a time."""
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if not torch.is_grad_enabled():  # issue 19: evaluation; a weight that requires grad would still have its gradient made (2.4x the time)
        hidden, weight = hidden.detach(), weight.detach()
    loss, z = _LinearCrossEntropy.apply(hidden, weight, targets, softcap, z_loss, label_smoothing, ignore_index, chunk)
    return loss, z, (targets != ignore_index).sum()
