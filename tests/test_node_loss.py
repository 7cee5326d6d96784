"""A Ray worker node lost whole (its raylet and every worker on it SIGKILLed: every process of the node's session)
in the middle of the bundled curation run: Ray runs the lost tasks again on the node left, and the
run finishes with the outputs recorded for an undisturbed run (tests/data/bundled_run_fingerprint.json).

Two nodes on this machine, started as tests/test_service_cluster.py starts them (``ray start`` in a
session of its own each, never ``ray stop``, which would stop every Ray on the machine), sharing no
disk in the run's eyes: sources and run directory are on moto's S3 server, as in docker-compose.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from service import local_ray
from tests.conftest import ROOT
from tests.run_fingerprint import differences, run_fingerprint
from scripts.s3_server import bundled_config_on_store, start_moto, upload_corpus

RECORDED = json.loads((ROOT / "tests" / "data" / "bundled_run_fingerprint.json").read_text())


@pytest.mark.slow
def test_a_worker_node_killed_mid_run_changes_no_output(tmp_path, monkeypatch):
    import s3fs

    server, endpoint = start_moto()
    # `ray start --head` turns token auth on: nodes, driver and this client use it; the nodes get the
    # store's environment as docker-compose gives it to them
    for key, value in {"RAY_AUTH_MODE": "token", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "TRAINER_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True, use_listings_cache=False)
    fs.mkdir("nodes")
    upload_corpus(fs, "nodes/sources")
    config = bundled_config_on_store(tmp_path / "run.json", "s3://nodes/sources", "s3://nodes/runs", "sample")
    logs = tmp_path / "ray-logs"
    logs.mkdir()
    head = local_ray.start_head(num_cpus=1, log_dir=logs)
    worker = None
    try:
        worker = local_ray.start_worker(head.gcs_address, num_cpus=1, log_dir=logs)
        env = {**local_ray.ray_env(), "RAY_ADDRESS": head.gcs_address, "PYTHONPATH": str(ROOT)}
        # dedup's partitions pinned to what the recorded run had: by default they follow the cluster's
        # CPUs, which the lost node takes with it (stats.json's candidate_pairs counts per partition)
        args = ["--no-progress", "--config", str(config), "dedup.partitions=2"]
        with open(tmp_path / "driver.log", "w") as log:  # a file, not a pipe: nobody reads a pipe while the test polls
            proc = subprocess.Popen([sys.executable, "-m", "pipelines.web_corpus", *args], cwd=tmp_path, env=env, stdout=log, stderr=log)
        deadline = time.time() + 600
        # mid-curation, and no race: the node is frozen (SIGSTOP) before we look at what it runs, and
        # killed only if one of its processes is inside curate_shard then (Ray's state API lags by a
        # second: a kill timed by it could land after the task had finished, and nothing ran again)
        while not _frozen_inside(worker.pgid, "curate_shard"):
            assert proc.poll() is None and time.time() < deadline, f"the run ended before the node could be killed: {_tail(tmp_path / 'driver.log')}"
            time.sleep(0.02)  # a curate_shard task of the bundled run can be over in well under a second
        local_ray.stop_node(worker.pgid)
        killed_at = len(fs.glob("nodes/runs/sample/stats/curate/*.json"))
        assert proc.wait(timeout=900) == 0, _tail(tmp_path / "driver.log")
        tasks = _tasks(head.dashboard_url)
        fs.get("nodes/runs/sample", str(tmp_path / "fetched"), recursive=True)
    finally:
        if worker:
            local_ray.stop_node(worker.pgid)
        local_ray.stop_node(head.pgid)
        server.stop()
    rerun = [t.func_or_class_name for t in tasks if t.attempt_number > 0]
    print(f"\nworker node killed with {killed_at} shards curated; tasks run again on the node left: {rerun}")
    assert any(name.endswith("curate_shard") for name in rerun)
    assert differences(RECORDED, run_fingerprint(tmp_path / "fetched")) == []


def _tail(path) -> str:
    return path.read_text()[-4000:]


def _frozen_inside(pgid: int, task: str) -> bool:
    """Stop every process of the node; leave it stopped and say True if one was running ``task``
    (a Ray worker's title is ``ray::<task>`` while it runs one), else let it go on."""
    pids = local_ray._session(pgid)
    for pid in pids:
        _signal(pid, signal.SIGSTOP)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(f"ray::{task}".encode()):
                    return True
        except OSError:
            pass
    for pid in pids:
        _signal(pid, signal.SIGCONT)
    return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _tasks(dashboard_url: str) -> list:
    from ray.util.state import list_tasks

    return list_tasks(address=dashboard_url, detail=True, limit=10_000, raise_on_missing_output=False)
