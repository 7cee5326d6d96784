"""The docker-compose topology without Docker: a Ray head and a second Ray node started with
``ray start`` on this machine, the API against the head, and a curation job whose shards run on
both nodes."""

from __future__ import annotations

import os

import pytest

from service import local_ray
from service.local_api import ApiProcess
from tests.test_service import small_request


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    logs = tmp_path_factory.mktemp("ray-logs")
    head = local_ray.start_head(num_cpus=1, log_dir=logs)
    worker = None
    try:
        worker = local_ray.start_worker(head.gcs_address, num_cpus=1, log_dir=logs)
        yield head
    finally:
        if worker:
            local_ray.stop_node(worker.pgid)
        local_ray.stop_node(head.pgid)


@pytest.mark.slow
def test_curation_job_runs_across_two_ray_nodes(tmp_path, two_nodes):
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from ray.util.state import list_nodes, list_tasks

    nodes = [n for n in list_nodes(address=two_nodes.dashboard_url) if n.state == "ALIVE"]
    assert len(nodes) == 2
    api = ApiProcess(tmp_path / "state", tmp_path / "runs", two_nodes.dashboard_url)
    try:
        status, job = api.call("POST", "/v1/jobs/curation", small_request())
        assert status == 201, job
        final = api.wait(job["id"])
        assert final["state"] == "succeeded", final["error"]
        funnel = api.call("GET", f"/v1/jobs/{job['id']}/funnel")[1]
        assert funnel["status"] == "complete" and funnel["invariant_violations"] == []
    finally:
        api.kill()
    tasks = list_tasks(address=two_nodes.dashboard_url, detail=True, limit=10_000, raise_on_missing_output=False)
    work = ("curate_shard", "sample_shard_for_tokenizer", "map_shard")
    ran_on = {t.node_id for t in tasks if t.func_or_class_name.split(".")[-1] in work and t.state == "FINISHED"}
    assert ran_on == {n.node_id for n in nodes}, f"tasks ran on {ran_on}"
