"""The service with object storage as its storage setting (CURATION_STORAGE), as an attacker meets it:
job inputs given as URLs must lie under the store roots (CURATION_STORE_ROOTS), whatever spelling
(``..``, a look-alike prefix, another bucket or protocol); a path outside is a 403 naming the field.
Credentials never travel in a URL. The store is moto's S3 server on loopback (the service writes
each job's config beside its run, on the store)."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.api import create_app
from service.settings import ServiceSettings
from scripts.s3_server import moto_in_environment
from tests.test_fuzz_api import FakeRay
from service.ray_jobs import RayJobState
from tests.test_security import AUTH, _settings, curation, detail, post, roots  # noqa: F401  (roots: a fixture)

CRAWL = "s3://crawl-bucket/crawl"
STORAGE = "s3://runs-bucket/service"


@pytest.fixture(scope="module")
def store_client(roots):  # noqa: F811
    with moto_in_environment() as fs:
        fs.mkdir("crawl-bucket")
        fs.mkdir("runs-bucket")
        fs.pipe_file("crawl-bucket/crawl/a.jsonl", b'{"text": "a document on the store"}\n')
        settings = _settings(roots, storage=STORAGE, store_roots=[CRAWL])
        with TestClient(create_app(settings, ray=FakeRay(), poll_interval_s=3600), raise_server_exceptions=False) as client:
            yield client, fs


def test_a_source_under_a_store_root_is_accepted_and_the_run_goes_to_the_storage(store_client):
    client, fs = store_client
    response = post(client, "/v1/jobs/curation", curation([f"{CRAWL}/*.jsonl"]))
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["output_dir"] == f"{STORAGE}/{job['id']}"
    assert fs.exists(f"runs-bucket/service/.jobs/{job['id']}/config.yaml")  # the cluster reads it from the store


@pytest.mark.parametrize(
    "url",
    [
        "s3://other-bucket/crawl/a.jsonl",  # another bucket
        "s3://crawl-bucket/crawl-evil/a.jsonl",  # a look-alike prefix
        "s3://crawl-bucket/crawl/../secrets/a.jsonl",  # out by ..
        "s3://crawl-bucket/*/a.jsonl",  # a glob above the root
        "s3://runs-bucket/service/../../crawl-bucket/x",  # out of the storage by ..
        "http://169.254.169.254/latest/meta-data",  # another protocol
        "memory://crawl-bucket/crawl/a.jsonl",  # another filesystem with the same path
    ],
)
def test_a_url_outside_the_store_roots_is_403_naming_the_field(store_client, url):
    client, _ = store_client
    response = post(client, "/v1/jobs/curation", curation([f"{CRAWL}/a.jsonl", url]))
    assert response.status_code == 403, response.text
    assert detail(response)["field"] == "config.sources.0.paths.1" and "outside the store roots" in detail(response)["message"]


def test_a_training_manifest_on_the_store_is_confined_too(store_client):
    client, _ = store_client
    response = post(client, "/v1/jobs/training", {"manifest": "s3://other-bucket/tokens/manifest.json"})
    assert response.status_code == 403 and detail(response)["field"] == "manifest"


def test_an_ablation_goes_to_the_storage_and_reads_only_under_the_store_roots(store_client, roots):  # noqa: F811
    client, fs = store_client

    def ablation(paths: list[str], **extra) -> dict:
        sources = json.dumps([{"name": "s", "format": "jsonl", "domain": "finance", "paths": paths, "content_type": "text"}])
        overrides = [f"sources={sources}", "mix.targets={finance: 1.0}", "tokenizer.vocab_size=300"]
        return {"config": {"name": "abl", "variants": ["full"], "curation_overrides": overrides, "train": {"seeds": [0]}, **extra}}

    response = post(client, "/v1/jobs/ablation", ablation([f"{CRAWL}/*.jsonl"]))
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["output_dir"] == f"{STORAGE}/ablations/{job['id']}/abl"
    for name in ("ablation.yaml", "curation.yaml", "train.yaml"):  # the cluster reads them from the store
        assert fs.exists(f"runs-bucket/service/.jobs/{job['id']}/{name}")
    assert not (roots["runs"] / ".jobs").exists() and not (roots["runs"] / "ablations").exists()
    response = post(client, "/v1/jobs/ablation", ablation([f"{CRAWL}/*.jsonl", "s3://other-bucket/crawl/a.jsonl"]))
    assert response.status_code == 403 and detail(response)["field"] == "config.curation_overrides.0", response.text
    response = post(client, "/v1/jobs/ablation", ablation([f"{CRAWL}/*.jsonl"], out_dir=f"{STORAGE}/elsewhere"))
    assert response.status_code == 422 and detail(response)["field"] == "config.out_dir", response.text
    assert [p.rsplit("/", 1)[1] for p in fs.ls("runs-bucket/service/.jobs") if "/abl-" in p] == [job["id"]]  # the refused left nothing


def test_credentials_in_a_storage_url_are_refused_without_being_echoed(roots):  # noqa: F811
    with pytest.raises(ValidationError) as err:
        _settings(roots, storage="s3://AKIAEXAMPLE:hunter2secret@bucket/runs")
    assert "hunter2secret" not in str(err.value)
    with pytest.raises(ValidationError):
        ServiceSettings.from_env({"CURATION_STATE_DIR": str(roots["base"] / "state"), "CURATION_STORE_ROOTS": "/local/folder"})


class FailingRay(FakeRay):
    """Jobs run until the test ends them (``failed``): then Ray reports a process that exited 1."""

    def __init__(self):
        super().__init__()
        self.failed: set[str] = set()

    def state(self, submission_id):
        if submission_id in self.failed:
            return RayJobState("failed", "Job entrypoint command failed with exit code 1", 1.0, 2.0)
        return RayJobState("running", None, 1.0, None)


def test_a_failed_job_on_the_store_shows_the_runs_own_error(store_client, roots, tmp_path):  # noqa: F811
    """The error a client sees is the run's own (a curation run's stats.json, a training's
    error.txt), read from the store the run wrote it to; without one, the generic message."""
    _, fs = store_client  # its store, another service on it
    fs.pipe_file("crawl-bucket/crawl/tokens/manifest.json", b"{}")
    settings = _settings(roots, storage=STORAGE, store_roots=[CRAWL], database_url=f"sqlite:///{tmp_path / 'jobs.db'}", state_dir=tmp_path,
                         max_running_jobs=4)
    ray = FailingRay()
    with TestClient(create_app(settings, ray=ray, poll_interval_s=0.05), raise_server_exceptions=False) as client:
        curated = post(client, "/v1/jobs/curation", curation([f"{CRAWL}/*.jsonl"])).json()
        trained = post(client, "/v1/jobs/training", {"manifest": f"{CRAWL}/tokens/manifest.json"})
        assert trained.status_code == 201, trained.text
        trained = trained.json()
        silent = post(client, "/v1/jobs/curation", curation([f"{CRAWL}/*.jsonl"])).json()
        fs.pipe_file(curated["output_dir"].removeprefix("s3://") + "/stats.json", json.dumps({"status": "failed", "error": "ShardFailed: shard a: bad gzip"}).encode())
        fs.pipe_file(trained["output_dir"].removeprefix("s3://") + "/error.txt", b"the cluster holds 1 of the 2 CPU it needs\n")

        ray.failed.update(job["id"] for job in (curated, trained, silent))  # after each wrote its error, as a run does

        def error(job: dict) -> str:
            deadline = time.monotonic() + 30
            while (shown := client.get(f"/v1/jobs/{job['id']}", headers=AUTH).json())["state"] != "failed" and time.monotonic() < deadline:
                time.sleep(0.05)  # the service's poller records what Ray reports
            assert shown["state"] == "failed", shown
            return shown["error"]

        assert error(curated) == "ShardFailed: shard a: bad gzip"
        assert error(trained) == "the cluster holds 1 of the 2 CPU it needs"
        assert error(silent).startswith("the job's process failed with exit code 1")
