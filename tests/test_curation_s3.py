"""Curation with its sources and its whole run directory on an object store: moto's S3 server on
loopback, reached through the same client (s3fs, botocore) and the same environment variables
(AWS_*, AWS_ENDPOINT_URL) as a real store. The bundled run there must produce, byte for byte, the
outputs recorded for it on local disk (tests/data/bundled_run_fingerprint.json): undisturbed,
killed and resumed, and behind a proxy that fails a share of the requests.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CORPUS, ROOT
from tests.run_fingerprint import differences, run_fingerprint
from scripts.s3_server import FlakyProxy, bundled_config_on_store, start_moto, upload_corpus

RECORDED = json.loads((ROOT / "tests" / "data" / "bundled_run_fingerprint.json").read_text())
BUCKET = "curation"
# a secret no output may contain: the run reads it from the environment only
SECRET = "h18-secret-never-written-anywhere"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "h18-key", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def store():
    """(endpoint, a test-side filesystem) with the bundled corpus under s3://curation/sources/."""
    import s3fs

    server, endpoint = start_moto()
    fs = s3fs.S3FileSystem(key="h18-key", secret=SECRET, endpoint_url=endpoint, use_listings_cache=False, skip_instance_cache=True)
    fs.mkdir(BUCKET)
    upload_corpus(fs, f"{BUCKET}/sources")
    yield endpoint, fs
    server.stop()


def bundled_on_store(tmp_path: Path, run_name: str) -> Path:
    return bundled_config_on_store(tmp_path / f"{run_name}.json", f"s3://{BUCKET}/sources", f"s3://{BUCKET}/runs", run_name)


def start_run(config: Path, endpoint: str, tmp_path: Path, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "PYTHONPATH": str(ROOT),
           "TRAINER_CACHE_DIR": str(tmp_path / "cache"), "RAY_DEDUP_LOGS": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.web_corpus", "--no-progress", "--config", str(config)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        start_new_session=True,  # its own process group: a kill takes its local Ray with it
    )


def fetched(fs, run_name: str, tmp_path: Path) -> Path:
    """A local copy of the run directory on the store, to fingerprint as a local run is."""
    local = tmp_path / "fetched" / run_name
    fs.get(f"{BUCKET}/runs/{run_name}", str(local), recursive=True)
    return local


def assert_recorded_outputs(fs, run_name: str, tmp_path: Path) -> dict:
    local = fetched(fs, run_name, tmp_path)
    assert differences(RECORDED, run_fingerprint(local)) == []
    leftovers = [p for p in local.rglob("*") if p.name.endswith(".tmp") or "staging" in p.parts or "work" in p.parts]
    assert leftovers == []
    for path in local.rglob("*"):  # the credentials are in no output of the run
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    return json.loads((local / "stats.json").read_text())


# the run's events, seen as objects on the store; the driver's process group is SIGKILLed the moment
# one appears, and the run started again
KILL_POINTS = [
    ("first shard curated", "stats/curate/*.json"),
    ("dedup: LSH bands partitioned", "dedup/work/bands/*/*.arrow"),
    ("token shards written, manifest not yet", "tokens/shard-*.arrow"),
]


def flaky_proxy(endpoint: str, every: int, deny: str | None = None) -> FlakyProxy:
    import threading

    host, port = endpoint.removeprefix("http://").split(":")
    proxy = FlakyProxy((host, int(port)), every=every, deny=deny)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


@pytest.mark.slow
def test_a_run_on_a_flaky_store_killed_at_three_points_then_resumed_equals_the_local_run(store, tmp_path):
    """Both faults in one run (each alone costs a whole bundled run): every 20th request refused
    (throttling, 5xx), and the driver SIGKILLed at three points, then resumed."""
    endpoint, fs = store
    config = bundled_on_store(tmp_path, "killed")
    proxy = flaky_proxy(endpoint, every=50)  # each refusal costs a retry backoff (up to 2 s): every 7th made this test 168 s, every 20th 94 s
    killed = []
    try:
        for label, pattern in KILL_POINTS:
            proc = start_run(config, proxy.url, tmp_path, stderr=subprocess.DEVNULL)
            deadline = time.time() + 600
            while proc.poll() is None and time.time() < deadline:
                if fs.glob(f"{BUCKET}/runs/killed/{pattern}"):  # seen directly, not through the proxy
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.05)
            if proc.wait(timeout=60) == -signal.SIGKILL:
                killed.append(label)
            else:
                assert proc.returncode == 0
                break
        assert len(killed) >= 2, killed
        final = start_run(config, proxy.url, tmp_path)
        _, stderr = final.communicate(timeout=900)
    finally:
        proxy.shutdown()
    assert final.returncode == 0, stderr[-4000:]
    assert SECRET not in stderr
    stats = assert_recorded_outputs(fs, "killed", tmp_path)
    # every refused request was retried (never one exhausted its attempts) and counted, by kind;
    # the driver's last requests (writing stats.json itself) come after the count is taken
    assert 0 < stats["store"]["retried"] <= proxy.failed
    assert set(stats["store"]["by_kind"]) <= {"SlowDown", "503"}


def test_a_source_the_store_refuses_fails_the_run_naming_the_shard(store, tmp_path):
    """A 403 is permanent: not retried, the shard's task fails by name, and the funnel says so."""
    endpoint, fs = store
    fs.put_file(str(CORPUS / "warc" / "general-00000.warc.gz"), f"{BUCKET}/refused/general-00000.warc.gz")
    proxy = flaky_proxy(endpoint, every=0, deny=f"/{BUCKET}/refused/")
    sources = [{"name": "refused", "format": "warc", "domain": "general", "paths": [f"s3://{BUCKET}/refused/*.warc.gz"]}]
    config = tmp_path / "refused.json"
    config.write_text(json.dumps({"runs_dir": f"s3://{BUCKET}/runs", "run_name": "refused", "sources": sources,
                                  "dedup": {"enabled": False}, "mix": {"enabled": False}, "shards": {"enabled": False}}))
    try:
        proc = start_run(config, proxy.url, tmp_path)
        _, stderr = proc.communicate(timeout=600)
    finally:
        proxy.shutdown()
    assert proc.returncode != 0
    stats = json.loads(fs.cat_file(f"{BUCKET}/runs/refused/stats.json"))
    assert stats["status"] == "failed" and "refused-00000" in stats["error"] and "PermissionError" in stats["error"], stats["error"]
    assert stats["store"]["retried"] == 0
