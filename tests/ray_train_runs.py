"""The Ray Train runs the tests compare: one size (a tiny model, 10 steps, 2 CPU workers), the
command that runs it, and its losses read back from metrics.jsonl. Shared by tests/test_ray_train.py
and tests/test_service_train_node_loss.py, whose reference is the same uninterrupted run
(``straight_losses`` in conftest.py, made once per session)."""

from __future__ import annotations

import json
import os
import sys

from tests.conftest import ROOT

RUN = [
    "model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.seq_len=64", "model.vocab_size=512",
    "optim.global_batch=16", "optim.micro_batch=4", "optim.warmup_steps=5", "optim.steps=10",
    "parallel.mixed_precision=fp32", "log.val_every=1000",
]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def ray_cmd(data, storage, *overrides, workers: int = 2):
    return [sys.executable, "-m", "trainer.ray_train", "--data", str(data), "--workers", str(workers), "--storage", str(storage),
            "--max-failures", "2", *RUN, *overrides]


def env(tmp_path, **extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), "TRAINER_CACHE_DIR": str(tmp_path / "cache"), "RAY_DEDUP_LOGS": "0", **extra}


def losses(metrics_text: str) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, metrics_text.splitlines())]
