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
from tests.test_ablate import TRAIN as ABLATION_TRAIN
from tests.test_eval_bpb import small_eval_text

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


def ablation_request(service, **extra) -> dict:
    """Two variants x one seed of the tiny trainer for 3 steps (scored at each), on two of the bundled WARCs."""
    sources = [
        {"name": "fin", "format": "warc", "domain": "finance", "paths": [str(WARC / "finance-00000.warc.gz")]},
        {"name": "gen", "format": "warc", "domain": "general", "paths": [str(WARC / "general-00000.warc.gz")]},
    ]
    eval_text = small_eval_text(service["root"] / "runs" / "eval")  # inside the runs root, a data root
    config = {
        "name": "two", "variants": ["extract-lang", "full"], "curation_overrides": [f"sources={json.dumps(sources)}", "tokenizer.vocab_size=1000"],
        "train": {"overrides": [*ABLATION_TRAIN, "log.val_every=1", f"log.eval_text={json.dumps(eval_text)}"], "seeds": [0]},
    }
    return {"config": {**config, **extra}}


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


def test_ablation_requests_are_confined_and_name_the_field(service):
    api = service["api"]
    assert api.call("POST", "/v1/jobs/ablation", ablation_request(service), token=None)[0] == 401
    good = ablation_request(service)["config"]
    outside = json.dumps([{"name": "x", "format": "warc", "domain": "finance", "paths": ["/etc/passwd"]},
                          {"name": "y", "format": "warc", "domain": "general", "paths": [str(WARC / "general-00000.warc.gz")]}])
    cases = [
        ({"out_dir": "/tmp/elsewhere"}, 422, "config.out_dir"),
        ({"curation_config": "/etc/passwd"}, 403, "config.curation_config"),
        ({"curation_overrides": [f"sources={outside}"]}, 403, "config.curation_overrides.0"),
        ({"curation_overrides": [*good["curation_overrides"], "runs_dir=/tmp/elsewhere"]}, 422, "config.curation_overrides.2"),
        ({"variants": ["full", {"name": "moved", "overrides": ["tokenizer.model_path=data/other.model"]}]}, 422, "config.variants.1.overrides"),
        ({"variants": [{"name": "leaky", "overrides": ["decontaminate.enabled=false"]}]}, 422, "config.variants.0"),
        ({"variants": ["everything"]}, 422, "config.variants"),
        ({"train": {"overrides": ["out_dir=/tmp/elsewhere"]}}, 422, "config.train.overrides.0"),
        ({"train": {"overrides": ["optim.steps=3", "log.eval_text=[/etc/passwd]"]}}, 403, "config.train.overrides.1"),
        ({"train": {"config": "../../../../etc/passwd"}}, 403, "config.train.config"),
        ({"train": {"seeds": []}}, 422, "config.train.seeds"),
    ]
    for change, status, field in cases:
        got, answer = api.call("POST", "/v1/jobs/ablation", {"config": {**good, **change}})
        assert (got, answer["detail"][0]["field"]) == (status, field), (change, answer)
    assert api.call("GET", "/v1/jobs?kind=ablation")[1] == []  # none of them was accepted, nor left a file behind
    assert list((service["root"] / "runs" / ".jobs").glob("abl-*")) == []


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
    eval_text = small_eval_text(service["root"] / "runs" / "eval")
    body = {"curation_job": curated["job"]["id"], "overrides": ["optim.steps=30", "log.val_every=10", f"log.eval_text={json.dumps(eval_text)}"]}
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
    assert all(0 < m["val_bpb/finance"] < 16 and 0 < m["val_bpb/general"] < 16 for m in metrics["metrics"] if "val_loss" in m)
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
    service["ray_train"] = final


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
    service["failed"] = final


@pytest.mark.slow
def test_cancel_stops_a_running_job(service):
    api = service["api"]
    status, job = api.call("POST", "/v1/jobs/curation", {"config": {}})  # the whole bundled corpus: ~40 s
    assert status == 201
    api.wait(job["id"], until=("running",))
    status, answer = api.call("POST", f"/v1/jobs/{job['id']}/cancel")
    assert status == 202
    assert api.wait(job["id"], timeout_s=60)["state"] == "cancelled"


@pytest.fixture(scope="module")
def ablated(service):
    """An ablation job through the API; a second one waits in the queue behind it and is cancelled there."""
    api = service["api"]
    status, job = api.call("POST", "/v1/jobs/ablation", ablation_request(service))
    assert status == 201 and job["kind"] == "ablation", job
    status, waiting = api.call("POST", "/v1/jobs/ablation", ablation_request(service))
    assert status == 201 and waiting["queue_position"] == 1, waiting  # one job at a time on the head's 2 CPUs
    status, cancelled = api.call("POST", f"/v1/jobs/{waiting['id']}/cancel")
    assert status == 202 and cancelled["state"] == "cancelled"
    seen: list[dict] = []
    final = api.wait(job["id"], timeout_s=900, seen=seen)
    service["ablation"] = final
    return {"job": final, "seen": seen, "cancelled": cancelled}


@pytest.mark.slow
def test_ablation_job_trains_each_variant_on_ray_and_serves_its_table(service, ablated):
    api, job = service["api"], ablated["job"]
    assert job["state"] == "succeeded", job["error"]
    assert Path(job["output_dir"]).is_relative_to(service["root"] / "runs" / "ablations" / job["id"])
    progress = job["progress"]
    assert (progress["variants_curated"], progress["variants"], progress["runs_trained"], progress["runs"]) == (2, 2, 2, 2)
    percents = [j["progress"]["overall_percent"] for j in ablated["seen"]]
    assert percents == sorted(percents) and percents[-1] == 100.0 and any(0 < p < 100 for p in percents)
    assert api.call("GET", f"/v1/jobs/{job['id']}/ablation", token=None)[0] == 401
    status, results = api.call("GET", f"/v1/jobs/{job['id']}/ablation")
    assert status == 200
    on_disk = json.loads((Path(job["output_dir"]) / "results.json").read_text())
    assert {k: v for k, v in results.items() if k not in ("job", "state")} == on_disk
    raw, full = results["variants"]
    assert (raw["name"], full["name"]) == ("extract-lang", "full")
    for v in (raw, full):
        assert set(v["bpb"]) == {"finance", "general"} and all(b["n"] == 1 and 0 < b["mean"] < 16 for b in v["bpb"].values())
    assert full["retention"]["docs"] < raw["retention"]["docs"]
    # each variant's own run: its funnel (open, as a curation job's) and its seeds' training metrics (with a token)
    for v in ("extract-lang", "full"):
        status, funnel = api.call("GET", f"/v1/jobs/{job['id']}/ablation/{v}/funnel", token=None)
        stats = json.loads((Path(job["output_dir"]) / "curation" / v / "stats.json").read_text())
        assert status == 200 and {k: x for k, x in funnel.items() if k not in ("job", "variant", "partial")} == stats
        assert api.call("GET", f"/v1/jobs/{job['id']}/ablation/{v}/metrics", token=None)[0] == 401
        metrics = api.call("GET", f"/v1/jobs/{job['id']}/ablation/{v}/metrics")[1]["seeds"]
        assert list(metrics) == ["0"] and [m["step"] for m in metrics["0"]] == [1, 2, 3] and "val_bpb/finance" in metrics["0"][-1]
    status, answer = api.call("GET", f"/v1/jobs/{job['id']}/ablation/everything/funnel")
    assert status == 422 and answer["detail"][0]["field"] == "variant"
    status, answer = api.call("GET", f"/v1/jobs/{ablated['cancelled']['id']}/ablation")
    assert status == 404 and answer["detail"][0]["field"] == "job_id"
    assert api.call("GET", "/v1/jobs?kind=ablation")[1][0]["state"] == "cancelled"


@pytest.mark.slow
def test_prometheus_metrics_count_jobs_and_requests(service, curated):
    status, text = service["api"].call("GET", "/metrics")
    assert status == 200
    assert 'curation_jobs{kind="curation",state="succeeded"}' in text
    assert 'curation_http_request_seconds_count{method="GET",route="/v1/jobs/{job_id}"}' in text


# ---- the dashboard in a real browser ----------------------------------------------------------
# what is drawn past the right edge at 1280 px: SVG text outside its figure, any element outside the window
CUT_OFF = """
const width = document.documentElement.clientWidth, cut = [];
for (const svg of document.querySelectorAll('svg')) {
  if (!svg.getClientRects().length) continue;
  const vb = svg.viewBox.baseVal, w = vb && vb.width ? vb.width : svg.width.baseVal.value;
  for (const t of svg.querySelectorAll('text')) { const b = t.getBBox(); if (b.x + b.width > w + 0.5) cut.push(svg.id + ': ' + t.textContent); }
}
for (const e of document.querySelectorAll('body *')) {
  if (!e.getClientRects().length) continue;
  const r = e.getBoundingClientRect();
  if (r.right > width + 0.5) cut.push(e.tagName + '#' + e.id + '.' + e.getAttribute('class') + ' ends at ' + r.right);
}
if (document.documentElement.scrollWidth > width) cut.push('the page scrolls sideways: ' + document.documentElement.scrollWidth);
return cut;
"""


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}%"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian's chromium and chromium-driver are needed (`make test` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium') / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_window_size(1280, 1000)
    yield driver
    driver.quit()


def show(driver, api, fragment: str, attribute: str, value: str) -> None:
    """Open the dashboard at ``#fragment`` and wait until it says (``data-<attribute>`` of the body) it drew ``value``."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{api.base}/#{fragment}")
    driver.refresh()
    WebDriverWait(driver, 30).until(lambda d: d.find_element("tag name", "body").get_attribute(f"data-{attribute}") == value)


def wait_for(driver, condition, timeout_s: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s).until(condition)


@pytest.mark.slow
def test_dashboard_renders_funnel_and_loss_in_chromium(service, curated, browser):
    from selenium.webdriver.support.ui import Select

    if "training" not in service:
        pytest.skip("needs the training job of test_training_job_on_the_curated_shards")
    driver, api, job = browser, service["api"], curated["job"]
    driver.get(f"{api.base}/#job={job['id']}&token={TOKEN}")  # the read token: the loss curve's metrics need it
    assert "token=" not in driver.current_url  # taken out of the address at once, kept in the tab's session
    wait_for(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-rendered") == job["id"])
    bars = driver.find_elements("css selector", "svg#funnel rect.bar")
    funnel = api.call("GET", f"/v1/jobs/{job['id']}/funnel")[1]
    assert len(bars) == len(funnel["stages"]) * 2  # one bar per stage and domain
    kept = {(b.get_attribute("data-stage"), b.get_attribute("data-domain")): int(b.get_attribute("data-kept")) for b in bars}
    for stage in funnel["stages"]:
        for domain, counts in stage["domains"].items():
            assert kept[(stage["name"], domain)] == counts["kept"]["docs"]
    assert any(float(b.get_attribute("width")) > 0 for b in bars)
    # beside each bar its documents and tokens; the HTML's tokens, left uncounted by default, are marked up to extraction
    names = [s["name"] for s in funnel["stages"]]
    labels = [t.text for t in driver.find_elements("css selector", "svg#funnel text") if " docs · " in t.text]
    assert funnel["retention"]["tokens_vs_raw"] is None and labels == [
        f"{t['kept']['docs']}/{t['in']['docs']} docs · {t['out']['tokens']}{'*' if i < names.index('extract') else ''} tok"
        for i, t in enumerate(s["total"] for s in funnel["stages"])
    ]
    # each stage's wall time, as stats.json has it
    walls = {r.get_attribute("data-stage"): float(r.get_attribute("data-seconds")) for r in driver.find_elements("css selector", "svg#walltime rect.wall")}
    assert walls == {s["name"]: s["wall_time_s"] for s in funnel["stages"]} and sum(walls.values()) > 0
    # the rejected documents of a stage, every reason, then one reason, a page at a time: what the API holds
    stage = max(funnel["stages"], key=lambda s: s["total"]["rejected"]["docs"])
    reason, counts = max(stage["total"]["rejected_by_reason"].items(), key=lambda kv: kv[1]["docs"])
    assert stage["total"]["rejected"]["docs"] > 10 and reason  # more than a page
    # the 2 s refresh keeps the lists' options while they are unchanged: replacing them closed a list the user had open
    option = driver.find_element("css selector", "#rej-stage option")
    refreshes = int(driver.find_element("tag name", "body").get_attribute("data-refreshes") or 0)
    wait_for(driver, lambda d: int(d.find_element("tag name", "body").get_attribute("data-refreshes") or 0) > refreshes)
    assert option.get_attribute("value") == driver.find_element("id", "rej-stage").get_attribute("value")
    for chosen, offset, total in ((None, 0, stage["total"]["rejected"]["docs"]), (reason, 0, counts["docs"]), (reason, 10, counts["docs"])):
        if chosen is None:
            Select(driver.find_element("id", "rej-stage")).select_by_value(stage["name"])
        elif offset == 0:
            Select(driver.find_element("id", "rej-reason")).select_by_value(reason)
        else:
            if total <= 10:
                break
            driver.find_element("id", "rej-next").click()
        wait_for(driver, lambda d: d.find_element("id", "rejected").get_attribute("data-shown") == f"{job['id']}|{stage['name']}|{chosen or ''}|{offset}")
        page = api.call("GET", f"/v1/jobs/{job['id']}/rejected?stage={stage['name']}&limit=10&offset={offset}" + (f"&reason={chosen}" if chosen else ""))[1]
        rows = driver.find_elements("css selector", "#rejected tr.doc")
        assert page["total"] == total and [r.get_attribute("data-id") for r in rows] == [d["id"] for d in page["documents"]]
        assert chosen is None or {r.get_attribute("data-reason") for r in rows} == {chosen}
        assert driver.find_element("id", "rej-count").text == f"{offset + 1}–{offset + len(rows)} of {total}"
    assert driver.execute_script(CUT_OFF) == []  # a user once saw "913/945 docs · 6185" cut off
    training = service["training"]
    show(driver, api, f"job={training['id']}", "rendered", training["id"])
    metrics = api.call("GET", f"/v1/jobs/{training['id']}/metrics")[1]["metrics"]
    curve = driver.find_element("css selector", "svg#loss polyline.loss-curve")
    assert int(curve.get_attribute("data-points")) == 30
    assert len(curve.get_attribute("points").split()) == 30
    assert int(driver.find_element("css selector", "svg#loss polyline.val-curve").get_attribute("data-points")) >= 2
    axes = {driver.find_element("css selector", f"svg#loss text.{a}").text for a in ("axis-x", "axis-y")}
    assert axes == {"optimizer step", "loss (nats per token)"}
    bpb = {c.get_attribute("data-domain"): int(c.get_attribute("data-points")) for c in driver.find_elements("css selector", "svg#bpb polyline.bpb-curve")}
    assert bpb == {d: sum(f"val_bpb/{d}" in m for m in metrics) for d in ("finance", "general")} and min(bpb.values()) >= 2
    assert driver.find_element("css selector", "svg#bpb text.axis-y").text == "bits per byte (held-out reference text)"
    assert driver.execute_script(CUT_OFF) == []
    rows = driver.find_elements("css selector", "#jobs tr.job")
    assert {r.get_attribute("data-job") for r in rows} >= {job["id"], training["id"]}
    # the dashboard only reads: every request it made was a GET to the API's own origin
    requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    sent = [(m["params"]["request"]["method"], m["params"]["request"]["url"]) for m in requests if m["method"] == "Network.requestWillBeSent"]
    web = [(m, u) for m, u in sent if u.startswith(("http:", "https:", "ws:", "wss:"))]  # not chrome:// internals
    assert web and [(m, u) for m, u in web if m != "GET" or not u.startswith(api.base)] == []
    jobs_after = api.call("GET", "/v1/jobs")[1]
    assert len(jobs_after) == len({j["id"] for j in jobs_after})


@pytest.mark.slow
def test_dashboard_compares_runs_side_by_side_and_shows_the_ablation_table(service, curated, browser):
    missing = [k for k in ("training", "ray_train", "failed", "ablation") if k not in service]
    if missing:
        pytest.skip(f"needs the jobs of the tests before it: {missing}")
    driver, api = browser, service["api"]
    runs = [curated["job"]["id"], service["failed"]["id"], service["training"]["id"], service["ray_train"]["id"]]
    driver.get(f"{api.base}/#token={TOKEN}")
    show(driver, api, "compare=" + ",".join(runs), "compared", ",".join(runs))
    # the curation runs: retention and funnel, one beside the other
    funnels = {j: api.call("GET", f"/v1/jobs/{j}/funnel")[1] for j in runs[:2]}
    rows = driver.find_elements("css selector", "#compare-retention tr.cmp-run")
    assert [r.get_attribute("data-job") for r in rows] == runs[:2]
    for row in rows:
        r = funnels[row.get_attribute("data-job")]["retention"]
        assert (row.find_element("css selector", ".retention-docs").text, row.find_element("css selector", ".retention-tokens").text) == (pct(r["docs"]), pct(r["tokens_vs_extracted"]))
    columns = driver.find_elements("css selector", "#compare-funnels .cmp-funnel")
    assert [c.get_attribute("data-job") for c in columns] == runs[:2]
    tops = {c.get_attribute("data-job"): c.rect["y"] for c in columns}
    assert len(set(tops.values())) == 1  # side by side, not one under the other
    for column in columns:
        kept = {(b.get_attribute("data-stage"), b.get_attribute("data-domain")): int(b.get_attribute("data-kept")) for b in column.find_elements("css selector", "rect.bar")}
        expected = {(s["name"], d): c["kept"]["docs"] for s in funnels[column.get_attribute("data-job")]["stages"] for d, c in s["domains"].items()}
        assert expected and {k: kept[k] for k in expected} == expected
    # the training runs: loss curves over each other, bits per byte where the run scored the reference text
    metrics = {j: api.call("GET", f"/v1/jobs/{j}/metrics")[1]["metrics"] for j in runs[2:]}
    loss = {c.get_attribute("data-job"): int(c.get_attribute("data-points")) for c in driver.find_elements("css selector", "svg#compare-loss polyline.cmp-loss")}
    assert loss == {j: len(m) for j, m in metrics.items()} == {runs[2]: 30, runs[3]: 6}
    bpb = {(c.get_attribute("data-job"), c.get_attribute("data-domain")) for c in driver.find_elements("css selector", "svg#compare-bpb polyline.cmp-bpb")}
    assert bpb == {(j, k.split("/", 1)[1]) for j, m in metrics.items() for r in m for k in r if k.startswith("val_bpb/")} == {(runs[2], "finance"), (runs[2], "general")}
    assert driver.execute_script(CUT_OFF) == []
    # the ablation: variants x bits per byte per domain (mean ± std over seeds) and retention
    ablation = service["ablation"]
    show(driver, api, f"job={ablation['id']}", "rendered", ablation["id"])
    results = api.call("GET", f"/v1/jobs/{ablation['id']}/ablation")[1]
    rows = wait_for(driver, lambda d: d.find_elements("css selector", "#ablation tr.variant"))
    assert [r.get_attribute("data-variant") for r in rows] == [v["name"] for v in results["variants"]] == ["extract-lang", "full"]
    for row, variant in zip(rows, results["variants"]):
        cells = {c.get_attribute("data-domain"): c for c in row.find_elements("css selector", "td.bpb")}
        assert {d: float(c.get_attribute("data-mean")) for d, c in cells.items()} == {d: b["mean"] for d, b in variant["bpb"].items()}
        assert cells["finance"].text == f"{variant['bpb']['finance']['mean']:.4f} ± {variant['bpb']['finance']['std']:.4f}"
        assert row.find_element("css selector", ".retention-docs").text == pct(variant["retention"]["docs"])
    assert driver.find_element("id", "ablation-progress").text == "2/2 variants curated · 2/2 runs trained"
    # each variant's funnel beside the other's, and the bits per byte of each of its seeds as it trained
    columns = wait_for(driver, lambda d: d.find_elements("css selector", "#ablation-funnels .abl-funnel"))
    assert [c.get_attribute("data-variant") for c in columns] == ["extract-lang", "full"]
    for column in columns:
        funnel = api.call("GET", f"/v1/jobs/{ablation['id']}/ablation/{column.get_attribute('data-variant')}/funnel")[1]
        kept = {(b.get_attribute("data-stage"), b.get_attribute("data-domain")): int(b.get_attribute("data-kept")) for b in column.find_elements("css selector", "rect.bar")}
        expected = {(s["name"], d): c["kept"]["docs"] for s in funnel["stages"] for d, c in s["domains"].items()}
        assert {k: kept[k] for k in expected} == expected
    curves = {(c.get_attribute("data-variant"), c.get_attribute("data-seed"), c.get_attribute("data-domain")): int(c.get_attribute("data-points"))
              for c in driver.find_elements("css selector", "svg#ablation-bpb polyline.abl-bpb")}
    assert curves == {(v, "0", d): 3 for v in ("extract-lang", "full") for d in ("finance", "general")}  # scored at each of 3 steps
    assert driver.execute_script(CUT_OFF) == []


def test_ray_jobs_api_tells_an_unknown_job(ray_head, tmp_path):
    """What the restart recovery asks Ray about a job an earlier API process may not have submitted."""
    from service.ray_jobs import RayJobs
    from service.settings import ServiceSettings

    settings = ServiceSettings(api_token="t" * 16, database_url="sqlite://", state_dir=tmp_path, data_roots=[tmp_path],
                               runs_dir=tmp_path, ray_jobs_address=ray_head.dashboard_url)
    assert RayJobs(settings).known("cur-000000000000") is False
