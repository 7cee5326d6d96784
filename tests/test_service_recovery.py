"""The API process killed while submitting a job: between recording the job and hearing back from
Ray. (tests/test_service.py kills a real API process while a job runs; the submission window is a
few milliseconds wide, so here the kill is made to land in it: Ray's client never returns.)"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pipelines.config import WebCorpusConfig
from service.api import create_app
from service.jobs import JobService
from service.settings import ServiceSettings
from service.store import JobStore
from tests.conftest import CORPUS
from tests.test_fuzz_api import TOKEN, FakeRay


class Killed(BaseException):
    """The process dying at this point: nothing after it runs (not even ``except Exception``)."""


class DiesInSubmit(FakeRay):
    def __init__(self, reached_ray: bool):
        super().__init__()
        self.reached_ray = reached_ray

    def submit(self, submission_id, entrypoint, num_cpus=0, num_gpus=0, env=None):
        if self.reached_ray:  # Ray accepted the job; the process died before recording that
            super().submit(submission_id, entrypoint)
        raise Killed


@pytest.fixture
def settings(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    return ServiceSettings(api_token=TOKEN, database_url=f"sqlite:///{tmp_path / 'jobs.db'}", state_dir=tmp_path,
                           data_roots=[CORPUS.parent, runs], runs_dir=runs, allowed_hosts=["testserver"])


def _config() -> WebCorpusConfig:
    sources = [{"name": d[:3], "format": "warc", "domain": d, "paths": [str(CORPUS / "warc" / f"{d}-00000.warc.gz")]} for d in ("finance", "general")]
    return WebCorpusConfig.model_validate({"sources": sources})


@pytest.mark.parametrize("reached_ray", [False, True])
def test_a_job_whose_submission_was_cut_short_is_handed_to_ray_once(settings, reached_ray):
    store = JobStore(settings.database_url)
    ray = DiesInSubmit(reached_ray)
    with pytest.raises(Killed):
        JobService(settings, store, ray).submit_curation(_config())
    [job] = store.unfinished()
    assert job.state == "queued" and job.submission_id is None  # what the killed process left

    restarted = FakeRay()
    restarted.submitted = list(ray.submitted)  # the same Ray cluster, seen by the next API process
    with TestClient(create_app(settings, ray=restarted, poll_interval_s=3600)) as client:
        after = client.get(f"/v1/jobs/{job.id}").json()
    # Ray has it: the new process follows it; Ray never got it: admission hands it over again —
    # either way it is on Ray once, never queued for ever nor lost
    assert after["state"] == "queued" and store.get(job.id).submission_id == job.id
    assert restarted.submitted.count(job.id) == 1
