"""A Ray worker node lost whole (its raylet and every worker on it, SIGKILLed as one process group)
in the middle of the bundled curation run: Ray runs the lost tasks again on the node left, and the
run finishes with the outputs recorded for an undisturbed run (tests/data/bundled_run_fingerprint.json).

Two nodes on this machine, started as tests/test_service_cluster.py starts them (``ray start`` in a
session of its own each, never ``ray stop``, which would stop every Ray on the machine).
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

RECORDED = json.loads((ROOT / "tests" / "data" / "bundled_run_fingerprint.json").read_text())


@pytest.mark.slow
def test_a_worker_node_killed_mid_run_changes_no_output(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # `ray start --head` turns it on: nodes, driver and this client use it
    logs = tmp_path / "ray-logs"
    logs.mkdir()
    head = local_ray.start_head(num_cpus=1, log_dir=logs)
    worker = None
    try:
        worker = local_ray.start_worker(head.gcs_address, num_cpus=1, log_dir=logs)
        env = {**local_ray.ray_env(), "RAY_ADDRESS": head.gcs_address, "PYTHONPATH": str(ROOT)}
        # the runs folder absolute: the cluster's workers do not share the driver's working directory.
        # dedup's partitions pinned to what the recorded run had: by default they follow the cluster's
        # CPUs, which the lost node takes with it (stats.json's candidate_pairs counts per partition)
        args = ["--no-progress", f"runs_dir={tmp_path / 'runs'}", "dedup.partitions=2"]
        with open(tmp_path / "driver.log", "w") as log:  # a file, not a pipe: nobody reads a pipe while the test polls
            proc = subprocess.Popen([sys.executable, "-m", "pipelines.web_corpus", *args], cwd=tmp_path, env=env, stdout=log, stderr=log)
        run = tmp_path / "runs" / "sample"
        worker_id = _worker_node_id(head.dashboard_url)
        deadline = time.time() + 600
        # mid-curation: a shard is done, and the worker node is curating another
        while proc.poll() is None and time.time() < deadline and not (
            list((run / "stats" / "curate").glob("*.json")) and _running_on(head.dashboard_url, worker_id, "curate_shard")
        ):
            time.sleep(0.2)
        assert proc.poll() is None, f"the run ended before the node could be killed: {_tail(tmp_path / 'driver.log')}"
        local_ray.stop_node(worker.pgid)
        killed_at = len(list((run / "stats" / "curate").glob("*.json")))
        assert proc.wait(timeout=900) == 0, _tail(tmp_path / "driver.log")
        tasks = _tasks(head.dashboard_url)
    finally:
        if worker:
            local_ray.stop_node(worker.pgid)
        local_ray.stop_node(head.pgid)
    rerun = [t.func_or_class_name for t in tasks if t.attempt_number > 0]
    print(f"\nworker node killed with {killed_at} shards curated; tasks run again on the node left: {rerun}")
    assert any(name.endswith("curate_shard") for name in rerun)
    assert differences(RECORDED, run_fingerprint(run)) == []


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
