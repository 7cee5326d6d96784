"""The trainer's data loader: what a step waits for its batch, with and without building it ahead.

    python -m benchmarks.data_loader [--tokens runs/sample/tokens] [--step-seconds 1.13] [--steps 20]

Builds the 124m preset's batches (512 sequences of 1024 + 1 tokens per optimizer step, the
trainer's own MixtureSampler over the memory-mapped Arrow shards of a curation run) for rank 0 of
1 and of 2 processes, while the "training step" is a sleep of ``--step-seconds`` per process: a
sleep, like a process waiting on its GPU, releases the GIL. The default, 1.13 s, is the 124m
preset's step on one H100 (benchmarks/results/train_gpu-h100-final.txt: 524,288 tokens at 464k
tokens/s); with two processes each is given half of it (perfect scaling: the hardest case for the
loader). Baseline: the same loader called synchronously at the start of each step, as the trainer
did before ``trainer.data.StepBatches`` and as nanoGPT's ``get_batch`` is. Printed: the data
loader's share of step time, the issue's goal being < 1%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, machine  # noqa: E402


def run(streams, world: int, step_seconds: float, steps: int, ahead: bool) -> tuple[float, float]:
    """(median seconds to build a batch, median seconds a step waited for it)."""
    from trainer.data import MixtureSampler, StepBatches

    sampler = MixtureSampler(streams, 1024)
    built: list[float] = []

    def make(step: int):
        start = time.perf_counter()
        rows = sampler.batch(step, 512, 0, world)
        built.append(time.perf_counter() - start)
        return rows, sampler.state_dict()

    batches = StepBatches(make, ahead=ahead)
    waits = []
    try:
        for step in range(steps):
            _, _, waited = batches.get(step, steps)
            waits.append(waited)
            time.sleep(step_seconds / world)  # the step on the GPU
    finally:
        batches.close()
    return statistics.median(built), statistics.median(waits[1:])  # the first step has nothing to overlap with


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=Path, default=ROOT / "runs" / "sample" / "tokens", help="a curation run's tokens/ folder")
    parser.add_argument("--step-seconds", type=float, default=1.13, help="one process's training step (default: the 124m preset on one H100)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    manifest = args.tokens / "manifest.json"
    if not manifest.exists():
        sys.exit(f"{manifest} not found: curate first (python -m pipelines.web_corpus writes runs/sample/tokens)")
    from trainer.data import load_streams

    streams, _, _ = load_streams(manifest, 0.05)
    print(f"machine: {machine()}")
    print(f"data: {manifest} ({sum(s.length for s in streams.values()):,} training tokens, cycled); 512 x 1025 tokens per step; "
          f"GPU step simulated by a sleep of {args.step_seconds:.2f} s / processes; {args.steps} steps\n")
    print(f"{'processes':>9}  {'loader':<28}{'build ms':>9}{'wait ms':>9}{'share of step':>15}{'vs synchronous':>16}")
    for world in (1, 2):
        step = args.step_seconds / world
        rows = [(label, *run(streams, world, args.step_seconds, args.steps, ahead)) for label, ahead in
                (("synchronous (baseline)", False), ("StepBatches (one step ahead)", True))]
        base_wait = rows[0][2]
        for label, build, wait in rows:
            ratio = f"{base_wait / wait:>14.0f}x" if wait > 0 else f"{'-':>15}"
            print(f"{world:>9}  {label:<28}{build * 1e3:>9.1f}{wait * 1e3:>9.2f}{wait / (wait + step):>14.2%}{ratio}")


if __name__ == "__main__":
    main()
