"""A run killed part-way and started again ends file-for-file identical to one never interrupted."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines.web_corpus import run_web_corpus
from tests.conftest import ROOT
from tests.test_pipeline import small_config

TIMING_KEYS = ("wall_time_s", "shard_time_s")


def _strip_timings(value):
    if isinstance(value, dict):
        return {k: _strip_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_strip_timings(v) for v in value]
    return value


def snapshot(run_dir) -> dict[str, str]:
    """Every file of a run: a hash of its bytes, or of its JSON without wall times (measurements)."""
    files = {}
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and path.name != "progress.json":  # progress.json times the attempt itself
            data = path.read_bytes()
            if path.suffix == ".json":
                data = json.dumps(_strip_timings(json.loads(data)), sort_keys=True).encode()
            files[str(path.relative_to(run_dir))] = hashlib.sha256(data).hexdigest()
    return files


@pytest.mark.slow
def test_killed_then_resumed_run_equals_uninterrupted_run(tmp_path, ray_local):
    cfg = small_config(tmp_path)
    run_web_corpus(cfg, progress=False)
    reference = snapshot(cfg.run_dir)
    cfg.run_dir.rename(tmp_path / "reference")

    # The same run in its own process, one worker, killed (SIGKILL, whole process group) as soon
    # as its first shard is complete, while the next shard is half-written.
    config_file = tmp_path / "run.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.web_corpus", "--no-progress", "--config", str(config_file), "ray.num_cpus=1"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    stats_dir = cfg.run_dir / "stats" / "curate"
    deadline = time.time() + 300
    while time.time() < deadline and not (stats_dir.exists() and any(stats_dir.iterdir())):
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    completed = len(list(stats_dir.iterdir()))
    assert 1 <= completed < 3, completed

    stats = run_web_corpus(cfg, progress=False)
    assert stats["invariant_violations"] == []
    resumed = snapshot(cfg.run_dir)
    assert not [p for p in resumed if p.endswith(".tmp")]
    assert resumed == reference
