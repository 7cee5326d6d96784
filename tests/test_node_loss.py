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
def test_a_worker_node_killed_mid_run_changes_no_output(tmp_path):
    logs = tmp_path / "ray-logs"
    logs.mkdir()
    head = local_ray.start_head(num_cpus=1, log_dir=logs)
    worker = None
    try:
        worker = local_ray.start_worker(head.gcs_address, num_cpus=1, log_dir=logs)
        env = {**local_ray.ray_env(), "RAY_ADDRESS": head.gcs_address, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.web_corpus", "--no-progress"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        run = tmp_path / "runs" / "sample"
        deadline = time.time() + 600
        # mid-curation: the first shards are done and both nodes are working on the next ones
        while proc.poll() is None and time.time() < deadline and len(list((run / "stats" / "curate").glob("*.json"))) < 2:
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before the node could be killed"
        local_ray.stop_node(worker.pgid)
        killed_at = len(list((run / "stats" / "curate").glob("*.json")))
        _, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, stderr[-4000:]
        tasks = _tasks(head.dashboard_url)
    finally:
        if worker:
            local_ray.stop_node(worker.pgid)
        local_ray.stop_node(head.pgid)
    print(f"\nworker node killed with {killed_at} shards curated; tasks run again: {sum(t.attempt_number > 0 for t in tasks)}")
    assert differences(RECORDED, run_fingerprint(run)) == []


def _tasks(dashboard_url: str) -> list:
    from ray.util.state import list_tasks

    return list_tasks(address=dashboard_url, detail=True, limit=10_000, raise_on_missing_output=False)
