"""FSDP2 scaling from one GPU to several of one host: the 124m preset's step, per sharding strategy.

    python benchmarks/gpu_scaling.py [--gpus 2] [--micro-batch 32] [--steps 20]

Runs ``benchmarks/train_gpu.py --variant`` in one process (the trainer's one-GPU path: unsharded,
compiled whole, bf16 autocast) and under ``torchrun --nproc_per_node=<gpus>`` for each
``parallel.sharding`` (FSDP2: replicate, grad_op, full), micro-batch per GPU fixed (weak scaling,
one micro-batch per step: no accumulation to hide the communication behind, the hard case), and
prints tokens/s and the scaling efficiency tokens/s(N) / (N x tokens/s(1)); the issue's goal is
>= 90% from 1 to 2 GPUs. The baseline is our own one-GPU step, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARDINGS = ("replicate", "grad_op", "full")


def run(processes: int, variants: list[str], micro: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [*launcher, str(ROOT / "benchmarks" / "train_gpu.py"), "--skip-reference", "--skip-ours", "--micro-batch", str(micro),
                   "--steps", str(steps), "--json", str(out)]
        for variant in variants:
            command += ["--variant", variant]
        subprocess.run(command, check=True)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    one = run(1, ["one=parallel.sharding=full"], args.micro_batch, args.steps)["one"]  # one process trains unsharded whatever the strategy
    many = run(args.gpus, [f"{s}=parallel.sharding={s}" for s in SHARDINGS], args.micro_batch, args.steps)
    print(f"\n124m preset, micro-batch {args.micro_batch} per GPU, {args.steps} timed steps; baseline: one GPU, {one['rate']:.0f} tokens/s")
    print(f"{'sharding':<12}{'GPUs':>6}{'tokens/s':>12}{'per GPU':>10}{'efficiency':>12}")
    for name in SHARDINGS:
        rate = many[name]["rate"]
        print(f"{name:<12}{args.gpus:>6}{rate:>12.0f}{rate / args.gpus:>10.0f}{rate / (args.gpus * one['rate']):>11.1%}")


if __name__ == "__main__":
    main()
