"""The service with object storage as its storage (CURATION_STORAGE): the API process, a real Ray head
and moto's S3 server on loopback. A curation job reads its sources from the store and writes its
run there; the API reads progress, the funnel and rejected documents back from the store. The
credentials reach every process through the environment only, and no response or log holds them."""

from __future__ import annotations

import json

import pytest

from service import local_ray
from service.local_api import ApiProcess
from tests.conftest import CORPUS, REAL_CRAWL
from scripts.s3_server import start_moto

SECRET = "h18-service-secret-never-shown"
SOURCES = {"fin": CORPUS / "warc" / "finance-00000.warc.gz", "gen": CORPUS / "warc" / "general-00000.warc.gz", "iana": REAL_CRAWL}


@pytest.fixture(scope="module")
def store_cluster(tmp_path_factory):
    """(Ray head, test-side filesystem): the head started with the store's environment, as
    docker-compose gives it to every node."""
    import s3fs

    server, endpoint = start_moto()
    patch = pytest.MonkeyPatch()
    for key, value in {"AWS_ACCESS_KEY_ID": "svc-key", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": endpoint}.items():
        patch.setenv(key, value)
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True, use_listings_cache=False)
    fs.mkdir("svc")
    for name, path in SOURCES.items():
        fs.put_file(str(path), f"svc/crawl/{name}/{path.name}")
    head = local_ray.start_head(num_cpus=2, log_dir=tmp_path_factory.mktemp("ray"))
    yield head, fs
    local_ray.stop_node(head.pgid)
    patch.undo()
    server.stop()


@pytest.mark.slow
def test_a_curation_job_through_the_api_reads_and_writes_the_store(store_cluster, tmp_path):
    head, fs = store_cluster
    api = ApiProcess(tmp_path / "state", tmp_path / "runs", head.dashboard_url,
                     extra_env={"CURATION_STORAGE": "s3://svc/runs", "CURATION_STORE_ROOTS": "s3://svc/crawl"})
    sources = [{"name": n, "format": "warc", "domain": "general" if n != "fin" else "finance", "paths": [f"s3://svc/crawl/{n}/*.warc.gz"]}
               for n in SOURCES]
    try:
        status, job = api.call("POST", "/v1/jobs/curation", {"config": {"sources": sources, "tokenizer": {"vocab_size": 2000}}})
        assert status == 201, job
        assert job["output_dir"] == f"s3://svc/runs/{job['id']}"
        final = api.wait(job["id"], timeout_s=900)
        assert final["state"] == "succeeded", final["error"]
        answers = [final, api.call("GET", f"/v1/jobs/{job['id']}")[1]]
        status, funnel = api.call("GET", f"/v1/jobs/{job['id']}/funnel")
        answers.append(funnel)
        assert status == 200 and funnel["status"] == "complete" and funnel["invariant_violations"] == []
        assert funnel["store"]["retried"] == 0
        status, rejected = api.call("GET", f"/v1/jobs/{job['id']}/rejected?stage=language&limit=3")
        answers.append(rejected)
        assert status == 200 and rejected["documents"], rejected
    finally:
        api.kill()
    assert fs.exists(f"svc/runs/{job['id']}/tokens/manifest.json")
    assert all(SECRET not in json.dumps(a) for a in answers)
    assert SECRET.encode() not in open(api.log.name, "rb").read()
    assert SECRET.encode() not in fs.cat_file(f"svc/runs/.jobs/{job['id']}/config.yaml")
