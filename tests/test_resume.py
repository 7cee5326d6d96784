"""Kill anything, lose nothing: a curation run whose driver is SIGKILLed at many points and started
again, or whose Ray worker is killed mid-task, ends file-for-file identical to one never interrupted."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.memory import process_tree
from pipelines.web_corpus import run_web_corpus
from tests.conftest import ROOT
from tests.test_pipeline import small_config

TIMING_KEYS = ("wall_time_s", "shard_time_s", "token_count_time_s")
# dedup's partition count follows the cluster's CPUs unless set (it is outside the fingerprint, and
# dedup/summary.json records it): pinned, so runs on 1 and 2 CPUs are compared byte for byte
PINNED = {"dedup.partitions": 2}


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
            if path.suffix in (".json", ".yaml"):  # runs compared may live in different folders
                data = data.replace(str(run_dir.parent).encode(), b"<runs_dir>")
            if path.suffix == ".json":
                data = json.dumps(_strip_timings(json.loads(data)), sort_keys=True).encode()
            files[str(path.relative_to(run_dir))] = hashlib.sha256(data).hexdigest()
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ray_local):
    """An uninterrupted run of small_config, and its snapshot."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = small_config(tmp, **PINNED)
    run_web_corpus(cfg, progress=False)
    return snapshot(cfg.run_dir)


# ---- the driver killed at many points ---------------------------------------------------------
# Each point is an event of the run, seen as files (created by this attempt) under the run dir; the
# driver's whole process group (driver, its local Ray, workers, extractor sandboxes) is SIGKILLed
# the moment it is seen. The points are in the order the run reaches them, each in a new attempt.
KILL_POINTS = [
    ("tokenizer trained", "tokenizer/spm.model", 1),
    ("first shard curated", "stats/curate/*.json", 1),
    ("dedup: signatures of a shard written", "dedup/work/index/*.arrow", 1),
    ("dedup: LSH bands partitioned", "dedup/work/bands/*/*.arrow", 1),
    ("dedup: a shard's survivors applied", "stats/dedup/*.json", 1),
    ("token shards written, manifest not yet", "tokens/shard-*.arrow", 1),
]


def _fresh(run_dir: Path, pattern: str, since: float) -> int:
    n = 0
    for p in run_dir.glob(pattern):
        try:
            n += p.stat().st_mtime >= since
        except FileNotFoundError:  # renamed or removed between glob and stat
            pass
    return n


def _start_run(config_file: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.web_corpus", "--no-progress", "--config", str(config_file), "ray.num_cpus=1",
         *(f"{k}={v}" for k, v in PINNED.items())],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes its local Ray with it
    )


@pytest.mark.slow
def test_driver_killed_at_many_points_then_resumed_equals_uninterrupted_run(tmp_path, reference):
    cfg = small_config(tmp_path, **PINNED)
    config_file = tmp_path / "run.yaml"
    killed, missed = [], []
    for label, pattern, count in KILL_POINTS:
        since = time.time() - 0.01
        proc = _start_run(config_file, tmp_path)
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            if _fresh(cfg.run_dir, pattern, since) >= count:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        else:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"no {label!r} within 300 s")
        rc = proc.wait()
        if rc == -signal.SIGKILL:
            killed.append(label)
            assert not (cfg.run_dir / "stats.json").exists() or json.loads((cfg.run_dir / "stats.json").read_text())["status"] != "complete"
        else:  # the run finished before the event was seen: nothing left to kill
            assert rc == 0
            missed.append(label)
            break
    print(f"\nkilled at {len(killed)} points: {killed}; missed: {missed}")
    assert len(killed) >= 5, (killed, missed)

    rc = _start_run(config_file, tmp_path).wait(timeout=600)  # the last attempt, undisturbed
    assert rc == 0
    stats = json.loads((cfg.run_dir / "stats.json").read_text())
    assert stats["status"] == "complete" and stats["invariant_violations"] == []
    resumed = snapshot(cfg.run_dir)
    assert not [p for p in resumed if p.endswith(".tmp")]
    assert resumed == reference


def test_a_kill_between_the_tokenizer_model_and_its_record_trains_it_again(tmp_path, ray_local):
    """The model is written before its record (tokenizer.json): a driver killed between the two
    left a run whose resume kept the model and never wrote the record (CI caught it once)."""
    from pipelines.run_dir import RunDir
    from curation.readers.sources import list_shards
    from pipelines.web_corpus import ensure_tokenizer

    cfg = small_config(tmp_path, **PINNED)
    run = RunDir(cfg.run_dir)
    run.prepare(cfg)
    shards = list_shards(cfg.sources, cfg.read, cfg.data_roots)
    ensure_tokenizer(cfg, run, shards, progress=False)
    model, record = run.tokenizer_model.read_bytes(), run.tokenizer_info.read_text()
    run.tokenizer_info.unlink()  # where the kill left it
    ensure_tokenizer(cfg, run, shards, progress=False)
    assert run.tokenizer_info.read_text() == record
    assert run.tokenizer_model.read_bytes() == model


# ---- a Ray worker killed mid-task --------------------------------------------------------------
def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.timeout(300)  # a retry that never comes is a hang: fail it (it was one, see curation/extraction/extract.py)
def test_a_ray_worker_killed_mid_task_costs_a_retry(tmp_path, ray_local, reference):
    """The worker running a curate_shard task (its title is ``ray::curate_shard`` while it does) is
    SIGKILLed 0.2 s into the task (waiting a second, every task of the small run ended first on an
    idle machine); Ray retries the task on a new worker and the run ends identical."""
    cfg = small_config(tmp_path, **PINNED)
    kills: list[tuple[int, str]] = []
    stop = threading.Event()

    def killer() -> None:
        seen: dict[int, float] = {}
        while not stop.is_set() and not kills:
            for pid in process_tree(os.getpid())[1:]:  # only this test's own Ray: others run on this machine
                if _cmdline(pid).startswith("ray::curate_shard"):
                    first = seen.setdefault(pid, time.time())
                    if time.time() - first > 0.2:
                        os.kill(pid, signal.SIGKILL)
                        kills.append((pid, _cmdline(pid)))
                        break
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        stats = run_web_corpus(cfg, progress=False)
    finally:
        stop.set()
        thread.join()
    assert len(kills) == 1, "no curate_shard task was caught running"
    killed_pid = kills[0][0]
    assert not Path(f"/proc/{killed_pid}").exists() or "zombie" in Path(f"/proc/{killed_pid}/status").read_text()
    # the killed task completed on a retry: every shard's stats exist and the run equals the reference
    assert stats["status"] == "complete" and stats["completed_shards"]["curate"] == 3
    assert snapshot(cfg.run_dir) == reference
