"""GPU training throughput: our 124M config beside a nanoGPT-style GPT-2 124M, same shapes, same run.

    python benchmarks/train_gpu.py --micro-batch 32 --accum 16 --steps 4 --rounds 3   # the 124m preset's step
    python benchmarks/train_gpu.py --micro-batch 32 --ours fused= --ours whole=model.loss_chunk=0 --profile
    python benchmarks/train_gpu.py --check-head --check-sdpa --skip-reference --skip-ours
    python benchmarks/train_gpu.py --skip-reference --skip-ours --variant global= \
        --variant local=model.window=256,model.attention_pattern=LLLG --variant offload=parallel.cpu_offload=true
    torchrun --nproc_per_node=2 benchmarks/train_gpu.py --skip-reference --skip-ours \
        --variant full=parallel.sharding=full --variant grad_op=parallel.sharding=grad_op --variant replicate=parallel.sharding=replicate

Run it on a lent GPU (the device tool). It first measures the bf16 matmul peak of the GPU (the
best of five short bursts of 8192^3 products), then times optimizer steps (``--accum``
micro-batches of forward and backward, gradient clipping, AdamW) of
  - the reference: a nanoGPT-style GPT-2 (LayerNorm, learned positions, GELU MLP, tied head,
    ``F.cross_entropy`` on the whole logits) in bf16 autocast with torch.compile of the whole
    model, written here after nanoGPT's model.py;
  - with ``--transformers``: a ``transformers`` LlamaForCausalLM of our shape (the recipe without
    QK-norm, soft-cap and z-loss), compiled, bf16 autocast;
  - ours (one row per ``--ours name=overrides``): trainer.model.Transformer (RMSNorm, RoPE,
    SwiGLU, QK-norm, soft-cap, z-loss, untied head) through the trainer's own code path
    (``parallelize`` + ``forward_loss``): on one GPU unsharded, bf16 autocast, model and loss one
    compiled graph up to the chunked output loss (``trainer.chunked_loss``).
MFU counts 6N + 12·L·H·Q·T FLOPs per token (N: non-embedding parameters) against both the
measured matmul peak and the data-sheet peak (989 TFLOP/s dense bf16 for the H100 SXM); the
peak memory is ``torch.cuda.max_memory_allocated`` over the row's steps. With ``--rounds N`` every
row stays alive and is timed N times round-robin, keeping its best: the GPU's clocks drift with
its temperature, and a row timed later in a run is otherwise at a disadvantage. ``--profile`` prints
each row's GPU kernels by time. Random tokens: this measures the step, not the data (the data
loader's share is in metrics.jsonl).

``--check-head`` times the output head + loss alone (whole logits compiled, the chunked loss
with the inductor kernel and with the Triton kernel at several block sizes, and Liger-Kernel's
fused linear cross-entropy when it is installed: the named baseline for this part).
``--check-sdpa`` times causal attention through each SDPA kernel of the GPU; ``--check-attention``
the attention block against the layout it replaced (benchmarks/DEVICE_NOTES.md, run 11).

``--variant name=section.field=value,...`` times the trainer's step (124m preset) with those
overrides and reports, besides tokens/s, ``torch.cuda.max_memory_allocated`` (everything: weights,
gradients, optimizer state, activations, buffers), the model state counted from the live tensors
(``trainer.memory.model_state_bytes``, the trainer's ``model_state_bytes``) and the planner's
estimate for the sharding (``trainer.plan.memory_per_gpu``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPE = dict(vocab=50304, seq=1024, d=768, layers=12, heads=12)
REFERENCE = "nanoGPT-style GPT-2 (compile, bf16 autocast)"
TRANSFORMERS = "transformers Llama, our shape (compile, bf16)"


def matmul_peak(trials: int = 5, repeats: int = 10) -> float:
    """The highest rate of ``trials`` short bursts of ``repeats`` 8192^3 bf16 products, with a pause
    between them. The GPU's sustained rate is lower (681 TFLOP/s after 100 products in a row on an
    H200 whose bursts reach 790-820: its clocks drop under the power limit), so the burst is the
    conservative denominator for MFU."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    best = 0.0
    for _ in range(trials):
        time.sleep(0.5)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        torch.cuda.synchronize()
        best = max(best, repeats * 2 * 8192**3 / (time.perf_counter() - start))
    return best


class NanoBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class NanoGPT(nn.Module):
    def __init__(self, vocab, seq, d, layers, heads):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(NanoBlock(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


def flops_per_token(n_params: int) -> float:
    s = SHAPE
    return 6 * n_params + 12 * s["layers"] * s["heads"] * (s["d"] // s["heads"]) * s["seq"]


def optimizer_step(model, opt, micro_loss, accum: int):
    """One optimizer step as every row takes it: ``accum`` micro-batches of ``micro_loss()``
    (a mean over its tokens) forward and backward, gradient clipping at 1, AdamW."""

    def step():
        for _ in range(accum):
            (micro_loss() / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


PROFILE = {"on": False}
KEEP_ROWS = {"on": False}
PEAK_MEMORY: dict[str, int] = {}  # label -> torch.cuda.max_memory_allocated over its steps
ROUNDS: dict[str, list] = {}  # label -> [step, steps, tokens per step, rates] while --rounds > 1 keeps every row alive


def time_steps(step, steps: int, tokens_per_step: int, label: str = "") -> float:
    torch.cuda.reset_peak_memory_stats()
    for _ in range(5):  # compile and warm up
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    rate = steps * tokens_per_step / (time.perf_counter() - start)
    PEAK_MEMORY[label] = torch.cuda.max_memory_allocated()
    if KEEP_ROWS["on"]:
        ROUNDS[label] = [step, steps, tokens_per_step, [rate]]
    if PROFILE["on"]:
        print_profile(step, label)
    return rate


def more_rounds(rounds: int) -> dict[str, float]:
    """Times every kept row ``rounds - 1`` more times, round-robin, and returns each row's best
    tokens/s: a GPU's clocks drift with its temperature over a run (a row timed later ran up to 3%
    slower on the same H200), so each row gets the same chances."""
    for _ in range(rounds - 1):
        for label, (step, steps, tokens, rates) in ROUNDS.items():
            step()  # one untimed step: the previous row's kernels are what the GPU last ran
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            torch.cuda.synchronize()
            rates.append(steps * tokens / (time.perf_counter() - start))
    for label, (_, _, _, rates) in ROUNDS.items():
        print(f"tokens/s by round, {label}: " + ", ".join(f"{r:.0f}" for r in rates))
    return {label: max(rates) for label, (_, _, _, rates) in ROUNDS.items()}


def gpu_time(step, repeats: int) -> float:
    """Seconds of GPU kernels per call of ``step`` (profiler device time), not wall time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            step()
        torch.cuda.synchronize()
    return sum(e.device_time_total for e in prof.key_averages() if e.device_time_total > 0) / repeats / 1e6


def print_profile(step, label: str, steps: int = 2, rows: int = 40) -> None:
    """The GPU kernels of ``steps`` steps by total time, after the timed ones (nothing is compiled here)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.device_time_total for e in events)
    print(f"\nprofile of {label}: {total / steps / 1e3:.1f} ms of GPU kernels per step")
    kinds = {"matmul": ("nvjet", "gemm", "cutlass", "xmma"), "attention": ("sdpa", "fmha", "flash", "cudnn"), "optimizer": ("multi_tensor", "Fused")}
    shares: dict[str, float] = {}
    for e in events:
        kind = next((k for k, marks in kinds.items() if any(m in e.key for m in marks)), "triton/other")
        shares[kind] = shares.get(kind, 0.0) + e.device_time_total
    print("  by kind: " + ", ".join(f"{k} {v / steps / 1e3:.2f} ms" for k, v in sorted(shares.items(), key=lambda kv: -kv[1])))
    for e in sorted(events, key=lambda e: -e.device_time_total)[:rows]:
        print(f"  {e.device_time_total / total:6.1%} {e.device_time_total / steps / 1e3:7.2f} ms  x{e.count // steps:<4} {e.key[:110]}")
    sys.stdout.flush()


def check_sdpa(batch: int = 32, repeats: int = 20) -> None:
    """Causal attention forward + backward at the 124M shape through each SDPA kernel of this GPU."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    h, t, q = SHAPE["heads"], SHAPE["seq"], SHAPE["d"] // SHAPE["heads"]
    x = [torch.randn(batch, h, t, q, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
    flops = 3 * 2 * 2 * batch * h * t * t * q / 2  # causal: half the scores, forward + 2x backward
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        try:
            with sdpa_kernel([backend]):
                for i in range(repeats + 3):
                    if i == 3:
                        torch.cuda.synchronize()
                        start = time.perf_counter()
                    F.scaled_dot_product_attention(*x, is_causal=True).sum().backward()
                torch.cuda.synchronize()
            took = (time.perf_counter() - start) / repeats
            print(f"sdpa {backend.name:<20} {took * 1e3:6.2f} ms per forward+backward ({flops / took / 1e12:.0f} TFLOP/s causal)")
        except RuntimeError as e:
            print(f"sdpa {backend.name:<20} unavailable: {str(e).splitlines()[0][:100]}")
    sys.stdout.flush()


def check_attention(batch: int = 32, repeats: int = 20, device: str = "cuda", compiled: bool = True) -> None:
    """The attention block alone (qkv projection, QK-norm, RoPE, SDPA, output projection), forward
    + backward, compiled, bf16 autocast: ours (``trainer.model.Attention``) with the Triton QK-norm +
    RoPE kernels and with the torch ops they replace, against the layout the torch ops replaced
    (interleaved pairs on a permuted (b, h, t, hd) copy: the baseline) and nanoGPT's (neither).
    Also prints how far the fused block's output and input gradient are from the torch ops'."""
    from dataclasses import replace

    from trainer.model import Attention, ModelConfig, rope_tables

    cfg = ModelConfig(vocab_size=SHAPE["vocab"], seq_len=SHAPE["seq"], d_model=SHAPE["d"], n_layers=SHAPE["layers"], n_heads=SHAPE["heads"])
    h, hd = cfg.n_heads, cfg.head_dim

    class Before(Attention):
        def forward(self, x, rope, mask=None):
            b, t, d = x.shape
            q, k, v = self.qkv(x).view(b, t, 3, h, hd).permute(2, 0, 3, 1, 4)
            q, k = self.q_norm(q), self.k_norm(k)
            cos, sin = (r[:t].to(x.dtype) for r in rope)

            def rotate(z):
                z1, z2 = z[..., 0::2], z[..., 1::2]
                return torch.stack((z1 * cos - z2 * sin, z1 * sin + z2 * cos), dim=-1).flatten(-2)

            y = F.scaled_dot_product_attention(rotate(q).to(v.dtype), rotate(k).to(v.dtype), v, is_causal=True)
            return self.out(y.transpose(1, 2).reshape(b, t, d))

    class Plain(Attention):
        def forward(self, x, rope, mask=None):
            b, t, d = x.shape
            q, k, v = (z.transpose(1, 2) for z in self.qkv(x).view(b, t, 3, h, hd).unbind(2))
            return self.out(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))

    rope = tuple(z.to(device) for z in rope_tables(cfg.seq_len, hd, cfg.rope_base))
    x = torch.randn(batch, cfg.seq_len, cfg.d_model, device=device, requires_grad=True)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times, results = {}, {}
    rows = (("before: interleaved RoPE on a (b, h, t, hd) copy", Before, cfg),
            ("ours, torch ops (model.fused_qk_rope=false)", Attention, replace(cfg, fused_qk_rope=False)),
            ("ours: Triton QK-norm + RoPE (trainer.triton_qk_rope)", Attention, cfg), ("nanoGPT's: no QK-norm, no RoPE", Plain, cfg))
    for name, cls, row_cfg in rows:
        torch.manual_seed(0)
        block = cls(row_cfg).to(device)
        with torch.no_grad():  # norm weights away from 1, so that their gradients matter in the comparison
            for norm in (block.q_norm, block.k_norm):
                norm.weight.uniform_(0.5, 1.5)
        fn = torch.compile(block) if compiled else block

        def step():
            x.grad = None
            with torch.autocast(device, dtype=torch.bfloat16):
                out = fn(x, rope)
            out.float().square().mean().backward()
            return out

        for i in range(repeats + 3):
            if i == 3:
                sync()
                start = time.perf_counter()
            out = step()
        sync()
        wall = (time.perf_counter() - start) / repeats
        # kernel time is the comparison: one block's wall time is also its launches (the Triton
        # op's are slower to launch than inductor's, which a whole model hides behind its GPU work)
        times[name] = gpu_time(step, repeats) if device == "cuda" else wall
        results[name] = (out.detach().float(), x.grad.float(), block.q_norm.weight.grad)
        base = next(iter(times.values()))
        print(f"attention block {name:<55} {times[name] * 1e3:7.3f} ms of kernels forward+backward ({base / times[name]:4.2f}x the baseline's), "
              f"{wall * 1e3:.3f} ms wall")
        if PROFILE["on"]:
            print_profile(step, f"attention block {name}", rows=12)
        sys.stdout.flush()
    torch_ops, fused = results[rows[1][0]], results[rows[2][0]]
    for what, a, b in zip(("output", "input gradient", "q-norm weight gradient"), torch_ops, fused):
        a, b = a.float(), b.float()
        print(f"fused vs torch ops, bf16: {what} max abs diff {(a - b).abs().max().item():.3g} (max abs value {a.abs().max().item():.3g})")


def check_qk_kernel(batch: int = 32, repeats: int = 50) -> None:
    """QK-norm + RoPE alone, forward + backward, on the projection of one 124M layer (bf16): the
    Triton op at several launch shapes against the torch ops compiled by inductor (the baseline),
    with the bandwidth each reaches counted from the bytes the fused op must move."""
    from trainer import triton_qk_rope
    from trainer.model import apply_rope, rope_tables

    h, hd = SHAPE["heads"], SHAPE["d"] // SHAPE["heads"]
    qkv = torch.randn(batch, SHAPE["seq"], 3, h, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    cos, sin = (z.cuda() for z in rope_tables(SHAPE["seq"], hd, 10000.0))
    qw, kw = (torch.ones(hd, device="cuda", requires_grad=True) for _ in range(2))
    grads = [torch.randn(batch, h, SHAPE["seq"], hd, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for _ in range(3)]

    def torch_ops(qkv, qw, kw, cos, sin, eps):
        q, k, v = qkv.unbind(2)
        q, k = F.rms_norm(q.float(), (hd,), qw, eps), F.rms_norm(k.float(), (hd,), kw, eps)
        return apply_rope(q, cos, sin).to(v.dtype), apply_rope(k, cos, sin).to(v.dtype), v

    # bytes the fused op must move, in thirds of qkv: forward reads 3 and writes q, k, v (3);
    # backward reads dq, dk, dv (3) and q, k (2) and writes dqkv (3)
    moved = qkv.numel() * 2 * 14 / 3
    launches = [(None, None)] + [(r, w) for r in (16, 32, 64, 128) for w in (2, 4, 8) if r * hd // w >= 64]
    base, default = None, dict(triton_qk_rope.LAUNCH)
    for rows, warps in launches:
        fn = torch.compile(torch_ops) if rows is None else triton_qk_rope.qk_norm_rope
        if rows is not None:
            triton_qk_rope.LAUNCH.update(rows=rows, warps=warps)

        def step():
            qkv.grad = qw.grad = kw.grad = None
            torch.autograd.backward(fn(qkv, qw, kw, cos, sin, 1e-6), grads)

        for _ in range(3):
            step()
        took = gpu_time(step, repeats)  # kernels only: the eager op's launches take longer than its kernels at this size
        base = base or took
        name = "torch ops, compiled (baseline)" if rows is None else f"Triton, {rows} rows / {warps} warps per program"
        print(f"qk-norm + rope {name:<40} {took * 1e6:7.1f} us of kernels forward+backward, {moved / took / 1e12:5.2f} TB/s, {base / took:4.2f}x the baseline")
    triton_qk_rope.LAUNCH.update(default)
    sys.stdout.flush()


def check_head(tokens: int = 32768, repeats: int = 10) -> None:
    """Output head + loss (soft-cap 30, z-loss 1e-4), forward and backward, on bf16 hidden states
    of ``tokens`` positions and a bf16 head weight (as under FSDP2's bf16 policy): the whole
    logits compiled (the unfused path), ``trainer.chunked_loss`` with its chunk kernel as written
    and as a Triton kernel (``trainer.triton_loss``: with the exact tanh, then with the hardware's
    approximate one at several block sizes), and Liger-Kernel's fused linear cross-entropy when it is
    installed."""
    import trainer.chunked_loss as chunked
    from trainer.model import lm_loss

    torch.manual_seed(0)
    hidden = torch.randn(tokens, SHAPE["d"], device="cuda", dtype=torch.bfloat16, requires_grad=True)
    weight = (torch.randn(SHAPE["vocab"], SHAPE["d"], device="cuda") * 0.05).to(torch.bfloat16).requires_grad_()
    targets = torch.randint(0, SHAPE["vocab"], (tokens,), device="cuda")

    @torch.compile
    def unfused(h, w, t):
        return lm_loss(30.0 * torch.tanh((h @ w.t()).float() / 30.0), t, 1e-4, 0.0)[0]

    def chunked_with(kernel):
        def run(h, w, t):
            original = chunked._gpu_chunk_loss
            chunked._gpu_chunk_loss = lambda: kernel
            try:
                return chunked.linear_cross_entropy(h, w, t, 30.0, 1e-4, 0.0, 8192)[0]
            finally:
                chunked._gpu_chunk_loss = original

        return run

    inductor = torch.compile(chunked.chunk_loss_and_grad, dynamic=False)
    from functools import partial

    from trainer.triton_loss import chunk_loss_and_grad_triton

    rows = [("unfused (compiled logits)", unfused), ("chunked_loss, 8192, inductor", chunked_with(inductor))]
    rows.append(("chunked_loss, 8192, triton, exact tanh", chunked_with(partial(chunk_loss_and_grad_triton, fast_tanh=False))))
    rows += [(f"chunked_loss, 8192, triton {b}/{w}", chunked_with(partial(chunk_loss_and_grad_triton, block=b, num_warps=w)))
             for b, w in ((1024, 4), (2048, 4), (2048, 8), (4096, 8), (4096, 16), (8192, 16))]
    try:
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss(lse_square_scale=1e-4, softcap=30.0, reduction="sum")
        rows.append(("Liger-Kernel fused linear CE", lambda h, w, t: liger(w, h, t)))
    except ImportError as e:
        print(f"Liger-Kernel not installed: {e}")
    reference = None
    for name, fn in rows:
        try:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            for i in range(repeats + 3):
                if i == 3:
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                hidden.grad = weight.grad = None
                loss = fn(hidden, weight, targets)
                loss.backward()
            torch.cuda.synchronize()
            took = (time.perf_counter() - start) / repeats
            grads = (hidden.grad.float(), weight.grad.float())
            reference = reference or (loss.item(), grads, took)  # the unfused path
            print(f"head+loss {name:<30} {took * 1e3:7.2f} ms forward+backward ({reference[2] / took:4.2f}x the whole logits' speed), peak {(torch.cuda.max_memory_allocated() - base) / 2**30:5.2f} GiB over inputs; "
                  f"loss {loss.item():.6e}, "
                  f"grad rel diff {max(((g - r).abs().max() / r.abs().max()).item() for g, r in zip(grads, reference[1])):.1e}")
        except Exception as e:  # a formulation that does not compile here is reported, not fatal
            print(f"head+loss {name:<30} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
        sys.stdout.flush()


def bench_reference(micro: int, steps: int, accum: int = 1) -> tuple[float, int]:
    torch.manual_seed(0)
    model = NanoGPT(**SHAPE).cuda()
    # the tied embedding is also the output head, whose matmul counts: leave only positions out
    n = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), fused=True)
    compiled = torch.compile(model)
    x = torch.randint(0, SHAPE["vocab"], (micro, SHAPE["seq"] + 1), device="cuda")

    def micro_loss():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return compiled(x[:, :-1], x[:, 1:])

    return time_steps(optimizer_step(model, opt, micro_loss, accum), steps, accum * micro * SHAPE["seq"], REFERENCE), n


def bench_transformers_llama(micro: int, steps: int, accum: int = 1) -> tuple[float, int]:
    """A ``transformers`` Llama of our shape (RMSNorm, RoPE, SwiGLU at 2048, untied head; no
    QK-norm, soft-cap or z-loss), SDPA attention, bf16 autocast, torch.compile of the whole model,
    ``F.cross_entropy`` on its logits."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=SHAPE["vocab"], hidden_size=SHAPE["d"], intermediate_size=64 * -(-8 * SHAPE["d"] // 3 // 64),
                      num_hidden_layers=SHAPE["layers"], num_attention_heads=SHAPE["heads"], num_key_value_heads=SHAPE["heads"],
                      max_position_embeddings=SHAPE["seq"], tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).cuda()
    n = sum(p.numel() for p in model.parameters()) - model.model.embed_tokens.weight.numel()  # the untied head counts
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), fused=True)
    compiled = torch.compile(model)
    x = torch.randint(0, SHAPE["vocab"], (micro, SHAPE["seq"] + 1), device="cuda")

    def micro_loss():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = compiled(input_ids=x[:, :-1]).logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), x[:, 1:].reshape(-1))

    return time_steps(optimizer_step(model, opt, micro_loss, accum), steps, accum * micro * SHAPE["seq"], TRANSFORMERS), n


def bench_ours(micro: int, steps: int, overrides: list[str] = (), label: str = "ours", accum: int = 1) -> tuple[float, int]:
    """Our model through the trainer's own code path (parallelize + forward_loss), 124M preset."""
    from trainer.config import load_train_config
    from trainer.distributed import init_distributed
    from trainer.model import Transformer
    from trainer.optim import param_groups
    from trainer.parallel import parallelize
    from trainer.train import forward_loss

    _, world, _ = init_distributed()
    cfg = load_train_config("124m", overrides=[f"optim.micro_batch={micro}", *overrides])
    micro = cfg.optim.micro_batch
    torch.manual_seed(0)
    model = Transformer(cfg.model).cuda()
    n = model.num_params()
    model = parallelize(model, cfg.parallel, world, "cuda")
    step_loss = forward_loss(model, cfg)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=6e-4, betas=(0.9, 0.95), fused=True)
    x = torch.randint(0, SHAPE["vocab"], (micro, SHAPE["seq"] + 1), device="cuda")
    tokens = micro * SHAPE["seq"]

    def micro_loss():
        return step_loss(x[:, :-1], x[:, 1:])[0] / tokens  # the trainer's loss is a sum over target tokens

    return time_steps(optimizer_step(model, opt, micro_loss, accum), steps, accum * tokens, label), n


def bench_variant(micro: int, steps: int, overrides: list[str]) -> dict:
    """The trainer's step (parallelize + forward_loss, 124m preset) with ``overrides``; memory as measured."""
    import torch.distributed as dist

    from trainer.config import load_train_config
    from trainer.distributed import init_distributed
    from trainer.memory import model_state_bytes
    from trainer.model import Transformer
    from trainer.optim import param_groups
    from trainer.parallel import parallelize
    from trainer.plan import memory_per_gpu
    from trainer.train import forward_loss

    _, world, _ = init_distributed()
    cfg = load_train_config("124m", overrides=[f"optim.micro_batch={micro}", *overrides])
    micro = cfg.optim.micro_batch
    torch.manual_seed(0)
    model = Transformer(cfg.model).cuda()
    n, total = model.num_params(), model.num_params(exclude_embeddings=False)
    model = parallelize(model, cfg.parallel, world, "cuda")
    step_loss = forward_loss(model, cfg)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=6e-4, betas=(0.9, 0.95), fused=not cfg.parallel.cpu_offload)
    x = torch.randint(0, SHAPE["vocab"], (micro, SHAPE["seq"] + 1), device="cuda")
    tokens = micro * SHAPE["seq"]
    state = {"bytes": 0}

    def step():
        loss, _, _ = step_loss(x[:, :-1], x[:, 1:])
        parts = model_state_bytes(model, opt)
        (loss / tokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["bytes"] = max(sum(parts.values()), sum(model_state_bytes(model, opt).values()))
        opt.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    rate = time_steps(step, steps, tokens) * world
    row = {"replicate": "replicate (DDP)", "grad_op": "ZeRO-2", "full": "full shard (ZeRO-3)"}.get(cfg.parallel.sharding)
    plan = memory_per_gpu(total, world)[row] if row and world > 1 else memory_per_gpu(total, 1)["replicate (DDP)"]
    peak = torch.tensor([torch.cuda.max_memory_allocated(), state["bytes"]], device="cuda", dtype=torch.float64)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    del model, opt, step_loss
    return {"rate": rate, "n": n, "max_allocated": peak[0].item(), "state": peak[1].item(), "plan": plan, "world": world}


def check_flex(window: int = 128) -> None:
    """Local/global and prefix masks through flex_attention (compiled, CUDA) against SDPA with the
    boolean mask: outputs and gradients of a small model, fp32, and bf16 under autocast."""
    from trainer.model import ModelConfig, Transformer

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=1000, seq_len=512, d_model=256, n_layers=4, n_heads=4, window=window, attention_pattern="LG", attention_backend="sdpa")
    model = Transformer(cfg).cuda()
    x = torch.randint(0, 1000, (4, 512), device="cuda")
    for prefix in (None, torch.tensor([10, 100, 300, 511], device="cuda")):
        for dtype in (torch.float32, torch.bfloat16):
            results = []
            for backend in ("sdpa", "flex"):
                cfg.attention_backend = backend
                model.zero_grad()
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                    out = model(x, prefix)
                out.float().square().mean().backward()
                results.append((out.float(), model.layers[0].attn.qkv.weight.grad.clone()))
            (a, ga), (b, gb) = results
            print(f"flex vs sdpa, window {window}, prefix {prefix is not None}, {dtype}: max |out diff| {(a - b).abs().max().item():.2e} "
                  f"(|out| {a.abs().max().item():.2e}), max |grad diff| {(ga - gb).abs().max().item():.2e} (|grad| {ga.abs().max().item():.2e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step (gradient accumulation), for every row")
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--transformers", action="store_true", help="also a transformers Llama of our shape (needs transformers installed)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="the trainer's step with comma-separated section.field=value overrides, e.g. offload=parallel.cpu_offload=true")
    parser.add_argument("--check-flex", action="store_true", help="only compare flex_attention with SDPA on local/global and prefix masks")
    parser.add_argument("--ours", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="a row of the MFU table: the trainer's step with these overrides (default: one row, none)")
    parser.add_argument("--profile", action="store_true", help="print each row's GPU kernels by time")
    parser.add_argument("--check-attention", action="store_true", help="also time the attention block against the layout it replaced")
    parser.add_argument("--check-head", action="store_true", help="also time the output head + loss: unfused, chunked, Liger-Kernel")
    parser.add_argument("--check-sdpa", action="store_true", help="also time causal attention through each SDPA kernel")
    parser.add_argument("--json", type=Path, help="with --variant: also write the variants' results here (rank 0)")
    parser.add_argument("--rounds", type=int, default=1, help="time the table's rows this many times, round-robin, and keep each row's best")
    args = parser.parse_args()
    if args.check_flex:
        check_flex()
        return
    if args.variant:
        import torch.distributed as dist

        results = []
        for spec in args.variant:
            name, _, overrides = spec.partition("=")
            results.append((name, bench_variant(args.micro_batch, args.steps, [o for o in overrides.split(",") if o])))
            torch.cuda.empty_cache()
        if dist.get_rank() == 0:
            print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}; 124m preset, micro-batch {args.micro_batch} per GPU, {args.steps} timed steps, "
                  f"{results[0][1]['world']} process(es)")
            print(f"{'variant':<14}{'tokens/s':>11}{'max alloc GiB':>15}{'model state GiB':>17}{'planner GiB':>13}{'state/plan':>12}")
            for name, r in results:
                print(f"{name:<14}{r['rate']:>11.0f}{r['max_allocated'] / 2**30:>15.2f}{r['state'] / 2**30:>17.2f}{r['plan'] / 2**30:>13.2f}{r['state'] / r['plan']:>12.2f}")
            if args.json:
                import json

                args.json.write_text(json.dumps({name: r for name, r in results}, indent=1))
        dist.destroy_process_group()
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    PROFILE["on"] = args.profile
    KEEP_ROWS["on"] = args.rounds > 1
    name = torch.cuda.get_device_name()
    peak = matmul_peak()
    from trainer.plan import datasheet_peak

    sheet = datasheet_peak(name) or float("nan")
    print(f"device: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}; measured bf16 matmul peak {peak / 1e12:.0f} TFLOP/s (data sheet {sheet / 1e12:.0f})")
    print(f"shape: GPT-2 124M (d {SHAPE['d']}, {SHAPE['layers']} layers, {SHAPE['heads']} heads, seq {SHAPE['seq']}), micro-batch {args.micro_batch} x {args.accum} per optimizer step, {args.steps} timed steps\n")
    if args.check_sdpa:
        check_sdpa(args.micro_batch)
    if args.check_attention:
        check_qk_kernel(args.micro_batch)
        check_attention(args.micro_batch)
    if args.check_head:
        check_head()
    rows = []

    def add_row(label: str, bench) -> None:
        held = torch.cuda.memory_allocated()  # rows kept alive for --rounds are not this row's memory
        rows.append((label, *bench()))
        PEAK_MEMORY[label] -= held
        torch.cuda.empty_cache()

    if not args.skip_reference:
        add_row(REFERENCE, lambda: bench_reference(args.micro_batch, args.steps, args.accum))
    if args.transformers:
        add_row(TRANSFORMERS, lambda: bench_transformers_llama(args.micro_batch, args.steps, args.accum))
    for spec in args.ours or ([] if args.skip_ours else ["="]):
        name, _, overrides = spec.partition("=")
        label = f"ours{': ' + name if name else ''} (124m preset{', ' + overrides if overrides else ''})"
        add_row(label, lambda: bench_ours(args.micro_batch, args.steps, [o for o in overrides.split(",") if o], label, args.accum))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if not rows:
        return
    if args.rounds > 1:
        best = more_rounds(args.rounds)
        rows = [(label, best[label], n) for label, _, n in rows]
    width = max(len(label) for label, _, _ in rows) + 2
    print(f"\n{'model':<{width}}{'params':>8}{'tokens/s':>11}{'TFLOP/s':>9}{'MFU meas.':>11}{'MFU sheet':>11}{'vs ref.':>9}{'peak GiB':>10}")
    reference = rows[0][1] if not args.skip_reference else float("nan")
    for label, rate, n in rows:
        achieved = rate * flops_per_token(n)
        print(f"{label:<{width}}{n / 1e6:>7.0f}M{rate:>11.0f}{achieved / 1e12:>9.0f}{achieved / peak:>10.1%}{achieved / sheet:>10.1%}{rate / reference:>8.2f}x{PEAK_MEMORY.get(label, float('nan')) / 2**30:>10.1f}")


if __name__ == "__main__":
    main()
