"""A 2-worker Ray Train job through the API on two Ray nodes of this machine (started as
tests/test_service_cluster.py starts them), its token shards, manifest, checkpoints and metrics on
moto's S3 server on loopback (the service's CURATION_STORAGE); the worker node is lost whole
(its raylet and every worker on it SIGKILLed: every process of the node's session) after a checkpoint.

Each node has one CPU, so the two workers run one per node, and the lost node's capacity must come
back for two workers to run again: a replacement node joins (as docker-compose's ``ray-worker``
service or an autoscaler brings one), Ray Train's FailureConfig starts a new worker group there and
on the head, and the trainer resumes from the last checkpoint whose marker is on S3. Every step's
loss equals the uninterrupted run's (``straight_losses``, the reference of tests/test_ray_train.py:
the same size of run, the same trainer code).
"""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from scripts.s3_server import FlakyProxy, start_moto, upload_folder
from service import local_ray
from service.local_api import ApiProcess
from tests.ray_train_runs import RUN

SECRET = "h18b-train-secret-never-shown"
MARKERS = "train/runs/train/{job}/checkpoints/step-*/extra.json"


@pytest.fixture
def store(monkeypatch):
    """(s3fs filesystem on moto's server, the proxy the cluster and the API reach it through),
    the synthetic shards under s3://train/tokens. The proxy holds every write after the marker of
    the checkpoint at step 2 until released: the run stops at its next write (at the latest the
    checkpoint at step 4, which cannot commit without the lost worker), so the node is lost mid-run
    however fast the steps go. The store's environment is set for every process started from here
    on (nodes, API), as docker-compose gives it to every node."""
    import s3fs

    server, endpoint = start_moto()
    proxy = FlakyProxy(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])), every=0, hold_after="/checkpoints/step-00000002/extra.json")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    for key, value in {"RAY_AUTH_MODE": "token", "AWS_ACCESS_KEY_ID": "train-key", "AWS_SECRET_ACCESS_KEY": SECRET,
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": proxy.url}.items():
        monkeypatch.setenv(key, value)
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True, use_listings_cache=False)
    fs.mkdir("train")
    yield fs, proxy
    proxy.release()
    proxy.shutdown()
    server.stop()


class Cluster:
    """Ray nodes of this test only, each stopped by killing its own processes (never ``ray stop``),
    each with its own node-local cache (TRAINER_CACHE_DIR), as separate machines have."""

    def __init__(self, tmp_path, monkeypatch):
        self.tmp, self.monkeypatch, self.nodes = tmp_path, monkeypatch, []
        self.logs = tmp_path / "ray-logs"
        self.logs.mkdir()
        self.head = self._start("head", lambda: local_ray.start_head(num_cpus=1, log_dir=self.logs))

    def _start(self, name: str, start):
        self.monkeypatch.setenv("TRAINER_CACHE_DIR", str(self.tmp / f"cache-{name}"))
        node = start()
        self.nodes.append(node)
        return node

    def add_worker(self, name: str):
        return self._start(name, lambda: local_ray.start_worker(self.head.gcs_address, num_cpus=1, log_dir=self.logs))

    def node_ids(self) -> set[str]:
        from ray.util.state import list_nodes

        return {n.node_id for n in list_nodes(address=self.head.dashboard_url) if n.state == "ALIVE"}

    def stop(self) -> None:  # the nodes still running
        for node in reversed(self.nodes):
            local_ray.stop_node(node.pgid)


@pytest.mark.slow
def test_a_ray_train_job_on_s3_survives_the_loss_of_its_worker_node(straight_losses, synthetic_shards, store, tmp_path, monkeypatch):
    fs, proxy = store
    upload_folder(fs, synthetic_shards, "train/tokens")
    cluster = Cluster(tmp_path, monkeypatch)
    api = None
    try:
        head_id = cluster.node_ids().pop()
        cluster.add_worker("worker")
        lost_id = (cluster.node_ids() - {head_id}).pop()
        api = ApiProcess(tmp_path / "state", tmp_path / "runs", cluster.head.dashboard_url,
                         extra_env={"CURATION_STORAGE": "s3://train/runs", "CURATION_STORE_ROOTS": "s3://train/tokens"})
        body = {"manifest": "s3://train/tokens/manifest.json", "workers": 2, "cpus_per_worker": 1, "overrides": [*RUN, "checkpoint.every=2"]}
        status, job = api.call("POST", "/v1/jobs/training", body)
        assert status == 201, job
        assert job["output_dir"] == f"s3://train/runs/train/{job['id']}"
        answers = [job]
        # the checkpoint at step 2 committed on S3, one worker on the worker node (the API's per-worker state)
        before = _wait_for_checkpoint_with_a_worker_on(api, proxy, job["id"], lost_id, answers)
        local_ray.stop_node(cluster.nodes[1].pgid)
        proxy.release()
        cluster.add_worker("replacement")
        new_id = (cluster.node_ids() - {head_id, lost_id}).pop()
        final = api.wait(job["id"], timeout_s=600)
        answers.append(final)
        assert final["state"] == "succeeded", final["error"]
        status, metrics = api.call("GET", f"/v1/jobs/{job['id']}/metrics")
        assert status == 200
        answers.append(metrics)
        log = _job_log(cluster.head.dashboard_url, job["id"])
    finally:
        if api:
            api.kill()
        cluster.stop()
    after = final["progress"]["workers"]
    # a new worker group ran: both ranks started again, none on the lost node, one on the replacement
    assert [w["rank"] for w in after] == [0, 1]
    assert {w["node_id"] for w in after} == {head_id, new_id}
    assert all(a["pid"] != b["pid"] and a["started"] > b["started"] for a, b in zip(after, before))
    # resumed from a checkpoint committed before the kill, not from the start (which gives the same losses too)
    resumed = re.findall(rf"resumed from s3://train/runs/train/{job['id']}/checkpoints/step-(\d+) at step (\d+)", log)
    assert set(resumed) == {("00000002", "2")}, log[-4000:]  # (Ray's log holds each line twice)
    # every step's loss is the uninterrupted run's, each step logged once
    assert [m["step"] for m in metrics["metrics"]] == [s for s, _ in straight_losses] == list(range(1, 11))
    assert [m["loss"] for m in metrics["metrics"]] == pytest.approx([v for _, v in straight_losses], abs=1e-5, rel=0)
    markers = sorted(m.split("/")[-2] for m in fs.glob(MARKERS.format(job=job["id"])))
    assert markers == ["step-00000008", "step-00000010"]  # keep=2, each committed by its marker
    assert all(SECRET not in json.dumps(a) and "train-key" not in json.dumps(a) for a in answers)
    assert SECRET.encode() not in open(api.log.name, "rb").read() and SECRET not in log
    assert SECRET.encode() not in fs.cat_file(f"train/runs/.jobs/{job['id']}/train.yaml")


def _wait_for_checkpoint_with_a_worker_on(api, proxy, job_id: str, node_id: str, answers: list, timeout_s: float = 400) -> list[dict]:
    """The job's workers (as the API shows them) once the checkpoint at step 2 is committed on S3
    (the proxy holds the writes after it) and one of them runs on ``node_id``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, job = api.call("GET", f"/v1/jobs/{job_id}")
        assert status == 200 and job["state"] in ("queued", "running"), job
        answers.append(job)
        workers = (job.get("progress") or {}).get("workers") or []
        if len(workers) == 2 and node_id in {w["node_id"] for w in workers} and proxy.holding.is_set():
            return workers
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: no checkpoint at step 2 with a worker on the worker node within {timeout_s} s")


def _job_log(dashboard_url: str, job_id: str) -> str:
    """The job's log as Ray keeps it (the driver's output, with the workers' lines forwarded to it)."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(dashboard_url).get_job_logs(job_id)
