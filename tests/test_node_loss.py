"""A Ray worker node lost whole (its raylet and every worker on it SIGKILLed: every process of the node's session)
in the middle of the bundled curation run: Ray runs the lost tasks again on the node left, and the
run finishes with the outputs recorded for an undisturbed run (tests/data/bundled_run_fingerprint.json).

Two nodes on this machine, started as tests/test_service_cluster.py starts them (``ray start`` in a
session of its own each, never ``ray stop``, which would stop every Ray on the machine), sharing no
disk in the run's eyes: sources and run directory are on moto's S3 server, as in docker-compose.
"""

from __future__ import annotations

import json
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
        worker_id = _worker_node_id(head.dashboard_url)
        deadline = time.time() + 600
        # mid-curation: a shard is done, and the worker node is curating another
        while proc.poll() is None and time.time() < deadline and not (
            fs.glob("nodes/runs/sample/stats/curate/*.json") and _running_on(head.dashboard_url, worker_id, "curate_shard")
        ):
            time.sleep(0.2)
        assert proc.poll() is None, f"the run ended before the node could be killed: {_tail(tmp_path / 'driver.log')}"
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


def _worker_node_id(dashboard_url: str) -> str:
    from ray.util.state import list_nodes

    return next(n.node_id for n in list_nodes(address=dashboard_url) if not n.is_head_node)


def _running_on(dashboard_url: str, node_id: str, name: str) -> bool:
    from ray.util.state import list_tasks

    running = list_tasks(address=dashboard_url, filters=[("node_id", "=", node_id), ("state", "=", "RUNNING")], raise_on_missing_output=False)
    return any(t.func_or_class_name.endswith(name) for t in running)


def _tasks(dashboard_url: str) -> list:
    from ray.util.state import list_tasks

    return list_tasks(address=dashboard_url, detail=True, limit=10_000, raise_on_missing_output=False)
