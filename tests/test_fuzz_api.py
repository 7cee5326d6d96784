"""Hostile configs and requests, generated (hypothesis): a run config with wrong types or unknown
fields is refused with a ``ConfigError`` naming the field, and the API answers every request with
a 2xx or a 4xx whose body is ``{"detail": [{"field": ..., "message": ...}]}`` — never a 5xx.

The API runs in-process (FastAPI's TestClient) with a stand-in for the Ray Jobs client: what is
fuzzed here is request validation and the job store, not Ray (tests/test_service.py runs the real
API process against a real Ray head).
"""

from __future__ import annotations

import json
import string
from urllib.parse import quote

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from configs.overrides import parse_overrides
from pipelines.config import ConfigError, WebCorpusConfig
from pipelines.config_loading import load_config
from service.api import create_app
from service.ray_jobs import RayJobState
from service.settings import ServiceSettings
from tests.conftest import CORPUS

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TOKEN = "fuzz-token-" + "x" * 16


def _leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            paths += _leaf_paths(kind, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


LEAVES = _leaf_paths(WebCorpusConfig)
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
_names = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12)


def _nest(path: str, value) -> dict:
    tree: dict = value
    for key in reversed(path.split(".")):
        tree = {key: tree}
    return tree


# ---- run configs ------------------------------------------------------------------------------
@FUZZ
@given(path=st.sampled_from(LEAVES), value=_values)
def test_a_wrong_value_anywhere_in_a_config_is_refused_by_name(tmp_path_factory, path, value):
    file = tmp_path_factory.mktemp("cfg") / "run.yaml"
    file.write_text(yaml.safe_dump(_nest(path, value)))
    try:
        load_config(file)
    except ConfigError as exc:
        # the field itself, or (for a rule over several fields) its section or the field the rule names
        assert path in str(exc) or path.split(".")[0] in str(exc), (path, str(exc))


@FUZZ
@given(section=st.sampled_from(sorted({p.rsplit(".", 1)[0] for p in LEAVES if "." in p} | {""})), name=_names, value=_values)
def test_an_unknown_field_is_refused_by_name(tmp_path_factory, section, name, value):
    path = f"{section}.{name}" if section else name
    if path in LEAVES or (section == "" and name in WebCorpusConfig.model_fields):
        return
    file = tmp_path_factory.mktemp("cfg") / "run.yaml"
    file.write_text(yaml.safe_dump(_nest(path, value)))
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        load_config(file)


@FUZZ
@given(overrides=st.lists(st.text(max_size=60), max_size=4))
def test_any_override_string_parses_or_is_refused_clearly(overrides):
    try:
        parse_overrides(overrides)
        load_config(None, overrides)
    except ConfigError as exc:
        assert str(exc)


@FUZZ
@given(text=st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
def test_any_config_file_text_loads_or_is_refused_clearly(tmp_path_factory, text):
    file = tmp_path_factory.mktemp("cfg") / "run.yaml"
    file.write_text(text, errors="surrogatepass")
    try:
        load_config(file)
    except ConfigError as exc:
        assert str(exc)


# ---- the API ----------------------------------------------------------------------------------
class FakeRay:
    """The Ray Jobs client's interface, recording submissions; every job stays queued."""

    address = "fake://ray"

    def __init__(self):
        self.submitted: list[str] = []

    def submit(self, submission_id, entrypoint, num_cpus=0, num_gpus=0, env=None):
        self.submitted.append(submission_id)

    def state(self, submission_id):
        return RayJobState("queued", None, None, None)

    def known(self, submission_id):
        return submission_id in self.submitted

    def logs_tail(self, submission_id, chars=4000):
        return ""

    def stop(self, submission_id):
        return True

    def node_resources(self):
        return [{"CPU": 8.0}]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    runs = root / "runs"
    runs.mkdir()
    settings = ServiceSettings(api_token=TOKEN, database_url=f"sqlite:///{root / 'jobs.db'}", state_dir=root,
                               data_roots=[CORPUS.parent, runs], runs_dir=runs, max_request_bytes=1 << 16,
                               allowed_hosts=["testserver"])
    app = create_app(settings, ray=FakeRay(), poll_interval_s=3600)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _valid_curation() -> dict:
    return {"config": {"sources": [{"name": "fin", "format": "warc", "domain": "finance",
                                    "paths": [str(CORPUS / "warc" / "finance-00000.warc.gz")]}], "tokenizer": {"vocab_size": 2000}}}


def _check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["detail"], list) and body["detail"], body
        for item in body["detail"]:
            assert isinstance(item["field"], str) and item["field"] and isinstance(item["message"], str) and item["message"], body


def _post(client, route: str, body):
    # json.dumps writes NaN and Infinity as Python's json reads them: the service must take those too
    return client.post(route, content=json.dumps(body), headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})


_mutations = st.tuples(st.sampled_from(LEAVES + ["unknown_field", "sources.0.unknown", "sources.0.format", "sources.0.paths", "sources"]), _values)


@FUZZ
@given(mutations=st.lists(_mutations, max_size=3))
def test_curation_requests_with_any_config_get_2xx_or_a_named_4xx(client, mutations):
    body = _valid_curation()
    for path, value in mutations:
        node = body["config"]
        keys = path.split(".")
        for key in keys[:-1]:
            if isinstance(node, list):
                node = node[0] if node else {}
            elif isinstance(node, dict):
                node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict | list) else {}
        if isinstance(node, dict):
            node[keys[-1]] = value
    _check(_post(client, "/v1/jobs/curation", body))


@FUZZ
@given(body=_values, token=st.sampled_from([TOKEN, None, "wrong"]), route=st.sampled_from(["/v1/jobs/curation", "/v1/jobs/training", "/v1/jobs/ablation"]))
def test_any_json_body_gets_2xx_or_a_named_4xx(client, body, token, route):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    _check(client.post(route, content=json.dumps(body), headers={**headers, "Content-Type": "application/json"}))


@FUZZ
@given(
    raw=st.binary(max_size=2048) | st.text(max_size=2048).map(str.encode),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
)
def test_any_bytes_as_a_body_get_a_named_4xx(client, raw, content_type):
    _check(client.post("/v1/jobs/curation", content=raw, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}))


@FUZZ
@given(
    training=st.fixed_dictionaries(
        {},
        optional={
            "curation_job": st.text(max_size=40) | st.integers(),
            "manifest": st.sampled_from(["/etc/passwd", "../../x", str(CORPUS), "runs/none/manifest.json", ""]) | st.text(max_size=40),
            "preset": st.sampled_from(["tiny", "124m", "huge"]) | st.integers(),
            "overrides": st.lists(st.text(max_size=40), max_size=4) | st.text(max_size=10),
            "nproc": st.integers(-5, 100) | st.floats(),
            "gpus_per_proc": st.floats(-1, 3) | st.text(max_size=3),
        },
    )
)
def test_training_requests_get_2xx_or_a_named_4xx(client, training):
    _check(_post(client, "/v1/jobs/training", training))


_paths = st.sampled_from(["/etc/passwd", "../../x", str(CORPUS), "configs/web_corpus.yaml", "configs/ablation.yaml", ""]) | st.text(max_size=40)
_overrides = st.lists(st.sampled_from(["sources=[{name: x, format: warc, domain: finance, paths: [/etc]}]", "runs_dir=/x", "data_roots=[/]",
                                       "out_dir=/x", "data={manifest: /etc/passwd}", "dedup.threshold=7"]) | st.text(max_size=40), max_size=3)


@settings(FUZZ, max_examples=60)  # every accepted example resolves each variant's curation config
@given(
    ablation=st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["a", "x/../y", ""]) | st.text(max_size=12),
            "out_dir": _paths,
            "curation_config": _paths,
            "curation_overrides": _overrides,
            "variants": st.lists(st.sampled_from(["full", "extract-lang", "nope"]) | st.fixed_dictionaries({"name": st.text(max_size=8), "overrides": _overrides}), max_size=3),
            "leave_one_out": st.booleans() | st.text(max_size=3),
            "train": st.fixed_dictionaries({}, optional={"preset": st.sampled_from(["tiny", "huge"]), "config": _paths, "overrides": _overrides,
                                                         "seeds": st.lists(st.integers(), max_size=3) | st.text(max_size=3)}),
        },
    )
)
def test_ablation_requests_get_2xx_or_a_named_4xx(client, ablation):
    _check(_post(client, "/v1/jobs/ablation", {"config": ablation}))


@FUZZ
@given(
    job_id=st.text(min_size=1, max_size=40).map(lambda s: quote(s, safe="")),
    suffix=st.sampled_from(["", "/funnel", "/rejected", "/metrics", "/ablation", "/cancel"]),
    query=st.dictionaries(st.sampled_from(["stage", "reason", "limit", "offset", "max_points", "kind", "state"]), st.text(max_size=10) | st.integers().map(str), max_size=3),
)
def test_job_routes_with_any_id_and_query_get_a_named_4xx(client, job_id, suffix, query):
    method = "POST" if suffix == "/cancel" else "GET"
    response = client.request(method, f"/v1/jobs/{job_id}{suffix}", params=query, headers={"Authorization": f"Bearer {TOKEN}"})
    _check(response)
    assert response.status_code != 200 or suffix == ""  # no job has such an id... unless it is the list route


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(client):
    response = client.post("/v1/jobs/curation", content=b"{" + b" " * (1 << 17) + b"}", headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert response.status_code == 413
    _check(response)
