"""The training half of an ablation: train a variant's shards for one seed, score it in bits per byte.

``python -m ablation --only curate`` curates every variant and writes ``train_plan.json``;
``python -m ablation.training --plan …/train_plan.json`` then runs those trainings where
the GPUs are, several at a time on one GPU when the model is small, and a last
``python -m ablation`` (which skips finished work) writes the table. This module imports
nothing from curation, so it runs where only the trainer's dependencies are installed.

The trainer runs as a command, as a user runs it, not imported: each training is a process of its
own, and several at a time share one GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from tokenizer.files import atomic_write_json
from tokenizer.store_path import AnyPath, StagedFile, StorePath, as_path

logger = logging.getLogger("ablation.training")
REPO = Path(__file__).resolve().parents[1]


def trainer_args(train: dict, tokens: str | Path, out: str | Path, seed: int) -> list[str]:
    """``python -m trainer`` arguments for one run: the ablation's train settings, then its seed."""
    args = ["trainer", "--data", str(tokens), "--out", str(out), "--preset", train["preset"], "--no-progress"]
    args += ["--config", train["config"]] if train.get("config") else []
    # only the final checkpoint is needed (to score it); the seed is the ablation's, whatever the overrides say
    return [*args, "checkpoint.every=0", *train.get("overrides", []), f"optim.seed={seed}"]


@contextmanager
def _appended(log: AnyPath) -> Iterator[Path]:
    """A local file to append a command's output to: ``log`` itself, or for a log on a store a copy
    of it, uploaded whole when the command ends, failed or not (a failure's log is the one wanted)."""
    if not isinstance(log, StorePath):
        yield log
        return
    staged = StagedFile(log)
    try:
        if log.exists():  # an earlier attempt's output stays at the top, as in the local file
            staged.tmp.write_bytes(log.read_bytes())
    except BaseException:
        staged.abort()  # never replace the stored log with a part of it
        raise
    try:
        yield staged.tmp
    finally:
        staged.commit()


def _run(args: list[str], log: AnyPath) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with _appended(log) as local, open(local, "a") as f:
        result = subprocess.run([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"`python -m {args[0]}` failed (exit {result.returncode}); see {log}")


def train_and_score(args: list[str], out: str | AnyPath) -> dict:
    """Run one training (or take the finished one) and score it: {"bpb": {domain: value}, "step", "tokens_trained"}.
    ``out`` is a local folder or a URL: the trainer writes either, and so does this."""
    out = as_path(out)
    done = out / "bpb.json"
    if done.exists():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    logger.info("training into %s", out)
    _run(args, out / "train.log")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    bpb = {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("val_bpb/")}
    if not bpb:  # the last step was not a validation step: score the final checkpoint
        _run(["trainer.eval", "--run", str(out), "--out", str(out / "eval_bpb.json")], out / "train.log")
        bpb = json.loads((out / "eval_bpb.json").read_text())["bpb"]
    run = json.loads((out / "config.json").read_text())
    result = {"bpb": bpb, "step": last["step"], "tokens_trained": last["step"] * run["optim"]["global_batch"] * run["model"]["seq_len"]}
    atomic_write_json(done, result)
    return result


def plan_entry(train: dict, variant: str, tokens: AnyPath, out: AnyPath, seed: int) -> dict:
    return {"variant": variant, "seed": seed, "tokens": str(tokens), "out": str(out), "args": trainer_args(train, tokens, out, seed)}


def run_plan(plan: list[dict], parallel: int = 1, data_root: str | None = None) -> list[dict]:
    """Every run of a plan, ``parallel`` at a time; ``data_root`` holds ``<variant>/tokens`` if the shards moved."""

    def one(entry: dict) -> dict:
        args = list(entry["args"])
        if data_root is not None:
            args[args.index("--data") + 1] = str(as_path(data_root) / entry["variant"] / "tokens")
        return train_and_score(args, entry["out"])

    with ThreadPoolExecutor(max(1, parallel)) as pool:
        return list(pool.map(one, plan))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablation.training", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, help="train_plan.json written by python -m ablation --only curate")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time (small models share one GPU well)")
    parser.add_argument("--data-root", help="where <variant>/tokens live, if not where the plan says")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = json.loads(as_path(args.plan).read_text())  # the plan of an ablation on a store is read from there
    results = run_plan(plan, args.parallel, args.data_root)
    for entry, result in zip(plan, results):
        print(f"{entry['variant']:<28} seed {entry['seed']}: " + "  ".join(f"{d} {v:.4f}" for d, v in sorted(result["bpb"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
