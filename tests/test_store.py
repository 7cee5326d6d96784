"""The job store on both of its databases: embedded SQLite and a real (throwaway) PostgreSQL."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from service import local_ray
from service.store import JobStore


def _as_postgres_user(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root here, so its server runs as `postgres`
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="module")
def postgres_url():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.fail("Debian's postgresql is needed (`make test` installs it)")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "data", local_ray.free_port()
    subprocess.run(_as_postgres_user([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    opts = f"-k {root} -p {port} -c listen_addresses=''"
    subprocess.run(_as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={root}&port={port}"
    finally:
        subprocess.run(_as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("postgres_url")


def test_jobs_persist_across_store_instances(store_url):
    """What a restarted API process relies on: a second store on the same database sees every job."""
    first = JobStore(store_url)
    a = first.create("curation", {"config": {"run_name": "a"}}, "/runs/a")
    b = first.create("training", {"preset": "tiny"}, "/runs/train/b", parent_id=a.id)
    first.update(a.id, state="running", submission_id=a.id, started_at=time.time())
    first.update(b.id, state="failed", error="boom: ñ ✓", finished_at=time.time())
    first.engine.dispose()

    second = JobStore(store_url)
    got = second.get(a.id)
    assert got.state == "running" and got.submission_id == a.id and got.request == {"config": {"run_name": "a"}}
    assert second.get(b.id).error == "boom: ñ ✓" and second.get(b.id).parent_id == a.id
    assert [j.id for j in second.unfinished()] == [a.id]
    assert {j.id for j in second.list()} >= {a.id, b.id}
    assert [j.id for j in second.list(kind="training", state="failed")] == [b.id]
    counts = second.count_by_state()
    assert counts[("curation", "running")] >= 1 and counts[("training", "failed")] >= 1
    assert second.get("cur-missing") is None
