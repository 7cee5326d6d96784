"""The service end to end: a real ``python -m service`` process submitting to a real Ray head
through the Ray Jobs API, its job store surviving a restart, its refusals, and its dashboard in a
real headless Chromium."""

from __future__ import annotations

import http.client
import json
import math
import shutil
from pathlib import Path

import pytest

from service import local_ray
from service.local_api import TOKEN, ApiProcess
from tests.conftest import CORPUS, REAL_CRAWL

WARC = CORPUS / "warc"


def small_request(**extra) -> dict:
    config = {
        "sources": [
            {"name": "fin", "format": "warc", "domain": "finance", "paths": [str(WARC / "finance-00000.warc.gz")]},
            {"name": "gen", "format": "warc", "domain": "general", "paths": [str(WARC / "general-00000.warc.gz")]},
            {"name": "iana", "format": "warc", "domain": "general", "paths": [str(REAL_CRAWL)]},
        ],
        "tokenizer": {"vocab_size": 2000},
        **extra,
    }
    return {"config": config}


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    node = local_ray.start_head(num_cpus=2, log_dir=tmp_path_factory.mktemp("ray"))
    yield node
    local_ray.stop_node(node.pgid)


@pytest.fixture(scope="module")
def service(tmp_path_factory, ray_head):
    """The API process of this module; a test may replace it (restart) and the next ones use the new one."""
    root = tmp_path_factory.mktemp("service")
    holder = {"root": root, "ray": ray_head.dashboard_url, "api": ApiProcess(root / "state", root / "runs", ray_head.dashboard_url)}
    yield holder
    holder["api"].kill()


@pytest.fixture(scope="module")
def curated(service):
    """A curation job submitted through the API; the API process is killed while the job runs and a
    new one started on the same store, which must still see the job through to the end."""
    api = service["api"]
    status, job = api.call("POST", "/v1/jobs/curation", small_request())
    assert status == 201, job
    before = []
    api.wait(job["id"], until=("running",), seen=before)
    api.kill()
    service["api"] = api = ApiProcess(service["root"] / "state", service["root"] / "runs", service["ray"])
    after = []
    final = api.wait(job["id"], seen=after)
    return {"job": final, "submitted": job, "before_restart": before, "after_restart": after}


# ---- refusals: no job is started by any of these ----------------------------------------------
def test_mutating_calls_need_the_bearer_token(service):
    api = service["api"]
    for token in (None, "wrong-token-of-some-length"):
        status, body = api.call("POST", "/v1/jobs/curation", small_request(), token=token)
        assert status == 401 and body["detail"][0]["field"] == "Authorization"
        status, body = api.call("POST", "/v1/jobs/nonexistent/cancel", token=token)
        assert status == 401
    assert api.call("GET", "/v1/jobs", token=None)[0] == 200  # reads are open
    assert api.call("GET", "/v1/jobs", token=None)[1] == []


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/etc/passwd", "config.sources.0.paths.0"),
        ("../../../../../../etc/*", "config.sources.0.paths.0"),
        ("data/../../../../../../etc/hosts", "config.sources.0.paths.0"),
        ("data/sample_corpus/*/../../../../etc/hosts", "config.sources.0.paths.0"),
    ],
)
def test_paths_escaping_the_data_roots_are_refused(service, path, field):
    request = small_request()
    request["config"]["sources"][0]["paths"] = [path]
    status, body = service["api"].call("POST", "/v1/jobs/curation", request)
    assert status == 403, body
    assert body["detail"][0]["field"] == field and "outside the data roots" in body["detail"][0]["message"]


def test_a_symlink_out_of_the_data_roots_is_refused(service):
    runs = service["root"] / "runs"
    runs.mkdir(exist_ok=True)
    link = runs / "escape"
    if not link.exists():
        link.symlink_to("/etc")
    request = small_request(dedup={"previous_indexes": [str(link / "index")]})
    status, body = service["api"].call("POST", "/v1/jobs/curation", request)
    assert status == 403 and body["detail"][0]["field"] == "config.dedup.previous_indexes.0"
    status, body = service["api"].call("POST", "/v1/jobs/training", {"manifest": str(link / "passwd")})
    assert status == 403 and body["detail"][0]["field"] == "manifest"
    manifest = "data/sample_corpus/MANIFEST.json"  # inside a root; refused before it is read
    status, body = service["api"].call("POST", "/v1/jobs/training", {"manifest": manifest, "overrides": ["optim.steps=5", f"distill.teacher={link}"]})
    assert status == 403 and body["detail"][0]["field"] == "overrides.1"
    status, body = service["api"].call("POST", "/v1/jobs/training", {"manifest": manifest, "overrides": ["out_dir=/tmp/elsewhere"]})
    assert status == 422 and body["detail"][0]["field"] == "overrides.0"


def test_bad_requests_name_the_offending_field(service):
    api = service["api"]
    cases = [
        (small_request(dedup={"threshold": 3}), 422, "config.dedup.threshold"),
        (small_request(quality={"gopher_quality": {"min_doc_wordz": 5}}), 422, "config.quality.gopher_quality.min_doc_wordz"),
        ({"config": {}, "priority": "high"}, 422, "priority"),
    ]
    for body, status, field in cases:
        got, answer = api.call("POST", "/v1/jobs/curation", body)
        assert got == status and field in [d["field"] for d in answer["detail"]], answer
    got, answer = api.call("POST", "/v1/jobs/curation", raw=b'{"config": {"sources": [')
    assert got == 422 and answer["detail"][0]["field"]
    got, answer = api.call("POST", "/v1/jobs/training", {"curation_job": "cur-x", "manifest": "runs/x"})
    assert got == 422 and "exactly one" in answer["detail"][0]["message"]
    got, answer = api.call("POST", "/v1/jobs/training", {"curation_job": "cur-nope"})
    assert got == 404 and answer["detail"][0]["field"] == "curation_job"
    got, answer = api.call("POST", "/v1/jobs/training", {"manifest": "data/sample_corpus/MANIFEST.json", "nproc": 0})
    assert got == 422 and answer["detail"][0]["field"] == "nproc"
    got, answer = api.call("GET", "/v1/jobs/cur-nope")
    assert got == 404 and answer["detail"][0]["field"] == "job_id"
    got, answer = api.call("GET", "/v1/jobs?state=sleeping")
    assert got == 422 and answer["detail"][0]["field"] == "state"
    # over the body limit (1 MiB by default): refused from its Content-Length, before a byte is read
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.putrequest("POST", "/v1/jobs/curation")
    conn.putheader("Content-Length", str(2 << 20))
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["detail"][0]["field"] == "body"
    conn.close()
    assert api.call("GET", "/v1/jobs")[1] == []  # none of the above created a job


# ---- a job through the API, across a restart of the API process --------------------------------
@pytest.mark.slow
def test_job_runs_on_ray_and_survives_an_api_restart(curated):
    job = curated["job"]
    assert job["state"] == "succeeded", job["error"]
    assert curated["submitted"]["state"] == "queued"
    assert curated["before_restart"][-1]["state"] == "running"
    assert job["started_at"] and job["finished_at"] >= job["started_at"]
    # progress reported while it ran, per stage, ending at 100%
    stages = [s["stage"] for s in job["progress"]["stages"]]
    stats = json.loads((Path(job["output_dir"]) / "stats.json").read_text())
    assert stages == [s["name"] for s in stats["stages"]] and stages[-2:] == ["dedup", "mix"]
    assert all(s["percent"] == 100.0 for s in job["progress"]["stages"])
    percents = [j["progress"]["overall_percent"] for j in curated["before_restart"] + curated["after_restart"]]
    assert percents == sorted(percents) and percents[-1] == 100.0


@pytest.mark.slow
def test_funnel_is_the_runs_stats_json(service, curated):
    job = curated["job"]
    status, funnel = service["api"].call("GET", f"/v1/jobs/{job['id']}/funnel")
    assert status == 200
    stats = json.loads((Path(job["output_dir"]) / "stats.json").read_text())
    assert {k: v for k, v in funnel.items() if k not in ("job", "state", "partial")} == stats
    assert funnel["partial"] is False and stats["status"] == "complete"
    assert stats["retention"]["per_domain"].keys() == {"finance", "general"}
    assert 0 < stats["retention"]["shard_tokens_vs_extracted"] < 1


@pytest.mark.slow
def test_rejected_sample_by_stage_and_reason(service, curated):
    api, job_id = service["api"], curated["job"]["id"]
    status, sample = api.call("GET", f"/v1/jobs/{job_id}/rejected?stage=language&reason=language:de&limit=3")
    assert status == 200 and 1 <= len(sample["documents"]) <= 3
    assert all(d["reason"] == "language:de" and d["text"] for d in sample["documents"])
    status, answer = api.call("GET", f"/v1/jobs/{job_id}/rejected?stage=nonsense")
    assert status == 422 and answer["detail"][0]["field"] == "stage"


@pytest.mark.slow
def test_training_job_on_the_curated_shards(service, curated):
    api = service["api"]
    body = {"curation_job": curated["job"]["id"], "overrides": ["optim.steps=30", "log.val_every=10"]}
    status, job = api.call("POST", "/v1/jobs/training", body, token=None)
    assert status == 401
    status, job = api.call("POST", "/v1/jobs/training", body)
    assert status == 201 and job["parent_id"] == curated["job"]["id"], job
    final = api.wait(job["id"])
    assert final["state"] == "succeeded", final["error"]
    assert final["progress"]["step"] == 30
    status, metrics = api.call("GET", f"/v1/jobs/{job['id']}/metrics")
    losses = [m["loss"] for m in metrics["metrics"]]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert any("val_loss" in m for m in metrics["metrics"])
    assert api.call("GET", f"/v1/jobs/{curated['job']['id']}/metrics")[0] == 409
    service["training"] = final


@pytest.mark.slow
def test_a_ray_train_job_over_two_workers_through_the_api(service, curated):
    """The same trainer under Ray Train: two workers (FSDP2 over gloo), each reporting where it runs."""
    api = service["api"]
    body = {"curation_job": curated["job"]["id"], "workers": 2, "cpus_per_worker": 1, "overrides": ["optim.steps=6", "checkpoint.every=3"]}
    status, answer = api.call("POST", "/v1/jobs/training", {**body, "nproc": 2})
    assert status == 422 and answer["detail"][0]["field"] == "workers"
    status, answer = api.call("POST", "/v1/jobs/training", {**body, "workers": 3})  # the head has 2 CPUs
    assert status == 422 and answer["detail"][0]["field"] == "workers"
    status, job = api.call("POST", "/v1/jobs/training", body)
    assert status == 201, job
    final = api.wait(job["id"], timeout_s=600)
    assert final["state"] == "succeeded", final["error"]
    assert [w["rank"] for w in final["progress"]["workers"]] == [0, 1] and all(w["pid"] for w in final["progress"]["workers"])
    losses = [m["loss"] for m in api.call("GET", f"/v1/jobs/{job['id']}/metrics")[1]["metrics"]]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)


@pytest.mark.slow
def test_failed_job_keeps_its_error_and_partial_funnel(service, curated):
    """Only Latin survives the language filter: no finance tokens are left, so mixing fails."""
    api = service["api"]
    tokenizer = str(Path(curated["job"]["output_dir"]) / "tokenizer" / "spm.model")
    request = small_request(language={"languages": ["la"]})
    request["config"]["tokenizer"] = {"model_path": tokenizer}
    status, job = api.call("POST", "/v1/jobs/curation", request)
    assert status == 201, job
    final = api.wait(job["id"])
    assert final["state"] == "failed" and "no curated tokens left" in final["error"]
    status, funnel = api.call("GET", f"/v1/jobs/{job['id']}/funnel")
    assert status == 200 and funnel["status"] == "failed" and funnel["invariant_violations"] == []
    assert funnel["completed_shards"]["curate"] == 3


@pytest.mark.slow
def test_cancel_stops_a_running_job(service):
    api = service["api"]
    status, job = api.call("POST", "/v1/jobs/curation", {"config": {}})  # the whole bundled corpus: ~40 s
    assert status == 201
    api.wait(job["id"], until=("running",))
    status, answer = api.call("POST", f"/v1/jobs/{job['id']}/cancel")
    assert status == 202
    assert api.wait(job["id"], timeout_s=60)["state"] == "cancelled"


@pytest.mark.slow
def test_prometheus_metrics_count_jobs_and_requests(service, curated):
    status, text = service["api"].call("GET", "/metrics")
    assert status == 200
    assert 'curation_jobs{kind="curation",state="succeeded"}' in text
    assert 'curation_http_request_seconds_count{method="GET",route="/v1/jobs/{job_id}"}' in text


# ---- the dashboard in a real browser ----------------------------------------------------------
@pytest.mark.slow
def test_dashboard_renders_funnel_and_loss_in_chromium(service, curated, tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian's chromium and chromium-driver are needed (`make test` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    if "training" not in service:
        pytest.skip("needs the training job of test_training_job_on_the_curated_shards")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    api, job = service["api"], curated["job"]
    try:
        driver.get(f"{api.base}/#job={job['id']}&token={TOKEN}")  # the read token: the loss curve's metrics need it
        assert "token=" not in driver.current_url  # taken out of the address at once, kept in the tab's session
        WebDriverWait(driver, 30).until(lambda d: d.find_element("tag name", "body").get_attribute("data-rendered") == job["id"])
        bars = driver.find_elements("css selector", "svg#funnel rect.bar")
        funnel = api.call("GET", f"/v1/jobs/{job['id']}/funnel")[1]
        assert len(bars) == len(funnel["stages"]) * 2  # one bar per stage and domain
        kept = {(b.get_attribute("data-stage"), b.get_attribute("data-domain")): int(b.get_attribute("data-kept")) for b in bars}
        for stage in funnel["stages"]:
            for domain, counts in stage["domains"].items():
                assert kept[(stage["name"], domain)] == counts["kept"]["docs"]
        assert any(float(b.get_attribute("width")) > 0 for b in bars)
        # the figures beside the bars fit inside the chart (a user once saw "913/945 docs · 6185" cut off)
        cut = driver.execute_script(
            "const svg = document.getElementById('funnel'); const w = svg.width.baseVal.value;"
            "return [...svg.querySelectorAll('text')].filter(t => { const b = t.getBBox(); return b.x + b.width > w; }).map(t => t.textContent);")
        assert cut == []
        training = service["training"]
        driver.get(f"{api.base}/#job={training['id']}")
        driver.refresh()
        WebDriverWait(driver, 30).until(lambda d: d.find_element("tag name", "body").get_attribute("data-rendered") == training["id"])
        curve = driver.find_element("css selector", "svg#loss polyline.loss-curve")
        assert int(curve.get_attribute("data-points")) == 30
        assert len(curve.get_attribute("points").split()) == 30
        assert int(driver.find_element("css selector", "svg#loss polyline.val-curve").get_attribute("data-points")) >= 2
        axes = {driver.find_element("css selector", f"svg#loss text.{a}").text for a in ("axis-x", "axis-y")}
        assert axes == {"optimizer step", "loss (nats per token)"}
        rows = driver.find_elements("css selector", "#jobs tr.job")
        assert {r.get_attribute("data-job") for r in rows} >= {job["id"], training["id"]}
        # the dashboard only reads: every request it made was a GET to the API's own origin
        requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
        sent = [(m["params"]["request"]["method"], m["params"]["request"]["url"]) for m in requests if m["method"] == "Network.requestWillBeSent"]
        web = [(m, u) for m, u in sent if u.startswith(("http:", "https:", "ws:", "wss:"))]  # not chrome:// internals
        assert web and [(m, u) for m, u in web if m != "GET" or not u.startswith(api.base)] == []
    finally:
        driver.quit()
    jobs_after = api.call("GET", "/v1/jobs")[1]
    assert len(jobs_after) == len({j["id"] for j in jobs_after})


def test_ray_jobs_api_tells_an_unknown_job(ray_head, tmp_path):
    """What the restart recovery asks Ray about a job an earlier API process may not have submitted."""
    from service.ray_jobs import RayJobs
    from service.settings import ServiceSettings

    settings = ServiceSettings(api_token="t" * 16, database_url="sqlite://", state_dir=tmp_path, data_roots=[tmp_path],
                               runs_dir=tmp_path, ray_jobs_address=ray_head.dashboard_url)
    assert RayJobs(settings).known("cur-000000000000") is False
