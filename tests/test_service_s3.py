"""The service with object storage as its storage (CURATION_STORAGE): the API process, a real Ray head
and moto's S3 server on loopback. A curation job reads its sources from the store and writes its
run there; the API reads progress, the funnel and rejected documents back from the store. An
ablation job writes its curation runs, training runs and report there too, and nothing on the
API node's disk. The credentials reach every process through the environment only, and no
response or log holds them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from service import local_ray
from service.local_api import ApiProcess
from tests.conftest import CORPUS, REAL_CRAWL, ROOT
from tests.test_ablate import TRAIN as ABLATION_TRAIN
from tests.test_eval_bpb import small_eval_text
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


@pytest.mark.slow
def test_an_ablation_job_through_the_api_writes_to_the_store_and_is_read_from_there(store_cluster, tmp_path):
    """Two variants x one seed of the tiny trainer (the smallest ablation that shares a tokenizer), on store sources."""
    head, fs = store_cluster
    runs, eval_dir = tmp_path / "runs", tmp_path / "eval"
    eval_text = small_eval_text(eval_dir)  # the reference text, local to every node as the bundled one is
    api = ApiProcess(tmp_path / "state", runs, head.dashboard_url,
                     extra_env={"CURATION_STORAGE": "s3://svc/runs", "CURATION_STORE_ROOTS": "s3://svc/crawl",
                                "CURATION_DATA_ROOTS": f"{ROOT / 'data'}:{runs}:{eval_dir}"})
    sources = [{"name": n, "format": "warc", "domain": d, "paths": [f"s3://svc/crawl/{n}/*.warc.gz"]} for n, d in (("fin", "finance"), ("gen", "general"))]
    config = {"name": "two", "variants": ["extract-lang", "full"], "curation_overrides": [f"sources={json.dumps(sources)}", "tokenizer.vocab_size=1000"],
              "train": {"overrides": [*ABLATION_TRAIN, f"log.eval_text={json.dumps(eval_text)}"], "seeds": [0]}}
    try:
        status, job = api.call("POST", "/v1/jobs/ablation", {"config": config})
        assert status == 201, job
        root = f"svc/runs/ablations/{job['id']}/two"
        assert job["output_dir"] == f"s3://{root}"
        final = api.wait(job["id"], timeout_s=900)
        assert final["state"] == "succeeded", final["error"]
        progress = final["progress"]
        assert (progress["variants_curated"], progress["runs_trained"], progress["runs"], progress["results"]) == (2, 2, 2, True)
        status, results = api.call("GET", f"/v1/jobs/{job['id']}/ablation")
        assert status == 200 and {k: v for k, v in results.items() if k not in ("job", "state")} == json.loads(fs.cat_file(f"{root}/results.json"))
        for v in ("extract-lang", "full"):
            status, funnel = api.call("GET", f"/v1/jobs/{job['id']}/ablation/{v}/funnel")
            stats = json.loads(fs.cat_file(f"{root}/curation/{v}/stats.json"))
            assert status == 200 and {k: x for k, x in funnel.items() if k not in ("job", "variant", "partial")} == stats
            metrics = api.call("GET", f"/v1/jobs/{job['id']}/ablation/{v}/metrics")[1]["seeds"]
            assert [m["step"] for m in metrics["0"]] == [1, 2, 3] and "val_bpb/finance" in metrics["0"][-1]
    finally:
        api.kill()
    for name in ("ablation.json", "train_plan.json", "results.json", "results.md", "bpb.png", "train/full/seed-0/bpb.json", "train/full/seed-0/train.log"):
        assert fs.exists(f"{root}/{name}"), name
    assert all(fs.exists(f"{root}/curation/{v}/stats.json") for v in ("extract-lang", "full"))
    # the second variant encoded with the first's tokenizer, read from the store
    assert json.loads(fs.cat_file(f"{root}/curation/full/tokenizer/tokenizer.json"))["given_path"] == f"s3://{root}/curation/extract-lang/tokenizer/spm.model"
    assert [p for p in runs.rglob("*") if p.is_file()] == []  # nothing on the API node's disk
    # the ablation's other way of scoring, when a run's last step was no validation step: the run read from the store
    run = f"s3://{root}/train/full/seed-0"
    result = subprocess.run([sys.executable, "-m", "trainer.eval", "--run", run, "--device", "cpu"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    scored, trained = (json.loads(fs.cat_file(f"{root}/train/full/seed-0/{name}")) for name in ("eval_bpb.json", "bpb.json"))
    assert scored["bpb"] == pytest.approx(trained["bpb"], rel=1e-4)
