"""The trainer's data loader: how much longer a step takes because of its batch, built inline, on a thread, or in a worker process.

    python -m benchmarks.data_loader [--tokens runs/sample/tokens] [--step-seconds 1.0] [--busy 0.3] [--steps 12]

Builds the 124m preset's batches (512 sequences of 1024 + 1 tokens per optimizer step, the
trainer's own MixtureSampler over the memory-mapped Arrow shards of a curation run) for rank 0 of
1 and of 2 processes while the "training step" runs: ``--busy`` of it is the training loop's own
Python work (launching kernels holds the interpreter lock; pure Python here), the rest a sleep
(waiting on the GPU releases the lock). The default step, 1.0 s, is the 124m preset's on one H200
(benchmarks/results/train_gpu-h200-final.txt: 524,288 tokens at 523k tokens/s); with two
processes each is given half of it (perfect scaling: the hardest case for the loader). Loaders:
  - synchronous (baseline): built at the start of each step, as nanoGPT's ``get_batch`` is;
  - thread: one step ahead on a thread, as the trainer did before (a named baseline);
  - worker process: ``trainer.data.StepBatches`` (a torch DataLoader worker), as the trainer does.
Printed per loader: the build time, the wait at the start of the step, how much longer the loop's
Python took than without a loader (a builder thread shares its interpreter lock), and the data
loader's share of step time = (wait + that delay) / (step + wait + that delay).
The issue's goal is a share below 1%. The goal is measured here, not asserted in the tests: a
share of wall-clock time depends on the machine and on its load (the trainer still logs its own
``data_time_share`` per step in metrics.jsonl).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, machine  # noqa: E402


def spin(n: int) -> int:
    """Pure Python work: holds the interpreter lock, as a training loop launching kernels does."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    n = 200_000
    start = time.perf_counter()
    spin(n)
    return int(n * seconds / (time.perf_counter() - start))


class ThreadAhead:
    """The trainer's previous loader: the next step's batch built on one thread."""

    def __init__(self, make):
        self.make, self.pool, self.pending = make, ThreadPoolExecutor(max_workers=1), None

    def get(self, step: int, last: int):
        start = time.perf_counter()
        batch, state = (self.pending.result() if self.pending else self.make(step))
        waited = time.perf_counter() - start
        self.pending = self.pool.submit(self.make, step + 1) if step + 1 < last else None
        return batch, state, waited

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


def run(streams, world: int, step_seconds: float, busy: float, work: int, steps: int, loader: str) -> tuple[float, float, float]:
    """(median seconds to build a batch, median seconds a step waited at its start, median seconds of the loop's Python)."""
    from trainer.data import MixtureSampler, StepBatches

    sampler = MixtureSampler(streams, 1024)
    built = []

    def make(step: int):
        start = time.perf_counter()
        rows = sampler.batch(step, 512, 0, world)
        built.append(time.perf_counter() - start)  # in the worker process this list is the worker's own
        return rows, sampler.state_dict()

    if loader == "worker process":
        batches = StepBatches(make, 0, steps)
        get = batches.get
    elif loader == "thread":
        batches = ThreadAhead(make)
        get = lambda step: batches.get(step, steps)  # noqa: E731
    elif loader == "none":  # the step alone
        batches = None
        get = lambda step: None  # noqa: E731
    else:
        batches = None
        get = lambda step: (*make(step), 0.0)  # noqa: E731
    waits, pythons = [], []
    try:
        for step in range(steps):
            start = time.perf_counter()
            get(step)
            waits.append(time.perf_counter() - start)
            start = time.perf_counter()
            spin(work)  # the loop's Python: slower when a builder thread takes the interpreter lock
            pythons.append(time.perf_counter() - start)
            time.sleep(step_seconds / world * (1 - busy))  # waiting on the GPU
    finally:
        if batches is not None:
            batches.close()
    build = statistics.median(built) if built else float("nan")
    return build, statistics.median(waits[1:]), statistics.median(pythons[1:])  # the first step has nothing to overlap with


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=Path, default=ROOT / "runs" / "sample" / "tokens", help="a curation run's tokens/ folder")
    parser.add_argument("--step-seconds", type=float, default=1.0, help="one process's training step (default: the 124m preset on one H200)")
    parser.add_argument("--busy", type=float, default=0.3, help="share of the step the training loop spends in Python")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    manifest = args.tokens / "manifest.json"
    if not manifest.exists():
        sys.exit(f"{manifest} not found: curate first (python -m pipelines.web_corpus writes runs/sample/tokens)")
    from trainer.data import load_streams

    streams, _, _ = load_streams(manifest, 0.05)
    print(f"machine: {machine()}")
    print(f"data: {manifest} ({sum(s.length for s in streams.values()):,} training tokens, cycled); 512 x 1025 tokens per step; "
          f"step: {args.step_seconds:.2f} s / processes, {args.busy:.0%} of it Python holding the interpreter lock, the rest a sleep; {args.steps} steps\n")
    print(f"{'processes':>9}  {'loader':<24}{'build ms':>9}{'wait ms':>9}{'Python delay ms':>16}{'share of step':>15}{'vs synchronous':>16}")
    for world in (1, 2):
        step = args.step_seconds / world
        work = calibrate(step * args.busy)
        alones = [run(streams, world, args.step_seconds, args.busy, work, 4, "none")[2] for _ in range(3)]
        alone = min(alones)
        print(f"{world:>9}  the loop's Python alone: {alone * 1e3:.1f} ms, spread over three runs {(max(alones) - alone) * 1e3:.1f} ms (the noise floor of the delay column)")
        rows = []
        for loader in ("synchronous (baseline)", "thread", "worker process"):
            build, wait, python = run(streams, world, args.step_seconds, args.busy, work, args.steps, "inline" if "baseline" in loader else loader)
            delay = max(python - alone, 0.0)
            rows.append((loader, build, wait, delay, (wait + delay) / (step + wait + delay)))
        base = rows[0][4]
        for loader, build, wait, delay, share in rows:
            built = f"{build * 1e3:>9.1f}" if build == build else f"{'-':>9}"  # the worker's build time stays in the worker
            print(f"{world:>9}  {loader:<24}{built}{wait * 1e3:>9.2f}{delay * 1e3:>16.1f}{share:>14.2%}{base / share:>15.0f}x")

if __name__ == "__main__":
    main()
