"""The service as an attacker meets it (SECURITY.md lists each finding with its test): nothing outside
the data roots is read or served, the service's own settings cannot be overridden, what is not
the client's business needs a token, and every hostile request gets a 4xx naming the field.

In-process (FastAPI's TestClient, a stand-in for the Ray Jobs client) except where the bytes on
the wire matter (chunked and stalled bodies: a real uvicorn server on loopback).
"""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
import typing

import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydantic import BaseModel

from ablation.config import AblationConfig
from curation.readers.base import InputFile
from curation.readers.html_folder import read_html_folder
from curation.readers.sources import list_shards
from curation.core.stage import RAW_KEY, READ_ERROR_KEY
from pipelines.config import ConfigError, WebCorpusConfig
from service.api import create_app
from service.confinement import path_fields
from service.local_ray import free_port
from service.settings import ServiceSettings
from service.store import JobStore
from tests.conftest import CORPUS
from tests.test_fuzz_api import FakeRay
from trainer.config import TrainConfig

TOKEN = "security-token-" + "x" * 16
READ_TOKEN = "read-only-token-" + "y" * 16
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "the outside secret that must never be read"


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """A data root holding symlinks to files outside every root, as the attacker's probe had it."""
    base = tmp_path_factory.mktemp("sec")
    outside, data, runs = base / "outside", base / "data", base / "runs"
    for d in (outside / "teacher", data / "glob", data / "htmldir", runs):
        d.mkdir(parents=True)
    (outside / "secret.jsonl").write_text(json.dumps({"text": SECRET}) + "\n")
    (outside / "page.html").write_text(f"<html><body><p>{SECRET}</p></body></html>")
    (outside / "model.ftz").write_bytes(b"\xba\x16\x4f\x2f" + b"\0" * 64)
    (data / "glob" / "ok.jsonl").write_text(json.dumps({"text": "a document inside the root"}) + "\n")
    (data / "glob" / "evil.jsonl").symlink_to(outside / "secret.jsonl")
    (data / "sub").symlink_to(outside)
    (data / "htmldir" / "ok.html").write_text("<html><body><p>inside</p></body></html>")
    (data / "htmldir" / "evil.html").symlink_to(outside / "page.html")
    (data / "not-a-model.ftz").write_text("plain text")
    (data / "manifest.json").write_text("{}")
    return {"base": base, "outside": outside, "data": data, "runs": runs}


def _settings(roots, **extra) -> ServiceSettings:
    """The bundled classifiers and reference text are roots as well: the configs' defaults live there."""
    values = dict(api_token=TOKEN, read_token=READ_TOKEN, database_url=f"sqlite:///{roots['base'] / 'jobs.db'}", state_dir=roots["base"],
                  data_roots=[roots["data"], roots["runs"], CORPUS.parent / "classifiers", CORPUS.parent / "eval"], runs_dir=roots["runs"],
                  allowed_hosts=["testserver"], max_running_jobs=1, max_request_bytes=1 << 16, body_timeout_s=1.0)
    return ServiceSettings(**{**values, **extra})


@pytest.fixture(scope="module")
def client(roots):
    with TestClient(create_app(_settings(roots), ray=FakeRay(), poll_interval_s=3600), raise_server_exceptions=False) as c:
        yield c


def curation(paths: list[str], fmt: str = "jsonl", **sections) -> dict:
    config = {"sources": [{"name": "s", "format": fmt, "domain": "finance", "paths": paths, "content_type": "text"}],
              "mix": {"targets": {"finance": 1.0}}, "tokenizer": {"vocab_size": 300}, **sections}
    return {"config": config}


def post(client, route: str, body, token: str | None = TOKEN):
    return client.post(route, content=json.dumps(body), headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})


def detail(response) -> dict:
    return response.json()["detail"][0]


# ---- High 1: globs and folder walks that lead out through symlinks ----------------------------
@pytest.mark.parametrize(("pattern", "fmt"), [("*/secret.jsonl", "jsonl"), ("glob/*.jsonl", "jsonl"), ("htmldir", "html"), ("**/*.html", "html")])
def test_a_glob_or_folder_yielding_a_symlink_out_of_the_roots_is_refused(client, roots, pattern, fmt):
    response = post(client, "/v1/jobs/curation", curation([str(roots["data"] / pattern)], fmt))
    assert response.status_code == 403, response.text
    assert detail(response)["field"] == "config.sources.0.paths.0" and "outside the data roots" in detail(response)["message"]


def test_a_glob_inside_the_roots_is_accepted(client, roots):
    response = post(client, "/v1/jobs/curation", curation([str(roots["data"] / "glob" / "ok*.jsonl")]))
    assert response.status_code == 201, response.text


def test_a_symlink_that_appears_after_submission_is_refused_when_the_run_lists_and_opens_it(roots, tmp_path):
    root = tmp_path / "root"
    (root / "in").mkdir(parents=True)
    (root / "in" / "a.jsonl").write_text(json.dumps({"text": "inside"}) + "\n")
    cfg = WebCorpusConfig.model_validate({**curation([str(root / "in" / "*.jsonl")])["config"], "data_roots": [str(root)]})
    assert len(list_shards(cfg.sources, cfg.read, cfg.data_roots)) == 1
    (root / "in" / "late.jsonl").symlink_to(roots["outside"] / "secret.jsonl")
    with pytest.raises(ConfigError, match=r"sources\.0\.paths.*outside the data roots"):
        list_shards(cfg.sources, cfg.read, cfg.data_roots)
    # and a folder walked by the reader: the symlinked page is rejected with its reason, never read
    folder = InputFile(str(roots["data"] / "htmldir"), "s", "finance", "html", roots=(str(roots["data"]),))
    docs = {d.metadata["url"].rsplit("/", 1)[-1]: d for d in read_html_folder(folder)}
    assert docs["evil.html"].metadata[READ_ERROR_KEY] == "outside_data_roots" and SECRET.encode() not in docs["evil.html"].metadata[RAW_KEY]
    assert READ_ERROR_KEY not in docs["ok.html"].metadata


# ---- High 2: whole-section training overrides -------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        (["optim.steps=5", "data={manifest: OUT/tokens/manifest.json}"], 422, "overrides.1"),
        (["data.manifest=OUT/tokens/manifest.json"], 422, "overrides.0"),
        (["out_dir=/tmp/elsewhere"], 422, "overrides.0"),
        (["distill={teacher: OUT/teacher}"], 403, "overrides.0"),
        (["optim.steps=5", "distill.teacher=OUT/teacher"], 403, "overrides.1"),
        (["distill.teacher=DATA/sub/teacher"], 403, "overrides.0"),
    ],
)
def test_training_overrides_cannot_leave_the_roots_in_any_spelling(client, roots, overrides, status, field):
    overrides = [o.replace("OUT", str(roots["outside"])).replace("DATA", str(roots["data"])) for o in overrides]
    response = post(client, "/v1/jobs/training", {"manifest": str(roots["data"] / "manifest.json"), "overrides": overrides})
    assert response.status_code == status and detail(response)["field"] == field, response.text


# ---- Medium 3: classifier models are paths like any other -------------------------------------
def test_a_model_path_outside_the_roots_is_refused_without_telling_whether_it_exists(client, roots):
    answers = []
    for name in ("model.ftz", "missing.ftz"):
        body = curation([str(roots["data"] / "glob" / "ok.jsonl")], quality={"classifier": {"model_path": str(roots["outside"] / name)}})
        response = post(client, "/v1/jobs/curation", body)
        assert response.status_code == 403 and detail(response)["field"] == "config.quality.classifier.model_path"
        answers.append(detail(response)["message"].replace(name, "X"))
    assert answers[0] == answers[1]
    body = curation([str(roots["data"] / "glob" / "ok.jsonl")], domain_classifier={"model_path": str(roots["outside"] / "model.ftz")})
    assert post(client, "/v1/jobs/curation", body).status_code == 403
    # inside the roots it is checked, and the error names the field
    body = curation([str(roots["data"] / "glob" / "ok.jsonl")], quality={"classifier": {"model_path": str(roots["data"] / "not-a-model.ftz")}})
    response = post(client, "/v1/jobs/curation", body)
    assert response.status_code == 422 and detail(response)["field"] == "config.quality.classifier.model_path", response.text


def test_every_path_field_of_both_configs_is_marked_and_known():
    """A new string field must be declared a path (and is then confined) or listed here as not one."""
    not_paths = {"run_name", "sources.*.name", "sources.*.format", "sources.*.domain", "sources.*.content_type", "sources.*.text_field",
                 "sources.*.url_field", "sources.*.id_field", "url_filter.blocked_domains", "url_filter.blocked_urls",
                 "url_filter.blocked_words", "url_filter.allowed_schemes", "language.languages", "dedup.score_field",
                 "tokenizer.model_type", "ray.address", "mix.targets", "extract.engine", "read.warc_reader"}
    not_paths |= {"model.norm", "model.positions", "model.mlp", "model.init", "model.attention_pattern", "model.attention_backend",
                  "objective.kind", "optim.schedule", "parallel.sharding", "parallel.mixed_precision", "data.ratios", "data.schedule"}
    not_paths |= {"name", "curation_overrides", "variants", "train.preset", "train.overrides"}  # the ablation's

    def stringy(model: type[BaseModel], prefix: str = ""):
        for name, field in model.model_fields.items():
            args = typing.get_args(field.annotation) or (field.annotation,)
            subs = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if subs:
                many = typing.get_origin(field.annotation) in (list, tuple)
                yield from stringy(subs[0], f"{prefix}{name}.{'*.' if many else ''}")
            elif "str" in str(field.annotation) or "Literal" in str(field.annotation):
                yield prefix + name

    for model in (WebCorpusConfig, TrainConfig, AblationConfig):
        marked = {f for f, _ in path_fields(model)}
        unclassified = sorted(set(stringy(model)) - marked - not_paths)
        assert unclassified == [], f"{model.__name__}: declare these path fields (json_schema_extra) or list them as not paths"
    assert {f for f, _ in path_fields(WebCorpusConfig)} >= {"sources.*.paths", "quality.classifier.model_path", "domain_classifier.model_path",
                                                              "tokenizer.model_path", "dedup.previous_indexes", "runs_dir", "data_roots"}
    assert {f for f, _ in path_fields(TrainConfig)} >= {"data.manifest", "distill.teacher", "out_dir"}
    assert {f for f, _ in path_fields(AblationConfig)} == {"out_dir", "curation_config", "train.config"}


# ---- Medium 4: admission ----------------------------------------------------------------------
def test_jobs_over_the_running_limit_wait_in_order_and_cancel_at_once(roots):
    with TestClient(create_app(_settings(roots, database_url=f"sqlite:///{roots['base'] / 'admission.db'}"), ray=FakeRay(), poll_interval_s=3600)) as c:
        body = curation([str(roots["data"] / "glob" / "ok.jsonl")])
        jobs = [post(c, "/v1/jobs/curation", body).json() for _ in range(3)]
        assert [j["queue_position"] for j in jobs] == [None, 1, 2] and all(j["state"] == "queued" for j in jobs)
        cancelled = c.post(f"/v1/jobs/{jobs[1]['id']}/cancel", headers=AUTH).json()
        assert cancelled["state"] == "cancelled"
        assert c.get(f"/v1/jobs/{jobs[2]['id']}").json()["queue_position"] == 1
        # the job on Ray (pending there) is cancelled at once too, and the next one takes its slot
        assert c.post(f"/v1/jobs/{jobs[0]['id']}/cancel", headers=AUTH).json()["state"] == "cancelled"
        assert c.get(f"/v1/jobs/{jobs[2]['id']}").json()["queue_position"] is None


@pytest.mark.parametrize(("extra", "field"), [({"nproc": 64}, "nproc"), ({"gpus_per_proc": 1}, "gpus_per_proc")])
def test_a_job_the_cluster_can_never_run_is_refused(client, roots, extra, field):
    response = post(client, "/v1/jobs/training", {"manifest": str(roots["data"] / "manifest.json"), **extra})
    assert response.status_code == 422 and detail(response)["field"] == field, response.text


# ---- Medium 5: reads --------------------------------------------------------------------------
def test_document_text_metrics_and_error_details_need_a_token(client, roots):
    job = post(client, "/v1/jobs/curation", curation([str(roots["data"] / "glob" / "ok.jsonl")])).json()
    training = post(client, "/v1/jobs/training", {"manifest": str(roots["data"] / "manifest.json")}).json()
    for route in (f"/v1/jobs/{job['id']}/rejected?stage=read", f"/v1/jobs/{training['id']}/metrics"):
        assert client.get(route).status_code == 401
        assert client.get(route, headers={"Authorization": f"Bearer {READ_TOKEN}"}).status_code == 200
    JobStore(_settings(roots).database_url).update(job["id"], state="failed", error="Traceback: /secret/path")
    assert "/secret/path" not in client.get(f"/v1/jobs/{job['id']}").text
    assert "/secret/path" not in client.get("/v1/jobs").text
    assert client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {READ_TOKEN}"}).json()["error"] == "Traceback: /secret/path"
    # the read token reads; it does not submit or cancel
    assert post(client, "/v1/jobs/curation", curation([str(roots["data"] / "glob" / "ok.jsonl")]), token=READ_TOKEN).status_code == 401
    assert client.get("/v1/jobs").status_code == 200  # the list and status stay open


def test_only_the_configured_hosts_are_answered(client):
    response = client.get("/v1/jobs", headers={"Host": "attacker.example"})
    assert response.status_code == 400 and detail(response)["field"] == "Host"
    assert client.get("/v1/jobs", headers={"Host": "testserver:8000"}).status_code == 200


# ---- Low 6, 7: hostile values are a named 4xx, never a 500 ------------------------------------
@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"mix": {"targets": {"finance": float("nan")}}}, "config.mix.targets.finance"),
        ({"extract": {"timeout_s": float("inf")}}, "config.extract.timeout_s"),
        ({"dedup": {"partitions": 1e30}}, "config.dedup.partitions"),
        ({"language": {"threshold": float("-inf")}}, "config.language.threshold"),
    ],
)
def test_non_finite_and_absurd_numbers_are_refused_by_name(client, roots, sections, field):
    response = post(client, "/v1/jobs/curation", curation([str(roots["data"] / "glob" / "ok.jsonl")], **sections))
    assert response.status_code == 422 and field in [d["field"] for d in response.json()["detail"]], response.text


def test_a_nul_byte_in_a_path_is_a_named_4xx(client, roots):
    response = post(client, "/v1/jobs/curation", curation([str(roots["data"] / "glob" / "ok\x00.jsonl")]))
    assert response.status_code == 422 and detail(response)["field"].startswith("config.sources.0.paths"), response.text
    response = post(client, "/v1/jobs/training", {"manifest": str(roots["data"]) + "/x\x00y"})
    assert 400 <= response.status_code < 500 and detail(response)["field"] == "manifest"


@pytest.mark.parametrize("override", ["optim.steps=!!python/object/apply:os.system [id]", "optim.steps=[unclosed", "optim.lr=.nan",
                                      "optim.lr=.inf", "optim.steps=1e30"])
def test_hostile_training_overrides_are_a_named_422(client, roots, override):
    response = post(client, "/v1/jobs/training", {"manifest": str(roots["data"] / "manifest.json"), "overrides": [override]})
    assert response.status_code == 422 and detail(response)["field"].startswith("overrides"), response.text


# ---- Low 8: bodies on the wire ----------------------------------------------------------------
@pytest.fixture(scope="module")
def server(roots):
    settings = _settings(roots, database_url=f"sqlite:///{roots['base'] / 'wire.db'}", allowed_hosts=["127.0.0.1"])
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(settings, ray=FakeRay(), poll_interval_s=3600), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    srv.should_exit = True
    thread.join(timeout=10)


def _raw(port: int, head: str, body: bytes = b"", wait_s: float = 10.0) -> tuple[int, dict, float]:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int((data.split(b"content-length: ", 1) + [b"0"])[1].split(b"\r\n")[0] or 0):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1]), time.monotonic() - start


def test_a_chunked_body_over_the_limit_is_413(server):
    chunk = b"x" * 40_000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    head = f"POST /v1/jobs/curation HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    status, answer, _ = _raw(server, head, body)
    assert status == 413 and answer["detail"][0]["field"] == "body"


def test_a_stalled_body_is_408_and_the_token_is_checked_before_any_body(server):
    head = f"POST /v1/jobs/curation HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
    status, answer, took = _raw(server, head, b'{"config": ')  # and then nothing
    assert status == 408 and answer["detail"][0]["field"] == "body"
    head = "POST /v1/jobs/curation HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
    status, answer, _ = _raw(server, head)  # no token: refused without waiting for the body
    assert status == 401 and answer["detail"][0]["field"] == "Authorization"


# ---- Low 9: the job store is private ----------------------------------------------------------
def test_the_job_store_file_is_readable_by_its_owner_only(tmp_path):
    JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    assert stat.S_IMODE((tmp_path / "jobs.db").stat().st_mode) == 0o600
