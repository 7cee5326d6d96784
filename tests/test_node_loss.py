"""A Ray worker node lost whole (its raylet and every worker on it SIGKILLed: every process of the node's session)
in the middle of the bundled curation run, submitted as a curation job through the API: Ray runs the
lost tasks again on the node left, the job succeeds, and its outputs are those recorded for an
undisturbed run (tests/data/bundled_run_fingerprint.json).

Two nodes on this machine, started as tests/test_service_cluster.py starts them (``ray start`` in a
session of its own each, never ``ray stop``, which would stop every Ray on the machine), sharing no
disk in the run's eyes: sources and run directory are on moto's S3 server, as in docker-compose.
"""

from __future__ import annotations

import json
import time

import pytest

from service import local_ray
from service.local_api import ApiProcess
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
    sources = json.loads(bundled_config_on_store(tmp_path / "run.json", "s3://nodes/sources", "s3://nodes/runs", "sample").read_text())["sources"]
    logs = tmp_path / "ray-logs"
    logs.mkdir()
    head = local_ray.start_head(num_cpus=1, log_dir=logs)
    worker = api = None
    try:
        worker = local_ray.start_worker(head.gcs_address, num_cpus=1, log_dir=logs)
        api = ApiProcess(tmp_path / "state", tmp_path / "runs", head.dashboard_url,
                         extra_env={"CURATION_STORAGE": "s3://nodes/runs", "CURATION_STORE_ROOTS": "s3://nodes/sources"})
        # dedup's partitions pinned to what the recorded run had: by default they follow the cluster's
        # CPUs, which the lost node takes with it (stats.json's candidate_pairs counts per partition)
        status, job = api.call("POST", "/v1/jobs/curation", {"config": {"sources": sources, "dedup": {"partitions": 2}}})
        assert status == 201, job
        run = f"nodes/runs/{job['id']}"
        worker_id = _worker_node_id(head.dashboard_url)
        deadline = time.time() + 600
        # mid-curation: a shard is done, and the worker node is curating another
        while time.time() < deadline and not (fs.glob(f"{run}/stats/curate/*.json") and _running_on(head.dashboard_url, worker_id, "curate_shard")):
            assert api.call("GET", f"/v1/jobs/{job['id']}")[1]["state"] in ("queued", "running"), "the job ended before the node could be killed"
            time.sleep(0.2)
        local_ray.stop_node(worker.pgid)
        killed_at = len(fs.glob(f"{run}/stats/curate/*.json"))
        final = api.wait(job["id"], timeout_s=900)
        assert final["state"] == "succeeded", final["error"]
        tasks = _tasks(head.dashboard_url)
        fs.get(run, str(tmp_path / "fetched"), recursive=True)
    finally:
        if api:
            api.kill()
        if worker:
            local_ray.stop_node(worker.pgid)
        local_ray.stop_node(head.pgid)
        server.stop()
    rerun = [t.func_or_class_name for t in tasks if t.attempt_number > 0]
    print(f"\nworker node killed with {killed_at} shards curated; tasks run again on the node left: {rerun}")
    assert any(name.endswith("curate_shard") for name in rerun)
    assert differences(RECORDED, run_fingerprint(tmp_path / "fetched")) == []


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
