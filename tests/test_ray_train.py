"""The trainer on Ray Train (2 CPU workers, gloo) and on object storage (moto's S3 server on loopback).

Losses are compared exactly: the same data, the same reduction order (gloo sums two ranks the same
way every time) and a bitwise round trip of the fp32 state through DCP leave nothing to differ.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from scripts.s3_server import FlakyProxy, start_moto, upload_folder
from tests.conftest import TORCH_THREADS
from tests.ray_train_runs import CREDENTIALS, RUN, env, losses, ray_cmd


def wait_for_step(read_metrics, proc, step: int, timeout: float = 400) -> None:
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        text = read_metrics()
        if text and any(s >= step for s, _ in losses(text.rsplit("\n", 1)[0] if not text.endswith("\n") else text)):
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach step {step} (exit code {proc.poll()})")


@pytest.mark.slow
def test_a_lost_worker_restarts_the_run_from_its_checkpoint_to_the_same_losses(synthetic_shards, tmp_path, straight_losses):
    """SIGKILL of rank 1's worker process two steps past the checkpoint at step 4: Ray Train's
    FailureConfig starts a new worker group, which resumes from that checkpoint; every step's loss
    equals the uninterrupted run's."""
    out = tmp_path / "run"
    proc = subprocess.Popen(ray_cmd(synthetic_shards, out, "checkpoint.every=4"), env=env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    wait_for_step(lambda: metrics.read_text() if metrics.exists() else "", proc, 5)
    victim = json.loads((out / "workers" / "rank-1.json").read_text())["pid"]
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-4000:]
    assert json.loads((out / "workers" / "rank-1.json").read_text())["pid"] != victim  # a new worker group ran
    assert losses(metrics.read_text()) == straight_losses  # steps 5.. logged once, by the restarted group


@pytest.fixture(scope="module")
def s3_endpoint():
    server, endpoint = start_moto()
    yield endpoint
    server.stop()


@pytest.fixture
def s3(s3_endpoint, request):
    """A fresh bucket on moto's S3 server on loopback; yields (endpoint, s3fs filesystem, bucket).
    (moto keeps its buckets in the process, across servers: a bucket per test.)"""
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3_endpoint, use_listings_cache=False)
    bucket = "b-" + request.node.name.replace("_", "-")[:50].lower()
    fs.mkdir(bucket)
    return s3_endpoint, fs, bucket


@pytest.mark.slow
def test_ray_train_on_s3_survives_a_store_failing_every_fifth_request(synthetic_shards, tmp_path, s3, straight_losses):
    """Shards read from S3, DCP checkpoints and metrics written there, through a proxy answering
    every fifth request with 503 SlowDown: the run finishes with the local run's losses, and the
    retries are counted in store_stats.json."""
    endpoint, fs, bucket = s3
    upload_folder(fs, synthetic_shards, f"{bucket}/run/tokens")
    proxy = FlakyProxy(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])), every=5)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(ray_cmd(f"s3://{bucket}/run/tokens", f"s3://{bucket}/run/train", "checkpoint.every=4"),
                                env=env(tmp_path, AWS_ENDPOINT_URL=proxy.url, **CREDENTIALS), capture_output=True, text=True, timeout=600)
    finally:
        proxy.shutdown()
    assert result.returncode == 0, result.stderr[-4000:]
    assert losses(fs.cat_file(f"{bucket}/run/train/metrics.jsonl").decode()) == straight_losses
    stats = json.loads(fs.cat_file(f"{bucket}/run/train/store_stats.json"))
    assert proxy.failed > 0 and stats["retried"] > 0, (proxy.failed, stats)
    assert "testing" not in result.stderr + fs.cat_file(f"{bucket}/run/train/config.json").decode()  # no credentials in logs or configs
    markers = sorted(fs.glob(f"{bucket}/run/train/checkpoints/step-*/extra.json"))
    assert [m.split("/")[-2] for m in markers] == ["step-00000008", "step-00000010"]  # keep=2, each committed by its marker


@pytest.mark.slow
def test_training_killed_on_s3_resumes_to_the_same_losses(synthetic_shards, tmp_path, s3, straight_losses):
    """One process (``python -m trainer``) reading and checkpointing on S3, SIGKILLed between
    checkpoints, then started again: the losses of the uninterrupted run (the trainer's losses do
    not depend on the number of processes: the global batch and its order are the same)."""
    endpoint, fs, bucket = s3
    upload_folder(fs, synthetic_shards, f"{bucket}/run/tokens")
    cmd = [sys.executable, "-m", "trainer", "--data", f"s3://{bucket}/run/tokens", "--out", f"s3://{bucket}/run/train", "--no-progress",
           *RUN, "checkpoint.every=4"]
    run_env = env(tmp_path, AWS_ENDPOINT_URL=endpoint, OMP_NUM_THREADS=str(TORCH_THREADS), **CREDENTIALS)
    proc = subprocess.Popen(cmd, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    mirror = tmp_path / "cache" / "runs"
    wait_for_step(lambda: "".join(p.read_text() for p in mirror.glob("*/metrics.jsonl")), proc, 5)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert sorted(m.split("/")[-2] for m in fs.glob(f"{bucket}/run/train/checkpoints/step-*/extra.json")) == ["step-00000004"]
    result = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    resumed = losses(fs.cat_file(f"{bucket}/run/train/metrics.jsonl").decode())
    assert [s for s, _ in resumed] == list(range(1, 11))
    for (_, a), (_, b) in zip(straight_losses, resumed):  # one process against two: another summation order
        assert b == pytest.approx(a, rel=2e-4)


def test_a_checkpoint_counts_only_once_its_marker_exists(tmp_path):
    """On a store without rename the marker, written last, is the commit: a checkpoint whose
    files are all there but whose marker is not (a kill between them) is not resumed from."""
    from trainer import storage
    from trainer.store_checkpoint import StoreCheckpointer

    out = "memory://h18-marker/run"
    for step, marked in ((4, True), (8, False)):
        folder = storage.join(out, "checkpoints", f"step-{step:08d}")
        storage.write_bytes(storage.join(folder, ".metadata"), b"x")
        if marked:
            storage.write_bytes(storage.join(folder, "extra.json"), b"{}")
    assert StoreCheckpointer(out, 2, tmp_path).latest() == storage.join(out, "checkpoints", "step-00000004")
    assert storage.is_remote("s3://b/x") and not storage.is_remote(tmp_path) and not storage.is_remote("file:///x")


def test_the_service_gets_one_command_for_a_ray_train_job():
    from trainer.ray_train import entrypoint

    cmd = entrypoint("s3://b/run/tokens", "s3://b/train", 4, 8, 1, overrides=["optim.steps=100"])
    assert cmd == ("python -m trainer.ray_train --data s3://b/run/tokens --storage s3://b/train --workers 4 --cpus-per-worker 8 "
                   "--gpus-per-worker 1 --max-failures 3 --preset tiny optim.steps=100")


def test_the_capacity_watch_fails_only_a_shortfall_that_lasts_its_whole_wait():
    from trainer.capacity import CapacityWatch

    now, cluster = [0.0], {"CPU": 1.0}
    watch = CapacityWatch({"CPU": 2.0, "GPU": 0.0}, wait_s=60, on_timeout=print, read=lambda: cluster, clock=lambda: now[0])
    assert watch.check() is None  # the shortfall starts now
    now[0] = 59.0
    assert watch.check() is None
    cluster["CPU"] = 2.0  # a node joined: the wait starts again at the next shortfall
    now[0] = 61.0
    assert watch.check() is None
    cluster["CPU"] = 1.0
    now[0] = 100.0
    assert watch.check() is None
    now[0] = 160.0
    message = watch.check()
    assert message is not None and "1 of the 2 CPU it needs" in message and "60 s" in message and "GPU" not in message


@pytest.mark.slow
def test_a_run_the_cluster_cannot_hold_fails_after_its_capacity_wait(synthetic_shards, tmp_path):
    """Ray Train waits without limit for a worker group's resources, so a run whose lost node is
    never replaced (here: two workers of one CPU on a one-CPU cluster) would stay running for ever.
    It fails once ``--capacity-wait-s`` has passed, saying what the cluster lacks, in its stderr and
    in error.txt (what the service shows)."""
    from service import local_ray

    head = local_ray.start_head(num_cpus=1, log_dir=tmp_path)
    try:
        cmd = [*ray_cmd(synthetic_shards, tmp_path / "run"), "--capacity-wait-s", "8"]
        run_env = {**env(tmp_path), **local_ray.ray_env(), "RAY_ADDRESS": head.gcs_address}
        result = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=300)
    finally:
        local_ray.stop_node(head.pgid)
    assert result.returncode == 2, result.stderr[-4000:]
    assert "1 of the 2 CPU it needs" in result.stderr
    assert "1 of the 2 CPU it needs" in (tmp_path / "run" / "error.txt").read_text()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
