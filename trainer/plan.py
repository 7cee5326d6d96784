"""The data-budget planner: ``python -m trainer.plan --params 1.3e9 --run runs/sample --gpus 8``.

From a model size, a compute budget in FLOPs, or GPU-hours, it gives the Chinchilla-optimal
model and token count, how many raw tokens must be crawled to get those tokens given the
retention a curation run measured, and the training memory per GPU under each sharding choice.

Formulas (printed with the answer):
  training compute           C = 6 N D                      (N parameters, D tokens)
  Chinchilla optimum         D = 20 N  =>  N = sqrt(C / 120)
  GPU-hours to FLOPs         C = hours * 3600 * peak FLOP/s * MFU
  raw tokens to crawl        D / retention                  (retention: shard tokens / extracted tokens of a run)
  memory per GPU, bf16 mixed precision with Adam, N GPUs (ZeRO paper's accounting, activations excluded):
    weights 2 bytes/param (bf16), gradients 2 bytes/param (bf16),
    Adam states 12 bytes/param (fp32 master weights, momentum, variance)
    replicate (DDP)            2 + 2 + 12         bytes/param
    ZeRO-1 (optimizer sharded) 2 + 2 + 12/N
    ZeRO-2 (+ gradients)       2 + (2 + 12)/N
    full shard (ZeRO-3/FSDP)   (2 + 2 + 12)/N
  checked against the trainer: its ``model_state_bytes`` (parameter, gradient and Adam tensors and
  FSDP2's gathered parameters, counted from the live tensors) lies within 20% of these for
  parallel.sharding replicate, grad_op and full (DDP, ZeRO-2, ZeRO-3; FSDP2 has no ZeRO-1).
  FSDP2 splits the bytes differently (fp32 sharded parameters that are the master weights,
  fp32 gradients, bf16 parameters gathered between forward and backward), to the same totals.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from tokenizer.retention import Retention

TOKENS_PER_PARAM = 20
PEAK_BF16_FLOPS = {"h100": 989e12, "h200": 989e12, "a100": 312e12}  # dense bf16, per GPU


@dataclass(frozen=True)
class Budget:
    params: float
    tokens: float
    flops: float


def chinchilla(params: float | None = None, flops: float | None = None, tokens_per_param: float = TOKENS_PER_PARAM) -> Budget:
    if (params is None) == (flops is None):
        raise ValueError("give exactly one of params or flops")
    if params is not None:
        tokens = tokens_per_param * params
        return Budget(params, tokens, 6 * params * tokens)
    params = math.sqrt(flops / (6 * tokens_per_param))
    return Budget(params, tokens_per_param * params, flops)


def datasheet_peak(device_name: str) -> float | None:
    """Dense bf16 FLOP/s of a known GPU, matched in its device name (e.g. "NVIDIA H100 80GB HBM3")."""
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k.upper() in device_name.upper()), None)


def gpu_hours_to_flops(hours: float, gpu: str, mfu: float) -> float:
    return hours * 3600 * PEAK_BF16_FLOPS[gpu] * mfu


def memory_per_gpu(params: float, n_gpus: int) -> dict[str, float]:
    """Bytes per GPU for weights + gradients + Adam states under each sharding choice."""
    w, g, o = 2 * params, 2 * params, 12 * params
    return {
        "replicate (DDP)": w + g + o,
        "ZeRO-1": w + g + o / n_gpus,
        "ZeRO-2": w + (g + o) / n_gpus,
        "full shard (ZeRO-3)": (w + g + o) / n_gpus,
    }


def run_retention(run_dir: Path) -> tuple[float, float]:
    """(shard tokens / extracted tokens, shard tokens / raw-record tokens) measured by a run."""
    stats_path = run_dir / "stats.json"
    if not stats_path.is_file():
        raise FileNotFoundError(f"{stats_path} not found: give a finished curation run's directory")
    retention = Retention.of_run(stats_path)
    if retention.tokens_in_shards is None:
        raise ValueError(f"{run_dir} wrote no token shards (shards.enabled was false)")
    return retention.shard_tokens_vs_extracted, retention.shard_tokens_vs_raw()


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.plan", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--params", type=float, help="model parameters, e.g. 1.3e9")
    size.add_argument("--flops", type=float, help="training compute budget in FLOPs, e.g. 1e21")
    size.add_argument("--gpu-hours", type=float, help="training budget in GPU-hours")
    parser.add_argument("--gpu", choices=sorted(PEAK_BF16_FLOPS), default="h100")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation assumed for --gpu-hours")
    parser.add_argument("--tokens-per-param", type=float, default=TOKENS_PER_PARAM)
    parser.add_argument("--run", type=Path, help="a finished curation run: use its measured retention")
    parser.add_argument("--gpus", type=int, nargs="+", default=[8], help="GPU counts for the memory table")
    args = parser.parse_args(argv)
    try:
        flops = gpu_hours_to_flops(args.gpu_hours, args.gpu, args.mfu) if args.gpu_hours else args.flops
        budget = chinchilla(args.params, flops, args.tokens_per_param)
        retention = run_retention(args.run) if args.run else None
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model: {_si(budget.params)} parameters, {_si(budget.tokens)} tokens ({args.tokens_per_param:g} per parameter), "
          f"{budget.flops:.3g} FLOPs (C = 6 N D)")
    if args.gpu_hours:
        print(f"  from {args.gpu_hours:g} {args.gpu} GPU-hours at {args.mfu:.0%} MFU of {PEAK_BF16_FLOPS[args.gpu]:.3g} FLOP/s")
    if retention:
        vs_extracted, vs_raw = retention
        raw = f"{vs_raw:.4%} of raw-record tokens" if vs_raw else "its raw-record tokens not counted"
        print(f"data: run {args.run} kept {vs_extracted:.4%} of extracted tokens ({raw})")
        print(f"  extracted tokens to crawl: {_si(budget.tokens / vs_extracted)} (= D / retention)")
        if vs_raw:
            print(f"  raw-record tokens to crawl: {_si(budget.tokens / vs_raw)}")
    print("memory per GPU for weights + gradients + Adam (bf16 mixed precision; activations excluded):")
    print(f"{'GPUs':>6}" + "".join(f"{name:>22}" for name in memory_per_gpu(1, 1)))
    for n in args.gpus:
        print(f"{n:>6}" + "".join(f"{b / 2**30:>18.1f} GiB" for b in memory_per_gpu(budget.params, n).values()))
    print("  replicate 16 B/param; ZeRO-1 4 + 12/N; ZeRO-2 2 + 14/N; full shard 16/N (bytes per parameter)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
