"""Training on the CPU: glibc's default allocator against the trainer's (``trainer.cpu_allocator``).

    python -m benchmarks.cpu_training [--tokens runs/sample/tokens] [--steps 30] [--threads 1] [--rounds 2]

Runs ``python -m trainer`` (the tiny preset, fp32, gloo, one process) on a curation run's token
shards, alternately as it is and with ``keep_freed_memory`` turned off (the baseline: glibc's
default mmap and trim thresholds, which map and zero-fill the step's large tensors again every
micro-batch), ``--rounds`` times each. Prints each run's wall, user and system CPU seconds, the
median of each side, and their ratio, and checks that both sides logged the same losses (the
allocator must change nothing but the time). The tokens come from ``python -m pipelines.web_corpus``
(``make run``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, machine, report  # noqa: E402

# the baseline: the trainer with the allocator left as glibc sets it
BASELINE = "import sys, trainer.train as t; t.keep_freed_memory = lambda: False; from trainer.__main__ import main; sys.exit(main())"


def run(tokens: Path, out: Path, steps: int, threads: int, baseline: bool) -> dict:
    entry = ["-c", BASELINE] if baseline else ["-m", "trainer"]
    cmd = [sys.executable, *entry, "--data", str(tokens), "--out", str(out), "--no-progress", f"optim.steps={steps}",
           f"log.val_every={steps}", "checkpoint.every=0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"the trainer failed:\n{result.stderr[-3000:]}")
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime, "losses": losses}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=Path, default=ROOT / "runs" / "sample" / "tokens")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_training-2core.txt")
    args = parser.parse_args(argv)
    if not (args.tokens / "manifest.json").exists():
        raise SystemExit(f"no token shards at {args.tokens}: run `python -m pipelines.web_corpus` (make run) first, or pass --tokens")
    runs: dict[str, list[dict]] = {"glibc default (baseline)": [], "trainer.cpu_allocator": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # alternated, so a drift of the machine's speed hits both sides
            for i, (name, results) in enumerate(runs.items()):
                results.append(run(args.tokens, Path(tmp) / f"{r}-{i}", args.steps, args.threads, baseline=i == 0))
    lines = [
        f"benchmarks.cpu_training: the tiny preset, {args.steps} steps, one process, OMP_NUM_THREADS={args.threads}, on {args.tokens}",
        f"machine: {machine()}",
        f"{'allocator':28} {'wall s':>8} {'user s':>8} {'system s':>9}   (median of {args.rounds}; each run below)",
    ]
    medians = {}
    for name, results in runs.items():
        medians[name] = {k: statistics.median(r[k] for r in results) for k in ("wall", "user", "sys")}
        m = medians[name]
        lines.append(f"{name:28} {m['wall']:8.1f} {m['user']:8.1f} {m['sys']:9.1f}   "
                     + "; ".join(f"{r['wall']:.1f}/{r['user']:.1f}/{r['sys']:.1f}" for r in results))
    base, ours = medians.values()
    same = len({tuple(r["losses"]) for results in runs.values() for r in results}) == 1
    lines += [
        f"ratio (baseline / ours): wall {base['wall'] / ours['wall']:.2f}x, CPU (user + system) "
        f"{(base['user'] + base['sys']) / (ours['user'] + ours['sys']):.2f}x",
        f"identical losses on every run: {same}",
    ]
    report("\n".join(lines), args.out)
    if not same:
        raise SystemExit("the allocator changed the losses")


if __name__ == "__main__":
    main()
